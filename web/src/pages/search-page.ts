// `#/search`: search across recordings — what was typed, pasted, the files that crossed and the
// words on the screen. Each hit shows its recording, moment and thumbnail (screen words boxed on
// it); a click opens the player at that moment with the words boxed on the video. Plain users
// find only their own recordings (the gateway decides).

import { searchRecordings, thumbnailUrl, type SearchHit } from '../api';
import type { PageContext } from '../context';
import { h, replace, showError } from '../dom';
import { shell } from '../layout';
import { playerHash, splitHighlights } from '../model/search';
import { field, submitting } from './admin-kit';
import { errorMessage } from './util';

const KINDS: [string, string][] = [
  ['', 'Anything'],
  ['typed', 'Typed'],
  ['screen', 'On screen'],
  ['clipboard', 'Clipboard'],
  ['file', 'File names'],
];

export async function renderSearch(ctx: PageContext): Promise<void> {
  const main = shell(ctx.root, ctx.me, 'search');
  const q = h('input', { id: 'search-q', type: 'search', required: true, maxlength: 512, placeholder: 'net user, "10.1.2.3", payroll.xlsx' });
  const kind = h('select', { id: 'search-kind' }, ...KINDS.map(([v, l]) => h('option', { value: v }, l)));
  const user = h('input', { id: 'search-user', type: 'text', placeholder: 'any user' });
  const target = h('input', { id: 'search-target', type: 'text', placeholder: 'any target' });
  const from = h('input', { id: 'search-from', type: 'date' });
  const to = h('input', { id: 'search-to', type: 'date' });
  const go = h('button', { id: 'search-submit', type: 'submit', class: 'btn btn-primary' }, 'Search');
  const error = h('div', { id: 'search-error', class: 'form-error', role: 'alert', hidden: true });
  const summary = h('p', { id: 'search-summary', class: 'muted', role: 'status' });
  const list = h('ol', { id: 'search-results', class: 'search-results' });
  const form = h(
    'form',
    { class: 'card create-form', novalidate: true, role: 'search' },
    h('div', { class: 'form-row' }, field('Words', q, 'search-q'), field('Found', kind, 'search-kind')),
    h('div', { class: 'form-row' }, field('User', user, 'search-user'), field('Target', target, 'search-target'), field('From', from, 'search-from'), field('To', to, 'search-to')),
    h('div', { class: 'form-row' }, h('div', { class: 'field field-action' }, go)),
    error,
  );
  main.append(
    h('div', { class: 'page-head' }, h('h1', null, 'Search recordings'), h('p', { class: 'muted' }, 'What was typed, pasted, the files that crossed and the words on the screen.')),
    form,
    summary,
    list,
  );

  const day = (input: HTMLInputElement, end: boolean): number | undefined => {
    if (!input.value) return undefined;
    const t = Date.parse(`${input.value}T00:00:00Z`);
    return Number.isNaN(t) ? undefined : t + (end ? 86_400_000 : 0);
  };

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showError(error, null);
    if (!q.value.trim()) {
      showError(error, 'Say what to look for.');
      return;
    }
    submitting(go, true);
    try {
      const answer = await searchRecordings({
        q: q.value.trim(),
        kind: kind.value,
        user: user.value.trim(),
        target: target.value.trim(),
        from: day(from, false),
        to: day(to, true),
      });
      if (ctx.signal.aborted) return;
      summary.textContent = `${answer.hits.length} found in ${answer.took_ms.toFixed(0)} ms${answer.indexed !== null ? ` (${answer.indexed} texts indexed)` : ''}.`;
      replace(list, ...(answer.hits.length ? answer.hits.map(hitItem) : [h('li', { class: 'muted' }, 'Nothing found.')]));
    } catch (err) {
      if (!ctx.signal.aborted) showError(error, errorMessage(err));
    } finally {
      submitting(go, false);
    }
  });
}

/** One hit: thumbnail (screen words boxed), who, where, when, what, and the link to the moment. */
function hitItem(hit: SearchHit): HTMLElement {
  const href = playerHash(hit);
  const thumb = h('a', { class: 'search-thumb', href, 'aria-label': 'Open the recording at this moment' });
  if (hit.thumbnail_seq !== null) {
    thumb.append(h('img', { src: thumbnailUrl(hit.recording, hit.thumbnail_seq), alt: '', loading: 'lazy' }));
    if (hit.desktop) {
      const { width, height } = hit.desktop;
      for (const b of hit.boxes) {
        // Placed through the style object (the page's CSP allows no inline style attribute).
        const box = h('span', { class: 'search-box' });
        box.style.left = `${(100 * b.x) / width}%`;
        box.style.top = `${(100 * b.y) / height}%`;
        box.style.width = `${(100 * b.w) / width}%`;
        box.style.height = `${(100 * b.h) / height}%`;
        thumb.append(box);
      }
    }
  }
  const text = h('p', { class: 'search-fragment mono' }, ...splitHighlights(hit.fragment, hit.highlights).map(([part, hl]) => (hl ? h('mark', null, part) : part)));
  const when = new Date(hit.at_ms).toISOString().replace('T', ' ').slice(0, 19);
  return h(
    'li',
    { class: 'search-hit', 'data-hit': hit.recording, 'data-kind': hit.kind },
    thumb,
    h(
      'div',
      { class: 'search-about' },
      h('a', { class: 'search-open', href }, `${hit.user} on ${hit.target}`),
      h('span', { class: 'muted' }, ` · ${when} UTC · ${kindLabel(hit.kind)}${hit.entry ? ` · ${hit.entry === 'rdp' ? 'native RDP' : 'browser'}` : ''}`),
      text,
    ),
  );
}

function kindLabel(kind: SearchHit['kind']): string {
  return { typed: 'typed', screen: 'on screen', clipboard: 'clipboard', file: 'file' }[kind] ?? kind;
}

