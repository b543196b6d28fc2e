// Pure logic of the recordings pages (no DOM, no Media Source): what to load, where to seek,
// what to show. Times are milliseconds from the recording start unless a name says otherwise.
// Contract: docs/browser-protocol.md, "Recordings".

import type { RecordingDetail, RecordingEvent, SegmentInfo, ThumbnailInfo } from '../api';

/** A buffered time range in milliseconds, `[start, end]`. */
export type RangeMs = readonly [number, number];

/** Gaps and overlaps smaller than this are rounding (frame durations vs. segment times), not holes. */
export const TOLERANCE_MS = 100;

/** `#/recordings/<id>` for a recording. */
export const recordingHref = (id: string): string => `#/recordings/${encodeURIComponent(id)}`;

// ---- formatting ---------------------------------------------------------------------------------

const pad2 = (n: number): string => String(n).padStart(2, '0');

/** A player clock: `m:ss` under an hour, `h:mm:ss` from one hour on. Negative/NaN → `0:00`. */
export function formatClock(ms: number): string {
  const total = Number.isFinite(ms) && ms > 0 ? Math.floor(ms / 1000) : 0;
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return h > 0 ? `${h}:${pad2(m)}:${pad2(s)}` : `${m}:${pad2(s)}`;
}

/** A duration for tables: `45s`, `3m 07s`, `2h 05m 09s`. */
export function formatDuration(ms: number): string {
  const total = Number.isFinite(ms) && ms > 0 ? Math.round(ms / 1000) : 0;
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h ${pad2(m)}m ${pad2(s)}s`;
  if (m > 0) return `${m}m ${pad2(s)}s`;
  return `${s}s`;
}

/** A byte count: `512 B`, `1.5 KB`, `12 MB`, … (powers of 1024). */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  if (u === 0) return `${v} B`;
  return `${v < 10 ? v.toFixed(1) : Math.round(v).toString()} ${units[u]}`;
}

// ---- list filters -------------------------------------------------------------------------------

/** The list page's filter inputs, as typed. `from`/`to` are `<input type="datetime-local">` values. */
export interface RecordingFilters {
  user: string;
  target: string;
  /** '' (any), `recording`, `complete` or `incomplete`. */
  state: string;
  from: string;
  to: string;
  /** The lowest risk score shown: '' (any), or one of [`RISK_LEVELS`]' values. */
  risk: string;
  /** '' (newest first) or `risk` (riskiest first). */
  sort: string;
  /** '' (any), `reviewed` or `unreviewed` (never marked, or reopened); not offered to plain users. */
  review: string;
}

export const EMPTY_FILTERS: RecordingFilters = { user: '', target: '', state: '', from: '', to: '', risk: '', sort: '', review: '' };

/** The risk filter's choices: label and lowest score. */
export const RISK_LEVELS = [
  { label: 'flagged (any risk)', min: '1' },
  { label: 'high (50 or more)', min: '50' },
] as const;

export const RECORDING_STATES = ['recording', 'complete', 'incomplete'] as const;

/**
 * Parses a `datetime-local` value (`YYYY-MM-DDTHH:MM`, optionally `:SS` and a fraction) as local
 * time; Unix milliseconds, or null when empty or malformed.
 */
export function parseLocalDateTime(value: string): number | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3})\d*)?)?$/.exec(value.trim());
  if (!m) return null;
  const [y, mo, d, hh, mm] = [m[1], m[2], m[3], m[4], m[5]].map(Number) as [number, number, number, number, number];
  const ss = m[6] !== undefined ? Number(m[6]) : 0;
  const msec = m[7] !== undefined ? Number(m[7].padEnd(3, '0')) : 0;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || hh > 23 || mm > 59 || ss > 59) return null;
  const date = new Date(2000, mo - 1, d, hh, mm, ss, msec);
  date.setFullYear(y, mo - 1, d);
  // Reject rollovers such as 31 February.
  if (date.getFullYear() !== y || date.getMonth() !== mo - 1 || date.getDate() !== d) return null;
  return date.getTime();
}

/**
 * The query string of `GET /api/v1/recordings` for the filters:
 * `?user=…&target=…&state=…&from=…&to=…&min_risk=…&sort=risk` with only the set ones (`from`/`to`
 * as Unix ms), or '' when none is set.
 */
export function recordingsQuery(f: RecordingFilters): string {
  const q = new URLSearchParams();
  if (f.user.trim() !== '') q.set('user', f.user.trim());
  if (f.target.trim() !== '') q.set('target', f.target.trim());
  if ((RECORDING_STATES as readonly string[]).includes(f.state)) q.set('state', f.state);
  const from = parseLocalDateTime(f.from);
  if (from !== null) q.set('from', String(from));
  const to = parseLocalDateTime(f.to);
  if (to !== null) q.set('to', String(to));
  if (RISK_LEVELS.some((l) => l.min === f.risk)) q.set('min_risk', f.risk);
  if (f.sort === 'risk') q.set('sort', 'risk');
  if (f.review === 'reviewed' || f.review === 'unreviewed') q.set('review', f.review);
  const s = q.toString();
  return s === '' ? '' : `?${s}`;
}

// ---- timeline -----------------------------------------------------------------------------------

/** The scrub bar's length: the last segment's end, or the recording's duration before any segment. */
export function timelineMs(detail: Pick<RecordingDetail, 'segments' | 'recording'>): number {
  const last = detail.segments[detail.segments.length - 1];
  if (last) return Math.max(0, last.end_ms);
  return Math.max(0, detail.recording.duration_ms || 0);
}

/** `t` as a fraction 0..1 of `duration` (0 when the duration is not positive). */
export function fractionOf(tMs: number, durationMs: number): number {
  if (!(durationMs > 0) || !Number.isFinite(tMs)) return 0;
  return Math.min(1, Math.max(0, tMs / durationMs));
}

/** The time under a pointer at `clientX` over a bar spanning `left`..`left + width`. */
export function timeAtX(clientX: number, left: number, width: number, durationMs: number): number {
  if (!(width > 0)) return 0;
  return fractionOf(clientX - left, width) * Math.max(0, durationMs);
}

// ---- seeking and loading ------------------------------------------------------------------------

/** Index of the last key segment at or before `i`, or else the first key segment after it; -1 if none. */
export function keyIndexAtOrBefore(segments: readonly SegmentInfo[], i: number): number {
  for (let k = Math.min(i, segments.length - 1); k >= 0; k--) if (segments[k]!.key) return k;
  for (let k = Math.max(0, i + 1); k < segments.length; k++) if (segments[k]!.key) return k;
  return -1;
}

/**
 * The segment a seek to `tMs` must start loading from: the last key segment with
 * `start_ms <= tMs` (the first key segment when `tMs` is before all of them); -1 if there is none.
 */
export function keySegmentIndex(segments: readonly SegmentInfo[], tMs: number): number {
  let found = -1;
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    if (s.start_ms > tMs) break;
    if (s.key) found = i;
  }
  return found >= 0 ? found : keyIndexAtOrBefore(segments, 0);
}

/** `TimeRanges`-like → sorted millisecond ranges. */
export function rangesMs(tr: { length: number; start(i: number): number; end(i: number): number }): RangeMs[] {
  const out: [number, number][] = [];
  for (let i = 0; i < tr.length; i++) out.push([tr.start(i) * 1000, tr.end(i) * 1000]);
  out.sort((a, b) => a[0] - b[0]);
  return out;
}

/**
 * Where the data playable from `tMs` without a hole ends: the end of the buffered range around
 * `tMs` (ranges closer than `tol` count as one), or `tMs` itself when nothing is buffered there.
 */
export function bufferedEnd(buffered: readonly RangeMs[], tMs: number, tol = TOLERANCE_MS): number {
  let end = tMs;
  for (const [s, e] of buffered) {
    if (s - tol <= end && e > end) end = e;
  }
  return end;
}

/**
 * The next segment to fetch and append, or null when nothing is needed now.
 *
 * - `lastAppended`: index of the segment appended last (null before any). Every append is either a
 *   key segment or the successor of the previous append, so the decoder's chain stays intact.
 * - Loads what is missing from the playhead `currentMs` on, until `aheadMs` past it is buffered.
 * - The first missing segment is appended directly when it continues the last append (or the
 *   re-append of its group of pictures in progress); otherwise loading restarts at the key segment
 *   at or before it (a seek into an unbuffered time, or a hole from an eviction).
 */
export function nextSegmentIndex(
  segments: readonly SegmentInfo[],
  lastAppended: number | null,
  currentMs: number,
  buffered: readonly RangeMs[],
  aheadMs: number,
  tol = TOLERANCE_MS,
): number | null {
  const last = segments[segments.length - 1];
  if (!last) return null;
  // At (or past) the very end, what is needed is the last segment.
  const t = Math.min(currentMs, last.start_ms);
  const end = bufferedEnd(buffered, t, tol);
  if (end >= t + aheadMs) return null;
  // The first segment not yet covered by the buffered run around the playhead.
  const i = segments.findIndex((s) => s.end_ms > end + tol);
  if (i < 0) return null;
  const k = keyIndexAtOrBefore(segments, i);
  if (k < 0) return null; // no key segment at all: nothing is playable
  if (lastAppended !== null && lastAppended >= k - 1 && lastAppended < i) return lastAppended + 1;
  return k;
}

/** Whether `[fromMs, toMs]` lies inside one buffered run (gaps under `tol` are no holes). */
export function isBuffered(buffered: readonly RangeMs[], fromMs: number, toMs: number, tol = TOLERANCE_MS): boolean {
  const inside = buffered.some(([s, e]) => s - tol <= fromMs && fromMs <= e + tol);
  return inside && bufferedEnd(buffered, fromMs, tol) >= toMs - tol;
}

/**
 * What to load ahead of need while nothing is needed for the playhead, so that a later seek
 * finds its data buffered and costs only decoding: `[from, count]`, a run of whole groups of
 * pictures (each from a key segment to the segment before the next key segment) not yet
 * buffered, of the playhead's part, within `spanMs` of the playhead, at most `maxRun` segments;
 * the first such group after the playhead, else the nearest before it; never a group whose key
 * segment's seq is in `loadedBefore` (prefetched once already). Null when there is none.
 */
export function prefetchRun(
  segments: readonly SegmentInfo[],
  buffered: readonly RangeMs[],
  currentMs: number,
  spanMs: number,
  maxRun: number,
  tol = TOLERANCE_MS,
  loadedBefore: ReadonlySet<number> = new Set(),
): [number, number] | null {
  if (segments.length === 0 || maxRun < 1) return null;
  const here = Math.max(0, keySegmentIndex(segments, currentMs));
  const part = segments[here]!.part;
  // Groups of pictures of the playhead's part: [first, last] segment indices.
  const groups: [number, number][] = [];
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    if (s.part !== part) continue;
    if (s.key || groups.length === 0) groups.push([i, i]);
    else groups[groups.length - 1]![1] = i;
  }
  const missing = ([a, b]: [number, number]) => {
    const first = segments[a]!;
    const last = segments[b]!;
    const near = first.start_ms <= currentMs + spanMs && last.end_ms >= currentMs - spanMs;
    // A group loaded ahead before and missing now was evicted by the browser: loading it again
    // ahead of need would evict another (the playhead's needs still load it).
    return first.key && near && b - a + 1 <= maxRun && !loadedBefore.has(first.seq) && !isBuffered(buffered, first.start_ms, last.end_ms, tol);
  };
  let g = groups.findIndex(([a, b]) => segments[b]!.end_ms > currentMs && missing([a, b]));
  if (g < 0) {
    for (let k = groups.length - 1; k >= 0; k--) {
      if (segments[groups[k]![0]]!.start_ms <= currentMs && missing(groups[k]!)) {
        g = k;
        break;
      }
    }
  }
  if (g < 0) return null;
  const from = groups[g]![0];
  let to = groups[g]![1];
  // Following groups that are missing too, while the run stays within bounds.
  for (let k = g + 1; k < groups.length && missing(groups[k]!) && groups[k]![1] - from + 1 <= maxRun && groups[k]![0] === to + 1; k++) to = groups[k]![1];
  return [from, to - from + 1];
}

/**
 * True when the stream can be ended (`MediaSource.endOfStream()`): the playhead is in buffered
 * data whose run reaches the last segment's end. (Ending earlier would cut the duration down to
 * the buffered end.)
 */
export function reachedEnd(segments: readonly SegmentInfo[], buffered: readonly RangeMs[], currentMs: number, tol = TOLERANCE_MS): boolean {
  const last = segments[segments.length - 1];
  if (!last) return false;
  const t = Math.min(currentMs, last.start_ms);
  const inside = buffered.some(([s, e]) => s - tol <= t && t <= e + tol);
  return inside && bufferedEnd(buffered, t, tol) >= last.end_ms - tol;
}

/**
 * What to remove from the buffer when it is full: everything before the key segment at or before
 * `currentMs - behindMs` (removing up to a key frame keeps the current group of pictures whole), and
 * data more than `aheadMs` past the playhead that is not part of the buffered run the playhead is
 * in (left over from earlier seeks). Ranges in ms.
 */
export function evictionRanges(
  segments: readonly SegmentInfo[],
  buffered: readonly RangeMs[],
  currentMs: number,
  behindMs: number,
  aheadMs: number,
): RangeMs[] {
  const out: RangeMs[] = [];
  if (buffered.length === 0) return out;
  const first = buffered[0]![0];
  const last = buffered[buffered.length - 1]![1];
  const cutoff = currentMs - behindMs;
  if (cutoff > first) {
    let keyStart = -1;
    for (const s of segments) {
      if (s.start_ms > cutoff) break;
      if (s.key) keyStart = s.start_ms;
    }
    if (keyStart > first) out.push([first, keyStart]);
  }
  // Never cut into the run the playhead is in: only islands past it (and past the window) go.
  const limit = Math.max(bufferedEnd(buffered, currentMs) + TOLERANCE_MS, currentMs + aheadMs);
  if (last > limit) {
    // Start removal at a key segment so nothing kept depends on removed frames.
    const seg = segments.find((s) => s.key && s.start_ms >= limit);
    if (seg && seg.start_ms < last) out.push([seg.start_ms, last]);
  }
  return out;
}

// ---- thumbnails ---------------------------------------------------------------------------------

/** The last thumbnail with `t_ms <= tMs` (the list is in time order), or null before the first. */
export function thumbnailFor(thumbs: readonly ThumbnailInfo[], tMs: number): ThumbnailInfo | null {
  let lo = 0;
  let hi = thumbs.length - 1;
  let found: ThumbnailInfo | null = null;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const t = thumbs[mid]!;
    if (t.t_ms <= tMs) {
      found = t;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}

/** How many of the first thumbnails are looked at for a poster. */
export const POSTER_CANDIDATES = 8;

/**
 * Whether an RGBA picture (a decoded thumbnail) shows something: false for a screen of one colour
 * (a session's first picture is often black, before the server has drawn), with room for JPEG
 * noise. True once more than 1% of the pixels stray from the most common brightness.
 */
export function hasPictureContent(rgba: ArrayLike<number>): boolean {
  const n = Math.floor(rgba.length / 4);
  if (n === 0) return false;
  const bins = new Array<number>(32).fill(0);
  const luma = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const y = (rgba[i * 4]! * 77 + rgba[i * 4 + 1]! * 150 + rgba[i * 4 + 2]! * 29) >> 8;
    luma[i] = y;
    bins[y >> 3]!++;
  }
  const top = bins.indexOf(Math.max(...bins));
  const centre = top * 8 + 4;
  let stray = 0;
  for (let i = 0; i < n; i++) if (Math.abs(luma[i]! - centre) > 20) stray++;
  return stray > n / 100;
}

// ---- events -------------------------------------------------------------------------------------

const str = (v: unknown): string => (typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v));
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** A one-line description of an event (without its time). */
export function describeEvent(ev: RecordingEvent, maxText = 200): string {
  switch (ev.type) {
    case 'session_start': {
      const from = str(ev.client_addr);
      return `Session started: ${str(ev.user)} → ${str(ev.target)}${from ? ` from ${from}` : ''}`;
    }
    case 'viewer_joined':
      return `Viewer joined: ${str(ev.user)}`;
    case 'viewer_left':
      return `Viewer left: ${str(ev.user)}`;
    case 'watcher_joined':
      return `Security team watching (view only): ${str(ev.user)}`;
    case 'frozen':
      return `Input frozen by ${str(ev.by) || 'the security team'}`;
    case 'unfrozen':
      return `Input unfrozen by ${str(ev.by) || 'the security team'}`;
    case 'keys':
      return `Typed: ${clip(str(ev.text), maxText)}`;
    case 'clipboard': {
      const dir = ev.direction === 'to_target' ? 'to target' : ev.direction === 'from_target' ? 'from target' : str(ev.direction);
      const bytes = num(ev.bytes);
      return `Clipboard ${dir}${bytes !== null ? ` (${bytes} bytes)` : ''}`;
    }
    case 'clipboard_text': {
      const dir = ev.direction === 'to_target' ? 'to target' : ev.direction === 'from_target' ? 'from target' : str(ev.direction);
      return `Clipboard text ${dir}: ${clip(str(ev.text), maxText)}`;
    }
    case 'file_transfer': {
      const dir = ev.direction === 'upload' ? 'uploaded to the target' : ev.direction === 'download' ? 'downloaded from the target' : str(ev.direction);
      const bytes = num(ev.bytes);
      const hash = str(ev.sha256);
      return `File ${dir}: ${clip(str(ev.path), maxText)}${bytes !== null ? ` (${bytes} bytes` : ' ('}${hash ? `, SHA-256 ${hash}` : ', read out of order: no hash'})`;
    }
    case 'file_change':
      return `File ${clip(str(ev.change), maxText)}: ${clip(str(ev.path), maxText)}`;
    case 'resize':
      return `Resized to ${str(ev.width)}×${str(ev.height)}`;
    case 'flag':
      return `Flagged by ${str(ev.by)}: ${clip(str(ev.note), maxText)}`;
    case 'policy': {
      const reason = str(ev.reason);
      return `Policy ${str(ev.decision)}: ${str(ev.action)}${reason ? ` (${reason})` : ''}`;
    }
    case 'frames_dropped':
      return `Frames dropped: ${str(ev.count)}`;
    case 'events_lost':
      return `Events not recorded: ${str(ev.count)}`;
    case 'session_end': {
      const reason = str(ev.reason);
      return `Session ended${reason ? `: ${reason}` : ''}`;
    }
    default:
      return clip(str(ev.type) || 'event', maxText);
  }
}

/** A CSS-safe kind for an event type (`marker-<kind>`); unknown shapes become `other`. */
export function eventKind(type: unknown): string {
  return typeof type === 'string' && /^[a-z_]{1,32}$/.test(type) ? type : 'other';
}

/**
 * A policy event's outcome, for its style: `deny` (styled as a refusal), `allow` (an ordinary
 * entry), or null for every other event. An unknown decision word counts as a refusal: a reviewer
 * should look at it rather than skip it.
 */
export function policyOutcome(ev: RecordingEvent): 'allow' | 'deny' | null {
  if (ev.type !== 'policy') return null;
  return str(ev.decision).toLowerCase() === 'allow' ? 'allow' : 'deny';
}

/** The CSS classes of an event with prefix `p` (`marker` or `event`): `p-<kind>`, plus `decision-<outcome>` for policy events. */
export function eventClasses(ev: RecordingEvent, p: string): string {
  const outcome = policyOutcome(ev);
  return `${p}-${eventKind(ev.type)}${outcome ? ` decision-${outcome}` : ''}`;
}

export interface Marker {
  tMs: number;
  /** 0..1 along the timeline. */
  fraction: number;
  /** Time and description, for the marker's `title`. */
  label: string;
  kind: string;
  /** `marker-<kind>` and, for a policy event, `decision-allow` or `decision-deny`. */
  classes: string;
}

/** Markers for the scrub bar, in time order; events without a usable `t_ms` are skipped. */
export function markers(events: readonly RecordingEvent[], durationMs: number): Marker[] {
  const out: Marker[] = [];
  for (const ev of events) {
    const t = num(ev.t_ms);
    if (t === null) continue;
    out.push({ tMs: t, fraction: fractionOf(t, durationMs), label: `${formatClock(t)} ${describeEvent(ev)}`, kind: eventKind(ev.type), classes: eventClasses(ev, 'marker') });
  }
  out.sort((a, b) => a.tMs - b.tMs);
  return out;
}

/** Index of the last event with `t_ms <= tMs` in a time-ordered list, or -1. */
export function currentEventIndex(times: readonly number[], tMs: number): number {
  let lo = 0;
  let hi = times.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (times[mid]! <= tMs) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}

/** The media type for `addSourceBuffer`, or null when the codec string is not plausible. */
export function mimeFor(codec: string): string | null {
  return /^[A-Za-z0-9][A-Za-z0-9.\-_]{0,63}$/.test(codec) ? `video/mp4; codecs="${codec}"` : null;
}

/** Most segments fetched in one request (the gateway allows 600). */
export const MAX_RUN = 300;

/**
 * How many segments to fetch at once starting at index `from`: the run up to the one that
 * covers `untilMs` (a seek target: everything from the keyframe to there is needed before
 * anything shows), within one part, at least 1 and at most `max`.
 */
export function runLength(segments: readonly SegmentInfo[], from: number, untilMs: number, max = MAX_RUN): number {
  const first = segments[from];
  if (!first) return 0;
  let n = 1;
  while (n < max) {
    const s = segments[from + n];
    if (!s || s.part !== first.part || s.start_ms > untilMs) break;
    n++;
  }
  return n;
}
