#!/usr/bin/env bash
# Benchmarks of scale-out (issue 8): jobs per minute with 1, 2 and 3 worker hosts (network
# namespaces, S3 storage through moto), and the per-job cost of S3 storage against local disk.
# Release builds; rounds alternate; medians. Needs root (network namespaces). Not part of CI.
#   BENCH_JOBS=24 BENCH_ROUNDS=2 BENCH_STORAGE_JOBS=5 bash scripts/bench-hosts.sh
source "$(dirname "$0")/lib.sh"
cd "$MEDIAQ_ROOT"
ensure_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}" python3
ensure_rust
ensure_moto
if [ -z "${MEDIAQ_TEST_DATABASE_URL:-}" ]; then
  PG_DIR="$MEDIAQ_ROOT/.mediaq/pg-bench"
  MEDIAQ_PG_FSYNC=off start_local_pg "$PG_DIR"
  trap 'stop_local_pg "$PG_DIR"' EXIT
  export MEDIAQ_TEST_DATABASE_URL="$DATABASE_URL"
fi
unset DATABASE_URL
cargo build --release --workspace --bins --locked
log "machine: $(nproc) cores, $(awk '/MemTotal/ {print int($2/1048576)" GiB"}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD)"
RUST_LOG=warn MEDIAQ_TEST_LOG=warn cargo test --release --locked -p mediaq-e2e --test bench_hosts -- \
  --ignored --nocapture --test-threads=1 2>&1 | grep -oE 'BENCH.*|test result.*|panicked.*'
