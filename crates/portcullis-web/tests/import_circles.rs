//! No import circles between this crate's modules: the graph of `crate::…` paths, module by
//! module (one module per file; a path is charged to the longest module it names), has no cycle.
//!
//! Paths to the crate root (`crate::AppState`, `crate::WebError`…) are left out: the root is
//! the composition root that declares every module. Comments are left out; code in
//! `#[cfg(test)]` modules counts too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` → `a::b`; `src/lib.rs` → ``.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let name = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("::");
    if name == "lib" {
        String::new()
    } else {
        name
    }
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

/// Each module and the modules it names.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut list = Vec::new();
    files(src, &mut list);
    let modules: BTreeSet<String> = list.iter().map(|f| module_of(src, f)).collect();
    let mut graph = BTreeMap::new();
    for file in &list {
        let from = module_of(src, file);
        // Comments (docs naming other modules) are no dependency.
        let text: String = std::fs::read_to_string(file)
            .unwrap_or_default()
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
        graph.insert(from, to);
    }
    graph
}

/// The strongly connected components of more than one module (Tarjan).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
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
    let edge = |a: &str, b: &[&str]| (a.to_owned(), b.iter().map(|s| (*s).to_owned()).collect());
    let g: BTreeMap<String, BTreeSet<String>> = [
        edge("a", &["b"]),
        edge("b", &["c"]),
        edge("c", &["a"]),
        edge("d", &["a"]),
    ]
    .into();
    assert_eq!(circles(&g), [["a", "b", "c"]]);
}

#[test]
fn no_import_circles_between_modules() {
    // `MODULE_GRAPH_SRC`: another tree to measure (e.g. an older checkout's `src`).
    let src = std::env::var_os("MODULE_GRAPH_SRC").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        PathBuf::from,
    );
    let graph = graph(&src);
    let found = circles(&graph);
    if std::env::var_os("PRINT_MODULE_GRAPH").is_some() {
        for (from, to) in &graph {
            println!("{from} -> {to:?}");
        }
    }
    assert!(
        found.is_empty(),
        "{} import circle(s) between modules (each a set of modules that name each other, \
         directly or not): {found:?}",
        found.len()
    );
}
