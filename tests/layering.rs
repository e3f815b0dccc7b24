//! The shape of the house, checked from the source: which file imports
//! which, as `use crate::…`, `super::…` and inline `crate::…` paths draw it.
//!
//! - No import cycle between files. A folder's face (`mod.rs`, `lib.rs`)
//!   that hands names on with `pub use` does not import them: whoever
//!   imports a name through it is led to the file that defines it.
//! - Nothing under `src/backend/` imports `crate::train` (or the CLI).
//! - Nothing under `src/train/` names CUDA.
//! - Below training sits what it uses: the data library (`src/data/`)
//!   knows nothing of training, models, pictures or the CLI; what a trained
//!   network is (`src/model/`) knows nothing of training, pictures or the
//!   CLI; pictures (`src/picture/`) take from training only its records
//!   (`src/train/report.rs`).
//! - Passes know nothing of syntax, lowering, backends or training;
//!   backends nothing of syntax or lowering; the IR nothing of
//!   syntax, lowering, passes, backends or training; `onnx` nothing of
//!   backends, training or the CLI.
//!
//! `cargo test --release --test layering -- --nocapture` prints the
//! folder-level import graph.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file (`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`).
fn module_of(root: &Path, f: &Path) -> Vec<String> {
    let rel = f.strip_prefix(root).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().to_string())
        .collect();
    let last = parts.pop().unwrap();
    match last.as_str() {
        "lib.rs" | "main.rs" | "mod.rs" => {}
        other => parts.push(other.trim_end_matches(".rs").to_string()),
    }
    parts
}

/// The code of a file without comments and string literals.
fn code(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            // A string (raw strings with hashes are rare in paths' way).
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            // A char literal such as '{' (lifetimes have no closing quote).
            i += 3;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The paths a `use` tree names, expanded (`a::{b, c::d}` -> `a::b`, `a::c::d`).
fn expand(tree: &str, prefix: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let base = join(prefix, head);
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&inner[start..i], &base, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&inner[start..], &base, out);
    } else if !tree.is_empty() {
        let t = tree.split(" as ").next().unwrap().trim();
        out.push(join(prefix, t));
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}::{b}"),
    }
}

/// Every path a file's code names: `use` trees and inline `crate::`/`super::` paths.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        let after = &rest[i + 4..];
        let Some(end) = after.find(';') else { break };
        if before.is_none_or(|c| !c.is_alphanumeric() && c != '_') {
            expand(&after[..end], "", &mut out);
        }
        rest = &after[end..];
    }
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let end = code[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| at + e);
            out.push(code[at..end].trim_end_matches(':').to_string());
        }
    }
    out
}

/// Whether `word` occurs in `code` as a whole identifier.
fn word_in(code: &str, word: &str) -> bool {
    let b = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    code.match_indices(word).any(|(i, _)| {
        let j = i + word.len();
        (i == 0 || !ident(b[i - 1])) && (j >= b.len() || !ident(b[j]))
    })
}

/// `code` without its `#[cfg(test)]` modules (tests are not the house).
fn without_tests(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let Some(open) = after.find('{') else {
            rest = "";
            break;
        };
        let mut depth = 0;
        let mut end = after.len();
        for (k, ch) in after[open..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `code` without its `pub use …;` items.
fn without_pub_uses(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(i) = rest.find("pub use ") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let end = after.find(';').map_or(after.len(), |e| e + 1);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

struct House {
    /// Module path -> file.
    modules: HashMap<Vec<String>, PathBuf>,
    /// File -> its module path.
    module: HashMap<PathBuf, Vec<String>>,
    /// Files that are folders' faces (`mod.rs`, `lib.rs`) -> their `pub use`s:
    /// name -> absolute path.
    reexports: HashMap<PathBuf, HashMap<String, Vec<String>>>,
    code: HashMap<PathBuf, String>,
}

impl House {
    fn read(root: &Path) -> House {
        let mut all = Vec::new();
        files(root, &mut all);
        all.sort();
        let mut h = House {
            modules: HashMap::new(),
            module: HashMap::new(),
            reexports: HashMap::new(),
            code: HashMap::new(),
        };
        for f in &all {
            let m = module_of(root, f);
            if f.file_name().unwrap() != "main.rs" {
                h.modules.insert(m.clone(), f.clone());
            }
            h.module.insert(f.clone(), m);
            let text = std::fs::read_to_string(f).unwrap();
            h.code.insert(f.clone(), without_tests(&code(&text)));
        }
        for f in &all {
            let name = f.file_name().unwrap();
            if name != "mod.rs" && name != "lib.rs" {
                continue;
            }
            let mut map = HashMap::new();
            let c = &h.code[f];
            let mut rest = c.as_str();
            while let Some(i) = rest.find("pub use ") {
                let after = &rest[i + 8..];
                let end = after.find(';').unwrap_or(after.len());
                let mut ps = Vec::new();
                expand(&after[..end], "", &mut ps);
                for p in ps {
                    let abs = h.absolute(f, &p);
                    if let Some(last) = abs.last() {
                        let alias = after[..end]
                            .rsplit(" as ")
                            .next()
                            .filter(|_| after[..end].contains(" as "))
                            .map(|a| a.trim().to_string());
                        map.insert(alias.unwrap_or(last.clone()), abs);
                    }
                }
                rest = &after[end..];
            }
            h.reexports.insert(f.clone(), map);
        }
        h
    }

    /// `p` as named in file `f`, as an absolute module path.
    fn absolute(&self, f: &Path, p: &str) -> Vec<String> {
        let mut segs: Vec<String> = p.split("::").map(str::to_string).collect();
        let mut base = self.module[f].clone();
        match segs.first().map(String::as_str) {
            Some("crate") => {
                segs.remove(0);
                base.clear();
            }
            Some("super") | Some("self") => {
                while let Some(s) = segs.first() {
                    match s.as_str() {
                        "super" => {
                            base.pop();
                        }
                        "self" => {}
                        _ => break,
                    }
                    segs.remove(0);
                }
            }
            // A path relative to the file's own module (a child module).
            Some(first)
                if self
                    .modules
                    .contains_key(&[base.clone(), vec![first.into()]].concat()) => {}
            _ => return Vec::new(),
        }
        base.extend(segs);
        base
    }

    /// The file that defines what absolute path `p` names, following
    /// re-exports of folders' faces.
    fn resolve(&self, p: &[String], depth: usize) -> Option<PathBuf> {
        for k in (0..=p.len()).rev() {
            if let Some(f) = self.modules.get(&p[..k]) {
                if k < p.len()
                    && depth < 8
                    && let Some(target) = self.reexports.get(f).and_then(|m| m.get(&p[k]))
                {
                    let mut q = target.clone();
                    q.extend_from_slice(&p[k + 1..]);
                    return self.resolve(&q, depth + 1);
                }
                return Some(f.clone());
            }
        }
        None
    }

    /// File -> the files it imports.
    fn edges(&self) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
        let mut g = BTreeMap::new();
        for (f, c) in &self.code {
            let set: &mut BTreeSet<PathBuf> = g.entry(f.clone()).or_default();
            // A folder's face hands names on with `pub use`: that is not an
            // import of its own (importers are led to the defining file).
            let mut c = c.clone();
            let mut named = Vec::new();
            if let Some(map) = self.reexports.get(f) {
                c = without_pub_uses(&c);
                // A name it hands on and also uses itself is imported.
                for (name, abs) in map {
                    if word_in(&c, name) {
                        named.push(format!("crate::{}", abs.join("::")));
                    }
                }
            }
            for p in paths(&c).into_iter().chain(named) {
                let abs = self.absolute(f, &p);
                if abs.is_empty() {
                    continue;
                }
                if let Some(t) = self.resolve(&abs, 0)
                    && &t != f
                    && !self.is_ancestor_face(&t, f)
                {
                    set.insert(t);
                }
            }
        }
        g
    }

    /// Whether `face` is the `mod.rs`/`lib.rs` of a folder holding `f` and
    /// `f` names it only for a name the face itself defines (a parent's
    /// module declaration is not an import).
    fn is_ancestor_face(&self, face: &Path, f: &Path) -> bool {
        let name = face.file_name().unwrap();
        (name == "lib.rs" || name == "mod.rs")
            && f.starts_with(face.parent().unwrap())
            && self.code[face].trim().lines().all(|l| {
                let l = l.trim();
                l.is_empty() || l.starts_with("pub mod") || l.starts_with("mod ")
            })
    }
}

/// Strongly connected components with more than one file (Tarjan).
fn cycles(g: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    struct T<'a> {
        g: &'a BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: HashMap<&'a PathBuf, usize>,
        low: HashMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        on: BTreeSet<&'a PathBuf>,
        out: Vec<Vec<PathBuf>>,
        next: usize,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a PathBuf) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let Some((w, _)) = t.g.get_key_value(w) else {
                continue;
            };
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
        next: 0,
    };
    for v in g.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn house() -> (House, BTreeMap<PathBuf, BTreeSet<PathBuf>>) {
    let h = House::read(Path::new("src"));
    let g = h.edges();
    (h, g)
}

fn area(f: &Path) -> String {
    let rel = f.strip_prefix("src").unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().to_string())
        .collect();
    parts.pop();
    if parts.is_empty() {
        rel.to_string_lossy().trim_end_matches(".rs").to_string()
    } else {
        parts.truncate(2);
        parts.join("/")
    }
}

#[test]
fn no_file_imports_itself_through_a_cycle() {
    let (_, g) = house();
    let mut folders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (f, ts) in &g {
        for t in ts {
            let (a, b) = (area(f), area(t));
            if a != b {
                folders.entry(a).or_default().insert(b);
            }
        }
    }
    println!("folder -> folders it imports:");
    for (a, bs) in &folders {
        println!(
            "  {a} -> {}",
            bs.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let edges: usize = g.values().map(BTreeSet::len).sum();
    assert!(
        edges > 100,
        "only {edges} imports found: the scan is broken"
    );
    let c = cycles(&g);
    let shown: Vec<String> = c
        .iter()
        .map(|comp| {
            let mut s = String::new();
            for f in comp {
                let ts: Vec<String> = g[f]
                    .iter()
                    .filter(|t| comp.contains(t))
                    .map(|t| t.display().to_string())
                    .collect();
                s.push_str(&format!("\n    {} -> {}", f.display(), ts.join(", ")));
            }
            s
        })
        .collect();
    assert!(c.is_empty(), "import cycles:{}", shown.join("\n  and"));
}

#[test]
fn the_scan_finds_a_cycle_when_there_is_one() {
    let mut g: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    let (a, b, c) = (PathBuf::from("a"), PathBuf::from("b"), PathBuf::from("c"));
    g.entry(a.clone()).or_default().insert(b.clone());
    g.entry(b.clone()).or_default().insert(c.clone());
    g.entry(c.clone()).or_default().insert(a.clone());
    assert_eq!(cycles(&g), vec![vec![a, b, c]]);
    let mut paths_found = Vec::new();
    expand("crate::a::{b, c::{d, e as f}}", "", &mut paths_found);
    assert_eq!(
        paths_found,
        ["crate::a::b", "crate::a::c::d", "crate::a::c::e"]
    );
}

#[test]
fn layers_import_only_downwards() {
    let (h, g) = house();
    let mut bad = Vec::new();
    // (files under, may not import files under)
    let rules: &[(&str, &[&str])] = &[
        (
            "src/backend",
            &[
                "src/train",
                "src/data",
                "src/model",
                "src/picture",
                "src/cli",
                "src/ablate",
                "src/main.rs",
                "src/syntax",
                "src/lower",
                "src/frontend.rs",
            ],
        ),
        (
            "src/passes",
            &[
                "src/backend",
                "src/train",
                "src/data",
                "src/model",
                "src/picture",
                "src/cli",
                "src/ablate",
                "src/lower",
                "src/syntax",
            ],
        ),
        (
            "src/ir",
            &[
                "src/syntax",
                "src/lower",
                "src/passes",
                "src/backend",
                "src/train",
                "src/data",
                "src/model",
                "src/picture",
                "src/cli",
            ],
        ),
        (
            "src/syntax",
            &[
                "src/ir",
                "src/lower",
                "src/passes",
                "src/backend",
                "src/train",
            ],
        ),
        ("src/train", &["src/cli", "src/main.rs"]),
        (
            "src/data",
            &[
                "src/train",
                "src/model",
                "src/picture",
                "src/cli",
                "src/main.rs",
                "src/ablate",
                "src/onnx",
            ],
        ),
        (
            "src/model",
            &[
                "src/train",
                "src/picture",
                "src/cli",
                "src/main.rs",
                "src/ablate",
            ],
        ),
        ("src/picture", &["src/cli", "src/main.rs", "src/ablate"]),
        // The atomic writes and output locks every command uses sit at the
        // bottom: they import nothing of the crate.
        ("src/fsio.rs", &["src/"]),
        (
            "src/onnx",
            &[
                "src/backend",
                "src/train",
                "src/data",
                "src/model",
                "src/picture",
                "src/cli",
                "src/ablate",
                "src/main.rs",
                "src/frontend.rs",
            ],
        ),
    ];
    for (f, ts) in &g {
        for (under, never) in rules {
            if !f.starts_with(under) {
                continue;
            }
            for t in ts {
                if never.iter().any(|n| t.starts_with(n)) {
                    bad.push(format!("{} imports {}", f.display(), t.display()));
                }
            }
        }
    }
    // Pictures draw a run from its records alone.
    for (f, ts) in &g {
        if f.starts_with("src/picture") {
            for t in ts {
                if t.starts_with("src/train") && t != Path::new("src/train/report.rs") {
                    bad.push(format!("{} imports {}", f.display(), t.display()));
                }
            }
        }
    }
    // No path into `crate::train` from a backend, even one the scan cannot
    // resolve to a file.
    for (f, c) in &h.code {
        if f.starts_with("src/backend") && paths(c).iter().any(|p| p.starts_with("crate::train")) {
            bad.push(format!("{} names crate::train", f.display()));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_training_loop_never_names_cuda() {
    let mut all = Vec::new();
    files(Path::new("src/train"), &mut all);
    assert!(!all.is_empty());
    let mut bad = Vec::new();
    for f in all {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            if line.to_lowercase().contains("cuda") {
                bad.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(bad.is_empty(), "src/train names CUDA:\n{}", bad.join("\n"));
}
