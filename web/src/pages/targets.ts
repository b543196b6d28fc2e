import { listTargets, type Target } from '../api';
import { isAdmin, type PageContext } from '../context';
import { h, replace } from '../dom';
import { shell } from '../layout';
import { errorMessage } from './util';

/** `#/session/<name>` for a target. */
export const sessionHref = (name: string): string => `#/session/${encodeURIComponent(name)}`;

function card(t: Target, admin: boolean): HTMLElement {
  return h(
    'li',
    null,
    h(
      'a',
      { class: 'target-card', href: sessionHref(t.name), 'data-target': t.name, title: `Open a session to ${t.name}` },
      h('span', { class: 'target-icon', 'aria-hidden': 'true' }),
      h(
        'span',
        { class: 'target-text' },
        h('span', { class: 'target-name' }, t.name),
        t.description ? h('span', { class: 'target-desc' }, t.description) : null,
        admin && t.address ? h('span', { class: 'target-addr' }, t.address) : null,
      ),
      h('span', { class: 'kind-badge' }, (t.kind || 'vnc').toUpperCase()),
      h('span', { class: 'target-open' }, 'Connect →'),
    ),
  );
}

/** `#/targets`: the targets the user may open. */
export async function renderTargets(ctx: PageContext): Promise<void> {
  const main = shell(ctx.root, ctx.me, 'targets');
  const body = h('div', { class: 'target-list-body' }, h('p', { class: 'muted' }, 'Loading targets…'));
  main.append(h('div', { class: 'page-head' }, h('h1', null, 'Targets'), h('p', { class: 'muted' }, 'Choose a system to open a session.')), body);
  try {
    const targets = await listTargets();
    if (ctx.signal.aborted) return;
    if (targets.length === 0) {
      replace(
        body,
        h(
          'div',
          { id: 'targets-empty', class: 'empty' },
          h('p', { class: 'empty-title' }, 'No targets are granted to you.'),
          h(
            'p',
            { class: 'muted' },
            isAdmin(ctx.me) ? 'Add targets and grants in the admin pages.' : 'Ask an administrator to grant you access to a system.',
          ),
        ),
      );
      return;
    }
    const sorted = [...targets].sort((a, b) => a.name.localeCompare(b.name));
    replace(body, h('ul', { id: 'target-list', class: 'target-list' }, ...sorted.map((t) => card(t, isAdmin(ctx.me)))));
  } catch (err) {
    if (ctx.signal.aborted) return;
    replace(body, h('div', { class: 'page-error', role: 'alert' }, errorMessage(err)));
  }
}
