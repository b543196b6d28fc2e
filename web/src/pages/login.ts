import { ApiError, login, type Me } from '../api';
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
      const me = await login(username.value, password.value);
      if (signal.aborted) return;
      done(me);
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

  root.append(
    h(
      'div',
      { class: 'login-page' },
      h(
        'div',
        { class: 'login-card' },
        h('div', { class: 'login-brand' }, h('span', { class: 'wordmark-mark', 'aria-hidden': 'true' }), 'Portcullis'),
        h('p', { class: 'login-subtitle' }, 'Privileged session gateway'),
        form,
      ),
    ),
  );
  username.focus();
}
