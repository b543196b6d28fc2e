// Catch-up OCR through the real gateway, a real VNC desktop (Xvnc + xterm), Chromium and
// tesseract: a session recorded while screen reading was off holds no screen words; once the
// gateway runs again with reading on, it decodes the closed recording's video, reads the moments
// nobody read, and search finds the words on that screen at their moment, with their box. Its
// own gateway (restarted on the same data directory) and desktop.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import {
  startDesktop, startGateway, launchBrowser, newPage, openTarget, until, userWithTarget, typeInSession,
} from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const PASSWORD = 'alice-password-1234';
const VNC = 'catchup-vnc';
const MARK = `cu${process.pid}`;
const file = `/tmp/portcullis-catchup-${process.pid}.txt`;
let desk, gw, browser;

before(async () => {
  desk = await startDesktop(VNC, '1024x768', 'xvnc');
  browser = await launchBrowser();
  // Words tesseract reads reliably (a made-up mark might be misread by a letter).
  writeFileSync(file, 'harbour inventory\ngateway 10.77.88.99 archived ledger\n');
});

after(async () => {
  rmSync(file, { force: true });
  await browser?.close();
  await gw?.stop();
  desk?.stop();
});

/** GET /search as `client`, the hits. */
const hits = async (client, params) => {
  const r = await client.get(`/search?${new URLSearchParams(params)}`);
  assert.equal(r.status, 200, r.text);
  return r.json.hits;
};

test('moments nobody read while the session ran are read from its recording afterwards and found', async () => {
  // Screen reading off: the recording holds what was typed, no screen words.
  gw = await startGateway({ adminPassword: ADMIN, extraConfig: '[ocr]\nenabled = false\n' });
  let admin = await userWithTarget(gw, { adminPassword: ADMIN, password: PASSWORD, desktop: desk, vncPassword: VNC });
  const page = await newPage(browser);
  let id;
  try {
    await openTarget(page, gw.base, 'alice', PASSWORD, 'desk');
    id = await typeInSession(page, ['clear', `cat ${file}; echo shown${MARK} > /dev/null`]);
    // The typed line in the index means the screen showed the file a while ago.
    await until('the typed line in the index', async () => (await hits(admin, { q: `shown${MARK}` })).some((h) => h.recording === id), 30000);
  } finally {
    await page.context().close();
  }
  await until('the recording closed', async () => (await admin.get(`/recordings/${id}`)).json?.recording?.state === 'complete', 20000);
  assert.deepEqual((await hits(admin, { q: '10.77.88.99', kind: 'screen' })).filter((h) => h.recording === id), []);

  // The same gateway again with reading on (the default for recordings): it catches up.
  const dir = gw.dir;
  await gw.stop({ keep: true });
  const started = Date.now();
  gw = await startGateway({ adminPassword: ADMIN, dir, extraConfig: '[ocr]\ncpu_share = 1.0\n' });
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  let found;
  await until('the screen words of the closed recording in the index', async () => {
    found = (await hits(admin, { q: '10.77.88.99 ledger', kind: 'screen' })).find((h) => h.recording === id);
    return found;
  }, 90000);
  const caughtUpIn = Date.now() - started;
  // At the moment the file was on screen (within the recording), with the words boxed.
  const detail = (await admin.get(`/recordings/${id}`)).json.recording;
  assert.ok(found.t_ms > 0 && found.t_ms <= detail.duration_ms, `${found.t_ms} of ${detail.duration_ms}`);
  const box = found.boxes[0];
  assert.ok(box && box.w > 20 && box.h > 5 && box.x + box.w <= 1024 && box.y + box.h <= 768, JSON.stringify(found.boxes));
  assert.deepEqual(found.desktop, { width: 1024, height: 768 });
  // Once: the recording is not read again (its words are not in the index twice).
  await until('the catch-up said done', async () => /recording's screen caught up/.test(gw.log()), 20000);
  const again = (await hits(admin, { q: 'ledger', kind: 'screen' })).filter((h) => h.recording === id);
  const moments = again.map((h) => h.t_ms);
  assert.equal(new Set(moments).size, moments.length, JSON.stringify(again));
  console.log(`# caught up a closed recording's screen ${caughtUpIn} ms after the restart`);
});
