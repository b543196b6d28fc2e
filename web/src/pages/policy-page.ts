// Admin page "Policy": the policy document (JSON) with Save, and the Explain form.

import { explainPolicy, getPolicy, listTargets, listUsers, putPolicy, type Explanation, type PolicyInfo } from '../api';
import type { PageContext } from '../context';
import { h, replace, showError } from '../dom';
import { ACTION_CHOICES, actionFor, choiceTakesBytes, formatPolicy, parsePolicyText, ruleCount, verdictText } from '../model/policy';
import { adminShell, attempt, field, submitting } from './admin-kit';

/** Runs `fn` through `attempt` (errors shown in `el`); its value, or null when it failed. */
async function tryCall<T>(ctx: PageContext, el: HTMLElement, fn: () => Promise<T>): Promise<T | null> {
  let out: T | null = null;
  const ok = await attempt(ctx, el, async () => {
    out = await fn();
  });
  return ok ? out : null;
}

export async function renderAdminPolicy(ctx: PageContext): Promise<void> {
  const page = adminShell(
    ctx,
    'admin-policy',
    'Policy',
    'Who may open which target, how and when, and what may cross. The first rule matching the user and the target decides; no rule means no access.',
    ['#', 'Rule', 'Subject matched', 'Target matched', 'Outcome'],
    'explain-considered',
  );
  if (!page) return;
  const { main, error, tbody, table } = page;
  error.id = 'policy-error';

  // --- the document -------------------------------------------------------------------------
  const editor = h('textarea', { id: 'policy-text', rows: 22, spellcheck: 'false', 'aria-label': 'Policy document (JSON)' });
  const managed = h('p', { id: 'policy-managed', class: 'note', hidden: true });
  const saved = h('p', { id: 'policy-saved', class: 'note', role: 'status', hidden: true });
  const warned = h('ul', { id: 'policy-warnings', class: 'form-error', role: 'alert', hidden: true });
  const save = h('button', { id: 'policy-save', type: 'submit', class: 'btn btn-primary' }, 'Save policy');
  const docForm = h(
    'form',
    { class: 'card create-form', novalidate: true },
    h('h2', null, 'Policy document (JSON)'),
    managed,
    editor,
    h('div', { class: 'form-row' }, h('div', { class: 'field field-action' }, save)),
    saved,
    warned,
    error,
  );

  const show = (info: PolicyInfo) => {
    editor.value = formatPolicy(info.policy);
    const file = info.managed_by_file;
    editor.readOnly = file !== null;
    save.hidden = file !== null;
    managed.textContent = file === null ? '' : `This policy is managed by the file ${file} ([policy] file in the configuration): edit it there and restart the gateway.`;
    managed.hidden = file === null;
    const warnings = info.warnings ?? [];
    replace(warned, ...warnings.map((w) => h('li', null, w)));
    warned.hidden = warnings.length === 0;
  };

  docForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    saved.hidden = true;
    let doc: unknown;
    try {
      doc = parsePolicyText(editor.value);
    } catch (err) {
      showError(error, err instanceof Error ? err.message : String(err));
      return;
    }
    submitting(save, true);
    const info = await tryCall(ctx, error, () => putPolicy(doc));
    submitting(save, false);
    if (info && !ctx.signal.aborted) {
      show(info);
      const rules = ruleCount(info.policy);
      saved.textContent = `Saved: ${rules} rule${rules === 1 ? '' : 's'} in force.`;
      saved.hidden = false;
    }
  });

  // --- explain -------------------------------------------------------------------------------
  const user = h('select', { id: 'explain-user', required: true });
  const target = h('select', { id: 'explain-target', required: true });
  const action = h('select', { id: 'explain-action' }, ...ACTION_CHOICES.map((c) => h('option', { value: c.value }, c.label)));
  const bytes = h('input', { id: 'explain-bytes', type: 'text', inputmode: 'numeric', autocomplete: 'off', placeholder: '0' });
  const bytesField = field('Size (bytes)', bytes, 'explain-bytes');
  bytesField.hidden = true;
  const run = h('button', { id: 'explain-run', type: 'submit', class: 'btn btn-primary' }, 'Explain');
  const explainError = h('div', { id: 'explain-error', class: 'form-error', role: 'alert', hidden: true });
  const verdict = h('p', { id: 'explain-verdict', class: 'explain-verdict' });
  const message = h('p', { id: 'explain-message' });
  const facts = h('p', { id: 'explain-facts', class: 'muted' });
  const result = h('div', { id: 'explain-result', hidden: true }, verdict, message, facts, h('div', { class: 'table-card' }, table));
  const explainForm = h(
    'form',
    { class: 'card create-form', novalidate: true },
    h('h2', null, 'Explain a decision'),
    h(
      'div',
      { class: 'form-row' },
      field('User', user, 'explain-user'),
      field('Target', target, 'explain-target'),
      field('Action', action, 'explain-action'),
      bytesField,
      h('div', { class: 'field field-action' }, run),
    ),
    explainError,
    result,
  );
  action.addEventListener('change', () => {
    bytesField.hidden = !choiceTakesBytes(action.value);
  });

  const fill = (sel: HTMLSelectElement, values: string[], placeholder: string) => {
    replace(sel, h('option', { value: '' }, placeholder), ...values.map((v) => h('option', { value: v }, v)));
  };

  const showExplanation = (ex: Explanation) => {
    verdict.textContent = verdictText(ex);
    verdict.className = `explain-verdict ${ex.allowed ? 'allowed' : 'denied'}`;
    message.textContent = ex.message;
    const groups = [...ex.groups, ...(ex.sso_groups ?? []).map((g) => `sso:${g}`)];
    const labels = ex.labels.length ? ex.labels.join(', ') : 'none';
    const approved = ex.access?.request;
    const held = approved
      ? ` The user holds request ${approved.id}, approved by ${approved.approved_by.join(', ')}${approved.until ? `, until ${new Date(approved.until * 1000).toISOString().replace('T', ' ').slice(0, 19)} UTC` : ''}.`
      : ' The user holds no approved request now.';
    const access = ex.request
      ? `Rule “${ex.request.rule}” gives access by approved request only (${ex.request.approvals} approval${ex.request.approvals > 1 ? 's' : ''} by ${ex.request.approvers.join(', ')}, at most ${Math.round(ex.request.max_duration_secs / 60)} min): a standing grant does not count; the user asks on the Requests page.${held}`
      : ex.has_grant
        ? 'The user has a grant for this target.'
        : 'The user has no grant for this target: sessions also need one.';
    facts.textContent = `${ex.user} (role ${ex.role}, groups ${groups.length ? groups.join(', ') : 'none'}) on ${ex.target} (labels ${labels}) at ${ex.at}. ${access}`;
    replace(
      tbody,
      ...ex.considered.map((c) =>
        h(
          'tr',
          { 'data-rule': c.rule, class: c.matched ? 'matched' : null },
          h('td', null, c.index + 1),
          h('td', null, c.rule),
          h('td', { class: 'mono' }, c.subject ?? '—'),
          h('td', { class: 'mono' }, c.target ?? '—'),
          h('td', null, c.note),
        ),
      ),
    );
    if (!ex.considered.length) replace(tbody, h('tr', { class: 'empty-row' }, h('td', { colspan: 5 }, 'The policy has no rules.')));
    result.hidden = false;
  };

  explainForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (user.value === '' || target.value === '') {
      showError(explainError, 'Choose a user and a target.');
      return;
    }
    let act;
    try {
      act = actionFor(action.value, bytes.value);
    } catch (err) {
      showError(explainError, err instanceof Error ? err.message : String(err));
      return;
    }
    submitting(run, true);
    const ex = await tryCall(ctx, explainError, () => explainPolicy({ user: user.value, target: target.value, action: act }));
    submitting(run, false);
    if (ex && !ctx.signal.aborted) showExplanation(ex);
  });

  main.append(docForm, explainForm);

  await attempt(ctx, error, async () => {
    const [info, users, targets] = await Promise.all([getPolicy(), listUsers(), listTargets()]);
    if (ctx.signal.aborted) return;
    show(info);
    fill(user, users.map((u) => u.name).sort((a, b) => a.localeCompare(b)), 'Choose a user…');
    fill(target, targets.map((t) => t.name).sort((a, b) => a.localeCompare(b)), 'Choose a target…');
  });
}
