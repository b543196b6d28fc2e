//! `cargo xtask check`: the dependency rules of ARCHITECTURE.md, checked against the graph
//! `cargo metadata` resolves (normal dependencies only, for this machine's platform: what a
//! crate's code can call at run time). A rule broken names the crate, what it reaches, through
//! which path, and the sentence of ARCHITECTURE.md that forbids it. It also reads sources: the
//! sans-I/O crates' for files, sockets, clocks and threads, and every crate's for import circles
//! between its modules ([`circles`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::circles;

/// A rule of ARCHITECTURE.md about what a crate may depend on.
#[derive(Debug)]
pub(crate) enum Rule {
    /// Only `owners` name a crate matching `dep` among their own (direct) normal dependencies;
    /// the others reach it through an owner or not at all.
    OnlyIn {
        dep: &'static str,
        owners: &'static [&'static str],
        why: &'static str,
    },
    /// `krate` (`*`: every workspace crate) never reaches a crate matching one of `deps`,
    /// directly or through any chain of normal dependencies.
    Never {
        krate: &'static str,
        deps: &'static [&'static str],
        why: &'static str,
    },
}

/// Crates that give a crate sockets or an async runtime.
const RUNTIME_OR_SOCKETS: &[&str] = &["tokio", "mio", "socket2", "async-std", "smol"];

/// The rules, each with the words of ARCHITECTURE.md it encodes. A dependency pattern ending in
/// `*` matches by prefix (`ironrdp-*`: the whole family).
pub(crate) const RULES: &[Rule] = &[
    Rule::OnlyIn {
        dep: "image",
        owners: &["portcullis-encode"],
        why: "portcullis-encode is the only crate with `image`",
    },
    Rule::OnlyIn {
        dep: "vnc-rs",
        owners: &["portcullis-vnc"],
        why: "portcullis-vnc is the only crate with `vnc-rs`",
    },
    Rule::OnlyIn {
        dep: "ironrdp-*",
        owners: &["portcullis-rdp"],
        why: "portcullis-rdp is the only crate with IronRDP",
    },
    Rule::OnlyIn {
        dep: "ffmpeg-*",
        owners: &["portcullis-recorder"],
        why: "portcullis-recorder is the only crate with `ffmpeg-next`",
    },
    Rule::OnlyIn {
        dep: "sled",
        owners: &["portcullis-store"],
        why: "portcullis-store is the only crate with `sled`",
    },
    Rule::OnlyIn {
        dep: "postgres",
        owners: &["portcullis-store"],
        why: "portcullis-store is the only crate with `postgres`",
    },
    Rule::OnlyIn {
        dep: "object_store",
        owners: &["portcullis-objects"],
        why: "portcullis-objects is the only crate with `object_store`",
    },
    Rule::OnlyIn {
        dep: "tantivy",
        owners: &["portcullis-search"],
        why: "portcullis-search is the only crate with `tantivy`",
    },
    Rule::OnlyIn {
        dep: "axum*",
        owners: &["portcullis-web"],
        why: "portcullis-web is the only crate with `axum`",
    },
    Rule::OnlyIn {
        dep: "anyhow",
        owners: &["portcullis", "xtask"],
        why: "libraries use `thiserror` error types; the binary is the only crate with `anyhow` \
              (and xtask, which is no library)",
    },
    Rule::Never {
        krate: "*",
        deps: &["ironrdp-server"],
        why: "never `ironrdp-server` 0.13: its `picky` pin cannot share a build with the client \
              crates",
    },
    Rule::Never {
        krate: "portcullis-core",
        deps: RUNTIME_OR_SOCKETS,
        why: "portcullis-core is sans-I/O: never tokio, sockets, clocks, files",
    },
    Rule::Never {
        krate: "portcullis-policy",
        deps: RUNTIME_OR_SOCKETS,
        why: "portcullis-policy never does I/O (time is passed in)",
    },
    Rule::Never {
        krate: "portcullis-audit",
        deps: RUNTIME_OR_SOCKETS,
        why: "portcullis-audit is runtime-free (its `Ticket` is a future any executor can await)",
    },
    Rule::Never {
        krate: "portcullis-recording",
        deps: &[
            "ffmpeg-*", "tokio", "mio", "socket2", "rustls", "hyper", "axum",
        ],
        why: "portcullis-recording: no video codec, no network",
    },
    Rule::Never {
        krate: "portcullis-broker",
        deps: &[
            "axum*",
            "hyper",
            "ffmpeg-*",
            "portcullis-web",
            "portcullis-recorder",
        ],
        why: "portcullis-broker knows adapters, not HTTP, not FFmpeg",
    },
    Rule::Never {
        krate: "portcullis-rdp",
        deps: &["portcullis-broker", "portcullis-store", "portcullis-web"],
        why: "portcullis-rdp's server knows neither the broker nor the store",
    },
];

/// Sans-I/O crates whose own source must not name the standard library's files, sockets,
/// clocks or threads (dependencies cannot show that: `std` is always there). Comments aside.
pub(crate) const SANS_IO_SOURCES: &[(&str, &str)] = &[
    (
        "crates/portcullis-core/src",
        "portcullis-core is sans-I/O: never tokio, sockets, clocks, files",
    ),
    (
        "crates/portcullis-policy/src",
        "portcullis-policy: never I/O, clocks (time is passed in)",
    ),
];

/// What a sans-I/O source file must not name.
const SANS_IO_FORBIDDEN: &[&str] = &[
    "std::fs",
    "std::net",
    "std::thread",
    "SystemTime",
    "Instant",
    "tokio",
];

/// Every line of `files` (path, text) that names one of [`SANS_IO_FORBIDDEN`] outside a
/// comment.
pub(crate) fn source_violations(files: &[(String, String)], why: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in files {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if let Some(word) = SANS_IO_FORBIDDEN.iter().find(|w| code.contains(*w)) {
                found.push(format!(
                    "{path}:{} names {word}, but ARCHITECTURE.md says: {why}",
                    n + 1
                ));
            }
        }
    }
    found
}

/// The `.rs` files under `root`/`dir`, with their text, named relative to `root`.
fn rust_files(root: &Path, dir: &str) -> Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    let mut dirs = vec![root.join(dir)];
    while let Some(d) = dirs.pop() {
        for entry in
            std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let name = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                files.push((name, text));
            }
        }
    }
    Ok(files)
}

/// Normal dependencies by crate name (all versions of a name merged), and the workspace's crates.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    pub(crate) deps: BTreeMap<String, BTreeSet<String>>,
    pub(crate) members: BTreeSet<String>,
}

impl Graph {
    /// Reads the graph from `cargo metadata`'s JSON.
    pub(crate) fn from_metadata(metadata: &Value) -> Result<Self> {
        let mut names = BTreeMap::new();
        for package in metadata["packages"].as_array().context("no packages")? {
            let id = package["id"].as_str().context("a package without id")?;
            let name = package["name"].as_str().context("a package without name")?;
            names.insert(id.to_owned(), name.to_owned());
        }
        let name_of = |id: &Value| -> Result<String> {
            let id = id.as_str().context("an id that is no string")?;
            names
                .get(id)
                .cloned()
                .with_context(|| format!("unknown package {id}"))
        };
        let mut graph = Graph::default();
        for id in metadata["workspace_members"]
            .as_array()
            .context("no workspace_members")?
        {
            graph.members.insert(name_of(id)?);
        }
        let nodes = metadata["resolve"]["nodes"]
            .as_array()
            .context("no resolve graph")?;
        for node in nodes {
            let from = name_of(&node["id"])?;
            let entry = graph.deps.entry(from).or_default();
            for dep in node["deps"].as_array().into_iter().flatten() {
                // `kind` null: a normal dependency ("dev" and "build" never run in the crate).
                let normal = dep["dep_kinds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|k| k["kind"].is_null());
                if normal {
                    entry.insert(name_of(&dep["pkg"])?);
                }
            }
        }
        Ok(graph)
    }

    fn direct<'a>(&'a self, krate: &str) -> impl Iterator<Item = &'a String> {
        self.deps.get(krate).into_iter().flatten()
    }

    /// The shortest chain of normal dependencies from `krate` to a crate matching `pattern`.
    fn path_to<'a>(&'a self, krate: &'a str, pattern: &str) -> Option<Vec<String>> {
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([krate]);
        let mut seen = BTreeSet::from([krate]);
        while let Some(at) = queue.pop_front() {
            for next in self.direct(at) {
                if !seen.insert(next) {
                    continue;
                }
                came_from.insert(next, at);
                if matches(pattern, next) {
                    let mut path = vec![next.clone()];
                    let mut step = next.as_str();
                    while let Some(&prev) = came_from.get(step) {
                        path.push(prev.to_owned());
                        step = prev;
                    }
                    path.reverse();
                    return Some(path);
                }
                queue.push_back(next);
            }
        }
        None
    }
}

/// `pattern` is a crate name, or a prefix followed by `*`.
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// Every rule broken in `graph`, one sentence each.
pub(crate) fn violations(rules: &[Rule], graph: &Graph) -> Vec<String> {
    let mut found = Vec::new();
    for rule in rules {
        match rule {
            Rule::OnlyIn { dep, owners, why } => {
                for member in &graph.members {
                    if owners.contains(&member.as_str()) {
                        continue;
                    }
                    for d in graph.direct(member).filter(|d| matches(dep, d)) {
                        found.push(format!(
                            "{member} depends on {d}, but ARCHITECTURE.md says: {why}"
                        ));
                    }
                }
            }
            Rule::Never { krate, deps, why } => {
                let krates: Vec<&String> = if *krate == "*" {
                    graph.members.iter().collect()
                } else {
                    graph.members.iter().filter(|m| m == krate).collect()
                };
                for k in krates {
                    // The first forbidden crate reached is enough (tokio brings mio along).
                    if let Some(path) = deps.iter().find_map(|dep| graph.path_to(k, dep)) {
                        found.push(format!(
                            "{k} reaches {} ({}), but ARCHITECTURE.md says: {why}",
                            path.last().map_or("?", String::as_str),
                            path.join(" -> ")
                        ));
                    }
                }
            }
        }
    }
    found
}

/// A rule about a crate the workspace does not have is a stale rule: the table must follow
/// renames.
fn unknown_crates(rules: &[Rule], graph: &Graph) -> Vec<String> {
    let mut named = Vec::new();
    for rule in rules {
        match rule {
            Rule::OnlyIn { owners, .. } => named.extend(owners.iter().copied()),
            Rule::Never { krate, .. } if *krate != "*" => named.push(krate),
            Rule::Never { .. } => {}
        }
    }
    named
        .into_iter()
        .filter(|n| !graph.members.contains(*n))
        .map(|n| format!("a rule names {n}, which is not a workspace crate"))
        .collect()
}

/// `cargo xtask check`.
pub(crate) fn check(root: &Path) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let host = host_triple()?;
    // For this platform only: other platforms' crates (Windows consoles...) need not be
    // downloaded, and none of the rules is about them.
    let output = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--filter-platform"])
        .arg(&host)
        .current_dir(root)
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: Value =
        serde_json::from_slice(&output.stdout).context("cargo metadata's output is no JSON")?;
    let graph = Graph::from_metadata(&metadata)?;
    let mut broken = unknown_crates(RULES, &graph);
    broken.extend(violations(RULES, &graph));
    for (dir, why) in SANS_IO_SOURCES {
        broken.extend(source_violations(&rust_files(root, dir)?, why));
    }
    let sources = circles::workspace_sources(&metadata)?;
    for krate in &sources {
        for circle in circles::crate_circles(krate)? {
            broken.push(format!(
                "{} has an import circle between its modules {} (each names the next through \
                 `crate::`, directly or not), but ARCHITECTURE.md says: no import circles inside \
                 a crate",
                krate.name,
                circle.join(", ")
            ));
        }
    }
    if !broken.is_empty() {
        for b in &broken {
            eprintln!("error: {b}");
        }
        bail!(
            "cargo xtask check: {} rule(s) of ARCHITECTURE.md broken",
            broken.len()
        );
    }
    println!(
        "cargo xtask check: {} dependency rules hold for {} workspace crates; {} sans-I/O crates \
         name no file, socket, clock or thread; no import circle between the modules of any of \
         the {} crates",
        RULES.len(),
        graph.members.len(),
        SANS_IO_SOURCES.len(),
        sources.len()
    );
    Ok(())
}

fn host_triple() -> Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .context("cannot run rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV names no host")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(members: &[&str], edges: &[(&str, &str)]) -> Graph {
        let mut g = Graph {
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            ..Graph::default()
        };
        for (from, to) in edges {
            g.deps
                .entry((*from).to_owned())
                .or_default()
                .insert((*to).to_owned());
        }
        g
    }

    #[test]
    fn only_in_allows_the_owner_and_paths_through_it() {
        let rules = [Rule::OnlyIn {
            dep: "sled",
            owners: &["store"],
            why: "store owns sled",
        }];
        let ok = graph(&["store", "web"], &[("store", "sled"), ("web", "store")]);
        assert_eq!(violations(&rules, &ok), Vec::<String>::new());
        let bad = graph(&["store", "web"], &[("store", "sled"), ("web", "sled")]);
        assert_eq!(
            violations(&rules, &bad),
            ["web depends on sled, but ARCHITECTURE.md says: store owns sled"]
        );
    }

    #[test]
    fn only_in_patterns_match_a_family() {
        let rules = [Rule::OnlyIn {
            dep: "ironrdp-*",
            owners: &["rdp"],
            why: "rdp owns IronRDP",
        }];
        let bad = graph(
            &["rdp", "broker"],
            &[("rdp", "ironrdp-pdu"), ("broker", "ironrdp-core")],
        );
        assert_eq!(violations(&rules, &bad).len(), 1);
        assert!(violations(&rules, &bad)[0].contains("broker depends on ironrdp-core"));
    }

    #[test]
    fn never_is_transitive_and_names_the_path() {
        let rules = [Rule::Never {
            krate: "core",
            deps: &["tokio"],
            why: "core is sans-I/O",
        }];
        let ok = graph(&["core"], &[("core", "serde"), ("app", "tokio")]);
        assert_eq!(violations(&rules, &ok), Vec::<String>::new());
        let bad = graph(
            &["core"],
            &[("core", "serde"), ("serde", "helper"), ("helper", "tokio")],
        );
        assert_eq!(
            violations(&rules, &bad),
            [
                "core reaches tokio (core -> serde -> helper -> tokio), but ARCHITECTURE.md says: \
              core is sans-I/O"
            ]
        );
    }

    #[test]
    fn never_for_every_crate_and_cycles_end() {
        let rules = [Rule::Never {
            krate: "*",
            deps: &["ironrdp-server"],
            why: "never",
        }];
        let bad = graph(
            &["a", "b"],
            &[("a", "b"), ("b", "a"), ("b", "ironrdp-server")],
        );
        let v = violations(&rules, &bad);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].contains("a -> b -> ironrdp-server"), "{v:?}");
    }

    #[test]
    fn rules_must_name_existing_crates() {
        let g = graph(&["portcullis-core"], &[]);
        let rules = [Rule::Never {
            krate: "portcullis-cor",
            deps: &["tokio"],
            why: "",
        }];
        assert_eq!(unknown_crates(&rules, &g).len(), 1);
    }

    #[test]
    fn sans_io_sources_name_no_file_socket_or_clock() {
        let files = [
            (
                "a.rs".to_owned(),
                "use std::fs::File;\n// std::net in a comment\nfn f() {}\n".to_owned(),
            ),
            (
                "b.rs".to_owned(),
                "let t = 1; // Instant::now() was here\nlet n = Instant::now();\n".to_owned(),
            ),
        ];
        assert_eq!(
            source_violations(&files, "sans-I/O"),
            [
                "a.rs:1 names std::fs, but ARCHITECTURE.md says: sans-I/O",
                "b.rs:2 names Instant, but ARCHITECTURE.md says: sans-I/O"
            ]
        );
    }

    #[test]
    fn graph_reads_normal_dependencies_from_metadata() {
        let metadata = serde_json::json!({
            "packages": [
                {"id": "p1", "name": "portcullis-core"},
                {"id": "p2", "name": "serde"},
                {"id": "p3", "name": "tokio"},
                {"id": "p4", "name": "cc"},
            ],
            "workspace_members": ["p1"],
            "resolve": {"nodes": [
                {"id": "p1", "deps": [
                    {"pkg": "p2", "dep_kinds": [{"kind": null, "target": null}]},
                    {"pkg": "p3", "dep_kinds": [{"kind": "dev", "target": null}]},
                    {"pkg": "p4", "dep_kinds": [{"kind": "build", "target": null}]},
                ]},
                {"id": "p2", "deps": []},
            ]},
        });
        let g = Graph::from_metadata(&metadata).unwrap();
        assert_eq!(
            g.deps["portcullis-core"],
            BTreeSet::from(["serde".to_owned()])
        );
        assert!(violations(RULES, &g).is_empty());
    }
}
