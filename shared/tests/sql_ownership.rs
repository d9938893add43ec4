//! Every table has one owner: all SQL lives in `shared/src/db` (and the queue contract in
//! `shared/src/queue.rs`, which calls apalis' own queries). A query written anywhere else fails.

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
