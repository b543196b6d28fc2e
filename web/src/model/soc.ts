// The security team's console, the pure parts: reasons, URLs, the live list, thumbnails' object
// URLs, and the texts of the watch page and the frozen banner. No DOM here (unit-tested in node).

import type { SessionInfo } from '../api';
import { utf8Length } from './protocol';

/** The banner a user sees on their session page while it is frozen. */
export const FROZEN_BANNER_TEXT = 'The security team has paused your input';

/** Longest reason the gateway takes for a kill or a lock, in UTF-8 bytes. */
export const MAX_REASON_BYTES = 500;

/** How often the SOC page refreshes the list and the thumbnails. */
export const SOC_REFRESH_MS = 2000;

/** Whether a role may use the security team's controls. */
export const isSocRole = (role: string): boolean => role === 'soc' || role === 'admin';

/**
 * Checks a reason the way the gateway does (required, printable, at most 500 bytes once trimmed):
 * the trimmed reason, or an error message for the user.
 */
export function checkReason(text: string): { ok: true; reason: string } | { ok: false; error: string } {
  const reason = text.trim();
  if (reason === '') return { ok: false, error: 'Give a reason: the user sees it and the recording keeps it.' };
  if (/[\u0000-\u001f\u007f-\u009f]/.test(reason)) return { ok: false, error: 'The reason must be one line of printable text.' };
  const bytes = utf8Length(reason);
  if (bytes > MAX_REASON_BYTES) return { ok: false, error: `The reason is too long (${bytes} bytes; at most ${MAX_REASON_BYTES}).` };
  return { ok: true, reason };
}

/** The hash route of the watch page of a session. */
export const watchHref = (id: string): string => `#/watch/${encodeURIComponent(id)}`;

/** The view-only WebSocket URL of a session (wss: on https pages, ws: on http). */
export function watchUrl(loc: { protocol: string; host: string }, id: string): string {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  // batch=1: as the session page's (docs/browser-protocol.md, "Batch").
  return `${scheme}//${loc.host}/api/v1/sessions/${encodeURIComponent(id)}/watch?batch=1`;
}

/** The live thumbnail of a session (JPEG). */
export const liveThumbnailUrl = (id: string): string => `/api/v1/sessions/${encodeURIComponent(id)}/thumbnail`;

/**
 * The sessions the console shows: not closed; those a risk rule fired on first (highest score
 * first), then oldest first (ties by id, so the order is stable).
 */
export function liveSessions(list: readonly SessionInfo[]): SessionInfo[] {
  return list
    .filter((s) => s.state !== 'closed')
    .sort((a, b) => {
      const risk = (b.risk_score ?? 0) - (a.risk_score ?? 0);
      if (risk !== 0) return risk;
      const ta = Date.parse(a.started_at);
      const tb = Date.parse(b.started_at);
      const d = (Number.isNaN(ta) ? 0 : ta) - (Number.isNaN(tb) ? 0 : tb);
      return d !== 0 ? d : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
    });
}

/** What changed between the cards shown (`shown` ids) and a new list: kept cards are updated in place. */
export function reconcile(shown: Iterable<string>, next: readonly SessionInfo[]): { added: SessionInfo[]; removed: string[]; kept: SessionInfo[] } {
  const old = new Set(shown);
  const seen = new Set<string>();
  const added: SessionInfo[] = [];
  const kept: SessionInfo[] = [];
  for (const s of next) {
    if (seen.has(s.id)) continue;
    seen.add(s.id);
    (old.has(s.id) ? kept : added).push(s);
  }
  const removed = [...old].filter((id) => !seen.has(id));
  return { added, removed, kept };
}

/** The risk badge of a session (`null`: no risk rule fired): its text and its tooltip. */
export function riskBadge(s: Pick<SessionInfo, 'risk_score' | 'risk_rules'>): { text: string; title: string } | null {
  const rules = s.risk_rules ?? [];
  if (rules.length === 0) return null;
  return {
    text: `Risk ${s.risk_score ?? 0}`,
    title: `Risk rules that fired: ${rules.join(', ')}`,
  };
}

/** The label and the action of the freeze button for a session's state. */
export function freezeAction(frozen: boolean | undefined): { label: string; action: 'freeze' | 'unfreeze' } {
  return frozen ? { label: 'Unfreeze', action: 'unfreeze' } : { label: 'Freeze', action: 'freeze' };
}

/** How the session came in. */
export function entryLabel(entry: string | undefined): string {
  if (entry === 'rdp') return 'Native RDP';
  if (entry === 'browser') return 'Browser';
  return entry ? entry : 'Unknown';
}

/** How long ago `rfc3339` was, short: `just now`, `45 s`, `12 min`, `3 h 05 min`, `2 d 4 h`. */
export function formatAge(rfc3339: string, nowMs: number): string {
  const t = Date.parse(rfc3339);
  if (Number.isNaN(t)) return '';
  const s = Math.max(0, Math.floor((nowMs - t) / 1000));
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const hours = Math.floor(m / 60);
  if (hours < 24) return `${hours} h ${String(m % 60).padStart(2, '0')} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** The watch page's header. */
export const watchTitle = (user: string, target: string): string => `Watching ${user} on ${target} — view only`;

/** Why a watched session ended, for the watch page: the gateway's words when it gave any. */
export function watchEndText(end: { error: string | null; closedReason: string | null; gotInit: boolean; code?: number }): string {
  if (end.error) return `The session ended: ${end.error}`;
  if (end.closedReason) return `The session ended: ${end.closedReason}`;
  if (end.closedReason === '') return 'The session ended.';
  if (!end.gotInit) {
    return 'The gateway refused or dropped the watch connection: the session may have ended, or you may not be allowed to watch it.';
  }
  const detail = end.code && end.code !== 1005 && end.code !== 1006 ? ` (close code ${end.code})` : '';
  return `The connection to the gateway was lost${detail}.`;
}

/**
 * The object URLs of the thumbnails shown, one per session: a new picture replaces (and revokes)
 * the old one, a session gone revokes its own, `clear` revokes them all (leaving the page).
 */
export class ThumbnailUrls {
  private readonly urls = new Map<string, string>();
  private readonly revoke: (url: string) => void;

  constructor(revoke: (url: string) => void) {
    this.revoke = revoke;
  }

  /** Keeps `url` for `id`, revoking the one it replaces. */
  set(id: string, url: string): void {
    const old = this.urls.get(id);
    this.urls.set(id, url);
    if (old !== undefined && old !== url) this.revoke(old);
  }

  get(id: string): string | undefined {
    return this.urls.get(id);
  }

  drop(id: string): void {
    const old = this.urls.get(id);
    if (old === undefined) return;
    this.urls.delete(id);
    this.revoke(old);
  }

  clear(): void {
    for (const url of this.urls.values()) this.revoke(url);
    this.urls.clear();
  }

  get size(): number {
    return this.urls.size;
  }
}
