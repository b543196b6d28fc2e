import { describe, expect, it } from 'vitest';
import type { AuditEntry } from '../api';
import {
  AUDIT_KINDS,
  auditKindClass,
  auditQuery,
  compactValue,
  countText,
  describeAudit,
  diffSummary,
  EMPTY_AUDIT_FILTERS,
  entryKey,
  entryNode,
  exportFileName,
  formatAuditTime,
  hasFilters,
  isClusterCursor,
  isWarning,
  kindOf,
  mergeEntries,
  nextCursor,
  parseKinds,
  recordJson,
  showsGateway,
  toJsonLines,
  verifyText,
  verifyTitle,
  type ShownAuditEntry,
} from './audit';
import { parseLocalDateTime } from './recording';

const HASH = 'a'.repeat(64);

function entry(kind: string, detail: Record<string, unknown> = {}, more: Partial<ShownAuditEntry> = {}): ShownAuditEntry {
  return { seq: 1, ts_ms: 1_700_000_000_000, prev: '0'.repeat(64), hash: HASH, kind, actor: 'alice', detail, ...more };
}

describe('parseKinds', () => {
  it('splits on commas and spaces, lower-cases and drops duplicates', () => {
    expect(parseKinds('')).toEqual({ kinds: [], invalid: [] });
    expect(parseKinds(' login, login_failed ,LOGIN  policy,,')).toEqual({ kinds: ['login', 'login_failed', 'policy'], invalid: [] });
  });

  it('reports names the gateway would refuse', () => {
    expect(parseKinds('login, log-in, x'.concat('y'.repeat(40)))).toEqual({ kinds: ['login'], invalid: ['log-in', `x${'y'.repeat(40)}`] });
  });
});

describe('auditQuery', () => {
  it('sends only the limit when no filter is set', () => {
    expect(auditQuery(EMPTY_AUDIT_FILTERS)).toBe('?limit=100');
    expect(hasFilters(EMPTY_AUDIT_FILTERS)).toBe(false);
    expect(hasFilters({ ...EMPTY_AUDIT_FILTERS, actor: '   ', kinds: ' , ' })).toBe(false);
  });

  it('sends the set filters, trimmed, with times as Unix ms', () => {
    const f = { ...EMPTY_AUDIT_FILTERS, actor: ' alice ', target: 'desk', session: 'abc-1', kinds: 'login, login_failed', from: '2024-03-05T10:00', to: '2024-03-05T11:30:15' };
    const q = new URLSearchParams(auditQuery(f).slice(1));
    expect(q.get('actor')).toBe('alice');
    expect(q.get('target')).toBe('desk');
    expect(q.get('session')).toBe('abc-1');
    expect(q.get('kind')).toBe('login,login_failed');
    expect(q.get('since_ms')).toBe(String(parseLocalDateTime('2024-03-05T10:00')));
    expect(q.get('until_ms')).toBe(String(parseLocalDateTime('2024-03-05T11:30:15')));
    expect(q.get('limit')).toBe('100');
    expect(q.has('before_seq')).toBe(false);
    expect(q.has('cluster')).toBe(false);
    expect(hasFilters(f)).toBe(true);
  });

  it('leaves out the gateway filter outside the cluster view', () => {
    const f = { ...EMPTY_AUDIT_FILTERS, node: 'gw-b' };
    expect(auditQuery(f)).toBe('?limit=100');
    expect(hasFilters(f)).toBe(false);
  });

  it('asks for the cluster view, with the gateway filter trimmed when set', () => {
    const all = { ...EMPTY_AUDIT_FILTERS, cluster: true };
    expect(auditQuery(all)).toBe('?cluster=true&limit=100');
    expect(hasFilters(all)).toBe(false);
    expect(auditQuery({ ...all, node: '   ' })).toBe('?cluster=true&limit=100');
    const one = { ...all, node: ' gw-b ', actor: 'alice', kinds: 'login' };
    expect(auditQuery(one)).toBe('?cluster=true&node=gw-b&actor=alice&kind=login&limit=100');
    expect(hasFilters({ ...all, node: 'gw-b' })).toBe(true);
    const q = new URLSearchParams(auditQuery({ ...one, node: 'gw b&c', from: '2024-03-05T10:00' }).slice(1));
    expect(q.get('node')).toBe('gw b&c');
    expect(q.get('since_ms')).toBe(String(parseLocalDateTime('2024-03-05T10:00')));
  });

  it('pages on in the cluster view with the whole cursor, and only the cursor of the view', () => {
    const all = { ...EMPTY_AUDIT_FILTERS, cluster: true };
    const cursor = { before_ts_ms: 1_700_000_000_123, before_node: 'gw-a', before_seq: 42 };
    expect(auditQuery(all, cursor)).toBe('?cluster=true&before_ts_ms=1700000000123&before_node=gw-a&before_seq=42&limit=100');
    const q = new URLSearchParams(auditQuery({ ...all, node: 'gw-a' }, { ...cursor, before_node: 'gw a/1' }, 50).slice(1));
    expect([q.get('node'), q.get('before_ts_ms'), q.get('before_node'), q.get('before_seq'), q.get('limit')]).toEqual(['gw-a', '1700000000123', 'gw a/1', '42', '50']);
    // A seq alone is this gateway's trail's cursor; a cluster cursor is not this gateway's.
    expect(auditQuery(all, 11)).toBe('?cluster=true&limit=100');
    expect(auditQuery(EMPTY_AUDIT_FILTERS, cursor)).toBe('?limit=100');
    // Never a partial cursor (the gateway refuses one).
    expect(auditQuery(all, { ...cursor, before_node: '' })).toBe('?cluster=true&limit=100');
    expect(auditQuery(all, { ...cursor, before_seq: -1 })).toBe('?cluster=true&limit=100');
    expect(auditQuery(all, { before_ts_ms: 5, before_node: 'gw-a' } as never)).toBe('?cluster=true&limit=100');
  });

  it('pages on with before_seq and caps the limit', () => {
    expect(auditQuery(EMPTY_AUDIT_FILTERS, 11)).toBe('?before_seq=11&limit=100');
    expect(auditQuery(EMPTY_AUDIT_FILTERS, null, 5000)).toBe('?limit=500');
    expect(auditQuery(EMPTY_AUDIT_FILTERS, 0, 0)).toBe('?limit=1');
  });

  it('leaves out malformed times and invalid kinds', () => {
    expect(auditQuery({ ...EMPTY_AUDIT_FILTERS, from: 'yesterday', to: '2024-02-31T00:00', kinds: 'bad-kind' })).toBe('?limit=100');
  });
});

describe('paging cursors', () => {
  it('reads where the next page starts in each view', () => {
    const cursor = { before_ts_ms: 1_700_000_000_000, before_node: 'gw-b', before_seq: 7 };
    expect(nextCursor({ entries: [], next_before_seq: 11 }, false)).toBe(11);
    expect(nextCursor({ entries: [], next_before_seq: null }, false)).toBeNull();
    expect(nextCursor({ entries: [] }, false)).toBeNull();
    expect(nextCursor({ entries: [], next: cursor }, true)).toEqual(cursor);
    expect(nextCursor({ entries: [], next: null }, true)).toBeNull();
    // The other view's cursor, or a malformed one, ends the paging.
    expect(nextCursor({ entries: [], next_before_seq: 11 }, true)).toBeNull();
    expect(nextCursor({ entries: [], next: cursor }, false)).toBeNull();
    expect(nextCursor({ entries: [], next: { ...cursor, before_seq: '7' } as never }, true)).toBeNull();
    expect(nextCursor({ entries: [], next_before_seq: 1.5 }, false)).toBeNull();
  });

  it('knows a whole cluster cursor', () => {
    expect(isClusterCursor({ before_ts_ms: 0, before_node: 'a', before_seq: 0 })).toBe(true);
    expect(isClusterCursor({ before_ts_ms: 1, before_node: 'a' })).toBe(false);
    expect(isClusterCursor({ before_ts_ms: Number.NaN, before_node: 'a', before_seq: 1 })).toBe(false);
    expect(isClusterCursor(null)).toBe(false);
    expect(isClusterCursor(3)).toBe(false);
  });
});

describe('gateways', () => {
  it('names the gateway of a record: node in the cluster view, else detail.node', () => {
    expect(entryNode(entry('login', {}, { node: 'gw-a' }))).toBe('gw-a');
    expect(entryNode(entry('login', { node: 'gw-b' }))).toBe('gw-b');
    expect(entryNode(entry('login', { node: 'gw-b' }, { node: 'gw-a' }))).toBe('gw-a');
    expect(entryNode(entry('login'))).toBeNull();
    expect(entryNode(entry('login', { node: 5 }))).toBeNull();
    expect(entryNode({ detail: null })).toBeNull();
  });

  it('has a Gateway column in the cluster view, or when a record names its gateway', () => {
    expect(showsGateway([], true)).toBe(true);
    expect(showsGateway([entry('login')], false)).toBe(false);
    expect(showsGateway([entry('login'), entry('logout', { node: 'gw-a' })], false)).toBe(true);
  });

  it('says the verify button checks this gateway’s own chain in the cluster view', () => {
    expect(verifyTitle(true)).toBe("Verify checks this gateway's own chain; `portcullis audit verify --cluster` checks every gateway's");
    expect(verifyTitle(false)).toMatch(/this gateway's/);
  });

  it('counts the rows shown', () => {
    expect(countText(0, true, true)).toBe('');
    expect(countText(1, false, false)).toBe('1 record shown');
    expect(countText(3, true, false)).toBe('3 records shown, older ones on request');
    expect(countText(3, false, true)).toBe('3 records shown from all gateways');
  });
});

describe('describeAudit', () => {
  it('describes logins', () => {
    expect(describeAudit(entry('login', { entry: 'browser', address: '127.0.0.1:5000' }))).toBe('Login from 127.0.0.1:5000 (browser)');
    expect(describeAudit(entry('login_failed', { entry: 'browser', address: '127.0.0.1:5000', reason: 'wrong user name or password' }))).toBe(
      'Login failed from 127.0.0.1:5000 (browser): wrong user name or password',
    );
    expect(describeAudit(entry('login_failed', { reason: 'too many failed logins' }))).toBe('Login failed: too many failed logins');
    expect(describeAudit(entry('logout'))).toBe('Logout');
    expect(describeAudit(entry('rdp_ticket', {}, { target: 'desk' }))).toBe('RDP file issued for desk');
  });

  it('describes policy decisions', () => {
    expect(describeAudit(entry('policy', { action: 'open', decision: 'deny', reason: 'refused by the policy: rule 1', entry: 'browser' }))).toBe(
      'Policy deny: open (refused by the policy: rule 1)',
    );
    expect(describeAudit(entry('policy', { action: 'clipboard', decision: 'allow', reason: '' }))).toBe('Policy allow: clipboard');
  });

  it('describes sessions and the security team’s controls', () => {
    expect(describeAudit(entry('session_start', { type: 'session_start', user: 'alice', target: 'desk', client_addr: '10.0.0.2:4000', entry: 'browser' }))).toBe(
      'Session started from 10.0.0.2:4000 (browser)',
    );
    expect(describeAudit(entry('session_end', { type: 'session_end', reason: 'closed by the user' }))).toBe('Session ended: closed by the user');
    expect(describeAudit(entry('session_kill', { user: 'alice', reason: 'audit e2e kill' }, { actor: 'sam' }))).toBe('Session of alice killed: audit e2e kill');
    expect(describeAudit(entry('session_kill', { reason: 'closed by an administrator' }))).toBe('Session killed: closed by an administrator');
    expect(describeAudit(entry('session_freeze', { type: 'frozen', by: 'sam' }))).toBe('Session frozen');
    expect(describeAudit(entry('session_unfreeze', { by: 'sam' }))).toBe('Session unfrozen');
    expect(describeAudit(entry('viewer_joined', { type: 'viewer_joined', user: 'alice' }))).toBe('Viewer joined: alice');
    expect(describeAudit(entry('viewer_left', {}, { actor: 'bob' }))).toBe('Viewer left: bob');
    expect(describeAudit(entry('watcher', { user: 'sam' }))).toBe('Watcher joined (view only): sam');
    expect(describeAudit(entry('user_lock', { user: 'alice', reason: 'suspicious' }))).toBe('Locked alice: suspicious');
    expect(describeAudit(entry('user_unlock', { user: 'alice' }))).toBe('Unlocked alice');
  });

  it('describes clipboard and file events', () => {
    expect(describeAudit(entry('clipboard', { type: 'clipboard', direction: 'to_target', bytes: 12 }))).toBe('Clipboard to the target: 12 B');
    expect(describeAudit(entry('clipboard', { direction: 'from_target', bytes: 2048 }))).toBe('Clipboard from the target: 2.0 KB');
    expect(
      describeAudit(entry('file', { type: 'file_transfer', direction: 'download', path: 'home/report.pdf', bytes: 1536, sha256: 'f'.repeat(64) })),
    ).toBe(`File download: home/report.pdf (1.5 KB, sha256 ${'f'.repeat(12)}…)`);
    expect(describeAudit(entry('file', { type: 'file_transfer', direction: 'upload', path: 'x', bytes: 3 }))).toBe('File upload: x (3 B)');
    expect(describeAudit(entry('file', { type: 'file_change', path: 'home/a.txt', change: 'deleted' }))).toBe('File deleted: home/a.txt');
  });

  it('describes admin changes as a compact before → after diff', () => {
    expect(describeAudit(entry('admin_change', { action: 'user_create', before: null, after: { name: 'alice', role: 'user' } }))).toBe(
      'Changed user_create: → {name: alice, role: user}',
    );
    expect(describeAudit(entry('admin_change', { action: 'user_delete', before: { name: 'bob', role: 'user' }, after: null }))).toBe(
      'Changed user_delete: {name: bob, role: user} →',
    );
    expect(
      describeAudit(
        entry('admin_change', {
          action: 'target_update',
          before: { name: 'desk', labels: ['dev'], description: 'old', same: { a: 1 } },
          after: { name: 'desk', labels: ['prod', 'db'], same: { a: 1 }, kind: 'vnc' },
        }),
      ),
    ).toBe('Changed target_update: labels: [dev] → [prod, db]; description: old → ∅; kind: ∅ → vnc');
    expect(describeAudit(entry('admin_change', { action: 'grant_create', before: { a: 1 }, after: { a: 1 } }))).toBe('Changed grant_create: no change');
    expect(describeAudit(entry('admin_change', {}))).toBe('Changed configuration: no details');
    expect(describeAudit({ ...entry('review', { action: 'flagged', user: 'alice', note: 'net user' }), target: 'db1' })).toBe(
      'Review of alice session on db1: flagged: net user',
    );
  });

  it('describes exports and unknown kinds', () => {
    expect(describeAudit(entry('export', {}, { target: 'desk' }))).toBe('Exported a recording of desk');
    expect(describeAudit(entry('mfa_step', { type: 'x', result: 'ok', code: 3 }))).toBe('Mfa step: {result: ok, code: 3}');
    expect(describeAudit(entry('mfa', {}))).toBe('Mfa');
  });

  it('survives odd details and keeps to one clipped line', () => {
    expect(describeAudit({ kind: 'login', actor: 'a', detail: null })).toBe('Login');
    expect(describeAudit({ kind: 'login_failed', actor: 'a', detail: { reason: 'bad\nnews\u0000here', address: 5 } })).toBe('Login failed from 5: bad news here');
    const long = describeAudit(entry('session_end', { reason: 'x'.repeat(1000) }));
    expect(long.length).toBe(300);
    expect(long.endsWith('…')).toBe(true);
    expect(describeAudit(entry('clipboard', { direction: 'sideways', bytes: -1 }))).toBe('Clipboard sideways');
  });

  it('leaves the gateway to its column', () => {
    expect(describeAudit(entry('login', { entry: 'browser', address: '127.0.0.1:5000', node: 'gw-a' }, { node: 'gw-a' }))).toBe(
      'Login from 127.0.0.1:5000 (browser)',
    );
    expect(describeAudit(entry('mfa_step', { result: 'ok', node: 'gw-a' }))).toBe('Mfa step: {result: ok}');
    expect(describeAudit(entry('mfa', { node: 'gw-a' }))).toBe('Mfa');
  });

  it('describes a mirrored line that does not parse, naming its gateway', () => {
    const bad = { seq: 4, ts_ms: 1_700_000_000_000, unreadable: 'expected value at line 1 column 1', node: 'gw-b' } as unknown as ShownAuditEntry;
    expect(describeAudit(bad)).toBe('Unreadable record: the line in the chain of gw-b does not parse (expected value at line 1 column 1)');
    expect(kindOf(bad)).toBe('unreadable');
    expect(kindOf(entry('login'))).toBe('login');
    expect(isWarning(bad)).toBe(true);
    expect(auditKindClass(bad)).toBe('kind-badge audit-kind warn');
    expect(entryNode(bad)).toBe('gw-b');
  });

  it('has a description for every kind in use', () => {
    for (const kind of AUDIT_KINDS) expect(describeAudit(entry(kind)).length).toBeGreaterThan(0);
  });
});

describe('compactValue and diffSummary', () => {
  it('renders JSON compactly', () => {
    expect(compactValue(null)).toBe('null');
    expect(compactValue({})).toBe('{}');
    expect(compactValue(['a', 1, true])).toBe('[a, 1, true]');
    expect(compactValue({ a: '', b: 'x, y', c: { d: [1] } })).toBe('{a: "", b: "x, y", c: {d: [1]}}');
    expect(compactValue({ a: { b: { c: { d: 1 } } } })).toBe('{a: {b: {c: {…}}}}');
    expect(compactValue('z'.repeat(500), 10)).toBe(`${'z'.repeat(9)}…`);
  });

  it('diffs values that are not objects', () => {
    expect(diffSummary('a', 'b')).toBe('a → b');
    expect(diffSummary([1], [1])).toBe('no change');
    expect(diffSummary(undefined, undefined)).toBe('no details');
  });
});

describe('badges', () => {
  it('marks refusals, failures, kills and locks', () => {
    expect(isWarning(entry('login_failed'))).toBe(true);
    expect(isWarning(entry('session_kill'))).toBe(true);
    expect(isWarning(entry('user_lock'))).toBe(true);
    expect(isWarning(entry('user_unlock'))).toBe(false);
    expect(isWarning(entry('policy', { decision: 'deny' }))).toBe(true);
    expect(isWarning(entry('policy', { decision: 'allow' }))).toBe(false);
    expect(isWarning(entry('login'))).toBe(false);
    expect(auditKindClass(entry('login'))).toBe('kind-badge audit-kind');
    expect(auditKindClass(entry('login_failed'))).toBe('kind-badge audit-kind warn');
  });
});

describe('verify, export, paging', () => {
  it('says whether the chain is intact', () => {
    expect(verifyText({ ok: true, records: 42, files: 1, last_seq: 42, last_hash: HASH })).toEqual({ ok: true, text: 'Intact: 42 records, last seq 42' });
    expect(verifyText({ ok: true, records: 1, files: 1, last_seq: 1, last_hash: HASH })).toEqual({ ok: true, text: 'Intact: 1 record, last seq 1' });
    expect(verifyText({ ok: true, records: 0, files: 0, last_seq: null, last_hash: '' }).text).toBe('Intact: 0 records, last seq none');
    expect(verifyText({ ok: true, records: 3, files: 1, last_seq: 3, last_hash: HASH, vouched: true, warning: null }).text).toBe('Intact: 3 records, last seq 3');
    const found = verifyText({ ok: true, records: 7, files: 1, last_seq: 7, last_hash: HASH, vouched: false, warning: 'records 1 to 6 (trusted as found at seq 7)' });
    expect(found).toEqual({ ok: false, text: 'Chain whole, but NOT every record is vouched for (7 records, last seq 7): records 1 to 6 (trusted as found at seq 7)' });
    expect(found.text).not.toMatch(/Intact/);
    expect(verifyText({ ok: false, error: 'line 5 (seq 5): hash mismatch' })).toEqual({
      ok: false,
      text: 'The audit trail does not verify: line 5 (seq 5): hash mismatch',
    });
  });

  it('exports JSON lines and shows the full record', () => {
    const a = entry('login', { address: '1.2.3.4:5' }, { seq: 2 });
    const b = entry('logout', {}, { seq: 1, session: 's-1' });
    const lines = toJsonLines([a, b]);
    expect(lines.endsWith('\n')).toBe(true);
    expect(lines.trimEnd().split('\n').map((l) => JSON.parse(l) as unknown)).toEqual([a, b]);
    expect(toJsonLines([])).toBe('');
    const json = recordJson({ hash: HASH, actor: 'x', extra: 1, seq: 2 } as unknown as AuditEntry);
    expect(Object.keys(JSON.parse(json) as object)).toEqual(['seq', 'actor', 'hash', 'extra']);
    expect(JSON.parse(recordJson(a))).toEqual(a);
    expect(json).toContain('"seq": 2');
    expect(json).toContain(`"hash": "${HASH}"`);
    expect(exportFileName(new Date(2024, 2, 5, 9, 7, 3).getTime())).toBe('portcullis-audit-20240305-090703.jsonl');
    expect(exportFileName(new Date(2024, 2, 5, 9, 7, 3).getTime(), true)).toBe('portcullis-audit-cluster-20240305-090703.jsonl');
  });

  it('exports and shows the gateway of each record', () => {
    const a = entry('login', { node: 'gw-a' }, { seq: 3, node: 'gw-a' });
    const b = entry('logout', { node: 'gw-b' }, { seq: 3, node: 'gw-b' });
    const lines = toJsonLines([a, b])
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as ShownAuditEntry);
    expect(lines.map((e) => [e.node, e.seq])).toEqual([
      ['gw-a', 3],
      ['gw-b', 3],
    ]);
    expect(lines).toEqual([a, b]);
    // This gateway's trail in a cluster: the record as written, its gateway in detail.node.
    const local = entry('login', { node: 'gw-a' }, { seq: 9 });
    expect(JSON.parse(toJsonLines([local])) as unknown).toEqual(local);
    expect(Object.keys(JSON.parse(recordJson(a)) as object).slice(0, 2)).toEqual(['node', 'seq']);
    expect(JSON.parse(recordJson(a))).toEqual(a);
  });

  it('merges a further page newest first without duplicates', () => {
    const e = (seq: number) => entry('login', {}, { seq });
    expect(mergeEntries([e(9), e(8)], [e(8), e(7), e(5)]).map((x) => x.seq)).toEqual([9, 8, 7, 5]);
    expect(mergeEntries([e(9), e(8)], [e(8), e(7), e(5)], false).map((x) => x.seq)).toEqual([9, 8, 7, 5]);
  });

  it('keys records by gateway and seq in the cluster view, ordered by time', () => {
    const c = (node: string, seq: number, ts: number) => entry('login', { node }, { seq, ts_ms: ts, node });
    expect(entryKey(c('gw-a', 3, 1), true)).not.toBe(entryKey(c('gw-b', 3, 1), true));
    expect(entryKey(c('gw-a', 3, 1), true)).toBe(entryKey(c('gw-a', 3, 2), true));
    expect(entryKey(c('gw-a', 3, 1), false)).toBe('3');
    // No collision between names that run into the seq.
    expect(entryKey(c('gw-1', 23, 1), true)).not.toBe(entryKey(c('gw-12', 3, 1), true));
    const shown = [c('gw-b', 5, 300), c('gw-a', 5, 200), c('gw-b', 4, 200)];
    const more = [c('gw-b', 4, 200), c('gw-a', 4, 150), c('gw-b', 3, 100)];
    const merged = mergeEntries(shown, more, true);
    expect(merged.map((x) => [x.node, x.seq])).toEqual([
      ['gw-b', 5],
      ['gw-a', 5],
      ['gw-b', 4],
      ['gw-a', 4],
      ['gw-b', 3],
    ]);
    // Same seq on two gateways: both kept (by seq alone one would be lost).
    expect(mergeEntries([c('gw-a', 1, 10)], [c('gw-b', 1, 10)], true)).toHaveLength(2);
    expect(mergeEntries([c('gw-a', 1, 10)], [c('gw-b', 1, 10)], false)).toHaveLength(1);
    // Records of the same millisecond keep the gateway's order.
    expect(mergeEntries([], [c('gw-b', 2, 10), c('gw-a', 9, 10), c('gw-a', 8, 10)], true).map((x) => x.node)).toEqual(['gw-b', 'gw-a', 'gw-a']);
  });

  it('formats times and refuses invalid ones', () => {
    expect(formatAuditTime(Number.NaN)).toBe('—');
    expect(formatAuditTime(1_700_000_000_000)).toMatch(/2023/);
  });
});
