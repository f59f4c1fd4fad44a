//! The shape of `src/`, checked: dependencies between top-level modules only
//! point one way (no cycles), the domain names neither actix nor apalis,
//! and no file grows past ~450 lines except data tables. Reads the sources;
//! no build internals involved.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Files allowed past the size limit: data tables, not logic.
const DATA_TABLES: &[&str] = &["ops/table.rs"];
const MAX_LINES: usize = 450;

/// Modules that must not know which web framework or queue library is used.
const FRAMEWORK_FREE: &[&str] = &[
    "jobs", "service", "worker", "ops", "codec", "render", "meta", "store",
];

fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&root)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&p).expect("read source");
            (rel, text)
        })
        .collect()
}

/// The file without its unit tests (`#[cfg(test)] mod tests` at the end).
fn without_tests(text: &str) -> &str {
    text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text)
}

fn top_module(rel: &str) -> Option<&str> {
    let top = rel.split('/').next()?.trim_end_matches(".rs");
    (!matches!(top, "lib" | "main" | "bin")).then_some(top)
}

#[test]
fn top_level_modules_depend_on_each_other_without_cycles() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in sources() {
        let Some(top) = top_module(&rel) else {
            continue;
        };
        let code = without_tests(&text);
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != top {
                edges.entry(top.to_string()).or_default().insert(name);
            }
        }
    }
    // Depth-first search for a path back to where it started.
    fn back_to(
        edges: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
    ) -> bool {
        for next in edges.get(at).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if !path.contains(next) {
                path.push(next.clone());
                if back_to(edges, start, next, path) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    for start in edges.keys() {
        let mut path = vec![start.clone()];
        assert!(
            !back_to(&edges, start, start, &mut path),
            "import cycle between modules: {}",
            path.join(" -> ")
        );
    }
}

#[test]
fn the_domain_names_neither_actix_nor_apalis() {
    for (rel, text) in sources() {
        let Some(top) = top_module(&rel) else {
            continue;
        };
        if !FRAMEWORK_FREE.contains(&top) {
            continue;
        }
        for word in ["actix", "apalis"] {
            let uses = without_tests(&text)
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .any(|l| l.contains(&format!("{word}_")) || l.contains(&format!("{word}::")));
            assert!(!uses, "src/{rel} uses {word}; keep it in http/ or queue/");
        }
    }
}

#[test]
fn files_stay_small_except_data_tables() {
    for (rel, text) in sources() {
        if DATA_TABLES.contains(&rel.as_str()) {
            continue;
        }
        // Code lines, as `shared/tools/modgraph.py` counts them: comments and
        // blank lines are free.
        let lines = without_tests(&text)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .count();
        assert!(
            lines <= MAX_LINES,
            "src/{rel} has {lines} lines of code outside its tests (limit {MAX_LINES}): split it by what it does"
        );
    }
}
