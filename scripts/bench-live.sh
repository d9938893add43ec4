#!/usr/bin/env bash
# Benchmark of live uploads (issue 16): from the last byte acknowledged to `succeeded`, a recording
# converted while it arrives (1 s segments at real-time pace) against the classic path (uploaded
# whole, then converted), for 1280x720 VP8 + Opus recordings; and the CPU seconds of each
# conversion. Runs alternate; medians. One API and one worker (MEDIAQ_X264_PRESET=veryfast unless
# set). Not part of CI. Each live run takes as long as its recording (3 rounds of 10 s + 60 s:
# about 5 minutes; add 300 for about 20 minutes more).
#   BENCH_LENGTHS=10,60,300 BENCH_ROUNDS=3 bash scripts/bench-live.sh
#   BENCH_SIZE=640x360 BENCH_LENGTHS=10 bash scripts/bench-live.sh     # a size a loaded machine keeps up with
#   BENCH_PROFILE=release bash scripts/bench-live.sh   # default: the dev profile (libav and x264
#                                                      # are C libraries either way)
source "$(dirname "$0")/lib.sh"
cd "$MEDIAQ_ROOT"
ensure_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
ensure_rust
if [ -z "${MEDIAQ_TEST_DATABASE_URL:-}" ]; then
  PG_DIR="$MEDIAQ_ROOT/.mediaq/pg-bench"
  MEDIAQ_PG_FSYNC=off start_local_pg "$PG_DIR"
  trap 'stop_local_pg "$PG_DIR"' EXIT
  export MEDIAQ_TEST_DATABASE_URL="$DATABASE_URL"
fi
unset DATABASE_URL
# The services run from the profile's binaries; the benchmark client itself is the suite's
# debug-built test (pointed at them with MEDIAQ_BIN_DIR), so a release run builds no test code.
if [ "${BENCH_PROFILE:-dev}" = release ]; then
  cargo build --release --workspace --bins --locked
  export MEDIAQ_BIN_DIR="$MEDIAQ_ROOT/target/release"
fi
cargo build --workspace --bins --locked
log "machine: $(nproc) cores, $(awk '/MemTotal/ {print int($2/1048576)" GiB"}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD), profile ${BENCH_PROFILE:-dev}"
RUST_LOG=warn MEDIAQ_TEST_LOG=warn cargo test --workspace --locked --test bench_live -- \
  --ignored --nocapture --test-threads=1 2>&1 | grep -oE 'BENCH.*|test result.*|panicked.*'
