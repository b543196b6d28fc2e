// `#/recordings/<id>`: plays a session recording (Media Source Extensions, see ../mse.ts) with a
// scrub bar carrying the event markers, hover thumbnails, speeds, the event list and the export.

import { ApiError, exportUrl, getRecording, getRecordingEvents, thumbnailUrl, type RecordingDetail, type RecordingEvent } from '../api';
import type { PageContext } from '../context';
import { h, replace } from '../dom';
import { shell } from '../layout';
import { MseLoader, unsupportedReason } from '../mse';
import {
  currentEventIndex,
  describeEvent,
  eventKind,
  formatClock,
  formatDuration,
  fractionOf,
  markers,
  rangesMs,
  thumbnailFor,
  timeAtX,
  timelineMs,
} from '../model/recording';
import { counters, type PlayerHook } from '../test-hooks';
import { formatStart, stateClass } from './recordings-page';
import { errorMessage } from './util';

/** While the recording is live, its detail is polled this often. */
export const LIVE_POLL_MS = 1000;
/** … and its events every this many polls. */
const EVENTS_EVERY = 3;
export const SPEEDS = [1, 2, 4, 8, 16] as const;
/** Arrow keys on the scrub bar move this far; Page Up/Down ten times as far. */
const KEY_STEP_MS = 5000;

const pct = (f: number): string => `${(f * 100).toFixed(3)}%`;

export async function renderPlayer(ctx: PageContext, id: string): Promise<void> {
  const { signal } = ctx;
  const hookState: PlayerHook = { ready: false, currentTime: () => 0, seeks: 0, lastSeekTarget: null, segmentsAppended: 0 };
  const hooks = counters();
  hooks.player = hookState;
  signal.addEventListener('abort', () => {
    if (hooks.player === hookState) hooks.player = null;
  });

  const main = shell(ctx.root, ctx.me, 'recordings', 'page player-page');

  // ---- DOM ------------------------------------------------------------------------------------
  const errorBox = h('div', { id: 'player-error', class: 'page-error player-error', role: 'alert', hidden: true });
  const errors = new Map<string, string>();
  const setError = (source: string, message: string | null) => {
    if (message === null) errors.delete(source);
    else errors.set(source, message);
    errorBox.textContent = [...errors.values()].join('\n');
    errorBox.hidden = errors.size === 0;
  };

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
      ] as const
    ).map(([label, dd]) => h('div', { class: 'meta-item' }, h('dt', null, label), dd)),
  );

  const video = h('video', { id: 'player-video', class: 'player-video', playsinline: true, muted: true, preload: 'auto', disablepictureinpicture: true });
  video.muted = true;
  hookState.currentTime = () => video.currentTime;
  const statusText = h('span', { id: 'player-status-text' }, 'Loading…');
  const status = h('div', { id: 'player-status', class: 'player-status', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), statusText);
  const stage = h('div', { class: 'player-stage' }, video, status);

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
      h(
        'aside',
        { class: 'player-side' },
        metaList,
        h('section', { class: 'player-events-card card', 'aria-label': 'Events' }, h('h2', null, 'Events'), eventsNote, eventsList),
      ),
    ),
  );

  // ---- data -----------------------------------------------------------------------------------
  let detail: RecordingDetail;
  let events: RecordingEvent[] = [];
  let eventsError: string | null = null;
  try {
    const [d, ev] = await Promise.all([
      getRecording(id),
      getRecordingEvents(id).catch((err: unknown) => {
        eventsError = `Could not load the events: ${errorMessage(err)}`;
        return [] as RecordingEvent[];
      }),
    ]);
    detail = normalise(d);
    events = sortEvents(ev);
  } catch (err) {
    if (signal.aborted) return;
    const message =
      err instanceof ApiError && err.status === 404 ? 'This recording does not exist, or you are not allowed to see it.' : `Could not load the recording: ${errorMessage(err)}`;
    setError('detail', message);
    status.hidden = true;
    eventsNote.textContent = '';
    exportLink.hidden = true;
    for (const dd of Object.values(meta)) dd.textContent = '—';
    return;
  }
  if (signal.aborted) return;
  setError('events', eventsError);
  if (signal.aborted) return;

  let isLive = detail.recording.state === 'recording';
  const durationMs = () => timelineMs(detail);

  const showMeta = () => {
    const r = detail.recording;
    title.textContent = `${r.user} → ${r.target}`;
    meta.user.textContent = r.user;
    meta.target.textContent = r.target;
    meta.client.textContent = r.client_addr || '—';
    meta.start.textContent = formatStart(r.started_at_ms);
    meta.duration.textContent = formatDuration(Math.max(r.duration_ms, durationMs()));
    replace(meta.state, h('span', { class: stateClass(r.state) }, r.state));
    meta.endReason.textContent = r.end_reason ?? (r.state === 'recording' ? '(still recording)' : '—');
    live.hidden = !isLive;
    document.title = `${r.user} → ${r.target} · Recording · Portcullis`;
  };
  showMeta();

  // ---- seeking --------------------------------------------------------------------------------
  /** A seek asked for in the UI (scrub bar, marker, event row, keys): counted for the test hook. */
  const seekTo = (ms: number) => {
    const d = durationMs();
    const t = Math.min(Math.max(0, ms), d > 0 ? d : Math.max(0, ms)) / 1000;
    hookState.seeks++;
    hookState.lastSeekTarget = t;
    video.currentTime = t;
  };

  // ---- events and markers ---------------------------------------------------------------------
  /** Index of the highlighted event row (-2: none computed yet). */
  let currentRow = -2;
  let eventTimes: number[] = [];
  let eventRows: HTMLElement[] = [];
  let shownEvents = '';
  const renderEvents = () => {
    const d = durationMs();
    const key = `${d}|${events.length}|${events.length ? events[events.length - 1]!.t_ms : ''}`;
    if (key === shownEvents) return;
    shownEvents = key;
    const ms = markers(events, d);
    replace(
      markerBox,
      ...ms.map((m) => {
        const el = h('button', { type: 'button', class: `marker marker-${m.kind}`, 'data-t-ms': m.tMs, title: m.label, 'aria-label': m.label, tabindex: -1 });
        el.style.left = pct(m.fraction);
        el.addEventListener('click', (e) => {
          e.stopPropagation();
          seekTo(m.tMs);
        });
        return el;
      }),
    );
    eventTimes = events.map((e) => e.t_ms);
    eventRows = events.map((ev) => {
      const full = describeEvent(ev, 4000);
      const row = h(
        'li',
        { class: `event-row event-${eventKind(ev.type)}`, 'data-t-ms': ev.t_ms, role: 'button', tabindex: 0, title: `${formatClock(ev.t_ms)} ${full}` },
        h('span', { class: 'event-time mono' }, formatClock(ev.t_ms)),
        h('span', { class: 'event-text' }, describeEvent(ev)),
      );
      const go = () => seekTo(ev.t_ms);
      row.addEventListener('click', go);
      row.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          go();
        }
      });
      return row;
    });
    replace(eventsList, ...eventRows);
    eventsNote.textContent = events.length ? '' : 'No events recorded.';
    eventsNote.hidden = events.length > 0;
    currentRow = -2;
  };
  renderEvents();

  // ---- timeline rendering (every animation frame, writing only what changed) -------------------
  let dragging = false;
  let dragMs = 0;
  let lastTimeText = '';
  let lastPlayed = '';
  let lastBuffered = '';
  const renderTimeline = () => {
    const d = durationMs();
    const cur = dragging ? dragMs : video.currentTime * 1000;
    const f = pct(fractionOf(cur, d));
    if (f !== lastPlayed) {
      lastPlayed = f;
      played.style.width = f;
      head.style.left = f;
    }
    const text = `${formatClock(cur)} / ${formatClock(d)}`;
    if (text !== lastTimeText) {
      lastTimeText = text;
      timeText.textContent = text;
      scrub.setAttribute('aria-valuemax', String(Math.round(d / 1000)));
      scrub.setAttribute('aria-valuenow', String(Math.round(cur / 1000)));
      scrub.setAttribute('aria-valuetext', text);
    }
    let ranges: [number, number][] = [];
    try {
      ranges = rangesMs(video.buffered).map(([s, e]) => [fractionOf(s, d), fractionOf(e, d)]);
    } catch {
      // detached
    }
    const bkey = ranges.map(([s, e]) => `${s.toFixed(4)}-${e.toFixed(4)}`).join(',');
    if (bkey !== lastBuffered) {
      lastBuffered = bkey;
      replace(
        bufferedBox,
        ...ranges.map(([s, e]) => {
          const el = h('div', { class: 'scrub-range' });
          el.style.left = pct(s);
          el.style.width = pct(Math.max(0, e - s));
          return el;
        }),
      );
    }
    const row = currentEventIndex(eventTimes, video.currentTime * 1000);
    if (row !== currentRow) {
      if (currentRow >= 0) eventRows[currentRow]?.classList.remove('current');
      if (row >= 0) eventRows[row]?.classList.add('current');
      currentRow = row;
    }
  };
  let raf = 0;
  const frame = () => {
    renderTimeline();
    raf = window.requestAnimationFrame(frame);
  };
  raf = window.requestAnimationFrame(frame);
  signal.addEventListener('abort', () => window.cancelAnimationFrame(raf));

  // ---- scrub bar: click/drag, hover thumbnails, keyboard ---------------------------------------
  let thumbSeq: number | null = null;
  const showThumb = (clientX: number) => {
    const rect = scrub.getBoundingClientRect();
    const t = timeAtX(clientX, rect.left, rect.width, durationMs());
    const th = thumbnailFor(detail.thumbnails, t);
    if (th) {
      if (th.seq !== thumbSeq) {
        thumbSeq = th.seq;
        thumbImg.src = thumbnailUrl(id, th.seq);
      }
      thumbImg.hidden = false;
    } else {
      thumbImg.hidden = true;
    }
    thumbTime.textContent = formatClock(t);
    thumbPop.hidden = false;
    const half = thumbPop.offsetWidth / 2;
    const x = Math.min(Math.max(clientX - rect.left, half), Math.max(half, rect.width - half));
    thumbPop.style.left = `${x}px`;
    return t;
  };
  thumbImg.addEventListener('error', () => {
    thumbImg.hidden = true;
  });
  thumbImg.addEventListener('load', () => {
    if (!thumbPop.hidden) thumbImg.hidden = false;
  });
  const onMarker = (e: Event) => e.target instanceof Element && e.target.closest('.marker') !== null;
  scrub.addEventListener('pointerdown', (e) => {
    if (e.button !== 0 || onMarker(e)) return;
    e.preventDefault();
    scrub.focus();
    dragging = true;
    dragMs = showThumb(e.clientX);
    try {
      scrub.setPointerCapture(e.pointerId);
    } catch {
      // synthetic pointer
    }
  });
  scrub.addEventListener('pointermove', (e) => {
    const t = showThumb(e.clientX);
    if (dragging) dragMs = t;
  });
  scrub.addEventListener('pointerup', (e) => {
    if (!dragging) return;
    dragging = false;
    seekTo(showThumb(e.clientX));
  });
  scrub.addEventListener('pointercancel', () => {
    dragging = false;
    thumbPop.hidden = true;
  });
  scrub.addEventListener('pointerleave', () => {
    if (!dragging) thumbPop.hidden = true;
  });
  scrub.addEventListener('keydown', (e) => {
    const cur = video.currentTime * 1000;
    const steps: Record<string, number> = {
      ArrowLeft: cur - KEY_STEP_MS,
      ArrowRight: cur + KEY_STEP_MS,
      PageDown: cur - 10 * KEY_STEP_MS,
      PageUp: cur + 10 * KEY_STEP_MS,
      Home: 0,
      End: durationMs(),
    };
    const t = steps[e.key];
    if (t === undefined) return;
    e.preventDefault();
    seekTo(t);
  });

  // ---- play / pause / speed -------------------------------------------------------------------
  const showPlaying = () => {
    const paused = video.paused || video.ended;
    playBtn.textContent = paused ? 'Play' : 'Pause';
    playBtn.setAttribute('aria-label', paused ? 'Play' : 'Pause');
    playBtn.setAttribute('data-state', paused ? 'paused' : 'playing');
  };
  playBtn.addEventListener('click', () => {
    if (video.paused || video.ended) {
      video.play().then(
        () => setError('play', null),
        (err: unknown) => {
          if (signal.aborted || (err instanceof DOMException && err.name === 'AbortError')) return;
          setError('play', `Playback did not start: ${errorMessage(err)}`);
        },
      );
    } else {
      video.pause();
    }
  });
  for (const ev of ['play', 'pause', 'ended', 'playing']) video.addEventListener(ev, showPlaying);
  speed.addEventListener('change', () => {
    const rate = Number(speed.value);
    if (!SPEEDS.includes(rate as (typeof SPEEDS)[number])) return;
    video.defaultPlaybackRate = rate;
    video.playbackRate = rate;
  });

  // ---- buffering status -----------------------------------------------------------------------
  const setStatus = (text: string | null) => {
    status.hidden = text === null;
    if (text !== null) statusText.textContent = text;
  };
  video.addEventListener('waiting', () => {
    if (!hookState.ready) return;
    const atLiveEdge = isLive && video.currentTime * 1000 >= durationMs() - 500;
    setStatus(atLiveEdge ? 'Waiting for the live session…' : 'Buffering…');
  });
  for (const ev of ['playing', 'seeked', 'canplay']) {
    video.addEventListener(ev, () => {
      if (hookState.ready) setStatus(null);
    });
  }

  // ---- video errors (decode failures, a blocked blob: URL) -------------------------------------
  const onViolation = (e: SecurityPolicyViolationEvent) => {
    if (e.blockedURI.startsWith('blob') || /^(media-src|default-src)/.test(e.effectiveDirective)) {
      setError(
        'csp',
        `The page's Content-Security-Policy blocked the video (${e.effectiveDirective}). The gateway must allow "media-src 'self' blob:".`,
      );
    }
  };
  document.addEventListener('securitypolicyviolation', onViolation);
  signal.addEventListener('abort', () => document.removeEventListener('securitypolicyviolation', onViolation));
  video.addEventListener('error', () => {
    if (signal.aborted || !video.error) return;
    const e = video.error;
    const what =
      e.code === MediaError.MEDIA_ERR_DECODE
        ? 'the video could not be decoded'
        : e.code === MediaError.MEDIA_ERR_SRC_NOT_SUPPORTED
          ? 'the video source was refused'
          : e.code === MediaError.MEDIA_ERR_NETWORK
            ? 'a network error interrupted the video'
            : 'playback failed';
    setError('video', `The browser stopped the video: ${what}${e.message ? ` (${e.message})` : ''}.`);
    setStatus(null);
    playBtn.disabled = true;
  });

  // ---- live polling ---------------------------------------------------------------------------
  let loader: MseLoader | null = null;
  let polls = 0;
  const refreshEvents = async () => {
    try {
      const ev = await getRecordingEvents(id);
      if (signal.aborted) return;
      events = sortEvents(ev);
      setError('events', null);
      renderEvents();
    } catch (err) {
      if (!signal.aborted) setError('events', `Could not load the events: ${errorMessage(err)}`);
    }
  };
  const poll = async () => {
    if (signal.aborted || !isLive) return;
    try {
      const d = normalise(await getRecording(id));
      if (signal.aborted) return;
      detail = d;
      isLive = d.recording.state === 'recording';
      setError('poll', null);
      showMeta();
      renderEvents();
      if (loader) loader.kick();
      else startPlayback();
      polls++;
      if (!isLive || polls % EVENTS_EVERY === 0) await refreshEvents();
    } catch (err) {
      if (!signal.aborted) setError('poll', `Could not refresh the live recording: ${errorMessage(err)}`);
    }
    if (!signal.aborted && isLive) pollTimer = window.setTimeout(() => void poll(), LIVE_POLL_MS);
  };
  let pollTimer = 0;
  signal.addEventListener('abort', () => window.clearTimeout(pollTimer));
  if (isLive) pollTimer = window.setTimeout(() => void poll(), LIVE_POLL_MS);

  // ---- the player -----------------------------------------------------------------------------
  /** Creates the loader once the codec is known (a live recording may have no video yet). */
  const startPlayback = (): void => {
    if (loader || signal.aborted) return;
    if (!detail.codec || detail.segments.length === 0) {
      if (isLive) {
        setStatus('Waiting for the first video segment…');
      } else {
        setStatus(null);
        setError('empty', 'This recording contains no video.');
      }
      return;
    }
    const unsupported = unsupportedReason(detail.codec);
    if (unsupported) {
      setError('codec', unsupported);
      setStatus(null);
      return;
    }
    setError('empty', null);
    setStatus('Loading…');
    const l = new MseLoader({
      video,
      recordingId: id,
      detail: () => detail,
      live: () => isLive,
      signal,
      error: (message, fatal) => {
        setError(fatal ? 'player' : 'loading', message);
        if (fatal) {
          setStatus(null);
          playBtn.disabled = true;
        }
      },
      appended: (first) => {
        hookState.segmentsAppended++;
        if (first) {
          // Start at the beginning of the data (the first key frame may start a little after 0).
          const b = video.buffered;
          if (b.length > 0 && video.currentTime < b.start(0) - 0.001 && b.start(0) < 5) video.currentTime = b.start(0);
        }
        if (!hookState.ready && video.buffered.length > 0) {
          hookState.ready = true;
          playBtn.disabled = false;
          setStatus(null);
        }
      },
    });
    loader = l;
    video.addEventListener('seeking', () => l.seeking());
    for (const ev of ['timeupdate', 'ratechange', 'waiting']) video.addEventListener(ev, () => l.kick());
    void l.start();
  };
  startPlayback();
}

function sortEvents(list: RecordingEvent[] | null): RecordingEvent[] {
  if (!Array.isArray(list)) return [];
  return list.filter((e) => typeof e === 'object' && e !== null && typeof e.t_ms === 'number' && Number.isFinite(e.t_ms)).sort((a, b) => a.t_ms - b.t_ms);
}

/** Defensive copies: arrays present, segments and thumbnails in time order. */
function normalise(d: RecordingDetail): RecordingDetail {
  const segments = Array.isArray(d.segments) ? [...d.segments] : [];
  const thumbnails = Array.isArray(d.thumbnails) ? [...d.thumbnails].sort((a, b) => a.t_ms - b.t_ms) : [];
  return { ...d, inits: Array.isArray(d.inits) ? d.inits : [], segments, thumbnails };
}
