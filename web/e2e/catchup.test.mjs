// Catch-up OCR through the real gateway, a real VNC desktop (Xvnc + xterm), Chromium and
// tesseract. A session recorded while the gateway meant to read screens but could not (here:
// tesseract not found) holds no screen words; once the gateway runs again with tesseract, it
// decodes the closed recording's video, reads the moments nobody read, and search finds the
// words on that screen at their moment, with their box, once. A session recorded with reading
// turned off (`[ocr] recordings = false`) is not read afterwards either. One gateway, restarted
// on the same data directory, and its own desktop.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startDesktop, startGateway, launchBrowser, newPage, openTarget, until, userWithTarget, typeInSession,
} from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const PASSWORD = 'alice-password-1234';
const VNC = 'catchup-vnc';
const MARK = `cu${process.pid}`;
const shown = `/tmp/portcullis-catchup-${process.pid}.txt`;
const hidden = `/tmp/portcullis-catchup-off-${process.pid}.txt`;
// A PATH with what the gateway runs besides tesseract (nice, chrt, renice): tesseract missing.
const noTesseract = mkdtempSync(join(tmpdir(), 'pc-no-ocr-'));
let desk, gw, browser;

before(async () => {
  desk = await startDesktop(VNC, '1024x768', 'xvnc');
  browser = await launchBrowser();
  // Words tesseract reads reliably (a made-up mark might be misread by a letter).
  writeFileSync(shown, 'harbour inventory\ngateway 10.77.88.99 archived ledger\n');
  writeFileSync(hidden, 'confidential quarterly forecast\nsalary 10.44.55.66 private\n');
  for (const tool of ['nice', 'chrt', 'renice']) symlinkSync(`/usr/bin/${tool}`, join(noTesseract, tool));
});

after(async () => {
  rmSync(shown, { force: true });
  rmSync(hidden, { force: true });
  rmSync(noTesseract, { recursive: true, force: true });
  await browser?.close();
  await gw?.stop();
  desk?.stop();
});

/** GET /search as `client`, the hits of recording `id`. */
const hitsOf = async (client, id, params) => {
  const r = await client.get(`/search?${new URLSearchParams(params)}`);
  assert.equal(r.status, 200, r.text);
  return r.json.hits.filter((h) => h.recording === id);
};

/** Alice shows `file` in a session, which is then closed; its recording's id. */
async function show(admin, file) {
  const page = await newPage(browser);
  let id;
  try {
    await openTarget(page, gw.base, 'alice', PASSWORD, 'desk');
    id = await typeInSession(page, ['clear', `cat ${file}; echo shown${MARK} > /dev/null`]);
    // The typed line in the index means the screen showed the file a while ago.
    await until('the typed line in the index', async () => (await hitsOf(admin, id, { q: `shown${MARK}` })).length > 0, 30000);
  } finally {
    await page.context().close();
  }
  await until('the recording closed', async () => (await admin.get(`/recordings/${id}`)).json?.recording?.state === 'complete', 20000);
  return id;
}

/** The gateway again on the same data directory, with `extraConfig` and `env`; an admin client. */
async function restart(extraConfig, env = {}) {
  const dir = gw.dir;
  await gw.stop({ keep: true });
  gw = await startGateway({ adminPassword: ADMIN, dir, extraConfig, env });
  const admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  return admin;
}

test('moments nobody read while the session ran are read from its recording afterwards and found once; a recording made with reading off stays unread', async () => {
  // Reading turned off for recordings: this session's screen is not to be read, ever.
  gw = await startGateway({ adminPassword: ADMIN, extraConfig: '[ocr]\nrecordings = false\n' });
  let admin = await userWithTarget(gw, { adminPassword: ADMIN, password: PASSWORD, desktop: desk, vncPassword: VNC });
  const off = await show(admin, hidden);

  // Reading on, but tesseract cannot be found: the recording holds what was typed, no screen words.
  admin = await restart('[ocr]\ncpu_share = 1.0\n', { PATH: noTesseract });
  assert.match(gw.log(), /screen text reading is off \(install tesseract-ocr/);
  const missed = await show(admin, shown);
  assert.deepEqual(await hitsOf(admin, missed, { q: '10.77.88.99', kind: 'screen' }), []);

  // The same gateway with tesseract: it catches up on the recording it meant to read.
  const started = Date.now();
  admin = await restart('[ocr]\ncpu_share = 1.0\n');
  let found;
  await until('the screen words of the closed recording in the index', async () => {
    [found] = await hitsOf(admin, missed, { q: '10.77.88.99 ledger', kind: 'screen' });
    return found;
  }, 90000);
  const caughtUpIn = Date.now() - started;
  // At the moment the file was on screen (within the recording), with the words boxed.
  const detail = (await admin.get(`/recordings/${missed}`)).json.recording;
  assert.ok(found.t_ms > 0 && found.t_ms <= detail.duration_ms, `${found.t_ms} of ${detail.duration_ms}`);
  const box = found.boxes[0];
  assert.ok(box && box.w > 20 && box.h > 5 && box.x + box.w <= 1024 && box.y + box.h <= 768, JSON.stringify(found.boxes));
  assert.deepEqual(found.desktop, { width: 1024, height: 768 });

  // The recording made with reading off is passed over (newest first: after the other).
  const caughtUp = (id) => gw.log().split('\n').some((l) => l.includes("recording's screen caught up") && l.includes(id));
  await until('the recording made with reading off passed over', async () => caughtUp(off), 60000);
  // A later session, read live and caught up after it: the reader takes it only once the
  // indexer added what was read before (so the words below are all there are).
  const later = await show(admin, shown);
  await until('the later recording caught up', async () => caughtUp(later), 60000);
  // Read once: no moment of the missed recording is in the index twice.
  const moments = (await hitsOf(admin, missed, { q: 'ledger', kind: 'screen' })).map((h) => h.t_ms);
  assert.ok(moments.length >= 1 && new Set(moments).size === moments.length, JSON.stringify(moments));
  // The recording made with reading off: not read afterwards.
  assert.deepEqual(await hitsOf(admin, off, { q: '10.44.55.66', kind: 'screen' }), []);
  assert.deepEqual(await hitsOf(admin, off, { q: 'forecast', kind: 'screen' }), []);
  console.log(`# caught up a closed recording's screen ${caughtUpIn} ms after the restart`);
});
