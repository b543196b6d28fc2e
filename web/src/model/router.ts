// Hash routes: `#/login`, `#/targets`, `#/session/<name>`, `#/recordings`, `#/recordings/<id>`,
// `#/admin/<page>`, `#/soc`, `#/watch/<session id>`, `#/me` (own account, two-factor set-up).

/**
 * Where a user lands after login (and on an unknown route): reviewers on the recordings, the
 * security team on its console.
 */
export function landingHash(me: { role: string }): string {
  if (me.role === 'reviewer') return '#/recordings';
  if (me.role === 'soc') return '#/soc';
  return '#/targets';
}

/** Splits `#/a/b%2Fc` into decoded segments ['a', 'b/c']. */
export function routeParts(hash: string): string[] {
  const path = hash.replace(/^#\/?/, '');
  return path
    .split('/')
    .filter((s) => s !== '')
    .map((s) => {
      try {
        return decodeURIComponent(s);
      } catch {
        return s;
      }
    });
}
