// `#/audit`: the gateway's tamper-evident audit trail (roles soc and admin). Filters, a table of
// records newest first (each expandable to its full JSON), paging to older records, a check of the
// whole hash chain, and an export of the rows shown as JSON lines. "All gateways" switches to the
// cluster view: every gateway's chain merged by time, with a Gateway column (a gateway not in a
// cluster says so in the error box).

import { listAudit, verifyAudit } from '../api';
import {
  AUDIT_KINDS,
  auditKindClass,
  auditQuery,
  countText,
  describeAudit,
  EMPTY_AUDIT_FILTERS,
  entryNode,
  exportFileName,
  formatAuditTime,
  hasFilters,
  kindOf,
  mergeEntries,
  nextCursor,
  parseKinds,
  recordJson,
  showsGateway,
  toJsonLines,
  verifyText,
  verifyTitle,
  type AnyAuditPage,
  type AuditCursor,
  type AuditFilters,
  type ShownAuditEntry,
} from '../model/audit';
import type { PageContext } from '../context';
import { h, replace, showError } from '../dom';
import { shell } from '../layout';
import { recordingHref } from '../model/recording';
import { isSocRole } from '../model/soc';
import { errorMessage } from './util';

/** Typing in a text filter reloads after this pause. */
const TYPING_DELAY_MS = 300;

/** The filters (and the view: this gateway's or all gateways) survive leaving the page (e.g. to a recording and back). */
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
        'Verify chain checks the whole trail on the gateway. In a cluster, All gateways shows every gateway’s records, merged by time.',
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
  const cluster = h('input', { id: 'audit-filter-cluster', type: 'checkbox', checked: saved.cluster });
  const node = text('audit-filter-node', saved.node, 'any gateway');
  node.disabled = !saved.cluster;
  node.title = 'Only this gateway’s records (with All gateways)';
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
      h(
        'div',
        { class: 'field field-check' },
        h('label', { class: 'check', for: 'audit-filter-cluster', title: 'Every gateway of the cluster, merged by time' }, cluster, ' All gateways'),
      ),
      field('Gateway', node, 'audit-filter-node'),
      h('div', { class: 'field field-action' }, clear),
    ),
  );

  const refresh = h('button', { id: 'audit-refresh', type: 'button', class: 'btn' }, 'Refresh');
  const verify = h('button', { id: 'audit-verify', type: 'button', class: 'btn', title: verifyTitle(saved.cluster) }, 'Verify chain');
  const exportBtn = h('button', { id: 'audit-export', type: 'button', class: 'btn', disabled: true }, 'Export shown rows');
  const count = h('span', { id: 'audit-count', class: 'muted audit-count', role: 'status' });
  const toolbar = h('div', { class: 'audit-toolbar' }, count, h('span', { class: 'toolbar-spacer' }), refresh, verify, exportBtn);
  const verifyResult = h('div', { id: 'audit-verify-result', hidden: true });
  const error = h('div', { id: 'audit-error', class: 'form-error', role: 'alert', hidden: true });

  const thead = h('thead');
  const tbody = h('tbody');
  const columnsOf = (gateway: boolean) => ['Time', ...(gateway ? ['Gateway'] : []), 'Kind', 'Actor', 'Target', 'Session', 'What happened'];
  const table = h('table', { id: 'audit-table', class: 'data-table audit-table' }, thead, tbody);
  /** Sets the header row; returns the columns. */
  const head = (gateway: boolean): string[] => {
    const columns = columnsOf(gateway);
    replace(thead, h('tr', null, ...columns.map((c) => h('th', { scope: 'col' }, c))));
    return columns;
  };
  head(saved.cluster);
  const more = h('button', { id: 'audit-more', type: 'button', class: 'btn', hidden: true }, 'Load older');
  main.append(form, toolbar, verifyResult, error, h('div', { class: 'card table-card' }, table), h('div', { class: 'audit-more-row' }, more));

  const row = (e: ShownAuditEntry, gateway: boolean) => {
    const sessionCell = e.session
      ? h('a', { href: recordingHref(e.session), class: 'mono audit-session', title: `Session ${e.session}: open its recording` }, e.session.length > 8 ? `${e.session.slice(0, 8)}…` : e.session)
      : h('span', { class: 'muted' }, '—');
    const description = describeAudit(e);
    const kind = kindOf(e);
    const gw = entryNode(e);
    return h(
      'tr',
      { 'data-seq': e.seq, 'data-node': gw, 'data-kind': kind, 'data-actor': e.actor },
      h('td', { class: 'num', title: isoTime(e.ts_ms) }, formatAuditTime(e.ts_ms)),
      gateway ? h('td', { class: 'audit-node' }, gw ?? h('span', { class: 'muted' }, '—')) : null,
      h('td', null, h('span', { class: auditKindClass(e) }, kind)),
      h('td', null, e.actor ?? h('span', { class: 'muted' }, '—')),
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

  let entries: ShownAuditEntry[] = [];
  let nextBefore: AuditCursor | null = null;
  /** The filters (and view) of the rows shown. */
  let filters: AuditFilters = saved;
  /** The last load failed with no rows of its view to keep showing: the table says nothing was loaded. */
  let failed = false;
  let generation = 0;

  const current = (): AuditFilters => ({
    actor: actor.value,
    target: target.value,
    session: session.value,
    kinds: kinds.value,
    from: from.value,
    to: to.value,
    cluster: cluster.checked,
    node: node.value,
  });

  const show = () => {
    const gateway = showsGateway(entries, filters.cluster);
    const columns = head(gateway);
    const empty = failed ? 'No records loaded.' : hasFilters(filters) ? 'No records match these filters.' : 'No records yet.';
    replace(
      tbody,
      ...(entries.length ? entries.map((e) => row(e, gateway)) : [h('tr', { class: 'empty-row' }, h('td', { colspan: columns.length }, empty))]),
    );
    more.hidden = nextBefore === null;
    exportBtn.disabled = entries.length === 0;
    count.textContent = countText(entries.length, nextBefore !== null, filters.cluster);
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
      const page: AnyAuditPage = await listAudit(auditQuery(f));
      if (ctx.signal.aborted || gen !== generation) return;
      filters = f;
      failed = false;
      entries = mergeEntries([], page.entries, f.cluster);
      nextBefore = nextCursor(page, f.cluster);
      show();
      showError(error, null);
    } catch (err) {
      if (ctx.signal.aborted || gen !== generation) return;
      // Rows of the other view would pass for this one's (e.g. this gateway's trail under "All
      // gateways" on a gateway that is not in a cluster): show none, and say nothing was loaded.
      if (f.cluster !== filters.cluster || entries.length === 0) {
        filters = f;
        failed = true;
        entries = [];
        nextBefore = null;
        show();
      }
      showError(error, errorMessage(err));
    }
  };

  /** Appends the next older page for the filters of the rows shown. */
  const loadMore = async () => {
    if (nextBefore === null || ctx.signal.aborted) return;
    const gen = generation;
    more.disabled = true;
    try {
      const page: AnyAuditPage = await listAudit(auditQuery(filters, nextBefore));
      if (ctx.signal.aborted || gen !== generation) return;
      entries = mergeEntries(entries, page.entries, filters.cluster);
      nextBefore = nextCursor(page, filters.cluster);
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
  for (const el of [actor, target, session, kinds, node]) el.addEventListener('input', soon);
  for (const el of [from, to]) el.addEventListener('change', () => void load());
  cluster.addEventListener('change', () => {
    node.disabled = !cluster.checked;
    verify.title = verifyTitle(cluster.checked);
    window.clearTimeout(typing);
    void load();
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    window.clearTimeout(typing);
    void load();
  });
  clear.addEventListener('click', () => {
    // The view (this gateway's or all gateways) is not a filter: it stays.
    for (const el of [actor, target, session, kinds, from, to, node]) el.value = '';
    window.clearTimeout(typing);
    void load();
  });
  refresh.addEventListener('click', () => void load());
  more.addEventListener('click', () => void loadMore());
  verify.addEventListener('click', () => void runVerify());
  exportBtn.addEventListener('click', () => {
    if (entries.length === 0) return;
    saveBlob(new Blob([toJsonLines(entries)], { type: 'application/x-ndjson' }), exportFileName(Date.now(), filters.cluster));
  });

  ctx.signal.addEventListener('abort', () => window.clearTimeout(typing));
  await load();
}
