// `#/admin/users`: create and delete users, lock and unlock them (with a reason), reset their
// two-factor authentication.

import { createUser, deleteUser, listUsers, lockUser, resetMfa, unlockUser, type User } from '../api';
import type { PageContext } from '../context';
import { h, replace, showError } from '../dom';
import { roleClass } from '../layout';
import { reasonForm } from './reason-form';
import { adminShell, attempt, deleteButton, emptyRow, field, submitting } from './admin-kit';

export async function renderAdminUsers(ctx: PageContext): Promise<void> {
  const page = adminShell(ctx, 'admin-users', 'Users', 'People who can sign in to the gateway.', ['Name', 'Role', 'Status', 'Two-factor', ''], 'users-table');
  if (!page) return;
  const { main, error, tbody, table } = page;

  const name = h('input', { id: 'user-name', type: 'text', autocomplete: 'off', spellcheck: 'false', required: true });
  const password = h('input', { id: 'user-password', type: 'password', autocomplete: 'new-password', required: true });
  const role = h(
    'select',
    { id: 'user-role' },
    h('option', { value: 'admin' }, 'admin'),
    h('option', { value: 'reviewer' }, 'reviewer'),
    h('option', { value: 'soc' }, 'soc (security team)'),
    h('option', { value: 'user', selected: true }, 'user'),
  );
  const create = h('button', { id: 'user-create', type: 'submit', class: 'btn btn-primary' }, 'Create user');
  const form = h(
    'form',
    { class: 'card create-form', novalidate: true },
    h('h2', null, 'New user'),
    h('div', { class: 'form-row' }, field('Name', name, 'user-name'), field('Password', password, 'user-password'), field('Role', role, 'user-role'), h('div', { class: 'field field-action' }, create)),
    error,
  );
  main.append(form, h('div', { class: 'card table-card' }, table));

  const load = async () => {
    const users = await listUsers();
    if (ctx.signal.aborted) return;
    users.sort((a, b) => a.name.localeCompare(b.name));
    replace(tbody, ...(users.length ? users.map(row) : [emptyRow(5, 'No users.')]));
  };
  const row = (u: User) => {
    const self = u.name === ctx.me.name;
    // Locking: the gateway ends the user's sessions and logins and asks for a reason.
    const lockForm = reasonForm({
      kind: 'lock',
      label: `Why lock ${u.name}? Their sessions end and they cannot sign in until unlocked.`,
      confirm: 'Lock',
      aborted: () => ctx.signal.aborted,
      submit: async (reason) => {
        await lockUser(u.name, reason);
        await attempt(ctx, error, load);
      },
    });
    const lockAction = u.locked
      ? deleteButton('Unlock', { 'data-unlock-user': u.name, 'aria-label': `Unlock user ${u.name}` }, async () => {
          if (await attempt(ctx, error, () => unlockUser(u.name))) await attempt(ctx, error, load);
        })
      : self
        ? null // the gateway refuses locking yourself
        : h('button', { type: 'button', class: 'btn btn-danger btn-small', 'data-lock-user': u.name, 'aria-label': `Lock user ${u.name}`, onclick: () => lockForm.open() }, 'Lock');
    return h(
      'tr',
      { 'data-user': u.name, 'data-locked': u.locked ? 'true' : 'false' },
      h(
        'td',
        null,
        u.name,
        self ? h('span', { class: 'muted you' }, ' (you)') : null,
        u.sso ? h('span', { class: 'muted', 'data-sso-user': u.name, title: (u.groups ?? []).join(', ') }, ` · SSO ${u.sso}`) : null,
      ),
      h('td', null, h('span', { class: `role-badge ${roleClass(u.role)}` }, u.role)),
      h('td', null, u.locked ? h('span', { class: 'locked-badge', 'data-locked-badge': u.name }, 'Locked') : h('span', { class: 'muted' }, 'Active')),
      h('td', { 'data-mfa': u.name }, u.mfa ? 'On' : h('span', { class: 'muted' }, 'Off')),
      h(
        'td',
        { class: 'actions' },
        h(
          'div',
          { class: 'row-actions' },
          u.mfa
            ? deleteButton('Reset 2FA', { 'data-reset-mfa': u.name, 'aria-label': `Reset two-factor authentication of ${u.name}` }, async () => {
                if (await attempt(ctx, error, () => resetMfa(u.name))) await attempt(ctx, error, load);
              })
            : null,
          lockAction,
          deleteButton('Delete', { 'data-delete-user': u.name, 'aria-label': `Delete user ${u.name}` }, async () => {
            if (await attempt(ctx, error, () => deleteUser(u.name))) await attempt(ctx, error, load);
          }),
        ),
        u.locked ? null : lockForm.el,
      ),
    );
  };

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (name.value.trim() === '' || password.value === '') {
      showError(error, 'Enter a name and a password.');
      return;
    }
    submitting(create, true);
    const ok = await attempt(ctx, error, () => createUser({ name: name.value.trim(), password: password.value, role: role.value }));
    submitting(create, false);
    if (ok) {
      form.reset();
      name.focus();
      await attempt(ctx, error, load);
    }
  });

  await attempt(ctx, error, load);
}
