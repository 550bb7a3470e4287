//! The code's shape, checked from its text (ARCHITECTURE.md says why each rule holds):
//!
//! - the crate's top-level modules are stages of the data path, in [`STAGES`] order, and a file
//!   of one stage names only its own stage and earlier ones (`crate::…`, `super::…`, and in the
//!   CLI `llama_webgpu::…`);
//! - no two files import each other, directly or around a loop, in the crate, the CLI, the npm
//!   package or the demo. A Rust file depends on the file that defines a name it uses through a
//!   path (a re-export in a `mod.rs` is not a definition, and declaring a child module is not an
//!   import); a JS module depends on the modules it imports.
//!
//! Run: `cargo test --test layering`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The data path, in order. `error` wraps every stage's error for the callers above it (the
/// wasm bindings, the tools and the CLI, `bin`).
const STAGES: &[&str] = &[
    "quant", "gguf", "model", "tokenizer", "reference", "gpu", "decode", "net", "error", "wasm", "tools", "bin",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, ext, out);
        } else if p.extension().is_some_and(|e| e == ext) {
            out.push(p);
        }
    }
}

/// A Rust source file: its module path in its crate (`["gpu", "ops", "matmul"]`) and which crate.
struct RustFile {
    path: PathBuf,
    module: Vec<String>,
    bin: bool,
    text: String,
}

fn rust_files() -> Vec<RustFile> {
    let src = root().join("src");
    let mut paths = Vec::new();
    files(&src, "rs", &mut paths);
    paths
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&src).unwrap();
            let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
            let bin = parts[0] == "bin";
            if bin {
                parts.drain(..2); // bin/llama-webgpu/
            }
            let last = parts.pop().unwrap();
            let stem = last.trim_end_matches(".rs");
            if !matches!(stem, "mod" | "lib" | "main") {
                parts.push(stem.to_string());
            }
            let text = std::fs::read_to_string(&path).unwrap();
            RustFile { path, module: parts, bin, text }
        })
        .collect()
}

/// The text without comments and string literals, so that prose never reads as a path.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' && (i == 0 || b[i - 1] != b'\'') {
            // A raw string's hashes are skipped with its `r`; plain strings end at an unescaped quote.
            let raw_hashes = text[..i].chars().rev().take_while(|&c| c == '#').count();
            let raw = text[..i - raw_hashes].ends_with('r');
            i += 1;
            if raw {
                let close = format!("\"{}", "#".repeat(raw_hashes));
                i += text[i..].find(&close).map_or(text.len() - i, |k| k + close.len());
            } else {
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Every path the code names: `use` trees expanded (`a::{b, c::d}` → `a::b`, `a::c::d`) and
/// paths written inline, as segment lists starting with `crate`, `super`, `self` or the crate's
/// name. Without `reexports`, `pub use` items are left out: a module's face is not a use.
fn named_paths(code: &str, reexports: bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let boundary = i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric() && rest.as_bytes()[i - 1] != b'_';
        let line_start = rest[..i].rfind('\n').map_or(0, |k| k + 1);
        let reexport = rest[line_start..i].trim_start().starts_with("pub");
        let after = &rest[i + 4..];
        let end = after.find(';').unwrap_or(after.len());
        if boundary && (reexports || !reexport) {
            expand(&after[..end].split_whitespace().collect::<String>(), &mut Vec::new(), &mut out);
        }
        rest = &after[end.min(after.len())..];
    }
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "llama_webgpu::"] {
        let mut from = 0;
        while let Some(k) = code[from..].find(start) {
            let at = from + k;
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_' || bytes[at - 1] == b':') {
                continue;
            }
            let path: String = code[at..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            out.push(path.split("::").filter(|s| !s.is_empty()).map(str::to_string).collect());
        }
    }
    out
}

fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open].split("::").filter(|s| !s.is_empty()).map(str::to_string).collect();
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut part = String::new();
        let n = prefix.len();
        prefix.extend(head);
        for c in inner.chars().chain([',']) {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    if !part.is_empty() {
                        expand(&part, prefix, out);
                    }
                    part.clear();
                    continue;
                }
                _ => {}
            }
            part.push(c);
        }
        prefix.truncate(n);
    } else {
        let name = tree.split(" as ").next().unwrap_or(tree);
        let mut p = prefix.clone();
        p.extend(name.split("::").filter(|s| !s.is_empty()).map(str::to_string));
        out.push(p);
    }
}

/// The module (of the file's crate) a path points into and the name it ends with, resolving
/// `crate`, `super`, `self` and a child module's name; `None` for paths into other crates. The
/// second value says the path is into the library (from the library, or from the CLI).
fn resolve(file: &RustFile, path: &[String], children: &BTreeSet<Vec<String>>) -> Option<(Vec<String>, bool)> {
    let first = path.first()?.as_str();
    let mut child = file.module.clone();
    child.push(first.to_string());
    let (mut module, rest, into_lib) = match first {
        _ if children.contains(&child) => (file.module.clone(), path, false),
        "crate" => (Vec::new(), &path[1..], false),
        "llama_webgpu" => (Vec::new(), &path[1..], true),
        "self" => (file.module.clone(), &path[1..], false),
        "super" => {
            let mut m = file.module.clone();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                m.pop();
                rest = &rest[1..];
            }
            (m, rest, false)
        }
        _ => return None,
    };
    module.extend(rest.iter().cloned());
    Some((module, into_lib || !file.bin))
}

/// Top-level items each file defines, by name.
fn definitions(files: &[RustFile]) -> BTreeMap<(bool, String), Vec<usize>> {
    let mut defs: BTreeMap<(bool, String), Vec<usize>> = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        for line in code_only(&f.text).lines() {
            let l = line.trim_start();
            let l = l.strip_prefix("pub(crate) ").or_else(|| l.strip_prefix("pub(super) ")).or_else(|| l.strip_prefix("pub ")).unwrap_or(l);
            let l = l.strip_prefix("async ").unwrap_or(l);
            for kw in ["struct ", "enum ", "fn ", "trait ", "const ", "static ", "type ", "macro_rules! "] {
                if let Some(r) = l.strip_prefix(kw) {
                    let name: String = r.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() && line.len() - line.trim_start().len() <= 4 {
                        defs.entry((!f.bin, name)).or_default().push(i);
                    }
                }
            }
        }
    }
    defs
}

/// The module paths of one crate's files (the library's, or with `bin` the CLI's).
fn modules(files: &[RustFile], bin: bool) -> BTreeSet<Vec<String>> {
    files.iter().filter(|f| f.bin == bin).map(|f| f.module.clone()).collect()
}

fn stage_of(module: &[String], bin: bool) -> Option<usize> {
    let name = if bin { "bin" } else { module.first()?.as_str() };
    STAGES.iter().position(|s| *s == name)
}

#[test]
fn each_stage_imports_only_earlier_stages() {
    let mut bad = Vec::new();
    let files = rust_files();
    let mods = [modules(&files, false), modules(&files, true)];
    for f in &files {
        let Some(own) = stage_of(&f.module, f.bin) else {
            continue; // lib.rs, which only declares the stages
        };
        for p in named_paths(&code_only(&f.text), true) {
            let Some((module, lib)) = resolve(f, &p, &mods[f.bin as usize]) else { continue };
            if f.bin && !lib {
                continue; // the CLI's own modules
            }
            if let Some(target) = stage_of(&module, false) {
                if target > own {
                    bad.push(format!("{} ({}) names {} ({})", f.path.display(), STAGES[own], p.join("::"), STAGES[target]));
                }
            }
        }
    }
    let mut top: Vec<String> = std::fs::read_to_string(root().join("src/lib.rs"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod ").map(|m| m.trim_end_matches(';').to_string()))
        .collect();
    top.retain(|m| !STAGES.contains(&m.as_str()));
    assert!(top.is_empty(), "top-level modules that are not stages: {top:?}");
    assert!(bad.is_empty(), "imports of later stages:\n{}", bad.join("\n"));
}

/// Strongly connected groups of more than one node (Tarjan), by name.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let l = t.low[w].min(t.low[v]);
                t.low.insert(v, l);
            } else if t.on.contains(w) {
                let l = t.index[w].min(t.low[v]);
                t.low.insert(v, l);
            }
        }
        if t.low[v] == t.index[v] {
            let mut group = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                group.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                t.out.push(group);
            }
        }
    }
    let mut t = T { edges, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), out: Vec::new() };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_rust_file_imports_in_a_circle() {
    let files = rust_files();
    let defs = definitions(&files);
    let mods = [modules(&files, false), modules(&files, true)];
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let name = |i: usize| files[i].path.strip_prefix(root()).unwrap().display().to_string();
    for (i, f) in files.iter().enumerate() {
        let from = edges.entry(name(i)).or_default().clone();
        let mut to = from;
        for p in named_paths(&code_only(&f.text), false) {
            let Some((module, lib)) = resolve(f, &p, &mods[f.bin as usize]) else { continue };
            // The file that defines the path's item inside the module the path names (a
            // re-export is followed to the definition by searching that module's subtree). The
            // item is the longest prefix that names a definition: `gpu::GpuContext::new` is
            // `GpuContext`.
            for k in (1..=module.len()).rev() {
                let (item, within) = (&module[k - 1], &module[..k - 1]);
                let targets: Vec<usize> = defs
                    .get(&(lib, item.clone()))
                    .into_iter()
                    .flatten()
                    .copied()
                    .filter(|&j| files[j].module.starts_with(within) && files[j].bin == (f.bin && !lib))
                    .collect();
                if !targets.is_empty() {
                    to.extend(targets.into_iter().filter(|&j| j != i).map(name));
                    break;
                }
            }
        }
        edges.insert(name(i), to);
    }
    let found = cycles(&edges);
    assert!(found.is_empty(), "Rust files that import each other: {found:?}");
    // The check sees real imports: the GPU loader uses the graph it builds.
    assert!(edges["src/gpu/loader.rs"].contains("src/gpu/graph.rs"), "{:?}", edges["src/gpu/loader.rs"]);
}

/// Relative imports of a JS module: `import … from './x.js'`, `export … from`, `import('./x.js')`.
fn js_imports(path: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for quote in ['\'', '"'] {
        for pat in [format!("from {quote}"), format!("import({quote}"), format!("import {quote}")] {
            let mut rest = text.as_str();
            while let Some(k) = rest.find(&pat) {
                let after = &rest[k + pat.len()..];
                let spec = &after[..after.find(quote).unwrap_or(0)];
                if spec.starts_with('.') {
                    out.push(path.parent().unwrap().join(spec));
                }
                rest = after;
            }
        }
    }
    out
}

#[test]
fn no_js_module_imports_in_a_circle() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut n = 0;
    for dir in ["www/package/src", "www/demo"] {
        let mut paths = Vec::new();
        files(&root().join(dir), "js", &mut paths);
        for p in paths {
            let key = |p: &Path| {
                let p = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
                p.strip_prefix(std::fs::canonicalize(root()).unwrap()).unwrap_or(&p).display().to_string()
            };
            let to = js_imports(&p).iter().map(|q| key(q)).collect();
            edges.insert(key(&p), to);
            n += 1;
        }
    }
    assert!(n > 10 && edges.values().any(|e| !e.is_empty()), "read {n} modules");
    let found = cycles(&edges);
    assert!(found.is_empty(), "JS modules that import each other: {found:?}");
}

/// The checks above can fail: the cycle finder sees a loop, and a later stage named from an
/// earlier one is caught.
#[test]
fn the_checks_see_what_they_look_for() {
    let edge = |a: &str, b: &str| (a.to_string(), BTreeSet::from([b.to_string()]));
    let loop_of_three = BTreeMap::from([edge("a", "b"), edge("b", "c"), edge("c", "a"), edge("d", "a")]);
    assert_eq!(cycles(&loop_of_three).len(), 1);
    let f = RustFile { path: "src/model/x.rs".into(), module: vec!["model".into(), "x".into()], bin: false, text: String::new() };
    let paths = named_paths(&code_only("use crate::gpu::{GpuContext, ops::MatmulOp};\n// crate::decode::Decoding\n"), true);
    let named = |p: &[&str]| paths.iter().any(|q| q.iter().map(String::as_str).eq(p.iter().copied()));
    assert!(named(&["crate", "gpu", "ops", "MatmulOp"]) && !named(&["crate", "decode", "Decoding"]), "{paths:?}");
    let (module, _) = resolve(&f, &paths[1], &BTreeSet::new()).unwrap();
    assert!(stage_of(&module, false) > stage_of(&f.module, false));
}
