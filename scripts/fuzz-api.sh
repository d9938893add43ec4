#!/usr/bin/env bash
# The long fuzzing run (not part of the suite): schemathesis against a real API and worker on
# loopback, driven by /openapi.json, for MEDIAQ_FUZZ_SECONDS (default 900), with the generator seed
# MEDIAQ_FUZZ_SEED (default 18; any seed must pass). The suite runs the
# same test for 90 seconds. Prints schemathesis's summary (requests, failures); docs/BENCHMARKS.md
# records the figures.
source "$(dirname "$0")/lib.sh"
cd "$MEDIAQ_ROOT"

ensure_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}" python3
ensure_api_tools
if [ -z "${MEDIAQ_TEST_DATABASE_URL:-}" ]; then
  PG_DIR="$MEDIAQ_ROOT/.mediaq/pg-fuzz"
  stop_local_pg "$PG_DIR"
  rm -rf "$PG_DIR"
  MEDIAQ_PG_FSYNC=off start_local_pg "$PG_DIR"
  trap 'stop_local_pg "$PG_DIR"' EXIT
  MEDIAQ_TEST_DATABASE_URL="$DATABASE_URL"
fi
export MEDIAQ_TEST_DATABASE_URL
unset DATABASE_URL
export MEDIAQ_FUZZ_SECONDS="${MEDIAQ_FUZZ_SECONDS:-900}"
cargo build --workspace --locked
cargo test -p mediaq-e2e --locked --test openapi_fuzz -- --nocapture --test-threads=1
