//! The crate has no import circle (docs/architecture.md: each floor uses only the floors below
//! it). Every `src/**/*.rs` file is read, test modules left out; each reference to another of
//! the crate's modules (`use crate::…`, grouped or not, `super::…`, inline `crate::x::y` paths,
//! a child module's items, and in the binary `rekey::…`) is resolved to the file that defines
//! what it names, following re-exports; the files that import each other in a circle (strongly
//! connected components of more than one file) are named. A parent declaring `mod child;` is not
//! an import by itself.
//!
//! [`KNOWN`] lists the circles that remain while they are being removed: the test fails on a
//! circle not listed, and on a listed circle that no longer exists (remove it from the list).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The circles still in the crate, each as its files sorted; the list sorted.
const KNOWN: &[&[&str]] = &[];

#[test]
fn the_crate_has_no_import_circle_but_those_known() {
    let crate_ = Crate::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let found: BTreeSet<Vec<String>> = crate_.circles().into_iter().collect();
    let known: BTreeSet<Vec<String>> = KNOWN
        .iter()
        .map(|c| c.iter().map(|f| f.to_string()).collect())
        .collect();
    let mut failures = Vec::new();
    for circle in found.difference(&known) {
        failures.push(format!(
            "import circle among {}:\n{}",
            circle.join(", "),
            crate_.edges_within(circle)
        ));
    }
    for circle in known.difference(&found) {
        failures.push(format!(
            "the known circle {} no longer exists: remove it from KNOWN",
            circle.join(", ")
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The reader finds what it should in a small crate written for it.
#[test]
fn the_reader_resolves_grouped_uses_inline_paths_super_and_reexports() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let files = [
        (
            "lib.rs",
            "pub mod a; pub mod b; pub mod c; pub mod d; mod e; mod f;",
        ),
        // `a` re-exports its child's item; `a::child` uses an item of its parent.
        (
            "a.rs",
            "mod child; pub use child::Thing; pub struct Parent;",
        ),
        ("a/child.rs", "use super::Parent; pub struct Thing;"),
        // `b` reaches `c` through a grouped use, `c` reaches `b` inline: a circle.
        (
            "b.rs",
            "use crate::{a::Thing, c::{self, Gamma}}; pub fn beta() {}",
        ),
        (
            "c.rs",
            "// crate::d::Delta in a comment is not a reference\n\
             pub struct Gamma; fn f() { let s = \"crate::d::x\"; crate::b::beta(); }\n\
             #[cfg(test)]\nmod tests { use crate::d::Delta; }",
        ),
        // `d` names `a::Thing` through `a`'s re-export: the file that defines it is `a/child.rs`.
        ("d.rs", "pub struct Delta; fn g(_: crate::a::Thing) {}"),
        // `e` re-exports all of `d`; `f` names `d`'s item through it.
        ("e.rs", "pub use crate::d::*;"),
        ("f.rs", "use crate::e::Delta;"),
        (
            "main.rs",
            "mod cli; fn main() { rekey::b::beta(); cli::cli(); }",
        ),
        (
            "cli.rs",
            "use rekey::d::Delta; pub fn cli() { crate::main(); }",
        ),
    ];
    for (name, text) in files {
        let path = src.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let crate_ = Crate::read(src);
    let edges =
        |file: &str| -> Vec<&str> { crate_.edges[file].iter().map(String::as_str).collect() };
    assert_eq!(edges("a.rs"), ["a/child.rs"]);
    assert_eq!(edges("a/child.rs"), ["a.rs"]);
    assert_eq!(edges("b.rs"), ["a/child.rs", "c.rs"]);
    assert_eq!(edges("c.rs"), ["b.rs"]);
    assert_eq!(edges("d.rs"), ["a/child.rs"]);
    assert_eq!(edges("e.rs"), ["d.rs"]);
    assert_eq!(edges("f.rs"), ["d.rs"]);
    assert_eq!(edges("main.rs"), ["b.rs", "cli.rs"]);
    assert_eq!(edges("cli.rs"), ["d.rs", "main.rs"]);
    let circles = crate_.circles();
    let want: Vec<Vec<String>> = vec![
        vec!["a.rs".into(), "a/child.rs".into()],
        vec!["b.rs".into(), "c.rs".into()],
        vec!["cli.rs".into(), "main.rs".into()],
    ];
    assert_eq!(circles, want);
}

/// A module of the crate: its file, what it defines, what its `use` items bind.
#[derive(Debug, Default)]
struct Module {
    file: String,
    /// Names of items defined in the file (inline modules included).
    defines: BTreeSet<String>,
    /// Name bound by a `use` → the path it names (as written).
    binds: BTreeMap<String, Vec<String>>,
    /// Glob imports (`use a::b::*`), as written.
    globs: Vec<Vec<String>>,
    /// Paths referred to outside `use` items, as written.
    paths: Vec<Vec<String>>,
}

/// Every module of the library and of the binary, keyed by module path (`crate::a::b` for the
/// library, `bin::cli` for the binary).
struct Crate {
    modules: BTreeMap<String, Module>,
    /// File → files it refers to.
    edges: BTreeMap<String, BTreeSet<String>>,
}

const LIB: &str = "crate";
const BIN: &str = "bin";

impl Crate {
    fn read(src: &Path) -> Crate {
        let main = std::fs::read_to_string(src.join("main.rs")).unwrap_or_default();
        let bin_children: BTreeSet<String> = declared_mods(&lex(&main));
        let mut modules = BTreeMap::new();
        for path in rust_files(src) {
            let rel = path
                .strip_prefix(src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let mut parts: Vec<String> = rel
                .trim_end_matches(".rs")
                .split('/')
                .map(str::to_string)
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            let root = match parts.first().map(String::as_str) {
                Some("lib") if parts.len() == 1 => {
                    parts.clear();
                    LIB
                }
                Some("main") if parts.len() == 1 => {
                    parts.clear();
                    BIN
                }
                Some(first) if bin_children.contains(first) => BIN,
                _ => LIB,
            };
            let key = std::iter::once(root.to_string())
                .chain(parts)
                .collect::<Vec<_>>();
            let text = std::fs::read_to_string(&path).unwrap();
            let mut module = parse(&lex(&text));
            module.file = rel;
            modules.insert(key.join("::"), module);
        }
        let mut crate_ = Crate {
            modules,
            edges: BTreeMap::new(),
        };
        crate_.link();
        crate_
    }

    /// Resolves every reference of every module to the file that defines what it names.
    fn link(&mut self) {
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (key, module) in &self.modules {
            let from = &module.file;
            let targets = edges.entry(from.clone()).or_default();
            let all = module
                .binds
                .values()
                .chain(&module.globs)
                .chain(&module.paths);
            for path in all {
                if let Some(to) = self.resolve(key, path, 0).and_then(|m| self.file_of(&m))
                    && &to != from
                {
                    targets.insert(to);
                }
            }
        }
        self.edges = edges;
    }

    fn file_of(&self, target: &Target) -> Option<String> {
        let key = match target {
            Target::Module(key) | Target::Item(key) => key,
        };
        self.modules.get(key).map(|m| m.file.clone())
    }

    /// What `path`, written in module `from`, names: a module, or an item of a module (the
    /// module that defines it); `None` outside the crate.
    fn resolve(&self, from: &str, path: &[String], depth: usize) -> Option<Target> {
        if depth > 16 || path.is_empty() {
            return None;
        }
        let (first, rest) = path.split_first()?;
        let start = match first.as_str() {
            "crate" => from.split("::").next()?.to_string(),
            "self" => from.to_string(),
            "super" => parent(from)?,
            "rekey" if from.starts_with(BIN) => LIB.to_string(),
            name => return self.name_in(from, name, rest, depth),
        };
        self.walk(start, rest, depth)
    }

    /// `name` as seen from inside module `at` (a child module, a `use` binding, an item
    /// defined there), then `rest` below it.
    fn name_in(&self, at: &str, name: &str, rest: &[String], depth: usize) -> Option<Target> {
        if name == "super" {
            return self.walk(parent(at)?, rest, depth);
        }
        if name == "self" {
            return self.walk(at.to_string(), rest, depth);
        }
        let child = format!("{at}::{name}");
        if self.modules.contains_key(&child) {
            return self.walk(child, rest, depth);
        }
        let module = self.modules.get(at)?;
        if let Some(bound) = module.binds.get(name) {
            let mut full = bound.clone();
            full.extend(rest.iter().cloned());
            return self.resolve(at, &full, depth + 1);
        }
        if module.defines.contains(name) {
            return Some(Target::Item(at.to_string()));
        }
        // Through a glob import (`pub use inner::*`), when it names a module of the crate.
        module.globs.iter().find_map(|glob| {
            // Only a glob of the crate's own modules (`rayon::prelude::*` is none of them).
            let first = glob.first()?.as_str();
            let own = matches!(first, "crate" | "super" | "self" | "rekey")
                || self.modules.contains_key(&format!("{at}::{first}"));
            if !own {
                return None;
            }
            let Some(Target::Module(from)) = self.resolve(at, glob, depth + 1) else {
                return None;
            };
            match self.name_in(&from, name, rest, depth + 1)? {
                Target::Module(m) if m == from => None,
                found => Some(found),
            }
        })
    }

    /// Walks `rest` down from module `at`.
    fn walk(&self, at: String, rest: &[String], depth: usize) -> Option<Target> {
        match rest.split_first() {
            None => Some(Target::Module(at)),
            Some((next, rest)) => match self.name_in(&at, next, rest, depth) {
                Some(found) => Some(found),
                // Something the reader does not see (a macro's item): the module itself.
                None => Some(Target::Item(at)),
            },
        }
    }

    /// The files of every circle, each sorted, the list sorted.
    fn circles(&self) -> Vec<Vec<String>> {
        let nodes: Vec<&String> = self.edges.keys().collect();
        let index: BTreeMap<&String, usize> =
            nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let adjacent: Vec<Vec<usize>> = nodes
            .iter()
            .map(|n| {
                self.edges[*n]
                    .iter()
                    .filter_map(|to| index.get(to).copied())
                    .collect()
            })
            .collect();
        let mut circles: Vec<Vec<String>> = strongly_connected(&adjacent)
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|c| {
                let mut files: Vec<String> = c.iter().map(|i| nodes[*i].clone()).collect();
                files.sort();
                files
            })
            .collect();
        circles.sort();
        circles
    }

    /// The references between the files of one circle, one line each.
    fn edges_within(&self, circle: &[String]) -> String {
        let mut lines = Vec::new();
        for from in circle {
            for to in &self.edges[from] {
                if circle.contains(to) {
                    lines.push(format!("  {from} -> {to}"));
                }
            }
        }
        lines.join("\n")
    }
}

#[derive(Debug)]
enum Target {
    Module(String),
    /// An item defined in this module.
    Item(String),
}

fn parent(module: &str) -> Option<String> {
    module.rsplit_once("::").map(|(p, _)| p.to_string())
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            found.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

/// Tarjan's algorithm; every component, in no particular order.
fn strongly_connected(adjacent: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        adjacent: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        found: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State<'_>, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &s.adjacent[v] {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(i) if s.on_stack[w] => s.low[v] = s.low[v].min(i),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().expect("v is on the stack");
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            s.found.push(component);
        }
    }
    let n = adjacent.len();
    let mut s = State {
        adjacent,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.found
}

/// A token of Rust source, comments, strings and characters left out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    /// `::`
    Path,
    Punct(char),
}

fn lex(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '"' {
            i = skip_string(&chars, i);
        } else if (c == 'r' || c == 'b' || c == 'c')
            && (at(i + 1) == '"'
                || (at(i + 1) == '#' && (at(i + 2) == '"' || at(i + 2) == '#'))
                || (c == 'b' && at(i + 1) == 'r' && (at(i + 2) == '"' || at(i + 2) == '#')))
        {
            // A raw or byte string: r"…", r#"…"#, b"…", br#"…"#.
            let mut j = i + 1;
            if chars[j] == 'r' {
                j += 1;
            }
            let raw = c == 'r' || chars[i + 1] == 'r';
            if raw {
                let mut hashes = 0;
                while at(j) == '#' {
                    hashes += 1;
                    j += 1;
                }
                j += 1; // the opening quote
                loop {
                    if j >= chars.len() {
                        break;
                    }
                    if chars[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#') {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                i = j;
            } else {
                i = skip_string(&chars, j);
            }
        } else if c == 'b' && at(i + 1) == '\'' {
            i = skip_char(&chars, i + 1);
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            if at(i + 1) == '\\' || at(i + 2) == '\'' {
                i = skip_char(&chars, i);
            } else {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // r#ident
            if word == "r" && at(i) == '#' && (at(i + 1).is_alphabetic() || at(i + 1) == '_') {
                continue;
            }
            tokens.push(Token::Ident(word));
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c == ':' && at(i + 1) == ':' {
            tokens.push(Token::Path);
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            tokens.push(Token::Punct(c));
            i += 1;
        }
    }
    tokens
}

/// Past the string that opens at `chars[i]` (a `"`).
fn skip_string(chars: &[char], mut i: usize) -> usize {
    i += 1;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// Past the character literal that opens at `chars[i]` (a `'`).
fn skip_char(chars: &[char], mut i: usize) -> usize {
    i += 1;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '\'' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

fn ident(t: Option<&Token>) -> Option<&str> {
    match t {
        Some(Token::Ident(s)) => Some(s),
        _ => None,
    }
}

/// The modules a file declares with `mod name;`.
fn declared_mods(tokens: &[Token]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, t) in tokens.iter().enumerate() {
        if ident(Some(t)) == Some("mod")
            && let Some(name) = ident(tokens.get(i + 1))
            && tokens.get(i + 2) == Some(&Token::Punct(';'))
        {
            found.insert(name.to_string());
        }
    }
    found
}

/// The tokens left once every item marked `#[cfg(test)]` is removed.
fn without_tests(tokens: &[Token]) -> Vec<Token> {
    let is = |i: usize, s: &str| match tokens.get(i) {
        Some(Token::Ident(w)) => w == s,
        Some(Token::Punct(c)) => s.len() == 1 && s.starts_with(*c),
        _ => false,
    };
    let mut kept = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let cfg_test = ["#", "[", "cfg", "(", "test", ")", "]"]
            .iter()
            .enumerate()
            .all(|(k, s)| is(i + k, s));
        if !cfg_test {
            kept.push(tokens[i].clone());
            i += 1;
            continue;
        }
        // Skip the item: up to a `;` at depth 0, or through its first block.
        i += 7;
        let mut depth = 0usize;
        while i < tokens.len() {
            match &tokens[i] {
                Token::Punct('{') | Token::Punct('(') | Token::Punct('[') => depth += 1,
                Token::Punct('}') | Token::Punct(')') | Token::Punct(']') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 && tokens[i] == Token::Punct('}') {
                        i += 1;
                        break;
                    }
                }
                Token::Punct(';') if depth == 0 => {
                    i += 1;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
    }
    kept
}

const DEFINING: [&str; 9] = [
    "struct", "enum", "fn", "const", "static", "type", "trait", "union", "mod",
];

fn parse(tokens: &[Token]) -> Module {
    let tokens = without_tests(tokens);
    let mut module = Module::default();
    let mut i = 0;
    while i < tokens.len() {
        let word = ident(tokens.get(i));
        let after_path = i > 0 && tokens[i - 1] == Token::Path;
        match word {
            Some("use") if !after_path => {
                let end = (i..tokens.len())
                    .find(|j| tokens[*j] == Token::Punct(';'))
                    .unwrap_or(tokens.len());
                use_tree(&tokens[i + 1..end], &mut Vec::new(), &mut module);
                i = end + 1;
                continue;
            }
            Some(w) if DEFINING.contains(&w) && !after_path => {
                if let Some(name) = ident(tokens.get(i + 1)) {
                    module.defines.insert(name.to_string());
                }
            }
            Some("macro_rules") => {
                if let Some(name) = ident(tokens.get(i + 2)) {
                    module.defines.insert(name.to_string());
                }
            }
            Some(first) if !after_path && tokens.get(i + 1) == Some(&Token::Path) => {
                let mut path = vec![first.to_string()];
                let mut j = i + 1;
                while tokens.get(j) == Some(&Token::Path) {
                    match ident(tokens.get(j + 1)) {
                        Some(next) => path.push(next.to_string()),
                        None => break,
                    }
                    j += 2;
                }
                module.paths.push(path);
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    module
}

/// Reads one use tree (`a::b::{c, d::e as f, g::*}`) under `prefix` into `module`.
fn use_tree(tokens: &[Token], prefix: &mut Vec<String>, module: &mut Module) {
    // Split at top-level commas when this is a group's content.
    let mut i = 0;
    let start_len = prefix.len();
    while i < tokens.len() {
        match &tokens[i] {
            Token::Ident(w) if w == "as" => {
                let alias = ident(tokens.get(i + 1)).unwrap_or("_").to_string();
                bind(prefix, Some(alias), module);
                prefix.truncate(start_len);
                i += 2;
            }
            Token::Ident(w) => {
                prefix.push(w.clone());
                i += 1;
            }
            Token::Path => i += 1,
            Token::Punct('*') => {
                module.globs.push(prefix.clone());
                prefix.truncate(start_len);
                i += 1;
            }
            Token::Punct('{') => {
                let end = matching(tokens, i);
                // Each comma-separated part of the group, under the prefix so far.
                let inner = &tokens[i + 1..end];
                let mut depth = 0;
                let mut from = 0;
                for (k, t) in inner.iter().enumerate() {
                    match t {
                        Token::Punct('{') => depth += 1,
                        Token::Punct('}') => depth -= 1,
                        Token::Punct(',') if depth == 0 => {
                            group_part(&inner[from..k], prefix, module);
                            from = k + 1;
                        }
                        _ => {}
                    }
                }
                group_part(&inner[from..], prefix, module);
                prefix.truncate(start_len);
                i = end + 1;
            }
            Token::Punct(',') => {
                bind(prefix, None, module);
                prefix.truncate(start_len);
                i += 1;
            }
            _ => i += 1,
        }
    }
    if prefix.len() > start_len {
        bind(prefix, None, module);
        prefix.truncate(start_len);
    }
}

fn group_part(part: &[Token], prefix: &mut Vec<String>, module: &mut Module) {
    if part.is_empty() {
        return;
    }
    let len = prefix.len();
    use_tree(part, prefix, module);
    prefix.truncate(len);
}

/// Records one leaf of a use tree: `a::b` binds `b`, `a::b as c` binds `c`, `a::{self}` binds
/// `a`.
fn bind(path: &[String], alias: Option<String>, module: &mut Module) {
    let mut path = path.to_vec();
    if path.last().is_some_and(|p| p == "self") && path.len() > 1 {
        path.pop();
    }
    let Some(last) = path.last() else { return };
    let name = alias.unwrap_or_else(|| last.clone());
    if name == "_" {
        module.globs.push(path);
    } else {
        module.binds.insert(name, path);
    }
}

fn matching(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (k, t) in tokens.iter().enumerate().skip(open) {
        match t {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}
