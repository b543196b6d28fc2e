// Pure logic of the session page: the desktop size to ask for and the session WebSocket's URL.

/** A desktop size in pixels. */
export interface DesktopSize {
  width: number;
  height: number;
}

/** The smallest and largest desktop the gateway accepts as a wish (it clamps to the same). */
export const DESKTOP_MIN: Readonly<DesktopSize> = { width: 640, height: 480 };
export const DESKTOP_MAX: Readonly<DesktopSize> = { width: 4096, height: 2160 };

/**
 * What the page around the canvas takes when it cannot be measured: the header bar (52 px) and
 * the session toolbar (about 47 px) above it, the clipboard panel (280 px) beside it.
 */
export const SESSION_CHROME_FALLBACK = { height: 100, width: 280 } as const;

/**
 * The desktop size to ask for (RDP targets render at the size asked; VNC ignores it): the window's
 * inner size minus the page chrome (`chromeH` above and below the canvas, `chromeW` beside it),
 * rounded down to whole pixels and an even width, clamped to DESKTOP_MIN … DESKTOP_MAX.
 */
export function desktopSizeWish(viewportW: number, viewportH: number, chromeH: number, chromeW = 0): DesktopSize {
  const avail = (total: number, chrome: number) => {
    const v = Math.floor(total - (Number.isFinite(chrome) && chrome > 0 ? chrome : 0));
    return Number.isFinite(v) ? v : 0;
  };
  const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));
  const width = clamp(avail(viewportW, chromeW), DESKTOP_MIN.width, DESKTOP_MAX.width);
  const height = clamp(avail(viewportH, chromeH), DESKTOP_MIN.height, DESKTOP_MAX.height);
  return { width: width - (width % 2), height };
}

/**
 * The WebSocket URL of a target (wss: on https pages, ws: on http), with `?width=W&height=H` when
 * a desktop size is wished.
 */
export function connectUrl(loc: { protocol: string; host: string }, target: string, size?: DesktopSize): string {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  // batch=1: this page reads a frame sent as one message (docs/browser-protocol.md, "Batch").
  const base = `${scheme}//${loc.host}/api/v1/targets/${encodeURIComponent(target)}/connect?batch=1`;
  if (!size) return base;
  return `${base}&width=${Math.trunc(size.width)}&height=${Math.trunc(size.height)}`;
}
