#![allow(clippy::print_stdout)]
//! Writes a synthetic one-hour recording (for `benches/recording.mjs`): a [`Recorder`] at its
//! default settings is fed an admin's desktop drawn in memory, with virtual time, exactly as the
//! gateway's recording loop would feed it (a frame at most every `1000 / max_fps` ms while the
//! picture changes, `tick` all along).
//!
//! ```text
//! cargo run --release -p portcullis-recorder --example hour -- RECORDINGS_DIR \
//!     [--width 1920] [--height 1080] [--seconds 3600] [--seed 1] [--active 0.5]
//! ```
//!
//! The desktop: a terminal (8×16 cells, one fixed pseudo-random bitmap per character, black on
//! white) covering most of the screen. Active stretches (60–300 s) alternate with idle ones
//! (nothing changes) so that about `--active` of the time is active. While active: commands typed
//! at 80–200 ms a key followed by a few lines of output, bursts of long output (a whole screen
//! scrolls several times in a frame), a pager (page down, then line by line), a second window
//! that opens, moves in steps and closes, and short pauses.
//!
//! It creates `RECORDINGS_DIR/<uuid v4>/` (the layout of a gateway's `<data_dir>/recordings`,
//! signed with a throw-away key) and prints one JSON object on stdout: the recording id, its
//! bytes per file, per-segment statistics from its manifest, and the CPU time the recorder
//! took (its calls only, not the drawing), split into active and idle time.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portcullis_core::session::SessionEvent;
use portcullis_recorder::{Recorder, RecorderConfig};
use portcullis_recording::{generate_key, LocalDisk, RecordingWriter, SessionMeta};

type Error = Box<dyn std::error::Error>;

const CELL_W: usize = 8;
const CELL_H: usize = 16;
const DESKTOP: [u8; 3] = [0x20, 0x40, 0x60];
const TITLE: [u8; 3] = [0xc8, 0xc8, 0xc8];
const PAPER: [u8; 3] = [0xff, 0xff, 0xff];
const WIN_W: usize = 640;
const WIN_H: usize = 400;
/// Virtual time step of the simulation (ms).
const STEP_MS: u64 = 50;

/// A stretch of time: start and end (ms), active or idle.
type Block = (u64, u64, bool);

struct Args {
    dir: PathBuf,
    width: usize,
    height: usize,
    seconds: u64,
    seed: u64,
    active: f64,
    /// `--draft-crf`: the recorder's drafts (0: off); unset, its default.
    draft_crf: Option<u8>,
    /// Extra libx264 options (`key=value:…`), after the recorder's own.
    x264: String,
    /// The recorder's `keyframe_max_ms` in seconds (default: the recorder's).
    keyframe_secs: Option<u64>,
}

fn parse_args() -> Result<Args, Error> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        dir: PathBuf::new(),
        width: 1920,
        height: 1080,
        seconds: 3600,
        seed: 1,
        active: 0.5,
        draft_crf: None,
        x264: String::new(),
        keyframe_secs: None,
    };
    let mut dir = None;
    while let Some(arg) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--width" => a.width = val()?.parse()?,
            "--height" => a.height = val()?.parse()?,
            "--seconds" => a.seconds = val()?.parse()?,
            "--seed" => a.seed = val()?.parse()?,
            "--active" => a.active = val()?.parse()?,
            "--draft-crf" => a.draft_crf = Some(val()?.parse()?),
            "--x264" => a.x264 = val()?,
            "--keyframe-secs" => a.keyframe_secs = Some(val()?.parse()?),
            s if s.starts_with("--") => return Err(format!("unknown option {s}").into()),
            s => dir = Some(PathBuf::from(s)),
        }
    }
    a.dir = dir.ok_or(
        "usage: hour RECORDINGS_DIR [--width W] [--height H] [--seconds S] [--seed N] [--active F]",
    )?;
    if a.width < 800 || a.height < 600 || a.width % 2 == 1 || a.height % 2 == 1 {
        return Err("the desktop must be at least 800x600, even sides".into());
    }
    if !(0.0..=1.0).contains(&a.active) {
        return Err("--active is a fraction between 0 and 1".into());
    }
    Ok(a)
}

/// xorshift64*: deterministic for a seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// In `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn word(&mut self) -> String {
        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_./";
        let n = self.range(2, 10) as usize;
        (0..n)
            .map(|_| char::from(LETTERS[self.range(0, LETTERS.len() as u64 - 1) as usize]))
            .collect()
    }
    /// A line of output: mostly short, sometimes long, a few blank.
    fn line(&mut self, max: usize) -> String {
        let target = match self.range(0, 99) {
            0..=9 => return String::new(),
            10..=74 => self.range(10, 80),
            75..=94 => self.range(80, 140),
            _ => self.range(140, 240),
        } as usize;
        let mut s = String::new();
        while s.len() < target {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(&self.word());
        }
        s.truncate(target.min(max));
        s
    }
}

/// 8×16 RGBA glyph of each ASCII byte: a fixed pseudo-random set of 3–6 one-pixel strokes
/// between points of a 3×3 lattice in a 6×11 box (a little like a real font's strokes: about a
/// fifth of the box inked, grey pixels beside diagonal strokes as antialiasing); space is blank.
fn glyphs() -> Vec<[u8; CELL_W * CELL_H * 4]> {
    const XS: [i32; 3] = [1, 3, 6];
    const YS: [i32; 3] = [3, 8, 13];
    (0u64..128)
        .map(|c| {
            let mut v = [255u8; CELL_W * CELL_H];
            let mut r = Rng(0x9e37_79b9_7f4a_7c15 ^ (c + 1).wrapping_mul(0x1000_0000_01b3));
            if c > 32 && c < 127 {
                for _ in 0..r.range(3, 6) {
                    let (i, j) = (r.range(0, 2) as usize, r.range(0, 2) as usize);
                    // A neighbouring lattice point: right, down or diagonal.
                    let (di, dj) = match r.range(0, 3) {
                        0 => (1, 0),
                        1 => (0, 1),
                        2 => (1, 1),
                        _ => (-1, 1),
                    };
                    let i2 = (i as i64 + di).clamp(0, 2) as usize;
                    let j2 = (j as i64 + dj).clamp(0, 2) as usize;
                    let (x0, y0, x1, y1) = (XS[i], YS[j], XS[i2], YS[j2]);
                    let steps = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
                    let diagonal = x0 != x1 && y0 != y1;
                    for k in 0..=steps {
                        let x = x0 + (x1 - x0) * k / steps;
                        let y = y0 + (y1 - y0) * k / steps;
                        v[(y as usize) * CELL_W + x as usize] = 0;
                        if diagonal && x + 1 < CELL_W as i32 {
                            let n = &mut v[(y as usize) * CELL_W + x as usize + 1];
                            *n = (*n).min(170);
                        }
                    }
                }
            }
            let mut g = [0u8; CELL_W * CELL_H * 4];
            for (i, p) in v.iter().enumerate() {
                g[i * 4..i * 4 + 4].copy_from_slice(&[*p, *p, *p, 255]);
            }
            g
        })
        .collect()
}

/// The screen: the desktop with a terminal, plus an optional second window on top.
struct Screen {
    w: usize,
    h: usize,
    base: Vec<u8>,
    out: Vec<u8>,
    glyphs: Vec<[u8; CELL_W * CELL_H * 4]>,
    // Terminal content area in pixels and cells.
    tx: usize,
    ty: usize,
    cols: usize,
    rows: usize,
    grid: Vec<Vec<u8>>,
    row: usize,
    col: usize,
    dirty_cells: Vec<(usize, usize)>,
    full_redraw: bool,
    // The second window: image and position.
    win: Option<(Vec<u8>, usize, usize)>,
    dirty: bool,
}

impl Screen {
    fn new(w: usize, h: usize) -> Self {
        let mut s = Self {
            w,
            h,
            base: vec![0; w * h * 4],
            out: vec![0; w * h * 4],
            glyphs: glyphs(),
            tx: 40,
            ty: 40 + 20,
            cols: (w - 240) / CELL_W,
            rows: (h - 160 - 20) / CELL_H,
            grid: Vec::new(),
            row: 0,
            col: 0,
            dirty_cells: Vec::new(),
            full_redraw: true,
            win: None,
            dirty: true,
        };
        s.grid = vec![vec![b' '; s.cols]; s.rows];
        fill(&mut s.base, w, (0, 0, w, h), DESKTOP);
        let (tw, th) = (s.cols * CELL_W, s.rows * CELL_H);
        fill(&mut s.base, w, (s.tx, s.ty - 20, tw, 20), TITLE);
        fill(&mut s.base, w, (s.tx, s.ty, tw, th), PAPER);
        s
    }

    fn cell(&mut self, r: usize, c: usize) {
        self.dirty_cells.push((r, c));
        self.dirty = true;
    }

    fn put(&mut self, ch: u8) {
        self.grid[self.row][self.col] = ch;
        self.cell(self.row, self.col);
        self.col += 1;
        if self.col >= self.cols {
            self.newline();
        } else {
            self.cell(self.row, self.col); // the cursor moved there
        }
    }

    fn backspace(&mut self) {
        if self.col > 0 {
            self.cell(self.row, self.col);
            self.col -= 1;
            self.grid[self.row][self.col] = b' ';
            self.cell(self.row, self.col);
        }
    }

    fn newline(&mut self) {
        self.cell(self.row, self.col);
        self.col = 0;
        if self.row + 1 < self.rows {
            self.row += 1;
        } else {
            self.grid.remove(0);
            self.grid.push(vec![b' '; self.cols]);
            self.full_redraw = true;
        }
        self.cell(self.row, self.col);
    }

    fn print(&mut self, text: &str) {
        self.write(text);
        self.newline();
    }

    fn write(&mut self, text: &str) {
        for b in text.bytes() {
            self.put(if b.is_ascii_graphic() || b == b' ' {
                b
            } else {
                b'?'
            });
        }
    }

    /// A pager's page: every row replaced, the cursor on the last.
    fn page(&mut self, rng: &mut Rng) {
        for r in 0..self.rows {
            let line = rng.line(self.cols - 1);
            let mut row = vec![b' '; self.cols];
            row[..line.len()].copy_from_slice(line.as_bytes());
            self.grid[r] = row;
        }
        self.grid[self.rows - 1] = vec![b' '; self.cols];
        self.grid[self.rows - 1][0] = b':';
        self.row = self.rows - 1;
        self.col = 1;
        self.full_redraw = true;
        self.dirty = true;
    }

    /// A pager's one-line scroll.
    fn scroll_line(&mut self, rng: &mut Rng) {
        let line = rng.line(self.cols - 1);
        let last = self.rows - 1;
        self.grid.remove(last);
        self.grid.remove(0);
        let mut row = vec![b' '; self.cols];
        row[..line.len()].copy_from_slice(line.as_bytes());
        self.grid.push(row);
        let mut prompt = vec![b' '; self.cols];
        prompt[0] = b':';
        self.grid.push(prompt);
        self.full_redraw = true;
        self.dirty = true;
    }

    fn open_window(&mut self, rng: &mut Rng, x: usize, y: usize) {
        let mut img = vec![0u8; WIN_W * WIN_H * 4];
        fill(&mut img, WIN_W, (0, 0, WIN_W, WIN_H), [0xf4, 0xf0, 0xd8]);
        fill(&mut img, WIN_W, (0, 0, WIN_W, 20), [0x30, 0x60, 0xa0]);
        for r in 0..(WIN_H - 30) / CELL_H {
            let line = rng.line(WIN_W / CELL_W - 2);
            for (c, ch) in line.bytes().enumerate() {
                let g = &self.glyphs[usize::from(ch & 0x7f)];
                blit(
                    &mut img,
                    WIN_W,
                    8 + c * CELL_W,
                    26 + r * CELL_H,
                    g,
                    CELL_W,
                    CELL_H,
                );
            }
        }
        self.win = Some((img, x, y));
        self.dirty = true;
    }

    fn move_window(&mut self, x: usize, y: usize) {
        if let Some(w) = self.win.as_mut() {
            w.1 = x;
            w.2 = y;
            self.dirty = true;
        }
    }

    fn close_window(&mut self) {
        if self.win.take().is_some() {
            self.dirty = true;
        }
    }

    fn draw_cell(&mut self, r: usize, c: usize) {
        let ch = self.grid[r][c];
        let (x, y) = (self.tx + c * CELL_W, self.ty + r * CELL_H);
        if (r, c) == (self.row, self.col) {
            fill(&mut self.base, self.w, (x, y, CELL_W, CELL_H), [0, 0, 0]);
        } else {
            let g = &self.glyphs[usize::from(ch & 0x7f)];
            blit(&mut self.base, self.w, x, y, g, CELL_W, CELL_H);
        }
    }

    /// The picture to encode now.
    fn render(&mut self) -> &[u8] {
        if self.full_redraw {
            for r in 0..self.rows {
                for c in 0..self.cols {
                    self.draw_cell(r, c);
                }
            }
            self.full_redraw = false;
            self.dirty_cells.clear();
        }
        let cells = std::mem::take(&mut self.dirty_cells);
        for (r, c) in cells {
            if r < self.rows && c < self.cols {
                self.draw_cell(r, c);
            }
        }
        self.dirty = false;
        match &self.win {
            Some((img, x, y)) => {
                self.out.copy_from_slice(&self.base);
                let (x, y) = ((*x).min(self.w - WIN_W), (*y).min(self.h - WIN_H));
                blit(&mut self.out, self.w, x, y, img, WIN_W, WIN_H);
                &self.out
            }
            None => &self.base,
        }
    }
}

fn fill(buf: &mut [u8], stride_px: usize, (x, y, w, h): (usize, usize, usize, usize), c: [u8; 3]) {
    let px = [c[0], c[1], c[2], 255];
    for yy in y..y + h {
        let row = &mut buf[(yy * stride_px + x) * 4..(yy * stride_px + x + w) * 4];
        for p in row.chunks_exact_mut(4) {
            p.copy_from_slice(&px);
        }
    }
}

fn blit(dst: &mut [u8], stride_px: usize, x: usize, y: usize, src: &[u8], w: usize, h: usize) {
    for r in 0..h {
        let d = ((y + r) * stride_px + x) * 4;
        dst[d..d + w * 4].copy_from_slice(&src[r * w * 4..(r + 1) * w * 4]);
    }
}

/// What happens on screen, at a time.
enum Act {
    Key(u8),
    Backspace,
    /// Enter: the command line is logged as a `keys` event, then the output lines follow.
    Enter(String),
    Output(Vec<String>),
    Page,
    ScrollLine,
    WinOpen(usize, usize),
    WinMove(usize, usize),
    WinClose,
}

/// Alternating active and idle stretches, and what happens during the active ones.
fn schedule(a: &Args, rng: &mut Rng, cols: usize) -> (Vec<(u64, Act)>, Vec<Block>) {
    let total = a.seconds * 1000;
    let mut acts = Vec::new();
    let mut blocks = Vec::new();
    let mut t = 2000u64;
    blocks.push((0, t, true)); // the session opens
    let mut active = true;
    while t < total {
        let len = rng.range(60_000, 300_000);
        // Keep the share of active time near the target.
        let len = if active {
            (len as f64 * a.active / 0.5).round() as u64
        } else {
            (len as f64 * (1.0 - a.active) / 0.5).round() as u64
        };
        let end = (t + len.max(1000)).min(total);
        if active {
            episodes(rng, &mut acts, t, end, cols);
        }
        blocks.push((t, end, active));
        t = end;
        active = !active;
    }
    acts.sort_by_key(|(t, _)| *t);
    (acts, blocks)
}

fn episodes(rng: &mut Rng, acts: &mut Vec<(u64, Act)>, start: u64, end: u64, cols: usize) {
    let mut t = start;
    const COMMANDS: &[&str] = &[
        "ls -la /usr/bin | head -40",
        "sudo systemctl status nginx",
        "tail -n 50 /var/log/syslog",
        "df -h",
        "ps aux --sort=-%cpu | head",
        "journalctl -u sshd --since today",
        "grep -r ERROR /var/log/app/",
        "vim /etc/nginx/sites-enabled/default",
        "cat /proc/meminfo",
        "ip addr show",
    ];
    while t + 5_000 < end {
        match rng.range(0, 99) {
            // A command and a little output.
            0..=54 => {
                let cmd = if rng.chance(0.5) {
                    COMMANDS[rng.range(0, COMMANDS.len() as u64 - 1) as usize].to_owned()
                } else {
                    format!("{} {}", rng.word(), rng.line(40))
                };
                for (i, ch) in cmd.bytes().enumerate() {
                    t += rng.range(80, 200);
                    acts.push((t, Act::Key(ch)));
                    if i == 5 && rng.chance(0.2) {
                        t += rng.range(100, 300);
                        acts.push((t, Act::Backspace));
                        t += rng.range(100, 300);
                        acts.push((t, Act::Key(ch)));
                    }
                }
                t += rng.range(200, 600);
                acts.push((t, Act::Enter(cmd)));
                let n = rng.range(0, 25) as usize;
                let lines = (0..n).map(|_| rng.line(cols - 2)).collect();
                t += rng.range(30, 400);
                acts.push((t, Act::Output(lines)));
                t += rng.range(1000, 5000); // reading it
            }
            // Long output: the terminal scrolls by whole screens.
            55..=64 => {
                let cmd = "seq 1 5000 | xargs -n 8";
                for ch in cmd.bytes() {
                    t += rng.range(80, 160);
                    acts.push((t, Act::Key(ch)));
                }
                t += 300;
                acts.push((t, Act::Enter(cmd.to_owned())));
                let bursts = rng.range(5, 20);
                for _ in 0..bursts {
                    t += 100;
                    let lines = (0..rng.range(40, 200))
                        .map(|_| rng.line(cols - 2))
                        .collect();
                    acts.push((t, Act::Output(lines)));
                }
                t += rng.range(1000, 3000);
            }
            // A pager: page down, then line by line.
            65..=76 => {
                let cmd = "less /var/log/dpkg.log";
                for ch in cmd.bytes() {
                    t += rng.range(80, 160);
                    acts.push((t, Act::Key(ch)));
                }
                t += 300;
                acts.push((t, Act::Enter(cmd.to_owned())));
                for _ in 0..rng.range(5, 15) {
                    t += rng.range(400, 1200);
                    acts.push((t, Act::Page));
                }
                for _ in 0..rng.range(10, 40) {
                    t += rng.range(80, 150);
                    acts.push((t, Act::ScrollLine));
                }
                t += rng.range(500, 2000);
                acts.push((t, Act::Output(vec![String::new()])));
            }
            // A second window opens, moves in steps, stays a little, closes.
            77..=88 => {
                let (mut x, mut y) = (rng.range(300, 900) as i64, rng.range(150, 450) as i64);
                acts.push((t, Act::WinOpen(x as usize, y as usize)));
                t += rng.range(1000, 3000);
                let (dx, dy) = (rng.range(0, 40) as i64 - 20, rng.range(0, 30) as i64 - 15);
                for _ in 0..rng.range(15, 40) {
                    t += rng.range(40, 100);
                    x = (x + dx).clamp(0, 1200);
                    y = (y + dy).clamp(0, 600);
                    acts.push((t, Act::WinMove(x as usize, y as usize)));
                }
                t += rng.range(2000, 6000);
                acts.push((t, Act::WinClose));
                t += rng.range(500, 2000);
            }
            // Thinking.
            _ => t += rng.range(2000, 10_000),
        }
    }
}

/// CPU time of the calling thread, ns (`/proc/thread-self/schedstat`, first field).
struct ThreadCpu(File);
impl ThreadCpu {
    fn open() -> Result<Self, Error> {
        Ok(Self(File::open("/proc/thread-self/schedstat")?))
    }
    fn ns(&mut self) -> u64 {
        let mut s = String::new();
        if self.0.seek(SeekFrom::Start(0)).is_err() || self.0.read_to_string(&mut s).is_err() {
            return 0;
        }
        s.split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// utime + stime of the whole process, s.
fn process_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat; `after` starts at field 3.
    (tick(11) + tick(12)) / 100.0
}

fn uuid_v4() -> Result<String, Error> {
    let mut b = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[derive(Default)]
struct Bucket {
    ms: u64,
    cpu_ns: u64,
    wall_ns: u64,
    frames: u64,
}

fn main() -> Result<(), Error> {
    let a = parse_args()?;
    let mut rng = Rng(a.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut screen = Screen::new(a.width, a.height);
    let (acts, blocks) = schedule(&a, &mut rng, screen.cols);

    let storage = LocalDisk::open(&a.dir)?;
    let id = uuid_v4()?;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let started_at_ms = i64::try_from(now_ms)? - i64::try_from(a.seconds * 1000)? - 60_000;
    let meta = SessionMeta {
        session: id.clone(),
        user: "bench".into(),
        user_id: String::new(),
        target: "synthetic-1080p".into(),
        client_addr: "127.0.0.1".into(),
        started_at_ms,
        screen_search: None,
    };
    let writer = RecordingWriter::create(&storage, Arc::new(generate_key()), meta)?;
    let mut cfg = RecorderConfig::default();
    cfg.encoder.x264_params.clone_from(&a.x264);
    if let Some(d) = a.draft_crf {
        cfg.encoder.draft_crf = Some(d).filter(|&d| d > 0);
    }
    if let Some(k) = a.keyframe_secs {
        cfg.keyframe_max_ms = k.clamp(1, 3600) * 1000;
    }
    let min_interval = 1000 / u64::from(cfg.max_fps.max(1));
    let cfg_text = format!("{cfg:?}");
    let mut rec = Recorder::new(writer, cfg);

    let mut cpu = ThreadCpu::open()?;
    let wall0 = Instant::now();
    let proc0 = process_cpu_s();
    rec.event(
        0,
        &SessionEvent::SessionStart {
            user: "bench".into(),
            target: "synthetic-1080p".into(),
            client_addr: "127.0.0.1".into(),
            entry: None,
        },
    );
    rec.event(
        0,
        &SessionEvent::ViewerJoined {
            user: "bench".into(),
        },
    );

    let total = a.seconds * 1000;
    let mut buckets = [Bucket::default(), Bucket::default()]; // [idle, active]
    let mut next_act = 0;
    let mut block = 0;
    let mut last_frame: Option<u64> = None;
    let mut draw_ns = 0u64;
    let mut last_report = Instant::now();
    let mut now = 0u64;
    while now <= total {
        while block + 1 < blocks.len() && now >= blocks[block].1 {
            block += 1;
        }
        let active = usize::from(blocks[block].2);
        while next_act < acts.len() && acts[next_act].0 <= now {
            match &acts[next_act].1 {
                Act::Key(ch) => screen.put(*ch),
                Act::Backspace => screen.backspace(),
                Act::Enter(cmd) => {
                    screen.newline();
                    rec.event(
                        acts[next_act].0,
                        &SessionEvent::Keys {
                            text: format!("{cmd}<Enter>"),
                        },
                    );
                }
                Act::Output(lines) => {
                    for l in lines {
                        screen.print(l);
                    }
                    screen.write("$ ");
                }
                Act::Page => screen.page(&mut rng),
                Act::ScrollLine => screen.scroll_line(&mut rng),
                Act::WinOpen(x, y) => screen.open_window(&mut rng, *x, *y),
                Act::WinMove(x, y) => screen.move_window(*x, *y),
                Act::WinClose => screen.close_window(),
            }
            next_act += 1;
        }
        let due = last_frame.is_none_or(|t| now >= t + min_interval);
        if screen.dirty && due {
            let c0 = cpu.ns();
            let (w, h) = (a.width as u32, a.height as u32);
            let picture = screen.render();
            let c1 = cpu.ns();
            draw_ns += c1 - c0;
            let w1 = Instant::now();
            rec.frame(now, picture, w, h)?;
            last_frame = Some(now);
            let b = &mut buckets[active];
            b.cpu_ns += cpu.ns() - c1;
            b.wall_ns += u64::try_from(w1.elapsed().as_nanos())?;
            b.frames += 1;
        }
        let c2 = cpu.ns();
        let w2 = Instant::now();
        rec.tick(now)?;
        let b = &mut buckets[active];
        b.cpu_ns += cpu.ns() - c2;
        b.wall_ns += u64::try_from(w2.elapsed().as_nanos())?;
        b.ms += STEP_MS;
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "[hour] {:>4} of {} s of recording, {:.0} s so far",
                now / 1000,
                a.seconds,
                wall0.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        now += STEP_MS;
    }
    let frames = rec.frames();
    let c0 = cpu.ns();
    rec.finish(
        total,
        "bench finished",
        started_at_ms + i64::try_from(total)?,
    )?;
    let finish_ns = cpu.ns() - c0;
    let wall_s = wall0.elapsed().as_secs_f64();
    let process_s = process_cpu_s() - proc0;

    // What one thumbnail costs (the recorder makes one every 10 s of changing screen).
    let (w, h) = (a.width as u32, a.height as u32);
    let pic = screen.render().to_vec();
    let c0 = cpu.ns();
    let n = 20;
    let mut thumb_bytes = 0;
    for _ in 0..n {
        thumb_bytes = portcullis_encode::thumbnail_jpeg(&pic, w, h, 240)?.len();
    }
    let thumb_ms = (cpu.ns() - c0) as f64 / 1e6 / f64::from(n);

    let parts = encoder_parts(&pic, w, h, &mut cpu)?;

    let mut out = summary(
        &a,
        &id,
        &blocks,
        &buckets,
        frames,
        draw_ns,
        finish_ns,
        wall_s,
        process_s,
        thumb_ms,
        thumb_bytes,
    )?;
    out["encoder_parts"] = parts;
    out["recorder_config"] = serde_json::json!(cfg_text);
    println!("{out}");
    Ok(())
}

/// What the pieces of one recorded second cost on the final picture, with libx264 at the
/// recorder's settings: an IDR of it, the same picture again through `encode` (colour conversion
/// and encoding, as a frame that changed little) and through `repeat` (the idle tick's
/// re-encode, no conversion).
fn encoder_parts(
    pic: &[u8],
    w: u32,
    h: u32,
    cpu: &mut ThreadCpu,
) -> Result<serde_json::Value, Error> {
    use portcullis_recorder::encoder::{EncoderSettings, H264Encoder};
    let mut enc = H264Encoder::new(w, h, &EncoderSettings::default())?;
    let mut pts = 0i64;
    let whole = [portcullis_core::Rect::new(0, 0, w, h)];
    let mut measure = |what: &str, n: u32| -> Result<serde_json::Value, Error> {
        let c0 = cpu.ns();
        let mut bytes = 0usize;
        for _ in 0..n {
            pts += 1000;
            let out = match what {
                "idr" => enc.encode(pic, &whole, pts, true)?,
                "encode" => enc.encode(pic, &whole, pts, false)?,
                _ => enc.repeat(pts, false)?,
            };
            bytes += out.iter().map(|e| e.unit.sample.len()).sum::<usize>();
        }
        let ms = (cpu.ns() - c0) as f64 / 1e6 / f64::from(n);
        Ok(serde_json::json!({"ms": ms, "bytes": bytes as f64 / f64::from(n)}))
    };
    let idr = measure("idr", 5)?;
    // Right after the IDR x264 still spends bits refining the picture; then it settles.
    let settling = measure("encode", 20)?;
    let repeat = measure("repeat", 20)?;
    let encode = measure("encode", 20)?;
    Ok(serde_json::json!({
        "idr": idr,
        "same_picture_after_idr_via_encode": settling,
        "same_picture_via_repeat": repeat,
        "same_picture_via_encode": encode,
    }))
}

#[allow(clippy::too_many_arguments)]
fn summary(
    a: &Args,
    id: &str,
    blocks: &[Block],
    buckets: &[Bucket; 2],
    frames: u64,
    draw_ns: u64,
    finish_ns: u64,
    wall_s: f64,
    process_s: f64,
    thumb_ms: f64,
    thumb_bytes: usize,
) -> Result<serde_json::Value, Error> {
    use serde_json::{json, Value};
    let dir = a.dir.join(id);
    let mut files = serde_json::Map::new();
    let mut total_bytes = 0u64;
    for e in std::fs::read_dir(&dir)? {
        let e = e?;
        let len = e.metadata()?.len();
        total_bytes += len;
        files.insert(e.file_name().to_string_lossy().into_owned(), json!(len));
    }
    // Per segment, from the manifest: size, key or not, frames, active or idle.
    let manifest = std::fs::read_to_string(dir.join("manifest.jsonl"))?;
    let in_active = |t: u64| {
        blocks
            .iter()
            .find(|b| t >= b.0 && t < b.1)
            .is_some_and(|b| b.2)
    };
    #[derive(Default)]
    struct Seg {
        n: u64,
        bytes: u64,
        key_n: u64,
        key_bytes: u64,
        frames: u64,
        lines: u64,
        line_bytes: u64,
        thumbs: u64,
        thumb_bytes: u64,
        event_bytes: u64,
    }
    let mut seg = [Seg::default(), Seg::default()];
    let mut key_sizes = Vec::new();
    let mut other_lines = 0u64;
    let mut other_line_bytes = 0u64;
    for line in manifest.lines() {
        let v: Value = serde_json::from_str(line)?;
        let e = &v["body"]["entry"];
        if e["type"] != "segment" {
            other_lines += 1;
            other_line_bytes += line.len() as u64 + 1;
            continue;
        }
        let start = e["start_ms"].as_u64().unwrap_or(0);
        let s = &mut seg[usize::from(in_active(start))];
        let len = e["video"]["len"].as_u64().unwrap_or(0);
        s.n += 1;
        s.bytes += len;
        s.frames += e["frames"].as_u64().unwrap_or(0);
        s.lines += 1;
        s.line_bytes += line.len() as u64 + 1;
        if e["key"] == true {
            s.key_n += 1;
            s.key_bytes += len;
            key_sizes.push(json!({"t_ms": start, "bytes": len, "active": in_active(start)}));
        }
        if let Some(l) = e["thumb"]["len"].as_u64() {
            s.thumbs += 1;
            s.thumb_bytes += l;
        }
        s.event_bytes += e["events"]["len"].as_u64().unwrap_or(0);
    }
    let phase = |i: usize| {
        let s = &seg[i];
        let b = &buckets[i];
        let secs = b.ms as f64 / 1000.0;
        let all = s.bytes + s.line_bytes + s.thumb_bytes + s.event_bytes;
        json!({
            "seconds": secs,
            "frames_encoded": b.frames,
            "segments": s.n,
            "frames_in_segments": s.frames,
            "video_bytes": s.bytes,
            "key_segments": s.key_n,
            "key_segment_bytes": s.key_bytes,
            "manifest_lines": s.lines,
            "manifest_bytes": s.line_bytes,
            "thumbnails": s.thumbs,
            "thumbnail_bytes": s.thumb_bytes,
            "event_bytes": s.event_bytes,
            "all_bytes": all,
            "bytes_per_hour": if secs > 0.0 { (all as f64 * 3600.0 / secs).round() } else { 0.0 },
            "video_bytes_per_hour": if secs > 0.0 { (s.bytes as f64 * 3600.0 / secs).round() } else { 0.0 },
            "recorder_cpu_s": b.cpu_ns as f64 / 1e9,
            "recorder_wall_s": b.wall_ns as f64 / 1e9,
            "recorder_cpu_pct_of_core": if secs > 0.0 { b.cpu_ns as f64 / 1e9 / secs * 100.0 } else { 0.0 },
        })
    };
    let video_bytes: u64 = files
        .iter()
        .filter(|(k, _)| k.starts_with("video-"))
        .filter_map(|(_, v)| v.as_u64())
        .sum();
    let content_s = a.seconds as f64;
    let recorder_cpu_s = (buckets[0].cpu_ns + buckets[1].cpu_ns + finish_ns) as f64 / 1e9;
    Ok(json!({
        "id": id,
        "dir": dir.display().to_string(),
        "width": a.width,
        "height": a.height,
        "seconds": a.seconds,
        "seed": a.seed,
        "active_fraction": buckets[1].ms as f64 / (buckets[0].ms + buckets[1].ms).max(1) as f64,
        "config": "RecorderConfig::default()",
        "frames": frames,
        "files": files,
        "total_bytes": total_bytes,
        "video_bytes": video_bytes,
        "bytes_per_hour": (total_bytes as f64 * 3600.0 / content_s).round(),
        "video_bytes_per_hour": (video_bytes as f64 * 3600.0 / content_s).round(),
        "active": phase(1),
        "idle": phase(0),
        "header_and_other_manifest_lines": other_lines,
        "header_and_other_manifest_bytes": other_line_bytes,
        "key_segments": key_sizes,
        "recorder_cpu_s": recorder_cpu_s,
        "recorder_cpu_pct_of_core": recorder_cpu_s / content_s * 100.0,
        "drawing_cpu_s": draw_ns as f64 / 1e9,
        "process_cpu_s": process_s,
        "process_cpu_pct_of_core": process_s / content_s * 100.0,
        "wall_s": wall_s,
        "thumbnail_ms": thumb_ms,
        "thumbnail_bytes": thumb_bytes,
    }))
}
