// The page shell: header bar with the navigation the role may use, the user and the logout button.

import { logout, type Me } from './api';
import { isAdmin } from './context';
import { isSocRole } from './model/soc';
import { landingHash } from './model/router';
import { h } from './dom';

export type NavKey = 'me' | 'targets' | 'recordings' | 'search' | 'soc' | 'audit' | 'admin-users' | 'admin-targets' | 'admin-grants' | 'admin-sessions' | 'admin-policy' | 'admin-tokens' | 'admin-sso' | 'requests' | 'session';

function navLink(id: string, href: string, label: string, active: boolean): HTMLAnchorElement {
  return h('a', { id, href, class: active ? 'nav-link active' : 'nav-link', 'aria-current': active ? 'page' : null }, label);
}

/** The class of a role badge: `role-admin`, `role-reviewer`, `role-soc` or `role-user` (anything else). */
export const roleClass = (role: string): string =>
  `role-${role === 'admin' || role === 'reviewer' || role === 'soc' ? role : 'user'}`;

/** The dark header bar: wordmark, navigation (admin links for admins), user and logout. */
export function header(me: Me, active: NavKey): HTMLElement {
  const nav = h(
    'nav',
    { class: 'nav', 'aria-label': 'Main' },
    navLink('nav-targets', '#/targets', 'Targets', active === 'targets'),
    navLink('nav-recordings', '#/recordings', 'Recordings', active === 'recordings'),
    navLink('nav-search', '#/search', 'Search', active === 'search'),
    navLink('nav-requests', '#/requests', 'Requests', active === 'requests'),
  );
  if (isSocRole(me.role)) {
    nav.append(navLink('nav-soc', '#/soc', 'SOC', active === 'soc'), navLink('nav-audit', '#/audit', 'Audit', active === 'audit'));
  }
  if (isAdmin(me)) {
    nav.append(
      navLink('nav-admin-users', '#/admin/users', 'Users', active === 'admin-users'),
      navLink('nav-admin-targets', '#/admin/targets', 'Manage targets', active === 'admin-targets'),
      navLink('nav-admin-grants', '#/admin/grants', 'Grants', active === 'admin-grants'),
      navLink('nav-admin-sessions', '#/admin/sessions', 'Sessions', active === 'admin-sessions'),
      navLink('nav-admin-policy', '#/admin/policy', 'Policy', active === 'admin-policy'),
      navLink('nav-admin-tokens', '#/admin/tokens', 'API tokens', active === 'admin-tokens'),
      navLink('nav-admin-sso', '#/admin/sso', 'Sign-on', active === 'admin-sso'),
    );
  }
  // An enrol-only login (the role requires two-factor authentication) reaches no other page.
  if (me.mfa_enrol_required) nav.replaceChildren();
  const logoutBtn = h('button', { id: 'logout', type: 'button', class: 'btn btn-header' }, 'Log out');
  logoutBtn.addEventListener('click', async () => {
    logoutBtn.disabled = true;
    try {
      const answer = await logout();
      // Signed in through an identity provider: its sign-out next (it sends the browser back).
      if (answer?.logout_url) {
        location.assign(answer.logout_url);
        return;
      }
    } catch {
      // Whatever happened, the user wants out: the login page follows anyway.
    }
    location.hash = '#/login';
  });
  return h(
    'header',
    { class: 'topbar' },
    h('a', { class: 'wordmark', href: landingHash(me) }, h('span', { class: 'wordmark-mark', 'aria-hidden': 'true' }), 'Portcullis'),
    nav,
    h(
      'div',
      { class: 'user' },
      h('a', { id: 'current-user', class: 'user-name', href: '#/me', title: 'Your account and two-factor authentication' }, me.name),
      h('span', { id: 'current-role', class: `role-badge ${roleClass(me.role)}` }, me.role),
      logoutBtn,
    ),
  );
}

/** Renders header + a main element into root; returns the main element. */
export function shell(root: HTMLElement, me: Me, active: NavKey, mainClass = 'page'): HTMLElement {
  const main = h('main', { class: mainClass });
  root.append(header(me, active), main);
  return main;
}
