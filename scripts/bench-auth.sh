#!/usr/bin/env bash
# Benchmark: what authentication costs status polling (issue 6). The same release build of
# mediaq-api with authentication on, and with it compiled out (cargo feature `bench-no-auth`,
# never in a deployable binary), polls GET /v1/jobs/{id} under wrk keep-alive load on a database
# of 100,000 jobs. Runs alternate (on, off, off, on, ...); medians and the ratio are reported.
#   RUNS=3 POLL_SECONDS=10 bash scripts/bench-auth.sh
source "$(dirname "$0")/lib.sh"
cd "$MEDIAQ_ROOT"
source scripts/bench/common.sh

RUNS="${RUNS:-3}"
POLL_JOBS="${POLL_JOBS:-100000}"
POLL_IDS="${POLL_IDS:-1000}"
POLL_SECONDS="${POLL_SECONDS:-10}"
POLL_CONNECTIONS="${POLL_CONNECTIONS:-32}"

ensure_packages "${BUILD_PACKAGES[@]}" curl wrk python3 util-linux
ensure_rust
bench_lock

bench_scratch auth

# Both binaries are built the same way (-p mediaq-api, so dependencies get the same features);
# they differ only by the feature. The workspace build last leaves a deployable target/release.
log "building mediaq-api without authentication (feature bench-no-auth), then with it"
cargo build --release --locked -p mediaq-api --features bench-no-auth
cp "$BIN/mediaq-api" "$WORK/mediaq-api-noauth"
cargo build --release --locked -p mediaq-api
cp "$BIN/mediaq-api" "$WORK/mediaq-api-auth"
bench_build
bench_pg_fresh
bench_api_key
export MEDIAQ_STORAGE_DIR="$SCRATCH/storage" MEDIAQ_RATE_LIMIT_IP=1000000 MEDIAQ_RATE_LIMIT_KEY=1000000 RUST_LOG=warn
mkdir -p "$MEDIAQ_STORAGE_DIR"
insert_poll_jobs "$POLL_JOBS"
psql_bench -c "SELECT id FROM jobs ORDER BY random() LIMIT $POLL_IDS" >"$WORK/ids"
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)

poll() { # poll MODE SECONDS: one wrk run against a fresh API of that mode
  local mode="$1" secs="$2"
  API_BIN="$WORK/mediaq-api-$mode" start_api
  python3 scripts/bench/driver.py etags "$API_ADDR" "$WORK/ids" "$WORK/ids-etags" >/dev/null
  curl -sS "${AUTH[@]}" "http://$API_ADDR/v1/jobs/$(head -n 1 "$WORK/ids")" -o /dev/null -w '%{http_code}' | grep -q 200 \
    || die "GET job failed ($mode)"
  wrk_run plain "$secs"
  stop_api
}
log "warm-up"
poll auth 3 >/dev/null
poll noauth 3 >/dev/null
for i in $(seq 1 "$RUNS"); do
  if [ $((i % 2)) -eq 1 ]; then order="auth noauth"; else order="noauth auth"; fi
  for mode in $order; do
    log "run $i/$RUNS: auth $mode (${POLL_SECONDS} s)"
    poll "$mode" "$POLL_SECONDS" | tee -a "$WORK/poll-$mode" >&2
  done
done
LOAD_END=$(cut -d" " -f1-3 /proc/loadavg)

on=$(median "$WORK/poll-auth" 1) off=$(median "$WORK/poll-noauth" 1)
{
  echo "Machine: $(machine_line "$SCRATCH")"
  echo "Build: $(build_line); $(date -u '+%Y-%m-%d %H:%M UTC'); load $LOAD_START at start, $LOAD_END at end"
  echo "GET /v1/jobs/{id}: $(psql_bench -c 'SELECT count(*) FROM jobs') jobs, wrk -t2 -c$POLL_CONNECTIONS -d${POLL_SECONDS}s keep-alive over $POLL_IDS ids, $RUNS alternating runs each"
  echo
  echo "| authentication | requests/s (median) | p50 ms | p99 ms | errors | runs (req/s) |"
  echo "|---|---|---|---|---|---|"
  for mode in auth noauth; do
    label=$([ "$mode" = auth ] && echo "on (API key, cached verification)" || echo "off (compiled out)")
    echo "| $label | $(median "$WORK/poll-$mode" 1 | awk '{ printf "%.0f", $1 }') | $(median "$WORK/poll-$mode" 2) | $(median "$WORK/poll-$mode" 3) | $(awk '{ s += $4 } END { print s + 0 }' "$WORK/poll-$mode") | $(awk '{ printf "%.0f ", $1 }' "$WORK/poll-$mode")|"
  done
  echo
  awk -v on="$on" -v off="$off" 'BEGIN { printf "Ratio of medians on/off: %.3f (target: >= 0.90)\n", on / off }'
  # Run i of each mode ran back to back: their ratio cancels the machine's drift between pairs.
  paste -d' ' "$WORK/poll-auth" "$WORK/poll-noauth" | awk '{ print $1 / $5 }' >"$WORK/pair-ratios"
  echo "Median of the $RUNS back-to-back pair ratios on/off: $(median "$WORK/pair-ratios" | awk '{ printf "%.3f", $1 }') (pairs: $(awk '{ printf "%.3f ", $1 }' "$WORK/pair-ratios"))"
} | tee "$MEDIAQ_ROOT/.mediaq/bench-results/auth-$(date -u +%Y%m%dT%H%M%SZ).md"
