// `#/admin/sessions`: the live sessions, refreshed every 2 s; an admin can close one.

import { closeSession, listSessions, type SessionInfo } from '../api';
import type { PageContext } from '../context';
import { h, replace, showError } from '../dom';
import { adminShell, attempt, deleteButton, emptyRow } from './admin-kit';
import { errorMessage, formatTime } from './util';

const REFRESH_MS = 2000;

export async function renderAdminSessions(ctx: PageContext): Promise<void> {
  const page = adminShell(
    ctx,
    'admin-sessions',
    'Sessions',
    'Live and recent sessions through the gateway. Refreshes every 2 seconds.',
    ['ID', 'User', 'Target', 'Client address', 'Started', 'State', ''],
    'sessions-table',
  );
  if (!page) return;
  const { main, error, tbody, table } = page;
  main.append(error, h('div', { class: 'card table-card' }, table));

  const row = (s: SessionInfo) =>
    h(
      'tr',
      { 'data-session': s.id },
      h('td', { class: 'mono' }, s.id),
      h('td', null, s.user),
      h('td', null, s.target),
      h('td', { class: 'mono' }, s.client_addr),
      h('td', { title: s.started_at }, formatTime(s.started_at)),
      h('td', null, h('span', { class: `state-badge state-${/^[a-z]+$/.test(s.state) ? s.state : 'unknown'}` }, s.state)),
      h(
        'td',
        { class: 'actions' },
        s.state === 'closed'
          ? null
          : deleteButton('Close', { 'data-close-session': s.id, 'aria-label': `Close session ${s.id}` }, async () => {
              if (await attempt(ctx, error, () => closeSession(s.id))) await refresh();
            }),
      ),
    );

  let shown = '';
  let inFlight = false;
  let refreshFailed = false;
  const refresh = async () => {
    if (inFlight || ctx.signal.aborted) return;
    inFlight = true;
    try {
      const sessions = await listSessions();
      if (ctx.signal.aborted) return;
      const key = JSON.stringify(sessions);
      // Rebuild only on change, so buttons stay put under the pointer.
      if (key !== shown) {
        shown = key;
        replace(tbody, ...(sessions.length ? sessions.map(row) : [emptyRow(7, 'No sessions.')]));
      }
      if (refreshFailed) {
        refreshFailed = false;
        showError(error, null);
      }
    } catch (err) {
      if (!ctx.signal.aborted) {
        showError(error, errorMessage(err));
        refreshFailed = true;
      }
    } finally {
      inFlight = false;
    }
  };

  const timer = window.setInterval(() => void refresh(), REFRESH_MS);
  ctx.signal.addEventListener('abort', () => window.clearInterval(timer));
  await refresh();
}
