// Search hits as the page shows them: the fragment cut into plain and highlighted parts, and the
// player's route to a hit's moment with its boxes.

import type { SearchHit, WordBox } from '../api';

/**
 * `fragment` cut at `ranges` (UTF-8 byte ranges, as the gateway gives them) into
 * [text, highlighted] parts. Ranges out of order, overlapping or out of bounds are left out.
 */
export function splitHighlights(fragment: string, ranges: [number, number][]): [string, boolean][] {
  const bytes = new TextEncoder().encode(fragment);
  const dec = new TextDecoder();
  const parts: [string, boolean][] = [];
  let at = 0;
  for (const [start, end] of ranges) {
    if (!(start >= at && end > start && end <= bytes.length)) continue;
    if (start > at) parts.push([dec.decode(bytes.slice(at, start)), false]);
    parts.push([dec.decode(bytes.slice(start, end)), true]);
    at = end;
  }
  if (at < bytes.length) parts.push([dec.decode(bytes.slice(at)), false]);
  return parts;
}

/** `#/recordings/<id>/at/<ms>[/boxes/x,y,w,h;…]`: the player at a hit's moment. */
export function playerHash(hit: Pick<SearchHit, 'recording' | 't_ms' | 'boxes'>): string {
  const boxes = hit.boxes.slice(0, 20).map((b) => [b.x, b.y, b.w, b.h].map((n) => Math.max(0, Math.round(n))).join(','));
  return `#/recordings/${encodeURIComponent(hit.recording)}/at/${Math.max(0, Math.round(hit.t_ms))}${boxes.length ? `/boxes/${boxes.join(';')}` : ''}`;
}

/** The boxes of a player route (`x,y,w,h;…`), malformed ones left out (at most 20). */
export function parseBoxes(text: string | undefined): Omit<WordBox, 'word'>[] {
  if (!text) return [];
  return text
    .split(';')
    .slice(0, 20)
    .map((b) => b.split(',').map(Number))
    .filter((n) => n.length === 4 && n.every((v) => Number.isFinite(v) && v >= 0 && v < 100_000))
    .map(([x, y, w, h]) => ({ x, y, w, h }));
}
