#!/usr/bin/env bash
# Benchmark of the live lane's capacity (issue 25): how many concurrent real-time 720p recordings
# one worker process (MEDIAQ_WORKER_LIVE_SLOTS=N) on this host keeps at <= 1.0 s from the last
# byte acknowledged to `succeeded`, and what becomes of one more recording than it has slots for.
#
#   bash scripts/bench-live-capacity.sh                     # N = 1..4, 30 s recordings, ~4 minutes
#   BENCH_SLOTS="1 2 3 4 5" BENCH_SECONDS=60 bash scripts/bench-live-capacity.sh
#   BENCH_SKIP_BUILD=1 BENCH_BIN=target/debug bash scripts/bench-live-capacity.sh
#
# The recording: BENCH_SECONDS (30) of BENCH_SIZE (1280x720) VP8 2.5 Mb/s + Opus, written live
# like MediaRecorder's (ffmpeg -live 1, 1 s clusters: no Cues, no Duration), as in
# tests/tests/bench_live.rs. For each N of BENCH_SLOTS: a fresh worker with N live slots; N
# recordings start together as resumable uploads (POST /v1/uploads, deferred length, one PATCH
# per second, each acknowledged before the next, the last with the length: tests/src/live.rs's
# recorder) and one more BENCH_EXTRA_DELAY (3) seconds later, when the slots are taken. Each job
# is polled every 20 ms until terminal; latency = that poll's time - the last PATCH's 204.
# MEDIAQ_LIVE_PER_KEY is raised out of the way (all recordings use one key). The API, PostgreSQL
# and the worker share the host. Own cluster and scratch dir; needs root. Not run in CI.
source "$(dirname "$0")/lib.sh"
cd "$MEDIAQ_ROOT"
source scripts/bench/common.sh
[ -n "${BENCH_BIN:-}" ] && BIN=$(realpath "$BENCH_BIN")

SLOTS="${BENCH_SLOTS:-1 2 3 4}"
SECONDS_LONG="${BENCH_SECONDS:-30}"
SIZE="${BENCH_SIZE:-1280x720}"
EXTRA_DELAY="${BENCH_EXTRA_DELAY:-3}"
export MEDIAQ_X264_PRESET="${MEDIAQ_X264_PRESET:-veryfast}"
export MEDIAQ_LIVE_PER_KEY="${MEDIAQ_LIVE_PER_KEY:-1000}"
export MEDIAQ_WORKER_CONCURRENCY=1

ensure_packages "${BUILD_PACKAGES[@]}" ffmpeg curl python3 util-linux
ensure_rust
bench_lock

WORKER_PID=""
stop_worker() {
  [ -n "${WORKER_PID:-}" ] || return 0
  kill -TERM "$WORKER_PID" 2>/dev/null || true
  wait "$WORKER_PID" 2>/dev/null || true
  WORKER_PID=""
}
start_worker() { # live slots
  local out="$WORK/worker-$1.stdout" i
  : >"$out"
  MEDIAQ_WORKER_LIVE_SLOTS="$1" "$BIN/mediaq-worker" >"$out" 2>>"$WORK/worker-$1.log" 9>&- &
  WORKER_PID=$!
  for i in $(seq 1 200); do
    grep -q '^mediaq-worker ready' "$out" && return 0
    kill -0 "$WORKER_PID" 2>/dev/null || { tail -n 20 "$WORK/worker-$1.log" >&2; die "mediaq-worker exited"; }
    sleep 0.05
  done
  die "mediaq-worker not ready within 10 s"
}
bench_scratch live-capacity
STORAGE="$SCRATCH/storage"
mkdir -p "$STORAGE"
bench_build
bench_pg_fresh
bench_api_key
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)
export MEDIAQ_STORAGE_DIR="$STORAGE"

CLIP="$WORK/recording.webm"
log "generating a ${SECONDS_LONG} s $SIZE live-written recording"
ffmpeg -nostdin -v error -y -f lavfi -i "testsrc2=size=$SIZE:rate=30" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000" -t "$SECONDS_LONG" -c:v libvpx -deadline realtime \
  -cpu-used 8 -b:v 2500k -c:a libopus -live 1 -cluster_time_limit 1000 -f webm "$CLIP" 9>&-

start_api
for n in $SLOTS; do
  start_worker "$n"
  log "MEDIAQ_WORKER_LIVE_SLOTS=$n: $n recordings + 1 more ${EXTRA_DELAY} s later"
  python3 scripts/bench/fair.py live "$API_ADDR" "$CLIP" "$SECONDS_LONG" "$n" "$EXTRA_DELAY" "$WORK/live-$n" 9>&- >/dev/null
  # The worker's own CPU seconds over the round (its children included once they are reaped).
  cpu=$(awk '{ printf "%.1f", ($14 + $15 + $16 + $17) / 100 }' "/proc/$WORKER_PID/stat")
  echo "$n $cpu" >>"$WORK/cpu"
  stop_worker
  awk -v n="$n" '{ print n, $0 }' "$WORK/live-$n" >>"$WORK/rows"
done
stop_api

# --- report ---------------------------------------------------------------------------------------
# rows: slots index id last_ack done latency status lane
report() {
  echo "Machine: $(machine_line "$STORAGE")"
  echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(build_line)"
  echo "Load average (1/5/15 min) at start: $LOAD_START, at end: $(cut -d" " -f1-3 /proc/loadavg) (other work shares the machine)"
  echo "Command: bash scripts/bench-live-capacity.sh (BENCH_SLOTS=\"$SLOTS\" BENCH_SECONDS=$SECONDS_LONG BENCH_SIZE=$SIZE" \
    "BENCH_EXTRA_DELAY=$EXTRA_DELAY, preset $MEDIAQ_X264_PRESET${BENCH_BIN:+, BENCH_BIN=$BENCH_BIN})"
  echo
  echo "| live slots = recordings at once | last byte -> MP4, each in-slot recording (s) | max (s) | <= 1.0 s | worker CPU s | one more recording: status, last byte -> MP4 (s) |"
  echo "|---|---|---|---|---|---|"
  for n in $SLOTS; do
    awk -v n="$n" -v cpu="$(awk -v n="$n" '$1 == n { print $2 }' "$WORK/cpu")" '
      $1 == n && $2 < n { l = l (l == "" ? "" : ", ") sprintf("%.2f", $6); if ($6 + 0 > max) max = $6 + 0;
                          if ($6 + 0 <= 1.0 && $7 == "succeeded") ok++; if ($7 != "succeeded") l = l " (" $7 ")" }
      $1 == n && $2 == n { extra = sprintf("%s, %.2f", $7, $6) }
      END { printf "| %d | %s | %.2f | %d of %d | %s | %s |\n", n, l, max, ok, n, cpu, extra }' "$WORK/rows"
  done
}
report | tee "$RESULTS/live-capacity-$(date -u +%Y%m%dT%H%M%SZ).md"
