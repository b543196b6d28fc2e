// `#/admin/targets`: create VNC and RDP targets, delete them, and manage an RDP target's identity
// (certificate pin, NLA, CA file; accepting a changed certificate).

import {
  acceptTargetIdentity,
  createTarget,
  deleteTarget,
  listTargets,
  setTargetIdentity,
  type NewTarget,
  type Target,
  type TargetKind,
} from '../api';
import type { PageContext } from '../context';
import { h, replace, showError } from '../dom';
import { parseLabels } from '../model/policy';
import { kindSecurityNote } from '../model/target-kind';
import { actionButton, adminShell, attempt, deleteButton, emptyRow, field, submitting } from './admin-kit';

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
