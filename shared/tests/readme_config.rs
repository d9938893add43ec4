//! The README's configuration table is complete and true: every `MEDIAQ_*` variable (and
//! `DATABASE_URL`) that the services read has a row, and every row names a variable they read.
//! A variable is "read" where its name is a whole string literal in the source: a clap
//! definition's `env = "MEDIAQ_..."` (all configuration goes through them).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

/// Variables of the test suites and tools, not of the services.
const NOT_CONFIGURATION: [&str; 1] = ["MEDIAQ_UPDATE_OPENAPI"];

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

/// Whole string literals that are a variable name: `"MEDIAQ_BIND"`, `"DATABASE_URL"`.
fn names_in(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split('"').skip(1).step_by(2).filter(|lit| is_variable(lit)).map(str::to_owned)
}

fn is_variable(s: &str) -> bool {
    (s.starts_with("MEDIAQ_") || s == "DATABASE_URL")
        && s.len() > 7
        && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn read_by_the_services(root: &Path) -> BTreeSet<String> {
    let mut files = Vec::new();
    for src in ["api/src", "worker/src", "worker/protocol/src", "worker/engine/src", "shared/src"] {
        rust_files(&root.join(src), &mut files);
    }
    assert!(files.len() > 40, "found only {} source files", files.len());
    files
        .iter()
        .flat_map(|f| names_in(&std::fs::read_to_string(f).unwrap()).collect::<Vec<_>>())
        .filter(|name| !NOT_CONFIGURATION.contains(&name.as_str()) && !name.starts_with("MEDIAQ_TEST_"))
        .collect()
}

/// The variables named in the first column of the README's configuration table.
fn in_the_readme(root: &Path) -> BTreeSet<String> {
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = readme.split("\n## Configuration\n").nth(1).expect("a Configuration section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('|').nth(1))
        .flat_map(|cell| {
            cell.split('`').skip(1).step_by(2).filter(|n| is_variable(n)).map(str::to_owned).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_variable_the_services_read_is_in_the_readme_table_and_no_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = read_by_the_services(&root);
    let documented = in_the_readme(&root);
    // Both sides find what they should, so that an empty difference means something.
    assert!(read.contains("MEDIAQ_BIND") && read.contains("MEDIAQ_WEBHOOK_TIMEOUT"), "{read:?}");
    assert!(documented.contains("DATABASE_URL") && documented.contains("MEDIAQ_UPLOAD_RATE_GRACE"), "{documented:?}");
    let missing: Vec<_> = read.difference(&documented).collect();
    assert!(missing.is_empty(), "read by the code but not in the README's configuration table: {missing:?}");
    let stale: Vec<_> = documented.difference(&read).collect();
    assert!(stale.is_empty(), "in the README's configuration table but read nowhere: {stale:?}");
}
