//! Search latency over a generated corpus of recorded hours (`cargo xtask bench search`).
//!
//! `corpus [HOURS] [DIR]`: builds an index of HOURS (default 1000) recorded hours of the
//! recordings benchmark's realistic mixed session (20% active, 80% reading or idle), as its
//! event tracks would give them per hour: 150 typed command lines, 30 clipboard texts, 6 file
//! names and 400 screen reads of 60 words with their boxes (a settled change read every few
//! seconds while active, rarely while reading). Words come from a 20,000-word vocabulary drawn
//! with Zipf's law, plus addresses, host names and paths. 200 recordings of 5 hours each over 40
//! users and 60 targets. Then runs each kind of query 200 times (after a warm-up) and prints
//! p50, p95 and the worst, in ms, with the index's size and build time.

#![allow(
    clippy::print_stdout,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use std::path::PathBuf;
use std::time::Instant;

use portcullis_search::{Entry, Kind, Progress, Query, Recording, SearchIndex, WordBox};

/// A small deterministic generator (xorshift64*): the same corpus every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Words with Zipf-distributed frequencies (rank k drawn with weight 1/k).
struct Vocabulary {
    words: Vec<String>,
    cumulative: Vec<f64>,
}

impl Vocabulary {
    fn new(rng: &mut Rng, n: usize) -> Self {
        const SYLLABLES: [&str; 24] = [
            "ka", "ro", "mi", "te", "sul", "dan", "or", "vex", "li", "pa", "net", "sys", "log",
            "adm", "srv", "cfg", "tmp", "usr", "bin", "var", "ex", "in", "on", "al",
        ];
        let mut words = Vec::with_capacity(n);
        while words.len() < n {
            let parts = 1 + rng.below(3);
            let w: String = (0..parts)
                .map(|_| SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize])
                .collect();
            words.push(format!(
                "{w}{}",
                if rng.below(4) == 0 {
                    rng.below(100).to_string()
                } else {
                    String::new()
                }
            ));
        }
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|k| {
                total += 1.0 / k as f64;
                total
            })
            .collect();
        Self { words, cumulative }
    }

    fn pick(&self, rng: &mut Rng) -> &str {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let at = rng.unit() * total;
        let i = self.cumulative.partition_point(|c| *c < at);
        &self.words[i.min(self.words.len() - 1)]
    }
}

const COMMANDS: [&str; 12] = [
    "ls -la",
    "cd",
    "cat",
    "grep -r",
    "systemctl status",
    "journalctl -u",
    "sudo vi",
    "ps aux",
    "df -h",
    "tail -f",
    "net user",
    "Get-Service",
];

fn sentence(vocab: &Vocabulary, rng: &mut Rng, words: usize) -> Vec<String> {
    (0..words)
        .map(|_| match rng.below(40) {
            0 => format!(
                "10.{}.{}.{}",
                rng.below(256),
                rng.below(256),
                rng.below(256)
            ),
            1 => format!("/var/log/{}.log", vocab.pick(rng)),
            2 => format!("{}-{:02}.corp.example", vocab.pick(rng), rng.below(50)),
            _ => vocab.pick(rng).to_owned(),
        })
        .collect()
}

fn hour(vocab: &Vocabulary, rng: &mut Rng, start_ms: u64) -> Vec<Entry> {
    let mut out = Vec::with_capacity(590);
    let at = |rng: &mut Rng| start_ms + rng.below(3_600_000);
    for _ in 0..150 {
        let cmd = COMMANDS[rng.below(COMMANDS.len() as u64) as usize];
        let n = 1 + rng.below(4) as usize;
        let args = sentence(vocab, rng, n).join(" ");
        out.push(Entry {
            kind: Kind::Typed,
            t_ms: at(rng),
            text: format!("{cmd} {args}"),
            words: Vec::new(),
        });
    }
    for _ in 0..30 {
        out.push(Entry {
            kind: Kind::Clipboard,
            t_ms: at(rng),
            text: sentence(vocab, rng, 8).join(" "),
            words: Vec::new(),
        });
    }
    for _ in 0..6 {
        out.push(Entry {
            kind: Kind::File,
            t_ms: at(rng),
            text: format!("C:/Users/ops/{}.xlsx", vocab.pick(rng)),
            words: Vec::new(),
        });
    }
    for _ in 0..400 {
        let words: Vec<WordBox> = sentence(vocab, rng, 60)
            .into_iter()
            .enumerate()
            .map(|(i, word)| WordBox {
                x: 8 + (i as u32 % 10) * 100,
                y: 16 * (i as u32 / 10),
                w: 90,
                h: 14,
                word,
            })
            .collect();
        let text = words
            .iter()
            .map(|w| w.word.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        out.push(Entry {
            kind: Kind::Screen,
            t_ms: at(rng),
            text,
            words,
        });
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0.0)
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hours: u64 = std::env::args().nth(1).map_or(Ok(1000), |h| h.parse())?;
    let dir = std::env::args().nth(2).map_or_else(
        || std::env::temp_dir().join(format!("pc-search-bench-{}", std::process::id())),
        PathBuf::from,
    );
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let vocab = Vocabulary::new(&mut rng, 20_000);
    let index = SearchIndex::rebuild(&dir)?;
    let built = Instant::now();
    let per_recording = 5;
    let recordings = hours.div_ceil(per_recording);
    let mut docs = 0u64;
    for r in 0..recordings {
        let rec = Recording {
            id: format!("rec-{r:05}"),
            user: format!("user{:02}", r % 40),
            user_id: format!("u_{:02}", r % 40),
            target: format!("srv{:02}", r % 60),
            entry: if r % 3 == 0 {
                "rdp".into()
            } else {
                "browser".into()
            },
            started_at_ms: 1_760_000_000_000 + (r as i64) * 6 * 3_600_000,
        };
        for h in 0..per_recording.min(hours - r * per_recording) {
            let entries = hour(&vocab, &mut rng, h * 3_600_000);
            docs += entries.len() as u64;
            index.add(&rec, &entries)?;
        }
        if r % 20 == 19 {
            index.commit(&Progress::default())?;
        }
    }
    index.commit(&Progress::default())?;
    let build_s = built.elapsed().as_secs_f64();
    println!("corpus: {hours} recorded hours, {recordings} recordings, {docs} texts; built in {build_s:.1} s; index {:.1} MB at {}", dir_bytes(&dir) as f64 / 1e6, dir.display());

    let common = vocab.words[3].clone();
    let mid = vocab.words[400].clone();
    let rare = vocab.words[15_000].clone();
    type MakeQuery = Box<dyn Fn(&mut Rng) -> Query>;
    let kinds: Vec<(&str, MakeQuery)> = vec![
        (
            "one common word",
            Box::new(move |_| Query {
                text: common.clone(),
                limit: 50,
                ..Query::default()
            }),
        ),
        (
            "one mid word",
            Box::new(move |_| Query {
                text: mid.clone(),
                limit: 50,
                ..Query::default()
            }),
        ),
        (
            "one rare word",
            Box::new(move |_| Query {
                text: rare.clone(),
                limit: 50,
                ..Query::default()
            }),
        ),
        (
            "phrase \"net user\"",
            Box::new(|_| Query {
                text: "\"net user\"".into(),
                limit: 50,
                ..Query::default()
            }),
        ),
        (
            "an address",
            Box::new(|rng: &mut Rng| Query {
                text: format!(
                    "10.{}.{}.{}",
                    rng.below(256),
                    rng.below(256),
                    rng.below(256)
                ),
                limit: 50,
                ..Query::default()
            }),
        ),
        (
            "two words, one user's own",
            Box::new(|rng: &mut Rng| Query {
                text: "systemctl status".into(),
                only_user_id: Some(format!("u_{:02}", rng.below(40))),
                limit: 50,
                ..Query::default()
            }),
        ),
        (
            "common word, own, newest",
            Box::new(|rng: &mut Rng| Query {
                text: "ls".into(),
                only_user_id: Some(format!("u_{:02}", rng.below(40))),
                newest_first: true,
                limit: 50,
                ..Query::default()
            }),
        ),
        (
            "word + target + month",
            Box::new(|rng: &mut Rng| Query {
                text: "journalctl".into(),
                target: Some(format!("srv{:02}", rng.below(60))),
                from_ms: Some(1_760_000_000_000),
                to_ms: Some(1_762_600_000_000),
                limit: 50,
                ..Query::default()
            }),
        ),
        (
            "screen only",
            Box::new(|_| Query {
                text: "var log".into(),
                kind: Some(Kind::Screen),
                limit: 50,
                ..Query::default()
            }),
        ),
    ];
    let mut all = Vec::new();
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>6}",
        "query (200 runs each)", "p50 ms", "p95 ms", "max ms", "hits"
    );
    for (name, make) in &kinds {
        for _ in 0..5 {
            index.search(&make(&mut rng))?;
        }
        let mut times = Vec::with_capacity(200);
        let mut found = 0;
        for _ in 0..200 {
            let q = make(&mut rng);
            let t = Instant::now();
            found = index.search(&q)?.len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{name:<28} {:>8.2} {:>8.2} {:>8.2} {found:>6}",
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            times.last().copied().unwrap_or(0.0)
        );
        all.extend(times);
    }
    all.sort_by(|a, b| a.total_cmp(b));
    println!(
        "all queries: p50 {:.2} ms, p95 {:.2} ms (goal: p95 ≤ 200 ms)",
        percentile(&all, 0.5),
        percentile(&all, 0.95)
    );
    if std::env::args().nth(2).is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
