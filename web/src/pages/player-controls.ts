// The recording player's controls and video state: play/pause, speed, the buffering overlay, and
// the errors the video element or the Content-Security-Policy report.

import type { PlayerHook } from '../test-hooks';
import { setStatus, SPEEDS, type ErrorLine, type PlayerDom } from './player-dom';
import { errorMessage } from './util';

export interface PlayerControlsOptions {
  dom: PlayerDom;
  errors: ErrorLine;
  /** The player's test hook: `ready` once something is buffered. */
  hook: PlayerHook;
  /** The recording is still being recorded. */
  isLive: () => boolean;
  /** The timeline's length in ms. */
  durationMs: () => number;
  signal: AbortSignal;
}

/** Wires the play button, the speed select, the buffering overlay and the error reports. */
export function playerControls(o: PlayerControlsOptions): void {
  const { dom, errors, hook, signal } = o;
  const { video, playBtn, speed } = dom;

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
        () => errors.set('play', null),
        (err: unknown) => {
          if (signal.aborted || (err instanceof DOMException && err.name === 'AbortError')) return;
          errors.set('play', `Playback did not start: ${errorMessage(err)}`);
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
  video.addEventListener('waiting', () => {
    if (!hook.ready) return;
    const atLiveEdge = o.isLive() && video.currentTime * 1000 >= o.durationMs() - 500;
    setStatus(dom, atLiveEdge ? 'Waiting for the live session…' : 'Buffering…');
  });
  for (const ev of ['playing', 'seeked', 'canplay']) {
    video.addEventListener(ev, () => {
      if (hook.ready) setStatus(dom, null);
    });
  }

  // ---- video errors (decode failures, a blocked blob: URL) -------------------------------------
  const onViolation = (e: SecurityPolicyViolationEvent) => {
    if (e.blockedURI.startsWith('blob') || /^(media-src|default-src)/.test(e.effectiveDirective)) {
      errors.set(
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
    errors.set('video', `The browser stopped the video: ${what}${e.message ? ` (${e.message})` : ''}.`);
    setStatus(dom, null);
    playBtn.disabled = true;
  });
}
