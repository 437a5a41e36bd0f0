//! The house keeps its layers: every top-level module of `src/` has a rank
//! (docs/architecture.md explains each), and a module may name only modules
//! of a lower rank. This reads every `crate::` path in `src/` outside
//! comments and test code, so a new import that reaches up, or a new
//! module nobody placed, fails here with the line that does it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules from the bottom up. Modules in one row share a rank
/// and may not name each other.
const LAYERS: &[&[&str]] = &[
    &["util"],
    &["error"],
    &["policy"],
    &["config"],
    &["telemetry", "secrets", "jws"],
    &["store"],
    &["nonce", "validation", "ca", "zone"],
    &["hub"],
    &["audit"],
    &["tenancy"],
    &["notify"],
    &["dns"],
    &["issuance"],
    &["orders"],
    &["managed"],
    &["jobs"],
    &["acme", "admin"],
    &["ui", "challenge_api"],
    &["bootstrap"],
    &["server"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|row| row.contains(&module))
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text of a file without comments, string-free enough for paths:
/// `//` comments (and doc comments) are dropped line by line.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            let code = match line.find("//") {
                // `//` inside a string such as "http://" is not a comment,
                // but no `crate::` path follows one on the same line here.
                Some(at) => &line[..at],
                None => line,
            };
            (n + 1, code.to_string())
        })
        .collect()
}

/// Drops `#[cfg(test)]` items (a `mod tests { ... }` block or a `mod x;`
/// declaration) and returns the names of test-only files declared here.
fn without_test_code(lines: Vec<(usize, String)>) -> (Vec<(usize, String)>, Vec<String>) {
    let mut kept = Vec::new();
    let mut test_files = Vec::new();
    let mut skipping = false;
    let mut depth = 0i32;
    let mut pending_cfg_test = false;
    for (n, line) in lines {
        let trimmed = line.trim();
        if skipping {
            depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
            if depth <= 0 && line.contains('}') {
                skipping = false;
            }
            continue;
        }
        if trimmed == "#[cfg(test)]" {
            pending_cfg_test = true;
            continue;
        }
        if pending_cfg_test {
            pending_cfg_test = false;
            let decl = trimmed
                .trim_start_matches("pub ")
                .trim_start_matches("pub(crate) ");
            if let Some(name) = decl.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
                test_files.push(name.trim().to_string());
                continue;
            }
            if decl.starts_with("mod ") {
                depth = line.matches('{').count() as i32 - line.matches('}').count() as i32;
                skipping = depth > 0;
                continue;
            }
        }
        kept.push((n, line));
    }
    (kept, test_files)
}

/// The top-level modules a line names through `crate::...` paths.
fn named_modules(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let before = &rest[..at];
        rest = &rest[at + "crate::".len()..];
        // `acmehub_crate::` or `$crate::` are not this crate's paths.
        if before.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or_default();
            for part in inner.split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

/// The top-level module a source file belongs to (`src/dns/publish.rs` is
/// `dns`, `src/hub.rs` is `hub`); none for the crate root and binaries.
fn owner(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (!matches!(name, "lib" | "main" | "bin")).then(|| name.to_string())
}

struct Reach {
    from: String,
    to: String,
    at: String,
}

/// Every `crate::` reach from one top-level module to another, outside
/// test code.
fn reaches() -> Vec<Reach> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut test_only: BTreeSet<PathBuf> = BTreeSet::new();
    let mut texts = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let (kept, tests) = without_test_code(code_lines(&text));
        let dir = if file
            .file_name()
            .is_some_and(|n| n == "mod.rs" || n == "lib.rs")
        {
            file.parent().unwrap().to_path_buf()
        } else {
            file.with_extension("")
        };
        for name in tests {
            test_only.insert(dir.join(format!("{name}.rs")));
            test_only.insert(dir.join(&name).join("mod.rs"));
        }
        texts.insert(file.clone(), kept);
    }
    let mut out = Vec::new();
    for (file, lines) in texts {
        if test_only.contains(&file) {
            continue;
        }
        let Some(from) = owner(&src, &file) else {
            continue;
        };
        for (n, line) in lines {
            for to in named_modules(&line) {
                if to != from {
                    out.push(Reach {
                        from: from.clone(),
                        to,
                        at: format!(
                            "{}:{n}: {}",
                            file.strip_prefix(&src).unwrap().display(),
                            line.trim()
                        ),
                    });
                }
            }
        }
    }
    out
}

#[test]
fn every_module_has_a_place_and_names_only_lower_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let unplaced: BTreeSet<String> = files
        .iter()
        .filter_map(|f| owner(&src, f))
        .filter(|m| rank(m).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules with no place in LAYERS (tests/it/layering.rs, docs/architecture.md): {unplaced:?}"
    );
    let upward: Vec<String> = reaches()
        .into_iter()
        .filter(|r| match (rank(&r.from), rank(&r.to)) {
            (Some(from), Some(to)) => to >= from,
            // A path into something that is not a module (a macro, say).
            _ => false,
        })
        .map(|r| format!("{} -> {}  ({})", r.from, r.to, r.at))
        .collect();
    assert!(
        upward.is_empty(),
        "imports that reach sideways or up ({}):\n{}",
        upward.len(),
        upward.join("\n")
    );
}

#[test]
fn the_reader_finds_what_it_checks() {
    // The checker itself: a reach it must see, one in a comment it must
    // not, and test code it must skip.
    assert_eq!(
        named_modules("use crate::store::{Store, Instance};"),
        ["store"]
    );
    assert_eq!(
        named_modules("use crate::{hub::Hub, store};"),
        ["hub", "store"]
    );
    assert!(named_modules("macro $crate::x").is_empty());
    let lines = code_lines("use crate::hub::Hub; // crate::server\n/// [`crate::ui`]");
    let named: Vec<String> = lines.iter().flat_map(|(_, l)| named_modules(l)).collect();
    assert_eq!(named, ["hub"]);
    let (kept, tests) = without_test_code(code_lines(
        "use crate::a;\n#[cfg(test)]\nmod testutil;\n#[cfg(test)]\nmod tests {\n    use crate::b;\n}\nuse crate::c;",
    ));
    let named: Vec<String> = kept.iter().flat_map(|(_, l)| named_modules(l)).collect();
    assert_eq!(named, ["a", "c"]);
    assert_eq!(tests, ["testutil"]);
    // And the house as it stands has reaches to check at all.
    assert!(
        reaches()
            .iter()
            .any(|r| r.from == "orders" && r.to == "store")
    );
}
