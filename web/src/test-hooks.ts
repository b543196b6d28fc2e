// Test hooks: the counters and player state the end-to-end tests (`web/e2e/`) read from
// `window.__portcullis`. The session, watch and player pages write them as they go; the UI itself
// reads back only the player's `ready` flag.

/** The recording player's state (`#/recordings/<id>`), null on every other page. */
export interface PlayerHook {
  /** The first init segment and the first media segment are appended and something is buffered. */
  ready: boolean;
  /** The video's current time in seconds. */
  currentTime(): number;
  /** Seeks asked for in the player UI: scrub bar click/drag, marker, event row, arrow keys. */
  seeks: number;
  /** Target of the last of those seeks in seconds (clamped to 0..duration), null before any. */
  lastSeekTarget: number | null;
  /** Media segments appended to the SourceBuffer (init segments not counted; re-appends counted). */
  segmentsAppended: number;
  /** Manifest line of the thumbnail shown as the poster (the first with content), null if none. */
  posterSeq: number | null;
  /**
   * The last seeks (at most 50): asked for at `at` (performance.now()), the frame at the target
   * on screen at `shownAt`, through the second video that went there ahead of the click
   * (`ahead`) or the main video (`video`).
   */
  shown: { seek: number; target: number; at: number; shownAt: number | null; via: 'ahead' | 'video' | null }[];
  /** The second video that seeks where the reviewer points, once it exists. */
  ahead: HTMLVideoElement | null;
}

export interface PortcullisCounters {
  /** End-of-frame messages fully painted (and acknowledged) in the current session. */
  framesPainted: number;
  /** Copy messages (canvas to canvas) painted in the current session. */
  copiesPainted: number;
  /** Sequence number of the last painted frame (0 before the first). */
  lastSeq: number;
  /** Session id from the last `init`, null before it arrives. */
  sessionId: string | null;
  /** The recording player, while its page is open. */
  player: PlayerHook | null;
  /** Session changes the SOC console was told of (server-sent events). */
  socPushes?: number;
  /** Set by a test: the SOC console stops polling (only the stream keeps it current). */
  socPollPaused?: boolean;
}

declare global {
  interface Window {
    __portcullis: PortcullisCounters;
  }
}

/** The counters object, created once; pages mutate it in place. */
export function counters(): PortcullisCounters {
  if (!window.__portcullis) {
    window.__portcullis = { framesPainted: 0, copiesPainted: 0, lastSeq: 0, sessionId: null, player: null };
  }
  return window.__portcullis;
}

/** Zeroes the counters when a new session page opens. */
export function resetCounters(): void {
  const c = counters();
  c.framesPainted = 0;
  c.copiesPainted = 0;
  c.lastSeq = 0;
  c.sessionId = null;
}
