// Hash routes: `#/login`, `#/targets`, `#/session/<name>`, `#/admin/<page>`.

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
