// `#/targets`: the targets the user may open, as cards linking to the session page, each with an
// "RDP file" button for a native client.

import { listTargets, rdpFile, type Target } from '../api';
import { isAdmin, type PageContext } from '../context';
import { h, replace } from '../dom';
import { shell } from '../layout';
import { rdpFileName, rdpFileNote, sessionHref } from '../model/targets';
import { errorMessage } from './util';

/** Saves `blob` as `fileName` through a temporary object URL and `<a download>`. */
function saveBlob(blob: Blob, fileName: string): void {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: fileName, hidden: true });
  document.body.append(a);
  try {
    a.click();
  } finally {
    a.remove();
    // Some browsers start the download asynchronously: keep the URL alive a little.
    window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }
}

/** Shows `text` in the targets page's note (`error`: in the error style); hidden while empty. */
function showNote(note: HTMLElement, text: string | null, error = false): void {
  note.textContent = text ?? '';
  note.hidden = !text;
  note.classList.toggle('page-error', error);
  note.classList.toggle('note-ok', !error);
  note.setAttribute('role', error ? 'alert' : 'status');
  if (text) note.dataset.state = error ? 'error' : 'ok';
  else delete note.dataset.state;
}

/** Asks the gateway for a one-time `.rdp` file for `target` and downloads it. */
async function downloadRdpFile(target: string, btn: HTMLButtonElement, note: HTMLElement, signal: AbortSignal): Promise<void> {
  if (btn.disabled) return;
  btn.disabled = true;
  btn.classList.add('busy');
  showNote(note, null);
  try {
    const { file, password } = await rdpFile(target);
    if (signal.aborted) return;
    const fileName = rdpFileName(target);
    saveBlob(file, fileName);
    showNote(note, rdpFileNote(fileName, password));
  } catch (err) {
    if (signal.aborted) return;
    showNote(note, `${rdpFileName(target)}: ${errorMessage(err)}`, true);
  } finally {
    btn.disabled = false;
    btn.classList.remove('busy');
  }
}

function card(t: Target, admin: boolean, note: HTMLElement, signal: AbortSignal): HTMLElement {
  const rdpBtn = h(
    'button',
    {
      type: 'button',
      class: 'btn btn-small target-rdp-file',
      'data-rdp-file': t.name,
      title: `Download a one-time .rdp file for ${t.name} (native RDP client)`,
    },
    'RDP file',
  );
  rdpBtn.addEventListener('click', () => void downloadRdpFile(t.name, rdpBtn, note, signal));
  return h(
    'li',
    { class: 'target-item' },
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
    rdpBtn,
  );
}

/** `#/targets`: the targets the user may open. */
export async function renderTargets(ctx: PageContext): Promise<void> {
  const main = shell(ctx.root, ctx.me, 'targets');
  const body = h('div', { class: 'target-list-body' }, h('p', { class: 'muted' }, 'Loading targets…'));
  const note = h('div', { id: 'targets-note', class: 'targets-note', role: 'status', hidden: true });
  main.append(h('div', { class: 'page-head' }, h('h1', null, 'Targets'), h('p', { class: 'muted' }, 'Choose a system to open a session.')), note, body);
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
    replace(body, h('ul', { id: 'target-list', class: 'target-list' }, ...sorted.map((t) => card(t, isAdmin(ctx.me), note, ctx.signal))));
  } catch (err) {
    if (ctx.signal.aborted) return;
    replace(body, h('div', { class: 'page-error', role: 'alert' }, errorMessage(err)));
  }
}
