// A window moved on a TigerVNC target (which sends CopyRect for it) reaches the browser as copy
// messages the canvas applies to itself, and the canvas ends equal to the X display.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startDesktop, startGateway, launchBrowser, newPage, openTarget, compareCanvasWith,
} from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const ALICE = 'alice-password-123';
const VNC_PASSWORD = 'vncsecret';

let tiger, gw, browser;

before(async () => {
  tiger = await startDesktop(VNC_PASSWORD, '1024x768', 'xvnc');
  gw = await startGateway({ adminPassword: ADMIN });
  browser = await launchBrowser();
  const admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  assert.equal((await admin.post('/users', { name: 'alice', password: ALICE, role: 'user' })).status, 201);
  assert.equal((await admin.post('/targets', { name: 'tiger', address: tiger.address, password: VNC_PASSWORD })).status, 201);
  assert.equal((await admin.post('/grants', { user: 'alice', target: 'tiger' })).status, 201);
});

after(async () => {
  await browser?.close();
  await gw?.stop();
  tiger?.stop();
});

// Xvnc draws the pointer into the picture it sends (the gateway asks for no cursor shape), and a
// screenshot leaves it out: it is parked in the bottom-right corner. A few dozen pixels of text
// differ slightly (|Δrgb| > 24) even before anything moved, for noVNC too (benches/bytes.mjs):
// allow 0.1% of the desktop. A window copied wrong differs by tens of thousands.
const POINTER_PIXELS = Math.round(1024 * 768 * 0.001);

/**
 * Compares until the canvas equals the display: after each newly painted frame (updates may
 * still be on their way); when no frame comes for 5 s, the canvas is as final as it gets.
 */
async function settledComparison(page) {
  const area = { x: 0, y: 0, w: 1024, h: 768 };
  for (let i = 0; i < 200; i++) {
    const painted = await page.evaluate(() => window.__portcullis.framesPainted);
    const cmp = await compareCanvasWith(page, tiger.screenshot(), area);
    if (cmp.differing <= POINTER_PIXELS) return cmp;
    try {
      await page.waitForFunction((n) => window.__portcullis.framesPainted > n, painted, { timeout: 5000 });
    } catch {
      break;
    }
  }
  return compareCanvasWith(page, tiger.screenshot(), area);
}

test('a moved window arrives as copies and the canvas equals the display', async () => {
  const page = await newPage(browser);
  await openTarget(page, gw.base, 'alice', ALICE, 'tiger');
  await page.waitForFunction(() => window.__portcullis?.sessionId && window.__portcullis.framesPainted >= 1, null, { timeout: 20000 });
  // Something in the window worth copying.
  tiger.xdotool('search', '--sync', '--name', 'portcullis-xterm', 'windowfocus', '--sync');
  tiger.xdotool('type', '--delay', '5', 'seq 1 40; echo copy-me\n');
  tiger.xdotool('mousemove', '1023', '767');
  const first = await settledComparison(page);
  assert.ok(first.differing <= POINTER_PIXELS, JSON.stringify(first));

  const id = tiger.xdotool('search', '--name', 'portcullis-xterm').trim().split('\n')[0];
  for (let i = 1; i <= 30; i++) {
    tiger.xdotool('windowmove', '--sync', id, String(40 + 7 * i), String(40 + 4 * i));
  }
  await page.waitForFunction(() => window.__portcullis.copiesPainted > 0, null, { timeout: 15000 });
  const cmp = await settledComparison(page);
  assert.ok(cmp.differing <= POINTER_PIXELS, JSON.stringify(cmp));
  const copies = await page.evaluate(() => window.__portcullis.copiesPainted);
  assert.ok(copies >= 5, `only ${copies} copies for 30 moves`);
  await page.context().close();
});
