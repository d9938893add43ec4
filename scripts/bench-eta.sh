#!/usr/bin/env bash
# Benchmark of the finish estimate (issue 25): how far the `queue.estimated_finish_at` a job is
# given at upload time lands from its actual `finished_at`, over mixed jobs and 1 to 3 workers.
#
#   bash scripts/bench-eta.sh                                  # 3 phases x 8 jobs, ~6-10 minutes
#   BENCH_LENGTHS="5 20 60 120" BENCH_WORKERS="1 3" bash scripts/bench-eta.sh
#   BENCH_SKIP_BUILD=1 BENCH_BIN=target/debug bash scripts/bench-eta.sh   # binaries as they are
#
# Clips: BENCH_LENGTHS seconds (default 5 10 20 35 50 70 90 120) of BENCH_SIZE (640x360) VP8 +
# Opus, generated with the ffmpeg CLI like the other benchmarks' fixtures (libvpx realtime).
# Warm-up (not counted): BENCH_WARMUP jobs (default 4: 5, 35, 90 and 120 s) on one worker, so
# the estimator has its >= 3 finished attempts to fit its line to; it keeps learning after.
# Then one phase per entry of BENCH_WORKERS (default "1 2 3"): that many worker processes
# (MEDIAQ_WORKER_CONCURRENCY=1 each; a phase adds workers to the previous one's, so that no
# stopped worker is still counted as alive), and every clip uploaded once in a shuffled order,
# BENCH_GAP (1) seconds apart. For each job: the estimate in the 202 (or the first GET right after
# it), the actual finished_at, wait = finished_at - the 202's arrival, and
# error = |estimated - actual finish| / wait. Prints the table, the median and p90 of the error
# (target: median <= 15 %, p90 <= 30 %).
# Own cluster (.mediaq/pg-bench) and scratch dir (.mediaq/bench-eta); one API; rate limits and
# quotas raised out of the way (scripts/bench/common.sh). Needs root. Not run in CI.
source "$(dirname "$0")/lib.sh"
cd "$MEDIAQ_ROOT"
source scripts/bench/common.sh
[ -n "${BENCH_BIN:-}" ] && BIN=$(realpath "$BENCH_BIN")

LENGTHS="${BENCH_LENGTHS:-5 10 20 35 50 70 90 120}"
WARMUP="${BENCH_WARMUP:-5 35 90 120}"
WORKERS="${BENCH_WORKERS:-1 2 3}"
SIZE="${BENCH_SIZE:-640x360}"
GAP="${BENCH_GAP:-1}"
export MEDIAQ_X264_PRESET="${MEDIAQ_X264_PRESET:-veryfast}"
export MEDIAQ_WORKER_CONCURRENCY=1

ensure_packages "${BUILD_PACKAGES[@]}" ffmpeg curl python3 util-linux
ensure_rust
bench_lock

WORKER_PIDS=()
stop_worker() {
  local p
  for p in "${WORKER_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${WORKER_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  WORKER_PIDS=()
}
start_worker() {
  local n=${#WORKER_PIDS[@]} out i
  out="$WORK/worker-$n.stdout"
  : >"$out"
  "$BIN/mediaq-worker" >"$out" 2>>"$WORK/worker-$n.log" 9>&- &
  WORKER_PIDS+=($!)
  for i in $(seq 1 200); do
    grep -q '^mediaq-worker ready' "$out" && break
    kill -0 "${WORKER_PIDS[-1]}" 2>/dev/null || { tail -n 20 "$WORK/worker-$n.log" >&2; die "mediaq-worker exited"; }
    sleep 0.05
  done
  grep -q '^mediaq-worker ready' "$out" || die "mediaq-worker not ready within 10 s"
}
bench_scratch eta
STORAGE="$SCRATCH/storage"
mkdir -p "$STORAGE"
bench_build
bench_pg_fresh
bench_api_key
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)
export MEDIAQ_STORAGE_DIR="$STORAGE"

# --- clips ----------------------------------------------------------------------------------------
clip() { # out seconds
  [ -s "$1" ] && return 0
  ffmpeg -nostdin -v error -y \
    -f lavfi -i "testsrc2=size=$SIZE:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
    -t "$2" -ac 2 -c:v libvpx -deadline realtime -cpu-used 8 -b:v 1M -c:a libopus -b:a 96k "$1.part.webm" 9>&-
  mv "$1.part.webm" "$1"
}
# Cached between runs (like scripts/bench-transcode.sh's inputs).
CLIPS="$MEDIAQ_ROOT/target/bench-fixtures/eta-$SIZE"
mkdir -p "$CLIPS"
log "clips ($SIZE VP8 + Opus: $LENGTHS s, in $CLIPS)"
for s in $LENGTHS $WARMUP; do clip "$CLIPS/clip-$s.webm" "$s"; done

# --- services -------------------------------------------------------------------------------------
start_api
start_worker
log "warm-up: $WARMUP s on one worker (not counted)"
for s in $WARMUP; do echo "0 $CLIPS/clip-$s.webm warm-$s"; done >"$WORK/plan-warm"
python3 scripts/bench/fair.py eta "$API_ADDR" "$WORK/plan-warm" "$WORK/warm" >/dev/null 9>&-
: >"$WORK/rows"
for w in $WORKERS; do
  while [ ${#WORKER_PIDS[@]} -lt "$w" ]; do start_worker; done
  sleep 6 # every worker's first heartbeat is in (MEDIAQ_HEARTBEAT, 5 s)
  # shellcheck disable=SC2086
  for s in $(shuf -e $LENGTHS); do echo "$GAP $CLIPS/clip-$s.webm ${s}s"; done >"$WORK/plan-$w"
  log "phase: $w worker(s), $(wc -l <"$WORK/plan-$w") jobs"
  python3 scripts/bench/fair.py eta "$API_ADDR" "$WORK/plan-$w" "$WORK/phase-$w" 9>&- >/dev/null
  awk -v w="$w" '{ print w, $0 }' "$WORK/phase-$w" >>"$WORK/rows"
done
stop_worker
# Attempts the estimator learnt from, for the report: wall seconds per MB of input.
psql_bench -F ' ' -c "SELECT count(*), round(regr_slope(a.wall_s, j.input_size)::numeric * 1e6, 3),
    round(regr_intercept(a.wall_s, j.input_size)::numeric, 2), round(regr_r2(a.wall_s, j.input_size)::numeric, 3)
  FROM job_attempts a JOIN jobs j ON j.id = a.job_id WHERE a.outcome = 'succeeded'" >"$WORK/model"
stop_api

# --- report ---------------------------------------------------------------------------------------
# rows: workers label id bytes upload_at estimate_at finished_at position slots status
# table: workers label bytes position slots status wait est error
awk '{ wait = $7 - $5; est = $6 - $5; err = ($6 == "nan" ? "nan" : (est - wait) / wait);
       print $1, $2, $4, $8, $9, $10, wait, est, err }' "$WORK/rows" >"$WORK/table"
awk '$9 != "nan" { e = $9 < 0 ? -$9 : $9; print e }' "$WORK/table" | sort -g >"$WORK/abs"
p90() { awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit } i = int(0.9 * NR); if (i < 0.9 * NR) i++; print v[i] }' "$1"; }
report() {
  read -r m_n m_slope m_icpt m_r2 <"$WORK/model"
  echo "Machine: $(machine_line "$STORAGE")"
  echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(build_line)"
  echo "Load average (1/5/15 min) at start: $LOAD_START, at end: $(cut -d" " -f1-3 /proc/loadavg) (other work shares the machine)"
  echo "Command: bash scripts/bench-eta.sh (BENCH_LENGTHS=\"$LENGTHS\" BENCH_WORKERS=\"$WORKERS\" BENCH_SIZE=$SIZE" \
    "BENCH_GAP=$GAP, preset $MEDIAQ_X264_PRESET${BENCH_BIN:+, BENCH_BIN=$BENCH_BIN})"
  echo "Warm-up (not counted): $WARMUP s clips on one worker. At the end the CPU lane's $m_n successful attempts fit" \
    "wall s = $m_icpt + $m_slope x MB (r^2 $m_r2)."
  echo
  echo "| workers | clip | input MB | status | place in line | workers seen | actual wait s | estimated wait s | error |"
  echo "|---|---|---|---|---|---|---|---|---|"
  awk '{ printf "| %s | %s | %.2f | %s | %s | %s | %.1f | %s | %s |\n", $1, $2, $3 / 1e6, $6, $4, $5, $7,
         ($8 ~ /nan/ ? "-" : sprintf("%.1f", $8)), ($9 == "nan" ? "-" : sprintf("%+.0f %%", $9 * 100)) }' "$WORK/table"
  echo
  echo "**|estimated - actual| / actual wait over $(wc -l <"$WORK/abs") jobs: median $(awk -v v="$(median "$WORK/abs")" 'BEGIN { printf "%.1f", v * 100 }') %," \
    "p90 $(awk -v v="$(p90 "$WORK/abs")" 'BEGIN { printf "%.1f", v * 100 }') %** (target: median <= 15 %, p90 <= 30 %)."
  for w in $WORKERS; do
    awk -v w="$w" '$1 == w && $9 != "nan" { e = $9 < 0 ? -$9 : $9; print e }' "$WORK/table" | sort -g >"$WORK/abs-$w"
    echo "- $w worker(s): median $(awk -v v="$(median "$WORK/abs-$w")" 'BEGIN { printf "%.1f", v * 100 }') %, p90 $(awk -v v="$(p90 "$WORK/abs-$w")" 'BEGIN { printf "%.1f", v * 100 }') %"
  done
}
cp "$WORK/table" "$RESULTS/eta-table-$(date -u +%Y%m%dT%H%M%SZ).txt"
report | tee "$RESULTS/eta-$(date -u +%Y%m%dT%H%M%SZ).md"
