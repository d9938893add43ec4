//! `mediaq-worker` never links libav: decoding hostile media happens only in the sandboxed
//! `mediaq-transcode` child (crate `mediaq-engine`), which the worker runs but does not link.
//! Two checks, since the linker may drop an unused library (`--as-needed`) that a dependency
//! would still bring in: the dependency graph in Cargo.lock, and the built binary's libraries.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
};

/// Crates that are libav or link it.
const LIBAV_CRATES: [&str; 3] = ["ffmpeg-next", "ffmpeg-sys-next", "mediaq-engine"];

/// Each package of Cargo.lock with the names of its dependencies (dev-dependencies included).
fn lock_graph() -> BTreeMap<String, Vec<String>> {
    let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock")).unwrap();
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for package in lock.split("[[package]]").skip(1) {
        let name = package.lines().find_map(|l| l.strip_prefix("name = ")).unwrap().trim_matches('"').to_owned();
        let deps = match package.split_once("dependencies = [") {
            Some((_, rest)) => rest.split(']').next().unwrap_or_default(),
            None => "",
        };
        let deps = deps
            .split(',')
            .map(|d| d.trim().trim_matches('"'))
            .filter(|d| !d.is_empty())
            .map(|d| d.split(' ').next().unwrap().to_owned());
        graph.entry(name).or_default().extend(deps);
    }
    graph
}

fn reachable(graph: &BTreeMap<String, Vec<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_owned()];
    while let Some(name) = todo.pop() {
        if seen.insert(name.clone()) {
            todo.extend(graph.get(&name).into_iter().flatten().cloned());
        }
    }
    seen
}

#[test]
fn the_worker_crate_does_not_depend_on_libav() {
    let graph = lock_graph();
    // The walk finds libav where it is (the engine), so an empty answer below means something.
    let engine = reachable(&graph, "mediaq-engine");
    assert!(engine.contains("ffmpeg-sys-next"), "Cargo.lock walk is broken: {engine:?}");
    let worker = reachable(&graph, "mediaq-worker");
    assert!(worker.contains("mediaq-protocol") && worker.contains("sqlx"), "walk is broken: {worker:?}");
    let libav: Vec<_> = LIBAV_CRATES.iter().filter(|c| worker.contains(**c)).collect();
    assert!(libav.is_empty(), "mediaq-worker depends on {libav:?} (Cargo.lock); libav belongs to mediaq-engine");
}

#[test]
fn the_worker_binary_does_not_link_libav() {
    let out = Command::new("ldd").arg(env!("CARGO_BIN_EXE_mediaq-worker")).output().expect("ldd runs");
    let libs = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && libs.contains("libc.so"), "ldd did not list the libraries: {libs}");
    let libav: Vec<&str> = libs
        .lines()
        .map(str::trim)
        .filter(|l| ["libav", "libsw", "libpostproc"].iter().any(|p| l.starts_with(p)))
        .collect();
    assert!(libav.is_empty(), "mediaq-worker links {libav:?}");
}
