// The security team's browser console through real peers: TigerVNC (Xvnc + xterm) as the target,
// headless Chromium for alice (a user), sam (soc) and the administrator. The SOC page lists
// alice's session with a live thumbnail; the watch page paints her desktop and forwards nothing;
// Freeze shows alice a banner; Kill ends her session with the reason; the users page locks her out.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { startDesktop, startGateway, launchBrowser, uiLogin, sleep } from './harness.mjs';
import * as H from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const ALICE = 'alice-password-123';
const SOC = 'soc-password-12345';
const VNC_PASSWORD = 'vncsecret';

let desk, gw, browser, admin;

before(async () => {
  desk = await startDesktop(VNC_PASSWORD, '1024x768', 'xvnc');
  gw = await startGateway({ adminPassword: ADMIN });
  browser = await launchBrowser();
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  for (const [name, password, role] of [['alice', ALICE, 'user'], ['sam', SOC, 'soc']]) {
    const r = await admin.post('/users', { name, password, role });
    assert.equal(r.status, 201, r.text);
  }
  let r = await admin.post('/targets', { name: 'desk', address: desk.address, password: VNC_PASSWORD });
  assert.equal(r.status, 201, r.text);
  r = await admin.post('/grants', { user: 'alice', target: 'desk' });
  assert.equal(r.status, 201, r.text);
});

after(async () => {
  await browser?.close();
  await gw?.stop();
  desk?.stop();
});

const newPage = () => H.newPage(browser);

/** Logs in through the login page and waits until the app shows who is logged in. */
async function login(user, password) {
  const page = await newPage();
  await uiLogin(page, gw.base, user, password);
  await page.waitForSelector('#current-role', { timeout: 10000 });
  return page;
}

/** Alice's browser session on `desk`; returns the page and the session id. */
async function aliceSession() {
  const page = await login('alice', ALICE);
  await page.waitForSelector('[data-target="desk"]', { timeout: 10000 });
  await page.click('[data-target="desk"]');
  await page.waitForFunction(() => window.__portcullis?.sessionId, null, { timeout: 20000 });
  await page.waitForFunction(() => window.__portcullis.framesPainted >= 1, null, { timeout: 20000 });
  return { page, id: await page.evaluate(() => window.__portcullis.sessionId) };
}

/** The SOC console as sam, with the card of session `id` shown. */
async function socConsole(id) {
  const page = await login('sam', SOC);
  await page.goto(`${gw.base}/#/soc`);
  await page.waitForSelector(`[data-session="${id}"]`, { timeout: 10000 });
  return page;
}

/** Like the harness's compareCanvasWith, for the watch page's canvas. */
async function compareWatchCanvas(page, png) {
  return page.evaluate(async (b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const bmp = await createImageBitmap(new Blob([bytes], { type: 'image/png' }));
    const ref = new OffscreenCanvas(bmp.width, bmp.height).getContext('2d');
    ref.drawImage(bmp, 0, 0);
    const canvas = document.querySelector('#watch-canvas');
    const w = Math.min(canvas.width, bmp.width);
    const h = Math.min(canvas.height, bmp.height);
    const a = ref.getImageData(0, 0, w, h).data;
    const b = canvas.getContext('2d').getImageData(0, 0, w, h).data;
    let differing = 0;
    for (let i = 0; i < a.length; i += 4) {
      const d = Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]);
      if (d > 24) differing++;
    }
    return { differing, total: w * h, canvas: [canvas.width, canvas.height], ref: [bmp.width, bmp.height] };
  }, Buffer.from(png).toString('base64'));
}

const thumbState = (page, id) => page.$eval(`[data-session="${id}"] .soc-thumb-img`, (img) => ({
  src: img.getAttribute('src') ?? '', loaded: !img.hidden && img.complete && img.naturalWidth > 0, width: img.naturalWidth,
}));

test('the SOC page shows live sessions with live thumbnails, and Watch paints the desktop view-only', async () => {
  const { page: alice, id } = await aliceSession();
  // A user sees no console link; the security team does, with its own badge.
  assert.equal(await alice.$('#nav-soc'), null);
  const soc = await socConsole(id);
  assert.equal(await soc.getAttribute('#current-role', 'class'), 'role-badge role-soc');
  assert.ok(await soc.$('#nav-soc.active'));

  const card = `[data-session="${id}"]`;
  assert.equal(await soc.textContent(`${card} .soc-user`), 'alice');
  assert.equal(await soc.textContent(`${card} .soc-target`), 'desk');
  assert.equal(await soc.textContent(`${card} .soc-entry`), 'Browser');
  assert.match(await soc.textContent(`${card} .state-badge`), /active/);
  assert.equal(await soc.isVisible(`${card} .frozen-badge`), false);

  // The thumbnail loads (a JPEG of the screen, at most 320 px wide) and is replaced every ~2 s,
  // the replaced picture's object URL revoked.
  await soc.waitForFunction((sel) => {
    const img = document.querySelector(sel);
    return img && !img.hidden && img.complete && img.naturalWidth > 0;
  }, `${card} .soc-thumb-img`, { timeout: 10000 });
  const first = await thumbState(soc, id);
  assert.ok(first.loaded && first.width <= 320 && first.width > 100, JSON.stringify(first));
  assert.match(first.src, /^blob:/);
  await soc.waitForFunction(({ sel, src }) => document.querySelector(sel)?.getAttribute('src') !== src,
    { sel: `${card} .soc-thumb-img`, src: first.src }, { timeout: 8000 });
  const revoked = await soc.evaluate((url) => fetch(url).then(() => false, () => true), first.src);
  assert.equal(revoked, true, 'the replaced thumbnail URL is still alive');

  // Watch: the header says who and that it is view only; the canvas shows the desktop.
  await soc.click(`${card} [data-watch]`);
  await soc.waitForFunction(() => location.hash.startsWith('#/watch/'), null, { timeout: 5000 });
  await soc.waitForSelector('#watch-canvas:not([hidden])', { timeout: 10000 });
  assert.equal(await soc.textContent('#watch-title'), 'Watching alice on desk — view only');
  await soc.waitForFunction(() => window.__portcullis.framesPainted >= 1, null, { timeout: 20000 });
  desk.xdotool('type', '--delay', '20', 'seen-by-the-watcher');
  let cmp;
  for (let i = 0; i < 20; i++) {
    await sleep(500);
    cmp = await compareWatchCanvas(soc, desk.screenshot());
    if (cmp.differing / cmp.total < 0.01) break;
  }
  assert.deepEqual(cmp.canvas, [1024, 768]);
  assert.ok(cmp.differing / cmp.total < 0.01, JSON.stringify(cmp));
  desk.xdotool('key', 'ctrl+u');

  // Typing, clicking and pasting on the watch page reach nothing.
  const marker = `/tmp/portcullis-soc-console-${process.pid}`;
  rmSync(marker, { force: true });
  await soc.click('#watch-canvas', { position: { x: 300, y: 200 } });
  await soc.keyboard.type(`echo watcher > ${marker}`);
  await soc.keyboard.press('Enter');
  await sleep(1500);
  assert.equal(existsSync(marker), false, 'the watcher\'s typing reached the target');
  // ...while alice's own typing still does.
  await alice.click('#session-canvas', { position: { x: 300, y: 200 } });
  await alice.keyboard.type(`echo alice > ${marker}`);
  await alice.keyboard.press('Enter');
  for (let i = 0; i < 50 && !existsSync(marker); i++) await sleep(100);
  assert.ok(existsSync(marker), 'alice\'s typing did not reach the target');
  rmSync(marker, { force: true });

  // The end of the session shows on the watch page with its reason.
  assert.equal((await admin.del(`/sessions/${id}`)).status, 204);
  await soc.waitForSelector('#watch-error:not([hidden])', { timeout: 10000 });
  assert.match(await soc.textContent('#watch-error'), /closed by an administrator/);
  await alice.context().close();
  await soc.context().close();

  // The recording names the watcher.
  for (let i = 0; i < 100; i++) {
    if ((await admin.get(`/recordings/${id}`)).json?.recording?.state === 'complete') break;
    await sleep(200);
  }
  const ev = (await admin.get(`/recordings/${id}/events`)).json;
  assert.ok(ev.some((e) => e.type === 'watcher_joined' && e.user === 'sam'), JSON.stringify(ev));
});

test('Freeze on the SOC page shows alice the banner and the console the badge; Unfreeze clears both', async () => {
  const { page: alice, id } = await aliceSession();
  const soc = await socConsole(id);
  const card = `[data-session="${id}"]`;
  assert.equal(await alice.isVisible('#session-frozen'), false);

  await soc.click(`${card} [data-freeze]`);
  await alice.waitForSelector('#session-frozen:not([hidden])', { timeout: 5000 });
  assert.equal(await alice.textContent('#session-frozen'), 'The security team has paused your input');
  await soc.waitForSelector(`${card} .frozen-badge:not([hidden])`, { timeout: 5000 });
  assert.equal(await soc.textContent(`${card} [data-freeze]`), 'Unfreeze');
  // It stays after the next refreshes of the list (the gateway says frozen too).
  await sleep(2500);
  assert.equal(await soc.isVisible(`${card} .frozen-badge`), true);
  assert.equal((await admin.get('/sessions')).json.find((s) => s.id === id)?.frozen, true);

  await soc.click(`${card} [data-freeze]`);
  await alice.waitForSelector('#session-frozen', { state: 'hidden', timeout: 5000 });
  await soc.waitForSelector(`${card} .frozen-badge`, { state: 'hidden', timeout: 5000 });
  assert.equal(await soc.textContent(`${card} [data-freeze]`), 'Freeze');

  assert.equal((await admin.del(`/sessions/${id}`)).status, 204);
  await alice.context().close();
  await soc.context().close();
});

test('Kill on the SOC page asks for a reason and ends alice\'s session showing it', async () => {
  const { page: alice, id } = await aliceSession();
  const soc = await socConsole(id);
  const card = `[data-session="${id}"]`;

  await soc.click(`${card} [data-kill]`);
  await soc.waitForSelector(`${card} [data-reason-form="kill"]:not([hidden])`, { timeout: 5000 });
  // No reason, no kill.
  await soc.click(`${card} [data-reason-confirm="kill"]`);
  await soc.waitForSelector(`${card} [data-reason-form="kill"] .reason-error:not([hidden])`, { timeout: 5000 });
  assert.match(await soc.textContent(`${card} [data-reason-form="kill"] .reason-error`), /reason/i);
  assert.equal((await admin.get('/sessions')).json.find((s) => s.id === id)?.state, 'active');
  // The open form survives the list's refresh.
  await sleep(2500);
  assert.equal(await soc.isVisible(`${card} [data-reason-form="kill"]`), true);

  await soc.fill(`${card} [data-reason-input="kill"]`, 'suspicious commands');
  await soc.click(`${card} [data-reason-confirm="kill"]`);
  await alice.waitForSelector('#session-error:not([hidden])', { timeout: 10000 });
  assert.match(await alice.textContent('#session-error'), /security team ended this session: suspicious commands/);
  await soc.waitForSelector(card, { state: 'detached', timeout: 10000 });
  await soc.waitForSelector('#soc-empty:not([hidden])', { timeout: 5000 });
  await alice.context().close();
  await soc.context().close();
});

test('Lock on the users page (as admin) ends alice\'s session and refuses her next login; Unlock lets her in', async () => {
  const { page: alice, id } = await aliceSession();
  const adminPage = await login('admin', ADMIN);
  await adminPage.goto(`${gw.base}/#/admin/users`);
  const row = '[data-user="alice"]';
  await adminPage.waitForSelector(`${row} [data-lock-user="alice"]`, { timeout: 10000 });
  assert.equal(await adminPage.getAttribute(row, 'data-locked'), 'false');
  // The role choice offers the security team.
  assert.ok(await adminPage.$('#user-role option[value="soc"]'));
  assert.equal(await adminPage.getAttribute('[data-user="sam"] .role-badge', 'class'), 'role-badge role-soc');

  await adminPage.click(`${row} [data-lock-user="alice"]`);
  await adminPage.fill(`${row} [data-reason-input="lock"]`, 'credential leak');
  await adminPage.click(`${row} [data-reason-confirm="lock"]`);
  await adminPage.waitForSelector(`${row} [data-locked-badge="alice"]`, { timeout: 10000 });
  assert.equal(await adminPage.getAttribute(row, 'data-locked'), 'true');
  assert.ok(await adminPage.$(`${row} [data-unlock-user="alice"]`));

  await alice.waitForSelector('#session-error:not([hidden])', { timeout: 10000 });
  assert.match(await alice.textContent('#session-error'), /locked by the security team: credential leak/);
  await alice.context().close();
  assert.equal((await admin.get('/sessions')).json.filter((s) => s.user === 'alice' && s.state !== 'closed').length, 0);

  // Her next login is refused, with the reason why.
  const again = await newPage();
  await uiLogin(again, gw.base, 'alice', ALICE);
  await again.waitForSelector('#login-error:not([hidden])', { timeout: 10000 });
  assert.match(await again.textContent('#login-error'), /locked/);
  assert.equal(await again.$('#current-role'), null);

  await adminPage.click(`${row} [data-unlock-user="alice"]`);
  await adminPage.waitForSelector(`${row} [data-lock-user="alice"]`, { timeout: 10000 });
  assert.equal(await adminPage.getAttribute(row, 'data-locked'), 'false');
  await uiLogin(again, gw.base, 'alice', ALICE);
  await again.waitForSelector('#current-role', { timeout: 10000 });
  await again.context().close();
  await adminPage.context().close();
  void id;
});
