// What the admin pages share (`#/admin/*`: users, targets, grants, sessions, tokens, policy): the
// page shell with its single error element and table, form fields, buttons, and running an API call
// with its error shown.

import { isAdmin, type PageContext } from '../context';
import { h, showError } from '../dom';
import { shell, type NavKey } from '../layout';
import { errorMessage } from './util';

/** The parts every admin page has. There is exactly one `.form-error` per page. */
export interface AdminPage {
  main: HTMLElement;
  /** The page's single error element (API errors of the form and of table actions). */
  error: HTMLElement;
  tbody: HTMLTableSectionElement;
  table: HTMLTableElement;
}

/** Renders the shell; returns null (after showing "not allowed") for a non-admin. */
export function adminShell(
  ctx: PageContext,
  nav: NavKey,
  title: string,
  subtitle: string,
  columns: string[],
  tableId: string,
): AdminPage | null {
  const main = shell(ctx.root, ctx.me, nav);
  if (!isAdmin(ctx.me)) {
    main.append(
      h(
        'div',
        { id: 'not-allowed', class: 'empty', role: 'alert' },
        h('p', { class: 'empty-title' }, 'You are not allowed to view this page.'),
        h('p', { class: 'muted' }, 'Only administrators can manage the gateway.'),
      ),
    );
    return null;
  }
  const error = h('div', { class: 'form-error', role: 'alert', hidden: true });
  const tbody = h('tbody');
  const table = h(
    'table',
    { id: tableId, class: 'data-table' },
    h('thead', null, h('tr', null, ...columns.map((c) => h('th', { scope: 'col' }, c)))),
    tbody,
  );
  main.append(h('div', { class: 'page-head' }, h('h1', null, title), h('p', { class: 'muted' }, subtitle)));
  return { main, error, tbody, table };
}

/** The one row of an empty table. */
export function emptyRow(cols: number, text: string): HTMLTableRowElement {
  return h('tr', { class: 'empty-row' }, h('td', { colspan: cols }, text));
}

/** A labelled form field. */
export function field(label: string, input: HTMLElement, id: string): HTMLElement {
  return h('div', { class: 'field' }, h('label', { for: id }, label), input);
}

/** A small button running `onClick`, disabled while it runs. */
export function actionButton(label: string, attrs: Record<string, string>, onClick: () => Promise<void>): HTMLButtonElement {
  const btn = h('button', { type: 'button', class: 'btn btn-small', ...attrs }, label);
  btn.addEventListener('click', async () => {
    btn.disabled = true;
    try {
      await onClick();
    } finally {
      btn.disabled = false;
    }
  });
  return btn;
}

/** A small red button running `onClick`, disabled while it runs. */
export function deleteButton(label: string, attrs: Record<string, string>, onClick: (btn: HTMLButtonElement) => Promise<void>): HTMLButtonElement {
  const btn = h('button', { type: 'button', class: 'btn btn-danger btn-small', ...attrs }, label);
  btn.addEventListener('click', async () => {
    btn.disabled = true;
    try {
      await onClick(btn);
    } finally {
      btn.disabled = false;
    }
  });
  return btn;
}

/** Runs an API action, showing its error in the page's error element. True on success. */
export async function attempt(ctx: PageContext, error: HTMLElement, action: () => Promise<unknown>): Promise<boolean> {
  showError(error, null);
  try {
    await action();
    return true;
  } catch (err) {
    if (!ctx.signal.aborted) showError(error, errorMessage(err));
    return false;
  }
}

/** Shows a submit button as busy (disabled, class `busy`) or not. */
export function submitting(btn: HTMLButtonElement, busy: boolean): void {
  btn.disabled = busy;
  btn.classList.toggle('busy', busy);
}
