//! `cargo xtask <command>`: the project's automation, in Rust so it needs nothing but cargo.
//!
//! - `demo`: installs what is missing, builds the UI and the gateway, starts a demo VNC desktop
//!   and runs the gateway with that desktop registered.
//! - `check`: the dependency rules of ARCHITECTURE.md (which crate may never depend on what),
//!   against the graph `cargo metadata` resolves, and no import circles between the modules of
//!   any workspace crate.
//! - `test`: checks those rules first, then installs what is missing and runs every test: formatting, lints, Rust unit and
//!   integration tests, UI unit tests, and the end-to-end tests through real peers.
//! - `bench [latency|bytes|recording|rdp|kill|policy|audit|scale|cluster|search|screen]`: builds in release mode (or uses
//!   the gateway `PORTCULLIS_BIN` names) and runs the benchmarks in `benches/` (and the policy
//!   crate's decision timing).
//! - `fuzz [SECONDS]`: runs every cargo-fuzz target in `fuzz/` for SECONDS each (default 60).
//! - `deploy-check`: the Helm chart, the image and the two-node recipe in `deploy/` ([`deploy`]).
//! - `deps`: only installs the system and npm packages.
#![allow(clippy::print_stdout)]

mod check;
mod circles;
mod deploy;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Debian packages the demo, the tests and the benchmarks need (real peers and tools).
const APT_PACKAGES: &[&str] = &[
    "xvfb",
    "x11vnc",
    "tigervnc-standalone-server",
    "tigervnc-tools",
    "xrdp",
    "xorgxrdp",
    "freerdp2-x11",
    "freerdp2-shadow-x11",
    "openssl",
    "x11-utils",
    "x11-xserver-utils",
    "xterm",
    "xdotool",
    "xclip",
    // xrdp-chansrv shows redirected drives through FUSE (~/thinclient_drives).
    "fuse3",
    // The S3 server of the object-store tests comes from PyPI (fixtures/s3.sh).
    "python3-pip",
    // A real syslog receiver (plain TCP and TLS) for the SIEM export tests.
    "rsyslog",
    "rsyslog-gnutls",
    "imagemagick",
    // OCR: the gateway reads live screens for the risk rules (risk.test.mjs); the player's
    // decoded frame must read like the source (recording-ocr.test.mjs); the recording benchmark
    // reads the recorded text (benches/ocr.mjs).
    "tesseract-ocr",
    "tesseract-ocr-eng",
    "chromium",
    "fonts-dejavu-core",
    "novnc",
    "websockify",
    "nodejs",
    "npm",
    // The recorder: ffmpeg-next builds against Debian's FFmpeg; the CLI tools check recordings.
    "ffmpeg",
    "libavcodec-dev",
    "libavformat-dev",
    "libavutil-dev",
    "libswscale-dev",
    "libavfilter-dev",
    "libavdevice-dev",
    "clang",
    "libclang-dev",
    "pkg-config",
    // Passkeys: webauthn-rs checks signatures with OpenSSL.
    "libssl-dev",
    // The shared store's tests run against a real PostgreSQL (fixtures/postgres.sh).
    "postgresql",
    // cargo xtask deploy-check reads the Helm chart's YAML with PyYAML.
    "python3-yaml",
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = project_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("deps") => deps(&root),
        Some("check") => check::check(&root),
        Some("deploy-check") => deploy::deploy_check(&root),
        Some("demo") => demo(&root),
        Some("test") => test(&root),
        Some("bench") => bench(&root),
        Some("fuzz") => fuzz(&root, &args[1..]),
        _ => {
            println!(
                "usage: cargo xtask <check|deploy-check|demo|test|bench|fuzz [SECONDS | --runs N] [TARGET...]|deps>"
            );
            bail!("unknown or missing command")
        }
    }
}

fn project_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn run(cmd: &mut Command) -> Result<()> {
    println!("$ {}", describe(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {}", describe(cmd)))?;
    if !status.success() {
        bail!("{} failed with {status}", describe(cmd));
    }
    Ok(())
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn deps(root: &Path) -> Result<()> {
    let mut missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    // A machine may bring its own node and npm; only install Debian's if there is none.
    if have("node") && have("npm") {
        missing.retain(|p| *p != "nodejs" && *p != "npm");
    }
    if !missing.is_empty() {
        let sudo = if is_root() { vec![] } else { vec!["sudo"] };
        let mut update = Command::new(sudo.first().copied().unwrap_or("apt-get"));
        if !sudo.is_empty() {
            update.arg("apt-get");
        }
        run(update.arg("update").arg("-qq"))?;
        let mut install = Command::new(sudo.first().copied().unwrap_or("apt-get"));
        if !sudo.is_empty() {
            install.arg("apt-get");
        }
        run(install
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing))?;
    }
    let web = root.join("web");
    let stamp = web.join("node_modules/.package-lock.json");
    let fresh = match (
        std::fs::metadata(&stamp),
        std::fs::metadata(web.join("package-lock.json")),
    ) {
        (Ok(s), Ok(l)) => s.modified().ok() >= l.modified().ok(),
        _ => false,
    };
    if !fresh {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&web))?;
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn build_ui(root: &Path) -> Result<()> {
    run(Command::new("npm")
        .args(["run", "build"])
        .current_dir(root.join("web")))
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn test(root: &Path) -> Result<()> {
    check::check(root)?;
    deps(root)?;
    // After deps: it needs python3-yaml, and npm to fetch helm.
    deploy::deploy_check(root)?;
    build_ui(root)?;
    run(Command::new("npm")
        .args(["test"])
        .current_dir(root.join("web")))?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    let postgres = ScratchPostgres::start(root)?;
    let s3 = ScratchS3::start(root)?;
    run(cargo()
        .args(["test", "--workspace"])
        .env("PORTCULLIS_TEST_POSTGRES", &postgres.url)
        .env("PORTCULLIS_TEST_POSTGRES_CA", &postgres.ca)
        .env("PORTCULLIS_REQUIRE_POSTGRES", "1")
        .env("PORTCULLIS_TEST_S3_ENDPOINT", &s3.endpoint)
        .env("PORTCULLIS_TEST_S3_BUCKET", ScratchS3::BUCKET)
        .env("PORTCULLIS_TEST_S3_ACCESS_KEY", &s3.access)
        .env("PORTCULLIS_TEST_S3_SECRET_KEY", &s3.secret)
        .env("PORTCULLIS_REQUIRE_S3", "1"))?;
    drop(s3);
    run(cargo().args(["build", "-p", "portcullis"]))?;
    run(Command::new("node")
        .args([
            "--test",
            "--test-concurrency=1",
            "--test-timeout=400000",
            "e2e/",
        ])
        .env("PORTCULLIS_BIN", root.join("target/debug/portcullis"))
        .env("PORTCULLIS_TEST_POSTGRES", &postgres.url)
        .env("PORTCULLIS_TEST_POSTGRES_CA", &postgres.ca)
        .current_dir(root.join("web")))?;
    drop(postgres);
    println!("all tests passed");
    Ok(())
}

/// A server a fixture script started for the test run (`fixtures/NAME.sh ARGS… DIR`, which prints
/// `READY …` once it serves): stopped (`NAME.sh stop DIR`) and its directory deleted when
/// dropped, also when a test step failed.
struct Scratch {
    script: PathBuf,
    dir: PathBuf,
}

impl Scratch {
    /// Runs `fixtures/{name}.sh` with `args` (shown as `shown`: no secret) and a fresh scratch
    /// directory; returns the server and what its `READY ` line says.
    fn start(root: &Path, name: &str, args: &[&str], shown: &str) -> Result<(Scratch, String)> {
        let script = root.join(format!("fixtures/{name}.sh"));
        let dir = std::env::temp_dir().join(format!("portcullis-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        println!("$ {} {shown} {}", script.display(), dir.display());
        let out = Command::new(&script)
            .args(args)
            .arg(&dir)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("cannot run {}", script.display()))?;
        let ready = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("READY ").map(str::to_owned))
            .unwrap_or_default();
        let started = Scratch { script, dir };
        if !out.status.success() || ready.is_empty() {
            bail!("the scratch {name} server did not start ({})", out.status);
        }
        Ok((started, ready))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> Result<String> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port()
        .to_string())
}

/// A PostgreSQL server of the test run's own (fixtures/postgres.sh): a new cluster in a scratch
/// directory on a free loopback port with a random superuser password.
struct ScratchPostgres {
    _server: Scratch,
    /// A superuser's URL (`postgres://…/postgres`); tests create their own databases.
    url: String,
    /// The CA that signed the server's certificate (for the name `localhost`).
    ca: String,
}

impl ScratchPostgres {
    fn start(root: &Path) -> Result<ScratchPostgres> {
        let port = free_port()?;
        let password = portcullis_token(24);
        let (server, ready) = Scratch::start(
            root,
            "postgres",
            &[&port, "portcullis_test", &password],
            &format!("{port} portcullis_test ***"),
        )?;
        // READY url=… ca=…
        let (url, ca) = ready
            .strip_prefix("url=")
            .and_then(|r| r.split_once(" ca="))
            .unwrap_or_default();
        if url.is_empty() || ca.is_empty() {
            bail!("the scratch PostgreSQL server said {ready:?}");
        }
        Ok(ScratchPostgres {
            url: url.to_owned(),
            ca: ca.to_owned(),
            _server: server,
        })
    }
}

/// An S3-compatible object store of the test run's own (fixtures/s3.sh: SeaweedFS) on a free
/// loopback port, with random credentials and one bucket.
struct ScratchS3 {
    _server: Scratch,
    endpoint: String,
    access: String,
    secret: String,
}

impl ScratchS3 {
    const BUCKET: &'static str = "portcullis-test";

    fn start(root: &Path) -> Result<ScratchS3> {
        let port = free_port()?;
        let (access, secret) = (portcullis_token(20), portcullis_token(32));
        let (server, ready) = Scratch::start(
            root,
            "s3",
            &[&port, &access, &secret, Self::BUCKET],
            &format!("{port} {access} *** {}", Self::BUCKET),
        )?;
        let endpoint = ready
            .strip_prefix("endpoint=")
            .unwrap_or_default()
            .to_owned();
        if endpoint.is_empty() {
            bail!("the scratch S3 server said {ready:?}");
        }
        Ok(ScratchS3 {
            _server: server,
            endpoint,
            access,
            secret,
        })
    }
}

/// `cargo xtask bench [latency|bytes|recording|rdp|kill|policy|audit|scale|cluster|search|screen]`: all of them by
/// default (in that order), or one. A gateway binary named by `PORTCULLIS_BIN` is used as it is
/// (no release build of the gateway).
fn bench(root: &Path) -> Result<()> {
    const ALL: [&str; 11] = [
        "latency",
        "bytes",
        "recording",
        "rdp",
        "kill",
        "policy",
        "audit",
        "scale",
        "cluster",
        "search",
        "screen",
    ];
    let which = std::env::args().nth(2);
    let chosen: Vec<&str> = match which.as_deref() {
        None | Some("all") => ALL.to_vec(),
        Some(one) if ALL.contains(&one) => vec![one],
        Some(other) => {
            bail!(
                "cargo xtask bench [{}]: unknown benchmark {other:?}",
                ALL.join("|")
            )
        }
    };
    let wants = |name: &str| chosen.contains(&name);
    deps(root)?;
    build_ui(root)?;
    let gateway = match std::env::var_os("PORTCULLIS_BIN") {
        Some(bin) if !bin.is_empty() => root.join(bin),
        _ => {
            run(cargo().args(["build", "--release", "-p", "portcullis"]))?;
            root.join("target/release/portcullis")
        }
    };
    if wants("recording") {
        run(cargo().args([
            "build",
            "--release",
            "-p",
            "portcullis-recorder",
            "--example",
            "hour",
        ]))?;
    }
    let node = |script: &str| {
        run(Command::new("node")
            .arg(root.join("benches").join(script))
            .env("PORTCULLIS_BIN", &gateway)
            .env("HOUR_BIN", root.join("target/release/examples/hour"))
            .current_dir(root.join("web")))
    };
    // One failing benchmark does not keep the others from running; the first failure is reported.
    let mut first_failure = Ok(());
    for name in chosen {
        let outcome = match name {
            // Both clients on one x11vnc at once, then each alone on x11vnc and TigerVNC.
            "latency" => node("run.mjs").and_then(|()| node("alone.mjs")),
            // The page's received bytes per workload phase, gateway vs noVNC, each alone.
            "bytes" => node("bytes.mjs"),
            "recording" => node("recording.mjs"),
            "rdp" => node("rdp.mjs"),
            "kill" => node("kill.mjs"),
            // N recorded sessions through one gateway (benches/README.md, "Benchmark: scale").
            "scale" => node("scale.mjs"),
            // Sessions spread over 1 and 2 nodes on PostgreSQL + S3: per-node cost, upload lag.
            "cluster" => node("cluster.mjs"),
            // Audit appends (each fsynced before it returns) from 1, 8 and 64 threads side by
            // side: group commit is what makes many writers cheap.
            "audit" => ["1", "8", "64"].iter().try_for_each(|threads| {
                run(cargo().args([
                    "run",
                    "--release",
                    "-q",
                    "-p",
                    "portcullis-audit",
                    "--example",
                    "audit_rate",
                    "--",
                    "20000",
                    threads,
                ]))
            }),
            // Reading the screen for search: tesseract's CPU per recorded hour of the mixed
            // session, and the share of the words shown that search finds (issue 18).
            "screen" => node("screen-ocr.mjs"),
            // Search over a generated corpus of 1,000 recorded hours (issue 18: p95 ≤ 200 ms).
            "search" => run(cargo().args([
                "run",
                "--release",
                "-q",
                "-p",
                "portcullis-search",
                "--example",
                "corpus",
                "--",
                "1000",
            ])),
            // Policy decisions: a plain timing loop over a 50-rule policy (crates/portcullis-policy/benches).
            _ => run(cargo().args(["bench", "-p", "portcullis-policy"])),
        };
        if first_failure.is_ok() {
            first_failure = outcome;
        }
    }
    first_failure
}

/// cargo-fuzz targets, in `fuzz/fuzz_targets/`.
const FUZZ_TARGETS: &[&str] = &[
    "client_message",
    "target_updates",
    "recording_manifest",
    "rdp_client_bytes",
    "rdp_clipboard_bytes",
    "rdp_drive_bytes",
    "rdp_target_chunks",
    "rdp_target_fast_path",
    "rdp_client_chunks",
    "audit_segment",
    "policy_document",
    "config_file",
    "vnc_server_stream",
    "vnc_zrle",
    "tesseract_tsv",
    "search_track",
    "mp4_fragment",
];

/// How long each fuzz target runs: for a time, or for a number of executions.
enum FuzzBudget {
    Seconds(u32),
    Runs(u64),
}

/// `cargo xtask fuzz [SECONDS | --runs N] [TARGET...]`: every target (or those named) for
/// SECONDS each (60 by default) or for N executions each.
fn fuzz(root: &Path, args: &[String]) -> Result<()> {
    let mut budget = FuzzBudget::Seconds(60);
    let mut chosen: Vec<&str> = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--runs" {
            let n = rest.next().context("--runs needs a number")?;
            budget = FuzzBudget::Runs(n.parse().context("--runs N: N must be a number")?);
        } else if let Ok(seconds) = arg.parse::<u32>() {
            budget = FuzzBudget::Seconds(seconds);
        } else if FUZZ_TARGETS.contains(&arg.as_str()) {
            chosen.push(arg);
        } else {
            bail!(
                "cargo xtask fuzz: {arg:?} is neither a number of seconds, --runs N, nor a target ({})",
                FUZZ_TARGETS.join(", ")
            );
        }
    }
    let targets: Vec<&str> = if chosen.is_empty() {
        FUZZ_TARGETS.to_vec()
    } else {
        chosen
    };
    let limit = match budget {
        FuzzBudget::Seconds(s) => format!("-max_total_time={s}"),
        FuzzBudget::Runs(n) => format!("-runs={n}"),
    };
    if !Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        run(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let mut report = Vec::new();
    let mut crashed = Vec::new();
    for target in &targets {
        let corpus = root.join("fuzz/corpus").join(target);
        let seeds = root.join("fuzz/regressions").join(target);
        let artifacts = root.join("fuzz/artifacts").join(target);
        std::fs::create_dir_all(&corpus)?;
        std::fs::create_dir_all(&artifacts)?;
        // The machine has one stable toolchain; libFuzzer's instrumentation flags need nightly
        // features, which RUSTC_BOOTSTRAP unlocks for this build only. The kept regressions seed
        // the run (read-only); new inputs go to the corpus.
        let output = cargo()
            .args(["fuzz", "run", "-O", target])
            .arg(&corpus)
            .arg(&seeds)
            .args([
                "--".to_owned(),
                limit.clone(),
                "-max_len=4096".to_owned(),
                "-print_final_stats=1".to_owned(),
                format!("-artifact_prefix={}/", artifacts.display()),
            ])
            .env("RUSTC_BOOTSTRAP", "1")
            .current_dir(root)
            .output()
            .with_context(|| format!("cannot run cargo fuzz for {target}"))?;
        let log = String::from_utf8_lossy(&output.stderr);
        let stat = |name: &str| {
            log.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_start_matches(':').trim().parse::<u64>().ok())
        };
        let execs = stat("stat::number_of_executed_units");
        // A crash input is kept where the ordinary test replays it.
        let mut found = 0;
        for entry in std::fs::read_dir(&artifacts)? {
            let path = entry?.path();
            if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                if ["crash-", "oom-", "timeout-", "leak-"]
                    .iter()
                    .any(|p| name.starts_with(p))
                {
                    std::fs::copy(&path, seeds.join(name))?;
                    std::fs::remove_file(&path)?;
                    found += 1;
                }
            }
        }
        if !output.status.success() || found > 0 {
            eprintln!("{log}");
            crashed.push(*target);
        }
        report.push((*target, execs, found));
    }
    match budget {
        FuzzBudget::Seconds(s) => println!("fuzzing, {s} s per target:"),
        FuzzBudget::Runs(n) => println!("fuzzing, {n} runs per target:"),
    }
    for (target, execs, found) in &report {
        let execs = execs.map_or_else(|| "?".to_owned(), |n| n.to_string());
        println!("  {target:<22} {execs:>10} runs  {found} new failing inputs");
    }
    if !crashed.is_empty() {
        bail!(
            "fuzzing found failures in {} (inputs copied to fuzz/regressions/: fix, then commit them)",
            crashed.join(", ")
        );
    }
    Ok(())
}

fn demo(root: &Path) -> Result<()> {
    deps(root)?;
    build_ui(root)?;
    run(cargo().args(["build", "--release", "-p", "portcullis"]))?;
    let bin = root.join("target/release/portcullis");
    let data = root.join(".data/demo");
    std::fs::create_dir_all(&data)?;

    // The demo desktop: Xvfb :20 with an xterm, served by x11vnc on 127.0.0.1:5920.
    let desk = data.join("desktop");
    let vnc_password = portcullis_token(12);
    let _ = Command::new(root.join("fixtures/vnc-desktop.sh"))
        .arg("stop")
        .arg(&desk)
        .status();
    run(Command::new(root.join("fixtures/vnc-desktop.sh"))
        .args(["20", "5920", &vnc_password])
        .arg(&desk))?;

    let admin_file = data.join("admin-password");
    let admin_password = match std::fs::read_to_string(&admin_file) {
        Ok(p) => p.trim().to_owned(),
        Err(_) => {
            let p = portcullis_token(16);
            write_private(&admin_file, &p)?;
            p
        }
    };
    let vendor_password = portcullis_token(16);
    let soc_password = portcullis_token(16);
    let gw = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.arg("--data-dir").arg(&data).args(args);
        c
    };
    // Start from a known state on every run; errors for "not there yet" are fine.
    for args in [
        &["target", "delete", "demo-desktop"][..],
        &["user", "delete", "vendor"][..],
        &["user", "delete", "soc"][..],
    ] {
        let _ = gw(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    run(gw(&[
        "target",
        "add",
        "demo-desktop",
        "--address",
        "127.0.0.1:5920",
        "--description",
        "Demo Xvfb desktop (xterm)",
        "--password-env",
        "DEMO_VNC_PASSWORD",
    ])
    .env("DEMO_VNC_PASSWORD", &vnc_password))?;
    run(gw(&[
        "user",
        "add",
        "vendor",
        "--role",
        "user",
        "--password-env",
        "DEMO_VENDOR_PASSWORD",
    ])
    .env("DEMO_VENDOR_PASSWORD", &vendor_password))?;
    // The security team: the SOC page (watch, freeze, kill, lock).
    run(gw(&[
        "user",
        "add",
        "soc",
        "--role",
        "soc",
        "--password-env",
        "DEMO_SOC_PASSWORD",
    ])
    .env("DEMO_SOC_PASSWORD", &soc_password))?;
    if !gw(&["user", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("admin"))
        .unwrap_or(false)
    {
        run(gw(&[
            "user",
            "add",
            "admin",
            "--role",
            "admin",
            "--password-env",
            "DEMO_ADMIN_PASSWORD",
        ])
        .env("DEMO_ADMIN_PASSWORD", &admin_password))?;
    }
    run(&mut gw(&["grant", "add", "vendor", "demo-desktop"]))?;
    run(&mut gw(&["grant", "add", "admin", "demo-desktop"]))?;

    // The demo RDP desktop: xrdp on 127.0.0.1:3390 with a local account (needs root: it creates
    // the account and runs xrdp-sesman).
    let rdp_desk = data.join("rdp-desktop");
    let _ = gw(&["target", "delete", "demo-rdp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let rdp_demo = is_root() && {
        let rdp_password = portcullis_token(16);
        let _ = Command::new(root.join("fixtures/xrdp-desktop.sh"))
            .arg("stop")
            .arg(&rdp_desk)
            .status();
        let started = Command::new(root.join("fixtures/xrdp-desktop.sh"))
            .args(["3390", "pcdemo", &rdp_password])
            .arg(&rdp_desk)
            .status()
            .is_ok_and(|s| s.success());
        started
            && gw(&[
                "target",
                "add",
                "demo-rdp",
                "--kind",
                "rdp",
                "--address",
                "127.0.0.1:3390",
                "--account",
                "pcdemo",
                "--description",
                "Demo xrdp desktop (xterm)",
                "--password-env",
                "DEMO_RDP_PASSWORD",
            ])
            .env("DEMO_RDP_PASSWORD", &rdp_password)
            .status()
            .is_ok_and(|s| s.success())
    };
    if rdp_demo {
        run(&mut gw(&["grant", "add", "vendor", "demo-rdp"]))?;
        run(&mut gw(&["grant", "add", "admin", "demo-rdp"]))?;
    }

    println!();
    println!("  Portcullis demo");
    println!(
        "  URL:     https://127.0.0.1:8443/   (self-signed certificate: accept it in the browser)"
    );
    println!(
        "  admin:   admin / {admin_password}   (stored in {})",
        admin_file.display()
    );
    println!("  vendor:  vendor / {vendor_password}");
    println!("  soc:     soc / {soc_password}   (the SOC page: watch, freeze, kill, lock)");
    println!("  target:  demo-desktop (Xvfb :20 via x11vnc on 127.0.0.1:5920; its password stays in the gateway)");
    if rdp_demo {
        println!("  target:  demo-rdp (xrdp on 127.0.0.1:3390; its account stays in the gateway)");
        println!(
            "  native:  xfreerdp /v:127.0.0.1:3389 /u:'vendor#demo-rdp' /p:'{vendor_password}' /cert:ignore"
        );
    } else {
        println!("  (no RDP demo target: run as root to get one)");
    }
    println!("  Stop with Ctrl+C.");
    println!();
    let status = gw(&["serve"])
        .env("PORTCULLIS_ADMIN_PASSWORD", &admin_password)
        .status();
    let _ = Command::new(root.join("fixtures/vnc-desktop.sh"))
        .arg("stop")
        .arg(&desk)
        .status();
    if rdp_demo {
        let _ = Command::new(root.join("fixtures/xrdp-desktop.sh"))
            .arg("stop")
            .arg(&rdp_desk)
            .status();
    }
    status?;
    Ok(())
}

fn portcullis_token(n: usize) -> String {
    use std::io::Read as _;
    let mut bytes = vec![0u8; n];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut bytes);
    }
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
