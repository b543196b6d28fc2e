// Seeking ahead of the click. A seek inside buffered video still costs decoding from the last key
// frame (hundreds of ms in a long 1080p recording). While the reviewer points at a place (hovers
// the scrub bar, a marker or an event row), a second, invisible video stacked over the first
// seeks there; a click on that same place then shows that video's frame at once, while the main
// video decodes its way to the same frame and takes over. Anything else (another place, a broken
// second video) is the plain seek of the main video.

import type { MseLoader } from '../mse';

/** After the main video's `seeked`, it shows the new frame by this long at the latest. */
const MAIN_SETTLE_MS = 250;
/** A click's seek waits this long at most for the second video already on its way there. */
const ARRIVAL_WAIT_MS = 1500;

/** How the frame at a seek's target first reached the screen. */
export type ShownVia = 'ahead' | 'video';

export interface SeekAheadOptions {
  /** The main video. */
  video: HTMLVideoElement;
  /** Starts a loader feeding `video` (the second one); stopped when `signal` aborts. */
  startLoader: (video: HTMLVideoElement, signal: AbortSignal, broken: () => void) => MseLoader;
  /** The frame at the target of the seek numbered `seek` is on screen. */
  shown: (seek: number, via: ShownVia) => void;
  signal: AbortSignal;
}

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
  /** The second video is on screen. */
  private revealed = false;
  /** A click's target the second video is still on its way to: shown when it arrives, and
   * then the main video seeks (two decoders on the same work would each take twice as long). */
  private revealOnArrival: { t: number; seekMain: () => void; timer: number } | null = null;
  private broken = false;
  /** Seeks of the main video through `seek()`; the current one's number. */
  private seekNo = 0;
  /** The current seek's frame is on screen (through either video). */
  private seekShown = true;
  /** The seek whose frame the second video was last shown for. */
  private revealedNo = 0;

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
    options.signal.addEventListener('abort', () => this.ac.abort());
    el.addEventListener('seeked', () => this.arrived());
    el.addEventListener('error', () => this.break());
    const { video } = options;
    // Playing (or a seek not made through `seek`) is the main video's alone.
    video.addEventListener('play', () => this.hide());
  }

  /** Starts loading the second video (once; after the main one has its first data). */
  start(): void {
    if (this.loader || this.broken || this.ac.signal.aborted) return;
    this.loader = this.o.startLoader(this.el, this.ac.signal, () => this.break());
  }

  /** New segments or a change of the recording: the second loader looks again. */
  kick(): void {
    this.loader?.kick();
  }

  /** The reviewer points at `t` seconds (as `seek` would be asked for it). */
  hint(t: number): void {
    if (!this.loader || this.broken) return;
    if (this.revealed || this.el.seeking) {
      this.pending = t;
      return;
    }
    if (this.target !== t) this.go(t);
  }

  /**
   * A seek to `t` seconds: `seekMain` moves the main video there, at once or, when the second
   * video is on its way there already, once it arrived and shows the frame. Returns the seek's
   * number.
   */
  seek(t: number, seekMain: () => void): number {
    const no = ++this.seekNo;
    this.seekShown = false;
    this.dropArrival(false); // superseded: this seek moves the main video
    if (this.revealed && this.target !== t) this.hide();
    // The main video's events from here on are this seek's.
    const moveMain = () => {
      this.watchMain(no);
      seekMain();
    };
    if (!this.broken && this.target === t) {
      if (this.arrivedAt(t)) {
        this.reveal(no);
      } else {
        const timer = window.setTimeout(() => this.dropArrival(), ARRIVAL_WAIT_MS);
        this.revealOnArrival = { t, seekMain: moveMain, timer };
        return no;
      }
    }
    moveMain();
    return no;
  }

  /** A click waiting for the second video: the main video seeks now (`run`), without waiting more. */
  private dropArrival(run = true): void {
    const w = this.revealOnArrival;
    if (!w) return;
    this.revealOnArrival = null;
    window.clearTimeout(w.timer);
    if (run) w.seekMain();
  }

  private go(t: number): void {
    this.target = t;
    this.pending = null;
    this.el.currentTime = t;
  }

  /** The second video shows its frame at `t`. */
  private arrivedAt(t: number): boolean {
    return this.target === t && !this.el.seeking && this.el.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA;
  }

  private arrived(): void {
    if (this.broken) return;
    const w = this.revealOnArrival;
    if (w && this.arrivedAt(w.t)) {
      this.reveal(this.seekNo);
      this.dropArrival();
      return;
    }
    if (!this.revealed && this.pending !== null && this.pending !== this.target) this.go(this.pending);
  }

  private reveal(no: number): void {
    this.revealed = true;
    this.revealedNo = no;
    this.el.classList.add('shown');
    // On screen with the next paint: two animation frames later it has been painted (even if
    // the main video took over meanwhile: it shows the same frame).
    requestAnimationFrame(() =>
      requestAnimationFrame(() => {
        if (no === this.seekNo && !this.seekShown) {
          this.seekShown = true;
          this.o.shown(no, 'ahead');
        }
      }),
    );
  }

  private hide(): void {
    this.dropArrival();
    if (!this.revealed) return;
    this.revealed = false;
    this.el.classList.remove('shown');
    if (this.pending !== null && !this.el.seeking && this.pending !== this.target) this.go(this.pending);
  }

  /** When the main video presents the frame at seek `no`'s target, it takes over. */
  private watchMain(no: number): void {
    const { video } = this.o;
    const done = () => {
      if (no !== this.seekNo) return;
      // Shown through the second video already: that reports the time it reached the screen.
      if (!this.seekShown && this.revealedNo !== no) {
        this.seekShown = true;
        this.o.shown(no, 'video');
      }
      this.hide();
    };
    if (typeof video.requestVideoFrameCallback === 'function') {
      // Asked from the `seeking` event on: the first frame presented after it is the new one
      // (presented before `seeked` is fired).
      video.addEventListener('seeking', () => video.requestVideoFrameCallback(done), { once: true });
    }
    // Without that callback, or should no frame be presented (the same frame again): shortly
    // after `seeked`, the main video shows the target's frame anyway.
    video.addEventListener('seeked', () => window.setTimeout(done, MAIN_SETTLE_MS), { once: true });
  }

  private break(): void {
    if (this.broken) return;
    this.broken = true;
    this.dropArrival();
    this.hide();
    this.ac.abort();
    this.el.hidden = true;
  }
}
