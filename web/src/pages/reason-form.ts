// An inline "why?" form for the security team's actions that need a reason (kill, lock): the
// gateway shows the reason to the user and keeps it in the recording, so it is asked every time.

import { h, showError } from '../dom';
import { checkReason, MAX_REASON_BYTES } from '../model/soc';
import { errorMessage } from './util';

export interface ReasonForm {
  /** The form (hidden until opened). */
  el: HTMLFormElement;
  open(): void;
  close(): void;
  isOpen(): boolean;
}

export interface ReasonFormOptions {
  /** `data-reason-form` of the form (`kill`, `lock`): tests and styles find it by this. */
  kind: string;
  /** The question above the input. */
  label: string;
  /** The confirm button's text. */
  confirm: string;
  placeholder?: string;
  /** Carries the action out; a rejection is shown in the form, which then stays open. */
  submit: (reason: string) => Promise<unknown>;
  /** Whether the page is gone (late answers are ignored). */
  aborted: () => boolean;
}

export function reasonForm(o: ReasonFormOptions): ReasonForm {
  const input = h('input', {
    type: 'text',
    class: 'reason-input',
    'data-reason-input': o.kind,
    autocomplete: 'off',
    maxlength: MAX_REASON_BYTES,
    placeholder: o.placeholder ?? 'Reason (shown to the user and recorded)',
    'aria-label': o.label,
  });
  const confirm = h('button', { type: 'submit', class: 'btn btn-small btn-danger', 'data-reason-confirm': o.kind }, o.confirm);
  const cancel = h('button', { type: 'button', class: 'btn btn-small', 'data-reason-cancel': o.kind }, 'Cancel');
  const error = h('div', { class: 'form-error reason-error', role: 'alert', hidden: true });
  const el = h(
    'form',
    { class: 'reason-form', 'data-reason-form': o.kind, novalidate: true, hidden: true },
    h('label', { class: 'reason-label' }, o.label),
    h('div', { class: 'reason-row' }, input, confirm, cancel),
    error,
  );

  const close = () => {
    el.hidden = true;
    el.reset();
    showError(error, null);
  };
  const open = () => {
    el.hidden = false;
    showError(error, null);
    input.focus();
  };
  cancel.addEventListener('click', close);
  el.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') close();
  });
  el.addEventListener('submit', async (e) => {
    e.preventDefault();
    const r = checkReason(input.value);
    if (!r.ok) {
      showError(error, r.error);
      input.focus();
      return;
    }
    confirm.disabled = true;
    confirm.classList.add('busy');
    try {
      await o.submit(r.reason);
      if (!o.aborted()) close();
    } catch (err) {
      if (!o.aborted()) showError(error, errorMessage(err));
    } finally {
      confirm.disabled = false;
      confirm.classList.remove('busy');
    }
  });
  return { el, open, close, isOpen: () => !el.hidden };
}
