// Risk rules at work in real sessions: TigerVNC (Xvnc + xterm) as the target, headless Chromium
// as the user, the API as the security team. A command line a freeze rule matches is held back
// (its Enter never reaches the target) and the session frozen within 2 s; an alert rule lets the
// command run and flags the session; a kill rule ends it. Each test brings its own desktop and
// gateway.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import {
  startDesktop, startGateway, launchBrowser, openTarget, request, until, userWithTarget, recordedEvents,
} from './harness.mjs';
import * as H from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const ALICE = 'alice-password-123';
const SOC = 'soc-password-12345';

/** A desktop, a gateway whose policy carries `risk`, alice with a grant, sam of the SOC, a browser. */
async function setup(t, name, risk, extraConfig = '') {
  const desk = await startDesktop(name, '1024x768', 'xvnc');
  t.after(() => desk.stop());
  const gw = await startGateway({ adminPassword: ADMIN, extraConfig });
  t.after(() => gw.stop());
  const admin = await userWithTarget(gw, { adminPassword: ADMIN, password: ALICE, desktop: desk, vncPassword: name });
  assert.equal((await admin.post('/users', { name: 'sam', password: SOC, role: 'soc' })).status, 201);
  const doc = (await admin.get('/policy')).json.policy;
  doc.risk = risk;
  const r = await admin.put('/policy', doc);
  assert.equal(r.status, 200, r.text);
  const soc = gw.api();
  assert.equal((await soc.login('sam', SOC)).status, 200);
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const page = await H.newPage(browser);
  await openTarget(page, gw.base, 'alice', ALICE, 'desk');
  await page.waitForFunction(() => window.__portcullis?.sessionId && window.__portcullis.framesPainted >= 1, null, { timeout: 20000 });
  const id = await page.evaluate(() => window.__portcullis.sessionId);
  await page.click('#session-canvas', { position: { x: 300, y: 200 } });
  const post = (path, body) => request(gw.base, 'POST', `/api/v1${path}`, {
    body, headers: { cookie: soc.cookie, 'x-portcullis-csrf': '1' },
  });
  const live = async () => (await soc.get('/sessions')).json.find((s) => s.id === id);
  const marker = (tag) => {
    const path = `/tmp/portcullis-risk-${process.pid}-${tag}`;
    rmSync(path, { force: true });
    t.after(() => rmSync(path, { force: true }));
    return path;
  };
  return { desk, gw, admin, soc, page, id, post, live, marker };
}

test('a command line a freeze rule matches never runs: the session freezes within 2 s, the user is told, the SOC sees the risk, the trail and the recording keep it', async (t) => {
  const { gw, admin, page, id, post, live, marker } = await setup(t, 'risk-freeze', [
    { name: 'account_creation', action: 'freeze', score: 60 },
  ]);
  const held = marker('held');
  await page.keyboard.type(`touch ${held} # net user eve Passw0rd /add`);
  const typedAt = Date.now();
  await page.keyboard.press('Enter');
  const frozen = await until('the session to be frozen by the rule', async () => {
    const s = await live();
    return s?.frozen && s.risk_rules?.includes('account_creation') ? s : null;
  }, 5000);
  const ms = Date.now() - typedAt;
  console.log(`# typed → frozen seen by the SOC: ${ms} ms`);
  assert.ok(ms <= 2000, `frozen ${ms} ms after Enter (at most 2000)`);
  assert.equal(frozen.risk_score, 60);
  await page.waitForSelector('#session-frozen:not([hidden])', { timeout: 5000 });
  assert.match(await page.textContent('#clipboard-message'), /Your command line was not submitted: risk rule "account_creation"/);

  // The SOC console lists it first, highlighted, with its score and rules.
  const console_ = await H.newPage(page.context().browser());
  await H.uiLogin(console_, gw.base, 'sam', SOC);
  await console_.waitForSelector('#current-role', { timeout: 10000 });
  await console_.goto(`${gw.base}/#/soc`);
  const badge = await console_.waitForSelector(`.soc-card.is-risky [data-risk="${id}"]:not([hidden])`, { timeout: 10000 });
  assert.equal(await badge.textContent(), 'Risk 60');
  assert.match(await badge.getAttribute('title'), /account_creation/);
  await console_.context().close();

  // Let go, the same line submitted again: stopped again (the line is still on the prompt).
  assert.equal((await post(`/sessions/${id}/unfreeze`)).status, 204);
  await until('the unfreeze', async () => (await live())?.frozen === false);
  await page.keyboard.press('Enter');
  await until('the second freeze', async () => (await live())?.frozen === true, 5000);
  // Let go again; the user abandons the line (Ctrl+C) and runs something else: that runs, the
  // held line never did.
  assert.equal((await post(`/sessions/${id}/unfreeze`)).status, 204);
  await until('the unfreeze', async () => (await live())?.frozen === false);
  const ran = marker('ran');
  await page.keyboard.press('Control+c');
  await page.keyboard.type(`touch ${ran}`);
  await page.keyboard.press('Enter');
  await until('the next command to run', async () => existsSync(ran));
  assert.equal(existsSync(held), false, 'the line the rule stopped reached the shell');

  // The trail: the rule's hit (before the freeze), the freeze by the rule.
  // Oldest first (the API lists the newest first).
  const trail = (await admin.get(`/audit?session=${id}&limit=200`)).json.entries.sort((a, b) => a.seq - b.seq);
  const hits = trail.filter((e) => e.kind === 'risk');
  assert.equal(hits.length, 2, JSON.stringify(hits));
  assert.equal(hits[0].detail.rule, 'account_creation');
  assert.equal(hits[0].detail.action, 'freeze');
  assert.equal(hits[0].detail.source, 'typed');
  // What was typed (a password here) stays in the recording; the trail and the SIEM never get it.
  assert.equal(hits[0].detail.excerpt, undefined);
  assert.ok(!JSON.stringify(trail).includes('Passw0rd'), 'the typed password is in the trail');
  const freezes = trail.filter((e) => e.kind === 'session_freeze');
  assert.equal(freezes[0]?.actor, 'risk rule account_creation', JSON.stringify(freezes));
  assert.ok(hits[0].seq < freezes[0].seq, 'the hit is on record before the freeze');

  // Closed: the event track keeps the hit; the recordings list sorts and filters by risk; a
  // high-risk session is its own record for the SIEM.
  assert.equal((await admin.del(`/sessions/${id}`)).status, 204);
  const events = await recordedEvents(admin, id);
  assert.ok(events.some((e) => e.type === 'risk' && e.rule === 'account_creation' && e.action === 'freeze'
    && /net user eve Passw0rd \/add/.test(e.excerpt)), JSON.stringify(events));
  const risky = (await admin.get('/recordings?sort=risk&min_risk=60')).json;
  assert.deepEqual(risky.map((r) => [r.id, r.risk_score, r.risk_rules]), [[id, 60, ['account_creation']]]);
  assert.equal((await admin.get('/recordings?min_risk=61')).json.length, 0);
  assert.equal((await admin.get('/recordings?sort=loudest')).status, 400);
  const high = await until('the high-risk record', async () => (await admin.get(`/audit?session=${id}&limit=200`)).json.entries
    .find((e) => e.kind === 'session_high_risk'));
  assert.equal(high.detail.risk_score, 60);
  assert.deepEqual(high.detail.risk_rules, ['account_creation']);
});

test('an alert rule lets the command run and flags the session; a kill rule ends it with the reason; a bad rule is refused', async (t) => {
  const { admin, page, id, live, marker } = await setup(t, 'risk-kill', [
    { name: 'no_shred', pattern: '\\bshred-everything\\b', on: ['typed'], action: 'kill', score: 30 },
  ]);
  // Built-in log_clearing alerts (its shipped action): the command runs, the session is flagged.
  const ran = marker('alert');
  await page.keyboard.type(`touch ${ran} # history -c`);
  await page.keyboard.press('Enter');
  await until('the alerted command to run', async () => existsSync(ran));
  const flagged = await until('the flag', async () => {
    const s = await live();
    return s?.risk_rules?.includes('log_clearing') ? s : null;
  });
  assert.equal(flagged.frozen, false);
  assert.equal(flagged.risk_score, 50);

  const killed = marker('kill');
  await page.keyboard.type(`echo shred-everything > ${killed}`);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#session-error:not([hidden])', { timeout: 5000 });
  assert.match(await page.textContent('#session-error'), /ended by the risk rule "no_shred"/);
  const events = await recordedEvents(admin, id);
  assert.equal(existsSync(killed), false, 'the line the kill rule stopped reached the shell');
  const end = events.find((e) => e.type === 'session_end');
  assert.match(end?.reason ?? '', /no_shred/);
  const trail = (await admin.get(`/audit?session=${id}&limit=200`)).json.entries.sort((a, b) => a.seq - b.seq);
  assert.deepEqual(trail.filter((e) => e.kind === 'risk').map((e) => [e.detail.rule, e.detail.action]),
    [['log_clearing', 'alert'], ['no_shred', 'kill']]);

  // A pattern the engine refuses: 400 naming the rule and the field; the policy is unchanged.
  const doc = (await admin.get('/policy')).json.policy;
  const r = await admin.put('/policy', { ...doc, risk: [{ name: 'broken', pattern: '(unclosed' }] });
  assert.equal(r.status, 400, r.text);
  assert.match(r.text, /risk rule \\?"broken\\?": pattern: not a valid regular expression/);
  assert.deepEqual((await admin.get('/policy')).json.policy.risk, doc.risk);
});

test('text a screen rule matches raises an alert once it is on the screen: a file shown with cat (OCR path)', async (t) => {
  // Only on the screen: typing the command to show the file does not match it.
  // The whole core for reading: a slow machine's first read of the full screen does not push
  // the next one back by its rest.
  const { admin, page, id, live } = await setup(t, 'risk-screen', [
    { name: 'account_creation', on: ['screen'], action: 'alert', score: 45 },
  ], '[ocr]\ncpu_share = 1.0\n');
  const file = `/tmp/portcullis-risk-${process.pid}-notes.txt`;
  writeFileSync(file, 'todo for friday:\nnet user eve Passw0rd /add\n');
  t.after(() => rmSync(file, { force: true }));
  await page.keyboard.type(`cat ${file}`);
  const shownAt = Date.now();
  await page.keyboard.press('Enter');
  const flagged = await until('the alert from the screen', async () => {
    const s = await live();
    return s?.risk_rules?.includes('account_creation') ? s : null;
  }, 15000);
  const ms = Date.now() - shownAt;
  console.log(`# text shown → alert seen by the SOC: ${ms} ms`);
  // The goal is 2 s (settle 500 ms + one tesseract read of the changed lines, ≈1.3 s here);
  // a loaded machine gets more room: this checks the path, the figure is reported.
  assert.ok(ms <= 10000, `alerted ${ms} ms after the text was shown`);
  assert.equal(flagged.frozen, false, 'an alert does not freeze');
  assert.equal(flagged.risk_score, 45);
  const hit = (await admin.get(`/audit?session=${id}&limit=200`)).json.entries.find((e) => e.kind === 'risk');
  assert.equal(hit.detail.source, 'screen');
  assert.equal(hit.detail.action, 'alert');
  assert.equal((await admin.del(`/sessions/${id}`)).status, 204);
  const events = await recordedEvents(admin, id);
  assert.ok(events.some((e) => e.type === 'risk' && e.source === 'screen' && /net user eve \S+ \/add/.test(e.excerpt)), JSON.stringify(events));
});

test('behaviour: after a history of sessions on one target, the first session on another scores, with the reason', async (t) => {
  const desk = await startDesktop('risk-habit', '1024x768', 'xvnc');
  t.after(() => desk.stop());
  const gw = await startGateway({ adminPassword: ADMIN });
  t.after(() => gw.stop());
  const admin = await userWithTarget(gw, { adminPassword: ADMIN, password: ALICE, desktop: desk, vncPassword: 'risk-habit' });
  // The same desktop under a second name: a target alice never used.
  assert.equal((await admin.post('/targets', { name: 'desk2', address: desk.address, password: 'risk-habit' })).status, 201);
  assert.equal((await admin.post('/grants', { user: 'alice', target: 'desk2' })).status, 201);
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const session = async (target) => {
    const page = await H.newPage(browser);
    await openTarget(page, gw.base, 'alice', ALICE, target);
    await page.waitForFunction(() => window.__portcullis?.sessionId && window.__portcullis.framesPainted >= 1, null, { timeout: 20000 });
    return { page, id: await page.evaluate(() => window.__portcullis.sessionId) };
  };
  // Six sessions on desk, one after another (five make a history; the sixth's lesson may land
  // a moment after its end).
  for (let i = 0; i < 6; i++) {
    const { page, id } = await session('desk');
    assert.equal((await admin.get('/sessions')).json.find((s) => s.id === id)?.risk_rules?.length, 0, `session ${i} scored`);
    await page.context().close();
    await until('the session to end', async () => (await admin.get('/sessions')).json.length === 0);
  }
  const { id } = await session('desk2');
  const flagged = await until('the behaviour rule', async () => {
    const s = (await admin.get('/sessions')).json.find((x) => x.id === id);
    return s?.risk_rules?.length ? s : null;
  });
  assert.deepEqual(flagged.risk_rules, ['first_time_target']);
  assert.equal(flagged.risk_score, 15);
  assert.equal(flagged.frozen, false, 'a behaviour rule only scores by default');
  const hit = (await admin.get(`/audit?session=${id}&limit=200`)).json.entries.find((e) => e.kind === 'risk');
  assert.equal(hit.detail.source, 'behaviour');
  assert.equal((await admin.del(`/sessions/${id}`)).status, 204);
  const events = await recordedEvents(admin, id);
  assert.ok(events.some((e) => e.type === 'risk' && /first session on desk2 after \d+ sessions on other targets/.test(e.excerpt)), JSON.stringify(events));
  // Alice sees her recording, not what the gateway holds against her.
  const alice = gw.api();
  assert.equal((await alice.login('alice', ALICE)).status, 200);
  const mine = (await alice.get('/recordings')).json.find((r) => r.id === id);
  assert.equal(mine.risk_score, 0);
  assert.deepEqual(mine.risk_rules, []);
  assert.ok(!(await alice.get(`/recordings/${id}/events`)).json.some((e) => e.type === 'risk'));
});

test('clipboard volume: a session that moves more clipboard text than the rule\'s limit is flagged while it runs, with how much', async (t) => {
  const { page, id, live, admin } = await setup(t, 'risk-volume', [
    { name: 'clipboard_volume', limit_bytes: 1000, action: 'alert', score: 25 },
  ]);
  const chunk = 'v'.repeat(600);
  // Under the limit: nothing.
  await page.fill('#local-clipboard', chunk);
  await page.click('#send-clipboard');
  await until('the first paste counted', async () => (await live())?.clipboard_bytes >= 600, 10000);
  assert.deepEqual((await live()).risk_rules ?? [], []);
  // Over it: flagged within 2 s of the paste that crossed it.
  await page.fill('#local-clipboard', chunk + 'w');
  const sentAt = Date.now();
  await page.click('#send-clipboard');
  const flagged = await until('clipboard_volume to fire', async () => {
    const s = await live();
    return s?.risk_rules?.includes('clipboard_volume') ? s : null;
  }, 10000);
  const ms = Date.now() - sentAt;
  console.log(`# paste → flagged seen by the SOC: ${ms} ms`);
  assert.ok(ms <= 2000, `flagged ${ms} ms after the paste (at most 2000)`);
  assert.equal(flagged.risk_score, 25);
  assert.equal(flagged.frozen, false, 'an alert does not freeze');
  await page.context().close();
  const events = await H.recordedEvents(admin, id);
  const hit = events.find((e) => e.type === 'risk' && e.rule === 'clipboard_volume');
  assert.ok(hit, JSON.stringify(events.map((e) => e.type)));
  assert.match(hit.excerpt, /^1201 bytes of clipboard text crossed$/);
});

test('the SOC console is told at once: a rule firing highlights the session without waiting for the next poll', async (t) => {
  const { gw, page, id } = await setup(t, 'risk-push', [{ name: 'account_creation', action: 'alert', score: 40 }]);
  const console_ = await H.newPage(page.context().browser());
  t.after(() => console_.context().close());
  await H.uiLogin(console_, gw.base, 'sam', SOC);
  await console_.waitForSelector('#nav-soc');
  await console_.click('#nav-soc');
  await console_.waitForSelector(`.soc-card[data-session="${id}"]`);
  // The stream is open (its first event came).
  await console_.waitForFunction(() => (window.__portcullis?.socPushes ?? 0) >= 1, null, { timeout: 10000 });
  // Only the stream keeps the page current from here (its poll paused).
  await console_.evaluate(() => { window.__portcullis.socPollPaused = true; });
  const pushesBefore = await console_.evaluate(() => window.__portcullis.socPushes);
  await page.keyboard.type('echo net user eve Passw0rd /add');
  const typedAt = Date.now();
  await page.keyboard.press('Enter');
  await console_.waitForSelector(`.soc-card[data-session="${id}"].is-risky`, { timeout: 10000 });
  const ms = Date.now() - typedAt;
  console.log(`# typed → highlighted on the SOC console: ${ms} ms`);
  assert.ok((await console_.evaluate(() => window.__portcullis.socPushes)) > pushesBefore, 'told by the stream');
  assert.ok(ms <= 2000, `highlighted ${ms} ms after Enter`);
  assert.match(await console_.textContent(`.soc-card[data-session="${id}"]`), /Risk 40/);
});
