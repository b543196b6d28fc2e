import { describe, expect, it } from 'vitest';
import type { AuditEntry } from '../api';
import {
  AUDIT_KINDS,
  auditKindClass,
  auditQuery,
  compactValue,
  describeAudit,
  diffSummary,
  EMPTY_AUDIT_FILTERS,
  exportFileName,
  formatAuditTime,
  hasFilters,
  isWarning,
  mergeEntries,
  parseKinds,
  recordJson,
  toJsonLines,
  verifyText,
} from './audit';
import { parseLocalDateTime } from './recording';

const HASH = 'a'.repeat(64);

function entry(kind: string, detail: Record<string, unknown> = {}, more: Partial<AuditEntry> = {}): AuditEntry {
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
    const f = { actor: ' alice ', target: 'desk', session: 'abc-1', kinds: 'login, login_failed', from: '2024-03-05T10:00', to: '2024-03-05T11:30:15' };
    const q = new URLSearchParams(auditQuery(f).slice(1));
    expect(q.get('actor')).toBe('alice');
    expect(q.get('target')).toBe('desk');
    expect(q.get('session')).toBe('abc-1');
    expect(q.get('kind')).toBe('login,login_failed');
    expect(q.get('since_ms')).toBe(String(parseLocalDateTime('2024-03-05T10:00')));
    expect(q.get('until_ms')).toBe(String(parseLocalDateTime('2024-03-05T11:30:15')));
    expect(q.get('limit')).toBe('100');
    expect(q.has('before_seq')).toBe(false);
    expect(hasFilters(f)).toBe(true);
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
  });

  it('merges a further page newest first without duplicates', () => {
    const e = (seq: number) => entry('login', {}, { seq });
    expect(mergeEntries([e(9), e(8)], [e(8), e(7), e(5)]).map((x) => x.seq)).toEqual([9, 8, 7, 5]);
  });

  it('formats times and refuses invalid ones', () => {
    expect(formatAuditTime(Number.NaN)).toBe('—');
    expect(formatAuditTime(1_700_000_000_000)).toMatch(/2023/);
  });
});
