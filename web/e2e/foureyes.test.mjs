// Four-eyes sessions through the real gateway, TigerVNC, Chromium and xfreerdp: under a rule with
// `observer_required`, the user's input is held ("waiting for an observer") until someone the
// rule names watches through the security team's watch view; held again when the last one
// leaves; the observer can end the session; a watcher the rule does not name does not count; the
// native RDP entry is held alike; all of it in the event track and the audit trail.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import {
  startDesktop, startGateway, startXfreerdp, launchBrowser, uiLogin, sleep, until, recordedEvents,
} from './harness.mjs';
import * as H from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const PASSWORD = (name) => `${name}-password-1234`;
const VNC_PASSWORD = 'vncsecret';
let desk, gw, browser, admin;

before(async () => {
  desk = await startDesktop(VNC_PASSWORD, '1024x768', 'xvnc');
  gw = await startGateway({ adminPassword: ADMIN });
  browser = await launchBrowser();
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  for (const [name, role] of [['alice', 'user'], ['olga', 'soc'], ['sam', 'soc']]) {
    assert.equal((await admin.post('/users', { name, password: PASSWORD(name), role })).status, 201);
  }
  assert.equal((await admin.post('/targets', { name: 'desk', address: desk.address, password: VNC_PASSWORD })).status, 201);
  assert.equal((await admin.post('/grants', { user: 'alice', target: 'desk' })).status, 201);
  const r = await admin.put('/policy', {
    rules: [{ name: 'watched', subjects: ['role:user'], targets: ['name:desk'], observer_required: true, observers: ['user:olga'] },
      { name: 'staff', subjects: ['role:soc'], targets: ['*'] }],
  });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.warnings, []);
  // Observers who cannot open the watch view (plain users): saved, with a warning.
  const held = await admin.put('/policy', {
    rules: [{ name: 'nobody-watches', subjects: ['role:user'], targets: ['name:desk'], observer_required: true, observers: ['role:user'] }, ...r.json.policy.rules],
  });
  assert.equal(held.status, 200, held.text);
  assert.match(held.json.warnings.join(' '), /nobody-watches.*none of its observers can watch/);
  assert.equal((await admin.put('/policy', r.json.policy)).status, 200);
});

after(async () => {
  await browser?.close();
  await gw?.stop();
  desk?.stop();
});

const newPage = () => H.newPage(browser);

/** Types `echo WORD > FILE` + Enter in the xterm through the page. */
async function typeMarker(page, word, file) {
  await page.click('#session-canvas', { position: { x: 300, y: 200 } });
  await page.keyboard.type(`echo ${word} > ${file}`);
  await page.keyboard.press('Enter');
}

/** `name` watches session `id` in the SOC watch view; resolves once the view painted. */
async function watch(name, id) {
  const page = await newPage();
  await uiLogin(page, gw.base, name, PASSWORD(name));
  await page.waitForSelector('#current-user');
  await page.goto(`${gw.base}/#/watch/${id}`);
  await page.waitForFunction(() => window.__portcullis?.framesPainted >= 1, null, { timeout: 20000 });
  return page;
}

const banner = (page, shown) => page.waitForSelector(shown ? '#session-observer:not([hidden])' : '#session-observer[hidden]', { state: 'attached', timeout: 15000 });

test('input waits for an observer the rule names, is held again when the last one leaves, and the observer ends the session', async () => {
  const page = await newPage();
  await uiLogin(page, gw.base, 'alice', PASSWORD('alice'));
  await page.waitForSelector('[data-target="desk"]', { timeout: 10000 });
  await page.click('[data-target="desk"]');
  await page.waitForFunction(() => window.__portcullis?.framesPainted >= 1, null, { timeout: 20000 });
  const id = await page.evaluate(() => window.__portcullis.sessionId);
  await banner(page, true);
  assert.match(await page.textContent('#session-observer'), /waiting for an observer/i);
  const marker = `/tmp/portcullis-4eyes-${process.pid}`;
  rmSync(marker, { force: true });
  await typeMarker(page, 'unobserved', marker);

  // Sam is of the security team but not named by the rule: watching, he does not count.
  const samsView = await watch('sam', id);
  await sleep(1500);
  assert.equal(existsSync(marker), false, 'typing reached the target with no observer');
  assert.equal(await page.isVisible('#session-observer'), true);

  const olgasView = await watch('olga', id);
  await banner(page, false);
  await typeMarker(page, 'observed', marker);
  await until('typing observed to reach the target', () => existsSync(marker));
  rmSync(marker, { force: true });

  // The last observer leaves: held again until one comes back (Sam still watches).
  await olgasView.context().close();
  await banner(page, true);
  await typeMarker(page, 'left-alone', marker);
  await sleep(1500);
  assert.equal(existsSync(marker), false, 'typing reached the target after the observer left');

  // Back, and she ends it from the watch view.
  const again = await watch('olga', id);
  await banner(page, false);
  await again.click('#watch-end');
  await again.fill('[data-reason-input="end"]', 'four eyes: stop here');
  await again.click('[data-reason-confirm="end"]');
  await page.waitForSelector('#session-error:not([hidden])', { timeout: 15000 });
  assert.match(await page.textContent('#session-error'), /stop here/);
  for (const p of [page, samsView, again]) await p.context().close();

  const ev = await recordedEvents(admin, id);
  const kinds = ev.filter((e) => ['input_held', 'input_released'].includes(e.type)).map((e) => `${e.type}:${e.by ?? ''}`);
  assert.deepEqual(kinds, ['input_held:', 'input_released:olga', 'input_held:', 'input_released:olga'], JSON.stringify(ev));
  assert.match(ev.find((e) => e.type === 'input_held').why, /waiting for an observer.*watched/);
  const trail = (await admin.get(`/audit?session=${id}&limit=200`)).json.entries;
  assert.ok(trail.some((e) => e.kind === 'session_release' && e.actor === 'olga' && e.detail.type === 'input_released'), JSON.stringify(trail.map((e) => e.kind)));
  assert.ok(trail.some((e) => e.kind === 'session_hold' && e.detail.type === 'input_held'));
  assert.ok(trail.every((e) => e.kind !== 'session_freeze' && e.kind !== 'session_unfreeze'), 'a hold is no freeze');
  assert.ok(trail.some((e) => e.kind === 'session_kill' && e.actor === 'olga'), JSON.stringify(trail.map((e) => `${e.kind}:${e.actor}`)));
});

/** Pixels of the notice band's red (the gateway paints it over a native client's picture) on `client`'s screen. */
function bandPixels(client) {
  const ppm = readFileSync(client.screenshot(`/tmp/portcullis-4eyes-${process.pid}.ppm`));
  // P6 header: magic, width, height, maxval, each followed by white space.
  let at = 0;
  const fields = [];
  while (fields.length < 4) {
    while (/\s/.test(String.fromCharCode(ppm[at]))) at += 1;
    let f = '';
    while (!/\s/.test(String.fromCharCode(ppm[at]))) f += String.fromCharCode(ppm[at++]);
    fields.push(f);
  }
  at += 1;
  // ImageMagick may write 16-bit samples (maxval 65535, high byte first).
  const size = Number(fields[3]) > 255 ? 2 : 1;
  let red = 0;
  for (let i = at; i + 3 * size - 1 < ppm.length; i += 3 * size) {
    const [r, g, b] = [ppm[i], ppm[i + size], ppm[i + 2 * size]];
    if (Math.abs(r - 0xb0) < 12 && Math.abs(g - 0x1e) < 12 && Math.abs(b - 0x1e) < 12) red += 1;
  }
  return red;
}

test('a native RDP client\'s four-eyes session waits for an observer too, is told so over its picture, and is held again when the observer leaves', async () => {
  const client = await startXfreerdp({ args: [`/v:127.0.0.1:${gw.rdpPort}`, '/u:alice#desk', `/p:${PASSWORD('alice')}`, '/sec:tls', '/cert:ignore', '/size:1024x768'] });
  try {
    const live = await until('the native session', async () => (await admin.get('/sessions')).json.find((s) => s.user === 'alice' && s.entry === 'rdp'));
    const marker = `/tmp/portcullis-4eyes-native-${process.pid}`;
    rmSync(marker, { force: true });
    const typeNative = async (word) => {
      client.xdotool('mousemove', '300', '200', 'click', '1');
      client.xdotool('type', '--delay', '30', `echo ${word} > ${marker}`);
      client.xdotool('key', 'Return');
    };
    // Told over the top of its picture (a native client has no other way to hear it).
    await until('the waiting notice on the native client\'s screen', () => bandPixels(client) > 5000, 15000);
    await typeNative('unobserved');
    await sleep(2000);
    assert.equal(existsSync(marker), false, 'a native client\'s typing reached the target with no observer');
    const kinds = async () => (await admin.get(`/audit?session=${live.id}&limit=200`)).json.entries.map((e) => e.kind);
    const view = await watch('olga', live.id);
    try {
      await until('the hold to be released', async () => (await kinds()).includes('session_release'));
      await until('the notice to go', () => bandPixels(client) < 500, 15000);
      await typeNative('observed');
      await until('the observed native typing to reach the target', () => existsSync(marker), 15000);
    } finally {
      await view.context().close();
      rmSync(marker, { force: true });
    }
    // The last observer left: held again, told again, on record.
    await until('the hold after the observer left', async () => (await kinds()).filter((k) => k === 'session_hold').length >= 2);
    await until('the waiting notice again', () => bandPixels(client) > 5000, 15000);
    await typeNative('after');
    await sleep(2000);
    assert.equal(existsSync(marker), false, 'typing reached the target after the last observer left');
    await until('both holds in the event track', async () => ((await admin.get(`/recordings/${live.id}/events`)).json ?? []).filter((e) => e.type === 'input_held').length >= 2);
  } finally {
    client.stop();
  }
});
