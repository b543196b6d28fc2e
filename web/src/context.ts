// What the router hands every page (`PageContext`) and role checks on the logged-in user.

import type { Me } from './api';

/** What the router hands a page. */
export interface PageContext {
  /** The element the page renders into (emptied for it). */
  root: HTMLElement;
  /** The logged-in user. */
  me: Me;
  /** Aborted when the user navigates away: stop timers, close sockets, ignore late answers. */
  signal: AbortSignal;
}

export const isAdmin = (me: Me): boolean => me.role === 'admin';
/** Administrators, reviewers and the security team review recordings (marks, flags, reports). */
export const canReview = (me: Me): boolean => ['admin', 'reviewer', 'soc'].includes(me.role);
