// Single sign-on settings as the admin page edits them: group → role mappings typed one per line.

import type { RoleName } from '../api';

export const ROLES: RoleName[] = ['admin', 'reviewer', 'soc', 'user'];

/** `group = role` lines → mappings; a line that is neither empty nor of that shape is an error. */
export function parseMappings(text: string): { group: string; role: RoleName }[] | string {
  const out: { group: string; role: RoleName }[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '') continue;
    const m = /^(.+?)\s*=\s*(admin|reviewer|soc|user)$/.exec(line);
    if (!m) return `line ${i + 1}: write “group = role” (role: ${ROLES.join(', ')})`;
    out.push({ group: m[1], role: m[2] as RoleName });
  }
  return out;
}
