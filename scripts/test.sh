#!/usr/bin/env bash
# Runs every test: installs what is missing, provisions a fresh throwaway PostgreSQL (unless
# MEDIAQ_TEST_DATABASE_URL or DATABASE_URL points at a server), builds, and runs the suite.
source "$(dirname "$0")/lib.sh"
cd "$MEDIAQ_ROOT"

ensure_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}" python3
ensure_rust
ensure_node
ensure_browser_modules
ensure_moto
ensure_api_tools
# deploy/k8s: rendered, validated against two Kubernetes versions and KEDA, policy (a few seconds).
bash scripts/check-k8s.sh
ensure_promtool

if [ -z "${MEDIAQ_TEST_DATABASE_URL:-}" ]; then
  if [ -n "${DATABASE_URL:-}" ]; then
    MEDIAQ_TEST_DATABASE_URL="$DATABASE_URL"
  else
    PG_DIR=$(outside_dir "$MEDIAQ_ROOT/.mediaq/pg-test")
    stop_local_pg "$PG_DIR"
    rm -rf "$PG_DIR"
    # Tests create a database each; fsync off is safe for a throwaway cluster and saves minutes.
    MEDIAQ_PG_FSYNC=off start_local_pg "$PG_DIR"
    trap 'stop_local_pg "$PG_DIR"' EXIT
    MEDIAQ_TEST_DATABASE_URL="$DATABASE_URL"
  fi
fi
export MEDIAQ_TEST_DATABASE_URL
unset DATABASE_URL

# As root, the workers under test run their transcoders as `nobody`, which must reach the built
# binaries: outside the checkout when it cannot reach that (e.g. a checkout in /root).
if [ "$(id -u)" -eq 0 ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  target=$(outside_dir "$MEDIAQ_ROOT/target" nobody)
  if [ "$target" != "$MEDIAQ_ROOT/target" ]; then
    export CARGO_TARGET_DIR="$target"
    log "nobody cannot reach this checkout: building in $CARGO_TARGET_DIR"
  fi
fi
log "building"
cargo build --workspace --all-targets --locked
log "running tests"
LOG=$(mktemp)
set +e
cargo test --workspace --locked --no-fail-fast --lib --bins --tests -- --test-threads="${MEDIAQ_TEST_THREADS:-4}" 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
# cargo prints one result line per test binary; close with one line for the whole suite.
read -r passed failed < <(awk '/^test result:/ {
    for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i }
  } END { print p + 0, f + 0 }' "$LOG")
rm -f "$LOG"
if [ "$status" -eq 0 ] && [ "$passed" -eq 0 ]; then
  log "error: no test ran"
  status=1
fi
echo "tests: $passed passed, $failed failed"
exit "$status"
