// Reading the screen for search (issue 18 item 1): what tesseract costs per recorded hour of the
// realistic mixed session, and how many of the words that were on the screen search finds.
//
// One gateway (release build), one TigerVNC desktop at 1920×1080 with its xterm, one session
// through the gateway (a light WebSocket viewer that acknowledges frames like the browser), the
// screen read as the gateway reads every recorded session by default (`[ocr] recordings`, the
// default `cpu_share` 0.25 of a core). The session follows the recordings benchmark's mix: 20% of
// the time active, 80% reading: each cycle of BENCH_OCR_CYCLE_S (10) seconds clears the xterm,
// types `cat` of a new page (24 lines of 8 words drawn from a fixed vocabulary, a full-page
// change) and then leaves it on the screen; the typing and the page drawing take about the first
// fifth of the cycle.
//
// Measured:
// - OCR CPU: tesseract runs as the gateway's children, so the CPU they used is the growth of the
//   gateway's cutime + cstime (/proc/PID/stat) over the session; per recorded hour = that × 3600 /
//   the session's seconds. The gateway's own CPU beside it.
// - Recall against what was shown: a sample (BENCH_OCR_SAMPLE, 300) of (page, word) pairs looked
//   up with `GET /search?kind=screen` once the indexer caught up: found when a hit of this
//   recording falls within that page's time (words on a neighbouring page too are not asked).
// - Recall against the source framebuffer: every page every fifth cycle is screenshotted from
//   the display while shown; of its own words that tesseract reads on the screenshot (the best a
//   reader of the picture could do), the share search finds at that page's time.
// - Then the catch-up: the session runs with `[ocr] catch_up = false` (the live recall is the
//   live reading's alone); the same gateway then starts again with it on and reads the moments
//   of the closed recording the live reading missed (decoding its video again); its time and CPU
//   (tesseract's and the gateway's own, decoding included), and both recalls again.
//
//   cd web && PORTCULLIS_BIN=../target/release/portcullis node ../benches/screen-ocr.mjs
//   (cargo xtask bench screen does the build and this.)
//
// Knobs: BENCH_OCR_SECONDS (300: the session's length), BENCH_OCR_CYCLE_S (10), BENCH_OCR_SAMPLE
// (300), BENCH_OCR_SHARE (the gateway's [ocr] cpu_share; unset: its default), BENCH_OCR_LOAD=N
// (N busy loops at nice 0 while the session runs: a machine busy for a while),
// BENCH_OCR_CATCH_UP_WAIT_S (900: the longest wait for the catch-up).
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { connectSession, cpuSeconds, intEnv, listenPid } from './common.mjs';

const here = dirname(fileURLToPath(import.meta.url));
process.env.PORTCULLIS_BIN = resolve(process.env.PORTCULLIS_BIN || join(here, '../target/release/portcullis'));
const H = await import('../web/e2e/harness.mjs');

const SECONDS = intEnv('BENCH_OCR_SECONDS', 300);
const CYCLE_S = intEnv('BENCH_OCR_CYCLE_S', 10);
const SAMPLE = intEnv('BENCH_OCR_SAMPLE', 300);
const SHARE = process.env.BENCH_OCR_SHARE;
// BENCH_OCR_LOAD=N: N busy loops (nice 0, as another service would run) while the session runs,
// stopped at its end (a machine busy for a while): what the live reading misses then.
const LOAD = intEnv('BENCH_OCR_LOAD', 0);
// How long to wait for the catch-up of the closed recording.
const CATCH_UP_WAIT_S = intEnv('BENCH_OCR_CATCH_UP_WAIT_S', 900);
const RESULTS = join(here, 'results');
const log = (...a) => console.log('#', ...a);

// Ordinary words of 4 to 9 letters (tesseract's dictionary knows them; so would a reviewer).
const VOCABULARY = `account address advance against airport balance banking battery billing
blanket bracket briefly cabinet calendar capital captain careful carrier ceiling central century
channel chapter charity charter chicken circuit citizen climate clothing cluster coastal collect
college combine comfort command comment company compare complex concern conduct confirm connect
consent consist contact contain content context control convert correct council counter country
courage courses creative credit crystal culture current cushion customer dancing database
daylight deliver density deposit desktop develop diagram digital director disable discount
display distant division doctor document domestic drawing dynamic economy edition education
element elevator embassy emission employee engine english evening example exchange exercise
factory failure fashion feature federal finance firewall flight folder foreign fortune forward
freedom gallery garden general genuine gesture graphic gravity greeting hardware harvest heading
healthy heavily history holiday horizon hospital housing husband imagine imports include income
indicate industry inquiry install interest internal internet invoice journal justice keyboard
kitchen landing laptop laundry leading license lighting limited location machine magnetic manager
marginal marketing measure medical meeting message migrate minimum minister mission mixture
monitor morning network neutral nothing notebook nuclear number numeric object obvious october
officer offline opening operator opinion organic outcome outdoor outline package painting
parking partner passage passion patient pattern payment payroll penalty pension perfect petrol
physical picture pioneer plastic platform pleasant pocket policy popular portion position
powerful premium present printer private problem process produce product profile program project
promise protect provide publish quality quarter question railway reading reality receipt record
recovery reduced refund regional register release remote replace report request reserve resolve
restore revenue reverse rolling routine running satellite savings schedule science screen section
security segment service session setting shelter shipping signal silence similar software soldier
speaker special station storage strategy stream student subject success summary support surface
surgery survey system teacher theatre thermal ticket traffic transfer travel treasury trouble
uniform universe unusual update upgrade utility vehicle venture version veteran village virtual
visible volume warning warranty weather website weekend welcome western window wireless witness
working workshop yellow`.split(/\s+/).filter((w) => /^[a-z]{4,9}$/.test(w));

/** A seeded generator (the same pages every run). */
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The gateway's children's CPU (tesseract), seconds: cutime + cstime. */
function childCpuSeconds(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  const tck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })) || 100;
  return (Number(f[13]) + Number(f[14])) / tck;
}

/** The words tesseract reads on a PNG screenshot (as the gateway runs it: --psm 6). */
function sourceWords(png) {
  const dir = mkdtempSync(join(os.tmpdir(), 'pc-ocr-src-'));
  try {
    const file = join(dir, 'shot.png');
    writeFileSync(file, png);
    const text = execFileSync('tesseract', [file, '-', '--psm', '6', '-l', 'eng'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 16 << 20 });
    return new Set(text.split(/[^A-Za-z]+/).map((w) => w.toLowerCase()).filter((w) => w.length >= 4));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const desk = await H.startDesktop('bench-ocr', '1920x1080', 'xvnc');
const ocr = `[ocr]\nrecordings = true\n${SHARE ? `cpu_share = ${SHARE}\n` : ''}`;
// The session with the live reading only (catch-up off); then the same gateway again with it on.
let gw = await H.startGateway({ adminPassword: 'admin-password-bench', extraConfig: `${ocr}catch_up = false\n` });
const pagesDir = mkdtempSync(join(os.tmpdir(), 'pc-ocr-pages-'));
let ws = null;
let load = [];
try {
  let admin = await H.userWithTarget(gw, { adminPassword: 'admin-password-bench', password: 'alice-password-1234', desktop: desk, vncPassword: 'bench-ocr' });
  const alice = gw.api();
  if ((await alice.login('alice', 'alice-password-1234')).status !== 200) throw new Error('alice cannot log in');
  let pid = listenPid(gw.port);
  if (!pid) throw new Error('cannot find the gateway process');

  // The pages, written before the clock starts.
  const cycles = Math.max(1, Math.floor(SECONDS / CYCLE_S));
  const random = rng(18);
  const pages = [];
  for (let c = 0; c < cycles; c++) {
    const lines = [];
    for (let l = 0; l < 24; l++) lines.push(Array.from({ length: 8 }, () => VOCABULARY[Math.floor(random() * VOCABULARY.length)]).join(' '));
    const file = join(pagesDir, `p${c}`);
    writeFileSync(file, lines.join('\n') + '\n');
    pages.push({ file, words: new Set(lines.join(' ').split(' ')), source: null });
  }

  // The session: a viewer acknowledging frames, as the browser does.
  let session = null;
  await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error('no frame after 30 s')), 30000);
    ws = connectSession(gw.base, alice.cookie, 'desk', {
      onText: (t) => {
        const m = JSON.parse(t);
        if (m.type === 'init') session = m.session;
        if (m.type === 'error' || m.type === 'closed') rej(new Error(t));
      },
      onFrameEnd: (seq) => {
        ws.send(`{"t":"ack","seq":${seq}}`);
        clearTimeout(timer);
        res();
      },
      onError: rej,
    });
  });
  log(`session ${session}: ${cycles} cycles of ${CYCLE_S} s, ${VOCABULARY.length} words of vocabulary`);
  // The xterm has the focus (the desktop's only window).
  desk.xdotool('search', '--sync', '--name', 'portcullis-xterm', 'windowfocus', '--sync');

  for (let i = 0; i < LOAD; i++) load.push(spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
  const cpu0 = childCpuSeconds(pid);
  const own0 = cpuSeconds(pid);
  const t0 = Date.now();
  for (let c = 0; c < cycles; c++) {
    const cycleStart = t0 + c * CYCLE_S * 1000;
    desk.xdotool('type', '--delay', '40', `clear; cat ${pages[c].file}\n`);
    // The source as it is on the screen, for a sample of the cycles (tesseract costs CPU here too:
    // taken after the gateway's measurement window of this cycle would be fairer, but the page
    // stays, so a late shot shows the same).
    const wait = cycleStart + CYCLE_S * 1000 - Date.now();
    if (c % 5 === 0) {
      await H.sleep(1500);
      pages[c].shot = desk.screenshot();
    }
    const left = cycleStart + CYCLE_S * 1000 - Date.now();
    if (left > 0) await H.sleep(left);
    else if (wait < 0) log(`cycle ${c} overran by ${-wait} ms`);
  }
  const seconds = (Date.now() - t0) / 1000;
  for (const p of load) p.kill('SIGKILL');
  const ocrCpu = childCpuSeconds(pid) - cpu0;
  const ownCpu = cpuSeconds(pid) - own0;
  ws.close();
  ws = null;

  // Wait for the indexer: the last page's words appear (or 60 s).
  const last = [...pages[pages.length - 1].words].slice(0, 3);
  const found = async (word) => {
    const r = await admin.get(`/search?${new URLSearchParams({ q: word, kind: 'screen', limit: '200' })}`);
    if (r.status !== 200) throw new Error(`search ${word}: ${r.status} ${r.text}`);
    return r.json.hits.some((h) => h.recording === session);
  };
  const until = Date.now() + 60000;
  while (Date.now() < until) {
    if ((await Promise.all(last.map(found))).some(Boolean)) break;
    await H.sleep(1000);
  }
  await H.sleep(5000);

  // Recall, per page: a word counts as found on page c when a screen hit for it in this recording
  // falls in page c's time (its cycle, plus 3 s for the reading to finish). The vocabulary is
  // small, so a word is on many pages: only words on page c and on neither neighbour are asked
  // about, so a hit in that window can only come from page c.
  const own = (c) => [...pages[c].words].filter((w) => !pages[c - 1]?.words.has(w) && !pages[c + 1]?.words.has(w));
  const pairs = pages.flatMap((_, c) => own(c).map((w) => [c, w]));
  const pick = rng(7);
  const sample = [];
  while (sample.length < Math.min(SAMPLE, pairs.length)) sample.push(pairs.splice(Math.floor(pick() * pairs.length), 1)[0]);
  // Each page's source words (tesseract on its screenshot), once.
  for (const page of pages) if (page.shot) page.source = sourceWords(page.shot);
  /** Recall as the index stands now. */
  const measure = async () => {
    const hitTimes = new Map();
    const timesOf = async (word) => {
      if (!hitTimes.has(word)) {
        const r = await admin.get(`/search?${new URLSearchParams({ q: word, kind: 'screen', limit: '200' })}`);
        if (r.status !== 200) throw new Error(`search ${word}: ${r.status} ${r.text}`);
        hitTimes.set(word, r.json.hits.filter((h) => h.recording === session).map((h) => h.at_ms));
      }
      return hitTimes.get(word);
    };
    const onPage = async (c, word) => {
      const from = t0 + c * CYCLE_S * 1000;
      const to = from + CYCLE_S * 1000 + 3000;
      return (await timesOf(word)).some((t) => t >= from && t < to);
    };
    let hits = 0;
    // Per page: how many of its sampled words were found (a page never read shows as 0).
    const perPage = new Map();
    for (const [c, w] of sample) {
      const f = await onPage(c, w);
      if (f) hits++;
      const p = perPage.get(c) ?? { asked: 0, found: 0 };
      p.asked++;
      if (f) p.found++;
      perPage.set(c, p);
    }
    const pagesAsked = [...perPage.values()];
    const foundOnReadPages = pagesAsked.filter((p) => p.found > 0).reduce((a, p) => a + p.found, 0);
    const askedOnReadPages = pagesAsked.filter((p) => p.found > 0).reduce((a, p) => a + p.asked, 0);
    // Against the source picture: the page's own words that tesseract reads on its screenshot.
    let readable = 0;
    let readableFound = 0;
    let ownOnShots = 0;
    for (let c = 0; c < pages.length; c++) {
      if (!pages[c].source) continue;
      for (const w of own(c)) {
        ownOnShots++;
        if (!pages[c].source.has(w)) continue;
        readable++;
        if (await onPage(c, w)) readableFound++;
      }
    }
    return {
      recallShown: {
        sampledPageWords: sample.length,
        found: hits,
        recall: Math.round((hits / sample.length) * 1000) / 1000,
        // Pages none of whose sampled words were found (never read, or read too late), and the
        // recall on the pages that were read: what is missed by pacing vs. by reading.
        pagesAsked: pagesAsked.length,
        pagesMissed: pagesAsked.filter((p) => p.found === 0).length,
        recallOnPagesRead: askedOnReadPages ? Math.round((foundOnReadPages / askedOnReadPages) * 1000) / 1000 : null,
      },
      recallSource: {
        ownWordsOnShots: ownOnShots,
        readOnSource: readable,
        found: readableFound,
        recall: readable ? Math.round((readableFound / readable) * 1000) / 1000 : null,
        sourceReadsOfShown: ownOnShots ? Math.round((readable / ownOnShots) * 1000) / 1000 : null,
      },
    };
  };
  const live = await measure();

  // Then the catch-up: the same gateway again with it on reads the closed recording's moments
  // the live reading missed from its video (its CPU: tesseract's, and the gateway's own,
  // decoding included, from the start of the new run).
  const dir = gw.dir;
  await gw.stop({ keep: true });
  const catchT0 = Date.now();
  gw = await H.startGateway({ adminPassword: 'admin-password-bench', dir, extraConfig: ocr });
  pid = listenPid(gw.port);
  const catchCpu0 = childCpuSeconds(pid);
  const catchOwn0 = cpuSeconds(pid);
  admin = gw.api();
  if ((await admin.login('admin', 'admin-password-bench')).status !== 200) throw new Error('admin cannot log in again');
  const caughtUp = () => gw.log().split('\n').some((l) => l.includes("recording's screen caught up") && l.includes(session));
  const catchUntil = Date.now() + CATCH_UP_WAIT_S * 1000;
  while (!caughtUp() && Date.now() < catchUntil) await H.sleep(1000);
  const catchUp = {
    finished: caughtUp(),
    seconds: Math.round((Date.now() - catchT0) / 100) / 10,
    ocrCpuSeconds: Math.round((childCpuSeconds(pid) - catchCpu0) * 100) / 100,
    gatewayOwnCpuSeconds: Math.round((cpuSeconds(pid) - catchOwn0) * 100) / 100,
  };
  // The indexer adds what was read at its next pass (every 2 s).
  await H.sleep(5000);
  const after = await measure();
  const result = {
    when: new Date().toISOString(),
    config: { seconds: SECONDS, cycleS: CYCLE_S, activeShare: 0.2, cpuShare: SHARE ? Number(SHARE) : 'default (0.25)', geometry: '1920x1080', server: 'Xvnc', load: LOAD ? `${LOAD} busy loop(s) at nice 0 during the session` : 'none' },
    sessionSeconds: Math.round(seconds * 10) / 10,
    ocrCpuSeconds: Math.round(ocrCpu * 100) / 100,
    ocrCpuSecondsPerRecordedHour: Math.round((ocrCpu * 3600) / seconds),
    ocrShareOfACore: Math.round((ocrCpu / seconds) * 1000) / 1000,
    gatewayOwnCpuSecondsPerHour: Math.round((ownCpu * 3600) / seconds),
    ...live,
    catchUp: {
      ...catchUp,
      cpuSecondsPerRecordedHour: Math.round(((catchUp.ocrCpuSeconds + catchUp.gatewayOwnCpuSeconds) * 3600) / seconds),
      recallShown: after.recallShown,
      recallSource: after.recallSource,
    },
  };
  console.log(JSON.stringify(result, null, 2));
  log(`OCR: ${result.ocrCpuSecondsPerRecordedHour} CPU-s per recorded hour (${(result.ocrShareOfACore * 100).toFixed(1)}% of a core); recall ${result.recallShown.recall} of the words shown, ${result.recallSource.recall} of those tesseract reads on the source`);
  log(`after catch-up (${catchUp.finished ? 'finished' : 'NOT finished'} in ${catchUp.seconds} s, ${result.catchUp.cpuSecondsPerRecordedHour} CPU-s per recorded hour): recall ${after.recallShown.recall} of the words shown, ${after.recallSource.recall} of those tesseract reads on the source`);
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(join(RESULTS, 'screen-ocr.json'), JSON.stringify(result, null, 2));
} finally {
  for (const p of load) p.kill('SIGKILL');
  ws?.close();
  await gw.stop();
  desk.stop();
  rmSync(pagesDir, { recursive: true, force: true });
}
