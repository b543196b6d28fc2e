// Search across recordings through the real gateway, a real VNC desktop (Xvnc + xterm) and
// Chromium: what a user typed, and words a command put on the screen (read by tesseract while the
// session ran), are found with their recording, moment and (screen words) box; a plain user finds
// only their own; the search page lists hits with a thumbnail, and a click opens the player at the
// moment with the words boxed on the video. Its own gateway and desktop.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import {
  startDesktop, startGateway, launchBrowser, newPage, openTarget, uiLogin, until, userWithTarget,
  typeInSession,
} from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const PASSWORD = (name) => `${name}-password-1234`;
const VNC = 'search-vnc';
const MARK = `zq${process.pid}`;
const file = `/tmp/portcullis-search-${process.pid}.txt`;
let desk, gw, admin, browser;
/** Sessions recorded in `before`: { alice, bob } → session id. */
const ids = {};

/** Opens `target` as `user` in the browser, types `lines` (each + Enter), waits `settle` ms of screen, closes. */
async function session(user, lines) {
  const page = await newPage(browser);
  try {
    await openTarget(page, gw.base, user, PASSWORD(user), 'desk');
    return { page, id: await typeInSession(page, lines) };
  } catch (e) {
    await page.context().close();
    throw e;
  }
}

/** GET /search as `client`, the hits. */
const hits = async (client, params) => {
  const r = await client.get(`/search?${new URLSearchParams(params)}`);
  assert.equal(r.status, 200, r.text);
  return r.json.hits;
};

before(async () => {
  desk = await startDesktop(VNC, '1024x768', 'xvnc');
  // Every recorded screen is read (the default), with the whole core for reading here.
  gw = await startGateway({ adminPassword: ADMIN, extraConfig: '[ocr]\ncpu_share = 1.0\n' });
  browser = await launchBrowser();
  admin = await userWithTarget(gw, { adminPassword: ADMIN, password: PASSWORD('alice'), desktop: desk, vncPassword: VNC });
  for (const [name, role] of [['bob', 'user'], ['rita', 'reviewer']]) {
    assert.equal((await admin.post('/users', { name, password: PASSWORD(name), role })).status, 201);
  }
  assert.equal((await admin.post('/grants', { user: 'bob', target: 'desk' })).status, 201);
  // Words OCR reads reliably (a made-up mark might be misread by a letter).
  writeFileSync(file, 'quarterly report\nserver 10.20.30.40 holds payroll\n');
  // Alice types a command and shows a file; the screen is read while the session runs.
  const a = await session('alice', [`echo typed${MARK} > /dev/null`, 'clear', `cat ${file}`]);
  ids.alice = a.id;
  await until('the words on alice\'s screen in the index', async () => (await hits(admin, { q: '10.20.30.40', kind: 'screen' })).some((h) => h.recording === a.id), 30000);
  await a.page.context().close();
  const b = await session('bob', [`echo bobs${MARK} > /dev/null`]);
  ids.bob = b.id;
  await until('bob\'s typed line in the index', async () => (await hits(admin, { q: `bobs${MARK}` })).length > 0, 30000);
  await b.page.context().close();
});

after(async () => {
  rmSync(file, { force: true });
  await browser?.close();
  await gw?.stop();
  desk?.stop();
});

test('typed lines and words on the screen are found with their recording, moment and box', async () => {
  const rita = gw.api();
  assert.equal((await rita.login('rita', PASSWORD('rita'))).status, 200);
  let found = await hits(rita, { q: `typed${MARK}` });
  const typed = found.find((h) => h.kind === 'typed');
  assert.ok(typed, JSON.stringify(found));
  assert.equal(typed.recording, ids.alice);
  assert.equal(typed.user, 'alice');
  assert.equal(typed.entry, 'browser');
  assert.ok(typed.t_ms > 0 && typed.at_ms > Date.now() - 600_000, JSON.stringify(typed));
  assert.ok(typed.highlights.length > 0);

  // The IP address, as tesseract read it off the screen: a box on the desktop.
  found = await hits(rita, { q: '10.20.30.40', kind: 'screen' });
  const screen = found.find((h) => h.recording === ids.alice);
  assert.ok(screen, JSON.stringify(found));
  assert.ok(screen.boxes.length >= 1, JSON.stringify(screen));
  const box = screen.boxes[0];
  assert.ok(box.w > 20 && box.h > 5 && box.x + box.w <= 1024 && box.y + box.h <= 768, JSON.stringify(box));
  assert.deepEqual(screen.desktop, { width: 1024, height: 768 });
  assert.equal(typeof screen.thumbnail_seq, 'number');
  const thumb = await rita.get(`/recordings/${ids.alice}/thumbnails/${screen.thumbnail_seq}`);
  assert.equal(thumb.status, 200);

  // Filters: another target, another kind, a time before it all.
  assert.equal((await hits(rita, { q: `typed${MARK}`, target: 'other' })).length, 0);
  assert.equal((await hits(rita, { q: `typed${MARK}`, kind: 'clipboard' })).length, 0);
  assert.equal((await hits(rita, { q: `typed${MARK}`, to: String(Date.now() - 3_600_000) })).length, 0);
  assert.equal((await hits(rita, { q: `typed${MARK}`, user: 'alice', entry: 'browser' })).length, 1);
  assert.equal((await rita.get('/search?q=x&kind=video')).status, 400);
  assert.equal((await rita.get('/search?q=')).status, 400);
});

test('a plain user finds only their own recordings', async () => {
  const alice = gw.api();
  assert.equal((await alice.login('alice', PASSWORD('alice'))).status, 200);
  const bob = gw.api();
  assert.equal((await bob.login('bob', PASSWORD('bob'))).status, 200);
  assert.ok((await hits(alice, { q: `typed${MARK}` })).length > 0, 'alice finds her own');
  assert.equal((await hits(alice, { q: `bobs${MARK}` })).length, 0, 'alice finds bob\'s');
  // (The desktop is shared: alice's words may still have been on it when bob's session began;
  // found there, they are in bob's own recording.)
  assert.ok((await hits(bob, { q: '10.20.30.40' })).every((h) => h.recording === ids.bob), 'bob finds alice\'s screen');
  assert.equal((await hits(bob, { q: `bobs${MARK}`, user: 'alice' })).length, 0);
  const own = await hits(bob, { q: `bobs${MARK}` });
  assert.ok(own.length > 0, 'bob finds his own');
  // Newest first, with neither scores nor the index's size (they would tell of others' words).
  assert.ok(own.every((h) => h.score === undefined), JSON.stringify(own));
  assert.equal((await bob.get(`/search?q=bobs${MARK}`)).json.indexed, null);
  // Query syntax is no way around the filter: another field named is just words.
  assert.equal((await hits(bob, { q: `user:alice typed${MARK}` })).length, 0);
  assert.equal((await hits(bob, { q: `[a TO z] typed${MARK}` })).length, 0);
});

test('the search page lists hits with a thumbnail, and a click opens the player at the moment with the words boxed', async () => {
  const page = await newPage(browser);
  try {
    await uiLogin(page, gw.base, 'rita', PASSWORD('rita'));
    await page.waitForSelector('#nav-search');
    await page.click('#nav-search');
    await page.fill('#search-q', '10.20.30.40');
    await page.selectOption('#search-kind', 'screen');
    await page.click('#search-submit');
    const hit = `.search-hit[data-hit="${ids.alice}"][data-kind="screen"]`;
    await page.waitForSelector('#search-summary:not(:empty), #search-error:not([hidden])');
    await page.waitForSelector(hit, { state: 'attached' }).catch(async (e) => {
      throw new Error(`${e.message}\nsummary: ${await page.textContent('#search-summary')}\nerror: ${await page.textContent('#search-error')}\nlist: ${await page.innerHTML('#search-results')}`);
    });
    assert.match(await page.textContent('#search-summary'), /found in \d+ ms/);
    // The thumbnail is there, with the words boxed on it; the fragment marks them.
    await page.waitForFunction((sel) => document.querySelector(`${sel} .search-thumb img`)?.naturalWidth > 0, hit);
    assert.ok((await page.$$(`${hit} .search-thumb .search-box`)).length >= 1);
    assert.match(await page.textContent(`${hit} .search-fragment mark`), /10|20|30|40/);
    const wanted = (await hits(admin, { q: '10.20.30.40', kind: 'screen' })).find((h) => h.recording === ids.alice);
    await page.click(`${hit} .search-open`);
    await page.waitForURL(new RegExp(`#/recordings/${ids.alice}/at/\\d+/boxes/`));
    await page.waitForFunction(() => window.__portcullis?.player?.ready);
    // At the moment, with the box over the video where the words are.
    await page.waitForFunction((t) => Math.abs(window.__portcullis.player.currentTime() - t) < 1.5, wanted.t_ms / 1000, { timeout: 15000 });
    await page.waitForSelector('#player-boxes .search-box');
    const placed = await page.evaluate(() => {
      const v = document.querySelector('#player-video').getBoundingClientRect();
      const b = document.querySelector('#player-boxes .search-box').getBoundingClientRect();
      return { inside: b.left >= v.left - 1 && b.right <= v.right + 1 && b.top >= v.top - 1 && b.bottom <= v.bottom + 1, w: b.width, h: b.height };
    });
    assert.ok(placed.inside && placed.w > 5 && placed.h > 2, JSON.stringify(placed));
  } finally {
    await page.context().close();
  }
});
