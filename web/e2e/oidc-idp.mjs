// An OpenID Connect provider of a test's own (fixtures/oidc-provider.mjs: panva's oidc-provider
// on 127.0.0.1 over plain HTTP, one confidential client, users from a file) and the browser step
// of its sign-in page.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, renameSync, rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { root, freePort } from './harness.mjs';

const script = join(root, 'fixtures/oidc-provider.mjs');

/** How long the provider may take to print its ready line. */
const READY_MS = 30000;

// Providers still running, and the files of those not stopped: killed and removed when the test
// process exits, however it exits.
const running = new Set();
const dirs = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/**
 * Starts the provider with one client. `users` is { name: { groups, email, name } }, written to
 * a file the provider reads at every sign-in: `setUsers(users)` changes it between sign-ins.
 * `tamper({ aud, iss, nonce, exp_offset, sign: 'other-key' | 'none' })` spoils the next ID token
 * the token endpoint gives (`tamper({})` clears it; fixtures/oidc-provider.mjs says what each
 * field does). `restart()` starts it again on the same
 * port: a new signing key (unless `keysFile`) and no sessions. `stop()` ends it.
 * Returns { issuer, port, setUsers, tamper, restart, stop, log }.
 */
export async function startIdp({ clientId, clientSecret, redirectUris, postLogoutRedirectUris = [], users, keysFile }) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'pc-idp-'));
  dirs.add(dir);
  const usersFile = join(dir, 'users.json');
  const setUsers = (next) => {
    // Written aside then renamed: the provider never reads half a file.
    writeFileSync(`${usersFile}.part`, JSON.stringify(next));
    renameSync(`${usersFile}.part`, usersFile);
  };
  setUsers(users);
  const args = [script, '--port', String(port), '--client-id', clientId, '--client-secret', clientSecret,
    ...redirectUris.flatMap((uri) => ['--redirect-uri', uri]),
    ...postLogoutRedirectUris.flatMap((uri) => ['--post-logout-redirect-uri', uri]),
    '--users', usersFile, ...(keysFile ? ['--keys', keysFile] : [])];
  const logs = [];
  let child = null;
  let issuer = null;

  const launch = () => new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(proc);
    proc.stderr.on('data', (d) => logs.push(d.toString()));
    const fail = (why) => {
      clearTimeout(timer);
      reject(new Error(`the OpenID provider ${why}\nits log:\n${logs.join('')}`));
    };
    const timer = setTimeout(() => { proc.kill('SIGKILL'); fail(`printed no ready line in ${READY_MS} ms`); }, READY_MS);
    proc.once('exit', (code, signal) => {
      running.delete(proc);
      fail(`exited (${code ?? signal}) before it was ready`);
    });
    createInterface({ input: proc.stdout }).on('line', (line) => {
      const ready = /^oidc-provider ready (\S+)$/.exec(line);
      if (!ready) return;
      clearTimeout(timer);
      proc.removeAllListeners('exit');
      proc.once('exit', () => running.delete(proc));
      child = proc;
      issuer = ready[1];
      resolve();
    });
  });

  const end = async () => {
    const proc = child;
    child = null;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(timer);
  };

  try {
    await launch();
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    dirs.delete(dir);
    throw e;
  }
  return {
    get issuer() { return issuer; },
    port,
    setUsers,
    async tamper(mode) {
      const r = await fetch(`${issuer}/__test/tamper`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(mode),
      });
      const text = await r.text();
      if (r.status !== 200) throw new Error(`the OpenID provider refused tamper ${JSON.stringify(mode)}: ${r.status} ${text}`);
      return text;
    },
    async restart() {
      await end();
      await launch();
    },
    async stop() {
      await end();
      rmSync(dir, { recursive: true, force: true });
      dirs.delete(dir);
    },
    log: () => logs.join(''),
  };
}

/**
 * On `page`, at the provider's sign-in form, signs in as `user` (any password does) and resolves
 * once the browser left the form, at the next page it shows: the relying party's redirect URI (or
 * wherever that sent it), or, when the provider's session belonged to another user, the page
 * that signs that one out first on the way there.
 */
export async function idpLogin(page, user) {
  const login = page.locator('input[name="login"]');
  await login.waitFor({ timeout: 10000 });
  await login.fill(user);
  await page.fill('input[name="password"]', 'x');
  const form = page.url();
  await Promise.all([
    page.waitForURL((url) => url.href !== form, { waitUntil: 'commit', timeout: 10000 }),
    page.click('button[type="submit"]'),
  ]);
}

/**
 * Without a browser: follows the provider's sign-in from `authUrl` (the gateway's redirect) as
 * `user` and returns the address the provider sends the browser back to (the relying party's
 * redirect URI with `code` and `state`), without going there. A sign-in an attacker makes in
 * their own user agent, to plant the return in someone else's browser.
 */
export async function idpReturnUrl(authUrl, user) {
  const jar = new Map();
  const go = async (url, init = {}) => {
    const res = await fetch(url, {
      redirect: 'manual',
      ...init,
      headers: { ...(init.headers ?? {}), cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') },
    });
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const i = pair.indexOf('=');
      jar.set(pair.slice(0, i).trim(), pair.slice(i + 1));
    }
    return res;
  };
  const issuer = new URL(authUrl).origin;
  let res = await go(authUrl);
  for (let hops = 0; hops < 10; hops++) {
    const loc = res.headers.get('location');
    if (loc && !new URL(loc, issuer).href.startsWith(issuer)) return new URL(loc, issuer).href;
    if (loc) {
      res = await go(new URL(loc, issuer).href);
      continue;
    }
    const html = await res.text();
    const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
    if (res.status !== 200 || !action) throw new Error(`the provider answered ${res.status}: ${html.slice(0, 300)}`);
    res = await go(new URL(action, issuer).href, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ prompt: 'login', login: user, password: 'x' }),
    });
  }
  throw new Error('the provider never sent the browser back');
}
