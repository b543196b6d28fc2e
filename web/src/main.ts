// Portcullis browser UI: a hash router over the pages.

import './style.css';
import { ApiError, getMe, onUnauthorized, type Me } from './api';
import type { PageContext } from './context';
import { h, replace } from './dom';
import { renderAdminGrants } from './pages/admin-grants-page';
import { renderAdminSessions } from './pages/admin-sessions-page';
import { renderAdminTargets } from './pages/admin-targets-page';
import { renderAdminTokens } from './pages/admin-tokens-page';
import { renderAdminSso } from './pages/admin-sso-page';
import { renderRequests } from './pages/requests-page';
import { renderAdminUsers } from './pages/admin-users-page';
import { renderAudit } from './pages/audit-page';
import { renderLogin } from './pages/login-page';
import { renderMe } from './pages/me-page';
import { renderAdminPolicy } from './pages/policy-page';
import { renderPlayer } from './pages/player-page';
import { renderRecordings } from './pages/recordings-page';
import { renderSearch } from './pages/search-page';
import { parseBoxes } from './model/search';
import { renderSession } from './pages/session-page';
import { renderSoc } from './pages/soc-page';
import { renderTargets } from './pages/targets-page';
import { renderWatch } from './pages/watch-page';
import { errorMessage } from './pages/util';
import { landingHash, routeParts } from './model/router';
import { counters } from './test-hooks';

counters(); // window.__portcullis exists from the start

const app = document.getElementById('app') ?? document.body;

/** The logged-in user, once known. */
let me: Me | null = null;
/** Aborts the page being shown. */
let current: AbortController | null = null;

onUnauthorized(() => {
  me = null;
  if (location.hash !== '#/login') location.hash = '#/login';
});

function fatal(root: HTMLElement, message: string): void {
  const retry = h('button', { type: 'button', class: 'btn btn-primary' }, 'Try again');
  retry.addEventListener('click', () => void render());
  replace(
    root,
    h(
      'div',
      { class: 'login-page' },
      h('div', { class: 'login-card' }, h('div', { class: 'login-brand' }, 'Portcullis'), h('div', { class: 'page-error', role: 'alert' }, message), retry),
    ),
  );
}

async function render(): Promise<void> {
  current?.abort();
  const ac = new AbortController();
  current = ac;
  const signal = ac.signal;
  replace(app);
  window.scrollTo(0, 0);

  const parts = routeParts(location.hash);
  const [first, second] = parts;

  if (first === 'login') {
    me = null;
    document.title = 'Sign in · Portcullis';
    renderLogin(app, signal, (user) => {
      me = user;
      location.hash = user.mfa_enrol_required ? '#/me' : landingHash(user);
    });
    return;
  }

  if (me === null) {
    try {
      me = await getMe();
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && err.status === 401) return; // already sent to #/login
      fatal(app, errorMessage(err));
      return;
    }
    if (signal.aborted) return;
  }

  const ctx: PageContext = { root: app, me, signal };
  if (me.mfa_enrol_required && first !== 'me') {
    // The role requires two-factor authentication: this login may only set it up.
    location.replace('#/me');
    return;
  }
  if (first === 'me' && parts.length === 1) {
    document.title = 'Your account · Portcullis';
    await renderMe(ctx, () => {
      // Enrolment confirmed: the login is a full one now; the header shows every page.
      me = ctx.me;
    });
  } else if (first === 'requests' && parts.length === 1) {
    document.title = 'Access requests · Portcullis';
    await renderRequests(ctx);
  } else if (first === 'targets' && parts.length === 1) {
    document.title = 'Targets · Portcullis';
    await renderTargets(ctx);
  } else if (first === 'session' && second !== undefined && parts.length === 2) {
    document.title = `${second} · Portcullis`;
    renderSession(ctx, second);
  } else if (first === 'soc' && parts.length === 1) {
    document.title = 'Security console · Portcullis';
    await renderSoc(ctx);
  } else if (first === 'audit' && parts.length === 1) {
    document.title = 'Audit trail · Portcullis';
    await renderAudit(ctx);
  } else if (first === 'watch' && second !== undefined && parts.length === 2) {
    document.title = 'Watching · Portcullis';
    await renderWatch(ctx, second);
  } else if (first === 'recordings' && parts.length === 1) {
    document.title = 'Recordings · Portcullis';
    await renderRecordings(ctx);
  } else if (first === 'recordings' && second !== undefined && parts.length === 2) {
    document.title = 'Recording · Portcullis';
    await renderPlayer(ctx, second);
  } else if (first === 'recordings' && second !== undefined && parts[2] === 'at' && (parts.length === 4 || (parts.length === 6 && parts[4] === 'boxes'))) {
    // A search hit's moment: `#/recordings/<id>/at/<ms>[/boxes/x,y,w,h;…]`.
    document.title = 'Recording · Portcullis';
    await renderPlayer(ctx, second, { atMs: Math.max(0, Number(parts[3]) || 0), boxes: parseBoxes(parts[5]) });
  } else if (first === 'search' && parts.length === 1) {
    document.title = 'Search · Portcullis';
    await renderSearch(ctx);
  } else if (first === 'admin' && parts.length === 2) {
    document.title = 'Admin · Portcullis';
    switch (second) {
      case 'users':
        await renderAdminUsers(ctx);
        break;
      case 'targets':
        await renderAdminTargets(ctx);
        break;
      case 'grants':
        await renderAdminGrants(ctx);
        break;
      case 'sessions':
        await renderAdminSessions(ctx);
        break;
      case 'policy':
        await renderAdminPolicy(ctx);
        break;
      case 'tokens':
        await renderAdminTokens(ctx);
        break;
      case 'sso':
        await renderAdminSso(ctx);
        break;
      default:
        location.replace(landingHash(me));
    }
  } else {
    location.replace(landingHash(me));
  }
}

window.addEventListener('hashchange', () => void render());
void render();
