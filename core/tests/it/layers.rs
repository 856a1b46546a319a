//! The core's layers point one way: schema -> archive -> store -> render/fetch/serve ->
//! facade (docs/ARCHITECTURE.md, "Layers"). This test reads the source of each layer and
//! fails, naming the file and line, where a module refers to a layer above it: through a
//! `crate::` path (`use crate::render::..`, `crate::{store, render}`, a path in code) or a
//! `super::` chain that climbs out of the layer (`super::super::render`). Comments are not
//! code and are skipped.

use std::path::{Path, PathBuf};

/// Each layer (a top-level module of the core) and the modules it must not refer to.
const RULES: &[(&str, &[&str])] = &[
    (
        "schema",
        &[
            "archive", "fs", "build", "store", "render", "fetch", "serve", "facade",
        ],
    ),
    (
        "archive",
        &["fs", "build", "store", "render", "fetch", "serve", "facade"],
    ),
    (
        "fs",
        &["build", "store", "render", "fetch", "serve", "facade"],
    ),
    ("build", &["store", "render", "fetch", "serve", "facade"]),
    ("store", &["build", "render", "fetch", "serve", "facade"]),
    ("render", &["fetch", "serve", "facade"]),
    ("fetch", &["render", "serve", "facade"]),
    ("serve", &["render", "fetch", "facade"]),
];

/// One reference of a module to another top-level module.
#[derive(Debug, PartialEq)]
struct Reference {
    /// The top-level module referred to.
    module: String,
    /// 1-based line of the reference.
    line: usize,
}

#[test]
fn no_layer_refers_to_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for (layer, forbidden) in RULES {
        let files = layer_files(&src, layer);
        assert!(!files.is_empty(), "no source file for the layer {layer}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let module = module_path(&src, &file);
            for reference in references(&text, &module) {
                if forbidden.contains(&reference.module.as_str()) {
                    violations.push(format!(
                        "{}:{}: the {layer} layer refers to {}",
                        file.strip_prefix(&src).unwrap().display(),
                        reference.line,
                        reference.module
                    ));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layers must point one way (schema -> archive -> store -> render/fetch/serve -> \
         facade):\n{}",
        violations.join("\n")
    );
}

/// The checker finds every form of reference, and none in comments or strings.
#[test]
fn references_are_found_in_every_form() {
    let module = vec!["store".to_string(), "housekeeping".to_string()];
    let text = "\
use crate::render::usage; // crate::fetch in a comment
use crate::{Error, render::{reap, tree}, serve};
use crate::{
    schema::ImageId,
    facade,
};
/// [`crate::fetch`] in docs
fn f() { let _ = crate::fetch::x(); let s = \"crate::serve\"; }
use super::super::build::walk;
use super::paths;
";
    let found: Vec<(String, usize)> = references(text, &module)
        .into_iter()
        .map(|r| (r.module, r.line))
        .collect();
    let expected: Vec<(String, usize)> = [
        ("render", 1),
        ("Error", 2),
        ("render", 2),
        ("serve", 2),
        ("schema", 4),
        ("facade", 5),
        ("fetch", 8),
        ("build", 9),
    ]
    .iter()
    .map(|(m, l)| (m.to_string(), *l))
    .collect();
    assert_eq!(found, expected);
}

/// The source files of the top-level module `layer`: `src/<layer>.rs` and everything under
/// `src/<layer>/`.
fn layer_files(src: &Path, layer: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let single = src.join(format!("{layer}.rs"));
    if single.is_file() {
        files.push(single);
    }
    let mut dirs = vec![src.join(layer)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The module path of `file` (`src/store/housekeeping.rs` -> `store::housekeeping`,
/// `src/render/verify/mod.rs` -> `render::verify`).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The references to top-level modules in `text`, the source of the module `module`: the
/// first segment after `crate::` (each item of a `crate::{..}` group), and where a `super::`
/// chain climbs to the crate root, the segment after it.
fn references(text: &str, module: &[String]) -> Vec<Reference> {
    let code = strip_comments_and_strings(text);
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let boundary = i == 0 || !is_ident(bytes[i - 1]);
        if boundary && code[i..].starts_with("crate::") {
            let start = i + "crate::".len();
            for (name, at) in first_segments(&code[start..]) {
                let line = line_of(&code, start + at);
                out.push(Reference { module: name, line });
            }
            i = start;
        } else if boundary && code[i..].starts_with("super::") {
            let mut rest = &code[i..];
            let mut depth = 0;
            while let Some(after) = rest.strip_prefix("super::") {
                depth += 1;
                rest = after.trim_start();
            }
            let consumed = code.len() - i - rest.len();
            if depth >= module.len() {
                for (name, at) in first_segments(rest) {
                    let line = line_of(&code, i + consumed + at);
                    out.push(Reference { module: name, line });
                }
            }
            i += consumed;
        } else {
            i += 1;
        }
    }
    out
}

/// The 1-based line of the byte `at` of `code`.
fn line_of(code: &str, at: usize) -> usize {
    1 + code[..at].matches('\n').count()
}

/// The first path segment of `rest` (after `crate::`), or of each item of a `{..}` group,
/// with its byte offset in `rest`.
fn first_segments(rest: &str) -> Vec<(String, usize)> {
    let skipped = rest.len() - rest.trim_start().len();
    let rest = &rest[skipped..];
    let Some(group) = rest.strip_prefix('{') else {
        return ident_at(rest)
            .map(|name| (name, skipped))
            .into_iter()
            .collect();
    };
    let mut names = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if c.is_whitespace() => {}
            _ if item_start && depth == 0 => {
                item_start = false;
                names.extend(ident_at(&group[at..]).map(|name| (name, skipped + 1 + at)));
            }
            _ => {}
        }
    }
    names
}

/// The identifier at the start of `text`, if any.
fn ident_at(text: &str) -> Option<String> {
    let end = text
        .bytes()
        .position(|b| !is_ident(b))
        .unwrap_or(text.len());
    (end > 0).then(|| text[..end].to_string())
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `text` with comments and the contents of string and char literals blanked (newlines
/// kept, so lines still count).
fn strip_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                if chars[i] == '\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if chars.get(i) == Some(&'\n') {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped char literal ('\n', '\'', '\u{..}').
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            // A plain char literal ('"', 'x'); a lifetime has no closing quote.
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}
