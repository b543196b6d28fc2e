// Legibility of recorded text, measured by OCR (issue 15): the same region of the source picture
// and of the recorded frame at the same moment, both cropped and enlarged 2× the same way
// (ffmpeg, bicubic), read by tesseract (`--psm 6`: one block of text, which keeps a terminal's
// columns); the recording's word accuracy relative to the source is the share of the source's
// words that the recording's reading also has, in the same order (longest common subsequence).
//
//   node benches/ocr.mjs SOURCE.png RECORDED.png [CROP]   prints {words, matched, accuracy}
//   node benches/ocr.mjs --frames SOURCE_VIDEO RECORDING_VIDEO T_SECONDS [CROP]
//
// CROP is ffmpeg's `w:h:x:y`. Used by benches/recording.mjs (part C) and by hand with
// benches/recording-capture.sh + crates/portcullis-recorder/examples/reencode.rs.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';

/** The words tesseract reads in `crop` (w:h:x:y) of the image file `png`, enlarged 2×. */
export function ocrWords(png, crop) {
  const dir = mkdtempSync(join(os.tmpdir(), 'pc-ocr-'));
  try {
    const big = join(dir, 'crop.png');
    const vf = `${crop ? `crop=${crop},` : ''}scale=iw*2:ih*2:flags=bicubic,format=gray`;
    execFileSync('ffmpeg', ['-v', 'error', '-y', '-i', png, '-vf', vf, '-frames:v', '1', big]);
    const text = execFileSync('tesseract', [big, '-', '--psm', '6', '-l', 'eng'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 16 << 20 });
    return text.split(/\s+/).filter((w) => w.length > 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Length of the longest common subsequence of two word lists. */
function lcs(a, b) {
  let prev = new Uint32Array(b.length + 1);
  let cur = new Uint32Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      cur[j] = a[i - 1] === b[j - 1] ? prev[j - 1] + 1 : Math.max(prev[j], cur[j - 1]);
    }
    [prev, cur] = [cur, prev];
  }
  return prev[b.length];
}

/** How many of the source's words the recording's reading has, in order. */
export function wordAccuracy(sourceWords, recordedWords) {
  const matched = lcs(sourceWords, recordedWords);
  return { words: sourceWords.length, recordedWords: recordedWords.length, matched, accuracy: sourceWords.length ? matched / sourceWords.length : null };
}

/** The frame of a video shown at `t` seconds, as PNG at `out` (holds the last frame of a VFR video). */
export function frameAt(video, t, out) {
  execFileSync('ffmpeg', ['-v', 'error', '-y', '-i', video, '-vf', `tpad=stop_mode=clone:stop_duration=10,fps=50,trim=start=${t}`, '-frames:v', '1', out]);
  return out;
}

/** Compares the source and recorded pictures' text in `crop`. */
export function compare(sourcePng, recordedPng, crop) {
  const t0 = Date.now();
  const src = ocrWords(sourcePng, crop);
  const rec = ocrWords(recordedPng, crop);
  return { crop, ...wordAccuracy(src, rec), ocrMs: Date.now() - t0 };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const a = process.argv.slice(2);
  if (a[0] === '--frames') {
    const dir = mkdtempSync(join(os.tmpdir(), 'pc-ocr-f-'));
    const t = Number(a[3]);
    const s = frameAt(a[1], t, join(dir, 's.png'));
    const r = frameAt(a[2], t, join(dir, 'r.png'));
    console.log(JSON.stringify({ t, ...compare(s, r, a[4]) }));
    rmSync(dir, { recursive: true, force: true });
  } else {
    console.log(JSON.stringify(compare(a[0], a[1], a[2])));
  }
}
