// Feeds a recording into a <video> through Media Source Extensions: one MediaSource, one
// SourceBuffer in `segments` mode. Segment times come from the media itself (MP4 `tfdt`), so a
// segment lands at `start_ms / 1000` s wherever it is appended. What to load next is decided by the
// pure functions of `recording.ts`; this file only does the fetching and the SourceBuffer calls,
// one at a time (each waits for `updateend`).

import { ApiError, fetchBytes, initUrl, runUrl, segmentUrl, type RecordingDetail } from './api';
import { bufferedEnd, evictionRanges, mimeFor, nextSegmentIndex, prefetchRun, rangesMs, reachedEnd, runLength, timelineMs, type RangeMs } from './model/recording';

/** Keep about this much buffered ahead of the playhead (at 1×; more at higher speeds). */
export const AHEAD_MS = 60_000;
/** On a full buffer, keep this much behind the playhead. */
export const BEHIND_MS = 10_000;
/** The buffer-ahead target never shrinks below this when the browser's buffer is full. */
const MIN_AHEAD_MS = 8_000;
/** How long `sourceopen` may take before the player reports a failure. */
const SOURCE_OPEN_TIMEOUT_MS = 10_000;
/** The loader looks again at least this often when idle. */
const IDLE_MS = 1000;
/** A seek's run also brings this much after the target, so playing on does not wait at once. */
const RUN_PAST_TARGET_MS = 2000;
/** After a failed fetch, wait this long before trying again. */
const RETRY_MS = 2000;
/** Segments per request when playing on (the next ones after the last appended). */
const CONTINUE_RUN = 30;
/**
 * While nothing is needed for the playhead, whole groups of pictures within this distance of it
 * are loaded ahead of need, so that a seek there costs decoding only (no request, no append). A
 * one-hour recording is tens of MB, well within the browser's buffer for a video track.
 */
export const PREFETCH_SPAN_MS = 2 * 3600_000;
/** Segments per prefetch request: big enough to fill an hour in seconds, small enough that a seek
 * arriving meanwhile does not wait long for the append in progress. */
const PREFETCH_RUN = 120;

export interface LoaderHost {
  video: HTMLVideoElement;
  recordingId: string;
  /** The latest detail (replaced while a live recording is polled). */
  detail(): RecordingDetail;
  /** Still being recorded: more segments will come, do not end the stream. */
  live(): boolean;
  /** Shows (or, with null, clears) the loader's error. `fatal`: playback cannot go on. */
  error(message: string | null, fatal?: boolean): void;
  /** A media segment was appended; `first` for the very first one. */
  appended(first: boolean): void;
  /** Aborted when the page goes away. */
  signal: AbortSignal;
  /** Load whole groups of pictures ahead of need while idle (default true). */
  prefetch?: boolean;
  /** Keep this much buffered ahead of the playhead (default AHEAD_MS). */
  aheadMs?: number;
}

/** Can this browser play `codec` through Media Source Extensions? An error message if not. */
export function unsupportedReason(codec: string): string | null {
  if (typeof window.MediaSource === 'undefined') {
    return 'This browser does not support Media Source Extensions, which the player needs. Download the export to watch the recording.';
  }
  const mime = mimeFor(codec);
  if (mime === null || !MediaSource.isTypeSupported(mime)) {
    return `This browser cannot play this recording's video format (video/mp4; codecs="${codec}"). Download the export to watch it elsewhere.`;
  }
  return null;
}

const isQuotaError = (err: unknown): boolean => err instanceof DOMException && err.name === 'QuotaExceededError';

class AppendFailed extends Error {}

export class MseLoader {
  private readonly ms = new MediaSource();
  private readonly url: string;
  private sb: SourceBuffer | null = null;
  private sbCodec = '';
  /** `seq` of the media segment appended last, null before any or after the chain was broken. */
  private lastSeq: number | null = null;
  /** The part whose init segment was appended last. */
  private part: number | null = null;
  private readonly inits = new Map<number, ArrayBuffer>();
  /** A segment the browser refused for lack of space, kept for the retry. */
  private held: { seq: number; last: number; data: ArrayBuffer } | null = null;
  private fetchAc: AbortController | null = null;
  private fetchingSeq: number | null = null;
  private wake: (() => void) | null = null;
  private aheadMs = AHEAD_MS;
  /** Set when the browser's buffer refused prefetched data: no more prefetching (no thrashing). */
  private prefetchFull = false;
  /** Key segments (seq) of the groups loaded ahead of need: each is loaded ahead once at most. */
  private readonly prefetched = new Set<number>();
  private stopped = false;
  private appendedAny = false;
  private errorShown = false;

  constructor(private readonly host: LoaderHost) {
    this.url = URL.createObjectURL(this.ms);
    this.aheadMs = host.aheadMs ?? AHEAD_MS;
    host.signal.addEventListener('abort', () => this.stop());
  }

  /** Attaches the MediaSource to the video and starts loading from the beginning. */
  async start(): Promise<void> {
    const { video } = this.host;
    const detail = this.host.detail();
    const opened = new Promise<boolean>((resolve) => {
      const timer = window.setTimeout(() => resolve(false), SOURCE_OPEN_TIMEOUT_MS);
      this.ms.addEventListener(
        'sourceopen',
        () => {
          window.clearTimeout(timer);
          resolve(true);
        },
        { once: true },
      );
      this.host.signal.addEventListener('abort', () => resolve(false));
    });
    video.src = this.url;
    if (!(await opened)) {
      if (!this.stopped && !video.error) {
        this.host.error('The video could not be attached to the page (the media source never opened).', true);
      }
      return;
    }
    if (this.stopped) return;
    const codec = detail.codec ?? detail.inits[0]?.codec ?? '';
    const mime = mimeFor(codec);
    try {
      if (mime === null) throw new Error(`unusable codec string "${codec}"`);
      this.sb = this.ms.addSourceBuffer(mime);
      this.sb.mode = 'segments';
      this.sbCodec = codec;
    } catch (err) {
      this.host.error(`The browser refused the recording's video format: ${err instanceof Error ? err.message : String(err)}`, true);
      return;
    }
    this.updateDuration();
    void this.run();
  }

  /** Something changed (time, new segments, speed): look again now. */
  kick(): void {
    this.wake?.();
  }

  /** The video started seeking: drop a fetch that is no longer what the new position needs. */
  seeking(): void {
    if (this.fetchAc && this.sb) {
      const next = this.plan();
      const segs = this.host.detail().segments;
      if (next === null || segs[next]?.seq !== this.fetchingSeq) this.fetchAc.abort();
    }
    this.kick();
  }

  private stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.fetchAc?.abort();
    this.kick();
    const { video } = this.host;
    video.removeAttribute('src');
    try {
      video.load();
    } catch {
      // detaching only
    }
    URL.revokeObjectURL(this.url);
  }

  private buffered(): RangeMs[] {
    try {
      return this.sb ? rangesMs(this.sb.buffered) : [];
    } catch {
      return [];
    }
  }

  private lastIndex(): number | null {
    if (this.lastSeq === null) return null;
    const segs = this.host.detail().segments;
    const i = segs.findIndex((s) => s.seq === this.lastSeq);
    return i < 0 ? null : i;
  }

  private plan(): number | null {
    const { video } = this.host;
    const ahead = this.aheadMs * Math.max(1, video.playbackRate / 4);
    return nextSegmentIndex(this.host.detail().segments, this.lastIndex(), video.currentTime * 1000, this.buffered(), ahead);
  }

  /** The MediaSource's duration follows the timeline (it grows while a recording is live). */
  private updateDuration(): void {
    const target = timelineMs(this.host.detail()) / 1000;
    if (this.ms.readyState !== 'open' || !this.sb || this.sb.updating || !(target > 0)) return;
    const d = this.ms.duration;
    if (Number.isNaN(d) || d < target - 0.0005) {
      try {
        this.ms.duration = target;
      } catch {
        // below the buffered end or mid-update: next time
      }
    }
  }

  private idle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        window.clearTimeout(timer);
        if (this.wake === done) this.wake = null;
        resolve();
      };
      const timer = window.setTimeout(done, ms);
      this.wake = done;
    });
  }

  private showError(message: string | null): void {
    if (message === null && !this.errorShown) return;
    this.errorShown = message !== null;
    this.host.error(message);
  }

  private async run(): Promise<void> {
    while (!this.stopped && !this.host.video.error) {
      this.updateDuration();
      let next = this.plan();
      const segs = this.host.detail().segments;
      let count = 0;
      let prefetch = false;
      if (next === null) {
        const ahead =
          this.prefetchFull || this.host.prefetch === false
            ? null
          : prefetchRun(segs, this.buffered(), this.host.video.currentTime * 1000, PREFETCH_SPAN_MS, PREFETCH_RUN, undefined, this.prefetched);
        if (ahead === null) {
          if (!this.host.live() && reachedEnd(segs, this.buffered(), this.host.video.currentTime * 1000)) this.endOfStream();
          await this.idle(IDLE_MS);
          continue;
        }
        [next, count] = ahead;
        prefetch = true;
      } else {
        // After a seek, everything from the key segment to the target is needed before a frame
        // shows: fetch it in one request (contiguous in the recording) rather than one by one.
        // Playing on, the segments up to the buffer-ahead target come a few at a time too.
        const cur = this.host.video.currentTime * 1000;
        count = this.lastIndex() === next - 1 ? runLength(segs, next, cur + this.aheadMs, CONTINUE_RUN) : runLength(segs, next, cur + RUN_PAST_TARGET_MS);
      }
      const seg = segs[next]!;
      const lastSeg = segs[next + Math.max(1, count) - 1]!;
      const ac = new AbortController();
      this.fetchAc = ac;
      this.fetchingSeq = seg.seq;
      let init: ArrayBuffer | null = null;
      let data: ArrayBuffer;
      let lastAppended = lastSeg.seq;
      try {
        if (this.part !== seg.part) init = await this.initSegment(seg.part, ac.signal);
        const held = this.held;
        this.held = null;
        const url = count > 1 ? runUrl(this.host.recordingId, seg.seq, lastSeg.seq) : segmentUrl(this.host.recordingId, seg.seq);
        if (held?.seq === seg.seq) {
          data = held.data;
          lastAppended = held.last;
        } else {
          data = await fetchBytes(url, ac.signal);
        }
      } catch (err) {
        if (this.stopped) return;
        if (ac.signal.aborted) continue; // a seek made it moot
        this.showError(`Could not load part of the video (segment ${seg.seq}): ${describe(err)} Retrying…`);
        await this.idle(RETRY_MS);
        continue;
      } finally {
        if (this.fetchAc === ac) {
          this.fetchAc = null;
          this.fetchingSeq = null;
        }
      }
      if (this.stopped || ac.signal.aborted) continue;
      try {
        if (init) {
          this.switchCodec(seg.part);
          await this.append(init);
          this.part = seg.part;
        }
        await this.append(data);
        if (prefetch) {
          // Appended: if the browser evicts it later, it is not loaded ahead again.
          for (let i = next; i < next + count; i++) if (segs[i]?.key) this.prefetched.add(segs[i]!.seq);
        }
        this.lastSeq = lastAppended;
        const first = !this.appendedAny;
        this.appendedAny = true;
        this.showError(null);
        this.host.appended(first);
      } catch (err) {
        if (this.stopped) return;
        if (isQuotaError(err) && prefetch) {
          // Loading ahead of need filled the buffer: stop that, keep what is there.
          this.prefetchFull = true;
          continue;
        }
        if (isQuotaError(err)) {
          this.held = { seq: seg.seq, last: lastAppended, data }; // no need to download it again
          // Nothing was appended (the browser refused the data up front): the chain is intact
          // unless the eviction removes the segment appended last.
          if (!(await this.evict())) {
            if (this.aheadMs > MIN_AHEAD_MS) {
              // Aim lower: no more than what fitted.
              const cur = this.host.video.currentTime * 1000;
              const fitted = bufferedEnd(this.buffered(), cur) - cur;
              this.aheadMs = Math.max(MIN_AHEAD_MS, Math.min(this.aheadMs / 2, fitted));
            } else if (this.host.video.readyState < HTMLMediaElement.HAVE_FUTURE_DATA) {
              // Stuck: nothing can be freed and the playhead has no data.
              this.showError('The browser’s video buffer is full and nothing can be freed; playback is stalled.');
            }
            await this.idle(IDLE_MS);
          }
          continue;
        }
        this.lastSeq = null;
        if (this.host.video.error) return; // reported by the page's video error handler
        this.host.error(`The browser could not play the recording: ${describe(err)}`, true);
        return;
      }
    }
  }

  private async initSegment(part: number, signal: AbortSignal): Promise<ArrayBuffer> {
    const cached = this.inits.get(part);
    if (cached) return cached;
    const data = await fetchBytes(initUrl(this.host.recordingId, part), signal);
    this.inits.set(part, data);
    return data;
  }

  /** A part with another codec string (e.g. a higher level after a resize) needs `changeType`. */
  private switchCodec(part: number): void {
    const codec = this.host.detail().inits.find((i) => i.part === part)?.codec;
    const sb = this.sb;
    if (!sb || !codec || codec === this.sbCodec) return;
    const mime = mimeFor(codec);
    if (mime && typeof sb.changeType === 'function' && MediaSource.isTypeSupported(mime)) {
      sb.changeType(mime);
      this.sbCodec = codec;
    }
  }

  /** One SourceBuffer operation, resolved on `updateend` (rejected on `error`). */
  private operate(op: (sb: SourceBuffer) => void): Promise<void> {
    const sb = this.sb;
    if (!sb) return Promise.reject(new Error('no SourceBuffer'));
    return new Promise<void>((resolve, reject) => {
      const cleanup = () => {
        sb.removeEventListener('updateend', onEnd);
        sb.removeEventListener('error', onError);
        this.host.signal.removeEventListener('abort', onEnd);
      };
      const onEnd = () => {
        cleanup();
        resolve();
      };
      const onError = () => {
        cleanup();
        reject(new AppendFailed('the media data could not be decoded.'));
      };
      sb.addEventListener('updateend', onEnd);
      sb.addEventListener('error', onError);
      this.host.signal.addEventListener('abort', onEnd);
      try {
        op(sb);
      } catch (err) {
        cleanup();
        reject(err);
      }
    });
  }

  private append(data: ArrayBuffer): Promise<void> {
    // appendBuffer re-opens an ended MediaSource by itself (e.g. a seek back into evicted time).
    return this.operate((sb) => sb.appendBuffer(data));
  }

  /** Frees buffer space far from the playhead; true if anything was removed. */
  private async evict(): Promise<boolean> {
    const ranges = evictionRanges(this.host.detail().segments, this.buffered(), this.host.video.currentTime * 1000, BEHIND_MS, this.aheadMs);
    const lastIdx = this.lastIndex();
    const last = lastIdx === null ? null : this.host.detail().segments[lastIdx]!;
    let removed = false;
    for (const [s, e] of ranges) {
      if (this.stopped || e <= s) continue;
      try {
        await this.operate((sb) => sb.remove(s / 1000, e / 1000));
        removed = true;
        if (last && s < last.end_ms && e > last.start_ms) this.lastSeq = null; // restart at a key segment
      } catch {
        // try the next range
      }
    }
    return removed;
  }

  private endOfStream(): void {
    if (this.ms.readyState !== 'open' || !this.sb || this.sb.updating) return;
    try {
      this.ms.endOfStream();
    } catch {
      // not allowed right now: the next idle round tries again
    }
  }
}

function describe(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  if (err instanceof Error && err.message) return err.message.endsWith('.') ? err.message : `${err.message}.`;
  return 'unknown error.';
}
