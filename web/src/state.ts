// Counters end-to-end tests read from `window.__portcullis`.

export interface PortcullisCounters {
  /** End-of-frame messages fully painted (and acknowledged) in the current session. */
  framesPainted: number;
  /** Sequence number of the last painted frame (0 before the first). */
  lastSeq: number;
  /** Session id from the last `init`, null before it arrives. */
  sessionId: string | null;
}

declare global {
  interface Window {
    __portcullis: PortcullisCounters;
  }
}

/** The counters object, created once; pages mutate it in place. */
export function counters(): PortcullisCounters {
  if (!window.__portcullis) {
    window.__portcullis = { framesPainted: 0, lastSeq: 0, sessionId: null };
  }
  return window.__portcullis;
}

/** Zeroes the counters when a new session page opens. */
export function resetCounters(): void {
  const c = counters();
  c.framesPainted = 0;
  c.lastSeq = 0;
  c.sessionId = null;
}
