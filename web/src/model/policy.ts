// Policy page helpers (no DOM): the explain form's actions, labels input, policy text.

/** An action as the gateway's explain call takes it (portcullis-policy `Action`). */
export type PolicyAction =
  | { action: 'open'; entry: 'browser' | 'native' }
  | { action: 'clipboard'; direction: Direction; kind: 'text' | 'files'; bytes: number }
  | { action: 'file_transfer'; direction: Direction }
  | { action: 'printing' }
  | { action: 'audio' };

export type Direction = 'client_to_target' | 'target_to_client';

/** The choices of the explain form's action select, in display order. */
export const ACTION_CHOICES = [
  { value: 'open_browser', label: 'Open in the browser' },
  { value: 'open_native', label: 'Open with a native client' },
  { value: 'clipboard_to_target', label: 'Clipboard to the target' },
  { value: 'clipboard_to_client', label: 'Clipboard to the client' },
  { value: 'file_upload', label: 'File upload' },
  { value: 'file_download', label: 'File download' },
  { value: 'printing', label: 'Printing' },
  { value: 'audio', label: 'Audio' },
] as const;

export type ActionChoice = (typeof ACTION_CHOICES)[number]['value'];

/** Whether a choice takes a size (the clipboard ones). */
export const choiceTakesBytes = (choice: string): boolean => choice === 'clipboard_to_target' || choice === 'clipboard_to_client';

/**
 * The action for a choice of the form. `bytes` (clipboard text size) is the field's text: empty
 * means 0; anything but a whole number ≥ 0 throws with a message for the user.
 */
export function actionFor(choice: string, bytes = ''): PolicyAction {
  switch (choice) {
    case 'open_browser':
      return { action: 'open', entry: 'browser' };
    case 'open_native':
      return { action: 'open', entry: 'native' };
    case 'clipboard_to_target':
    case 'clipboard_to_client': {
      const text = bytes.trim();
      if (text !== '' && !/^\d+$/.test(text)) throw new Error('The size must be a whole number of bytes.');
      const n = text === '' ? 0 : Number(text);
      if (!Number.isSafeInteger(n)) throw new Error('The size is too large.');
      return {
        action: 'clipboard',
        direction: choice === 'clipboard_to_target' ? 'client_to_target' : 'target_to_client',
        kind: 'text',
        bytes: n,
      };
    }
    case 'file_upload':
      return { action: 'file_transfer', direction: 'client_to_target' };
    case 'file_download':
      return { action: 'file_transfer', direction: 'target_to_client' };
    case 'printing':
      return { action: 'printing' };
    case 'audio':
      return { action: 'audio' };
    default:
      throw new Error(`Unknown action ${JSON.stringify(choice)}.`);
  }
}

/** The labels typed in a comma-separated field: trimmed, empty ones dropped, each once. */
export function parseLabels(text: string): string[] {
  const out: string[] = [];
  for (const part of text.split(',')) {
    const label = part.trim();
    if (label !== '' && !out.includes(label)) out.push(label);
  }
  return out;
}

/** The policy document as the page's editor shows it. */
export const formatPolicy = (doc: unknown): string => `${JSON.stringify(doc, null, 2)}\n`;

/** Parses the editor's text; throws a message for the user when it is not a JSON object. */
export function parsePolicyText(text: string): unknown {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new Error(`The policy is not valid JSON: ${detail}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new Error('The policy must be a JSON object with "groups" and "rules".');
  }
  return doc;
}

/** The verdict line of an explanation. */
export function verdictText(ex: { allowed: boolean; rule: string | null }): string {
  if (ex.rule === null) return ex.allowed ? 'Allowed' : 'Denied: no rule matched (deny by default)';
  return `${ex.allowed ? 'Allowed' : 'Denied'} by rule "${ex.rule}"`;
}

/** The number of rules of a policy document (0 when it has none or is not one). */
export function ruleCount(doc: unknown): number {
  if (typeof doc !== 'object' || doc === null) return 0;
  const rules = (doc as { rules?: unknown }).rules;
  return Array.isArray(rules) ? rules.length : 0;
}
