// Pure logic of the targets page: session links and the one-time `.rdp` file's name and note.

/** `#/session/<name>` for a target. */
export const sessionHref = (name: string): string => `#/session/${encodeURIComponent(name)}`;

/**
 * The name the `.rdp` file for a target is saved under: `NAME.rdp`, as the gateway's
 * Content-Disposition says (target names are already safe; anything else becomes `_`).
 */
export function rdpFileName(target: string): string {
  const base = target.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^[.-]+/, '');
  return `${base || 'target'}.rdp`;
}

/** The note shown once an `.rdp` file is downloaded, with the one-time password it needs. */
export const rdpFileNote = (fileName: string, password: string): string =>
  `${fileName} downloaded: open it with your RDP client (mstsc, FreeRDP, Remmina) within a few minutes ` +
  `and give this one-time password when it asks: ${password} — it works once.`;
