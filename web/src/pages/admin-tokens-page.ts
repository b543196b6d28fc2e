// `#/admin/tokens`: API tokens for automation: create one for a user with scopes (the list comes from
// `GET /api/v1/tokens/scopes`; the secret is shown once), list and revoke them.

import { createToken, listTokens, listTokenScopes, listUsers, revokeToken, type ApiToken, type TokenScope } from '../api';
import type { PageContext } from '../context';
import { h, replace, showError } from '../dom';
import { adminShell, attempt, deleteButton, emptyRow, field, submitting } from './admin-kit';
import { formatTime } from './util';

export async function renderAdminTokens(ctx: PageContext): Promise<void> {
  const page = adminShell(
    ctx,
    'admin-tokens',
    'API tokens',
    'For automation (SOAR, scripts): a token acts as its user, limited to its scopes. Its secret is shown once.',
    ['Name', 'User', 'Scopes', 'Expires', 'Created by', ''],
    'tokens-table',
  );
  if (!page) return;
  const { main, error, tbody, table } = page;

  const user = h('select', { id: 'token-user', required: true });
  const name = h('input', { id: 'token-name', type: 'text', required: true, autocomplete: 'off', placeholder: 'soar-kill' });
  const days = h('input', { id: 'token-days', type: 'number', min: 1, max: 366, value: 30, required: true });
  // The scopes a token may carry come from the gateway (deny by default: a token reaches only the
  // routes of its scopes).
  const scopeSet = h('fieldset', { class: 'scopes' }, h('legend', null, 'Scopes'));
  let scopes: { scope: string; box: HTMLInputElement }[] = [];
  const showScopes = (list: TokenScope[]) => {
    const made = list.map(({ name: scope, description }) => {
      const box = h('input', { type: 'checkbox', value: scope, 'data-scope': scope, id: `token-scope-${scope.replace(':', '-')}` });
      return { scope, box, el: h('label', { class: 'check' }, box, ` ${scope}`, h('span', { class: 'muted' }, ` — ${description}`)) };
    });
    scopes = made;
    scopeSet.append(...made.map((s) => s.el));
  };
  const create = h('button', { id: 'token-create', type: 'submit', class: 'btn btn-primary' }, 'Create token');
  const secret = h('div', { id: 'token-secret', class: 'card notice', hidden: true });
  const form = h(
    'form',
    { class: 'card create-form', novalidate: true },
    h('h2', null, 'New token'),
    h('div', { class: 'form-row' }, field('User', user, 'token-user'), field('Name', name, 'token-name'), field('Valid for (days)', days, 'token-days')),
    scopeSet,
    h('div', { class: 'form-row' }, h('div', { class: 'field field-action' }, create)),
    error,
  );
  main.append(form, secret, h('div', { class: 'card table-card' }, table));

  const when = (secs: number) => formatTime(new Date(secs * 1000).toISOString());
  const row = (t: ApiToken) =>
    h(
      'tr',
      { 'data-token': t.id },
      h('td', null, t.name),
      h('td', null, t.user),
      h('td', null, t.scopes.join(', ')),
      h('td', null, t.expired ? 'expired' : when(t.expires_at)),
      h('td', null, t.created_by),
      h(
        'td',
        { class: 'actions' },
        deleteButton('Revoke', { 'data-revoke-token': t.id, 'aria-label': `Revoke token ${t.name}` }, async () => {
          if (await attempt(ctx, error, () => revokeToken(t.id))) await attempt(ctx, error, load);
        }),
      ),
    );
  const load = async () => {
    const [tokens, users] = await Promise.all([listTokens(), listUsers()]);
    if (ctx.signal.aborted) return;
    const keep = user.value;
    replace(user, h('option', { value: '' }, 'Choose a user…'), ...users.map((u) => h('option', { value: u.name }, u.name)));
    if (users.some((u) => u.name === keep)) user.value = keep;
    tokens.sort((a, b) => a.user.localeCompare(b.user) || a.name.localeCompare(b.name));
    replace(tbody, ...(tokens.length ? tokens.map(row) : [emptyRow(6, 'No tokens yet.')]));
  };

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const chosen = scopes.filter((s) => s.box.checked).map((s) => s.scope);
    if (user.value === '' || name.value.trim() === '' || chosen.length === 0) {
      showError(error, 'Choose a user, a name and at least one scope.');
      return;
    }
    submitting(create, true);
    let made: (ApiToken & { token: string }) | null = null;
    const ok = await attempt(ctx, error, async () => {
      made = await createToken({ user: user.value, name: name.value.trim(), scopes: chosen, expires_in_days: Number(days.value) });
    });
    submitting(create, false);
    if (ok && made) {
      const t: ApiToken & { token: string } = made;
      replace(
        secret,
        h('p', null, `Token “${t.name}” for ${t.user}: copy it now, it is not shown again.`),
        h('code', { id: 'token-secret-value', class: 'secret' }, t.token),
      );
      secret.hidden = false;
      name.value = '';
      await attempt(ctx, error, load);
    }
  });

  await attempt(ctx, error, async () => {
    const [list] = await Promise.all([listTokenScopes(), load()]);
    if (!ctx.signal.aborted) showScopes(list.scopes);
  });
}
