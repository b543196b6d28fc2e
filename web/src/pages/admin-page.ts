// `#/admin/{users,targets,grants,sessions,tokens}`: the administrators' pages (shared parts in
// admin-kit.ts; the policy page is policy-page.ts).

import {
  acceptTargetIdentity,
  closeSession,
  createGrant,
  createTarget,
  createToken,
  createUser,
  deleteGrant,
  deleteTarget,
  deleteUser,
  listGrants,
  listSessions,
  listTargets,
  listTokens,
  listTokenScopes,
  listUsers,
  lockUser,
  resetMfa,
  revokeToken,
  setTargetIdentity,
  unlockUser,
  type ApiToken,
  type Grant,
  type NewTarget,
  type SessionInfo,
  type Target,
  type TokenScope,
  type TargetKind,
  type User,
} from '../api';
import type { PageContext } from '../context';
import { h, replace, showError } from '../dom';
import { roleClass } from '../layout';
import { parseLabels } from '../model/policy';
import { reasonForm } from './reason-form';
import { kindSecurityNote } from '../model/target-kind';
import { actionButton, adminShell, attempt, deleteButton, emptyRow, field, submitting } from './admin-kit';
import { errorMessage, formatTime } from './util';

// ---------------------------------------------------------------------------------------------
// Users

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
      h('td', null, u.name, self ? h('span', { class: 'muted you' }, ' (you)') : null),
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

// ---------------------------------------------------------------------------------------------
// Targets

/** The address hint of each kind (its usual port). */
const ADDRESS_PLACEHOLDER: Record<TargetKind, string> = { vnc: 'host:5900', rdp: 'host:3389' };

export async function renderAdminTargets(ctx: PageContext): Promise<void> {
  const page = adminShell(
    ctx,
    'admin-targets',
    'Manage targets',
    'Systems the gateway connects to. Their passwords are stored by the gateway and never shown.',
    ['Name', 'Kind', 'Address', 'Account', 'Labels', 'Description', 'Identity', ''],
    'targets-table',
  );
  if (!page) return;
  const { main, error, tbody, table } = page;

  const name = h('input', { id: 'target-name', type: 'text', autocomplete: 'off', spellcheck: 'false', required: true });
  const kind = h(
    'select',
    { id: 'target-kind' },
    h('option', { value: 'vnc', selected: true }, 'VNC'),
    h('option', { value: 'rdp' }, 'RDP'),
  );
  const address = h('input', { id: 'target-address', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: ADDRESS_PLACEHOLDER.vnc, required: true });
  const account = h('input', {
    id: 'target-account',
    type: 'text',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'user or DOMAIN\\user',
    disabled: true,
  });
  const password = h('input', { id: 'target-password', type: 'password', autocomplete: 'new-password' });
  const passwordLabel = h('label', { for: 'target-password' }, 'VNC password');
  const description = h('input', { id: 'target-description', type: 'text', autocomplete: 'off' });
  const labels = h('input', { id: 'target-labels', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'prod, db' });
  const create = h('button', { id: 'target-create', type: 'submit', class: 'btn btn-primary' }, 'Add target');
  const accountField = field('Account (RDP)', account, 'target-account');
  accountField.hidden = true;
  const kindNote = h('p', { id: 'target-kind-note', class: 'note', role: 'note' }, kindSecurityNote('vnc') ?? '');
  // RDP: the certificate the target must present, when known ahead of time (else pinned on
  // first use), and whether it must do NLA.
  const tlsSha256 = h('input', {
    id: 'target-tls-sha256',
    type: 'text',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'pinned on first use',
    disabled: true,
  });
  const requireNla = h('input', { id: 'target-require-nla', type: 'checkbox', disabled: true });
  const pinField = field('Certificate SHA-256 (RDP)', tlsSha256, 'target-tls-sha256');
  pinField.hidden = true;
  const nlaField = field('Require NLA', requireNla, 'target-require-nla');
  nlaField.hidden = true;
  const form = h(
    'form',
    { class: 'card create-form', novalidate: true },
    h('h2', null, 'New target'),
    h(
      'div',
      { class: 'form-row' },
      field('Name', name, 'target-name'),
      field('Kind', kind, 'target-kind'),
      field('Address', address, 'target-address'),
      accountField,
      h('div', { class: 'field' }, passwordLabel, password),
      field('Description', description, 'target-description'),
      field('Labels (comma-separated)', labels, 'target-labels'),
      pinField,
      nlaField,
      h('div', { class: 'field field-action' }, create),
    ),
    kindNote,
    error,
  );
  main.append(form, h('div', { class: 'card table-card' }, table));

  const selectedKind = (): TargetKind => (kind.value === 'rdp' ? 'rdp' : 'vnc');
  /** Shows (and enables) the account only for RDP; the address hint and password label follow the kind. */
  const syncKind = () => {
    const rdp = selectedKind() === 'rdp';
    accountField.hidden = !rdp;
    account.disabled = !rdp;
    account.required = rdp;
    pinField.hidden = !rdp;
    nlaField.hidden = !rdp;
    tlsSha256.disabled = !rdp;
    requireNla.disabled = !rdp;
    address.placeholder = ADDRESS_PLACEHOLDER[selectedKind()];
    passwordLabel.textContent = rdp ? 'RDP password' : 'VNC password';
    const note = kindSecurityNote(selectedKind());
    kindNote.hidden = note === null;
    kindNote.textContent = note ?? '';
  };
  kind.addEventListener('change', syncKind);

  const row = (t: Target) =>
    h(
      'tr',
      { 'data-target-row': t.name },
      h('td', null, t.name),
      h('td', null, h('span', { class: 'kind-badge' }, (t.kind || 'vnc').toUpperCase())),
      h('td', { class: 'mono' }, t.address ?? ''),
      h('td', { class: 'mono' }, t.account ?? ''),
      h('td', { class: 'labels' }, ...(t.labels ?? []).map((l) => h('span', { class: 'label-badge' }, l))),
      h('td', null, t.description ?? ''),
      identityCell(t),
      h(
        'td',
        { class: 'actions' },
        deleteButton('Delete', { 'data-delete-target': t.name, 'aria-label': `Delete target ${t.name}` }, async () => {
          if (await attempt(ctx, error, () => deleteTarget(t.name))) await attempt(ctx, error, load);
        }),
      ),
    );
  const load = async () => {
    const targets = await listTargets();
    if (ctx.signal.aborted) return;
    targets.sort((a, b) => a.name.localeCompare(b.name));
    replace(tbody, ...(targets.length ? targets.map(row) : [emptyRow(8, 'No targets yet.')]));
  };

  /** An RDP target's pinned certificate and NLA, and what was refused, with the buttons to accept it. */
  const identityCell = (t: Target) => {
    const id = t.identity;
    if (!id) return h('td', { class: 'muted' }, t.kind === 'vnc' ? 'none (VNC)' : '');
    const pin = id.tls_ca_file
      ? h('span', { class: 'mono', 'data-tls-ca-file': id.tls_ca_file }, `CA ${id.tls_ca_file}`)
      : id.tls_sha256
      ? h('span', { class: 'mono', title: id.tls_sha256, 'data-tls-sha256': id.tls_sha256 }, `SHA-256 ${id.tls_sha256.slice(0, 16)}…`)
      : h('span', { class: 'muted' }, 'pinned on first use');
    const nla = id.require_nla ? 'NLA required' : id.nla_seen ? 'NLA (no downgrade)' : 'TLS';
    const parts: (HTMLElement | string)[] = [pin, h('div', { class: 'muted' }, nla)];
    if (id.refused_sha256) {
      const sha = id.refused_sha256;
      parts.push(
        h('div', { class: 'identity-refused', 'data-refused-sha256': sha }, `Refused: it presented ${sha}`),
        actionButton('Accept new certificate', { 'data-accept-certificate': t.name, title: sha }, async () => {
          if (await attempt(ctx, error, () => acceptTargetIdentity(t.name, { sha256: sha }))) await attempt(ctx, error, load);
        }),
      );
    }
    if (id.refused_downgrade) {
      parts.push(
        h('div', { class: 'identity-refused' }, 'Refused: it answered without NLA'),
        actionButton('Allow without NLA', { 'data-allow-without-nla': t.name }, async () => {
          if (await attempt(ctx, error, () => acceptTargetIdentity(t.name, { allow_without_nla: true }))) await attempt(ctx, error, load);
        }),
      );
    }
    return h('td', { class: 'identity', 'data-identity': t.name }, ...parts);
  };

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const k = selectedKind();
    if (name.value.trim() === '' || address.value.trim() === '') {
      showError(error, 'Enter a name and an address (host:port).');
      return;
    }
    if (k === 'rdp' && account.value.trim() === '') {
      showError(error, 'An RDP target needs an account (user or DOMAIN\\user).');
      account.focus();
      return;
    }
    const body: NewTarget = {
      name: name.value.trim(),
      kind: k,
      address: address.value.trim(),
      password: password.value,
    };
    if (k === 'rdp') body.account = account.value.trim();
    if (description.value.trim() !== '') body.description = description.value.trim();
    const labelList = parseLabels(labels.value);
    if (labelList.length) body.labels = labelList;
    submitting(create, true);
    const pinText = tlsSha256.value.trim();
    const pinNla = requireNla.checked;
    const ok = await attempt(ctx, error, async () => {
      await createTarget(body);
      if (k === 'rdp' && (pinText !== '' || pinNla)) {
        await setTargetIdentity(body.name, { ...(pinText !== '' ? { tls_sha256: pinText } : {}), require_nla: pinNla });
      }
    });
    submitting(create, false);
    if (ok) {
      form.reset(); // back to VNC, without a change event
      syncKind();
      name.focus();
      await attempt(ctx, error, load);
    }
  });

  await attempt(ctx, error, load);
}

// ---------------------------------------------------------------------------------------------
// Grants

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

// ---------------------------------------------------------------------------------------------
// API tokens

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

// ---------------------------------------------------------------------------------------------
// Sessions

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
