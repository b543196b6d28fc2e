import { describe, expect, it } from 'vitest';
import type { RecordingEvent, SegmentInfo } from '../api';
import {
  runLength,
  bufferedEnd,
  currentEventIndex,
  describeEvent,
  EMPTY_FILTERS,
  eventClasses,
  eventKind,
  evictionRanges,
  formatBytes,
  formatClock,
  formatDuration,
  fractionOf,
  hasPictureContent,
  keySegmentIndex,
  markers,
  mimeFor,
  nextSegmentIndex,
  parseLocalDateTime,
  policyOutcome,
  prefetchRun,
  rangesMs,
  reachedEnd,
  recordingHref,
  recordingsQuery,
  thumbnailFor,
  timeAtX,
  timelineMs,
  type RangeMs,
} from './recording';

/** Segments of 2 s; a key segment every `gop` segments; `part` changes at `partAt`. */
function segs(n: number, gop = 3, partAt = Infinity): SegmentInfo[] {
  return Array.from({ length: n }, (_, i) => ({
    seq: i + 1,
    part: i >= partAt ? 1 : 0,
    start_ms: i * 2000,
    end_ms: (i + 1) * 2000,
    key: i % gop === 0 || i === partAt,
  }));
}

describe('formatting', () => {
  it('formats the player clock', () => {
    expect(formatClock(0)).toBe('0:00');
    expect(formatClock(999)).toBe('0:00');
    expect(formatClock(1000)).toBe('0:01');
    expect(formatClock(65_432)).toBe('1:05');
    expect(formatClock(10 * 60_000)).toBe('10:00');
    expect(formatClock(3_600_000)).toBe('1:00:00');
    expect(formatClock(3_600_000 + 62_000)).toBe('1:01:02');
    expect(formatClock(-5)).toBe('0:00');
    expect(formatClock(Number.NaN)).toBe('0:00');
  });

  it('formats durations and sizes', () => {
    expect(formatDuration(0)).toBe('0s');
    expect(formatDuration(45_400)).toBe('45s');
    expect(formatDuration(187_000)).toBe('3m 07s');
    expect(formatDuration(7_509_000)).toBe('2h 05m 09s');
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KB');
    expect(formatBytes(12 * 1024 * 1024)).toBe('12 MB');
    expect(formatBytes(-1)).toBe('—');
  });

  it('builds player links', () => {
    expect(recordingHref('a b/c')).toBe('#/recordings/a%20b%2Fc');
  });

  it('checks codec strings before putting them in a media type', () => {
    expect(mimeFor('avc1.64001f')).toBe('video/mp4; codecs="avc1.64001f"');
    expect(mimeFor('avc1"; x')).toBeNull();
    expect(mimeFor('')).toBeNull();
  });
});

describe('list filters', () => {
  it('parses datetime-local values as local time', () => {
    expect(parseLocalDateTime('2024-05-01T10:30')).toBe(new Date(2024, 4, 1, 10, 30).getTime());
    expect(parseLocalDateTime('2024-05-01T10:30:15')).toBe(new Date(2024, 4, 1, 10, 30, 15).getTime());
    expect(parseLocalDateTime('2024-05-01T10:30:15.5')).toBe(new Date(2024, 4, 1, 10, 30, 15, 500).getTime());
    expect(parseLocalDateTime('')).toBeNull();
    expect(parseLocalDateTime('2024-02-31T10:00')).toBeNull();
    expect(parseLocalDateTime('2024-05-01 10:30')).toBeNull();
    expect(parseLocalDateTime('yesterday')).toBeNull();
  });

  it('builds the query string from the set filters only', () => {
    expect(recordingsQuery(EMPTY_FILTERS)).toBe('');
    expect(recordingsQuery({ ...EMPTY_FILTERS, user: '  alice ' })).toBe('?user=alice');
    const from = new Date(2024, 0, 2, 3, 4).getTime();
    const to = new Date(2024, 0, 3, 0, 0, 30).getTime();
    expect(
      recordingsQuery({ user: 'bob smith', target: 'web&1', state: 'complete', from: '2024-01-02T03:04', to: '2024-01-03T00:00:30', risk: '', sort: '', review: '' }),
    ).toBe(`?user=bob+smith&target=web%261&state=complete&from=${from}&to=${to}`);
  });

  it('filters and sorts by risk', () => {
    expect(recordingsQuery({ ...EMPTY_FILTERS, risk: '50', sort: 'risk' })).toBe('?min_risk=50&sort=risk');
    expect(recordingsQuery({ ...EMPTY_FILTERS, review: 'unreviewed' })).toBe('?review=unreviewed');
    expect(recordingsQuery({ ...EMPTY_FILTERS, review: 'bogus' })).toBe('');
    expect(recordingsQuery({ ...EMPTY_FILTERS, risk: '7', sort: 'loudest' })).toBe('');
  });

  it('drops unknown states and malformed dates', () => {
    expect(recordingsQuery({ ...EMPTY_FILTERS, state: 'any' })).toBe('');
    expect(recordingsQuery({ ...EMPTY_FILTERS, state: 'recording', from: 'nope' })).toBe('?state=recording');
  });
});

describe('timeline', () => {
  it('is the last segment end, or the recording duration before any segment', () => {
    expect(timelineMs({ segments: segs(5), recording: { duration_ms: 99_999 } as never })).toBe(10_000);
    expect(timelineMs({ segments: [], recording: { duration_ms: 1234 } as never })).toBe(1234);
  });

  it('maps times and pointer positions', () => {
    expect(fractionOf(5000, 10_000)).toBe(0.5);
    expect(fractionOf(-1, 10_000)).toBe(0);
    expect(fractionOf(20_000, 10_000)).toBe(1);
    expect(fractionOf(5, 0)).toBe(0);
    expect(timeAtX(150, 100, 200, 60_000)).toBe(15_000);
    expect(timeAtX(50, 100, 200, 60_000)).toBe(0);
    expect(timeAtX(500, 100, 200, 60_000)).toBe(60_000);
  });
});

describe('keySegmentIndex', () => {
  const s = segs(10); // keys at 0, 3, 6, 9 (0 s, 6 s, 12 s, 18 s)
  it('picks the last key segment starting at or before the time', () => {
    expect(keySegmentIndex(s, 0)).toBe(0);
    expect(keySegmentIndex(s, 5999)).toBe(0);
    expect(keySegmentIndex(s, 6000)).toBe(3);
    expect(keySegmentIndex(s, 11_000)).toBe(3);
    expect(keySegmentIndex(s, 12_500)).toBe(6);
    expect(keySegmentIndex(s, 1e9)).toBe(9);
  });
  it('falls back to the first key segment, or -1 without any', () => {
    const late = s.map((x) => ({ ...x, key: x.seq >= 4 && x.key }));
    expect(keySegmentIndex(late, 1000)).toBe(3);
    expect(keySegmentIndex(s.map((x) => ({ ...x, key: false })), 1000)).toBe(-1);
    expect(keySegmentIndex([], 0)).toBe(-1);
  });
});

describe('buffer helpers', () => {
  it('converts TimeRanges to ms', () => {
    const tr = { length: 2, start: (i: number) => [5, 0][i]!, end: (i: number) => [6, 1.5][i]! };
    expect(rangesMs(tr)).toEqual([
      [0, 1500],
      [5000, 6000],
    ]);
  });
  it('finds the end of the run around the playhead, bridging tiny gaps', () => {
    const b: RangeMs[] = [
      [0, 4000],
      [4050, 8000],
      [20_000, 30_000],
    ];
    expect(bufferedEnd(b, 1000)).toBe(8000);
    expect(bufferedEnd(b, 9000)).toBe(9000);
    expect(bufferedEnd(b, 25_000)).toBe(30_000);
    expect(bufferedEnd([], 3000)).toBe(3000);
  });
});

describe('nextSegmentIndex (what to fetch next)', () => {
  const s = segs(60); // 120 s, keys every 6 s
  it('starts from the beginning', () => {
    expect(nextSegmentIndex(s, null, 0, [], 60_000)).toBe(0);
  });
  it('continues in order while less than the window is buffered ahead', () => {
    expect(nextSegmentIndex(s, 0, 0, [[0, 2000]], 60_000)).toBe(1);
    expect(nextSegmentIndex(s, 4, 1000, [[0, 10_000]], 60_000)).toBe(5);
  });
  it('stops once the window is buffered', () => {
    expect(nextSegmentIndex(s, 29, 0, [[0, 60_000]], 60_000)).toBeNull();
    expect(nextSegmentIndex(s, 29, 500, [[0, 60_000]], 60_000)).toBe(30);
  });
  it('stops at the end of the recording', () => {
    expect(nextSegmentIndex(s, 59, 100_000, [[0, 120_000]], 60_000)).toBeNull();
    expect(nextSegmentIndex([], null, 0, [], 60_000)).toBeNull();
  });
  it('on a seek into an unbuffered time restarts at the key segment at or before it', () => {
    // buffered 0..20 s, last appended #9; seek to 45 s (segment #22; key #21 starts at 42 s)
    expect(nextSegmentIndex(s, 9, 45_000, [[0, 20_000]], 60_000)).toBe(21);
    // then goes on from there
    expect(nextSegmentIndex(s, 21, 45_000, [[0, 20_000], [42_000, 44_000]], 60_000)).toBe(22);
    expect(nextSegmentIndex(s, 22, 45_000, [[0, 20_000], [42_000, 46_000]], 60_000)).toBe(23);
  });
  it('continues the chain when a seek lands just past the buffered end', () => {
    expect(nextSegmentIndex(s, 9, 21_000, [[0, 20_000]], 60_000)).toBe(10);
  });
  it('after a seek back into buffered time, fills from the end of that run', () => {
    // 0..20 s and 40..60 s buffered, last appended #29 (58..60 s); playhead at 5 s
    const b: RangeMs[] = [
      [0, 20_000],
      [40_000, 60_000],
    ];
    // #10 (20 s) is not key: restart at the key #9 (18 s)
    expect(nextSegmentIndex(s, 29, 5000, b, 60_000)).toBe(9);
    expect(nextSegmentIndex(s, 9, 5000, b, 60_000)).toBe(10);
  });
  it('tolerates rounding between the buffered ranges and segment times', () => {
    expect(nextSegmentIndex(s, 1, 0, [[0, 3967]], 60_000)).toBe(2);
    expect(nextSegmentIndex(s, 1, 0, [[33, 4000]], 60_000)).toBe(2);
  });
  it('appends the init of a new part before its key segment (part switch)', () => {
    const p = segs(10, 3, 5); // part 1 from #5 (a key)
    expect(nextSegmentIndex(p, null, 10_500, [], 60_000)).toBe(5);
    expect(p[5]!.part).toBe(1);
  });
  it('at or past the end, needs the last segment', () => {
    // a seek to the very end (120 s) with nothing buffered there: the last key segment (#57, 114 s)
    expect(nextSegmentIndex(s, 9, 120_000, [[0, 20_000]], 60_000)).toBe(57);
    expect(nextSegmentIndex(s, 9, 500_000, [[0, 20_000]], 60_000)).toBe(57);
    expect(nextSegmentIndex(s, 59, 120_000, [[0, 20_000], [114_000, 120_000]], 60_000)).toBeNull();
  });
  it('scales with the window', () => {
    expect(nextSegmentIndex(s, 4, 0, [[0, 10_000]], 8000)).toBeNull();
  });
});

describe('reachedEnd and eviction', () => {
  const s = segs(30); // 60 s
  it('ends the stream only when the run around the playhead reaches the end', () => {
    expect(reachedEnd(s, [[0, 60_000]], 10_000)).toBe(true);
    expect(reachedEnd(s, [[0, 59_950]], 10_000)).toBe(true);
    expect(reachedEnd(s, [[0, 20_000], [40_000, 60_000]], 10_000)).toBe(false);
    expect(reachedEnd([], [], 0)).toBe(false);
    // a seek to the end before the end is loaded: not yet
    expect(reachedEnd(s, [[0, 20_000]], 60_000)).toBe(false);
    expect(reachedEnd(s, [[0, 20_000], [58_000, 60_000]], 60_000)).toBe(true);
    expect(reachedEnd(s, [[0, 20_000], [40_000, 60_000]], 39_000)).toBe(false);
  });
  it('removes far behind the playhead up to a key frame, and stale data far ahead', () => {
    // playhead 40 s, keep 10 s behind → cutoff 30 s → key at or before is 30 s (#15)
    expect(evictionRanges(s, [[0, 50_000]], 40_000, 10_000, 60_000)).toEqual([[0, 30_000]]);
    // cutoff 26 s → key 24 s
    expect(evictionRanges(s, [[0, 50_000]], 36_000, 10_000, 60_000)).toEqual([[0, 24_000]]);
    // stale range ahead (after a seek back), window 8 s: remove from the first key ≥ 13 s
    expect(evictionRanges(s, [[0, 10_000], [40_000, 60_000]], 5000, 10_000, 8000)).toEqual([[18_000, 60_000]]);
    // but never the run the playhead is in, however far it reaches
    expect(evictionRanges(s, [[0, 30_000]], 5000, 10_000, 8000)).toEqual([]);
    expect(evictionRanges(s, [[0, 30_000], [40_000, 60_000]], 5000, 10_000, 8000)).toEqual([[36_000, 60_000]]);
    expect(evictionRanges(s, [], 5000, 10_000, 8000)).toEqual([]);
    expect(evictionRanges(s, [[0, 10_000]], 5000, 10_000, 60_000)).toEqual([]);
  });
});

describe('thumbnailFor', () => {
  const th = [
    { seq: 1, t_ms: 0 },
    { seq: 2, t_ms: 10_000 },
    { seq: 3, t_ms: 20_000 },
  ];
  it('takes the last thumbnail at or before the hovered time', () => {
    expect(thumbnailFor(th, 0)?.seq).toBe(1);
    expect(thumbnailFor(th, 9999)?.seq).toBe(1);
    expect(thumbnailFor(th, 10_000)?.seq).toBe(2);
    expect(thumbnailFor(th, 99_000)?.seq).toBe(3);
  });
  it('has none before the first or without thumbnails', () => {
    expect(thumbnailFor(th.slice(1), 5000)).toBeNull();
    expect(thumbnailFor([], 5000)).toBeNull();
  });
});

describe('events and markers', () => {
  const ev = (t_ms: number, type: string, rest: Record<string, unknown> = {}): RecordingEvent => ({ t_ms, type, ...rest });

  it('describes every event type', () => {
    expect(describeEvent(ev(0, 'session_start', { user: 'alice', target: 'web1', client_addr: '10.0.0.5:5123' }))).toBe(
      'Session started: alice → web1 from 10.0.0.5:5123',
    );
    expect(describeEvent(ev(0, 'viewer_joined', { user: 'rev' }))).toBe('Viewer joined: rev');
    expect(describeEvent(ev(0, 'file_transfer', { direction: 'upload', path: 'share\\a.txt', bytes: 5, sha256: 'ab12' }))).toBe(
      'File uploaded to the target: share\\a.txt (5 bytes, SHA-256 ab12)',
    );
    expect(describeEvent(ev(0, 'file_transfer', { direction: 'download', path: 'share\\b', bytes: 9 }))).toBe(
      'File downloaded from the target: share\\b (9 bytes, read out of order: no hash)',
    );
    expect(describeEvent(ev(0, 'file_change', { path: 'share\\c', change: 'deleted' }))).toBe('File deleted: share\\c');
    expect(describeEvent(ev(0, 'viewer_left', { user: 'rev' }))).toBe('Viewer left: rev');
    expect(describeEvent(ev(0, 'keys', { text: 'ls -la<Enter>' }))).toBe('Typed: ls -la<Enter>');
    expect(describeEvent(ev(0, 'keys', { text: 'x'.repeat(300) }), 10)).toBe(`Typed: ${'x'.repeat(9)}…`);
    expect(describeEvent(ev(0, 'clipboard', { direction: 'to_target', bytes: 12 }))).toBe('Clipboard to target (12 bytes)');
    expect(describeEvent(ev(0, 'clipboard', { direction: 'from_target', bytes: 3 }))).toBe('Clipboard from target (3 bytes)');
    expect(describeEvent(ev(0, 'resize', { width: 1280, height: 800 }))).toBe('Resized to 1280×800');
    expect(describeEvent(ev(0, 'flag', { by: 'rita', note: 'net user /add' }))).toBe('Flagged by rita: net user /add');
    expect(describeEvent(ev(0, 'policy', { action: 'clipboard', decision: 'deny', reason: 'read-only' }))).toBe(
      'Policy deny: clipboard (read-only)',
    );
    expect(describeEvent(ev(0, 'frames_dropped', { count: 4 }))).toBe('Frames dropped: 4');
    expect(describeEvent(ev(0, 'events_lost', { count: 2 }))).toBe('Events not recorded: 2');
    expect(describeEvent(ev(0, 'watcher_joined', { user: 'sam' }))).toBe('Security team watching (view only): sam');
    expect(describeEvent(ev(0, 'frozen', { by: 'sam' }))).toBe('Input frozen by sam');
    expect(describeEvent(ev(0, 'unfrozen', { by: 'sam' }))).toBe('Input unfrozen by sam');
    expect(describeEvent(ev(0, 'frozen'))).toBe('Input frozen by the security team');
    expect(describeEvent(ev(0, 'session_end', { reason: 'target closed' }))).toBe('Session ended: target closed');
    expect(describeEvent(ev(0, 'session_end'))).toBe('Session ended');
    expect(describeEvent(ev(0, 'something_new'))).toBe('something_new');
  });

  it('places markers at t/duration with time-stamped labels, in time order', () => {
    const list = [ev(30_000, 'keys', { text: 'pwd' }), ev(0, 'session_start', { user: 'a', target: 't', client_addr: '' }), ev(90_000, 'session_end', { reason: 'x' })];
    const m = markers(list, 60_000);
    expect(m.map((x) => x.tMs)).toEqual([0, 30_000, 90_000]);
    expect(m.map((x) => x.fraction)).toEqual([0, 0.5, 1]);
    expect(m[1]!.label).toBe('0:30 Typed: pwd');
    expect(m[0]!.label).toBe('0:00 Session started: a → t');
    expect(m.map((x) => x.kind)).toEqual(['session_start', 'keys', 'session_end']);
  });

  it('skips events without a time and sanitises kinds', () => {
    const list = [{ type: 'keys', text: 'a' } as unknown as RecordingEvent, ev(1000, 'Bad Type!')];
    const m = markers(list, 10_000);
    expect(m).toHaveLength(1);
    expect(m[0]!.kind).toBe('other');
    expect(eventKind('policy')).toBe('policy');
    expect(eventKind('watcher_joined')).toBe('watcher_joined');
    expect(eventKind('frozen')).toBe('frozen');
    expect(eventKind('unfrozen')).toBe('unfrozen');
    expect(eventKind(42)).toBe('other');
  });

  it('styles a policy refusal apart from an allowed action (an allow is not a denial)', () => {
    const allow = ev(1000, 'policy', { action: 'open', decision: 'allow', reason: 'grant' });
    const deny = ev(2000, 'policy', { action: 'clipboard', decision: 'deny', reason: 'rule 3' });
    expect(policyOutcome(allow)).toBe('allow');
    expect(policyOutcome(deny)).toBe('deny');
    // An unknown decision word is looked at, not skipped.
    expect(policyOutcome(ev(0, 'policy', { decision: 'maybe' }))).toBe('deny');
    expect(policyOutcome(ev(0, 'keys', { decision: 'deny' }))).toBeNull();
    expect(eventClasses(allow, 'event')).toBe('event-policy decision-allow');
    expect(eventClasses(deny, 'event')).toBe('event-policy decision-deny');
    expect(eventClasses(ev(0, 'keys'), 'marker')).toBe('marker-keys');
    const m = markers([allow, deny], 10_000);
    expect(m.map((x) => x.classes)).toEqual(['marker-policy decision-allow', 'marker-policy decision-deny']);
  });

  it('finds the current event', () => {
    expect(currentEventIndex([0, 1000, 5000], 4999)).toBe(1);
    expect(currentEventIndex([0, 1000, 5000], 5000)).toBe(2);
    expect(currentEventIndex([1000], 500)).toBe(-1);
    expect(currentEventIndex([], 500)).toBe(-1);
  });
});

describe('runLength', () => {
  const segs = [
    { seq: 2, part: 1, start_ms: 0, end_ms: 1000, key: true },
    { seq: 3, part: 1, start_ms: 1000, end_ms: 2000, key: false },
    { seq: 5, part: 1, start_ms: 2000, end_ms: 3000, key: false },
    { seq: 7, part: 2, start_ms: 3000, end_ms: 4000, key: true },
  ];
  it('covers up to the segment holding the target, within one part', () => {
    expect(runLength(segs, 0, 1500)).toBe(2);
    expect(runLength(segs, 0, 0)).toBe(1);
    expect(runLength(segs, 0, 99999)).toBe(3);
    expect(runLength(segs, 3, 99999)).toBe(1);
    expect(runLength(segs, 0, 99999, 2)).toBe(2);
    expect(runLength(segs, 9, 0)).toBe(0);
  });
});

describe('hasPictureContent', () => {
  const pic = (w: number, h: number, paint: (x: number, y: number) => [number, number, number]): Uint8ClampedArray => {
    const out = new Uint8ClampedArray(w * h * 4);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out.set([...paint(x, y), 255], (y * w + x) * 4);
    return out;
  };
  it('a black or one-colour screen (with JPEG noise) has none; a desktop with a window has some', () => {
    expect(hasPictureContent(pic(240, 150, () => [0, 0, 0]))).toBe(false);
    expect(hasPictureContent(pic(240, 150, (x, y) => [(x * 7 + y) % 6, (x + y * 3) % 5, 2]))).toBe(false);
    expect(hasPictureContent(pic(240, 150, () => [32, 64, 96]))).toBe(false);
    // A white xterm of 30×20 on a dark background: 1.7% of the picture.
    expect(hasPictureContent(pic(240, 150, (x, y) => (x >= 20 && x < 50 && y >= 20 && y < 40 ? [255, 255, 255] : [32, 64, 96])))).toBe(true);
    // A dot (a cursor) is not content.
    expect(hasPictureContent(pic(240, 150, (x, y) => (x < 4 && y < 4 ? [255, 255, 255] : [0, 0, 0])))).toBe(false);
    expect(hasPictureContent(new Uint8ClampedArray(0))).toBe(false);
  });
});

describe('prefetchRun', () => {
  // 12 segments of 2 s, a key segment every 3: groups [0-2] [3-5] [6-8] [9-11].
  const list = segs(12, 3);
  it('loads whole groups of pictures after the playhead first, several per request', () => {
    // Playing at 1 s with the first group buffered: the next three groups in one run.
    expect(prefetchRun(list, [[0, 6000]], 1000, 3_600_000, 300)).toEqual([3, 9]);
    // At most `maxRun` segments: whole groups only.
    expect(prefetchRun(list, [[0, 6000]], 1000, 3_600_000, 7)).toEqual([3, 6]);
    expect(prefetchRun(list, [[0, 6000]], 1000, 3_600_000, 4)).toEqual([3, 3]);
    // A group longer than the limit is not prefetched (the player loads it when needed).
    expect(prefetchRun(list, [], 1000, 3_600_000, 2)).toBeNull();
  });
  it('after the end, goes back before the playhead, nearest first; nothing when all is buffered', () => {
    expect(prefetchRun(list, [[12_000, 24_000]], 13_000, 3_600_000, 300)).toEqual([3, 3]);
    expect(prefetchRun(list, [[6000, 24_000]], 13_000, 3_600_000, 300)).toEqual([0, 3]);
    expect(prefetchRun(list, [[0, 24_000]], 13_000, 3_600_000, 300)).toBeNull();
    // Gaps below the tolerance are no holes.
    expect(prefetchRun(list, [[0, 11_950], [12_000, 24_000]], 13_000, 3_600_000, 300)).toBeNull();
  });
  it('stays within the span around the playhead and within its part', () => {
    expect(prefetchRun(list, [[0, 6000]], 1000, 5000, 300)).toEqual([3, 3]);
    expect(prefetchRun(list, [[0, 12_000]], 1000, 5000, 300)).toBeNull();
    const parts = segs(12, 3, 6);
    expect(prefetchRun(parts, [[0, 6000]], 1000, 3_600_000, 300)).toEqual([3, 3]);
    expect(prefetchRun([], [], 0, 1000, 300)).toBeNull();
  });
  it('never loads ahead a group it loaded ahead before (the browser evicted it: no thrashing)', () => {
    const seqOf = (i: number) => list[i]!.seq;
    // Groups [3-5] and [6-8] were prefetched, then evicted: only [9-11] is left to load ahead.
    const before = new Set([seqOf(3), seqOf(6)]);
    expect(prefetchRun(list, [[0, 6000]], 1000, 3_600_000, 300, undefined, before)).toEqual([9, 3]);
    before.add(seqOf(9));
    expect(prefetchRun(list, [[0, 6000]], 1000, 3_600_000, 300, undefined, before)).toBeNull();
  });
});
