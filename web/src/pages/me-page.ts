// `#/me`: the own account page: two-factor (TOTP) enrolment with its QR code and confirmation,
// and passkeys (register, list, remove).

import {
  addPasskey,
  ApiError,
  confirmMfa,
  enrolMfa,
  getMe,
  listPasskeys,
  newRecoveryCodes,
  passkeyOptions,
  passkeyProofOptions,
  removePasskey,
  type MfaEnrolment,
  type PasskeyInfo,
  type SecondFactorProof,
} from '../api';
import { assertionJson, creationOptions, registrationJson, requestOptions } from '../model/webauthn';
import type { PageContext } from '../context';
import { h, replace, showError } from '../dom';
import { shell } from '../layout';
import { landingHash } from '../model/router';
import { errorMessage } from './util';

/**
 * The QR code of an enrolment as an <img> from a blob: URL of the gateway's SVG. An SVG in an
 * <img> runs no script and loads nothing, and no server text becomes markup in the page.
 */
function qrImage(svg: string, signal: AbortSignal): HTMLImageElement {
  const url = URL.createObjectURL(new Blob([svg], { type: 'image/svg+xml' }));
  signal.addEventListener('abort', () => URL.revokeObjectURL(url));
  return h('img', { id: 'mfa-qr', class: 'mfa-qr', src: url, alt: 'QR code to scan with an authenticator app', width: 200, height: 200 });
}

/**
 * A form asking for a code from the app (`inputId`, `buttonId`): 6 digits are handed to `use`;
 * its failure is shown in `error` and the field cleared.
 */
function appCodeForm(
  ids: { input: string; button: string },
  buttonText: string,
  buttonClass: string,
  error: HTMLElement,
  signal: AbortSignal,
  use: (code: string) => Promise<void>,
): { form: HTMLFormElement; input: HTMLInputElement } {
  const input = h('input', { id: ids.input, type: 'text', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 6, pattern: '[0-9]{6}', required: true });
  const submit = h('button', { id: ids.button, type: 'submit', class: buttonClass }, buttonText);
  const form = h('form', { class: 'create-form', novalidate: true }, h('label', { for: ids.input }, 'Code from the app'), input, submit, error);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    showError(error, null);
    const value = input.value.trim();
    if (!/^[0-9]{6}$/.test(value)) {
      showError(error, 'Enter the 6 digits your app shows.');
      return;
    }
    submit.disabled = true;
    try {
      await use(value);
    } catch (err) {
      if (signal.aborted) return;
      showError(error, errorMessage(err));
      input.value = '';
      input.focus();
    } finally {
      submit.disabled = false;
    }
  });
  return { form, input };
}

/** `#/me`: the user's own account: two-factor authentication (TOTP) set-up. */
export async function renderMe(ctx: PageContext, onChange: () => void): Promise<void> {
  const main = shell(ctx.root, ctx.me, 'me');
  const section = h('section', { id: 'mfa-section', class: 'card' });
  main.append(
    h('div', { class: 'page-head' }, h('h1', null, 'Your account'), h('p', { class: 'muted' }, `${ctx.me.name} · ${ctx.me.role}`)),
    section,
  );
  const status = h('p', { id: 'mfa-status' });
  const error = h('div', { id: 'mfa-error', class: 'form-error', role: 'alert', hidden: true });

  /** Recovery codes, shown this once. */
  const codesList = (codes: string[]) => h(
    'div',
    { id: 'mfa-recovery', class: 'notice' },
    h('p', null, 'Recovery codes: keep them somewhere safe. Each one works once instead of a code from your app (a lost phone). They are not shown again.'),
    h('ul', { id: 'mfa-recovery-codes', class: 'mfa-recovery-codes' }, ...codes.map((c) => h('li', null, h('code', null, c)))),
  );

  const showOn = (codes?: string[]) => {
    const { form: renewForm } = appCodeForm({ input: 'mfa-renew-code', button: 'mfa-renew' }, 'New recovery codes', 'btn', error, ctx.signal, async (value) => {
      const answer = await newRecoveryCodes(value);
      if (ctx.signal.aborted) return;
      showOn(answer.recovery_codes);
    });
    replace(
      section,
      h('h2', null, 'Two-factor authentication'),
      status,
      ...(codes ? [codesList(codes)] : []),
      h('p', { class: 'muted' }, 'Lost your phone? Sign in with a recovery code, or an administrator resets it and you set it up again.'),
      renewForm,
    );
    status.textContent = 'Two-factor authentication is on: sign-ins ask for a code from your app.';
    status.dataset.mfa = 'on';
  };

  const showEnrolment = (e: MfaEnrolment) => {
    const { form, input: code } = appCodeForm({ input: 'mfa-code', button: 'mfa-confirm' }, 'Turn on', 'btn btn-primary', error, ctx.signal, async (value) => {
      const answer = await confirmMfa(value, await passkeyProof());
      if (ctx.signal.aborted) return;
      ctx.me.mfa = true;
      ctx.me.mfa_enrol_required = false;
      showOn(answer.recovery_codes);
      main.append(h('p', null, h('a', { id: 'mfa-continue', class: 'btn btn-primary', href: landingHash(ctx.me) }, 'Continue')));
      onChange();
    });
    replace(
      section,
      h('h2', null, 'Two-factor authentication'),
      h('p', null, 'Scan this code with an authenticator app (or type the key), then enter the code it shows.'),
      qrImage(e.qr_svg, ctx.signal),
      h('p', null, 'Key: ', h('code', { id: 'mfa-secret', class: 'mfa-secret' }, e.secret)),
      form,
    );
    code.focus();
  };

  const showOff = () => {
    const start = h('button', { id: 'mfa-enrol', type: 'button', class: 'btn btn-primary' }, 'Set up two-factor authentication');
    start.addEventListener('click', async () => {
      start.disabled = true;
      showError(error, null);
      try {
        const e = await enrolMfa();
        if (ctx.signal.aborted) return;
        showEnrolment(e);
      } catch (err) {
        if (ctx.signal.aborted) return;
        showError(error, errorMessage(err));
      } finally {
        start.disabled = false;
      }
    });
    status.dataset.mfa = 'off';
    status.textContent = ctx.me.mfa_enrol_required
      ? 'Your role requires two-factor authentication. Set it up to use the gateway.'
      : 'Two-factor authentication is off.';
    replace(section, h('h2', null, 'Two-factor authentication'), status, start, error);
  };

  try {
    const me = await getMe();
    if (ctx.signal.aborted) return;
    Object.assign(ctx.me, me);
  } catch (err) {
    if (ctx.signal.aborted || (err instanceof ApiError && err.status === 401)) return;
    showError(error, errorMessage(err));
  }
  if (ctx.me.totp ?? ctx.me.mfa) showOn();
  else showOff();
  await renderPasskeys(ctx, main, onChange);
}

/** An assertion of one of the account's passkeys (a proof before changing its factors), or nothing when it has none. */
async function passkeyProof(): Promise<SecondFactorProof | undefined> {
  const { passkeys } = await listPasskeys();
  if (!passkeys.length) return undefined;
  const options = await passkeyProofOptions();
  const credential = (await navigator.credentials.get(requestOptions(options))) as PublicKeyCredential | null;
  if (!credential) throw new Error('no passkey was used');
  return { credential: assertionJson(credential) };
}

/** The passkeys card: the account's passkeys, and adding one through the browser. */
async function renderPasskeys(ctx: PageContext, main: HTMLElement, onChange: () => void): Promise<void> {
  const section = h('section', { id: 'passkey-section', class: 'card' });
  const error = h('div', { id: 'passkey-error', class: 'form-error', role: 'alert', hidden: true });
  const list = h('ul', { id: 'passkey-list', class: 'passkey-list' });
  const name = h('input', { id: 'passkey-name', type: 'text', maxlength: 64, placeholder: 'e.g. YubiKey, laptop', value: 'passkey' });
  const add = h('button', { id: 'passkey-add', type: 'button', class: 'btn' }, 'Add a passkey');
  const note = h('p', { id: 'passkey-status', class: 'muted' }, '');
  const proofCode = h('input', { id: 'passkey-proof-code', type: 'text', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 32, placeholder: 'code from your app' });
  const proofRow = h('div', { class: 'form-row', hidden: true }, h('label', { for: 'passkey-proof-code' }, 'To add or remove a passkey, confirm with a code from your app (with a passkey at hand, leave it empty): '), proofCode);
  let current: PasskeyInfo[] = [];
  main.append(section);
  // Changing passkeys asks for a second factor the user has (a stolen login cannot): one of
  // their passkeys if they have one, else a code from their app; nothing for a first factor.
  const proof = async (): Promise<SecondFactorProof | undefined> => {
    if (ctx.me.mfa_enrol_required && !current.length) return undefined;
    // A code typed in wins (a user who lost their key); else one of their passkeys.
    const code = proofCode.value.trim();
    if (ctx.me.totp && code) {
      proofCode.value = '';
      return { code };
    }
    if (current.length) return passkeyProof();
    if (ctx.me.totp) throw new Error('Enter a code from your app to confirm.');
    return undefined;
  };
  const load = async () => {
    const { passkeys, required_by_role, available } = await listPasskeys();
    if (ctx.signal.aborted) return;
    current = passkeys;
    proofRow.hidden = !ctx.me.totp || (ctx.me.mfa_enrol_required === true && !passkeys.length);
    replace(
      list,
      ...passkeys.map((p) => {
        const remove = h('button', { type: 'button', class: 'btn btn-small btn-danger', 'data-remove-passkey': p.name }, 'Remove');
        remove.addEventListener('click', async () => {
          showError(error, null);
          try {
            await removePasskey(p.id, await proof());
            await load();
          } catch (err) {
            if (!ctx.signal.aborted) showError(error, errorMessage(err));
          }
        });
        return h('li', { 'data-passkey': p.name }, h('span', null, p.name), ' ', remove);
      }),
    );
    note.textContent = !available
      ? 'Passkeys are not available: an administrator sets the gateway’s public URL first (Admin › Sign-on).'
      : required_by_role
        ? 'Your role requires a passkey: sign-ins ask for it (a code from an app does not do).'
        : passkeys.length
          ? 'Sign-ins can use a passkey instead of a code from your app.'
          : 'No passkey yet.';
    add.disabled = !available;
  };
  add.addEventListener('click', async () => {
    showError(error, null);
    add.disabled = true;
    try {
      const shown = await proof();
      const options = await passkeyOptions();
      const credential = (await navigator.credentials.create(creationOptions(options))) as PublicKeyCredential | null;
      if (!credential) throw new Error('no passkey was made');
      await addPasskey(name.value.trim() || 'passkey', registrationJson(credential), shown);
      if (ctx.signal.aborted) return;
      if (ctx.me.mfa_enrol_required) {
        // The login was enrol-only: a full one now.
        ctx.me.mfa_enrol_required = false;
        ctx.me.mfa = true;
        main.append(h('p', null, h('a', { id: 'passkey-continue', class: 'btn btn-primary', href: landingHash(ctx.me) }, 'Continue')));
        onChange();
      }
      await load();
    } catch (err) {
      if (ctx.signal.aborted) return;
      showError(error, err instanceof DOMException && err.name === 'NotAllowedError' ? 'The passkey was not made (cancelled or timed out).' : errorMessage(err));
    } finally {
      add.disabled = false;
    }
  });
  replace(section, h('h2', null, 'Passkeys'), note, list, proofRow, h('div', { class: 'form-row' }, name, add), error);
  try {
    await load();
  } catch (err) {
    if (!ctx.signal.aborted) showError(error, errorMessage(err));
  }
}
