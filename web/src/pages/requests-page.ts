// `#/requests`: just-in-time access. Ask for a target the policy makes requestable (for a while,
// with a reason); see your requests with their state and time left; approvers see those they may
// decide and approve or deny them with a comment; administrators set the webhook.

import {
  cancelRequest,
  createRequest,
  decideRequest,
  getRequestSettings,
  listRequests,
  putRequestSettings,
  requestableTargets,
  type AccessRequest,
  type Requestable,
} from '../api';
import { isAdmin, type PageContext } from '../context';
import { h, replace, showError } from '../dom';
import { shell } from '../layout';
import { duration, status } from '../model/requests';
import { actionButton, attempt, emptyRow, field, submitting } from './admin-kit';

export async function renderRequests(ctx: PageContext): Promise<void> {
  const main = shell(ctx.root, ctx.me, 'requests');
  const error = h('div', { class: 'form-error', role: 'alert', hidden: true });
  main.append(
    h(
      'div',
      { class: 'page-head' },
      h('h1', null, 'Access requests'),
      h('p', { class: 'muted' }, 'Ask for access to a target for a while; another person approves it. The access ends on its own.'),
    ),
  );

  // Asking.
  const target = h('select', { id: 'request-target', required: true });
  const minutes = h('input', { id: 'request-minutes', type: 'number', min: 1, value: 60, required: true });
  const reason = h('input', { id: 'request-reason', type: 'text', required: true, maxlength: 500, placeholder: 'what you will do and why' });
  const ticket = h('input', { id: 'request-ticket', type: 'text', maxlength: 64, placeholder: 'optional: CHG-1234' });
  const ask = h('button', { id: 'request-submit', type: 'submit', class: 'btn btn-primary' }, 'Request access');
  const hint = h('p', { id: 'request-hint', class: 'muted' }, '');
  const form = h(
    'form',
    { class: 'card create-form', novalidate: true },
    h('h2', null, 'New request'),
    h('div', { class: 'form-row' }, field('Target', target, 'request-target'), field('Minutes', minutes, 'request-minutes')),
    h('div', { class: 'form-row' }, field('Reason', reason, 'request-reason'), field('Ticket', ticket, 'request-ticket')),
    hint,
    h('div', { class: 'form-row' }, h('div', { class: 'field field-action' }, ask)),
    error,
  );
  let offered: Requestable[] = [];
  const explain = () => {
    const t = offered.find((o) => o.target === target.value);
    hint.textContent = t
      ? `Rule “${t.rule}”: ${t.approvals} approval${t.approvals > 1 ? 's' : ''} by ${t.approvers.join(', ')}; at most ${duration(t.max_duration_secs)}.`
      : '';
  };
  target.addEventListener('change', explain);

  // The lists: open requests (waiting for a decision, or approved and running), then history.
  const columns = () => h('thead', null, h('tr', null, ...['Request', 'User', 'Target', 'Reason', 'State', ''].map((c) => h('th', { scope: 'col' }, c))));
  const tbody = h('tbody');
  const table = h('table', { id: 'requests-table', class: 'data-table' }, columns(), tbody);
  const historyBody = h('tbody');
  const history = h('table', { id: 'requests-history', class: 'data-table' }, columns(), historyBody);
  main.append(
    form,
    h('div', { class: 'card table-card' }, h('h2', null, 'Open'), table),
    h('div', { class: 'card table-card' }, h('h2', null, 'History'), history),
  );

  const row = (r: AccessRequest) => {
    const comment = h('input', { type: 'text', class: 'inline-input', placeholder: 'comment', 'data-comment': r.id, maxlength: 500 });
    const actions: HTMLElement[] = [];
    if (r.can_decide) {
      actions.push(
        comment,
        actionButton('Approve', { 'data-approve': r.id }, async () => {
          if (await attempt(ctx, error, () => decideRequest(r.id, 'approve', comment.value))) await attempt(ctx, error, load);
        }),
        actionButton('Deny', { 'data-deny': r.id, class: 'btn btn-small btn-danger' }, async () => {
          if (await attempt(ctx, error, () => decideRequest(r.id, 'deny', comment.value))) await attempt(ctx, error, load);
        }),
      );
    }
    if (r.can_revoke) {
      actions.push(
        actionButton('Revoke', { 'data-revoke': r.id, class: 'btn btn-small btn-danger' }, async () => {
          if (await attempt(ctx, error, () => cancelRequest(r.id))) await attempt(ctx, error, load);
        }),
      );
    }
    if (r.user === ctx.me.name && (r.state === 'pending' || r.state === 'approved')) {
      actions.push(
        actionButton('Withdraw', { 'data-cancel': r.id }, async () => {
          if (await attempt(ctx, error, () => cancelRequest(r.id))) await attempt(ctx, error, load);
        }),
      );
    }
    return h(
      'tr',
      { 'data-request': r.id, 'data-state': r.state },
      h('td', null, r.id, r.ticket ? h('div', { class: 'muted' }, r.ticket) : null),
      h('td', null, r.user),
      h('td', null, r.target, h('div', { class: 'muted' }, `for ${duration(r.duration_secs)}`)),
      h('td', null, r.reason),
      h('td', { 'data-status': r.id }, status(r), ...r.approvals.map((a) => h('div', { class: 'muted' }, `✓ ${a.by}${a.comment ? `: ${a.comment}` : ''}`))),
      h('td', { class: 'actions' }, ...actions),
    );
  };
  const load = async () => {
    const [{ requests }, { targets }] = await Promise.all([listRequests(), requestableTargets()]);
    if (ctx.signal.aborted) return;
    offered = targets;
    const keep = target.value;
    replace(target, ...(targets.length ? targets.map((t) => h('option', { value: t.target }, t.target)) : [h('option', { value: '' }, 'Nothing to request')]));
    if (targets.some((t) => t.target === keep)) target.value = keep;
    explain();
    const open = requests.filter((r) => r.state === 'pending' || r.state === 'approved');
    const over = requests.filter((r) => r.state !== 'pending' && r.state !== 'approved');
    replace(tbody, ...(open.length ? open.map(row) : [emptyRow(6, 'No open requests.')]));
    replace(historyBody, ...(over.length ? over.map(row) : [emptyRow(6, 'No past requests.')]));
  };

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (target.value === '' || reason.value.trim() === '' || !(Number(minutes.value) > 0)) {
      showError(error, 'Choose a target, a number of minutes and say why.');
      return;
    }
    submitting(ask, true);
    const ok = await attempt(ctx, error, () =>
      createRequest({
        target: target.value,
        duration_secs: Math.round(Number(minutes.value) * 60),
        reason: reason.value.trim(),
        ...(ticket.value.trim() ? { ticket: ticket.value.trim() } : {}),
      }),
    );
    submitting(ask, false);
    if (ok) {
      reason.value = '';
      ticket.value = '';
      await attempt(ctx, error, load);
    }
  });

  if (isAdmin(ctx.me)) {
    // The webhook announcing requests and decisions (a chat or ticketing system relays them).
    const url = h('input', { id: 'webhook-url', type: 'url', placeholder: 'https://chat.example.com/hooks/psm' });
    const secret = h('input', { id: 'webhook-secret', type: 'password', autocomplete: 'new-password', placeholder: 'HMAC secret (16+ characters)' });
    const within = h('input', { id: 'decide-within', type: 'number', min: 1, value: 1440 });
    const save = h('button', { id: 'webhook-save', type: 'submit', class: 'btn' }, 'Save');
    const saved = h('p', { id: 'webhook-state', class: 'muted' }, '');
    const settings = h(
      'form',
      { class: 'card create-form', novalidate: true },
      h('h2', null, 'Webhook and decision time'),
      h('div', { class: 'form-row' }, field('Webhook URL', url, 'webhook-url'), field('Secret', secret, 'webhook-secret'), field('Decide within (minutes)', within, 'decide-within')),
      saved,
      h('div', { class: 'form-row' }, h('div', { class: 'field field-action' }, save)),
    );
    main.append(settings);
    const show = (s: { webhook_url: string | null; webhook_secret_set: boolean; decide_within_secs: number }) => {
      url.value = s.webhook_url ?? '';
      within.value = String(Math.max(1, Math.round(s.decide_within_secs / 60)));
      saved.textContent = s.webhook_url ? `Announcing to ${s.webhook_url}${s.webhook_secret_set ? ', signed' : ''}.` : 'No webhook.';
    };
    settings.addEventListener('submit', async (e) => {
      e.preventDefault();
      submitting(save, true);
      await attempt(ctx, error, async () => {
        show(
          await putRequestSettings({
            webhook_url: url.value.trim() || null,
            ...(secret.value ? { webhook_secret: secret.value } : {}),
            decide_within_secs: Math.round(Number(within.value) * 60),
          }),
        );
        secret.value = '';
      });
      submitting(save, false);
    });
    await attempt(ctx, error, async () => show(await getRequestSettings()));
  }

  await attempt(ctx, error, load);
  // The time left moves: the list is read again now and then while the page is open.
  const timer = window.setInterval(() => {
    if (ctx.signal.aborted) {
      window.clearInterval(timer);
      return;
    }
    // Not while someone types (a comment, a reason): the list would be drawn anew under them.
    if (document.activeElement instanceof HTMLInputElement) return;
    void attempt(ctx, error, load);
  }, 15_000);
}
