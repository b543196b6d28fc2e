// `#/admin/sso`: single sign-on. The gateway's public address (providers send browsers back to it),
// the roles that may only sign in through a provider, and the OpenID Connect providers: add or
// change one (its client secret is write-only), test that it answers, remove it.

import {
  deleteSsoProvider,
  getSsoSettings,
  putSsoProvider,
  putSsoSettings,
  testSsoProvider,
  type RoleName,
  type SsoProvider,
  type SsoSettings,
} from '../api';
import type { PageContext } from '../context';
import { h, replace, showError } from '../dom';
import { parseMappings, ROLES } from '../model/sso';
import { actionButton, adminShell, attempt, deleteButton, emptyRow, field, submitting } from './admin-kit';

export async function renderAdminSso(ctx: PageContext): Promise<void> {
  const page = adminShell(
    ctx,
    'admin-sso',
    'Single sign-on',
    'OpenID Connect providers. Users signing in through one get an account linked to it; its groups give their role.',
    ['Provider', 'Issuer', 'Client id', 'Roles from groups', ''],
    'sso-table',
  );
  if (!page) return;
  const { main, error, tbody, table } = page;

  // The gateway-wide settings.
  const publicUrl = h('input', { id: 'sso-public-url', type: 'url', placeholder: 'https://psm.example.com', autocomplete: 'off' });
  const redirect = h('code', { id: 'sso-redirect-uri' }, '');
  const roleBoxes = ROLES.map((role) => ({ role, box: h('input', { type: 'checkbox', id: `sso-required-${role}`, value: role }) }));
  const passkeyBoxes = ROLES.map((role) => ({ role, box: h('input', { type: 'checkbox', id: `passkey-required-${role}`, value: role }) }));
  const saveSettings = h('button', { id: 'sso-settings-save', type: 'submit', class: 'btn btn-primary' }, 'Save');
  const settingsForm = h(
    'form',
    { class: 'card create-form', novalidate: true },
    h('h2', null, 'Gateway'),
    h('div', { class: 'form-row' }, field('Public URL', publicUrl, 'sso-public-url')),
    h('p', { class: 'muted' }, 'Register this return address with each provider: ', redirect),
    h(
      'fieldset',
      { class: 'scopes' },
      h('legend', null, 'Roles that must sign in through a provider (their password is refused)'),
      ...roleBoxes.map(({ role, box }) => h('label', { class: 'check' }, box, ` ${role}`)),
    ),
    h('p', { class: 'muted' }, 'Keep one local administrator out of this list: the break-glass account.'),
    h(
      'fieldset',
      { class: 'scopes' },
      h('legend', null, 'Roles that must use a passkey as their second factor (phishing-resistant; a code from an app does not do)'),
      ...passkeyBoxes.map(({ role, box }) => h('label', { class: 'check' }, box, ` ${role}`)),
    ),
    h('div', { class: 'form-row' }, h('div', { class: 'field field-action' }, saveSettings)),
  );

  // A provider: new, or the one being edited.
  const id = h('input', { id: 'sso-id', type: 'text', required: true, autocomplete: 'off', placeholder: 'corp' });
  const display = h('input', { id: 'sso-display', type: 'text', required: true, autocomplete: 'off', placeholder: 'Corp SSO' });
  const issuer = h('input', { id: 'sso-issuer', type: 'url', required: true, autocomplete: 'off', placeholder: 'https://login.example.com/realms/corp' });
  const clientId = h('input', { id: 'sso-client-id', type: 'text', required: true, autocomplete: 'off' });
  const secret = h('input', { id: 'sso-client-secret', type: 'password', autocomplete: 'new-password', placeholder: 'required for a new provider' });
  const usernameClaim = h('input', { id: 'sso-username-claim', type: 'text', value: 'preferred_username' });
  const groupsClaim = h('input', { id: 'sso-groups-claim', type: 'text', value: 'groups' });
  const mappings = h('textarea', { id: 'sso-mappings', rows: 4, placeholder: 'psm-admins = admin\npsm-users = user' });
  const defaultRole = h('select', { id: 'sso-default-role' }, h('option', { value: '' }, 'none: refused'), ...ROLES.map((r) => h('option', { value: r }, r)));
  const saveProvider = h('button', { id: 'sso-provider-save', type: 'submit', class: 'btn btn-primary' }, 'Save provider');
  const providerForm = h(
    'form',
    { id: 'sso-provider-form', class: 'card create-form', novalidate: true },
    h('h2', null, 'Provider'),
    h('div', { class: 'form-row' }, field('Id', id, 'sso-id'), field('Shown as', display, 'sso-display')),
    h('div', { class: 'form-row' }, field('Issuer', issuer, 'sso-issuer')),
    h('div', { class: 'form-row' }, field('Client id', clientId, 'sso-client-id'), field('Client secret', secret, 'sso-client-secret')),
    h('div', { class: 'form-row' }, field('User name claim', usernameClaim, 'sso-username-claim'), field('Groups claim', groupsClaim, 'sso-groups-claim')),
    h('div', { class: 'form-row' }, field('Groups → roles (first match wins)', mappings, 'sso-mappings'), field('Role of anyone else', defaultRole, 'sso-default-role')),
    h('div', { class: 'form-row' }, h('div', { class: 'field field-action' }, saveProvider)),
    error,
  );
  const tested = h('div', { id: 'sso-test-result', class: 'card notice', hidden: true });
  main.append(settingsForm, providerForm, tested, h('div', { class: 'card table-card' }, table));
  // The scopes of the provider being edited (the form does not show them): kept as they are.
  let scopes = ['profile', 'email', 'groups'];

  const edit = (p: SsoProvider) => {
    id.value = p.id;
    display.value = p.display_name;
    issuer.value = p.issuer;
    clientId.value = p.client_id;
    secret.value = '';
    usernameClaim.value = p.username_claim;
    groupsClaim.value = p.groups_claim;
    mappings.value = p.role_mapping.map((m) => `${m.group} = ${m.role}`).join('\n');
    defaultRole.value = p.default_role ?? '';
    scopes = p.scopes;
    id.focus();
  };
  const row = (p: SsoProvider) =>
    h(
      'tr',
      { 'data-sso-provider': p.id },
      h('td', null, p.display_name, h('span', { class: 'muted' }, ` (${p.id})`)),
      h('td', null, p.issuer),
      h('td', null, p.client_id),
      h('td', null, [...p.role_mapping.map((m) => `${m.group} → ${m.role}`), ...(p.default_role ? [`others → ${p.default_role}`] : [])].join(', ')),
      h(
        'td',
        { class: 'actions' },
        actionButton('Edit', { 'data-edit-sso': p.id }, async () => edit(p)),
        actionButton('Test', { 'data-test-sso': p.id }, async () => {
          await attempt(ctx, error, async () => {
            const r = await testSsoProvider(p.id);
            tested.textContent = r.ok ? `${p.display_name} answers: its discovery document and keys were read.` : `${p.display_name}: ${r.error ?? 'no answer'}`;
            tested.hidden = false;
          });
        }),
        deleteButton('Remove', { 'data-remove-sso': p.id, 'aria-label': `Remove provider ${p.id}` }, async () => {
          if (await attempt(ctx, error, () => deleteSsoProvider(p.id))) await attempt(ctx, error, load);
        }),
      ),
    );
  const show = (s: SsoSettings) => {
    publicUrl.value = s.public_url ?? '';
    redirect.textContent = s.redirect_uri ?? '(set the public URL first)';
    for (const { role, box } of roleBoxes) box.checked = s.required_for_roles.includes(role);
    for (const { role, box } of passkeyBoxes) box.checked = (s.passkey_required_for_roles ?? []).includes(role);
    replace(tbody, ...(s.providers.length ? s.providers.map(row) : [emptyRow(5, 'No providers yet.')]));
  };
  const load = async () => {
    const s = await getSsoSettings();
    if (!ctx.signal.aborted) show(s);
  };

  settingsForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    submitting(saveSettings, true);
    await attempt(ctx, error, async () => {
      const roles = roleBoxes.filter((r) => r.box.checked).map((r) => r.role);
      const passkeyRoles = passkeyBoxes.filter((r) => r.box.checked).map((r) => r.role);
      show(await putSsoSettings(publicUrl.value.trim() || null, roles, passkeyRoles));
    });
    submitting(saveSettings, false);
  });
  providerForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const mapped = parseMappings(mappings.value);
    if (typeof mapped === 'string') {
      showError(error, mapped);
      return;
    }
    if (id.value.trim() === '' || display.value.trim() === '' || issuer.value.trim() === '' || clientId.value.trim() === '') {
      showError(error, 'Give the id, the name shown, the issuer and the client id.');
      return;
    }
    submitting(saveProvider, true);
    const ok = await attempt(ctx, error, async () => {
      show(
        await putSsoProvider(id.value.trim(), {
          display_name: display.value.trim(),
          issuer: issuer.value.trim(),
          client_id: clientId.value.trim(),
          ...(secret.value !== '' ? { client_secret: secret.value } : {}),
          scopes,
          username_claim: usernameClaim.value.trim() || 'preferred_username',
          groups_claim: groupsClaim.value.trim() || 'groups',
          role_mapping: mapped,
          default_role: (defaultRole.value || null) as RoleName | null,
        }),
      );
    });
    submitting(saveProvider, false);
    if (ok) secret.value = '';
  });

  await attempt(ctx, error, load);
}
