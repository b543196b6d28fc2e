// `#/recordings`: the session recordings the user may see, with filters; a row opens the player.

import { listRecordings, type Recording } from '../api';
import { canReview, type PageContext } from '../context';
import { h, replace, showError } from '../dom';
import { shell } from '../layout';
import { EMPTY_FILTERS, formatBytes, formatDuration, recordingHref, recordingsQuery, RECORDING_STATES, RISK_LEVELS, type RecordingFilters } from '../model/recording';
import { errorMessage } from './util';

/** The list refreshes itself this often. */
export const RECORDINGS_REFRESH_MS = 5000;
/** Typing in a text filter reloads after this pause. */
const TYPING_DELAY_MS = 300;

/** The filters survive leaving the page (e.g. to the player and back). */
let saved: RecordingFilters = { ...EMPTY_FILTERS };

/** A local date/time from Unix ms. */
export function formatStart(ms: number): string {
  const d = new Date(ms);
  if (!Number.isFinite(ms) || Number.isNaN(d.getTime())) return '—';
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function isoTime(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

/** `state-<state>` for a state badge (unknown shapes → `state-unknown`). */
export const stateClass = (state: string): string => `state-badge state-${/^[a-z]+$/.test(state) ? state : 'unknown'}`;

export async function renderRecordings(ctx: PageContext): Promise<void> {
  const main = shell(ctx.root, ctx.me, 'recordings');
  main.append(
    h(
      'div',
      { class: 'page-head' },
      h('h1', null, 'Recordings'),
      h(
        'p',
        { class: 'muted' },
        ctx.me.role === 'user' ? 'Recordings of your sessions. ' : 'Recordings of the sessions through the gateway. ',
        'Refreshes every 5 seconds; choose a row to play it.',
      ),
    ),
  );

  const text = (id: string, value: string, placeholder: string) =>
    h('input', { id, type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder, value });
  const user = text('rec-filter-user', saved.user, 'any user');
  const target = text('rec-filter-target', saved.target, 'any target');
  const state = h(
    'select',
    { id: 'rec-filter-state' },
    h('option', { value: '' }, 'any'),
    ...RECORDING_STATES.map((s) => h('option', { value: s }, s)),
  );
  state.value = saved.state;
  const risk = h(
    'select',
    { id: 'rec-filter-risk' },
    h('option', { value: '' }, 'any'),
    ...RISK_LEVELS.map((l) => h('option', { value: l.min }, l.label)),
  );
  risk.value = saved.risk;
  const sort = h(
    'select',
    { id: 'rec-filter-sort' },
    h('option', { value: '' }, 'newest first'),
    h('option', { value: 'risk' }, 'riskiest first'),
  );
  sort.value = saved.sort;
  const reviewer = canReview(ctx.me);
  const review = h(
    'select',
    { id: 'rec-filter-review' },
    h('option', { value: '' }, 'any'),
    h('option', { value: 'unreviewed' }, 'not reviewed'),
    h('option', { value: 'reviewed' }, 'reviewed'),
  );
  review.value = reviewer ? saved.review : '';
  const from = h('input', { id: 'rec-filter-from', type: 'datetime-local', step: 1, value: saved.from });
  const to = h('input', { id: 'rec-filter-to', type: 'datetime-local', step: 1, value: saved.to });
  const clear = h('button', { id: 'rec-filter-clear', type: 'button', class: 'btn' }, 'Clear');
  const field = (label: string, input: HTMLElement, id: string) => h('div', { class: 'field' }, h('label', { for: id }, label), input);
  const form = h(
    'form',
    { id: 'rec-filters', class: 'card create-form filter-form', role: 'search', novalidate: true },
    h(
      'div',
      { class: 'form-row' },
      field('User', user, 'rec-filter-user'),
      field('Target', target, 'rec-filter-target'),
      field('State', state, 'rec-filter-state'),
      field('Started from', from, 'rec-filter-from'),
      field('Started before', to, 'rec-filter-to'),
      field('Risk', risk, 'rec-filter-risk'),
      field('Order', sort, 'rec-filter-sort'),
      ...(reviewer ? [field('Review', review, 'rec-filter-review')] : []),
      h('div', { class: 'field field-action' }, clear),
    ),
  );

  const error = h('div', { id: 'recordings-error', class: 'form-error', role: 'alert', hidden: true });
  const tbody = h('tbody');
  const columns = ['Start time', 'User', 'Target', 'Duration', 'State', 'Risk', ...(reviewer ? ['Review'] : []), 'Size'];
  const table = h(
    'table',
    { id: 'recordings-table', class: 'data-table clickable-rows' },
    h('thead', null, h('tr', null, ...columns.map((c) => h('th', { scope: 'col' }, c)))),
    tbody,
  );
  main.append(form, error, h('div', { class: 'card table-card' }, table));

  const row = (r: Recording) => {
    const href = recordingHref(r.id);
    const tr = h(
      'tr',
      { 'data-id': r.id, 'data-state': r.state },
      h('td', { title: isoTime(r.started_at_ms) }, h('a', { href, class: 'row-link' }, formatStart(r.started_at_ms))),
      h('td', null, r.user),
      h('td', null, r.target),
      h('td', { class: 'num' }, formatDuration(r.duration_ms)),
      h('td', null, h('span', { class: stateClass(r.state) }, r.state)),
      h(
        'td',
        { class: 'num', 'data-risk': String(r.risk_score ?? 0), title: (r.risk_rules ?? []).join(', ') },
        r.risk_rules?.length ? h('span', { class: 'risk-badge' }, String(r.risk_score ?? 0)) : '—',
      ),
      ...(reviewer
        ? [
            h(
              'td',
              { class: 'review-cell', 'data-review': r.review?.state ?? 'none', title: r.review ? `${r.review.state} by ${r.review.by}` : 'not reviewed' },
              r.review?.state === 'reviewed' ? '✓ reviewed' : r.review?.state === 'reopened' ? 'reopened' : '—',
              r.flags ? h('span', { class: 'flag-count', title: `${r.flags} flagged moments` }, ` ⚑${r.flags}`) : '',
            ),
          ]
        : []),
      h('td', { class: 'num', title: `${r.bytes} bytes` }, formatBytes(r.bytes)),
    );
    tr.addEventListener('click', (e) => {
      // The link in the first cell navigates by itself.
      if (e.target instanceof Element && e.target.closest('a')) return;
      location.hash = href;
    });
    return tr;
  };

  const current = (): RecordingFilters => ({
    user: user.value,
    target: target.value,
    state: state.value,
    from: from.value,
    to: to.value,
    risk: risk.value,
    sort: sort.value,
    review: review.value,
  });

  let shown = '';
  let generation = 0;
  let failed = false;
  const load = async () => {
    if (ctx.signal.aborted) return;
    const gen = ++generation;
    saved = current();
    const query = recordingsQuery(saved);
    try {
      const list = await listRecordings(query);
      if (ctx.signal.aborted || gen !== generation) return;
      const key = query + JSON.stringify(list);
      if (key !== shown) {
        shown = key;
        replace(
          tbody,
          ...(list.length
            ? list.map(row)
            : [h('tr', { class: 'empty-row' }, h('td', { colspan: columns.length }, query ? 'No recordings match these filters.' : 'No recordings yet.'))]),
        );
      }
      if (failed) {
        failed = false;
        showError(error, null);
      }
    } catch (err) {
      if (ctx.signal.aborted || gen !== generation) return;
      failed = true;
      showError(error, errorMessage(err));
    }
  };

  let typing = 0;
  const soon = () => {
    window.clearTimeout(typing);
    typing = window.setTimeout(() => void load(), TYPING_DELAY_MS);
  };
  user.addEventListener('input', soon);
  target.addEventListener('input', soon);
  for (const el of [state, from, to, risk, sort, review]) el.addEventListener('change', () => void load());
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void load();
  });
  clear.addEventListener('click', () => {
    user.value = '';
    target.value = '';
    state.value = '';
    from.value = '';
    to.value = '';
    risk.value = '';
    sort.value = '';
    review.value = '';
    void load();
  });

  const timer = window.setInterval(() => void load(), RECORDINGS_REFRESH_MS);
  ctx.signal.addEventListener('abort', () => {
    window.clearInterval(timer);
    window.clearTimeout(typing);
  });
  await load();
}
