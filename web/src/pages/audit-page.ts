// `#/audit`: the gateway's tamper-evident audit trail (roles soc and admin). Filters, a table of
// records newest first (each expandable to its full JSON), paging to older records, a check of the
// whole hash chain, and an export of the rows shown as JSON lines.

import { listAudit, verifyAudit, type AuditEntry } from '../api';
import {
  AUDIT_KINDS,
  auditKindClass,
  auditQuery,
  describeAudit,
  EMPTY_AUDIT_FILTERS,
  exportFileName,
  formatAuditTime,
  hasFilters,
  mergeEntries,
  parseKinds,
  recordJson,
  toJsonLines,
  verifyText,
  type AuditFilters,
} from '../model/audit';
import type { PageContext } from '../context';
import { h, replace, showError } from '../dom';
import { shell } from '../layout';
import { recordingHref } from '../model/recording';
import { isSocRole } from '../model/soc';
import { errorMessage } from './util';

/** Typing in a text filter reloads after this pause. */
const TYPING_DELAY_MS = 300;

/** The filters survive leaving the page (e.g. to a recording and back). */
let saved: AuditFilters = { ...EMPTY_AUDIT_FILTERS };

function notAllowed(main: HTMLElement): void {
  main.append(
    h(
      'div',
      { id: 'not-allowed', class: 'empty', role: 'alert' },
      h('p', { class: 'empty-title' }, 'You are not allowed to view this page.'),
      h('p', { class: 'muted' }, 'Only the security team and administrators can read the audit trail.'),
    ),
  );
}

function isoTime(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

/** Saves `blob` as `fileName` through a temporary object URL and `<a download>`. */
function saveBlob(blob: Blob, fileName: string): void {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: fileName, hidden: true });
  document.body.append(a);
  try {
    a.click();
  } finally {
    a.remove();
    // Some browsers start the download asynchronously: keep the URL alive a little.
    window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }
}

export async function renderAudit(ctx: PageContext): Promise<void> {
  const main = shell(ctx.root, ctx.me, 'audit');
  if (!isSocRole(ctx.me.role)) {
    notAllowed(main);
    return;
  }
  main.append(
    h(
      'div',
      { class: 'page-head' },
      h('h1', null, 'Audit trail'),
      h(
        'p',
        { class: 'muted' },
        'Everything the gateway did and who asked for it, newest first. Each record is chained to the one before by its hash; ',
        'Verify chain checks the whole trail on the gateway.',
      ),
    ),
  );

  const text = (id: string, value: string, placeholder: string) =>
    h('input', { id, type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder, value });
  const actor = text('audit-filter-actor', saved.actor, 'anyone');
  const target = text('audit-filter-target', saved.target, 'any target');
  const session = text('audit-filter-session', saved.session, 'any session id');
  const kinds = text('audit-filter-kind', saved.kinds, 'any, or e.g. login,login_failed');
  kinds.title = `Kinds, separated by commas: ${AUDIT_KINDS.join(', ')}`;
  const from = h('input', { id: 'audit-filter-from', type: 'datetime-local', step: 1, value: saved.from });
  const to = h('input', { id: 'audit-filter-to', type: 'datetime-local', step: 1, value: saved.to });
  const clear = h('button', { id: 'audit-filter-clear', type: 'button', class: 'btn' }, 'Clear');
  const field = (label: string, input: HTMLElement, id: string) => h('div', { class: 'field' }, h('label', { for: id }, label), input);
  const form = h(
    'form',
    { id: 'audit-filters', class: 'card create-form filter-form audit-filters', role: 'search', novalidate: true },
    h(
      'div',
      { class: 'form-row' },
      field('Actor', actor, 'audit-filter-actor'),
      field('Target', target, 'audit-filter-target'),
      field('Session', session, 'audit-filter-session'),
      field('Kinds', kinds, 'audit-filter-kind'),
    ),
    h(
      'div',
      { class: 'form-row' },
      field('From', from, 'audit-filter-from'),
      field('Before', to, 'audit-filter-to'),
      h('div', { class: 'field field-action' }, clear),
    ),
  );

  const refresh = h('button', { id: 'audit-refresh', type: 'button', class: 'btn' }, 'Refresh');
  const verify = h('button', { id: 'audit-verify', type: 'button', class: 'btn' }, 'Verify chain');
  const exportBtn = h('button', { id: 'audit-export', type: 'button', class: 'btn', disabled: true }, 'Export shown rows');
  const count = h('span', { id: 'audit-count', class: 'muted audit-count', role: 'status' });
  const toolbar = h('div', { class: 'audit-toolbar' }, count, h('span', { class: 'toolbar-spacer' }), refresh, verify, exportBtn);
  const verifyResult = h('div', { id: 'audit-verify-result', hidden: true });
  const error = h('div', { id: 'audit-error', class: 'form-error', role: 'alert', hidden: true });

  const tbody = h('tbody');
  const columns = ['Time', 'Kind', 'Actor', 'Target', 'Session', 'What happened'];
  const table = h(
    'table',
    { id: 'audit-table', class: 'data-table audit-table' },
    h('thead', null, h('tr', null, ...columns.map((c) => h('th', { scope: 'col' }, c)))),
    tbody,
  );
  const more = h('button', { id: 'audit-more', type: 'button', class: 'btn', hidden: true }, 'Load older');
  main.append(form, toolbar, verifyResult, error, h('div', { class: 'card table-card' }, table), h('div', { class: 'audit-more-row' }, more));

  const row = (e: AuditEntry) => {
    const sessionCell = e.session
      ? h('a', { href: recordingHref(e.session), class: 'mono audit-session', title: `Session ${e.session}: open its recording` }, e.session.length > 8 ? `${e.session.slice(0, 8)}…` : e.session)
      : h('span', { class: 'muted' }, '—');
    const description = describeAudit(e);
    return h(
      'tr',
      { 'data-seq': e.seq, 'data-kind': e.kind, 'data-actor': e.actor },
      h('td', { class: 'num', title: isoTime(e.ts_ms) }, formatAuditTime(e.ts_ms)),
      h('td', null, h('span', { class: auditKindClass(e) }, e.kind)),
      h('td', null, e.actor),
      h('td', null, e.target ? e.target : h('span', { class: 'muted' }, '—')),
      h('td', null, sessionCell),
      h(
        'td',
        { class: 'audit-what' },
        h(
          'details',
          { class: 'audit-details' },
          h('summary', { class: 'audit-summary' }, description),
          h('pre', { class: 'audit-json mono' }, recordJson(e)),
        ),
      ),
    );
  };

  let entries: AuditEntry[] = [];
  let nextBefore: number | null = null;
  let filters: AuditFilters = saved;
  let generation = 0;

  const current = (): AuditFilters => ({
    actor: actor.value,
    target: target.value,
    session: session.value,
    kinds: kinds.value,
    from: from.value,
    to: to.value,
  });

  const show = () => {
    replace(
      tbody,
      ...(entries.length
        ? entries.map(row)
        : [h('tr', { class: 'empty-row' }, h('td', { colspan: columns.length }, hasFilters(filters) ? 'No records match these filters.' : 'No records yet.'))]),
    );
    more.hidden = nextBefore === null;
    exportBtn.disabled = entries.length === 0;
    count.textContent =
      entries.length === 0 ? '' : `${entries.length} record${entries.length === 1 ? '' : 's'} shown${nextBefore === null ? '' : ', older ones on request'}`;
  };

  /** Loads the newest page for the filters, replacing the rows. */
  const load = async () => {
    if (ctx.signal.aborted) return;
    const gen = ++generation;
    const f = current();
    saved = f;
    const { invalid } = parseKinds(f.kinds);
    if (invalid.length) {
      showError(error, `Not a record kind: ${invalid.join(', ')}. Kinds are lowercase names such as ${AUDIT_KINDS.slice(0, 3).join(', ')}.`);
      return;
    }
    try {
      const page = await listAudit(auditQuery(f));
      if (ctx.signal.aborted || gen !== generation) return;
      filters = f;
      entries = mergeEntries([], page.entries);
      nextBefore = page.next_before_seq ?? null;
      show();
      showError(error, null);
    } catch (err) {
      if (ctx.signal.aborted || gen !== generation) return;
      showError(error, errorMessage(err));
    }
  };

  /** Appends the next older page for the filters of the rows shown. */
  const loadMore = async () => {
    if (nextBefore === null || ctx.signal.aborted) return;
    const gen = generation;
    more.disabled = true;
    try {
      const page = await listAudit(auditQuery(filters, nextBefore));
      if (ctx.signal.aborted || gen !== generation) return;
      entries = mergeEntries(entries, page.entries);
      nextBefore = page.next_before_seq ?? null;
      show();
      showError(error, null);
    } catch (err) {
      if (ctx.signal.aborted || gen !== generation) return;
      showError(error, errorMessage(err));
    } finally {
      more.disabled = false;
    }
  };

  const runVerify = async () => {
    verify.disabled = true;
    verify.classList.add('busy');
    verifyResult.hidden = false;
    verifyResult.className = 'note audit-verify-pending';
    verifyResult.setAttribute('role', 'status');
    verifyResult.textContent = 'Checking the whole chain…';
    try {
      const v = verifyText(await verifyAudit());
      if (ctx.signal.aborted) return;
      verifyResult.className = v.ok ? 'note note-ok audit-verify-ok' : 'form-error audit-verify-bad';
      verifyResult.setAttribute('role', v.ok ? 'status' : 'alert');
      verifyResult.textContent = v.text;
    } catch (err) {
      if (ctx.signal.aborted) return;
      verifyResult.className = 'form-error audit-verify-bad';
      verifyResult.setAttribute('role', 'alert');
      verifyResult.textContent = `The chain could not be checked: ${errorMessage(err)}`;
    } finally {
      verify.disabled = false;
      verify.classList.remove('busy');
    }
  };

  let typing = 0;
  const soon = () => {
    window.clearTimeout(typing);
    typing = window.setTimeout(() => void load(), TYPING_DELAY_MS);
  };
  for (const el of [actor, target, session, kinds]) el.addEventListener('input', soon);
  for (const el of [from, to]) el.addEventListener('change', () => void load());
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    window.clearTimeout(typing);
    void load();
  });
  clear.addEventListener('click', () => {
    for (const el of [actor, target, session, kinds, from, to]) el.value = '';
    window.clearTimeout(typing);
    void load();
  });
  refresh.addEventListener('click', () => void load());
  more.addEventListener('click', () => void loadMore());
  verify.addEventListener('click', () => void runVerify());
  exportBtn.addEventListener('click', () => {
    if (entries.length === 0) return;
    saveBlob(new Blob([toJsonLines(entries)], { type: 'application/x-ndjson' }), exportFileName(Date.now()));
  });

  ctx.signal.addEventListener('abort', () => window.clearTimeout(typing));
  await load();
}
