// `#/login`: the sign-in form, with the second step (TOTP code) when the account has two-factor on,
// and a button per identity provider (single sign-on).

import { ApiError, login, loginCode, passkeyLogin, passkeyLoginOptions, ssoProviders, ssoStartUrl, type Me } from '../api';
import { assertionJson, requestOptions } from '../model/webauthn';
import { h, showError } from '../dom';

/** `#/login`: the sign-in form. Calls `done` with the user on success. */
export function renderLogin(root: HTMLElement, signal: AbortSignal, done: (me: Me) => void): void {
  const username = h('input', {
    id: 'login-username',
    name: 'username',
    type: 'text',
    autocomplete: 'username',
    autocapitalize: 'none',
    spellcheck: 'false',
    required: true,
  });
  const password = h('input', {
    id: 'login-password',
    name: 'password',
    type: 'password',
    autocomplete: 'current-password',
    required: true,
  });
  const submit = h('button', { id: 'login-submit', type: 'submit', class: 'btn btn-primary btn-block' }, 'Sign in');
  const error = h('div', { id: 'login-error', class: 'form-error', role: 'alert', hidden: true });

  const form = h(
    'form',
    { class: 'login-form', novalidate: true },
    h('label', { for: 'login-username' }, 'Username'),
    username,
    h('label', { for: 'login-password' }, 'Password'),
    password,
    error,
    submit,
  );

  // The second step, when two-factor authentication is on: the code from the app.
  const code = h('input', {
    id: 'login-mfa-code',
    name: 'code',
    type: 'text',
    autocomplete: 'one-time-code',
    maxlength: 24,
    required: true,
  });
  const codeSubmit = h('button', { id: 'login-mfa-submit', type: 'submit', class: 'btn btn-primary btn-block' }, 'Verify');
  const codeError = h('div', { id: 'login-mfa-error', class: 'form-error', role: 'alert', hidden: true });
  // Or a passkey (security key, platform authenticator): phishing-resistant.
  const passkeyButton = h('button', { id: 'login-passkey', type: 'button', class: 'btn btn-block' }, 'Use a passkey');
  const codeForm = h(
    'form',
    { id: 'login-mfa-form', class: 'login-form', novalidate: true, hidden: true },
    h('p', { class: 'muted' }, 'Use your passkey, or enter the 6-digit code from your authenticator app or one of your recovery codes.'),
    passkeyButton,
    h('label', { for: 'login-mfa-code' }, 'Code'),
    code,
    codeError,
    codeSubmit,
  );
  passkeyButton.addEventListener('click', async () => {
    showError(codeError, null);
    passkeyButton.disabled = true;
    try {
      const options = await passkeyLoginOptions();
      const credential = (await navigator.credentials.get(requestOptions(options))) as PublicKeyCredential | null;
      if (!credential) throw new Error('no passkey was used');
      const me = await passkeyLogin(assertionJson(credential));
      if (signal.aborted) return;
      done(me);
    } catch (err) {
      if (signal.aborted) return;
      showError(
        codeError,
        err instanceof ApiError ? err.message : err instanceof DOMException && err.name === 'NotAllowedError' ? 'The passkey was not used (cancelled or timed out).' : 'The passkey sign-in failed.',
      );
    } finally {
      passkeyButton.disabled = false;
    }
  });
  codeForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    showError(codeError, null);
    const value = code.value.trim();
    if (!/^[0-9]{6}$/.test(value) && !/^[a-zA-Z0-9 -]{16,24}$/.test(value)) {
      showError(codeError, 'Enter the 6 digits your app shows, or a recovery code.');
      return;
    }
    codeSubmit.disabled = true;
    try {
      const me = await loginCode(value);
      if (signal.aborted) return;
      done(me);
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && err.status === 401 && /expired|not logged in/i.test(err.message)) {
        // The pending login is gone (2 minutes, or too many wrong codes): start again.
        codeForm.hidden = true;
        form.hidden = false;
        password.value = '';
        showError(error, 'The sign-in expired. Enter your password again.');
        password.focus();
        return;
      }
      showError(codeError, err instanceof ApiError ? err.message : 'Verification failed.');
      code.value = '';
      code.focus();
    } finally {
      codeSubmit.disabled = false;
    }
  });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showError(error, null);
    if (username.value === '' || password.value === '') {
      showError(error, 'Enter your username and password.');
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    try {
      const answer = await login(username.value, password.value);
      if (signal.aborted) return;
      if ('mfa_required' in answer && answer.mfa_required) {
        form.hidden = true;
        codeForm.hidden = false;
        code.focus();
        return;
      }
      done(answer as Me);
    } catch (err) {
      if (signal.aborted) return;
      const msg =
        err instanceof ApiError
          ? err.status === 401
            ? err.message || 'Wrong username or password.'
            : err.message
          : 'Sign-in failed.';
      showError(error, msg);
      password.value = '';
      password.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = 'Sign in';
    }
  });

  // Single sign-on: one button per provider (a navigation to the provider and back).
  const sso = h('div', { id: 'login-sso', class: 'login-sso', hidden: true });
  void ssoProviders()
    .then(({ providers }) => {
      if (signal.aborted || providers.length === 0 || !codeForm.hidden) return;
      sso.replaceChildren(
        ...providers.map((p) =>
          h('a', { id: `login-sso-${p.id}`, class: 'btn btn-block', href: ssoStartUrl(p.id) }, `Sign in with ${p.display_name}`),
        ),
        h('p', { class: 'login-or muted' }, 'or with a local account'),
      );
      sso.hidden = false;
    })
    .catch(() => {
      // No providers shown: the password form still works.
    });

  root.append(
    h(
      'div',
      { class: 'login-page' },
      h(
        'div',
        { class: 'login-card' },
        h('div', { class: 'login-brand' }, h('span', { class: 'wordmark-mark', 'aria-hidden': 'true' }), 'Portcullis'),
        h('p', { class: 'login-subtitle' }, 'Privileged session gateway'),
        sso,
        form,
        codeForm,
      ),
    ),
  );
  // Back from a single sign-on whose account has two-factor on: the code step at once.
  if (new URLSearchParams(location.search).get('second_factor') === '1') {
    history.replaceState(null, '', `/${location.hash}`);
    form.hidden = true;
    sso.hidden = true;
    codeForm.hidden = false;
    code.focus();
    return;
  }
  username.focus();
}
