//! No import circles between the modules of a crate: for every workspace crate, the graph of
//! `crate::…` paths module by module (one module per file; a path is charged to the longest
//! module it names) has no cycle. `cargo xtask check` runs it on every library and binary source
//! directory `cargo metadata` names.
//!
//! Paths to the crate root (`crate::AppState`, `crate::WebError`…) are left out: the root is the
//! composition root that declares every module. Comments are left out; code in `#[cfg(test)]`
//! modules counts too. `super::` and relative paths are not followed: a parent module and its
//! children count as separate modules, joined only by what they name through `crate::`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

/// The module graph: each module and the modules it names.
pub(crate) type ModuleGraph = BTreeMap<String, BTreeSet<String>>;

/// A workspace crate's sources: the directories of its library and binary targets, and their
/// root files (`lib.rs`, `main.rs`…), which are the crate root, not a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CrateSources {
    pub(crate) name: String,
    pub(crate) dirs: Vec<PathBuf>,
    pub(crate) roots: BTreeSet<PathBuf>,
}

/// The library and binary sources of every workspace crate in `cargo metadata`'s JSON.
pub(crate) fn workspace_sources(metadata: &Value) -> Result<Vec<CrateSources>> {
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .context("no workspace_members")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut found = Vec::new();
    for package in metadata["packages"].as_array().context("no packages")? {
        let id = package["id"].as_str().context("a package without id")?;
        if !members.contains(id) {
            continue;
        }
        let name = package["name"].as_str().context("a package without name")?;
        let mut roots = BTreeSet::new();
        for target in package["targets"].as_array().into_iter().flatten() {
            let code = target["kind"].as_array().into_iter().flatten().any(|k| {
                matches!(
                    k.as_str(),
                    Some("lib" | "rlib" | "dylib" | "cdylib" | "staticlib" | "proc-macro" | "bin")
                )
            });
            if code {
                let path = target["src_path"]
                    .as_str()
                    .with_context(|| format!("a target of {name} without src_path"))?;
                roots.insert(PathBuf::from(path));
            }
        }
        let mut dirs: Vec<PathBuf> = roots
            .iter()
            .filter_map(|r| r.parent().map(Path::to_path_buf))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // `src/bin/` is read with `src/`.
        let all = dirs.clone();
        dirs.retain(|d| !all.iter().any(|o| o != d && d.starts_with(o)));
        found.push(CrateSources {
            name: name.to_owned(),
            dirs,
            roots,
        });
    }
    Ok(found)
}

/// Every `.rs` file under `dir`, with its text.
fn read_tree(dir: &Path, out: &mut Vec<(PathBuf, String)>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            read_tree(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            out.push((path, text));
        }
    }
    Ok(())
}

/// The import circles of a crate's sources, read from disk.
pub(crate) fn crate_circles(sources: &CrateSources) -> Result<Vec<Vec<String>>> {
    let mut found = Vec::new();
    for dir in &sources.dirs {
        let mut files = Vec::new();
        read_tree(dir, &mut files)?;
        found.extend(circles(&graph(dir, &sources.roots, &files)));
    }
    Ok(found)
}

/// `src/a/b.rs` → `a::b`; a root file (`src/lib.rs`) → ``.
fn module_of(src: &Path, roots: &BTreeSet<PathBuf>, file: &Path) -> String {
    if roots.contains(file) {
        return String::new();
    }
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("::")
}

/// The paths of a use tree or expression starting right after `crate::` at `text`: `a::b`,
/// `a::{b, c::d}`, `{a, b}`…
fn paths(text: &str, prefix: &str, out: &mut Vec<String>) -> usize {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut path = prefix.to_owned();
    loop {
        if bytes.get(i) == Some(&b'{') {
            i += 1;
            loop {
                while bytes
                    .get(i)
                    .is_some_and(|b| b.is_ascii_whitespace() || *b == b',')
                {
                    i += 1;
                }
                if bytes.get(i).is_none_or(|b| *b == b'}') {
                    return i + 1;
                }
                i += paths(&text[i..], &path, out);
                // Skip `as alias` and anything else up to the next item.
                while bytes.get(i).is_some_and(|b| *b != b',' && *b != b'}') {
                    i += 1;
                }
            }
        }
        let start = i;
        while bytes
            .get(i)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            i += 1;
        }
        let ident = &text[start..i];
        if ident.is_empty() {
            break;
        }
        if !path.is_empty() {
            path.push_str("::");
        }
        path.push_str(ident);
        if text[i..].starts_with("::") {
            i += 2;
        } else {
            break;
        }
    }
    out.push(path);
    i
}

/// Each module of the crate whose sources are `files` (under `src`) and the modules it names.
pub(crate) fn graph(
    src: &Path,
    roots: &BTreeSet<PathBuf>,
    files: &[(PathBuf, String)],
) -> ModuleGraph {
    let modules: BTreeSet<String> = files
        .iter()
        .map(|(f, _)| module_of(src, roots, f))
        .collect();
    let mut graph = BTreeMap::new();
    for (file, text) in files {
        let from = module_of(src, roots, file);
        // Comments (docs naming other modules) are no dependency.
        let text: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut named = Vec::new();
        for (at, _) in text.match_indices("crate::") {
            // Not `portcullis_crate::` or the like.
            if text[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
            {
                continue;
            }
            paths(&text[at + "crate::".len()..], "", &mut named);
        }
        let mut to = BTreeSet::new();
        for path in named {
            // The longest module the path names.
            let parts: Vec<&str> = path.split("::").collect();
            let module = (1..=parts.len())
                .rev()
                .map(|n| parts[..n].join("::"))
                .find(|m| modules.contains(m));
            if let Some(m) = module {
                if m != from {
                    to.insert(m);
                }
            }
        }
        graph.entry(from).or_insert_with(BTreeSet::new).extend(to);
    }
    // The crate root is no module of the graph.
    graph.remove("");
    for to in graph.values_mut() {
        to.remove("");
    }
    graph
}

/// The strongly connected components of more than one module (Tarjan).
pub(crate) fn circles(graph: &ModuleGraph) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a ModuleGraph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake crate: `src/` with these files (path under `src`, text), `lib.rs` its root.
    fn fake(files: &[(&str, &str)]) -> Vec<Vec<String>> {
        let src = Path::new("/fake/src");
        let roots = BTreeSet::from([src.join("lib.rs")]);
        let files: Vec<(PathBuf, String)> = files
            .iter()
            .map(|(p, t)| (src.join(p), (*t).to_owned()))
            .collect();
        circles(&graph(src, &roots, &files))
    }

    #[test]
    fn the_parser_reads_use_trees() {
        let mut out = Vec::new();
        paths(
            "{ops, policy::{store, PolicyState}, AppState};",
            "",
            &mut out,
        );
        assert_eq!(
            out,
            ["ops", "policy::store", "policy::PolicyState", "AppState"]
        );
        out.clear();
        paths("rdp::tickets::rdp_file(&host)", "", &mut out);
        assert_eq!(out, ["rdp::tickets::rdp_file"]);
    }

    #[test]
    fn the_cycle_finder_finds_cycles() {
        let edge =
            |a: &str, b: &[&str]| (a.to_owned(), b.iter().map(|s| (*s).to_owned()).collect());
        let g: ModuleGraph = [
            edge("a", &["b"]),
            edge("b", &["c"]),
            edge("c", &["a"]),
            edge("d", &["a"]),
        ]
        .into();
        assert_eq!(circles(&g), [["a", "b", "c"]]);
    }

    #[test]
    fn a_circle_through_a_submodule_is_caught() {
        let found = fake(&[
            ("lib.rs", "mod a;\nmod b;\npub use a::A;\n"),
            (
                "a.rs",
                "use crate::b::inner::{Thing, Other as O};\npub struct A;\n",
            ),
            ("b.rs", "pub mod inner;\n"),
            ("b/inner.rs", "fn f() -> crate::a::A { crate::a::A }\n"),
        ]);
        assert_eq!(found, [["a", "b::inner"]]);
    }

    #[test]
    fn a_layered_crate_passes() {
        let found = fake(&[
            (
                "lib.rs",
                "mod a;\nmod b;\nuse crate::a::A;\nuse crate::b::B;\n",
            ),
            (
                "a.rs",
                "use crate::b::B;\nuse crate::Root;\npub struct A(B);\n",
            ),
            ("b.rs", "pub struct B;\n"),
        ]);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn comments_the_root_and_other_crates_are_no_dependency() {
        let found = fake(&[
            // The root names everything; `b` names `a` only in comments and through another
            // crate's path; `a` names the root.
            (
                "lib.rs",
                "mod a;\nmod b;\nuse crate::a::A;\nuse crate::b::B;\n",
            ),
            (
                "a.rs",
                "use crate::b::B;\nuse crate::Config;\npub struct A(B);\n",
            ),
            (
                "b.rs",
                "//! Used by [`crate::a::A`].\n/// See crate::a.\npub struct B;\n\
                 fn f() { other_crate::a::g(); }\n",
            ),
        ]);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_binary_root_is_the_crate_root_too() {
        let src = Path::new("/fake/src");
        let roots = BTreeSet::from([src.join("lib.rs"), src.join("main.rs")]);
        let files = [
            (
                src.join("main.rs"),
                "mod cli;\nuse crate::cli::Cli;\n".to_owned(),
            ),
            (src.join("cli.rs"), "use crate::Config;\n".to_owned()),
        ];
        let g = graph(src, &roots, &files);
        assert_eq!(g.keys().collect::<Vec<_>>(), ["cli"]);
        assert!(circles(&g).is_empty());
    }

    #[test]
    fn sources_come_from_the_metadata_of_workspace_crates() {
        let metadata = serde_json::json!({
            "workspace_members": ["w"],
            "packages": [
                {"id": "w", "name": "gateway", "targets": [
                    {"kind": ["lib"], "src_path": "/ws/gw/src/lib.rs"},
                    {"kind": ["bin"], "src_path": "/ws/gw/src/main.rs"},
                    {"kind": ["bin"], "src_path": "/ws/gw/src/bin/tool.rs"},
                    {"kind": ["test"], "src_path": "/ws/gw/tests/it.rs"},
                    {"kind": ["custom-build"], "src_path": "/ws/gw/build.rs"},
                ]},
                {"id": "dep", "name": "serde", "targets": [
                    {"kind": ["lib"], "src_path": "/reg/serde/src/lib.rs"},
                ]},
            ],
        });
        let sources = workspace_sources(&metadata).unwrap();
        assert_eq!(
            sources,
            [CrateSources {
                name: "gateway".to_owned(),
                dirs: vec![PathBuf::from("/ws/gw/src")],
                roots: [
                    "/ws/gw/src/lib.rs",
                    "/ws/gw/src/main.rs",
                    "/ws/gw/src/bin/tool.rs"
                ]
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            }]
        );
    }

    #[test]
    fn xtask_itself_reads_from_disk_without_a_circle() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let sources = CrateSources {
            name: "xtask".to_owned(),
            roots: BTreeSet::from([src.join("main.rs")]),
            dirs: vec![src],
        };
        assert_eq!(crate_circles(&sources).unwrap(), Vec::<Vec<String>>::new());
    }
}
