//! The compile-checked queries' offline data (`.sqlx/`, written by scripts/sqlx-prepare.sh) was
//! described against the schema of this checkout. A query without its data already fails the
//! build (SQLX_OFFLINE=true); this catches data left stale by a migration (or an apalis-postgres
//! upgrade, which brings its own schema) without a database: the script records what it saw in
//! `.sqlx/migrations.sha256`, and this test recomputes it.

use std::path::Path;

use sha2::{Digest, Sha256};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// What scripts/sqlx-prepare.sh writes, without its comment line.
fn expected_stamp() -> Vec<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap();
    let mut lines = lock.lines();
    let apalis = lines
        .by_ref()
        .skip_while(|l| *l != r#"name = "apalis-postgres""#)
        .nth(1)
        .and_then(|l| l.strip_prefix("version = "))
        .expect("apalis-postgres in Cargo.lock")
        .trim_matches('"');
    let mut stamp = vec![format!("apalis-postgres {apalis}")];
    let mut migrations: Vec<_> = std::fs::read_dir(root().join("migrations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    migrations.sort();
    assert!(migrations.len() >= 10, "found only {} migrations", migrations.len());
    for path in migrations {
        let digest = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
        stamp.push(format!("{digest}  {}", path.file_name().unwrap().to_string_lossy()));
    }
    stamp
}

#[test]
fn offline_query_data_matches_the_migrations() {
    let path = root().join(".sqlx/migrations.sha256");
    let recorded = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let recorded: Vec<&str> = recorded.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    let expected = expected_stamp();
    let differ: Vec<String> = expected
        .iter()
        .filter(|l| !recorded.contains(&l.as_str()))
        .map(|l| format!("now:      {l}"))
        .chain(recorded.iter().filter(|l| !expected.contains(&l.to_string())).map(|l| format!("recorded: {l}")))
        .collect();
    assert!(
        differ.is_empty(),
        "the schema changed since .sqlx/ was prepared: run scripts/sqlx-prepare.sh and commit .sqlx/\n{}",
        differ.join("\n")
    );
}
