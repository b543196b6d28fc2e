// `#/recordings/<id>`: plays a session recording (Media Source Extensions, see ../mse.ts) with a
// scrub bar carrying the event markers, hover thumbnails, speeds, the event list and the export.
// This file loads the recording, polls it while it is live and starts the loader; the markup is
// player-dom.ts, the scrub bar and events list player-timeline.ts, play/speed/status
// player-controls.ts, the pure parts ../model/recording.ts.

import { ApiError, getRecording, getRecordingEvents, thumbnailUrl, type RecordingDetail, type RecordingEvent, type ThumbnailInfo } from '../api';
import { canReview, type PageContext } from '../context';
import { h } from '../dom';
import { shell } from '../layout';
import { MseLoader, unsupportedReason } from '../mse';
import { SeekAhead } from './player-ahead';
import { hasPictureContent, POSTER_CANDIDATES, timelineMs } from '../model/recording';
import { counters, type PlayerHook } from '../test-hooks';
import { playerControls } from './player-controls';
import { buildPlayerDom, ErrorLine, setStatus, showMeta } from './player-dom';
import { reviewPanel } from './player-review';
import { PlayerTimeline } from './player-timeline';
import { errorMessage } from './util';

/** While the recording is live, its detail is polled this often. */
export const LIVE_POLL_MS = 1000;
/** … and its events every this many polls. */
const EVENTS_EVERY = 3;

/** Where the player opens: a moment (ms on the recording's clock) and boxes to draw there (desktop pixels). */
export interface PlayerStart {
  atMs: number;
  boxes: { x: number; y: number; w: number; h: number }[];
}

export async function renderPlayer(ctx: PageContext, id: string, start?: PlayerStart): Promise<void> {
  const { signal } = ctx;
  const hookState: PlayerHook = { ready: false, currentTime: () => 0, seeks: 0, lastSeekTarget: null, segmentsAppended: 0, posterSeq: null, shown: [], ahead: null };
  const hooks = counters();
  hooks.player = hookState;
  signal.addEventListener('abort', () => {
    if (hooks.player === hookState) hooks.player = null;
  });

  const dom = buildPlayerDom(shell(ctx.root, ctx.me, 'recordings', 'page player-page'), id);
  const { video, playBtn } = dom;
  const errors = new ErrorLine(dom.errorBox);
  hookState.currentTime = () => video.currentTime;

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
    errors.set('detail', message);
    dom.status.hidden = true;
    dom.eventsNote.textContent = '';
    dom.exportLink.hidden = true;
    for (const dd of Object.values(dom.meta)) dd.textContent = '—';
    return;
  }
  if (signal.aborted) return;
  errors.set('events', eventsError);
  if (signal.aborted) return;

  let isLive = detail.recording.state === 'recording';
  const durationMs = () => timelineMs(detail);
  showMeta(dom, detail, durationMs(), isLive);

  // ---- seeking --------------------------------------------------------------------------------
  /** The video time (s) a seek to `ms` goes to: within the timeline. */
  const seekSeconds = (ms: number) => {
    const d = durationMs();
    return Math.min(Math.max(0, ms), d > 0 ? d : Math.max(0, ms)) / 1000;
  };
  /** Set once the main video has data: a second video seeks where the reviewer points. */
  let ahead: SeekAhead | null = null;
  /** A seek asked for in the UI (scrub bar, marker, event row, keys): counted for the test hook. */
  const seekTo = (ms: number) => {
    const t = seekSeconds(ms);
    hookState.seeks++;
    hookState.lastSeekTarget = t;
    hidePoster();
    hookState.shown.push({ seek: hookState.seeks, target: t, at: performance.now(), shownAt: null, via: null });
    if (hookState.shown.length > 50) hookState.shown.shift();
    const seekMain = () => {
      video.currentTime = t;
    };
    if (ahead) {
      seekIds.clear(); // only the latest seek's frame is reported
      seekIds.set(ahead.seek(t, seekMain), hookState.seeks);
    }
    else seekMain();
  };
  /** The reviewer points at `ms` (scrub bar hover, a marker, an event row). */
  const pointAt = (ms: number) => ahead?.hint(seekSeconds(ms));
  /** Seek numbers of the second video's bookkeeping → the hook's seek numbers. */
  const seekIds = new Map<number, number>();
  const onShown = (no: number, via: 'ahead' | 'video') => {
    const id = seekIds.get(no);
    seekIds.delete(no);
    const rec = hookState.shown.find((r) => r.seek === id);
    if (rec && rec.shownAt === null) {
      rec.shownAt = performance.now();
      rec.via = via;
    }
  };

  // ---- poster ---------------------------------------------------------------------------------
  // The first frame is what the server showed when the session opened, often black (an RDP
  // desktop is drawn a second or two later). Until the reviewer plays or seeks, the stage shows the
  // first thumbnail with content instead; the playhead stays at the start, so nothing is skipped.
  let posterDone = false;
  const hidePoster = () => {
    posterDone = true;
    dom.poster.hidden = true;
  };
  video.addEventListener('playing', hidePoster);
  void choosePoster(id, detail.thumbnails, signal).then((th) => {
    if (!th || posterDone || signal.aborted) return;
    dom.poster.src = thumbnailUrl(id, th.seq);
    dom.poster.hidden = false;
    hookState.posterSeq = th.seq;
  });

  // Where the player is going (a click waiting for the second video), for the arrow keys.
  const positionMs = () => (ahead?.waitingTarget() ?? video.currentTime) * 1000;
  // Flagged moments ride in the timeline with the recorded events (markers, rows).
  let flags: RecordingEvent[] = [];
  let shown: RecordingEvent[] = events;
  const merge = () => {
    shown = flags.length ? sortEvents([...events, ...flags]) : events;
  };
  const timeline = new PlayerTimeline({ dom, recordingId: id, detail: () => detail, events: () => shown, durationMs, seekTo, pointAt, positionMs, signal });
  if (canReview(ctx.me)) {
    dom.side.insertBefore(
      reviewPanel({
        me: ctx.me,
        id,
        positionMs,
        seekTo,
        isLive: () => isLive,
        flagsChanged: (list) => {
          flags = list;
          merge();
          timeline.renderEvents();
        },
        signal,
      }),
      dom.eventsCard,
    );
  }
  playerControls({ dom, errors, hook: hookState, isLive: () => isLive, durationMs, signal });

  // ---- live polling ---------------------------------------------------------------------------
  let loader: MseLoader | null = null;
  let polls = 0;
  const refreshEvents = async () => {
    try {
      const ev = await getRecordingEvents(id);
      if (signal.aborted) return;
      events = sortEvents(ev);
      merge();
      errors.set('events', null);
      timeline.renderEvents();
    } catch (err) {
      if (!signal.aborted) errors.set('events', `Could not load the events: ${errorMessage(err)}`);
    }
  };
  const poll = async () => {
    if (signal.aborted || !isLive) return;
    try {
      const d = normalise(await getRecording(id));
      if (signal.aborted) return;
      detail = d;
      isLive = d.recording.state === 'recording';
      errors.set('poll', null);
      showMeta(dom, detail, durationMs(), isLive);
      timeline.renderEvents();
      if (loader) loader.kick();
      else startPlayback();
      ahead?.kick();
      polls++;
      if (!isLive || polls % EVENTS_EVERY === 0) await refreshEvents();
    } catch (err) {
      if (!signal.aborted) errors.set('poll', `Could not refresh the live recording: ${errorMessage(err)}`);
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
        setStatus(dom, 'Waiting for the first video segment…');
      } else {
        setStatus(dom, null);
        errors.set('empty', 'This recording contains no video.');
      }
      return;
    }
    const unsupported = unsupportedReason(detail.codec);
    if (unsupported) {
      errors.set('codec', unsupported);
      setStatus(dom, null);
      return;
    }
    errors.set('empty', null);
    setStatus(dom, 'Loading…');
    const l = new MseLoader({
      video,
      recordingId: id,
      detail: () => detail,
      live: () => isLive,
      signal,
      error: (message, fatal) => {
        errors.set(fatal ? 'player' : 'loading', message);
        if (fatal) {
          setStatus(dom, null);
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
          setStatus(dom, null);
          startAhead();
          // Opened at a search hit: there, with its words boxed until the video plays.
          if (start) {
            seekTo(start.atMs);
            showBoxes(video, start.boxes, signal);
          }
        }
      },
    });
    loader = l;
    video.addEventListener('seeking', () => l.seeking());
    for (const ev of ['timeupdate', 'ratechange', 'waiting']) video.addEventListener(ev, () => l.kick());
    void l.start();
  };
  /** The second video: fed by its own loader, silent about its errors (it only speeds seeks up). */
  const startAhead = (): void => {
    if (ahead || signal.aborted) return;
    ahead = new SeekAhead({
      video,
      signal,
      shown: onShown,
      startLoader: (el, aheadSignal, failed) => {
        // Only what a seek there needs (from its key frame to a little past it): no loading
        // ahead of need, no second copy of the whole recording.
        const l = new MseLoader({
          video: el,
          recordingId: id,
          detail: () => detail,
          live: () => isLive,
          signal: aheadSignal,
          prefetch: false,
          aheadMs: 2000,
          error: (message, fatal) => {
            if (message !== null) failed(fatal === true);
          },
          appended: () => {},
        });
        el.addEventListener('seeking', () => l.seeking());
        void l.start();
        return l;
      },
    });
    hookState.ahead = ahead.el;
  };
  startPlayback();
}

/** The first of the first few thumbnails that shows something (not one colour), or null. */
/** Thumbnails this close to the first one show the screen as the session opened (see choosePoster). */
const POSTER_SKIP_MS = 1000;

async function choosePoster(id: string, thumbs: readonly ThumbnailInfo[], signal: AbortSignal): Promise<ThumbnailInfo | null> {
  // The picture at the connection's first moment is often black or half drawn (the server is still
  // sending the screen): a later thumbnail with content goes first, that one only if none has.
  const candidates = thumbs.slice(0, POSTER_CANDIDATES);
  const first = thumbs[0]?.t_ms ?? 0;
  const atOpen = (th: ThumbnailInfo) => th.t_ms < first + POSTER_SKIP_MS;
  for (const th of [...candidates.filter((t) => !atOpen(t)), ...candidates.filter(atOpen)]) {
    if (signal.aborted) return null;
    try {
      const img = new Image();
      img.src = thumbnailUrl(id, th.seq);
      await img.decode();
      const c = document.createElement('canvas');
      c.width = img.naturalWidth;
      c.height = img.naturalHeight;
      const ctx = c.getContext('2d', { willReadFrequently: true });
      if (!ctx || c.width === 0 || c.height === 0) continue;
      ctx.drawImage(img, 0, 0);
      if (hasPictureContent(ctx.getImageData(0, 0, c.width, c.height).data)) return th;
    } catch {
      // an unreadable thumbnail: try the next
    }
  }
  return null;
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

/**
 * Boxes (desktop pixels) over the video where the picture is (the video keeps its aspect: it is
 * letterboxed in its element), kept in place as the page resizes, gone once the video plays.
 */
function showBoxes(video: HTMLVideoElement, boxes: PlayerStart['boxes'], signal: AbortSignal): void {
  const stage = video.parentElement;
  if (!stage || boxes.length === 0) return;
  const layer = h('div', { id: 'player-boxes', class: 'player-boxes', 'aria-hidden': 'true' });
  const spans = boxes.map(() => h('span', { class: 'search-box' }));
  layer.append(...spans);
  stage.append(layer);
  const place = () => {
    const vw = video.videoWidth;
    const vh = video.videoHeight;
    if (!vw || !vh) return;
    const scale = Math.min(video.clientWidth / vw, video.clientHeight / vh);
    const left = video.offsetLeft + (video.clientWidth - vw * scale) / 2;
    const top = video.offsetTop + (video.clientHeight - vh * scale) / 2;
    boxes.forEach((b, i) => {
      const s = spans[i].style;
      s.left = `${left + b.x * scale}px`;
      s.top = `${top + b.y * scale}px`;
      s.width = `${b.w * scale}px`;
      s.height = `${b.h * scale}px`;
    });
  };
  place();
  video.addEventListener('loadedmetadata', place, { signal });
  window.addEventListener('resize', place, { signal });
  video.addEventListener('play', () => layer.remove(), { once: true, signal });
}
