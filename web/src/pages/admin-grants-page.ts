// `#/admin/grants`: who may open which target.

import { createGrant, deleteGrant, listGrants, listTargets, listUsers, type Grant } from '../api';
import type { PageContext } from '../context';
import { h, replace, showError } from '../dom';
import { adminShell, attempt, deleteButton, emptyRow, field, submitting } from './admin-kit';

export async function renderAdminGrants(ctx: PageContext): Promise<void> {
  const page = adminShell(ctx, 'admin-grants', 'Grants', 'Which user may open which target.', ['User', 'Target', ''], 'grants-table');
  if (!page) return;
  const { main, error, tbody, table } = page;

  const user = h('select', { id: 'grant-user', required: true });
  const target = h('select', { id: 'grant-target', required: true });
  const create = h('button', { id: 'grant-create', type: 'submit', class: 'btn btn-primary' }, 'Grant access');
  const form = h(
    'form',
    { class: 'card create-form', novalidate: true },
    h('h2', null, 'New grant'),
    h('div', { class: 'form-row' }, field('User', user, 'grant-user'), field('Target', target, 'grant-target'), h('div', { class: 'field field-action' }, create)),
    error,
  );
  main.append(form, h('div', { class: 'card table-card' }, table));

  const fillSelect = (sel: HTMLSelectElement, values: string[], placeholder: string) => {
    const keep = sel.value;
    replace(
      sel,
      h('option', { value: '' }, placeholder),
      ...values.map((v) => h('option', { value: v }, v)),
    );
    if (values.includes(keep)) sel.value = keep;
  };

  const row = (g: Grant) =>
    h(
      'tr',
      { 'data-grant': `${g.user}/${g.target}` },
      h('td', null, g.user),
      h('td', null, g.target),
      h(
        'td',
        { class: 'actions' },
        deleteButton(
          'Delete',
          { 'data-delete-grant-user': g.user, 'data-delete-grant-target': g.target, 'aria-label': `Delete grant of ${g.target} to ${g.user}` },
          async () => {
            if (await attempt(ctx, error, () => deleteGrant(g))) await attempt(ctx, error, loadGrants);
          },
        ),
      ),
    );
  const loadGrants = async () => {
    const grants = await listGrants();
    if (ctx.signal.aborted) return;
    grants.sort((a, b) => a.user.localeCompare(b.user) || a.target.localeCompare(b.target));
    replace(tbody, ...(grants.length ? grants.map(row) : [emptyRow(3, 'No grants yet.')]));
  };
  const loadChoices = async () => {
    const [users, targets] = await Promise.all([listUsers(), listTargets()]);
    if (ctx.signal.aborted) return;
    fillSelect(user, users.map((u) => u.name).sort((a, b) => a.localeCompare(b)), 'Choose a user…');
    fillSelect(target, targets.map((t) => t.name).sort((a, b) => a.localeCompare(b)), 'Choose a target…');
  };

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (user.value === '' || target.value === '') {
      showError(error, 'Choose a user and a target.');
      return;
    }
    submitting(create, true);
    const ok = await attempt(ctx, error, () => createGrant({ user: user.value, target: target.value }));
    submitting(create, false);
    if (ok) await attempt(ctx, error, loadGrants);
  });

  await attempt(ctx, error, () => Promise.all([loadChoices(), loadGrants()]));
}
