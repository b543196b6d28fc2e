// The recording player's markup (`#/recordings/<id>`): head with the Live badge and Export, the
// error line, the video stage, controls (play, time, speed, scrub bar with markers and hover
// thumbnail), metadata and the events list. Built once; the other player parts get their elements
// from here.

import { exportUrl, type RecordingDetail } from '../api';
import { h, replace } from '../dom';
import { formatDuration } from '../model/recording';
import { formatStart, stateClass } from './recordings-page';

/** The speeds offered (`playbackRate`). */
export const SPEEDS = [1, 2, 4, 8, 16] as const;

/** The scrub bar's elements. */
export interface ScrubElements {
  scrub: HTMLElement;
  bufferedBox: HTMLElement;
  played: HTMLElement;
  markerBox: HTMLElement;
  head: HTMLElement;
  thumbImg: HTMLImageElement;
  thumbTime: HTMLElement;
  thumbPop: HTMLElement;
}

/** The metadata values (`<dd>`), by field. */
export interface MetaElements {
  user: HTMLElement;
  target: HTMLElement;
  client: HTMLElement;
  start: HTMLElement;
  duration: HTMLElement;
  state: HTMLElement;
  endReason: HTMLElement;
  keep: HTMLElement;
}

/** The player page's elements. */
export interface PlayerDom {
  errorBox: HTMLElement;
  live: HTMLElement;
  exportLink: HTMLAnchorElement;
  title: HTMLElement;
  meta: MetaElements;
  video: HTMLVideoElement;
  /** The poster over the video before the first play or seek. */
  poster: HTMLImageElement;
  /** The loading/buffering overlay and its text. */
  status: HTMLElement;
  statusText: HTMLElement;
  playBtn: HTMLButtonElement;
  timeText: HTMLElement;
  speed: HTMLSelectElement;
  scrub: ScrubElements;
  eventsList: HTMLElement;
  eventsNote: HTMLElement;
  /** The side column (metadata, events; the review panel goes between them). */
  side: HTMLElement;
  eventsCard: HTMLElement;
}

/** Builds the page into `main` (the shell's main element) for recording `id`. */
export function buildPlayerDom(main: HTMLElement, id: string): PlayerDom {
  const errorBox = h('div', { id: 'player-error', class: 'page-error player-error', role: 'alert', hidden: true });
  const live = h('span', { id: 'player-live', class: 'live-badge', hidden: true, title: 'The session is still being recorded' }, 'Live');
  const exportLink = h(
    'a',
    { id: 'player-export', class: 'btn btn-small', href: exportUrl(id), download: true, title: 'Download the MP4 file(s), the event track and the signed manifest (tar)' },
    'Export',
  );
  const title = h('h1', null, 'Recording');
  main.append(
    h(
      'div',
      { class: 'player-head' },
      h('a', { id: 'player-back', class: 'back-link', href: '#/recordings' }, '← Recordings'),
      h('div', { class: 'player-title' }, title, live, h('span', { class: 'toolbar-spacer' }), exportLink),
    ),
    errorBox,
  );

  const metaValue = (key: string) => h('dd', { id: `player-${key}` }, '…');
  const meta = {
    user: metaValue('user'),
    target: metaValue('target'),
    client: metaValue('client'),
    start: metaValue('start'),
    duration: metaValue('duration'),
    state: metaValue('state'),
    endReason: metaValue('end-reason'),
    keep: metaValue('keep'),
  };
  const metaList = h(
    'dl',
    { id: 'player-meta', class: 'player-meta' },
    ...(
      [
        ['User', meta.user],
        ['Target', meta.target],
        ['Client', meta.client],
        ['Started', meta.start],
        ['Duration', meta.duration],
        ['State', meta.state],
        ['End reason', meta.endReason],
        ['Kept until', meta.keep],
      ] as const
    ).map(([label, dd]) => h('div', { class: 'meta-item' }, h('dt', null, label), dd)),
  );

  const video = h('video', { id: 'player-video', class: 'player-video', playsinline: true, muted: true, preload: 'auto', disablepictureinpicture: true });
  video.muted = true;
  const statusText = h('span', { id: 'player-status-text' }, 'Loading…');
  const status = h('div', { id: 'player-status', class: 'player-status', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), statusText);
  // Until the first play or seek: a picture of the session (its first thumbnail with content),
  // since the first frame is often black (the server had not drawn yet).
  const poster = h('img', { id: 'player-poster', class: 'player-poster', alt: '', decoding: 'async', hidden: true });
  const stage = h('div', { class: 'player-stage' }, video, poster, status);

  const playBtn = h('button', { id: 'player-play', type: 'button', class: 'btn btn-small btn-primary player-play', 'data-state': 'paused', 'aria-label': 'Play', disabled: true }, 'Play');
  const timeText = h('span', { id: 'player-time', class: 'player-time mono' }, '0:00 / 0:00');
  const speed = h(
    'select',
    { id: 'player-speed', class: 'player-speed', 'aria-label': 'Playback speed' },
    ...SPEEDS.map((s) => h('option', { value: String(s), selected: s === 1 }, `${s}×`)),
  );

  const bufferedBox = h('div', { class: 'scrub-buffered', 'aria-hidden': 'true' });
  const played = h('div', { class: 'scrub-played', 'aria-hidden': 'true' });
  const markerBox = h('div', { class: 'scrub-markers' });
  const head = h('div', { class: 'scrub-head', 'aria-hidden': 'true' });
  const thumbImg = h('img', { id: 'player-thumb', class: 'thumb-img', alt: '', decoding: 'async', hidden: true });
  const thumbTime = h('span', { id: 'player-thumb-time', class: 'thumb-time mono' });
  const thumbPop = h('div', { class: 'thumb-pop', hidden: true, 'aria-hidden': 'true' }, thumbImg, thumbTime);
  const scrub = h(
    'div',
    {
      id: 'player-scrub',
      class: 'scrub',
      role: 'slider',
      tabindex: 0,
      'aria-label': 'Position in the recording',
      'aria-valuemin': 0,
      'aria-valuemax': 0,
      'aria-valuenow': 0,
    },
    h('div', { class: 'scrub-track' }, bufferedBox, played),
    markerBox,
    head,
    thumbPop,
  );

  const eventsList = h('ol', { id: 'player-events', class: 'player-events' });
  const eventsNote = h('p', { class: 'muted events-note' }, 'Loading events…');

  const eventsCard = h('section', { class: 'player-events-card card', 'aria-label': 'Events' }, h('h2', null, 'Events'), eventsNote, eventsList);
  const side = h('aside', { class: 'player-side' }, metaList, eventsCard);
  main.append(
    h(
      'div',
      { class: 'player-layout' },
      h(
        'div',
        { class: 'player-main' },
        stage,
        h(
          'div',
          { class: 'player-controls card' },
          h('div', { class: 'controls-row' }, playBtn, timeText, h('span', { class: 'toolbar-spacer' }), h('label', { class: 'speed-label', for: 'player-speed' }, 'Speed'), speed),
          scrub,
        ),
      ),
      side,
    ),
  );

  return {
    errorBox,
    live,
    exportLink,
    title,
    meta,
    video,
    poster,
    status,
    statusText,
    playBtn,
    timeText,
    speed,
    scrub: { scrub, bufferedBox, played, markerBox, head, thumbImg, thumbTime, thumbPop },
    eventsList,
    eventsNote,
    side,
    eventsCard,
  };
}

/**
 * The error line: one message per source (detail, events, poll, play, video, csp, codec, empty,
 * player, loading), shown together; hidden while there is none.
 */
export class ErrorLine {
  private readonly errors = new Map<string, string>();
  private readonly box: HTMLElement;

  constructor(box: HTMLElement) {
    this.box = box;
  }

  /** Sets (or with null clears) the message of `source`. */
  set(source: string, message: string | null): void {
    if (message === null) this.errors.delete(source);
    else this.errors.set(source, message);
    this.box.textContent = [...this.errors.values()].join('\n');
    this.box.hidden = this.errors.size === 0;
  }
}

/** Shows the recording's metadata, the title and the Live badge. */
export function showMeta(dom: PlayerDom, detail: RecordingDetail, durationMs: number, isLive: boolean): void {
  const r = detail.recording;
  const { meta } = dom;
  dom.title.textContent = `${r.user} → ${r.target}`;
  meta.user.textContent = r.user;
  meta.target.textContent = r.target;
  meta.client.textContent = r.client_addr || '—';
  meta.start.textContent = formatStart(r.started_at_ms);
  meta.duration.textContent = formatDuration(Math.max(r.duration_ms, durationMs));
  replace(meta.state, h('span', { class: stateClass(r.state) }, r.state));
  meta.endReason.textContent = r.end_reason ?? (r.state === 'recording' ? '(still recording)' : '—');
  const keep = detail.keep;
  meta.keep.parentElement!.hidden = !keep;
  if (keep) {
    const why = keep.rule ? `retention rule ${keep.rule}` : 'the gateway default';
    meta.keep.textContent =
      keep.until_ms !== null ? `${formatStart(keep.until_ms)} (${keep.days} days, ${why})` : keep.days === 0 ? `for ever (${why})` : `${keep.days} days after the end (${why})`;
  }
  dom.live.hidden = !isLive;
  document.title = `${r.user} → ${r.target} · Recording · Portcullis`;
}

/** Shows the loading/buffering overlay with `text`, or hides it (null). */
export function setStatus(dom: PlayerDom, text: string | null): void {
  dom.status.hidden = text === null;
  if (text !== null) dom.statusText.textContent = text;
}
