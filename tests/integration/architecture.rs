//! The one-way layers of ARCHITECTURE.md, checked against the code: every `use` tree and every
//! `crate::`/`super::`/`self::` path in `src/` (comments and string literals left out) is resolved to
//! the module it names, and the test fails on
//! - an import that points up or sideways against the layer table ([`LAYERS`]),
//! - an import of the crate root (`crate::Env`) from anywhere but `lib.rs`, which only dispatches,
//! - any cycle: two top-level modules, or two files, that import each other, directly or around.
//!
//! A parent module may still call into its own children by relative path (`check::run(…)` in a
//! kind's `mod.rs`): that is how Rust dispatches to submodules, and it is not read as an import.
//! Self-contained on purpose (std only, no `tests/common`), so it can move into any test crate.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `(layer, top-level modules, layers it may import, whether its modules may import each other)`,
/// top to bottom. ARCHITECTURE.md states the same table; `the_written_rules_are_the_tested_rules`
/// keeps the two equal. `lib.rs` stands for the crate root.
const LAYERS: &[(&str, &[&str], &[&str], bool)] = &[
    ("entry", &["lib.rs"], &["kinds", "request", "domain", "clients", "transport", "base"], false),
    (
        "kinds",
        &["stemcell", "kubernetes", "fleet", "opsman"],
        &["request", "domain", "clients", "transport", "base"],
        false,
    ),
    ("request", &["config", "context"], &["domain", "clients", "transport", "base"], false),
    ("domain", &["rollout", "versions", "window"], &["clients", "transport", "base"], true),
    ("clients", &["clients"], &["transport", "base"], false),
    ("transport", &["http", "sigv4"], &["base"], true),
    ("base", &["protocol", "redact", "env", "suggest", "stepdir"], &[], false),
];

/// A module as a path from the crate root: `[]` is the root, `["fleet", "put"]` is src/fleet/put.rs.
type Module = Vec<String>;

#[test]
fn imports_follow_the_layers() {
    let files = source_files();
    let edges = imports(&files);
    let mut problems = String::new();
    for (from, to) in &edges {
        if let Some(why) = layer_violation(from, to) {
            writeln!(problems, "  {} imports {}: {why}", name(from), name(to)).unwrap();
        }
    }
    assert!(problems.is_empty(), "imports against the layers of ARCHITECTURE.md:\n{problems}");
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let edges = imports(&source_files());
    let top: BTreeSet<(Module, Module)> = edges
        .iter()
        .filter(|(from, to)| !from.is_empty() && !to.is_empty() && from[0] != to[0])
        .map(|(from, to)| (from[..1].to_vec(), to[..1].to_vec()))
        .collect();
    let mut problems = String::new();
    for (what, graph) in [("top-level modules", top), ("files", edges)] {
        for cycle in cycles(&graph) {
            let names: Vec<String> = cycle.iter().map(name).collect();
            writeln!(problems, "  {what}: {} import each other (directly or around)", names.join(" ↔ ")).unwrap();
        }
    }
    assert!(problems.is_empty(), "import cycles:\n{problems}");
}

#[test]
fn every_top_level_module_has_a_layer() {
    let files = source_files();
    let unplaced: BTreeSet<String> =
        files.keys().filter(|m| !m.is_empty() && layer_of(&m[0]).is_none()).map(|m| m[0].clone()).collect();
    assert!(unplaced.is_empty(), "modules missing from LAYERS and ARCHITECTURE.md: {unplaced:?}");
}

#[test]
fn the_written_rules_are_the_tested_rules() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md at the repo root");
    for (layer, modules, may_import, siblings) in LAYERS {
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("| {layer} |")))
            .unwrap_or_else(|| panic!("ARCHITECTURE.md has no row for layer `{layer}`"));
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let written: Vec<&str> = cells[1].split('`').skip(1).step_by(2).collect();
        assert_eq!(written, *modules, "modules of layer `{layer}` in ARCHITECTURE.md");
        let allowed: Vec<&str> =
            cells[2].split(',').map(str::trim).filter(|w| !w.is_empty() && *w != "nothing").collect();
        assert_eq!(allowed, *may_import, "what layer `{layer}` may import, in ARCHITECTURE.md");
        assert_eq!(cells[3].starts_with("yes"), *siblings, "whether `{layer}`'s modules may import each other");
    }
}

/// Only the step directory's owner writes files (and the download engine, which streams a tarball into
/// a temp file beside its destination and renames it): every other module hands it a relative name.
/// So no output can be written outside the step directory, through a planted symlink, or with the
/// wrong mode, by a module that forgot to check. Test code (after `#[cfg(test)]`) is not counted.
#[test]
fn only_the_step_directory_writes_files() {
    const WRITERS: &[&[&str]] = &[&["stepdir"], &["stemcell", "download"]];
    const WRITES: &[&str] = &[
        "fs::write",
        "File::create",
        "OpenOptions",
        "create_dir",
        "tempfile",
        ".persist(",
        "fs::rename",
        "set_permissions",
        "fs::copy",
        "hard_link",
        "symlink(",
        "remove_file",
        "set_len",
        "write_all_at",
    ];
    let mut problems = String::new();
    for (module, code) in source_files() {
        if WRITERS.iter().any(|w| module == *w) {
            continue;
        }
        let code = code.split("#[cfg(test)]").next().unwrap_or(&code);
        for write in WRITES.iter().filter(|w| code.contains(**w)) {
            writeln!(problems, "  {} uses `{write}`: write through stepdir::StepDir instead", name(&module)).unwrap();
        }
    }
    assert!(problems.is_empty(), "files written outside src/stepdir.rs:\n{problems}");
}

/// Why `from` may not import `to`, or `None` when it may.
fn layer_violation(from: &Module, to: &Module) -> Option<String> {
    if to.is_empty() {
        return (!from.is_empty())
            .then(|| "the crate root only dispatches; import the module that owns the item".into());
    }
    let from_top = from.first().map_or("lib.rs", String::as_str);
    if from_top == to[0] {
        return None;
    }
    let (from_layer, _, may_import, siblings) = layer_of(from_top)?;
    let (to_layer, ..) = layer_of(&to[0])?;
    if from_layer == to_layer {
        return (!siblings).then(|| format!("both are in layer `{from_layer}`, whose modules stay independent"));
    }
    (!may_import.contains(&to_layer)).then(|| format!("layer `{from_layer}` may not import layer `{to_layer}`"))
}

fn layer_of(top: &str) -> Option<(&'static str, &'static [&'static str], &'static [&'static str], bool)> {
    LAYERS.iter().copied().find(|(_, modules, ..)| modules.contains(&top))
}

fn name(module: &Module) -> String {
    if module.is_empty() { "the crate root".into() } else { module.join("::") }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file module under src/, with its code (comments and string contents removed).
fn source_files() -> BTreeMap<Module, String> {
    let src = root().join("src");
    let mut files = BTreeMap::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let code = strip(&std::fs::read_to_string(&path).unwrap());
                files.insert(module_of(&src, &path), code);
            }
        }
    }
    files
}

fn module_of(src: &Path, file: &Path) -> Module {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Module = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// Code without comments, and string and char literals emptied, so a path in a doc comment or an
/// error message is never read as an import.
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        if rest.starts_with(&['/', '/']) {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if rest.starts_with(&['/', '*']) {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i..].starts_with(&['/', '*']) {
                    depth += 1;
                    i += 2;
                } else if chars[i..].starts_with(&['*', '/']) {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some(end) = raw_string_end(&chars, i) {
            out.push_str("\"\"");
            i = end;
        } else if chars[i] == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i += 1;
        } else if let Some(end) = char_literal_end(&chars, i) {
            out.push_str("' '");
            i = end;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// The index after a raw string literal (`r"…"`, `r#"…"#`) starting at `i`.
fn raw_string_end(chars: &[char], i: usize) -> Option<usize> {
    let identifier_before = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
    if chars[i] != 'r' || identifier_before {
        return None;
    }
    let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
    if chars.get(i + 1 + hashes) != Some(&'"') {
        return None;
    }
    let close: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
    let body = i + 2 + hashes;
    (body..chars.len()).find(|&j| chars[j..].starts_with(&close)).map(|j| j + close.len())
}

/// The index after a char literal (`'x'`, `'\n'`, `'\''`) starting at `i`; `None` for a lifetime.
fn char_literal_end(chars: &[char], i: usize) -> Option<usize> {
    if chars[i] != '\'' {
        return None;
    }
    match chars.get(i + 1)? {
        '\\' => (i + 3..chars.len().min(i + 12)).find(|&j| chars[j] == '\'').map(|j| j + 1),
        _ if chars.get(i + 2) == Some(&'\'') => Some(i + 3),
        _ => None,
    }
}

/// Every import as (importing file module, imported module), self-imports left out.
fn imports(files: &BTreeMap<Module, String>) -> BTreeSet<(Module, Module)> {
    let mut edges = BTreeSet::new();
    for (module, code) in files {
        for (inline, path) in paths_in(code) {
            let here: Module = module.iter().chain(&inline).cloned().collect();
            if let Some(target) = resolve(files, &here, &path)
                && target != *module
            {
                edges.insert((module.clone(), target));
            }
        }
    }
    edges
}

/// The paths a file names, each with the inline modules (`mod tests { … }`) it sits in: the full
/// paths of every `use` tree, and every other path that starts with `crate`, `super` or `self`.
fn paths_in(code: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let tokens = tokenize(code);
    let mut found = Vec::new();
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let scope: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
        match tokens[i].as_str() {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            "mod" if tokens.get(i + 2).is_some_and(|t| t == "{") => {
                inline.push((tokens[i + 1].clone(), depth));
            }
            "use" => {
                let end = (i..tokens.len()).find(|&j| tokens[j] == ";").unwrap_or(tokens.len());
                for path in expand_use(&tokens[i + 1..end]) {
                    found.push((scope.clone(), path));
                }
                i = end;
            }
            "crate" | "super" | "self" if tokens.get(i + 1).is_some_and(|t| t == "::") => {
                let mut path = vec![tokens[i].clone()];
                let mut j = i + 1;
                while tokens.get(j).is_some_and(|t| t == "::") && tokens.get(j + 1).is_some_and(|t| is_ident(t)) {
                    path.push(tokens[j + 1].clone());
                    j += 2;
                }
                found.push((scope, path));
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// Identifiers, `::` and single punctuation characters.
fn tokenize(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push("::".into());
            i += 2;
        } else {
            if !c.is_whitespace() {
                tokens.push(c.to_string());
            }
            i += 1;
        }
    }
    tokens
}

fn is_ident(token: &str) -> bool {
    token.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The full paths of a `use` tree (`a::{b, c::{d, self}}` → `a::b`, `a::c::d`, `a::c`); `as` renames
/// and globs end a path.
fn expand_use(tokens: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut at = 0;
    expand_into(tokens, &mut at, Vec::new(), &mut out);
    out
}

fn expand_into(tokens: &[String], at: &mut usize, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    while *at < tokens.len() {
        match tokens[*at].as_str() {
            "{" => {
                *at += 1;
                while *at < tokens.len() && tokens[*at] != "}" {
                    expand_into(tokens, at, prefix.clone(), out);
                    if tokens.get(*at).is_some_and(|t| t == ",") {
                        *at += 1;
                    }
                }
                *at += 1;
                return;
            }
            "::" => *at += 1,
            "," | "}" => break,
            "as" => *at += 2,
            "*" => *at += 1,
            "self" if !prefix.is_empty() => *at += 1,
            word => {
                prefix.push(word.to_string());
                *at += 1;
            }
        }
    }
    if !prefix.is_empty() {
        out.push(prefix);
    }
}

/// The file module a path names from module `here` (which may sit inside inline modules): the
/// longest prefix that is a file module. External crates and std resolve to `None`.
fn resolve(files: &BTreeMap<Module, String>, here: &Module, path: &[String]) -> Option<Module> {
    let mut base: Module = match path.first()?.as_str() {
        "crate" => Vec::new(),
        "self" | "super" => here.clone(),
        // A relative path names a child module of this file's module, or else an external crate.
        first if files.contains_key(&[here.as_slice(), &[first.to_string()]].concat()) => here.clone(),
        _ => return None,
    };
    let mut rest = &path[usize::from(matches!(path[0].as_str(), "crate" | "self"))..];
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    let mut module = base;
    while !files.contains_key(&module) {
        module.pop()?;
    }
    for segment in rest {
        module.push(segment.clone());
        if !files.contains_key(&module) {
            module.pop();
            break;
        }
    }
    Some(module)
}

/// The strongly connected components of more than one node (Tarjan), each sorted.
fn cycles(edges: &BTreeSet<(Module, Module)>) -> Vec<Vec<Module>> {
    let mut graph: BTreeMap<&Module, Vec<&Module>> = BTreeMap::new();
    for (from, to) in edges {
        graph.entry(from).or_default().push(to);
        graph.entry(to).or_default();
    }
    let nodes: Vec<&Module> = graph.keys().copied().collect();
    let index_of: BTreeMap<&Module, usize> = nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut state = Tarjan {
        next: 0,
        index: vec![None; nodes.len()],
        low: vec![0; nodes.len()],
        stack: Vec::new(),
        on_stack: vec![false; nodes.len()],
        found: Vec::new(),
    };
    let successors: Vec<Vec<usize>> = nodes.iter().map(|n| graph[n].iter().map(|m| index_of[m]).collect()).collect();
    for v in 0..nodes.len() {
        if state.index[v].is_none() {
            state.visit(v, &successors);
        }
    }
    state
        .found
        .into_iter()
        .map(|component| {
            let mut names: Vec<Module> = component.into_iter().map(|i| nodes[i].clone()).collect();
            names.sort();
            names
        })
        .collect()
}

struct Tarjan {
    next: usize,
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    stack: Vec<usize>,
    on_stack: Vec<bool>,
    found: Vec<Vec<usize>>,
}

impl Tarjan {
    fn visit(&mut self, v: usize, successors: &[Vec<usize>]) {
        self.index[v] = Some(self.next);
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        for &w in &successors[v] {
            match self.index[w] {
                None => {
                    self.visit(w, successors);
                    self.low[v] = self.low[v].min(self.low[w]);
                }
                Some(index) if self.on_stack[w] => self.low[v] = self.low[v].min(index),
                Some(_) => {}
            }
        }
        if Some(self.low[v]) == self.index[v] {
            let mut component = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                self.found.push(component);
            }
        }
    }
}

#[test]
fn the_reader_understands_use_trees_comments_and_strings() {
    let code = strip(
        "use crate::config::{self, Typed, stemcell::{GetParams as G, Source}};\n\
         // use crate::nope::Hidden;\n/* crate::nope::x */ let s = \"crate::nope::y\";\n\
         let raw = r#\"crate::nope\"#; let c = '\"'; fn f<'a>(x: &'a str) { crate::http::describe(x); }\n\
         mod tests { use super::*; }",
    );
    let paths: Vec<String> =
        paths_in(&code).into_iter().map(|(scope, p)| format!("{}:{}", scope.join("::"), p.join("::"))).collect();
    assert_eq!(
        paths,
        [
            ":crate::config",
            ":crate::config::Typed",
            ":crate::config::stemcell::GetParams",
            ":crate::config::stemcell::Source",
            ":crate::http::describe",
            "tests:super",
        ]
    );
}
