// Test harness: starts real peers (Xvfb + x11vnc desktops from fixtures/, the gateway binary,
// headless Chromium) and offers small helpers. Everything listens on loopback only.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync, existsSync, chmodSync, readdirSync, statSync } from 'node:fs';
import { randomBytes, createHmac } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import assert from 'node:assert/strict';
import https from 'node:https';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const root = resolve(here, '../..');
export const bin = process.env.PORTCULLIS_BIN || join(root, 'target/debug/portcullis');

// The gateway's certificate is self-signed; the tests talk to it on loopback only.
const agent = new https.Agent({ rejectUnauthorized: false });

// Ports handed out by this process: the kernel may give a port closed a moment ago to the next
// probe, so two calls before either listener starts (a gateway's HTTP and RDP ports, a test's own
// port beside a gateway's) could otherwise get the same one — seen once in a fresh-clone CI.
const handedOut = new Set();

function probePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
    s.on('error', rej);
  });
}

/** A loopback port free now and never handed out before by this process. */
export async function freePort() {
  for (;;) {
    const port = await probePort();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

export async function waitForPort(port, ms = 30000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await new Promise((res) => {
      const c = net.connect(port, '127.0.0.1');
      c.on('connect', () => { c.destroy(); res(true); });
      c.on('error', () => res(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`nothing listens on ${port} after ${ms} ms`);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let nextDisplay = 60 + (process.pid % 200);

/** Starts a VNC desktop with an xterm: Xvfb + x11vnc, or TigerVNC's Xvnc (server = 'xvnc'). */
export async function startDesktop(password, geometry = '1280x800', server = 'x11vnc') {
  const script = join(root, server === 'xvnc' ? 'fixtures/xvnc-desktop.sh' : 'fixtures/vnc-desktop.sh');
  // Skip displays another X server (or a stale lock) holds.
  while (existsSync(`/tmp/.X${nextDisplay}-lock`) || existsSync(`/tmp/.X11-unix/X${nextDisplay}`)) nextDisplay++;
  const display = nextDisplay++;
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'pc-desk-'));
  execFileSync(script, [String(display), String(port), password, dir, geometry], {
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 60000,
  });
  return {
    display: `:${display}`,
    port,
    address: `127.0.0.1:${port}`,
    dir,
    stop() {
      try { execFileSync(script, ['stop', dir]); } catch { /* already gone */ }
      rmSync(dir, { recursive: true, force: true });
    },
    /** The display as PNG bytes, straight from the X server. */
    screenshot() {
      return execFileSync('import', ['-display', `:${display}`, '-window', 'root', 'png:-'], { maxBuffer: 64 << 20 });
    },
    /** Sets (text given) or reads the CLIPBOARD selection of the display with xclip. */
    clipboard(text, selection = 'clipboard') {
      const env = { ...process.env, DISPLAY: `:${display}` };
      if (text === undefined) {
        return execFileSync('xclip', ['-selection', selection, '-o'], { env, timeout: 5000 }).toString();
      }
      // xclip keeps serving the selection from a background process until another owner takes it.
      const child = spawn('xclip', ['-selection', selection, '-i'], { env, stdio: ['pipe', 'ignore', 'ignore'], detached: true });
      child.stdin.end(text);
      child.unref();
      return undefined;
    },
    xdotool(...args) {
      return execFileSync('xdotool', args, { env: { ...process.env, DISPLAY: `:${display}` } }).toString();
    },
  };
}

/**
 * Starts the gateway with a fresh data directory, or on `dir` left by an earlier one (a restart).
 * `extraConfig` is appended to the TOML file; `topConfig` goes before its first table; `binary`
 * is another gateway build (a benchmark's baseline).
 */
export async function startGateway({ adminPassword = 'admin-password-e2e', dir: reuse, extraConfig = '', topConfig = '', binary = bin, env = {} } = {}) {
  const port = await freePort();
  // Every gateway gets its own RDP listener port (3389 is the default, and tests run several).
  const rdpPort = await freePort();
  const rdp = extraConfig.includes('[rdp]') ? '' : `[rdp]\nlisten = "127.0.0.1:${rdpPort}"\n`;
  // Reading every recorded screen for search (on by default) is left to the tests of it: the
  // others' gateways spend no CPU on it on the shared 2-core machine ([ocr] given: as given).
  const ocr = extraConfig.includes('[ocr]') ? '' : '[ocr]\nrecordings = false\n';
  const dir = reuse ?? mkdtempSync(join(tmpdir(), 'pc-gw-'));
  const config = join(dir, 'portcullis.toml');
  writeFileSync(config, `data_dir = "${dir}/data"\n${topConfig}[http]\nlisten = "127.0.0.1:${port}"\n[targets]\nconnect_timeout_secs = 3\nhandshake_timeout_secs = 5\n${rdp}${ocr}${extraConfig}`);
  const logs = [];
  const proc = spawn(binary, ['--config', config, 'serve'], {
    env: { ...process.env, PORTCULLIS_ADMIN_PASSWORD: adminPassword, RUST_LOG: 'info', NO_COLOR: '1', RUST_BACKTRACE: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout.on('data', (d) => logs.push(d.toString()));
  proc.stderr.on('data', (d) => logs.push(d.toString()));
  let exited = null;
  proc.on('exit', (code) => { exited = code; });
  await waitForPort(port, 60000).catch((e) => {
    throw new Error(`${e.message}\ngateway log:\n${logs.join('')}`);
  });
  const base = `https://127.0.0.1:${port}`;
  return {
    port,
    rdpPort,
    base,
    dir,
    logs,
    get exited() { return exited; },
    log: () => logs.join(''),
    /** Stops it (SIGINT, then SIGKILL); `keep` leaves the data directory for a restart. */
    async stop({ keep = false } = {}) {
      if (exited === null) {
        proc.kill('SIGINT');
        await new Promise((r) => { proc.once('exit', r); setTimeout(r, 5000); });
        if (exited === null) proc.kill('SIGKILL');
      }
      if (!keep) rmSync(dir, { recursive: true, force: true });
    },
    /** Sends `sig` (e.g. SIGTERM) and resolves once it exited: { code, signal, ms since sent }. */
    signal(sig) {
      const sent = Date.now();
      const gone = exited !== null ? Promise.resolve() : new Promise((r) => proc.once('exit', r));
      proc.kill(sig);
      return gone.then(() => ({ code: exited, signal: proc.signalCode, ms: Date.now() - sent }));
    },
    /** kill -9, as a crash; the data directory stays. */
    async kill() {
      if (exited === null) {
        const gone = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGKILL');
        await gone;
      }
    },
    /** Runs the gateway binary's command line on this gateway's configuration. */
    cli(args, { input } = {}) {
      // With the gateway's own environment (its secret key, say).
      return spawnSync(bin, ['--config', config, ...args], { input, encoding: 'utf8', timeout: 60000, env: { ...process.env, ...env } });
    },
    api: (cookie) => apiClient(base, cookie),
  };
}

/** Raw HTTPS request (the gateway's certificate is self-signed). */
export function request(base, method, path, { body, headers = {} } = {}) {
  return new Promise((res, rej) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request(base + path, {
      method,
      agent,
      headers: {
        ...(data !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}),
        ...headers,
      },
    }, (r) => {
      const chunks = [];
      r.on('data', (c) => chunks.push(c));
      r.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        res({ status: r.statusCode, headers: r.headers, text, json, body: Buffer.concat(chunks) });
      });
    });
    req.on('error', rej);
    req.on('upgrade', (r, socket) => { socket.destroy(); res({ status: r.statusCode, headers: r.headers, text: '' }); });
    if (data !== undefined) req.write(data);
    req.end();
  });
}

export function apiClient(base, cookie) {
  const headers = () => ({ ...(cookie ? { cookie } : {}), 'x-portcullis-csrf': '1' });
  return {
    get cookie() { return cookie; },
    async login(username, password) {
      const r = await request(base, 'POST', '/api/v1/auth/login', { body: { username, password }, headers: headers() });
      if (r.status === 200) cookie = r.headers['set-cookie'][0].split(';')[0];
      return r;
    },
    get: (p) => request(base, 'GET', '/api/v1' + p, { headers: headers() }),
    post: (p, body) => request(base, 'POST', '/api/v1' + p, { body, headers: headers() }),
    put: (p, body) => request(base, 'PUT', '/api/v1' + p, { body, headers: headers() }),
    del: (p, body) => request(base, 'DELETE', '/api/v1' + p, { body, headers: headers() }),
  };
}

/** Tries a WebSocket upgrade without a browser and returns the HTTP status. */
export function tryUpgrade(base, path, headers = {}) {
  return new Promise((res, rej) => {
    const req = https.request(base + path, {
      agent,
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        origin: base,
        ...headers,
      },
    });
    req.on('upgrade', (r, socket) => { socket.destroy(); res(r.statusCode); });
    req.on('response', (r) => { r.resume(); res(r.statusCode); });
    req.on('error', rej);
    req.end();
  });
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** Logs in through the login page. */
export async function uiLogin(page, base, user, password) {
  await page.goto(base + '/#/login');
  await page.fill('#login-username', user);
  await page.fill('#login-password', password);
  await page.click('#login-submit');
}

/** Once a session's page is opening: waits for its first picture, clicks into it and types
 * `lines` (each followed by Enter); the session's id. */
export async function typeInSession(page, lines) {
  await page.waitForFunction(() => window.__portcullis?.sessionId && window.__portcullis.framesPainted >= 1, null, { timeout: 20000 });
  const id = await page.evaluate(() => window.__portcullis.sessionId);
  await page.click('#session-canvas', { position: { x: 300, y: 200 } });
  for (const line of lines) {
    await page.keyboard.type(line);
    await page.keyboard.press('Enter');
  }
  return id;
}

/** Logs in through the UI and opens `target` from the targets list (does not wait for frames). */
export async function openTarget(page, base, user, password, target) {
  await uiLogin(page, base, user, password);
  await page.waitForSelector(`[data-target="${target}"]`, { timeout: 10000 });
  await page.click(`[data-target="${target}"]`);
}

/** Compares the session canvas against a PNG of the target's display, in the browser. */
export async function compareCanvasWith(page, png, region) {
  return page.evaluate(async ({ b64, region }) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const bmp = await createImageBitmap(new Blob([bytes], { type: 'image/png' }));
    const ref = new OffscreenCanvas(bmp.width, bmp.height).getContext('2d');
    ref.drawImage(bmp, 0, 0);
    const canvas = document.querySelector('#session-canvas');
    const live = canvas.getContext('2d');
    const { x, y, w, h } = region;
    const a = ref.getImageData(x, y, w, h).data;
    const b = live.getImageData(x, y, w, h).data;
    let differing = 0;
    /** Bounding box [x0, y0, x1, y1] of the differing pixels (region coordinates), null if none. */
    let box = null;
    for (let i = 0; i < a.length; i += 4) {
      const d = Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]);
      if (d > 24) {
        differing++;
        const px = (i / 4) % w;
        const py = Math.floor(i / 4 / w);
        box = box ? [Math.min(box[0], px), Math.min(box[1], py), Math.max(box[2], px), Math.max(box[3], py)] : [px, py, px, py];
      }
    }
    return { differing, total: w * h, box, canvas: [canvas.width, canvas.height], ref: [bmp.width, bmp.height] };
  }, { b64: Buffer.from(png).toString('base64'), region });
}

// --- RDP peers: xrdp (TLS, no NLA), freerdp-shadow (NLA) and the native xfreerdp client. ---

function freeDisplay() {
  while (existsSync(`/tmp/.X${nextDisplay}-lock`) || existsSync(`/tmp/.X11-unix/X${nextDisplay}`)) nextDisplay++;
  return nextDisplay++;
}

/** `import -window root` of an X display into a PNG file; returns the path. */
function importRoot(display, path, env = {}) {
  execFileSync('import', ['-display', display, '-window', 'root', path], { env: { ...process.env, ...env }, timeout: 15000 });
  return path;
}

function runFixture(script, args) {
  return execFileSync(join(root, 'fixtures', script), args, { stdio: ['ignore', 'pipe', 'inherit'], timeout: 60000 }).toString();
}

/**
 * Starts an xrdp 0.9 target (TLS security, no NLA) for a local Linux user, created if missing.
 * Only one at a time: xrdp-sesman owns port 3350. The user's X session (xterm on '#204060') starts
 * when a client logs in; `display()` is null until then.
 */
export async function startXrdpDesktop({ port, user = 'pcrdp', password = 'rdp-password-e2e' } = {}) {
  port ??= await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'pc-xrdp-'));
  runFixture('xrdp-desktop.sh', [String(port), user, password, dir]);
  const home = readFileSync(join(dir, 'home'), 'utf8').trim();
  const env = { XAUTHORITY: join(home, '.Xauthority') };
  let shots = 0;
  const display = () => {
    try { return readFileSync(join(home, '.portcullis/display'), 'utf8').trim() || null; } catch { return null; }
  };
  return {
    port,
    address: `127.0.0.1:${port}`,
    user,
    password,
    dir,
    display,
    stop() {
      try { runFixture('xrdp-desktop.sh', ['stop', dir]); } catch { /* already gone */ }
      rmSync(dir, { recursive: true, force: true });
    },
    /** PNG of the user's session display (throws before a login); returns the path. */
    screenshot(path = join(dir, `shot-${++shots}.png`)) {
      const d = display();
      if (!d) throw new Error(`no xrdp session for ${user} yet`);
      return importRoot(d, path, env);
    },
    xdotool(...args) {
      return execFileSync('xdotool', args, { env: { ...process.env, ...env, DISPLAY: display() } }).toString();
    },
  };
}

/** Starts an NLA-only RDP target: freerdp-shadow-cli serving an Xvfb display with an xterm. */
export async function startShadowDesktop({ display, port, user = 'pcnla', password = 'nla-password-e2e', geometry = '1280x800' } = {}) {
  display ??= freeDisplay();
  port ??= await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'pc-shadow-'));
  runFixture('rdp-shadow-desktop.sh', [String(display), String(port), user, password, dir, geometry]);
  let shots = 0;
  return {
    display: `:${display}`,
    port,
    address: `127.0.0.1:${port}`,
    user,
    password,
    dir,
    stop() {
      try { runFixture('rdp-shadow-desktop.sh', ['stop', dir]); } catch { /* already gone */ }
      rmSync(dir, { recursive: true, force: true });
    },
    screenshot: (path = join(dir, `shot-${++shots}.png`)) => importRoot(`:${display}`, path),
    xdotool(...args) {
      return execFileSync('xdotool', args, { env: { ...process.env, DISPLAY: `:${display}` } }).toString();
    },
  };
}

/**
 * Runs xfreerdp on its own Xvfb (1280x800), e.g. args ['/v:127.0.0.1:PORT', '/u:U', '/p:P',
 * '/cert:ignore', '/size:1280x800']. Poll `screenshot()` to see what it shows; `exitCode` is null
 * while it runs (131 after a server disconnect, 147 after a refused NLA login).
 */
export async function startXfreerdp({ display, args = [] } = {}) {
  display ??= freeDisplay();
  const dir = mkdtempSync(join(tmpdir(), 'pc-xfreerdp-'));
  runFixture('xfreerdp-client.sh', [String(display), dir, '--', ...args]);
  const read = (f) => { try { return readFileSync(join(dir, f), 'utf8'); } catch { return null; } };
  let shots = 0;
  return {
    display: `:${display}`,
    dir,
    get exitCode() {
      const code = read('xfreerdp.exit');
      return code === null ? null : Number(code);
    },
    alive() {
      if (read('xfreerdp.exit') !== null) return false;
      const pid = Number(read('xfreerdp.pid'));
      if (!pid) return false;
      try { process.kill(pid, 0); return true; } catch { return false; }
    },
    log: () => read('xfreerdp.log') ?? '',
    stop() {
      try { runFixture('xfreerdp-client.sh', ['stop', dir]); } catch { /* already gone */ }
      rmSync(dir, { recursive: true, force: true });
    },
    screenshot: (path = join(dir, `shot-${++shots}.png`)) => importRoot(`:${display}`, path),
    xdotool(...args) {
      return execFileSync('xdotool', args, { env: { ...process.env, DISPLAY: `:${display}` } }).toString();
    },
  };
}

/** A fresh browser context and page (the gateway's self-signed certificate accepted). */
export async function newPage(browser) {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 } });
  return ctx.newPage();
}

/**
 * The admin (logged in, returned) creates a user with a grant on a VNC target named `target`
 * at `desktop`'s address: the set-up of most tests that open one session.
 */
/**
 * A scratch PostgreSQL server of this test's own (fixtures/postgres.sh: loopback, password logins,
 * TLS with a throw-away CA for the name `localhost`). `database(name)` creates an empty database
 * and returns its URL; `stop()` ends the server and deletes its files.
 */
export async function startPostgres() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'pc-pg-'));
  // The server runs as the `postgres` user (when the tests run as root): it must reach its files.
  chmodSync(dir, 0o755);
  const password = randomBytes(12).toString('hex');
  const script = join(root, 'fixtures/postgres.sh');
  const started = spawnSync(script, [String(port), 'portcullis_e2e', password, join(dir, 'pg')], { encoding: 'utf8', timeout: 120000 });
  const ready = /READY url=(\S+) ca=(\S+)/.exec(started.stdout ?? '');
  if (started.status !== 0 || !ready) {
    throw new Error(`PostgreSQL did not start (${started.status}): ${started.stderr}`);
  }
  const [, server, ca] = ready;
  return {
    server,
    ca,
    database(name) {
      const r = spawnSync('psql', [server, '-v', 'ON_ERROR_STOP=1', '-c', `CREATE DATABASE ${name}`], { encoding: 'utf8', timeout: 60000 });
      if (r.status !== 0) throw new Error(`cannot create database ${name}: ${r.stderr}`);
      return server.replace(/\/postgres$/, `/${name}`);
    },
    stop() {
      spawnSync(script, ['stop', join(dir, 'pg')], { timeout: 60000 });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function userWithTarget(gw, { adminPassword, user = 'alice', password, target = 'desk', desktop, vncPassword }) {
  const admin = gw.api();
  assert.equal((await admin.login('admin', adminPassword)).status, 200);
  let r = await admin.post('/users', { name: user, password, role: 'user' });
  assert.equal(r.status, 201, r.text);
  r = await admin.post('/targets', { name: target, address: desktop.address, password: vncPassword });
  assert.equal(r.status, 201, r.text);
  r = await admin.post('/grants', { user, target });
  assert.equal(r.status, 201, r.text);
  return admin;
}

/** A session's recorded event track, once its recording is closed (waits up to 20 s for that). */
export async function recordedEvents(admin, id) {
  for (let i = 0; i < 100; i++) {
    const rec = (await admin.get(`/recordings/${id}`)).json;
    if (rec?.recording?.state === 'complete') break;
    await sleep(200);
  }
  return (await admin.get(`/recordings/${id}/events`)).json;
}

/**
 * Whether any file of the gateway's data directory (up to 64 MiB each) holds one of `needles`
 * (strings): the name of the first that does, or null. For secrets that must be sealed at rest.
 */
export function dataFileHolding(gw, needles) {
  const walk = (dir) => readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
  for (const file of walk(join(gw.dir, 'data'))) {
    if (statSync(file).size > 64 << 20) continue;
    const bytes = readFileSync(file);
    if (needles.some((n) => bytes.includes(n))) return file;
  }
  return null;
}

/** Polls `f` (every 200 ms) until it returns a truthy value, which it returns; fails naming `what`. */
export async function until(what, f, ms = 20000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const last = await f();
    if (last) return last;
    await sleep(200);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/**
 * A scratch S3-compatible object store of this test's own (fixtures/s3.sh: SeaweedFS on
 * loopback, one identity with random keys, anonymous requests refused) with the bucket
 * `recordings`. `config(prefix)` is the gateway's `[recording.object_store]` table for it;
 * `down()` stops the server (its data kept), `up()` starts it again on the same port;
 * `stop()` ends it and deletes its files.
 */
export async function startS3() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'pc-s3-'));
  const access = randomBytes(10).toString('hex');
  const secret = randomBytes(20).toString('hex');
  const secretFile = join(dir, 'secret');
  writeFileSync(secretFile, `${secret}\n`, { mode: 0o600 });
  const script = join(root, 'fixtures/s3.sh');
  const state = join(dir, 's3');
  const start = () => {
    const started = spawnSync(script, [String(port), access, secret, 'recordings', state], { encoding: 'utf8', timeout: 180000 });
    const ready = /READY endpoint=(\S+)/.exec(started.stdout ?? '');
    if (started.status !== 0 || !ready) {
      throw new Error(`the S3 server did not start (${started.status}): ${started.stderr}`);
    }
    return ready[1];
  };
  const endpoint = start();
  return {
    endpoint,
    access,
    secret,
    config: (prefix, { every = 1 } = {}) => `[recording.object_store]\nurl = "s3://recordings/${prefix}"\nendpoint = "${endpoint}"\naccess_key_id = "${access}"\nsecret_access_key_file = "${secretFile}"\nupload_every_secs = ${every}\n`,
    down() { spawnSync(script, ['stop', state], { timeout: 60000 }); },
    up() { start(); },
    stop() {
      spawnSync(script, ['stop', state], { timeout: 60000 });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Minimal ustar reader: { name: Buffer }. */
export function untar(buf) {
  const files = {};
  let off = 0;
  while (off + 512 <= buf.length) {
    const header = buf.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const name = header.subarray(0, 100).toString().replace(/\0.*$/s, '');
    const size = parseInt(header.subarray(124, 136).toString().replace(/\0.*$/s, '').trim(), 8);
    files[name] = buf.subarray(off + 512, off + 512 + size);
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return files;
}

/**
 * Opens the watch WebSocket of session `id` from `page` (logged in on the gateway it shows) for
 * 3 s, typing `keys` once the watch began (a watcher's input must go nowhere); returns
 * { init, binary: frames received, closed }.
 */
export function watchFromPage(page, id, keys = '') {
  return page.evaluate(async ({ id, keys }) => new Promise((resolve) => {
    const ws = new WebSocket(`wss://${location.host}/api/v1/sessions/${id}/watch`);
    ws.binaryType = 'arraybuffer';
    const got = { init: null, binary: 0, closed: null };
    ws.onclose = (e) => { got.closed = `${e.code} ${e.reason}`; };
    ws.onmessage = (m) => {
      if (typeof m.data !== 'string') {
        got.binary += 1;
        return;
      }
      const msg = JSON.parse(m.data);
      if (msg.type !== 'init') return;
      got.init = msg;
      for (const ch of keys) {
        const keysym = ch === '\r' ? 0xff0d : ch.charCodeAt(0);
        ws.send(JSON.stringify({ t: 'key', keysym, down: true }));
        ws.send(JSON.stringify({ t: 'key', keysym, down: false }));
      }
    };
    setTimeout(() => { ws.close(); resolve(got); }, 3000);
  }), { id, keys });
}

const RSYSLOGD = ['/usr/sbin/rsyslogd', '/sbin/rsyslogd'].find(existsSync);

/**
 * Starts Debian's rsyslogd on loopback `port` (RFC 5424 over TCP), writing each raw message as
 * one line of `DIR/received.log` (kept across restarts). Resolves once it listens; `stop()`
 * kills it.
 */
export async function startRsyslog(dir, port) {
  if (!RSYSLOGD) throw new Error('rsyslogd is not installed (apt-get install rsyslog: cargo xtask deps does it)');
  const work = join(dir, 'work');
  mkdirSync(work, { recursive: true });
  const conf = join(dir, 'rsyslog.conf');
  writeFileSync(conf, `global(workDirectory="${work}" maxMessageSize="256k")
main_queue(queue.type="Direct")
module(load="imtcp")
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="siem" queue.type="Direct") {
  action(type="omfile" file="${join(dir, 'received.log')}" template="raw" flushOnTXEnd="on" asyncWriting="off")
}
input(type="imtcp" address="127.0.0.1" port="${port}" ruleset="siem")
`);
  rmSync(join(dir, 'rsyslogd.pid'), { force: true });
  const child = spawn(RSYSLOGD, ['-n', '-f', conf, '-i', join(dir, 'rsyslogd.pid')], { stdio: 'ignore' });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await gone;
  };
  for (let i = 0; i < 150; i++) {
    const up = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); r(true); });
      s.on('error', () => r(false));
    });
    if (up) return { stop, file: join(dir, 'received.log') };
    if (child.exitCode !== null) break;
    await sleep(100);
  }
  await stop();
  throw new Error('rsyslogd did not listen');
}

function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0, value = 0;
  const out = [];
  for (const c of text.replace(/=+$/, '').toUpperCase()) {
    value = (value << 5) | alphabet.indexOf(c);
    bits += 5;
    if (bits >= 8) { bits -= 8; out.push((value >>> bits) & 0xff); }
  }
  return Buffer.from(out);
}

/** The TOTP code (RFC 6238: SHA-1, 6 digits) of base32 `secret` at time step `step`. */
export function totpAt(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', base32Decode(secret)).update(counter).digest();
  const offset = mac[19] & 0x0f;
  const bin = ((mac[offset] & 0x7f) << 24) | (mac[offset + 1] << 16) | (mac[offset + 2] << 8) | mac[offset + 3];
  return String(bin % 1_000_000).padStart(6, '0');
}

/**
 * A source of TOTP codes the gateway has not seen yet (each code works once): `next(secret)`
 * gives the current step's code, or the next step's, else waits for a new step (the clock is
 * what a code depends on).
 */
export function freshTotp() {
  let lastStep = -1;
  return async (secret) => {
    for (;;) {
      const now = Math.floor(Date.now() / 1000 / 30);
      const step = [now, now + 1].find((s) => s > lastStep);
      if (step !== undefined) {
        lastStep = step;
        return totpAt(secret, step);
      }
      await sleep(1000);
    }
  };
}
