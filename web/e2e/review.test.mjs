// The review workflow through the real gateway, a real VNC desktop (Xvnc + xterm) and Chromium:
// a reviewer flags a moment in the player (a marker on the scrub bar, a row in the events list),
// marks the recording reviewed, finds it by its review in the list and downloads the report for
// auditors (who, what, when, risk, the review, the flagged moment with its picture, the typed
// command); everything is in the audit trail first. Plain users may not review (not even their own
// sessions); a flag is taken back only by its author or an administrator; notes cannot become
// markup in the report; a session still being recorded can be flagged but not marked reviewed.
// Its own gateway and desktop.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  startDesktop, startGateway, launchBrowser, newPage, uiLogin, until, userWithTarget,
  typeInSession,
} from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const PASSWORD = (name) => `${name}-password-1234`;
const VNC = 'review-vnc';
const MARK = `rv${process.pid}`;
let desk, gw, admin, browser;
/** The session recorded in `before` (closed, complete) and its length (ms). */
let recorded, duration;
/** Moments inside it. */
const at = (fraction) => Math.floor(duration * fraction);

/** Opens the desktop as `user` (alice) in a new page and types `lines`; the page and the session id. */
async function session(lines, user = 'alice') {
  const page = await newPage(browser);
  try {
    await uiLogin(page, gw.base, user, PASSWORD(user));
    // Reviewers land on the recordings: the targets are a click away.
    await page.waitForSelector('#nav-targets');
    await page.click('#nav-targets');
    await page.waitForSelector('[data-target="desk"]', { timeout: 10000 });
    await page.click('[data-target="desk"]');
    return { page, id: await typeInSession(page, lines) };
  } catch (e) {
    await page.context().close();
    throw e;
  }
}

/** An API client logged in as `name`. */
async function as(name) {
  const c = gw.api();
  assert.equal((await c.login(name, PASSWORD(name))).status, 200);
  return c;
}

/** The review records of recording `id` in the trail, oldest first. */
async function reviewRecords(id) {
  const r = await admin.get(`/audit?kind=review&session=${encodeURIComponent(id)}&limit=100`);
  assert.equal(r.status, 200, r.text);
  return r.json.entries.sort((a, b) => a.seq - b.seq);
}

before(async () => {
  desk = await startDesktop(VNC, '1024x768', 'xvnc');
  // Recordings are kept 30 days by the configuration: the floor the policy's entries can only raise.
  gw = await startGateway({ adminPassword: ADMIN, extraConfig: '[recording]\nretention_days = 30\n' });
  browser = await launchBrowser();
  admin = await userWithTarget(gw, { adminPassword: ADMIN, password: PASSWORD('alice'), desktop: desk, vncPassword: VNC });
  for (const [name, role] of [['rita', 'reviewer'], ['sam', 'soc'], ['rex', 'reviewer']]) {
    assert.equal((await admin.post('/users', { name, password: PASSWORD(name), role })).status, 201);
  }
  // A reviewer who also works on the desktop.
  assert.equal((await admin.post('/grants', { user: 'rex', target: 'desk' })).status, 201);
  ({ id: recorded, duration } = await recordOne());
});

/** A closed recording of alice typing a line (`echo payroll…`): its id and length (ms). */
async function recordOne() {
  const s = await session([`echo payroll${MARK} > /dev/null`]);
  await until('the typed line in the event track', async () => {
    const events = (await admin.get(`/recordings/${s.id}/events`)).json ?? [];
    return events.some((e) => e.type === 'keys' && e.text.includes(`payroll${MARK}`));
  }, 20000);
  await s.page.context().close();
  await until('the recording closed', async () => (await admin.get(`/recordings/${s.id}`)).json?.recording?.state === 'complete', 20000);
  const length = (await admin.get(`/recordings/${s.id}`)).json.recording.duration_ms;
  assert.ok(length > 100, `a recording of ${length} ms`);
  return { id: s.id, duration: length };
}

after(async () => {
  await browser?.close();
  await gw?.stop();
  desk?.stop();
});

test('a reviewer flags a moment and marks the recording reviewed in the player, and downloads the report', async () => {
  // A recording of its own: no other test's flags or marks on it.
  const { id: mine } = await recordOne();
  const page = await newPage(browser);
  try {
    await uiLogin(page, gw.base, 'rita', PASSWORD('rita'));
    await page.waitForSelector('#nav-recordings');
    await page.goto(`${gw.base}/#/recordings/${mine}`);
    await page.waitForFunction(() => window.__portcullis?.player?.ready === true, null, { timeout: 20000 });
    await page.waitForSelector('#review-status');
    await page.waitForFunction(() => document.querySelector('#review-status')?.textContent === 'Not reviewed.');
    // Marking a recording reviewed while nothing was flagged is allowed; flag first here.
    const note = `typed payroll${MARK} at this moment`;
    await page.fill('#flag-note', note);
    await page.click('#flag-add');
    await page.waitForSelector('#review-flags .flag-row');
    // The flag is a marker on the scrub bar and a row in the events list.
    await page.waitForSelector('#player-scrub .marker-flag');
    assert.match(await page.textContent('#player-events'), new RegExp(`Flagged by rita: typed payroll${MARK}`));
    await page.fill('#review-comment', 'looked at the typed commands: fine');
    await page.click('#review-mark');
    await page.waitForFunction(() => /^Reviewed by rita/.test(document.querySelector('#review-status')?.textContent ?? ''));
    assert.match(await page.textContent('#review-status'), /looked at the typed commands: fine/);

    // The report: who, where, the review, the flagged moment with its picture, the typed line.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#player-report')]);
    assert.equal(download.suggestedFilename(), `portcullis-report-${mine}.html`);
    const html = readFileSync(await download.path(), 'utf8');
    assert.match(html, /<h1>Session report: alice on desk<\/h1>/);
    assert.match(html, /Reviewed by rita on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: <q>looked at the typed commands: fine<\/q>/);
    assert.match(html, new RegExp(`Flagged moments \\(1\\)[\\s\\S]*typed payroll${MARK} at this moment[\\s\\S]*data:image/jpeg;base64,/9j/`));
    assert.match(html, new RegExp(`<code>echo payroll${MARK} &gt; /dev/null</code>`));
    assert.match(html, /session started from 127\.0\.0\.1/);
    assert.doesNotMatch(html, /<script/i);

    // The list shows it reviewed, with its flag, and filters by review.
    await page.goto(`${gw.base}/#/recordings`);
    await page.waitForSelector(`#recordings-table tr[data-id="${mine}"] .review-cell[data-review="reviewed"]`);
    assert.match(await page.textContent(`#recordings-table tr[data-id="${mine}"] .review-cell`), /reviewed ⚑1/);
    await page.selectOption('#rec-filter-review', 'unreviewed');
    await page.waitForSelector(`#recordings-table tr[data-id="${mine}"]`, { state: 'detached' });
    await page.selectOption('#rec-filter-review', 'reviewed');
    await page.waitForSelector(`#recordings-table tr[data-id="${mine}"]`);
  } finally {
    await page.context().close();
  }
  // On record before each happened: flagged, reviewed, then the report (an export).
  const records = await reviewRecords(mine);
  const flagged = records.find((e) => e.actor === 'rita' && e.detail.action === 'flagged');
  const reviewed = records.find((e) => e.actor === 'rita' && e.detail.action === 'reviewed');
  assert.ok(flagged && reviewed, JSON.stringify(records));
  assert.ok(flagged.seq < reviewed.seq);
  assert.equal(flagged.detail.user, 'alice');
  assert.match(flagged.detail.note, new RegExp(`payroll${MARK}`));
  assert.equal(reviewed.detail.comment, 'looked at the typed commands: fine');
  const exports = (await admin.get(`/audit?kind=export&session=${encodeURIComponent(mine)}&limit=20`)).json.entries;
  assert.ok(exports.some((e) => e.actor === 'rita' && e.detail.what === 'report' && e.seq > reviewed.seq), JSON.stringify(exports));
});

test('plain users do not review, not even their own sessions; nothing about reviews reaches them', async () => {
  const alice = await as('alice');
  assert.equal((await alice.get(`/recordings/${recorded}/review`)).status, 403);
  assert.equal((await alice.post(`/recordings/${recorded}/flags`, { t_ms: at(0.5), note: 'mine' })).status, 403);
  assert.equal((await alice.post(`/recordings/${recorded}/review`, { state: 'reviewed', comment: '' })).status, 403);
  assert.equal((await alice.get(`/recordings/${recorded}/report`)).status, 403);
  assert.equal((await alice.get('/recordings?review=unreviewed')).status, 403);
  const listed = (await alice.get('/recordings')).json;
  const own = listed.find((r) => r.id === recorded);
  assert.ok(own, 'alice lists her own recording');
  assert.equal('review' in own, false);
  assert.equal('flags' in own, false);
  assert.equal((await reviewRecords(recorded)).filter((e) => e.actor === 'alice').length, 0);
});

test('bad marks and flags are refused with a reason; notes cannot become markup in the report', async () => {
  const rita = await as('rita');
  const refused = async (path, body, status, pattern) => {
    const r = await rita.post(path, body);
    assert.equal(r.status, status, `${JSON.stringify(body)}: ${r.text}`);
    assert.match(r.json.error, pattern);
  };
  await refused(`/recordings/${recorded}/flags`, { t_ms: duration + 60_000, note: 'later' }, 400, /t_ms: the recording is \d+ ms long/);
  await refused(`/recordings/${recorded}/flags`, { t_ms: at(0.5), note: '   ' }, 400, /note: say what is at this moment/);
  await refused(`/recordings/${recorded}/flags`, { t_ms: at(0.5), note: 'x'.repeat(2001) }, 400, /at most|1 to 2000/);
  await refused(`/recordings/${recorded}/flags`, { t_ms: at(0.5), note: 'bell\u0007' }, 400, /printable/);
  await refused(`/recordings/${recorded}/flags`, { t_ms: -1, note: 'before' }, 400, /t_ms/);
  await refused(`/recordings/${recorded}/review`, { state: 'reopened', comment: '' }, 400, /say why/);
  await refused(`/recordings/${recorded}/review`, { state: 'approved', comment: '' }, 400, /state/);
  assert.equal((await rita.post('/recordings/no-such-recording/flags', { t_ms: 0, note: 'x' })).status, 404);

  const evil = `<script>alert(1)</script><img src=x onerror=alert(2)> ${MARK}`;
  const r = await rita.post(`/recordings/${recorded}/flags`, { t_ms: at(0.6), note: evil });
  assert.equal(r.status, 201, r.text);
  assert.match(r.json.id, /^flag_/);
  const report = await rita.get(`/recordings/${recorded}/report`);
  assert.equal(report.status, 200);
  assert.match(report.headers['content-type'], /^text\/html/);
  assert.match(report.headers['content-disposition'], /^attachment; filename="portcullis-report-/);
  assert.match(report.headers['content-security-policy'], /default-src 'none'; img-src data:/);
  assert.doesNotMatch(report.text, /<script|<img src=x/);
  assert.ok(report.text.includes(`&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt; ${MARK}`));
  const review = (await rita.get(`/recordings/${recorded}/review`)).json;
  assert.ok(review.flags.some((f) => f.id === r.json.id && f.note === evil && f.by === 'rita'));
});

test('a flag is taken back by its author or an administrator only, on record first', async () => {
  const rita = await as('rita');
  const sam = await as('sam');
  const made = await rita.post(`/recordings/${recorded}/flags`, { t_ms: at(0.7), note: `take back ${MARK}` });
  assert.equal(made.status, 201, made.text);
  const flag = made.json.id;
  const other = await sam.del(`/recordings/${recorded}/flags/${flag}`);
  assert.equal(other.status, 403, other.text);
  assert.match(other.json.error, /only rita \(who flagged it\) or an administrator/);
  const samFlag = (await sam.post(`/recordings/${recorded}/flags`, { t_ms: at(0.8), note: `sam's ${MARK}` })).json.id;
  assert.equal((await sam.del(`/recordings/${recorded}/flags/${samFlag}`)).status, 204, 'its author');
  assert.equal((await admin.del(`/recordings/${recorded}/flags/${flag}`)).status, 204, 'an administrator');
  assert.equal((await admin.del(`/recordings/${recorded}/flags/${flag}`)).status, 404, 'gone');
  const flags = (await rita.get(`/recordings/${recorded}/review`)).json.flags.map((f) => f.id);
  assert.ok(!flags.includes(flag) && !flags.includes(samFlag), JSON.stringify(flags));
  const records = await reviewRecords(recorded);
  const unflagged = records.filter((e) => e.detail.action === 'unflagged').map((e) => [e.actor, e.detail.flag]);
  assert.deepEqual(unflagged.filter(([, f]) => f === flag || f === samFlag), [['sam', samFlag], ['admin', flag]]);
  assert.ok(records.find((e) => e.detail.action === 'unflagged' && e.detail.flag === flag).detail.flagged_by === 'rita');
});

test('the security team flags a session while it is being recorded; it is marked reviewed only once ended', async () => {
  const sam = await as('sam');
  const live = await session([`echo live${MARK} > /dev/null`]);
  try {
    await until('the live recording listed', async () => (await sam.get(`/recordings/${live.id}`)).json?.recording?.state === 'recording', 20000);
    const r = await sam.post(`/recordings/${live.id}/flags`, { t_ms: 0, note: `watching ${MARK}` });
    assert.equal(r.status, 201, r.text);
    const early = await sam.post(`/recordings/${live.id}/review`, { state: 'reviewed', comment: 'too soon' });
    assert.equal(early.status, 409, early.text);
    assert.match(early.json.error, /still being recorded/);
  } finally {
    await live.page.context().close();
  }
  await until('the recording closed', async () => (await sam.get(`/recordings/${live.id}`)).json?.recording?.state === 'complete', 20000);
  const done = await sam.post(`/recordings/${live.id}/review`, { state: 'reviewed', comment: 'ok' });
  assert.equal(done.status, 200, done.text);
  assert.equal(done.json.reviewed.by, 'sam');
  assert.equal(done.json.flags.length, 1);
  const records = await reviewRecords(live.id);
  const reviewed = records.filter((e) => e.detail.action === 'reviewed');
  assert.ok(reviewed.some((e) => e.detail.comment === 'ok'), JSON.stringify(records));
});

test('how long a recording is kept follows the policy\'s retention entries, never below the configuration\'s', async () => {
  const before = (await admin.get('/policy')).json.policy;
  const put = async (retention) => admin.put('/policy', { ...before, retention });
  try {
    // No entry: the configuration's 30 days.
    const ended = (await admin.get(`/recordings/${recorded}`)).json.recording.ended_at_ms;
    let keep = (await admin.get(`/recordings/${recorded}`)).json.keep;
    assert.deepEqual(keep, { until_ms: ended + 30 * 86_400_000, rule: null, days: 30 });
    // An entry shorter than the configuration's changes nothing: the policy (changed through the
    // API) keeps longer, never shorter.
    let r = await put([{ name: 'purge', days: 1 }]);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual((await admin.get(`/recordings/${recorded}`)).json.keep, keep);
    r = await put([
      { name: 'high-risk', min_risk: 50, days: 730 },
      { name: 'desks', targets: ['name:desk'], days: 90 },
    ]);
    assert.equal(r.status, 200, r.text);
    const detail = (await admin.get(`/recordings/${recorded}`)).json;
    keep = detail.keep;
    assert.equal(keep.rule, 'desks', JSON.stringify(keep));
    assert.equal(keep.days, 90);
    assert.equal(keep.until_ms, detail.recording.ended_at_ms + 90 * 86_400_000);
    // The player says so.
    const page = await newPage(browser);
    try {
      await uiLogin(page, gw.base, 'rita', PASSWORD('rita'));
      await page.waitForSelector('#nav-recordings');
      await page.goto(`${gw.base}/#/recordings/${recorded}`);
      await page.waitForFunction(() => /90 days, retention rule desks/.test(document.querySelector('#player-keep')?.textContent ?? ''), null, { timeout: 20000 });
    } finally {
      await page.context().close();
    }
    // Plain users are not told (the risk decides it too).
    assert.equal('keep' in (await (await as('alice')).get(`/recordings/${recorded}`)).json, false);
    // Bad entries are refused, naming the entry and the field; nothing changes.
    r = await put([{ name: 'forever-and-more', days: 40000 }]);
    assert.equal(r.status, 400);
    assert.match(r.json.error, /retention "forever-and-more": days: 40000 days is more than the 36500 allowed/);
    r = await put([{ name: 'x', days: 1, weeks: 2 }]);
    assert.equal(r.status, 400);
    assert.equal((await admin.get(`/recordings/${recorded}`)).json.keep.rule, 'desks');
  } finally {
    assert.equal((await admin.put('/policy', before)).status, 200);
  }
});

test('nobody reviews their own session: a reviewer\'s own recording is refused to them, on record, and left to the others', async () => {
  const own = await session([`echo rex${MARK} > /dev/null`], 'rex');
  await own.page.context().close();
  await until('rex\'s recording closed', async () => (await admin.get(`/recordings/${own.id}`)).json?.recording?.state === 'complete', 20000);
  const rex = await as('rex');
  for (const [what, r] of [
    ['flag', await rex.post(`/recordings/${own.id}/flags`, { t_ms: 0, note: 'all fine here' })],
    ['mark', await rex.post(`/recordings/${own.id}/review`, { state: 'reviewed', comment: 'fine' })],
  ]) {
    assert.equal(r.status, 403, `${what}: ${r.text}`);
    assert.match(r.json.error, /session of your own/);
  }
  const rita = await as('rita');
  assert.equal((await rita.post(`/recordings/${own.id}/review`, { state: 'reviewed', comment: 'checked' })).status, 200);
  const records = await reviewRecords(own.id);
  assert.ok(records.some((e) => e.actor === 'rex' && e.detail.outcome === 'refused' && e.detail.error === 'own session'), JSON.stringify(records));
  // Account ids stay inside the gateway.
  assert.doesNotMatch((await rita.get(`/recordings/${own.id}/review`)).text, /by_id/);
});
