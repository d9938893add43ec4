//! Every table has one owner: all SQL lives in `shared/src/db` (and the queue contract in
//! `shared/src/queue.rs`, which calls apalis' own queries). A query written anywhere else fails.
//! Inside `shared/src/db` queries are compile-checked (`sqlx::query!` and friends, offline data in
//! `.sqlx/`); a runtime query there fails too unless [`RUNTIME_QUERIES`] lists it with its reason.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Runtime (unchecked) queries allowed in `shared/src/db`: (file, how many, why the SQL cannot
/// be a literal). Keep docs/ARCHITECTURE.md's list the same. Every query is static today.
const RUNTIME_QUERIES: &[(&str, usize, &str)] = &[];

/// Calls that build a query at run time, unchecked.
const RUNTIME_CALLS: [&str; 5] = ["sqlx::query(", "sqlx::query_as(", "sqlx::query_scalar(", "QueryBuilder", "raw_sql("];

#[test]
fn queries_in_shared_db_are_compile_checked() {
    let db = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/db");
    let mut files = Vec::new();
    rust_files(&db, &mut files);
    assert!(files.len() >= 10, "found only {} files under {}", files.len(), db.display());
    let mut found: Vec<(String, usize)> = files
        .iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let n = text.lines().filter(|l| RUNTIME_CALLS.iter().any(|c| l.contains(c))).count();
            (n > 0).then(|| (f.file_name().unwrap().to_string_lossy().into_owned(), n))
        })
        .collect();
    found.sort();
    let mut allowed: Vec<(String, usize)> = RUNTIME_QUERIES.iter().map(|(f, n, _)| (f.to_string(), *n)).collect();
    allowed.sort();
    assert_eq!(
        found, allowed,
        "runtime queries in shared/src/db (file, count) differ from RUNTIME_QUERIES: write the query with \
         sqlx::query!/query_as!/query_scalar! and run scripts/sqlx-prepare.sh (or, when its SQL is built at \
         run time, list it in RUNTIME_QUERIES and docs/ARCHITECTURE.md with the reason)"
    );
}

#[test]
fn sql_is_written_only_in_shared_db() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let db = root.join("shared/src/db");
    let mut files = Vec::new();
    for crate_src in ["api/src", "worker/src", "shared/src", "cli/src"] {
        let dir = root.join(crate_src);
        if dir.exists() {
            rust_files(&dir, &mut files);
        }
    }
    assert!(files.len() > 20, "found only {} source files under {}", files.len(), root.display());
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(&db))
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let hits: Vec<usize> = text
                .lines()
                .enumerate()
                .filter(|(_, l)| l.contains("sqlx::query") || l.contains("query_as(") || l.contains("query_scalar("))
                .map(|(i, _)| i + 1)
                .collect();
            (!hits.is_empty()).then(|| format!("{}: lines {hits:?}", f.strip_prefix(&root).unwrap_or(f).display()))
        })
        .collect();
    assert!(offenders.is_empty(), "SQL outside shared/src/db:\n{}", offenders.join("\n"));
}
