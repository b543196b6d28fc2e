// Seeking ahead of the click. A seek inside buffered video still costs decoding from the last key
// frame (hundreds of ms in a long 1080p recording). While the reviewer points at a place (rests
// the pointer on the scrub bar, a marker or an event row), a second, invisible video stacked over
// the first seeks there; a click on that same place then shows that video's frame at once, while
// the main video decodes its way to the same frame and takes over. Anything else (another place,
// a second video not there yet or broken) is the plain seek of the main video.

import type { MseLoader } from '../mse';

/** The pointer rests this long before the second video seeks (no decode per pointer move). */
const REST_MS = 80;
/** After the main video's `seeked`, it shows the new frame by this long at the latest. */
const MAIN_SETTLE_MS = 250;
/** A click's seek waits this long at most for the second video already on its way there. */
const ARRIVAL_WAIT_MS = 1500;
/** Failed loads of the second video before it is given up (it only speeds seeks up). */
const MAX_LOAD_ERRORS = 3;

/** How the frame at a seek's target first reached the screen. */
export type ShownVia = 'ahead' | 'video';

export interface SeekAheadOptions {
  /** The main video. */
  video: HTMLVideoElement;
  /** Starts a loader feeding `video` (the second one); stopped when `signal` aborts. */
  startLoader: (video: HTMLVideoElement, signal: AbortSignal, failed: (fatal: boolean) => void) => MseLoader;
  /** The frame at the target of the seek numbered `seek` is on screen. */
  shown: (seek: number, via: ShownVia) => void;
  signal: AbortSignal;
}

const near = (a: number, b: number) => Math.abs(a - b) < 0.002;

export class SeekAhead {
  /** The second video (hidden unless it shows a seek's frame). */
  readonly el: HTMLVideoElement;
  private readonly o: SeekAheadOptions;
  private readonly ac = new AbortController();
  private loader: MseLoader | null = null;
  /** Where the second video was last sent (seconds), in flight or arrived. */
  private target: number | null = null;
  /** The place pointed at while the second video could not follow (busy or shown). */
  private pending: number | null = null;
  private restTimer = 0;
  /** The second video is on screen. */
  private revealed = false;
  /** A click's target the second video is still on its way to: shown when it arrives, and
   * then the main video seeks (two decoders on the same work would each take twice as long). */
  private waiting: { t: number; seekMain: () => void; timer: number } | null = null;
  private broken = false;
  private loadErrors = 0;
  /** Seeks through `seek()`; the current one's number. */
  private seekNo = 0;
  /** The current seek's frame is on screen (through either video). */
  private seekShown = true;
  /** The seek whose frame the second video was last shown for. */
  private revealedNo = 0;
  /** Media time of the frame the second video presented last (when the browser tells). */
  private aheadFrame: number | null = null;

  constructor(options: SeekAheadOptions) {
    this.o = options;
    const el = document.createElement('video');
    el.id = 'player-ahead';
    el.className = 'player-video player-ahead';
    el.muted = true;
    el.playsInline = true;
    el.preload = 'auto';
    el.disablePictureInPicture = true;
    el.tabIndex = -1;
    el.setAttribute('aria-hidden', 'true');
    this.el = el;
    // Right over the main video, under the poster and the status overlay.
    options.video.after(el);
    options.signal.addEventListener('abort', () => {
      window.clearTimeout(this.restTimer);
      if (this.waiting) window.clearTimeout(this.waiting.timer);
      this.waiting = null;
      this.ac.abort();
    });
    el.addEventListener('seeking', () => {
      this.aheadFrame = null;
      if (typeof el.requestVideoFrameCallback === 'function') {
        el.requestVideoFrameCallback((_now, md) => {
          if (!el.seeking) this.aheadFrame = md.mediaTime;
        });
      }
    });
    el.addEventListener('seeked', () => this.arrived());
    el.addEventListener('error', () => this.break());
    // Playing is the main video's alone.
    options.video.addEventListener('play', () => this.hide());
  }

  /** New segments or a change of the recording: the second loader looks again. */
  kick(): void {
    this.loader?.kick();
  }

  /** Where the player is going: a click's target still waiting for the second video, else null. */
  waitingTarget(): number | null {
    return this.waiting?.t ?? null;
  }

  /** The reviewer points at `t` seconds (as `seek` would be asked for it): once the pointer
   * rests there, the second video goes there (while the main video is paused). */
  hint(t: number): void {
    window.clearTimeout(this.restTimer);
    if (this.broken || !this.o.video.paused) return;
    this.restTimer = window.setTimeout(() => this.pointed(t), REST_MS);
  }

  private pointed(t: number): void {
    if (this.broken || this.ac.signal.aborted || this.waiting) return;
    if (!this.loader) {
      this.loader = this.o.startLoader(this.el, this.ac.signal, (fatal) => {
        if (fatal || ++this.loadErrors >= MAX_LOAD_ERRORS) this.break();
      });
    }
    if (this.revealed || this.el.seeking) {
      this.pending = t;
      return;
    }
    if (this.target !== t) this.go(t);
  }

  /**
   * A seek to `t` seconds: `seekMain` moves the main video there, at once or, when the second
   * video is seeking there already, once it arrived and shows the frame. Returns the seek's
   * number.
   */
  seek(t: number, seekMain: () => void): number {
    const no = ++this.seekNo;
    this.seekShown = false;
    window.clearTimeout(this.restTimer);
    // Superseded: this seek moves the main video itself.
    if (this.waiting) window.clearTimeout(this.waiting.timer);
    this.waiting = null;
    // The main video goes there: the second one need not follow.
    if (this.pending === t) this.pending = null;
    // The main video's events from here on are this seek's. A second video shown for an
    // earlier seek stays until the main video shows this one's frame (no flash back).
    const moveMain = () => {
      this.watchMain(no, t);
      seekMain();
    };
    if (!this.broken && this.target === t) {
      if (this.arrivedAt(t)) {
        this.reveal(no);
      } else if (this.el.seeking && !this.revealed) {
        const timer = window.setTimeout(() => this.release(), ARRIVAL_WAIT_MS);
        this.waiting = { t, seekMain: moveMain, timer };
        return no;
      }
    }
    moveMain();
    return no;
  }

  /** A click waiting for the second video: the main video seeks now, without waiting more. */
  private release(): void {
    const w = this.waiting;
    if (!w) return;
    this.waiting = null;
    window.clearTimeout(w.timer);
    w.seekMain();
  }

  private go(t: number): void {
    this.target = t;
    this.pending = null;
    this.el.currentTime = t;
  }

  /** The second video shows its frame at `t` (where it really is, not only where it was sent:
   * a time past its own media's end is clamped). */
  private arrivedAt(t: number): boolean {
    return this.target === t && !this.el.seeking && near(this.el.currentTime, t) && this.el.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA;
  }

  private arrived(): void {
    if (this.broken) return;
    const w = this.waiting;
    if (w) {
      if (this.arrivedAt(w.t)) this.reveal(this.seekNo);
      this.release();
      return;
    }
    if (!this.revealed && this.pending !== null && this.pending !== this.target) this.go(this.pending);
  }

  private reveal(no: number): void {
    this.revealed = true;
    this.revealedNo = no;
    this.el.classList.add('shown');
    // On screen with the next paint: two animation frames later it has been painted.
    requestAnimationFrame(() =>
      requestAnimationFrame(() => {
        if (no === this.seekNo && this.revealed && this.revealedNo === no && !this.seekShown) {
          this.seekShown = true;
          this.o.shown(no, 'ahead');
        }
      }),
    );
  }

  private hide(): void {
    this.release();
    if (!this.revealed) return;
    this.revealed = false;
    this.el.classList.remove('shown');
    if (this.pending !== null && !this.el.seeking && this.pending !== this.target) this.go(this.pending);
  }

  /** When the main video presents the frame at seek `no`'s target `t`, it takes over. */
  private watchMain(no: number, t: number): void {
    const { video } = this.o;
    const takeOver = () => {
      if (!this.seekShown) {
        this.seekShown = true;
        this.o.shown(no, 'video');
      }
      this.hide();
    };
    // The main video is going to `t` (not still to an earlier target).
    const atTarget = () => no === this.seekNo && near(video.currentTime, t);
    if (typeof video.requestVideoFrameCallback === 'function') {
      // From this seek's `seeking` on, the frames presented are the new position's (presented
      // before `seeked`); when the second video is shown, the very frame it shows.
      const onFrame = (_now: number, md: VideoFrameCallbackMetadata) => {
        if (!atTarget()) return;
        const shownFrame = this.revealed && this.revealedNo === no ? this.aheadFrame : null;
        if (shownFrame === null || md.mediaTime === shownFrame) takeOver();
        else video.requestVideoFrameCallback(onFrame);
      };
      video.addEventListener('seeking', () => video.requestVideoFrameCallback(onFrame), { once: true });
    }
    // Without frame callbacks, or should no new frame be presented: shortly after `seeked` (at
    // once while playing: a still picture must not cover a playing video).
    video.addEventListener(
      'seeked',
      () => {
        const settle = () => {
          if (atTarget() && !video.seeking) takeOver();
        };
        if (!video.paused) settle();
        else window.setTimeout(settle, MAIN_SETTLE_MS);
      },
      { once: true },
    );
  }

  private break(): void {
    if (this.broken) return;
    this.broken = true;
    window.clearTimeout(this.restTimer);
    this.hide();
    this.ac.abort();
    this.el.hidden = true;
  }
}
