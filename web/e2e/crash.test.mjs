// Crash and fault safety through the real gateway, with real peers (TigerVNC's Xvnc as the target,
// headless Chromium as the users):
// 1. kill -9 twenty times during recorded browser sessions (two or more open, typing) while SOC
//    lock calls are acknowledged: no acknowledged audit record lost, the chain verifies, every
//    recording verifies up to its last fragment, and the gateway starts cleanly each time.
// 2. A full recordings disk (a small tmpfs): the recording-required session ends within 2 s with a
//    message, new sessions are refused with a message, nothing recorded is corrupted, and once
//    space is freed and the gateway restarted, sessions record again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, openSync, writeSync, closeSync, unlinkSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startDesktop, startGateway, launchBrowser, uiLogin, sleep, request, bin, until,
} from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const ALICE = 'alice-password-123';
const BOB = 'bob-password-1234';
const SOC = 'soc-password-1234';
const VNC_PASSWORD = 'vncsecret';
const KILLS = Number(process.env.CRASH_KILLS || 20);

let desk, still, browser; // still: a second desktop, left alone (an idle session)
const gateways = new Set(); // gateways running, stopped in after()
const dirs = new Set(); // their data directories, removed in after()
const contexts = new Set();
let mnt = null; // the tmpfs mount point
let mounted = false;

before(async () => {
  desk = await startDesktop(VNC_PASSWORD, '1024x768', 'xvnc');
  still = await startDesktop(VNC_PASSWORD, '800x600', 'xvnc');
  browser = await launchBrowser();
  mnt = mkdtempSync(join(tmpdir(), 'pc-fulldisk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m,mode=0700', 'tmpfs', mnt]);
  mounted = true;
});

after(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  await browser?.close().catch(() => {});
  for (const g of gateways) await g.stop().catch(() => {});
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  desk?.stop();
  still?.stop();
  if (mounted) {
    try {
      execFileSync('umount', [mnt]);
    } catch {
      execFileSync('umount', ['-l', mnt]);
    }
    mounted = false;
  }
  if (mnt) rmSync(mnt, { recursive: true, force: true });
});

async function start(opts) {
  const g = await startGateway({ adminPassword: ADMIN, ...opts });
  gateways.add(g);
  dirs.add(g.dir);
  return g;
}

/** Stops `g` (kill -9 or SIGINT) and forgets it, keeping its directory. */
async function crash(g) {
  await g.kill();
  gateways.delete(g);
}

async function setUp(g) {
  const admin = g.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  for (const [name, password, role] of [['alice', ALICE, 'user'], ['bob', BOB, 'user'], ['sam', SOC, 'soc']]) {
    const r = await admin.post('/users', { name, password, role });
    assert.equal(r.status, 201, r.text);
  }
  let r = await admin.post('/targets', { name: 'desk', address: desk.address, password: VNC_PASSWORD, labels: ['prod'] });
  assert.equal(r.status, 201, r.text);
  r = await admin.post('/targets', { name: 'still', address: still.address, password: VNC_PASSWORD, labels: ['prod'] });
  assert.equal(r.status, 201, r.text);
  for (const target of ['desk', 'still']) {
    r = await admin.post('/grants', { user: 'alice', target });
    assert.equal(r.status, 201, r.text);
  }
  // Recording is required on this target (explicitly, not only by default).
  r = await request(g.base, 'PUT', '/api/v1/policy', {
    body: { rules: [{ name: 'prod-recorded', subjects: ['*'], targets: ['label:prod'], recording: 'required' }] },
    headers: { cookie: admin.cookie, 'x-portcullis-csrf': '1' },
  });
  assert.equal(r.status, 200, r.text);
  return admin;
}

/** A fresh page (own context: own login cookie). */
async function newPage() {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1200, height: 900 } });
  contexts.add(ctx);
  const page = await ctx.newPage();
  page.closeAll = async () => { contexts.delete(ctx); await ctx.close().catch(() => {}); };
  return page;
}

/** Logs alice in and clicks a target (does not wait for the session). */
async function clickDesk(g, page, target = 'desk') {
  await uiLogin(page, g.base, 'alice', ALICE);
  await page.waitForSelector(`[data-target="${target}"]`, { timeout: 15000 });
  await page.click(`[data-target="${target}"]`);
}

async function waitConnected(page) {
  await page.waitForFunction(() => window.__portcullis?.sessionId, null, { timeout: 20000 });
  await page.waitForFunction(() => window.__portcullis.framesPainted >= 1, null, { timeout: 20000 });
  return page.evaluate(() => window.__portcullis.sessionId);
}

async function openDesk(g, target = 'desk') {
  const page = await newPage();
  await clickDesk(g, page, target);
  const id = await waitConnected(page);
  await page.click('#session-canvas');
  return { page, id };
}

/** Types comment lines into the target's shell until `stop()` says so (screen changes). */
function typeUntil(page, tag, stop) {
  return (async () => {
    for (let i = 0; !stop(); i++) {
      try {
        await page.keyboard.type(`# ${tag} line ${i} the quick brown fox`, { delay: 8 });
        await page.keyboard.press('Enter');
      } catch {
        return; // the page or the gateway went away
      }
    }
  })();
}

/** `portcullis recording verify` on every recording folder under `root`: id → result. */
function verifyAll(g, root) {
  const out = new Map();
  for (const id of readdirSync(root).filter((n) => !n.startsWith('.'))) {
    const r = g.cli(['recording', 'verify', join(root, id)]);
    const segments = Number(/(\d+) video segments/.exec(r.stdout)?.[1] ?? -1);
    const state = /state:\s+(\S+)/.exec(r.stdout)?.[1];
    // Exit 0 and INTACT: closed as complete; 2 and INCOMPLETE: closed as incomplete at a start
    // (authentic, the end missing); 1 and CUT: not closed and nobody writing it.
    const verdict = /verdict:\s+(\S+)/.exec(r.stdout)?.[1];
    out.set(id, {
      status: r.status, stdout: r.stdout + r.stderr, segments, state, verdict,
      intact: r.status === 0 && verdict === 'INTACT:',
      authentic: (r.status === 0 && verdict === 'INTACT:') || (r.status === 2 && verdict === 'INCOMPLETE:'),
    });
  }
  return out;
}

/** The API answers: a login and a read. */
async function startsCleanly(g) {
  assert.equal(g.exited, null, `the gateway exited:\n${g.log()}`);
  const a = g.api();
  const r = await a.login('admin', ADMIN);
  assert.equal(r.status, 200, r.text);
  const me = await a.get('/me');
  assert.equal(me.status, 200, me.text);
  return a;
}

test(`kill -9 ${KILLS} times during recorded sessions: no acknowledged audit record lost, every recording verifies`, async () => {
  const t0 = Date.now();
  let gw = await start();
  await setUp(gw);
  const root = join(gw.dir, 'data', 'recordings');
  const acknowledged = [];
  const killedSessions = new Set();
  let openAtKill = 0;
  let minOpen = Infinity;
  let recovered = 0;
  for (let round = 0; round < KILLS; round++) {
    const soc = gw.api();
    assert.equal((await soc.login('sam', SOC)).status, 200);
    // Two recorded sessions, opened in parallel.
    const sessions = await Promise.all([openDesk(gw), openDesk(gw)]);
    let crashed = false;
    const typing = sessions.map((s, k) => typeUntil(s.page, `r${round}s${k}`, () => crashed));
    // SOC actions acknowledged while the sessions record: bob (who has no session) is locked
    // again and again, each time with its own reason.
    const stream = async (k) => {
      for (let i = 0; !crashed; i++) {
        const reason = `crash-${round}-${k}-${i}`;
        try {
          const r = await soc.post('/users/bob/lock', { reason });
          if (r.status === 204) acknowledged.push(reason);
          else assert.fail(`lock answered ${r.status} ${r.text}`);
        } catch (e) {
          if (e.code === 'ERR_ASSERTION') throw e;
          return; // the gateway is gone
        }
      }
    };
    const streams = [0, 1, 2, 3].map(stream);
    await sleep(1300 + (round % 5) * 250);
    // Every other round a third session is still connecting when the gateway dies.
    let third = null;
    if (round % 2 === 1) {
      third = await newPage();
      await clickDesk(gw, third);
      await sleep(round % 4 === 1 ? 50 : 300);
    }
    // The check below wants a fragment of each killed session on disk: wait for it (a loaded
    // machine may take longer than the pause above to write the first one).
    const watcher = await startsCleanly(gw);
    await until('a fragment of each session on record', async () => {
      for (const s of sessions) {
        if (!((await watcher.get(`/recordings/${s.id}`)).json?.segments?.length >= 1)) return false;
      }
      return true;
    }, 30000);
    const live = (await watcher.get('/sessions')).json;
    const n = live.filter((s) => s.state !== 'connecting').length;
    openAtKill += n;
    minOpen = Math.min(minOpen, n);
    for (const s of sessions) killedSessions.add(s.id);
    crashed = true;
    await crash(gw);
    await Promise.all([...streams, ...typing]);
    for (const s of sessions) await s.page.closeAll();
    await third?.closeAll();
    gw = await start({ dir: gw.dir });
    await startsCleanly(gw);
    recovered += (gw.log().match(/closed a recording left open by the previous run/g) ?? []).length;
    assert.doesNotMatch(gw.log(), /altered while the gateway was down|ERROR/);
  }
  assert.ok(minOpen >= 2, `only ${minOpen} sessions open at one kill`);
  const rounds = Date.now() - t0;
  await gw.stop({ keep: true });
  gateways.delete(gw);

  // The audit trail: intact, and every acknowledged lock is in it.
  const verified = gw.cli(['audit', 'verify']);
  assert.equal(verified.status, 0, verified.stdout + verified.stderr);
  assert.match(verified.stdout, /intact/);
  // Thousands of records: more output than the harness's cli() buffers.
  const shown = spawnSync(bin, ['--config', join(gw.dir, 'portcullis.toml'), 'audit', 'show', '--kind', 'user_lock', '--limit', '1000000'],
    { encoding: 'utf8', timeout: 60000, maxBuffer: 512 << 20 });
  assert.equal(shown.status, 0, `${shown.error ?? ''} ${shown.stderr}`);
  const kept = new Set(shown.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l).detail.reason));
  const lost = acknowledged.filter((r) => !kept.has(r));
  assert.deepEqual(lost, [], `${lost.length} of ${acknowledged.length} acknowledged records lost`);
  assert.ok(acknowledged.length >= KILLS * 4, `only ${acknowledged.length} acknowledged`);

  // Every recording folder verifies; those of killed sessions were closed as incomplete at the
  // next start, with at least one fragment each.
  const results = verifyAll(gw, root);
  const bad = [...results].filter(([, r]) => !r.authentic || (r.state === 'complete') !== r.intact);
  assert.deepEqual(bad.map(([id, r]) => `${id}: ${r.stdout}`), []);
  for (const id of killedSessions) {
    const r = results.get(id);
    assert.ok(r, `no recording for session ${id}`);
    assert.equal(r.state, 'incomplete', r.stdout);
    assert.ok(r.segments >= 1, r.stdout);
  }
  const segs = [...killedSessions].map((id) => results.get(id).segments);
  console.log(`# ${KILLS} kills in ${(rounds / 1000).toFixed(1)} s; ${openAtKill} sessions open at the kills (min ${minOpen}); `
    + `${acknowledged.length} acknowledged lock records, 0 lost; ${results.size} recordings verified intact `
    + `(${killedSessions.size} cut by a kill, ${Math.min(...segs)}-${Math.max(...segs)} segments each; ${recovered} closed by recovery)`);
  rmSync(gw.dir, { recursive: true, force: true });
});

/** Fills the filesystem at `dir` with one file until the kernel says ENOSPC; returns its path. */
function fillDisk(dir) {
  const path = join(dir, 'filler.bin');
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(256 * 1024, 0x5a);
  try {
    for (;;) {
      try {
        writeSync(fd, chunk);
      } catch (e) {
        if (e.code !== 'ENOSPC') throw e;
        break;
      }
    }
    // The last pages, smaller than a chunk.
    for (const size of [65536, 4096, 512, 1]) {
      try { for (;;) writeSync(fd, chunk.subarray(0, size)); } catch (e) { if (e.code !== 'ENOSPC') throw e; }
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

test('a full recordings disk ends the recorded session within 2 s, refuses new ones, corrupts nothing', async () => {
  const recDir = join(mnt, 'recordings');
  const extraConfig = `[recording]\ndir = "${recDir}"\nmin_free_mb = 4\n`;
  let gw = await start({ extraConfig });
  const admin = await setUp(gw);

  // An earlier recording, closed normally.
  const first = await openDesk(gw);
  let stop = false;
  await Promise.all([typeUntil(first.page, 'before-full', () => stop), sleep(2500).then(() => { stop = true; })]);
  await first.page.closeAll();
  for (let i = 0; i < 50; i++) {
    const r = await admin.get(`/recordings/${first.id}`);
    if (r.json?.recording?.state === 'complete') break;
    await sleep(200);
  }

  // Two live recorded sessions, one typing, one idle (nothing to write); then the disk fills up.
  const [live, idle] = await Promise.all([openDesk(gw), openDesk(gw, 'still')]);
  stop = false;
  const typing = typeUntil(live.page, 'filling', () => stop);
  await sleep(2500);
  const filler = fillDisk(mnt);
  const fullAt = Date.now();
  const ended = (page) => page.waitForSelector('#session-error:not([hidden])', { timeout: 15000 }).then(() => Date.now() - fullAt);
  const [endedAfter, idleEndedAfter] = await Promise.all([ended(live.page), ended(idle.page)]);
  stop = true;
  await typing;
  const message = await live.page.textContent('#session-error');
  const idleMessage = await idle.page.textContent('#session-error');
  for (const m of [message, idleMessage]) {
    assert.match(m, /record/i);
    assert.match(m, /full|free|space/i);
    assert.doesNotMatch(m, new RegExp(mnt), 'the message shows the server\'s paths');
  }
  assert.ok(endedAfter <= 2000, `the typing session ended ${endedAfter} ms after the disk filled`);
  assert.ok(idleEndedAfter <= 2000, `the idle session ended ${idleEndedAfter} ms after the disk filled`);
  const sessions = (await admin.get('/sessions')).json;
  assert.deepEqual(sessions.filter((s) => s.id === live.id || s.id === idle.id), [], 'a session still runs');
  await live.page.closeAll();
  await idle.page.closeAll();

  // While the disk is full, a new session is refused with a message.
  const refusedPage = await newPage();
  await clickDesk(gw, refusedPage);
  await refusedPage.waitForSelector('#session-error:not([hidden])', { timeout: 20000 });
  const refusal = await refusedPage.textContent('#session-error');
  assert.match(refusal, /cannot be recorded/i);
  // ... and says why, without a server path.
  assert.match(refusal, /MB free|disk is full/);
  assert.doesNotMatch(refusal, /\//);
  assert.equal(await refusedPage.evaluate(() => window.__portcullis?.framesPainted ?? 0), 0);
  await refusedPage.closeAll();

  // Nothing recorded is corrupted: every recording verifies up to its last fragment; the two the
  // full disk ended could not be closed, so verify calls them cut (exit 1, no damage) until the
  // next start closes them.
  let results = verifyAll(gw, recDir);
  assert.equal(results.size, 3, [...results.keys()].join(' '));
  assert.ok(results.get(first.id).intact, results.get(first.id).stdout);
  for (const cut of [live, idle]) {
    const r = results.get(cut.id);
    assert.ok(r.status === 1 && r.verdict === 'CUT:' && !/damage:/.test(r.stdout), r.stdout);
  }
  assert.equal(results.get(first.id).state, 'complete');
  assert.ok(results.get(live.id).segments >= 1, results.get(live.id).stdout);
  assert.ok(results.get(idle.id).segments >= 1, results.get(idle.id).stdout);

  // A crash and restart while the disk is still full: the gateway starts and still refuses.
  await crash(gw);
  gw = await start({ dir: gw.dir, extraConfig });
  await startsCleanly(gw);
  const stillFull = await newPage();
  await clickDesk(gw, stillFull);
  await stillFull.waitForSelector('#session-error:not([hidden])', { timeout: 20000 });
  assert.match(await stillFull.textContent('#session-error'), /cannot be recorded/i);
  await stillFull.closeAll();

  // Space freed, restarted: clean start, the cut recording closed as incomplete, sessions record.
  unlinkSync(filler);
  await gw.stop({ keep: true });
  gateways.delete(gw);
  gw = await start({ dir: gw.dir, extraConfig });
  const a = await startsCleanly(gw);
  const again = await openDesk(gw);
  stop = false;
  await Promise.all([typeUntil(again.page, 'after-free', () => stop), sleep(2500).then(() => { stop = true; })]);
  await again.page.closeAll();
  let state;
  for (let i = 0; i < 50 && state !== 'complete'; i++) {
    state = (await a.get(`/recordings/${again.id}`)).json?.recording?.state;
    if (state !== 'complete') await sleep(200);
  }
  assert.equal(state, 'complete');
  results = verifyAll(gw, recDir);
  assert.equal(results.size, 4);
  for (const [id, r] of results) assert.ok(r.authentic, `${id}: ${r.stdout}`);
  for (const cut of [live, idle]) assert.equal(results.get(cut.id).state, 'incomplete', results.get(cut.id).stdout);
  assert.equal(results.get(again.id).state, 'complete');
  assert.ok(results.get(again.id).segments >= 2, results.get(again.id).stdout);
  assert.equal(existsSync(filler), false);
  console.log(`# disk full → typing session ended after ${endedAfter} ms, idle one after ${idleEndedAfter} ms: ${JSON.stringify(message)}; `
    + `idle: ${JSON.stringify(idleMessage)}; refused: ${JSON.stringify(refusal)}; `
    + `${results.size} recordings verified intact`);
});

test('a second gateway on the same recordings folder refuses to start, naming it; the first goes on', async (t) => {
  const shared = mkdtempSync(join(tmpdir(), 'pc-shared-rec-'));
  t.after(() => rmSync(shared, { recursive: true, force: true }));
  const recording = `[recording]\ndir = "${shared}"\n`;
  const first = await startGateway({ extraConfig: recording });
  t.after(() => first.stop());
  const dir = mkdtempSync(join(tmpdir(), 'pc-second-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'portcullis.toml');
  writeFileSync(config, `data_dir = "${dir}/data"\n[http]\nlisten = "127.0.0.1:0"\n[rdp]\nenabled = false\n${recording}`);
  const second = spawnSync(bin, ['--config', config, 'serve'], {
    encoding: 'utf8', timeout: 60000,
    env: { ...process.env, PORTCULLIS_ADMIN_PASSWORD: 'admin-password-e2e', NO_COLOR: '1' },
  });
  assert.notEqual(second.status, 0, `the second gateway started: ${second.stderr}`);
  assert.match(second.stderr, /another gateway .*uses the recordings folder/);
  assert.ok(second.stderr.includes(shared), second.stderr);
  // The first one is untouched and still serves.
  const admin = first.api();
  assert.equal((await admin.login('admin', 'admin-password-e2e')).status, 200);
  assert.equal(first.exited, null);
});
