import { describe, expect, it } from 'vitest';
import type { SessionInfo } from '../api';
import { roleClass } from '../layout';
import {
  checkReason,
  entryLabel,
  formatAge,
  freezeAction,
  isSocRole,
  liveSessions,
  riskBadge,
  liveThumbnailUrl,
  MAX_REASON_BYTES,
  reconcile,
  ThumbnailUrls,
  watchEndText,
  watchHref,
  watchTitle,
  watchUrl,
} from './soc';

const session = (id: string, started_at: string, extra: Partial<SessionInfo> = {}): SessionInfo => ({
  id,
  user: 'alice',
  target: 'desk',
  client_addr: '127.0.0.1:5000',
  started_at,
  state: 'active',
  entry: 'browser',
  frozen: false,
  ...extra,
});

describe('checkReason', () => {
  it('trims and accepts printable text up to 500 bytes', () => {
    expect(checkReason('  suspicious commands ')).toEqual({ ok: true, reason: 'suspicious commands' });
    expect(checkReason('x'.repeat(MAX_REASON_BYTES))).toEqual({ ok: true, reason: 'x'.repeat(500) });
    expect(checkReason('Überprüfung läuft')).toEqual({ ok: true, reason: 'Überprüfung läuft' });
  });

  it('requires a reason', () => {
    expect(checkReason('')).toMatchObject({ ok: false });
    expect(checkReason('   \t ')).toMatchObject({ ok: false });
  });

  it('counts UTF-8 bytes, not characters', () => {
    const r = checkReason('é'.repeat(251)); // 502 bytes
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toContain('502 bytes');
    expect(checkReason('é'.repeat(250)).ok).toBe(true);
  });

  it('refuses control characters', () => {
    expect(checkReason('line one\nline two').ok).toBe(false);
    expect(checkReason('bell\u0007').ok).toBe(false);
    expect(checkReason('c1\u0085').ok).toBe(false);
  });
});

describe('URLs', () => {
  it('encodes the session id', () => {
    expect(watchHref('0190-ab')).toBe('#/watch/0190-ab');
    expect(watchHref('a/b c')).toBe('#/watch/a%2Fb%20c');
    expect(liveThumbnailUrl('a b')).toBe('/api/v1/sessions/a%20b/thumbnail');
  });

  it('watches over wss on https and ws on http', () => {
    expect(watchUrl({ protocol: 'https:', host: 'gw:8443' }, 's-1')).toBe('wss://gw:8443/api/v1/sessions/s-1/watch?batch=1');
    expect(watchUrl({ protocol: 'http:', host: '127.0.0.1:8080' }, 'a?b')).toBe('ws://127.0.0.1:8080/api/v1/sessions/a%3Fb/watch?batch=1');
  });
});

describe('liveSessions', () => {
  it('drops closed sessions and orders by start, then id', () => {
    const list = [
      session('c', '2026-12-01T10:00:02Z'),
      session('b', '2026-12-01T10:00:01Z'),
      session('x', '2026-12-01T09:00:00Z', { state: 'closed' }),
      session('a', '2026-12-01T10:00:01Z'),
      session('z', 'not a time', { state: 'connecting' }),
    ];
    expect(liveSessions(list).map((s) => s.id)).toEqual(['z', 'a', 'b', 'c']);
    expect(list[0]!.id).toBe('c'); // the input is left alone
  });
});

describe('risk', () => {
  it('puts the sessions a risk rule fired on first, highest score first', () => {
    const list = [
      session('calm', '2026-12-01T09:00:00Z'),
      session('low', '2026-12-01T10:00:00Z', { risk_score: 20, risk_rules: ['log_clearing'] }),
      session('high', '2026-12-01T11:00:00Z', { risk_score: 90, risk_rules: ['account_creation', 'mass_deletion'] }),
    ];
    expect(liveSessions(list).map((s) => s.id)).toEqual(['high', 'low', 'calm']);
  });

  it('names the rules on the badge', () => {
    expect(riskBadge({})).toBeNull();
    expect(riskBadge({ risk_score: 0, risk_rules: [] })).toBeNull();
    expect(riskBadge({ risk_score: 60, risk_rules: ['account_creation', 'prod_dump'] })).toEqual({
      text: 'Risk 60',
      title: 'Risk rules that fired: account_creation, prod_dump',
    });
  });
});

describe('reconcile', () => {
  it('splits a new list into added, kept and removed cards', () => {
    const r = reconcile(['a', 'b'], [session('b', ''), session('c', '')]);
    expect(r.added.map((s) => s.id)).toEqual(['c']);
    expect(r.kept.map((s) => s.id)).toEqual(['b']);
    expect(r.removed).toEqual(['a']);
  });

  it('handles empty lists and duplicate ids', () => {
    expect(reconcile([], [])).toEqual({ added: [], kept: [], removed: [] });
    expect(reconcile(['a'], []).removed).toEqual(['a']);
    const r = reconcile([], [session('a', ''), session('a', '')]);
    expect(r.added).toHaveLength(1);
  });
});

describe('freezeAction', () => {
  it('offers the opposite of the state', () => {
    expect(freezeAction(false)).toEqual({ label: 'Freeze', action: 'freeze' });
    expect(freezeAction(undefined)).toEqual({ label: 'Freeze', action: 'freeze' });
    expect(freezeAction(true)).toEqual({ label: 'Unfreeze', action: 'unfreeze' });
  });
});

describe('entryLabel', () => {
  it('names the entry path', () => {
    expect(entryLabel('browser')).toBe('Browser');
    expect(entryLabel('rdp')).toBe('Native RDP');
    expect(entryLabel('ssh')).toBe('ssh');
    expect(entryLabel(undefined)).toBe('Unknown');
  });
});

describe('formatAge', () => {
  const now = Date.parse('2026-12-01T12:00:00Z');
  it('is short and coarse', () => {
    expect(formatAge('2026-12-01T12:00:00Z', now)).toBe('just now');
    expect(formatAge('2026-12-01T12:00:03Z', now)).toBe('just now'); // clock skew
    expect(formatAge('2026-12-01T11:59:15Z', now)).toBe('45 s');
    expect(formatAge('2026-12-01T11:48:00Z', now)).toBe('12 min');
    expect(formatAge('2026-12-01T08:55:00Z', now)).toBe('3 h 05 min');
    expect(formatAge('2026-11-29T08:00:00Z', now)).toBe('2 d 4 h');
    expect(formatAge('yesterday', now)).toBe('');
  });
});

describe('watch page texts', () => {
  it('says who is watched and that it is view only', () => {
    expect(watchTitle('alice', 'desk')).toBe('Watching alice on desk — view only');
  });

  it('gives the gateway’s reason for the end when there is one', () => {
    expect(watchEndText({ error: 'the security team ended this session: bye', closedReason: null, gotInit: true })).toBe(
      'The session ended: the security team ended this session: bye',
    );
    expect(watchEndText({ error: null, closedReason: 'target closed', gotInit: true })).toBe('The session ended: target closed');
    expect(watchEndText({ error: null, closedReason: '', gotInit: true })).toBe('The session ended.');
  });

  it('tells a refused watch from a lost connection', () => {
    expect(watchEndText({ error: null, closedReason: null, gotInit: false, code: 1006 })).toContain('refused or dropped');
    expect(watchEndText({ error: null, closedReason: null, gotInit: true, code: 1006 })).toBe('The connection to the gateway was lost.');
    expect(watchEndText({ error: null, closedReason: null, gotInit: true, code: 1011 })).toBe(
      'The connection to the gateway was lost (close code 1011).',
    );
  });
});

describe('ThumbnailUrls', () => {
  it('revokes a picture when it is replaced, dropped or the page is left', () => {
    const revoked: string[] = [];
    const t = new ThumbnailUrls((u) => revoked.push(u));
    t.set('a', 'blob:1');
    t.set('b', 'blob:2');
    expect(revoked).toEqual([]);
    t.set('a', 'blob:3');
    expect(revoked).toEqual(['blob:1']);
    expect(t.get('a')).toBe('blob:3');
    t.set('a', 'blob:3'); // the same URL again is not revoked
    expect(revoked).toEqual(['blob:1']);
    t.drop('b');
    t.drop('b');
    t.drop('nope');
    expect(revoked).toEqual(['blob:1', 'blob:2']);
    expect(t.size).toBe(1);
    t.clear();
    expect(revoked).toEqual(['blob:1', 'blob:2', 'blob:3']);
    expect(t.size).toBe(0);
  });
});

describe('roles', () => {
  it('lets the security team and administrators in', () => {
    expect(isSocRole('soc')).toBe(true);
    expect(isSocRole('admin')).toBe(true);
    expect(isSocRole('reviewer')).toBe(false);
    expect(isSocRole('user')).toBe(false);
  });

  it('gives the soc role its own badge', () => {
    expect(roleClass('soc')).toBe('role-soc');
    expect(roleClass('admin')).toBe('role-admin');
    expect(roleClass('reviewer')).toBe('role-reviewer');
    expect(roleClass('user')).toBe('role-user');
    expect(roleClass('<script>')).toBe('role-user');
  });
});
