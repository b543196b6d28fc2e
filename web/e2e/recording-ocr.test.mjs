// The player as a reviewer uses it (issue 15, item 8): a frame the player decodes at a known
// moment reads like the target's own screen did (OCR, Debian's tesseract, --psm 6); the hover
// thumbnail at that moment shows the terminal, not the black first picture; the poster is a
// picture with content; an allowed policy decision is not styled as a denial.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDesktop, startGateway, launchBrowser, uiLogin, until, userWithTarget } from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const ALICE = 'alice-password-123';
const VNC_PASSWORD = 'vncsecret';
/** Distinctive words, typed into the xterm and echoed back. */
const WORDS = ['PORTCULLIS', 'marmalade', 'quixotic', 'zeppelin', '4711'];

let desktop, gw, browser, admin;
/** Alice may use the `desk` target (the desktop, once started). */
const aliceOnDesk = { adminPassword: ADMIN, password: ALICE, get desktop() { return desktop; }, vncPassword: VNC_PASSWORD };
const scratch = mkdtempSync(join(tmpdir(), 'pc-rec-ocr-'));

before(async () => {
  desktop = await startDesktop(VNC_PASSWORD);
  gw = await startGateway({ adminPassword: ADMIN });
  browser = await launchBrowser();
  admin = await userWithTarget(gw, aliceOnDesk);
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

/** The words tesseract reads in a PNG (scaled up 2× first, which it reads best), lower case. */
function ocr(png, name) {
  const src = join(scratch, `${name}.png`);
  const big = join(scratch, `${name}-2x.png`);
  writeFileSync(src, png);
  execFileSync('convert', [src, '-resize', '200%', big]);
  const text = execFileSync('tesseract', [big, '-', '--psm', '6'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  return { text, words: text.toLowerCase().split(/[^a-z0-9]+/).filter(Boolean) };
}

const missing = (words, want = WORDS) => want.filter((w) => !words.includes(w.toLowerCase()));

/**
 * The target's own screen (the xterm's `box`), read until `want` was typed and echoed (each word
 * twice); each read takes a second or two of OCR. `shotAt`: when that screenshot was taken.
 */
function readSource(box, want) {
  for (let i = 0; i < 15; i++) {
    const shotAt = Date.now();
    const name = `source-${want[0]}-${i}`;
    const read = ocr(crop(desktop.screenshot(), box, name), name);
    if (missing(read.words, want).length === 0 && want.every((w) => read.words.filter((x) => x === w.toLowerCase()).length >= 2)) {
      return { source: read, shotAt };
    }
  }
  assert.fail(`the target never showed the echoed line ${want.join(' ')}`);
}

/** Waits for the recording `id` to be complete (read through `api`); its detail. */
async function completed(api, id) {
  const deadline = Date.now() + 30000;
  for (;;) {
    const detail = (await api.get(`/recordings/${id}`)).json;
    if (detail.recording.state === 'complete') return detail;
    assert.ok(Date.now() < deadline, `recording ${id} not complete`);
    await new Promise((r) => setTimeout(r, 250)); // polling the API, as waitForState does
  }
}

/**
 * In the player page `rev` showing a recording of `durationMs`: clicks the bar at `momentMs`,
 * waits for the decoded frame there and reads the xterm's `box` in it.
 */
async function seekAndRead(rev, { momentMs, durationMs, box, name }) {
  const bar = await rev.locator('#player-scrub').boundingBox();
  const x = bar.x + (momentMs / durationMs) * bar.width;
  await rev.evaluate(() => {
    const v = document.querySelector('#player-video');
    window.__ocrSeeked = false;
    v.addEventListener('seeked', () => { window.__ocrSeeked = true; }, { once: true });
  });
  await rev.mouse.click(x, bar.y + bar.height / 2);
  const target = await rev.evaluate(() => window.__portcullis.player.lastSeekTarget);
  assert.ok(Math.abs(target * 1000 - momentMs) < 250, `seeked to ${target} s for ${momentMs} ms`);
  await rev.waitForFunction((t) => {
    const v = document.querySelector('#player-video');
    return window.__ocrSeeked && !v.seeking && v.readyState >= 2 && Math.abs(v.currentTime - t) < 0.05;
  }, target, { timeout: 20000 });
  // The decoded frame's xterm region, at the video's own resolution.
  const b64 = await rev.evaluate((bx) => {
    const v = document.querySelector('#player-video');
    const c = document.createElement('canvas');
    c.width = bx.w; c.height = bx.h;
    c.getContext('2d').drawImage(v, bx.x, bx.y, bx.w, bx.h, 0, 0, bx.w, bx.h);
    return c.toDataURL('image/png').split(',')[1];
  }, box);
  return ocr(Buffer.from(b64, 'base64'), name);
}

/** Opens a session of alice's on the desktop in a new page: { page, id, startedAt }. */
async function openSession(base) {
  const page = await newPage();
  await uiLogin(page, base, 'alice', ALICE);
  await page.waitForSelector('[data-target="desk"]', { timeout: 10000 });
  await page.click('[data-target="desk"]');
  await page.waitForFunction(() => window.__portcullis?.sessionId && window.__portcullis.framesPainted >= 1, null, { timeout: 20000 });
  const id = await page.evaluate(() => window.__portcullis.sessionId);
  return { page, id };
}

/** Opens the player on recording `id` as the admin, in a new page. */
async function openPlayer(base, id) {
  const rev = await newPage();
  await uiLogin(rev, base, 'admin', ADMIN);
  await rev.waitForFunction(() => !location.hash.startsWith('#/login'), null, { timeout: 10000 });
  await rev.goto(`${base}/#/recordings/${id}`);
  await rev.waitForFunction(() => window.__portcullis?.player?.ready, null, { timeout: 20000 });
  return rev;
}

/** The xterm's window on the target's display: { x, y, w, h }. */
function xtermBox() {
  const id = desktop.xdotool('search', '--name', 'portcullis-xterm').trim().split('\n')[0];
  const out = desktop.xdotool('getwindowgeometry', '--shell', id);
  const v = Object.fromEntries(out.trim().split('\n').map((l) => l.split('=')));
  return { x: Number(v.X), y: Number(v.Y), w: Number(v.WIDTH), h: Number(v.HEIGHT) };
}

/** A crop of a PNG, as PNG bytes. */
function crop(png, { x, y, w, h }, name) {
  const src = join(scratch, `${name}-full.png`);
  writeFileSync(src, png);
  return execFileSync('convert', [src, '-crop', `${w}x${h}+${x}+${y}`, '+repage', 'png:-'], { maxBuffer: 64 << 20 });
}

test('the player decodes the frame at a known moment: its text reads like the source; thumbnail, poster and policy styles are right', async () => {
  // ---- the session: a distinctive line typed into the xterm -----------------------------------
  const { page, id } = await openSession(gw.base);
  const startedAt = (await admin.get(`/recordings/${id}`)).json.recording.started_at_ms;
  await page.click('canvas');
  await page.keyboard.type(`echo ${WORDS.join(' ')}`);
  await page.keyboard.press('Enter');

  const box = xtermBox();
  const { source, shotAt } = readSource(box, WORDS);
  const shownMs = shotAt - startedAt;

  // The first thumbnail is of the session's first picture (taken with the first frame, a few ms
  // in: black or half drawn, before the line was typed); the next one comes at least 10 s later.
  const settledAfter = (t, i) => i > 0 && t.t_ms >= shownMs - 1000;
  // Nothing changes on screen from here on. The recording takes a thumbnail of the settled screen
  // (at most one per 10 s): wait for one that starts after the line was shown.
  let detail;
  const until = Date.now() + 30000;
  for (;;) {
    detail = (await admin.get(`/recordings/${id}`)).json;
    if (detail.thumbnails.some(settledAfter)) break;
    assert.ok(Date.now() < until, `no thumbnail of the settled screen: ${JSON.stringify(detail.thumbnails)}`);
    await new Promise((r) => setTimeout(r, 250)); // polling the API, as waitForState does
  }
  await page.context().close();
  detail = await completed(admin, id);
  const settled = detail.thumbnails.find(settledAfter);
  // The known moment: after the line was shown, and after the settled thumbnail's start.
  const momentMs = Math.max(shownMs + 1000, settled.t_ms + 300);
  const durationMs = detail.segments.at(-1).end_ms;
  assert.ok(momentMs < durationMs - 200, `moment ${momentMs} ms, recording ${durationMs} ms`);

  // ---- the player ------------------------------------------------------------------------------
  const rev = await openPlayer(gw.base, id);
  try {

    // The poster (before any play or seek): a thumbnail with content, not a black picture.
    await rev.waitForFunction(() => window.__portcullis.player.posterSeq !== null, null, { timeout: 10000 });
    const poster = await rev.evaluate(async () => {
      const img = document.querySelector('#player-poster');
      await img.decode();
      const c = document.createElement('canvas');
      c.width = img.naturalWidth; c.height = img.naturalHeight;
      const ctx = c.getContext('2d');
      ctx.drawImage(img, 0, 0);
      const d = ctx.getImageData(0, 0, c.width, c.height).data;
      let bright = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 600) bright++;
      return { visible: !img.hidden, bright: bright / (d.length / 4) };
    });
    assert.ok(poster.visible, 'no poster shown');
    // The white xterm covers about a third of the screen.
    assert.ok(poster.bright > 0.1, `the poster shows no xterm: ${JSON.stringify(poster)}`);

    // An allowed policy decision (the session's "open") is not styled like a denial.
    const allow = await rev.evaluate(() => {
      const m = document.querySelector('#player-scrub .marker-policy.decision-allow');
      const row = document.querySelector('#player-events .event-policy.decision-allow .event-text');
      const probe = document.createElement('div');
      probe.style.color = 'var(--danger)';
      document.body.append(probe);
      const danger = getComputedStyle(probe).color;
      probe.remove();
      return m && row && { marker: getComputedStyle(m).backgroundColor, text: getComputedStyle(row).color, danger };
    });
    assert.ok(allow, 'no allowed policy event shown');
    assert.notEqual(allow.marker, allow.danger, `allow marker styled as a denial: ${JSON.stringify(allow)}`);
    assert.notEqual(allow.text, allow.danger, `allow row styled as a denial: ${JSON.stringify(allow)}`);

    // Hovering at the moment: the thumbnail shows the xterm (white), as the video does.
    const bar = await rev.locator('#player-scrub').boundingBox();
    const x = bar.x + (momentMs / durationMs) * bar.width;
    await rev.mouse.move(x, bar.y + bar.height / 2);
    await rev.waitForFunction(() => {
      const img = document.querySelector('#player-thumb');
      return img && !img.hidden && img.complete && img.naturalWidth > 0;
    }, null, { timeout: 5000 });
    const thumb = await rev.evaluate(({ bx, vw }) => {
      const img = document.querySelector('#player-thumb');
      const c = document.createElement('canvas');
      c.width = img.naturalWidth; c.height = img.naturalHeight;
      const ctx = c.getContext('2d');
      ctx.drawImage(img, 0, 0);
      const s = img.naturalWidth / vw;
      const px = ctx.getImageData(Math.round((bx.x + bx.w / 2) * s), Math.round((bx.y + bx.h * 0.8) * s), 1, 1).data;
      return { src: img.getAttribute('src'), rgb: Array.from(px.slice(0, 3)) };
    }, { bx: box, vw: detail.inits[0].width });
    assert.ok(thumb.rgb.every((c) => c > 200), `the hover thumbnail at ${momentMs} ms does not show the xterm: ${JSON.stringify(thumb)}`);

    // Seek there by clicking the bar; the decoded frame at the new position.
    const played = await seekAndRead(rev, { momentMs, durationMs, box, name: 'played' });
    assert.deepEqual(missing(played.words), [], `the player's frame lacks words the source shows.\nsource:\n${source.text}\nplayer:\n${played.text}`);
    // Word for word, most of what the source reads is read in the recording too.
    const src = new Map();
    for (const w of source.words) src.set(w, (src.get(w) ?? 0) + 1);
    let common = 0;
    for (const w of played.words) if ((src.get(w) ?? 0) > 0) { common++; src.set(w, src.get(w) - 1); }
    const accuracy = common / source.words.length;
    assert.ok(accuracy >= 0.8, `word accuracy ${accuracy.toFixed(2)} of the source's.\nsource:\n${source.text}\nplayer:\n${played.text}`);
  } finally {
    await rev.context().close();
  }
});

test('a still screen lets go of the recording\'s encoder; what changes after it is recorded in the same file and plays', async () => {
  const still = await startGateway({ adminPassword: ADMIN, extraConfig: '[recording]\nrelease_encoder_after_secs = 2\n' });
  /** Recording times (ms) at which the gateway logged letting the encoder go. */
  const lettings = () => [...still.log().matchAll(/the recording's encoder is let go[^\n]*?t_ms=(\d+)/g)].map((m) => Number(m[1]));
  try {
    const api = await userWithTarget(still, aliceOnDesk);

    const { page, id } = await openSession(still.base);
    const startedAt = (await api.get(`/recordings/${id}`)).json.recording.started_at_ms;
    const box = xtermBox();
    const first = ['gooseberry', 'hinterland', '1848'];
    const second = ['zanzibar', 'quokka', '2718'];
    await page.click('canvas');
    await page.keyboard.type(`echo ${first.join(' ')}`);
    await page.keyboard.press('Enter');
    const firstShown = readSource(box, first).shotAt - startedAt;
    // The screen stays still after the echo: the encoder goes (the log says when).
    const letGoAt = await until('the encoder let go after the first line (gateway log)', () => lettings().find((t) => t > firstShown), 40000);
    // A change after that: a new encoder, in the same part.
    await page.keyboard.type(`echo ${second.join(' ')}`);
    await page.keyboard.press('Enter');
    const shownMs = readSource(box, second).shotAt - startedAt;
    // ...and it is let go again once the screen is still again.
    await until('the encoder let go after the second line (gateway log)', () => lettings().find((t) => t > shownMs), 40000);
    await page.context().close();

    // Stored as one part, with no hole in the timeline and a keyframe where the screen changed
    // after the encoder was let go.
    const detail = await completed(api, id);
    assert.equal(detail.inits.length, 1, `more than one part: ${JSON.stringify(detail.inits)}`);
    const segs = detail.segments;
    for (let i = 1; i < segs.length; i++) {
      assert.equal(segs[i].start_ms, segs[i - 1].end_ms, `a hole in the timeline: ${JSON.stringify(segs)}`);
    }
    // (The recording gets a change a moment after the target's screen shows it: x11vnc polls.)
    const resumed = segs.find((s) => s.key && s.start_ms > letGoAt);
    assert.ok(resumed && resumed.start_ms <= shownMs + 3000,
      `no keyframe between the encoder let go (${letGoAt} ms) and the second line shown (${shownMs} ms): ${JSON.stringify(segs)}`);

    const durationMs = segs.at(-1).end_ms;
    const rev = await openPlayer(still.base, id);
    try {
      // Played through the seam (the old encoder's last repeats, then the new one's keyframe)
      // without a decoding error...
      await seekAndRead(rev, { momentMs: Math.max(0, resumed.start_ms - 1500), durationMs, box, name: 'before-seam' });
      const to = resumed.start_ms / 1000 + 0.5;
      await rev.evaluate(() => { document.querySelector('#player-video').playbackRate = 2; });
      await rev.click('#player-play');
      await rev.waitForFunction((t) => {
        const v = document.querySelector('#player-video');
        return v.error !== null || v.currentTime >= t;
      }, to, { timeout: 20000 });
      const played = await rev.evaluate(() => {
        const v = document.querySelector('#player-video');
        v.pause();
        return { error: v.error && `${v.error.code} ${v.error.message}`, frames: v.getVideoPlaybackQuality().totalVideoFrames };
      });
      assert.equal(played.error, null, `the player failed across the seam: ${JSON.stringify(played)}`);
      // ...and the second line reads at the moment it was on screen.
      const momentMs = Math.min(shownMs + 1000, durationMs - 300);
      const read = await seekAndRead(rev, { momentMs, durationMs, box, name: 'played-still' });
      assert.deepEqual(missing(read.words, second), [], `the player's frame after the encoder came back lacks the second line:\n${read.text}`);
    } finally {
      await rev.context().close();
    }
  } finally {
    await still.stop();
  }
});
