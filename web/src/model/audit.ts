// Pure logic of the audit page (no DOM): the query of the filters, the one-line description of a
// record, its badge, the verify result's text and the export. Contract: `GET /api/v1/audit` and
// `GET /api/v1/audit/verify` (docs/browser-protocol.md, "HTTP API"); the cluster view is
// `GET /api/v1/audit?cluster=true` (crates/portcullis-web/src/audit/api.rs): every gateway's
// chain merged by time, each entry naming its gateway in `node`, paged with a (time, gateway,
// seq) cursor.

import type { AuditEntry, AuditVerify } from '../api';
import { formatBytes, parseLocalDateTime } from './recording';

/** Records per page the audit page asks for (the gateway gives at most 500). */
export const AUDIT_PAGE_SIZE = 100;

/** The kinds the gateway writes (a filter may name others: they match nothing). */
export const AUDIT_KINDS = [
  'login',
  'login_failed',
  'logout',
  'rdp_ticket',
  'session_start',
  'session_end',
  'session_kill',
  'session_freeze',
  'session_unfreeze',
  'viewer_joined',
  'viewer_left',
  'watcher',
  'policy',
  'clipboard',
  'file',
  'admin_change',
  'export',
  'review',
  'user_lock',
  'user_unlock',
] as const;

// ---- filters ------------------------------------------------------------------------------------

/** The audit page's filter inputs, as typed. `from`/`to` are `<input type="datetime-local">` values. */
export interface AuditFilters {
  actor: string;
  target: string;
  session: string;
  /** Kinds, separated by commas and/or spaces. */
  kinds: string;
  from: string;
  to: string;
  /** The cluster view: every gateway's records (`cluster=true`), not only this gateway's trail. */
  cluster: boolean;
  /** With `cluster`: only this gateway's records (ignored without it). */
  node: string;
}

export const EMPTY_AUDIT_FILTERS: AuditFilters = { actor: '', target: '', session: '', kinds: '', from: '', to: '', cluster: false, node: '' };

/** Where the cluster view's next older page starts: the last entry of the page before (all three go together). */
export interface AuditClusterCursor {
  before_ts_ms: number;
  before_node: string;
  before_seq: number;
}

/** Where the next older page starts: `before_seq` in this gateway's trail, the cluster cursor in the cluster view. */
export type AuditCursor = number | AuditClusterCursor;

/**
 * A record as the page shows it. In the cluster view it names its gateway in `node`; a mirrored
 * line that did not parse comes as `{seq, ts_ms, unreadable, node}` only (no kind, actor or hashes).
 */
export type ShownAuditEntry = AuditEntry & { node?: string; unreadable?: string };

/** A page of either view: `next_before_seq` (this gateway's trail) or `next` (the cluster view). */
export interface AnyAuditPage {
  entries: ShownAuditEntry[];
  next_before_seq?: number | null;
  next?: AuditClusterCursor | null;
}

const isSeq = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Whether `v` is a whole cluster cursor (the gateway refuses a partial one). */
export function isClusterCursor(v: unknown): v is AuditClusterCursor {
  if (typeof v !== 'object' || v === null) return false;
  const c = v as Record<string, unknown>;
  return isSeq(c['before_ts_ms']) && typeof c['before_node'] === 'string' && c['before_node'] !== '' && isSeq(c['before_seq']);
}

/** Where the page after `page` starts in that view (`null`: it was the last one, or the answer is malformed). */
export function nextCursor(page: AnyAuditPage, cluster: boolean): AuditCursor | null {
  if (cluster) {
    const n = page.next;
    return isClusterCursor(n) ? { before_ts_ms: n.before_ts_ms, before_node: n.before_node, before_seq: n.before_seq } : null;
  }
  const n = page.next_before_seq;
  return isSeq(n) && n > 0 ? n : null;
}

/** A kind name as the gateway accepts it: 1 to 32 of `a-z`, `0-9`, `_`. */
const KIND_NAME = /^[a-z0-9_]{1,32}$/;

/**
 * The kinds of a comma (or space) separated list, trimmed, lower-cased and without duplicates,
 * and the names the gateway would refuse (`invalid`).
 */
export function parseKinds(text: string): { kinds: string[]; invalid: string[] } {
  const kinds: string[] = [];
  const invalid: string[] = [];
  for (const raw of text.split(/[\s,]+/)) {
    if (raw === '') continue;
    const name = raw.toLowerCase();
    if (!KIND_NAME.test(name)) {
      if (!invalid.includes(raw)) invalid.push(raw);
    } else if (!kinds.includes(name)) {
      kinds.push(name);
    }
  }
  return { kinds, invalid };
}

/** Whether any filter is set (so an empty table says "no match" rather than "nothing yet"). */
export function hasFilters(f: AuditFilters): boolean {
  return (
    f.actor.trim() !== '' ||
    f.target.trim() !== '' ||
    f.session.trim() !== '' ||
    parseKinds(f.kinds).kinds.length > 0 ||
    parseLocalDateTime(f.from) !== null ||
    parseLocalDateTime(f.to) !== null ||
    (f.cluster && f.node.trim() !== '')
  );
}

/**
 * The query string of `GET /api/v1/audit` for the filters: `cluster=true` (and `node` when set)
 * for the cluster view, then only the set filters (the gateway matches an empty `actor=`
 * literally), `from`/`to` as `since_ms`/`until_ms`, then where to page on (`before_seq` in this
 * gateway's trail, `before_ts_ms`, `before_node` and `before_seq` in the cluster view; a cursor of
 * the other view is left out) and `limit`. Always starts with `?`.
 */
export function auditQuery(f: AuditFilters, before: AuditCursor | null = null, limit = AUDIT_PAGE_SIZE): string {
  const q = new URLSearchParams();
  if (f.cluster) {
    q.set('cluster', 'true');
    const node = f.node.trim();
    if (node !== '') q.set('node', node);
  }
  const actor = f.actor.trim();
  if (actor !== '') q.set('actor', actor);
  const target = f.target.trim();
  if (target !== '') q.set('target', target);
  const session = f.session.trim();
  if (session !== '') q.set('session', session);
  const { kinds } = parseKinds(f.kinds);
  if (kinds.length > 0) q.set('kind', kinds.join(','));
  const since = parseLocalDateTime(f.from);
  if (since !== null && since >= 0) q.set('since_ms', String(since));
  const until = parseLocalDateTime(f.to);
  if (until !== null && until >= 0) q.set('until_ms', String(until));
  if (f.cluster) {
    if (isClusterCursor(before)) {
      q.set('before_ts_ms', String(before.before_ts_ms));
      q.set('before_node', before.before_node);
      q.set('before_seq', String(before.before_seq));
    }
  } else if (typeof before === 'number' && Number.isInteger(before) && before > 0) {
    q.set('before_seq', String(before));
  }
  q.set('limit', String(Math.max(1, Math.min(500, Math.floor(limit)))));
  return `?${q.toString()}`;
}

// ---- presentation -------------------------------------------------------------------------------

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A local date/time with seconds from Unix ms ('—' when invalid). */
export function formatAuditTime(ms: number): string {
  const d = new Date(ms);
  if (!Number.isFinite(ms) || Number.isNaN(d.getTime())) return '—';
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/**
 * The gateway whose chain holds a record: `node` in the cluster view, else `detail.node` (every
 * record a gateway in a cluster writes names it), else `null`.
 */
export function entryNode(e: Pick<ShownAuditEntry, 'node' | 'detail'>): string | null {
  if (typeof e.node === 'string' && e.node !== '') return e.node;
  const n = isObject(e.detail) ? e.detail['node'] : undefined;
  return typeof n === 'string' && n !== '' ? n : null;
}

/** Whether the table has a Gateway column: in the cluster view, or when a record shown names its gateway. */
export const showsGateway = (entries: readonly Pick<ShownAuditEntry, 'node' | 'detail'>[], cluster: boolean): boolean =>
  cluster || entries.some((e) => entryNode(e) !== null);

/** A record's kind as the page shows it (`unreadable` for a mirrored line that did not parse). */
export const kindOf = (e: Pick<ShownAuditEntry, 'kind'>): string => (typeof e.kind === 'string' ? e.kind : 'unreadable');

/** Whether a record is one the security team should notice: a refusal, a failure, a kill, a lock, an unreadable line. */
export function isWarning(e: Pick<ShownAuditEntry, 'kind' | 'detail' | 'unreadable'>): boolean {
  if (typeof e.kind !== 'string' || e.unreadable !== undefined) return true;
  if (/failed|kill|deny|denied|refused|lock$/.test(e.kind) && e.kind !== 'user_unlock') return true;
  const decision = e.detail?.['decision'];
  return typeof decision === 'string' && decision.toLowerCase() === 'deny';
}

/** The classes of a record's kind badge (`audit-kind warn` for the ones to notice). */
export const auditKindClass = (e: Pick<ShownAuditEntry, 'kind' | 'detail' | 'unreadable'>): string =>
  isWarning(e) ? 'kind-badge audit-kind warn' : 'kind-badge audit-kind';

/** Longest description shown in the table (the full record is one click away). */
const MAX_DESCRIPTION = 300;
/** Longest rendering of one value inside a description. */
const MAX_VALUE = 120;

function oneLine(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ').replace(/\s{2,}/g, ' ').trim();
}

function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/**
 * A JSON value, compact and readable: strings bare (quoted only when empty or ambiguous),
 * `{name: alice, role: user}`, `[a, b]`, `null`. Depth-limited and clipped to `max` characters.
 */
export function compactValue(v: unknown, max = MAX_VALUE): string {
  const render = (x: unknown, depth: number): string => {
    if (x === null || x === undefined) return 'null';
    if (typeof x === 'string') return x === '' || /^\s|\s$|[,:{}[\]]/.test(x) ? JSON.stringify(x) : x;
    if (typeof x === 'number' || typeof x === 'boolean') return String(x);
    if (Array.isArray(x)) {
      if (depth >= 3) return '[…]';
      return `[${x.map((y) => render(y, depth + 1)).join(', ')}]`;
    }
    if (typeof x === 'object') {
      const entries = Object.entries(x as Record<string, unknown>);
      if (entries.length === 0) return '{}';
      if (depth >= 3) return '{…}';
      return `{${entries.map(([k, y]) => `${k}: ${render(y, depth + 1)}`).join(', ')}}`;
    }
    return String(x);
  };
  return clip(oneLine(render(v, 0)), max);
}

/** Deep equality of JSON values (key order does not matter). */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameJson(x, b[i]));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => k in b && sameJson(a[k], b[k]));
  }
  return false;
}

/**
 * What an admin change changed, short: `→ {…}` for a creation, `{…} →` for a deletion, and for
 * two objects only the top-level keys that differ, `key: old → new` (`∅` for a key absent on one
 * side), separated by `; `.
 */
export function diffSummary(before: unknown, after: unknown): string {
  const none = (v: unknown) => v === null || v === undefined;
  if (none(before) && none(after)) return 'no details';
  if (none(before)) return `→ ${compactValue(after)}`;
  if (none(after)) return `${compactValue(before)} →`;
  if (isObject(before) && isObject(after)) {
    const keys = [...Object.keys(before), ...Object.keys(after).filter((k) => !(k in before))];
    const changed = keys
      .filter((k) => !sameJson(before[k], after[k]))
      .map((k) => {
        const side = (o: Record<string, unknown>) => (k in o ? compactValue(o[k], 60) : '∅');
        return `${k}: ${side(before)} → ${side(after)}`;
      });
    return changed.length ? changed.join('; ') : 'no change';
  }
  if (sameJson(before, after)) return 'no change';
  return `${compactValue(before, 60)} → ${compactValue(after, 60)}`;
}

/** `detail[key]` as text ('' when absent; non-strings compact). */
function text(detail: Record<string, unknown>, key: string): string {
  const v = detail[key];
  if (v === undefined || v === null) return '';
  return typeof v === 'string' ? oneLine(v) : compactValue(v);
}

/** ` (x)` when `x` is set, else ''. */
const paren = (x: string): string => (x ? ` (${x})` : '');
/** `: x` when `x` is set, else ''. */
const colon = (x: string): string => (x ? `: ${x}` : '');

function byteCount(v: unknown): string {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? formatBytes(v) : '';
}

/**
 * The detail fields left once the ones a description names are taken out (for unknown shapes);
 * `node` is the Gateway column's.
 */
function rest(detail: Record<string, unknown>, used: readonly string[]): string {
  const left = Object.fromEntries(Object.entries(detail).filter(([k]) => !used.includes(k) && k !== 'type' && k !== 'entry' && k !== 'node'));
  return Object.keys(left).length ? compactValue(left) : '';
}

/**
 * A human line for one audit record, e.g. `Login failed from 127.0.0.1:5000 (browser): wrong user
 * name or password`. The gateway (`node`) is not repeated: the Gateway column shows it.
 */
export function describeAudit(e: Pick<ShownAuditEntry, 'kind' | 'actor' | 'target' | 'detail' | 'unreadable' | 'node'>): string {
  if (typeof e.kind !== 'string' || typeof e.unreadable === 'string') {
    const node = typeof e.node === 'string' && e.node !== '' ? ` of ${e.node}` : '';
    const why = typeof e.unreadable === 'string' ? e.unreadable : 'it names no kind';
    return clip(oneLine(`Unreadable record: the line in the chain${node} does not parse (${why})`), MAX_DESCRIPTION);
  }
  const d: Record<string, unknown> = isObject(e.detail) ? e.detail : {};
  const entry = text(d, 'entry');
  const address = text(d, 'address');
  const reason = text(d, 'reason');
  const user = text(d, 'user');
  const from = (addr: string) => (addr ? ` from ${addr}` : '');
  let line: string;
  switch (e.kind) {
    case 'login':
      line = `Login${from(address)}${paren(entry)}`;
      break;
    case 'login_failed':
      line = `Login failed${from(address)}${paren(entry)}${colon(reason)}`;
      break;
    case 'logout':
      line = `Logout${colon(reason)}`;
      break;
    case 'rdp_ticket':
      line = `RDP file issued${e.target ? ` for ${e.target}` : ''}`;
      break;
    case 'session_start':
      line = `Session started${from(text(d, 'client_addr') || address)}${paren(entry)}`;
      break;
    case 'session_end':
      line = `Session ended${colon(reason)}`;
      break;
    case 'session_kill':
      line = `Session${user ? ` of ${user}` : ''} killed${colon(reason)}`;
      break;
    case 'session_freeze':
      line = `Session frozen${user ? ` (${user}'s input held)` : ''}${colon(reason)}`;
      break;
    case 'session_unfreeze':
      line = 'Session unfrozen';
      break;
    case 'viewer_joined':
      line = `Viewer joined${colon(user || e.actor)}`;
      break;
    case 'viewer_left':
      line = `Viewer left${colon(user || e.actor)}`;
      break;
    case 'watcher':
      line = `Watcher joined (view only)${colon(user || e.actor)}`;
      break;
    case 'policy': {
      const decision = text(d, 'decision') || 'decision';
      const action = text(d, 'action');
      line = `Policy ${decision}${colon(action)}${paren(reason)}`;
      break;
    }
    case 'clipboard': {
      const dir = text(d, 'direction');
      const way = dir === 'to_target' ? ' to the target' : dir === 'from_target' ? ' from the target' : dir ? ` ${dir.replace(/_/g, ' ')}` : '';
      line = `Clipboard${way}${colon(byteCount(d['bytes']))}`;
      break;
    }
    case 'file': {
      const path = text(d, 'path');
      if (d['type'] === 'file_change') {
        line = `File ${text(d, 'change') || 'changed'}${colon(path)}`;
      } else {
        const dir = text(d, 'direction');
        const sha = text(d, 'sha256');
        const facts = [byteCount(d['bytes']), sha ? `sha256 ${sha.slice(0, 12)}…` : ''].filter(Boolean).join(', ');
        line = `File ${dir || 'transfer'}${colon(path)}${paren(facts)}`;
      }
      break;
    }
    case 'admin_change':
      line = `Changed ${text(d, 'action') || 'configuration'}: ${diffSummary(d['before'], d['after'])}`;
      break;
    case 'export': {
      const what = text(d, 'what');
      line = `Exported ${what || 'a recording'}${e.target ? ` of ${e.target}` : ''}`;
      break;
    }
    case 'review': {
      const action = text(d, 'action');
      const words = text(d, 'comment') || text(d, 'note');
      line = `Review of ${text(d, 'user') || 'a'} session${e.target ? ` on ${e.target}` : ''}: ${action || 'changed'}${colon(words)}`;
      break;
    }
    case 'user_lock':
      line = `Locked ${user || e.target || 'a user'}${colon(reason)}`;
      break;
    case 'user_unlock':
      line = `Unlocked ${user || e.target || 'a user'}`;
      break;
    default: {
      const extra = rest(d, []);
      line = `${e.kind.replace(/_/g, ' ')}${colon(extra)}`;
      line = line.charAt(0).toUpperCase() + line.slice(1);
    }
  }
  return clip(oneLine(line), MAX_DESCRIPTION);
}

/** The order of the fields in the expanded record (others follow as they came). */
const FIELD_ORDER = ['node', 'seq', 'ts_ms', 'kind', 'actor', 'target', 'session', 'detail', 'prev', 'hash'];

/** The full record as the page shows it expanded: pretty JSON, every field, its gateway (cluster view) and seq first, the hashes last. */
export function recordJson(e: AuditEntry): string {
  const all = e as unknown as Record<string, unknown>;
  const ordered: Record<string, unknown> = {};
  for (const k of FIELD_ORDER) if (k in all) ordered[k] = all[k];
  for (const [k, v] of Object.entries(all)) if (!(k in ordered)) ordered[k] = v;
  return JSON.stringify(ordered, null, 2);
}

/** The verify button's title: it checks this gateway's own chain, also in the cluster view. */
export function verifyTitle(cluster: boolean): string {
  return cluster
    ? "Verify checks this gateway's own chain; `portcullis audit verify --cluster` checks every gateway's"
    : "Checks this gateway's whole hash chain (and its seals) now";
}

/** What the verify button shows, and whether it is bad news. */
export function verifyText(v: AuditVerify): { ok: boolean; text: string } {
  if (v.ok) {
    const n = v.records;
    const last = v.last_seq === null || v.last_seq === undefined ? 'none' : String(v.last_seq);
    const counted = `${n} record${n === 1 ? '' : 's'}, last seq ${last}`;
    if (v.vouched === false) {
      return { ok: false, text: `Chain whole, but NOT every record is vouched for (${counted}): ${v.warning || 'records were sealed as found'}` };
    }
    return { ok: true, text: `Intact: ${counted}` };
  }
  return { ok: false, text: `The audit trail does not verify: ${v.error || 'no reason given'}` };
}

// ---- export -------------------------------------------------------------------------------------

/**
 * The records as JSON lines (one record per line, each ending in a newline), as the gateway sent
 * them: in the cluster view each names its gateway (`node`); in this gateway's trail, in a
 * cluster, `detail.node` does.
 */
export const toJsonLines = (entries: readonly ShownAuditEntry[]): string => entries.map((e) => `${JSON.stringify(e)}\n`).join('');

/** `portcullis-audit-YYYYMMDD-HHMMSS.jsonl` (local time of `nowMs`); `portcullis-audit-cluster-…` for the cluster view. */
export function exportFileName(nowMs: number, cluster = false): string {
  const d = new Date(nowMs);
  const p = (n: number) => String(n).padStart(2, '0');
  return `portcullis-audit-${cluster ? 'cluster-' : ''}${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}.jsonl`;
}

/**
 * What makes a record one: its seq in this gateway's trail; its gateway and seq in the cluster
 * view (each gateway has its own chain, so seqs repeat across gateways).
 */
export function entryKey(e: Pick<ShownAuditEntry, 'seq' | 'node' | 'detail'>, cluster: boolean): string {
  return cluster ? JSON.stringify([entryNode(e) ?? '', e.seq]) : String(e.seq);
}

/**
 * Adds records of a further page to those shown, keeping newest first and each record once (by
 * {@link entryKey}). This gateway's trail is ordered by seq; the cluster view by time, records of
 * the same millisecond staying in the gateway's order (by gateway, then seq).
 */
export function mergeEntries<E extends ShownAuditEntry>(shown: readonly E[], more: readonly E[], cluster = false): E[] {
  const seen = new Set(shown.map((e) => entryKey(e, cluster)));
  const out = [...shown];
  for (const e of more) {
    const key = entryKey(e, cluster);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(e);
  }
  return cluster ? out.sort((a, b) => b.ts_ms - a.ts_ms) : out.sort((a, b) => b.seq - a.seq);
}

/** The toolbar's count of the rows shown ('' for none). */
export function countText(shown: number, more: boolean, cluster: boolean): string {
  if (shown === 0) return '';
  return `${shown} record${shown === 1 ? '' : 's'} shown${cluster ? ' from all gateways' : ''}${more ? ', older ones on request' : ''}`;
}
