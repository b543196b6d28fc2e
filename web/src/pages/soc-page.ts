// `#/soc`: the security team's console (roles soc and admin). Every live session as a card with a
// live thumbnail, and the controls: watch, freeze/unfreeze, kill (with a reason), lock the user.
// The list and the thumbnails refresh every 2 seconds while the page is open.

import {
  freezeSession,
  killSession,
  listSessions,
  lockUser,
  sessionChangesUrl,
  sessionThumbnail,
  unfreezeSession,
  type SessionInfo,
} from '../api';
import type { PageContext } from '../context';
import { h, replace, showError } from '../dom';
import { shell } from '../layout';
import {
  entryLabel,
  formatAge,
  freezeAction,
  isSocRole,
  liveSessions,
  reconcile,
  riskBadge,
  SOC_REFRESH_MS,
  ThumbnailUrls,
  watchHref,
} from '../model/soc';
import { reasonForm, type ReasonForm } from './reason-form';
import { formatBytes } from '../model/recording';
import { counters } from '../test-hooks';
import { errorMessage, formatTime } from './util';

interface Card {
  session: SessionInfo;
  el: HTMLElement;
  img: HTMLImageElement;
  noPicture: HTMLElement;
  frozenBadge: HTMLElement;
  riskBadge: HTMLElement;
  stateBadge: HTMLElement;
  entry: HTMLElement;
  started: HTMLElement;
  crossed: HTMLElement;
  freezeBtn: HTMLButtonElement;
  error: HTMLElement;
  kill: ReasonForm;
  lock: ReasonForm;
  /** A thumbnail request is under way. */
  fetching: boolean;
}

/** Refreshes a pushed change causes are at least this far apart. */
const PUSH_MIN_MS = 500;

const stateClass = (state: string): string => `state-badge state-${/^[a-z]+$/.test(state) ? state : 'unknown'}`;

export function notAllowed(main: HTMLElement): void {
  main.append(
    h(
      'div',
      { id: 'not-allowed', class: 'empty', role: 'alert' },
      h('p', { class: 'empty-title' }, 'You are not allowed to view this page.'),
      h('p', { class: 'muted' }, 'Only the security team and administrators can watch and control sessions.'),
    ),
  );
}

export async function renderSoc(ctx: PageContext): Promise<void> {
  const { signal } = ctx;
  const main = shell(ctx.root, ctx.me, 'soc');
  if (!isSocRole(ctx.me.role)) {
    notAllowed(main);
    return;
  }
  const error = h('div', { id: 'soc-error', class: 'form-error', role: 'alert', hidden: true });
  const notice = h('div', { id: 'soc-notice', class: 'note', role: 'status', hidden: true });
  const grid = h('div', { id: 'soc-sessions', class: 'soc-grid' });
  const empty = h(
    'div',
    { id: 'soc-empty', class: 'empty', hidden: true },
    h('p', { class: 'empty-title' }, 'No live sessions.'),
    h('p', { class: 'muted' }, 'Sessions appear here as soon as someone connects through the gateway.'),
  );
  main.append(
    h(
      'div',
      { class: 'page-head' },
      h('h1', null, 'Security console'),
      h('p', { class: 'muted' }, 'Live sessions through the gateway. The list and the screens refresh every 2 seconds.'),
    ),
    error,
    notice,
    empty,
    grid,
  );

  const cards = new Map<string, Card>();
  const thumbs = new ThumbnailUrls((url) => URL.revokeObjectURL(url));

  // ---- cards ----------------------------------------------------------------------------------
  const act = async (card: Card, action: () => Promise<unknown>): Promise<boolean> => {
    showError(card.error, null);
    try {
      await action();
      return true;
    } catch (err) {
      if (!signal.aborted) showError(card.error, errorMessage(err));
      return false;
    }
  };

  const update = (card: Card, s: SessionInfo) => {
    card.session = s;
    card.el.dataset.state = s.state;
    card.el.classList.toggle('is-frozen', s.frozen === true);
    card.frozenBadge.hidden = s.frozen !== true;
    const risk = riskBadge(s);
    card.el.classList.toggle('is-risky', risk !== null);
    card.riskBadge.hidden = risk === null;
    card.riskBadge.textContent = risk?.text ?? '';
    card.riskBadge.title = risk?.title ?? '';
    card.stateBadge.className = stateClass(s.state);
    card.stateBadge.textContent = s.state;
    card.entry.textContent = entryLabel(s.entry);
    card.started.textContent = `${formatTime(s.started_at)} (${formatAge(s.started_at, Date.now()) || '?'})`;
    card.started.title = s.started_at;
    card.crossed.textContent = `clipboard ${formatBytes(s.clipboard_bytes ?? 0)}, files ${formatBytes(s.file_bytes ?? 0)}`;
    const f = freezeAction(s.frozen);
    card.freezeBtn.textContent = f.label;
    card.freezeBtn.dataset.action = f.action;
    card.freezeBtn.setAttribute('aria-label', `${f.label} the session of ${s.user} on ${s.target}`);
  };

  const makeCard = (s: SessionInfo): Card => {
    const img = h('img', { class: 'soc-thumb-img', alt: `Live screen of ${s.user} on ${s.target}`, hidden: true });
    const noPicture = h('span', { class: 'soc-thumb-empty' }, 'No picture yet');
    const frozenBadge = h('span', { class: 'frozen-badge', hidden: true }, 'Frozen');
    const riskEl = h('span', { class: 'risk-badge', hidden: true, 'data-risk': s.id });
    const stateBadge = h('span', { class: stateClass(s.state) }, s.state);
    const entry = h('span', { class: 'kind-badge soc-entry' });
    const started = h('span', { class: 'soc-started' });
    const crossed = h('span', { class: 'soc-crossed' });
    const watch = h('a', { class: 'btn btn-small btn-primary', href: watchHref(s.id), 'data-watch': s.id }, 'Watch');
    const freezeBtn = h('button', { type: 'button', class: 'btn btn-small', 'data-freeze': s.id }, 'Freeze');
    const killBtn = h('button', { type: 'button', class: 'btn btn-small btn-danger', 'data-kill': s.id, 'aria-label': `Kill the session of ${s.user} on ${s.target}` }, 'Kill');
    const lockBtn = h('button', { type: 'button', class: 'btn btn-small btn-danger', 'data-lock-user': s.user, 'aria-label': `Lock the account of ${s.user}` }, 'Lock user');
    const cardError = h('div', { class: 'form-error soc-card-error', role: 'alert', hidden: true });

    // The forms' callbacks run later, once `card` exists; they read its current session.
    let card: Card;
    const kill = reasonForm({
      kind: 'kill',
      label: `Why end ${s.user}'s session? They will see this.`,
      confirm: 'Kill session',
      aborted: () => signal.aborted,
      submit: async (reason) => {
        await killSession(card.session.id, reason);
        void refresh();
      },
    });
    const lock = reasonForm({
      kind: 'lock',
      label: `Why lock ${s.user}? All their sessions end and they cannot sign in until unlocked.`,
      confirm: 'Lock user',
      aborted: () => signal.aborted,
      submit: async (reason) => {
        await lockUser(card.session.user, reason);
        notice.textContent = `${card.session.user} is locked: their sessions end and they cannot sign in until an administrator or the security team unlocks them.`;
        notice.hidden = false;
        void refresh();
      },
    });
    const el = h(
      'article',
      { class: 'card soc-card', 'data-session': s.id, 'data-user': s.user },
      h('a', { class: 'soc-thumb', href: watchHref(s.id), tabindex: -1, 'aria-hidden': 'true' }, img, noPicture),
      h(
        'div',
        { class: 'soc-card-body' },
        h(
          'div',
          { class: 'soc-card-title' },
          h('strong', { class: 'soc-user' }, s.user),
          h('span', { class: 'muted' }, ' on '),
          h('strong', { class: 'soc-target' }, s.target),
          frozenBadge,
          riskEl,
        ),
        h(
          'dl',
          { class: 'soc-meta' },
          h('dt', null, 'Entry'),
          h('dd', null, entry),
          h('dt', null, 'Started'),
          h('dd', null, started),
          h('dt', null, 'State'),
          h('dd', null, stateBadge),
          h('dt', null, 'From'),
          h('dd', { class: 'mono' }, s.client_addr),
          h('dt', null, 'Crossed'),
          h('dd', null, crossed),
        ),
        h('div', { class: 'soc-actions' }, watch, freezeBtn, killBtn, lockBtn),
        kill.el,
        lock.el,
        cardError,
      ),
    );
    card = { session: s, el, img, noPicture, frozenBadge, riskBadge: riskEl, stateBadge, entry, started, crossed, freezeBtn, error: cardError, kill, lock, fetching: false };
    killBtn.addEventListener('click', () => {
      card.lock.close();
      card.kill.open();
    });
    lockBtn.addEventListener('click', () => {
      card.kill.close();
      card.lock.open();
    });
    freezeBtn.addEventListener('click', async () => {
      const { action } = freezeAction(card.session.frozen);
      freezeBtn.disabled = true;
      const ok = await act(card, () => (action === 'freeze' ? freezeSession(card.session.id) : unfreezeSession(card.session.id)));
      freezeBtn.disabled = false;
      if (ok && !signal.aborted) {
        update(card, { ...card.session, frozen: action === 'freeze' });
        void refresh();
      }
    });

    update(card, s);
    return card;
  };

  // ---- thumbnails -----------------------------------------------------------------------------
  const loadThumbnail = async (card: Card) => {
    if (card.fetching || signal.aborted) return;
    const id = card.session.id;
    card.fetching = true;
    try {
      const blob = await sessionThumbnail(id, signal);
      if (signal.aborted || blob === null) return;
      const url = URL.createObjectURL(blob);
      if (cards.get(id) !== card) {
        URL.revokeObjectURL(url); // the card went away meanwhile
        return;
      }
      card.img.src = url;
      thumbs.set(id, url); // revokes the picture it replaces
      card.img.hidden = false;
      card.noPicture.hidden = true;
    } catch {
      // A missed picture is not worth an error: the next one comes in 2 seconds.
    } finally {
      card.fetching = false;
    }
  };

  // ---- the list -------------------------------------------------------------------------------
  let inFlight = false;
  /** A change was told while a refresh was under way: one more after it. */
  let again = false;
  let refreshFailed = false;
  /** Re-reads the list; called while one is under way, it has that one go once more after. */
  const refresh = async () => {
    if (signal.aborted) return;
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    try {
      do {
        again = false;
        await refreshOnce();
      } while (again && !signal.aborted);
    } finally {
      inFlight = false;
    }
  };
  const refreshOnce = async () => {
    try {
      const sessions = liveSessions(await listSessions());
      if (signal.aborted) return;
      const { added, removed, kept } = reconcile(cards.keys(), sessions);
      for (const id of removed) {
        cards.get(id)?.el.remove();
        cards.delete(id);
        thumbs.drop(id);
      }
      for (const s of kept) update(cards.get(s.id)!, s);
      for (const s of added) {
        const card = makeCard(s);
        cards.set(s.id, card);
        void loadThumbnail(card);
      }
      // Keep the cards in the list's order without rebuilding them (open forms stay open).
      const order = sessions.map((s) => cards.get(s.id)!.el);
      if (order.some((el, i) => grid.children[i] !== el)) replace(grid, ...order);
      empty.hidden = sessions.length > 0;
      if (refreshFailed) {
        refreshFailed = false;
        showError(error, null);
      }
    } catch (err) {
      if (!signal.aborted) {
        showError(error, errorMessage(err));
        refreshFailed = true;
      }
    }
  };

  const tick = async () => {
    const before = new Set(cards.keys());
    await refresh();
    // New cards fetched their first picture already.
    for (const [id, card] of cards) if (before.has(id)) void loadThumbnail(card);
  };
  const timer = window.setInterval(() => {
    // (A test pauses the poll to see that the stream alone keeps the page current.)
    if (!counters().socPollPaused) void tick();
  }, SOC_REFRESH_MS);
  // Told at once when a session of this gateway changes (a risk rule fired, a freeze, one
  // opened or ended): the list is re-read then (the pictures keep to the poll), at most twice a
  // second. The poll stays, for the other gateways of a cluster and should the stream drop.
  let changes: EventSource | null = null;
  let lastPush = 0;
  let pushTimer = 0;
  let reopenTimer = 0;
  let backoff = 1000;
  const onChange = () => {
    const c = counters();
    c.socPushes = (c.socPushes ?? 0) + 1;
    backoff = 1000;
    const wait = Math.max(0, lastPush + PUSH_MIN_MS - Date.now());
    if (pushTimer) return;
    pushTimer = window.setTimeout(() => {
      pushTimer = 0;
      lastPush = Date.now();
      void refresh();
    }, wait);
  };
  const follow = () => {
    if (signal.aborted || typeof EventSource !== 'function') return;
    changes = new EventSource(sessionChangesUrl);
    changes.addEventListener('changed', onChange);
    // Refused (429, 401, a proxy's 5xx) is final for EventSource: opened again, later and later.
    changes.addEventListener('error', () => {
      if (changes?.readyState !== EventSource.CLOSED) return;
      reopenTimer = window.setTimeout(follow, backoff);
      backoff = Math.min(backoff * 2, 60_000);
    });
  };
  follow();
  signal.addEventListener('abort', () => {
    window.clearInterval(timer);
    window.clearTimeout(pushTimer);
    window.clearTimeout(reopenTimer);
    changes?.close();
    thumbs.clear();
  });
  await refresh();
}
