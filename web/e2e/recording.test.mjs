// Recording end to end: a real VNC session driven from the browser is recorded by the gateway;
// FFmpeg's own tools check the video; the signed chain catches one flipped byte; a kill -9 leaves
// a playable, incomplete recording; the reviewer's player jumps to an event marker.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, mkdirSync, readdirSync, rmSync, copyFileSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDesktop, startGateway, launchBrowser, uiLogin, sleep, untar } from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const ALICE = 'alice-password-123';
const BOB = 'bob-password-1234';
const RITA = 'rita-password-1234';
const VNC_PASSWORD = 'vncsecret';

let desktop, gw, browser, admin;
const scratch = mkdtempSync(join(tmpdir(), 'pc-rec-e2e-'));

async function setUpGateway(g) {
  const a = g.api();
  assert.equal((await a.login('admin', ADMIN)).status, 200);
  for (const [name, password, role] of [['alice', ALICE, 'user'], ['bob', BOB, 'user'], ['rita', RITA, 'reviewer']]) {
    const r = await a.post('/users', { name, password, role });
    assert.equal(r.status, 201, r.text);
  }
  let r = await a.post('/targets', { name: 'desk', address: desktop.address, password: VNC_PASSWORD });
  assert.equal(r.status, 201, r.text);
  r = await a.post('/grants', { user: 'alice', target: 'desk' });
  assert.equal(r.status, 201, r.text);
  return a;
}

before(async () => {
  desktop = await startDesktop(VNC_PASSWORD);
  gw = await startGateway({ adminPassword: ADMIN });
  browser = await launchBrowser();
  admin = await setUpGateway(gw);
});

after(async () => {
  await browser?.close();
  await gw?.stop();
  desktop?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

async function newPage() {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 } });
  return ctx.newPage();
}

/** Logs `user` in, opens the desk target and waits for the first painted frame. */
async function openDesk(g, user, password) {
  const page = await newPage();
  await uiLogin(page, g.base, user, password);
  await page.waitForSelector('[data-target="desk"]', { timeout: 10000 });
  await page.click('[data-target="desk"]');
  await page.waitForFunction(() => window.__portcullis?.sessionId, null, { timeout: 20000 });
  await page.waitForFunction(() => window.__portcullis.framesPainted >= 1, null, { timeout: 20000 });
  const sessionId = await page.evaluate(() => window.__portcullis.sessionId);
  return { page, sessionId };
}

async function waitForState(api, id, state, ms = 20000) {
  const until = Date.now() + ms;
  let last;
  while (Date.now() < until) {
    last = await api.get(`/recordings/${id}`);
    if (last.status === 200 && last.json.recording.state === state) return last.json;
    await sleep(250);
  }
  throw new Error(`recording ${id} not ${state}: ${last?.status} ${last?.text}`);
}

function ffprobeDuration(file) {
  const out = execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', file]).toString().trim();
  return Number(out);
}

/**
 * RGB of (x, y) in the frame on screen at t seconds: the fps filter resamples the variable frame
 * rate to what is displayed every 20 ms (tpad holds the last frame to the end), then trim starts
 * at t (a plain -ss picks the first frame
 * at or after t, and drops earlier frames before the filter sees them).
 */
function pixelAt(file, t, width, x, y) {
  const raw = execFileSync('ffmpeg', ['-v', 'error', '-i', file, '-vf', `tpad=stop_mode=clone:stop_duration=10,fps=50,trim=start=${t}`, '-frames:v', '1', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 64 << 20 });
  const i = (y * width + x) * 3;
  return [raw[i], raw[i + 1], raw[i + 2]];
}

const isRed = ([r, g, b]) => r > 180 && g < 80 && b < 80;

/**
 * Records one session of alice's on the desk, for the test that calls it (no test depends on
 * another's recording): opens it in the browser, with `red` shows a red window at a known moment
 * (`redAt`) 2.5 s in, types `text` and Enter, closes the page and waits until the recording is
 * complete.
 */
async function recordSession({ red = false, text = 'echo recorded' } = {}) {
  const { page, sessionId } = await openDesk(gw, 'alice', ALICE);
  const live = await admin.get(`/recordings/${sessionId}`);
  assert.equal(live.status, 200, live.text);
  assert.equal(live.json.recording.state, 'recording');
  const startedAt = live.json.recording.started_at_ms;
  const openedAt = Date.now();
  let redAt = null;
  let xterm = null;
  if (red) {
    await sleep(2500);
    // A distinctly coloured window appears at a known moment.
    redAt = Date.now();
    xterm = spawn('xterm', ['-geometry', '30x10+600+300', '-bg', 'red', '-fg', 'red'], {
      env: { ...process.env, DISPLAY: desktop.display }, stdio: 'ignore',
    });
    await sleep(3000);
  }
  await page.click('canvas');
  await page.keyboard.type(text);
  await page.keyboard.press('Enter');
  await sleep(1500);
  await page.context().close();
  const closedAt = Date.now();
  xterm?.kill();
  const detail = await waitForState(admin, sessionId, 'complete');
  return { id: sessionId, detail, startedAt, openedAt, redAt, closedAt };
}

/** Downloads a recording's export and unpacks it into a scratch folder; returns the folder. */
async function unpackExport(id) {
  const exp = await admin.get(`/recordings/${id}/export`);
  assert.equal(exp.status, 200);
  assert.match(exp.headers['content-disposition'], /attachment/);
  const files = untar(exp.body);
  for (const f of ['video-1.mp4', 'events.jsonl', 'manifest.jsonl', 'gateway-signing-key.pub', 'README.txt']) {
    assert.ok(files[f], `export lacks ${f}: ${Object.keys(files)}`);
  }
  const dir = join(scratch, id);
  mkdirSync(dir);
  for (const [name, data] of Object.entries(files)) writeFileSync(join(dir, name), data);
  return dir;
}

test('a browser session is recorded: duration, picture at a known time, event track', async () => {
  const { id: sessionId, detail, startedAt, openedAt, redAt, closedAt } = await recordSession({ red: true });
  const rec = detail.recording;
  assert.equal(rec.user, 'alice');
  assert.equal(rec.target, 'desk');
  // Changes are cut into 1-s fragments, an unchanged screen every 10 s.
  assert.ok(detail.segments.length >= 3, `segments: ${detail.segments.length}`);
  assert.ok(detail.segments[0].key, 'the first segment starts with a keyframe');
  assert.ok(detail.thumbnails.length >= 1);

  // The export holds video, events, the signed manifest and the public key.
  const dir = await unpackExport(sessionId);
  const video = join(dir, 'video-1.mp4');

  // ffprobe: the video lasts as long as the session did.
  const duration = ffprobeDuration(video);
  const sessionSecs = (closedAt - openedAt) / 1000;
  assert.ok(Math.abs(duration - rec.duration_ms / 1000) < 0.3, `video ${duration} s, recording ${rec.duration_ms} ms`);
  assert.ok(duration >= sessionSecs - 0.5 && duration <= sessionSecs + 3, `video ${duration} s, session ${sessionSecs} s`);

  // The red window shows just after it opened and not just before.
  const width = detail.inits[0].width;
  const t = (redAt - startedAt) / 1000;
  const before = pixelAt(video, Math.max(0, t - 0.5), width, 650, 340);
  const after = pixelAt(video, t + 2.0, width, 650, 340);
  assert.ok(!isRed(before), `red too early: ${before}`);
  assert.ok(isRed(after), `no red window 2 s after it opened: ${after}`);

  // The event track, on the same clock.
  const events = (await admin.get(`/recordings/${sessionId}/events`)).json;
  const types = events.map((e) => e.type);
  for (const type of ['session_start', 'viewer_joined', 'keys', 'viewer_left', 'session_end']) {
    assert.ok(types.includes(type), `no ${type} in ${JSON.stringify(events)}`);
  }
  const keys = events.filter((e) => e.type === 'keys').map((e) => e.text).join('');
  assert.match(keys, /echo recorded<Enter>/);
  const typedAt = events.find((e) => e.type === 'keys').t_ms;
  assert.ok(typedAt > t * 1000 && typedAt < rec.duration_ms, `keys at ${typedAt} ms`);
});

test('verify passes on the recording and its export, and names the segment of one flipped byte', async () => {
  const { id } = await recordSession({ text: 'echo verified' });
  const recorded = { id, dir: await unpackExport(id) };
  let r = gw.cli(['recording', 'verify', join(gw.dir, 'data/recordings', recorded.id)]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /verdict:\s+INTACT/);
  assert.match(r.stdout, /trusted key: fingerprint [0-9a-f]{16} \(this gateway's signing key/);
  // The export, against the gateway's key taken from the gateway and kept outside the export.
  const trusted = join(scratch, `${recorded.id}-gateway.pub`);
  writeFileSync(trusted, gw.cli(['recording', 'public-key']).stdout);
  r = gw.cli(['recording', 'verify', recorded.dir, '--public-key', trusted]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  // Against the key that came inside the export only: nothing proven, said plainly (exit 4).
  r = gw.cli(['recording', 'verify', recorded.dir, '--public-key', join(recorded.dir, 'gateway-signing-key.pub')]);
  assert.equal(r.status, 4, r.stdout + r.stderr);
  assert.match(r.stdout, /NOT TRUSTED: it came with the recording/);
  assert.doesNotMatch(r.stdout, /INTACT/);
  // Its last line (the end line) removed: cut, never intact (exit 1).
  const cutDir = join(scratch, `${recorded.id}-cut`);
  mkdirSync(cutDir);
  for (const f of readdirSync(recorded.dir)) copyFileSync(join(recorded.dir, f), join(cutDir, f));
  const lines = readFileSync(join(cutDir, 'manifest.jsonl'), 'utf8').trim().split('\n');
  writeFileSync(join(cutDir, 'manifest.jsonl'), lines.slice(0, -1).join('\n') + '\n');
  r = gw.cli(['recording', 'verify', cutDir, '--public-key', trusted]);
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /verdict:\s+CUT: missing the signed end line/);

  // Flip one byte in the middle of the video.
  const video = join(recorded.dir, 'video-1.mp4');
  const bytes = readFileSync(video);
  const at = Math.floor(bytes.length * 0.6);
  bytes[at] ^= 0x01;
  writeFileSync(video, bytes);
  r = gw.cli(['recording', 'verify', recorded.dir, '--public-key', trusted]);
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /ALTERED OR DAMAGED at segment \d+: segment \d+: video altered/);
  // The segment named is the one holding that byte.
  const manifest = readFileSync(join(recorded.dir, 'manifest.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).body);
  const holder = manifest.find((b) => b.entry.video && b.entry.video.offset <= at && at < b.entry.video.offset + b.entry.video.len);
  assert.match(r.stdout, new RegExp(`at segment ${holder.seq}:`));
});

test('who sees which recording: reviewer all, user only their own, nobody without login', async () => {
  const recorded = await recordSession({ text: 'echo seen' });
  const rita = gw.api();
  assert.equal((await rita.login('rita', RITA)).status, 200);
  let r = await rita.get('/recordings');
  assert.equal(r.status, 200);
  assert.ok(r.json.some((x) => x.id === recorded.id));
  r = await rita.get('/recordings?user=alice&state=complete');
  assert.ok(r.json.every((x) => x.user === 'alice' && x.state === 'complete') && r.json.length >= 1);
  r = await rita.get('/recordings?user=ALI');
  assert.ok(r.json.some((x) => x.id === recorded.id), 'user filter matches a substring, any case');
  r = await rita.get('/recordings?target=nosuch');
  assert.deepEqual(r.json, []);
  // A reviewer administers nothing.
  assert.equal((await rita.get('/users')).status, 403);

  const bob = gw.api();
  assert.equal((await bob.login('bob', BOB)).status, 200);
  r = await bob.get('/recordings');
  assert.equal(r.status, 200);
  assert.equal(r.json.filter((x) => x.user !== 'bob').length, 0);
  for (const p of ['', '/events', '/export', '/init/1', `/segments/2`]) {
    assert.equal((await bob.get(`/recordings/${recorded.id}${p}`)).status, 404, p);
  }
  const alice = gw.api();
  assert.equal((await alice.login('alice', ALICE)).status, 200);
  assert.equal((await alice.get(`/recordings/${recorded.id}`)).status, 200);

  const anon = gw.api();
  assert.equal((await anon.get('/recordings')).status, 401);
  assert.equal((await anon.get(`/recordings/${recorded.id}/export`)).status, 401);
});

test('kill -9 mid-session: the recording plays up to the last fragment and is marked incomplete', async () => {
  const g = await startGateway({ adminPassword: ADMIN });
  try {
    await setUpGateway(g);
    const { page, sessionId } = await openDesk(g, 'alice', ALICE);
    const a = g.api();
    assert.equal((await a.login('admin', ADMIN)).status, 200);
    const startedAt = (await a.get(`/recordings/${sessionId}`)).json.recording.started_at_ms;
    await page.click('canvas');
    for (let i = 0; i < 10; i++) {
      await page.keyboard.type(`echo line ${i}`);
      await page.keyboard.press('Enter');
      await sleep(300);
    }
    const killedAt = Date.now();
    await g.kill();
    await page.context().close();

    const dir = join(g.dir, 'data/recordings', sessionId);
    const manifest = readFileSync(join(dir, 'manifest.jsonl'), 'utf8');
    assert.doesNotMatch(manifest, /"type":"end"/);
    // Playable as it lies, up to the last complete fragment; at most ~2 s lost.
    const duration = ffprobeDuration(join(dir, 'video-1.mp4'));
    const alive = (killedAt - startedAt) / 1000;
    assert.ok(duration >= alive - 2.5, `plays ${duration} s of ${alive} s`);

    // The next start closes it as incomplete, and it verifies.
    const g2 = await startGateway({ adminPassword: ADMIN, dir: g.dir });
    try {
      const a2 = g2.api();
      assert.equal((await a2.login('admin', ADMIN)).status, 200);
      const d = (await a2.get(`/recordings/${sessionId}`)).json;
      assert.equal(d.recording.state, 'incomplete');
      assert.match(d.recording.end_reason, /stopped while recording/);
      // Authentic up to its signed end line, which says the end is missing: exit 2.
      const r = g2.cli(['recording', 'verify', dir]);
      assert.equal(r.status, 2, r.stdout + r.stderr);
      assert.match(r.stdout, /state:\s+incomplete/);
      assert.match(r.stdout, /verdict:\s+INCOMPLETE:/);
      assert.doesNotMatch(r.stdout, /INTACT/);
    } finally {
      await g2.stop({ keep: true });
    }
  } finally {
    await g.stop();
  }
});

test('a closed recording whose end is removed while the gateway is down is found cut at the next start, not incomplete, and recovery is on the audit trail', async () => {
  const g = await startGateway({ adminPassword: ADMIN });
  try {
    await setUpGateway(g);
    const { page, sessionId } = await openDesk(g, 'alice', ALICE);
    const a = g.api();
    assert.equal((await a.login('admin', ADMIN)).status, 200);
    await page.click('canvas');
    for (let i = 0; i < 4; i++) {
      await page.keyboard.type(`echo cut ${i}`);
      await page.keyboard.press('Enter');
      await sleep(400);
    }
    await page.context().close();
    await waitForState(a, sessionId, 'complete');
    await g.stop({ keep: true });

    // Someone with write access removes the end line and the line before it, at line
    // boundaries, and cuts every data file to the last byte the kept lines name.
    const dir = join(g.dir, 'data/recordings', sessionId);
    const manifest = join(dir, 'manifest.jsonl');
    const lines = readFileSync(manifest, 'utf8').split('\n').filter(Boolean);
    assert.ok(lines.length >= 5, `${lines.length} lines`);
    const kept = lines.slice(0, lines.length - 2);
    writeFileSync(manifest, kept.join('\n') + '\n');
    const ends = {};
    for (const l of kept) {
      const e = JSON.parse(l).body.entry;
      for (const span of [e.video, e.events, e.thumb].filter(Boolean)) {
        ends[span.file] = Math.max(ends[span.file] ?? 0, span.offset + span.len);
      }
    }
    for (const f of readdirSync(dir)) {
      if (f !== 'manifest.jsonl') truncateSync(join(dir, f), ends[f] ?? 0);
    }

    const g2 = await startGateway({ adminPassword: ADMIN, dir: g.dir });
    try {
      // Closed again by the start, as found cut: verify says CUT (exit 1), naming the trail.
      const r = g2.cli(['recording', 'verify', dir]);
      assert.equal(r.status, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /verdict:\s+CUT: missing the end of the recording: found cut/);
      assert.match(r.stdout, /state:\s+found cut/);
      assert.match(r.stdout, /2 lines are missing/);
      assert.doesNotMatch(r.stdout, /INCOMPLETE|INTACT/);
      // The trail holds the close, and what recovery did, before it did it.
      const shown = g2.cli(['audit', 'show', '--kind', 'recording_closed,recording_recovered', '--limit', '100']);
      assert.equal(shown.status, 0, shown.stderr);
      const records = shown.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l))
        .filter((e) => e.session === sessionId);
      const closed = records.find((e) => e.kind === 'recording_closed');
      assert.ok(closed && closed.detail.lines === lines.length, shown.stdout);
      const recovered = records.find((e) => e.kind === 'recording_recovered' && e.detail.action === 'close');
      assert.ok(recovered, shown.stdout);
      assert.equal(recovered.detail.state, 'found_cut');
      assert.match(recovered.detail.reason, new RegExp(`record ${closed.seq}`));
      assert.ok(recovered.seq > closed.seq);
      // ... and, once the end line was on disk, that the close was done.
      const done = records.find((e) => e.kind === 'recording_recovered' && e.detail.action === 'closed');
      assert.ok(done && done.seq > recovered.seq && done.detail.lines === recovered.detail.lines, shown.stdout);
    } finally {
      await g2.stop({ keep: true });
    }
  } finally {
    await g.stop();
  }
});

test('the reviewer plays a recording: a marker click jumps the video there; hover shows a thumbnail', async () => {
  // Typing comes after the red window opened: the marker of the keys shows it.
  const recorded = await recordSession({ red: true });
  const events = (await admin.get(`/recordings/${recorded.id}/events`)).json;
  const keys = events.find((e) => e.type === 'keys');
  const page = await newPage();
  try {
    await uiLogin(page, gw.base, 'rita', RITA);
    await page.waitForSelector(`#recordings-table tr[data-id="${recorded.id}"]`, { timeout: 10000 });
    await page.click(`#recordings-table tr[data-id="${recorded.id}"]`);
    await page.waitForFunction(() => window.__portcullis?.player?.ready, null, { timeout: 20000 });
    assert.equal(await page.locator('#player-error').isVisible(), false);

    // Jump to the moment of typing (after the red window opened): the video goes there and shows it.
    await page.locator(`#player-scrub .marker[data-t-ms="${keys.t_ms}"]`).first().dispatchEvent('click');
    const target = keys.t_ms / 1000;
    await page.waitForFunction((t) => {
      const v = document.querySelector('#player-video');
      return v && !v.seeking && v.readyState >= 2 && Math.abs(v.currentTime - t) < 0.5;
    }, target, { timeout: 15000 });
    const p = await page.evaluate(() => ({ seeks: window.__portcullis.player.seeks, last: window.__portcullis.player.lastSeekTarget }));
    assert.ok(p.seeks >= 1);
    assert.ok(Math.abs(p.last - target) < 0.01, `lastSeekTarget ${p.last}, marker at ${target}`);
    const px = await page.evaluate(() => {
      const v = document.querySelector('#player-video');
      const c = document.createElement('canvas');
      c.width = v.videoWidth; c.height = v.videoHeight;
      const ctx = c.getContext('2d');
      ctx.drawImage(v, 0, 0);
      return Array.from(ctx.getImageData(650, 340, 1, 1).data.slice(0, 3));
    });
    assert.ok(isRed(px), `the video at the marker does not show the red window: ${px}`);

    // Hovering the scrub bar shows a thumbnail.
    const bar = await page.locator('#player-scrub').boundingBox();
    await page.mouse.move(bar.x + bar.width * 0.7, bar.y + bar.height / 2);
    await page.waitForSelector('#player-thumb[src*="/thumbnails/"]', { state: 'visible', timeout: 5000 });

    // 16x speed is offered and applied.
    await page.selectOption('#player-speed', '16');
    assert.equal(await page.evaluate(() => document.querySelector('#player-video').playbackRate), 16);
  } finally {
    await page.context().close();
  }
});

test('pointing at a place before clicking it: the second video has its frame ready and shows it at once; the main video takes over with the same picture', async () => {
  const recorded = await recordSession({ red: true });
  const events = (await admin.get(`/recordings/${recorded.id}/events`)).json;
  const keys = events.find((e) => e.type === 'keys');
  assert.ok(keys, 'no keys event');
  const page = await newPage();
  try {
    await uiLogin(page, gw.base, 'rita', RITA);
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.waitForSelector(`#recordings-table tr[data-id="${recorded.id}"]`, { timeout: 10000 });
    await page.click(`#recordings-table tr[data-id="${recorded.id}"]`);
    await page.waitForFunction(() => window.__portcullis?.player?.ready && window.__portcullis.player.ahead, null, { timeout: 20000 }).catch(async (e) => {
      throw new Error(`${e.message}; page errors: ${pageErrors.join(' | ')}; hook: ${await page.evaluate(() => JSON.stringify(window.__portcullis?.player))}`);
    });
    const durationMs = await page.evaluate(() => document.querySelector('#player-video').duration * 1000);
    const bar = await page.locator('#player-scrub').boundingBox();
    const y = bar.y + bar.height / 2;
    // After the red window opened (the keys came after it), before the end.
    const xAt = (ms) => bar.x + bar.width * (ms / durationMs);
    const aimMs = Math.min(keys.t_ms + 300, durationMs - 200);
    const x = xAt(aimMs);

    // Pointing there: the second video goes there (hidden) and decodes the frame.
    await page.mouse.move(x, y);
    await page.waitForFunction((t) => {
      const a = window.__portcullis.player.ahead;
      return !a.seeking && a.readyState >= 2 && Math.abs(a.currentTime - t) < 1;
    }, aimMs / 1000, { timeout: 15000 });
    const frameOf = (sel) => page.evaluate((sel) => {
      const v = document.querySelector(sel);
      const c = document.createElement('canvas');
      c.width = v.videoWidth; c.height = v.videoHeight;
      const ctx = c.getContext('2d');
      ctx.drawImage(v, 0, 0);
      return { w: c.width, h: c.height, data: Array.from(ctx.getImageData(0, 0, c.width, c.height).data) };
    }, sel);
    const ahead = await frameOf('#player-ahead');
    const px = (f, x, y) => f.data.slice((y * f.w + x) * 4, (y * f.w + x) * 4 + 3);
    assert.ok(isRed(px(ahead, 650, 340)), `the second video does not show the red window: ${px(ahead, 650, 340)}`);
    assert.equal(await page.locator('#player-ahead').evaluate((el) => el.classList.contains('shown')), false, 'shown before any click');

    // The click there: the frame is on screen through the second video, at once.
    await page.mouse.down();
    await page.mouse.up();
    await page.waitForFunction(() => window.__portcullis.player.shown.at(-1)?.shownAt != null, null, { timeout: 15000 });
    const shown = await page.evaluate(() => window.__portcullis.player.shown.at(-1));
    // Made visible at the click, the second video is painted two animation frames later; the
    // main video, seeking at the same moment, may present the same frame first when its decode
    // is quicker than those frames (a short recording, a slow compositor): at once either way.
    assert.ok(shown.via === 'ahead' || shown.shownAt - shown.at < 100, JSON.stringify(shown));
    assert.ok(Math.abs(shown.target - aimMs / 1000) < 1, JSON.stringify(shown));
    // The main video arrives at the same place, then takes over: the second one hides.
    await page.waitForFunction((t) => {
      const v = document.querySelector('#player-video');
      const a = window.__portcullis.player.ahead;
      return !v.seeking && v.readyState >= 2 && Math.abs(v.currentTime - t) < 0.002 && !a.classList.contains('shown');
    }, shown.target, { timeout: 15000 }).catch(async (e) => {
      const st = await page.evaluate(() => {
        const v = document.querySelector('#player-video');
        const a = window.__portcullis.player.ahead;
        return { seeking: v.seeking, rs: v.readyState, t: v.currentTime, shown: a.className, at: a.currentTime, hook: window.__portcullis.player.shown };
      });
      throw new Error(`${e.message}: ${JSON.stringify(st)}`);
    });
    const main = await frameOf('#player-video');
    assert.equal(main.w, ahead.w);
    let differing = 0;
    for (let i = 0; i < main.data.length; i += 4) {
      if (Math.abs(main.data[i] - ahead.data[i]) + Math.abs(main.data[i + 1] - ahead.data[i + 1]) + Math.abs(main.data[i + 2] - ahead.data[i + 2]) > 6) differing++;
    }
    assert.ok(differing <= (main.w * main.h) / 1000, `the second video showed another picture: ${differing} pixels differ`);

    // Pointing elsewhere afterwards moves the (hidden) second video there; a click without any
    // pause still shows the frame, through whichever video is first.
    const otherMs = Math.max(100, recorded.detail.segments[0].end_ms / 2);
    await page.mouse.move(xAt(otherMs), y);
    await page.waitForFunction((t) => {
      const a = window.__portcullis.player.ahead;
      return !a.seeking && Math.abs(a.currentTime - t) < 1;
    }, otherMs / 1000, { timeout: 15000 });
    // Whenever the second video hides, the main video is at the latest click's target (it
    // takes over for that seek, never for an earlier one).
    await page.evaluate(() => {
      const a = window.__portcullis.player.ahead;
      const v = document.querySelector('#player-video');
      window.__hides = [];
      new MutationObserver(() => {
        if (!a.classList.contains('shown')) window.__hides.push({ main: v.currentTime, target: window.__portcullis.player.lastSeekTarget });
      }).observe(a, { attributes: true, attributeFilter: ['class'] });
    });
    const seeksBefore = await page.evaluate(() => window.__portcullis.player.seeks);
    await page.mouse.click(xAt(aimMs / 2), y);
    await page.waitForFunction((n) => {
      const s = window.__portcullis.player.shown.at(-1);
      return s?.seek === n + 1 && s.shownAt != null;
    }, seeksBefore, { timeout: 15000 });
    const cold = await page.evaluate(() => window.__portcullis.player.shown.at(-1));
    assert.ok(['ahead', 'video'].includes(cold.via), JSON.stringify(cold));
    await page.waitForFunction(() => !window.__portcullis.player.ahead.classList.contains('shown'), null, { timeout: 15000 });
    for (const h of await page.evaluate(() => window.__hides)) {
      assert.ok(Math.abs(h.main - h.target) < 0.002, `the second video hid while the main video was elsewhere: ${JSON.stringify(h)}`);
    }
    assert.equal(await page.locator('#player-error').isVisible(), false);
  } finally {
    await page.context().close();
  }
});

test('a live session is watched from its recording start while it goes on', async () => {
  const { page: userPage, sessionId } = await openDesk(gw, 'alice', ALICE);
  const page = await newPage();
  try {
    await uiLogin(page, gw.base, 'rita', RITA);
    // The login must have completed (cookie set) before going straight to the player.
    await page.waitForFunction(() => !location.hash.startsWith('#/login'), null, { timeout: 10000 });
    await page.goto(`${gw.base}/#/recordings/${sessionId}`);
    await page.waitForSelector('#player-live', { state: 'visible', timeout: 10000 });
    await page.waitForFunction(() => window.__portcullis?.player?.ready, null, { timeout: 20000 });
    const first = await page.evaluate(() => window.__portcullis.player.segmentsAppended);
    await userPage.click('canvas');
    // Keep the screen changing (an idle screen is cut into fragments only once a minute) until
    // the player has appended two more segments: one a second while it changes, polled.
    const appended = () => page.evaluate(() => window.__portcullis.player.segmentsAppended);
    const until = Date.now() + 30000;
    let later = first;
    for (let i = 0; later < first + 2 && Date.now() < until; i++) {
      await userPage.keyboard.type(i % 20 === 19 ? '\n' : 'x');
      await sleep(250);
      later = await appended();
    }
    assert.ok(later >= first + 2, `segments appended: ${first}, then ${later} after 30 s of typing`);
    // It plays from the start of the recording.
    const buffered = await page.evaluate(() => {
      const b = document.querySelector('#player-video').buffered;
      return b.length ? b.start(0) : null;
    });
    assert.ok(buffered !== null && buffered < 0.5, `buffered from ${buffered}`);
    await userPage.context().close();
    await page.waitForSelector('#player-live', { state: 'hidden', timeout: 15000 });
    await page.waitForFunction(() => /complete/.test(document.querySelector('#player-state')?.textContent ?? ''), null, { timeout: 15000 });
  } finally {
    await page.context().close();
  }
});

test('a resize mid-session starts a new video part; both parts play and the chain verifies', async () => {
  const tiger = await startDesktop(VNC_PASSWORD, '1280x800', 'xvnc');
  try {
    let r = await admin.post('/targets', { name: 'tiger', address: tiger.address, password: VNC_PASSWORD });
    assert.equal(r.status, 201, r.text);
    r = await admin.post('/grants', { user: 'alice', target: 'tiger' });
    assert.equal(r.status, 201, r.text);
    const page = await newPage();
    await uiLogin(page, gw.base, 'alice', ALICE);
    await page.waitForSelector('[data-target="tiger"]', { timeout: 10000 });
    await page.click('[data-target="tiger"]');
    await page.waitForFunction(() => window.__portcullis?.sessionId && window.__portcullis.framesPainted >= 1, null, { timeout: 20000 });
    const sessionId = await page.evaluate(() => window.__portcullis.sessionId);
    await sleep(2000);
    tiger.xrandr = execFileSync('xrandr', ['-s', '1920x1080'], { env: { ...process.env, DISPLAY: tiger.display } });
    await page.waitForFunction(() => document.querySelector('#session-canvas')?.width === 1920, null, { timeout: 15000 });
    await sleep(2500);
    await page.context().close();

    const detail = await waitForState(admin, sessionId, 'complete');
    const sizes = detail.inits.map((p) => [p.width, p.height]);
    assert.deepEqual(sizes[0], [1280, 800], JSON.stringify(detail.inits));
    assert.deepEqual(sizes.at(-1), [1920, 1080], JSON.stringify(detail.inits));
    const events = (await admin.get(`/recordings/${sessionId}/events`)).json;
    assert.ok(events.some((e) => e.type === 'resize' && e.width === 1920 && e.height === 1080), JSON.stringify(events));
    const dir = join(gw.dir, 'data/recordings', sessionId);
    const d1 = ffprobeDuration(join(dir, 'video-1.mp4'));
    const d2 = ffprobeDuration(join(dir, `video-${detail.inits.at(-1).part}.mp4`));
    assert.ok(d1 >= 1.5, `part 1: ${d1} s`);
    // Part 2 keeps the recording clock: it ends at the recording's end.
    assert.ok(Math.abs(d2 - detail.recording.duration_ms / 1000) < 0.3, `part 2 ends at ${d2} s`);
    const v = gw.cli(['recording', 'verify', dir]);
    assert.equal(v.status, 0, v.stdout + v.stderr);
  } finally {
    tiger.stop();
  }
});

test('no room for the recording: the session is refused with a clear message, nothing runs unrecorded', async () => {
  const g = await startGateway({ adminPassword: ADMIN, extraConfig: '[recording]\nmin_free_mb = 100000000\n' });
  try {
    const a = await setUpGateway(g);
    const page = await newPage();
    await uiLogin(page, g.base, 'alice', ALICE);
    await page.waitForSelector('[data-target="desk"]', { timeout: 10000 });
    await page.click('[data-target="desk"]');
    await page.waitForSelector('#session-error:not([hidden])', { timeout: 15000 });
    assert.match(await page.textContent('#session-error'), /cannot be recorded/);
    await page.context().close();
    assert.deepEqual((await a.get('/sessions')).json, []);
    assert.deepEqual((await a.get('/recordings')).json, []);
    assert.match(g.log(), /MB free for recordings/);
  } finally {
    await g.stop();
  }
});

test('verify on the gateway says LIVE while the session records, INTACT once it ended', async () => {
  const { page, sessionId } = await openDesk(gw, 'alice', ALICE);
  const dir = join(gw.dir, 'data/recordings', sessionId);
  // The running gateway writes it: authentic so far, not intact (exit 3).
  let r = gw.cli(['recording', 'verify', dir]);
  assert.equal(r.status, 3, r.stdout + r.stderr);
  assert.match(r.stdout, /state:\s+live/);
  assert.match(r.stdout, /verdict:\s+LIVE:/);
  assert.doesNotMatch(r.stdout, /INTACT/);
  await page.context().close();
  await waitForState(admin, sessionId, 'complete');
  r = gw.cli(['recording', 'verify', dir]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /verdict:\s+INTACT/);
});
