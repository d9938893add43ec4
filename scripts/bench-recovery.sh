#!/usr/bin/env bash
# Benchmark: how fast the service recovers from a worker killed with SIGKILL, and how fast a freshly
# restarted worker picks jobs up.
#
#   bash scripts/bench-recovery.sh                          # ~6 minutes on 2 cores
#   TRIALS=9 PICKUP_JOBS=100 PICKUP_ROUNDS=3 bash scripts/bench-recovery.sh
#
# 1. Recovery after kill -9 (TRIALS, 5): PostgreSQL, the API and two release workers with the
#    default configuration (heartbeat 5 s, 3 missed beats). Worker A runs with
#    MEDIAQ_X264_PRESET=veryslow MEDIAQ_TRANSCODE_THREADS=1 so that its attempt runs long; worker B
#    with the defaults. Each trial: start A alone, upload a 20 s 640x480 VP8+Opus clip, wait until A
#    reports it `processing` (GET /v1/jobs/{id}), start B and wait for its ready line, wait a random
#    0..KILL_DELAY_MAX (5) s (so that the kill lands at a random phase of the 5 s heartbeats;
#    KILL_DELAY_MAX=0 kills at once), then SIGKILL A and poll the job (every 100 ms) until it ends
#    in a later attempt. From the kill:
#      retry    to the start of attempt 2 (attempt_history[1].started_at, set by PostgreSQL)
#      done     to `succeeded` (finished_at)
#    and how long A's transcoder outlived it, and how long before the kill A's last heartbeat was
#    (apalis.workers.last_seen). Then B is stopped (SIGTERM) and the next trial starts a new A.
#    Beside it: the same clip through target/release/mediaq-transcode directly (3 runs, B's settings).
# 2. Pickup latency after a restart (PICKUP_ROUNDS, 2): stop every worker (SIGTERM), start one
#    fresh worker and, as soon as it prints its ready line, submit PICKUP_JOBS (50) jobs of a 0.5 s
#    clip one at a time (each 0.3 s after the previous one succeeded); then PICKUP_JOBS more on the
#    same worker, now long started (the "no restart" reference). started_at - created_at per job
#    from the jobs table; p50/p95/max per phase, and the first job after each restart.
#
# Needs root (packages, PostgreSQL as the postgres user, the sandbox user). Own cluster
# (.mediaq/pg-bench2, wiped at start, stopped at exit) and scratch (.mediaq/bench-recovery, removed
# at exit); results also saved under .mediaq/bench-results. Waits for .mediaq/bench.lock (shared
# with the other benchmarks). BENCH_SKIP_BUILD=1 uses the binaries in target/release as they are.
# Requests use a fresh jobs:write,jobs:read API key; rate limits and quotas are raised out of the way.
# Not run in CI.
source "$(dirname "$0")/lib.sh"
cd "$MEDIAQ_ROOT"

TRIALS="${TRIALS:-5}"
KILL_DELAY_MAX="${KILL_DELAY_MAX:-5}"
PICKUP_JOBS="${PICKUP_JOBS:-50}"
PICKUP_ROUNDS="${PICKUP_ROUNDS:-2}"
BIN="${CARGO_TARGET_DIR:-$MEDIAQ_ROOT/target}/release"
PG_DIR="$MEDIAQ_ROOT/.mediaq/pg-bench2"
SCRATCH="$MEDIAQ_ROOT/.mediaq/bench-recovery"
WORK="$SCRATCH/work"
RESULTS="$MEDIAQ_ROOT/.mediaq/bench-results"

[ "$(id -u)" -eq 0 ] || die "run as root (PostgreSQL runs as the postgres user; the worker's sandbox changes uid)"
ensure_packages "${BUILD_PACKAGES[@]}" ffmpeg curl python3 util-linux
ensure_rust

mkdir -p "$MEDIAQ_ROOT/.mediaq"
exec 9>"$MEDIAQ_ROOT/.mediaq/bench.lock"
if ! flock -n 9; then
  log "another benchmark holds .mediaq/bench.lock; waiting (at most ${BENCH_LOCK_WAIT:-1800} s)"
  flock -w "${BENCH_LOCK_WAIT:-1800}" 9 || die "benchmark lock still held after ${BENCH_LOCK_WAIT:-1800} s"
fi

# Processes this script started: pid -> label (workers), plus the API.
declare -A WORKERS=()
API_PID=""
stop_pid() { # pid: SIGTERM, wait up to 60 s, then SIGKILL
  local pid="$1" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 600); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
stop_workers() {
  local pid
  for pid in "${!WORKERS[@]}"; do stop_pid "$pid"; unset "WORKERS[$pid]"; done
}
cleanup() {
  trap - EXIT INT TERM
  stop_workers
  [ -n "$API_PID" ] && stop_pid "$API_PID"
  stop_local_pg "$PG_DIR"
  rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM # (then the EXIT trap cleans up)

rm -rf "$SCRATCH"
mkdir -p "$WORK" "$SCRATCH/storage" "$RESULTS"
chmod 0755 "$SCRATCH" "$SCRATCH/storage"
export MEDIAQ_STORAGE_DIR="$SCRATCH/storage"

if [ "${BENCH_SKIP_BUILD:-0}" = 1 ]; then
  log "BENCH_SKIP_BUILD=1: using the binaries in $BIN as they are"
else
  log "building (release)"
  cargo build --release --locked --bins >&2
fi
for b in mediaq-api mediaq-worker mediaq-transcode; do [ -x "$BIN/$b" ] || die "$BIN/$b missing"; done

stop_local_pg "$PG_DIR"
rm -rf "$PG_DIR"
start_local_pg "$PG_DIR" 9>&- # (no process started here keeps the benchmark lock)
"$BIN/mediaq-api" migrate 9>&- >>"$WORK/migrate.log" 2>&1 || { cat "$WORK/migrate.log" >&2; die "migration failed"; }
psql_q() { psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -qtAX "$@"; }

# Rate limits and per-key quotas are raised out of the way (the limiter still runs on every
# request): the benchmark polls jobs every 100 ms and the pickup loop every 10 ms.
export MEDIAQ_RATE_LIMIT_IP="${MEDIAQ_RATE_LIMIT_IP:-1000000}"
export MEDIAQ_RATE_LIMIT_KEY="${MEDIAQ_RATE_LIMIT_KEY:-1000000}"
export MEDIAQ_QUOTA_ACTIVE_JOBS="${MEDIAQ_QUOTA_ACTIVE_JOBS:-1000000}"
export MEDIAQ_QUOTA_DAILY_BYTES="${MEDIAQ_QUOTA_DAILY_BYTES:-1000GiB}"
# An API key for the requests (BENCH_KEY, read by scripts/bench/recovery.py), when the API has keys.
BENCH_KEY=""
if "$BIN/mediaq-api" --help 2>/dev/null | grep -qE '^ +keys'; then
  BENCH_KEY=$("$BIN/mediaq-api" keys create --name bench-recovery --scopes jobs:write,jobs:read 9>&- 2>>"$WORK/keys.log" | tail -n 1)
  [[ "$BENCH_KEY" == mq_* ]] || { cat "$WORK/keys.log" >&2; die "could not create an API key"; }
fi
export BENCH_KEY

# --- clips ----------------------------------------------------------------------------------------
clip() { # out seconds size
  ffmpeg -nostdin -v error -y \
    -f lavfi -i "testsrc2=size=$3:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
    -t "$2" -ac 2 -c:v libvpx -deadline realtime -cpu-used 8 -b:v 1M -c:a libopus -b:a 96k "$1"
}
CLIP="$WORK/clip20.webm"
TINY="$WORK/tiny.webm"
clip "$CLIP" 20 640x480
clip "$TINY" 0.5 320x240

# --- services -------------------------------------------------------------------------------------
start_api() {
  local out="$WORK/api.stdout" i
  : >"$out"
  MEDIAQ_BIND=127.0.0.1:0 "$BIN/mediaq-api" serve >"$out" 2>>"$WORK/api.log" 9>&- &
  API_PID=$!
  API_ADDR=""
  for i in $(seq 1 200); do
    API_ADDR=$(sed -n 's|^mediaq-api listening on http://||p' "$out" | head -n 1)
    [ -n "$API_ADDR" ] && break
    kill -0 "$API_PID" 2>/dev/null || { tail -n 20 "$WORK/api.log" >&2; die "mediaq-api exited"; }
    sleep 0.05
  done
  [ -n "$API_ADDR" ] || die "mediaq-api did not print its address within 10 s"
  for i in $(seq 1 100); do
    curl -fsS -o /dev/null "http://$API_ADDR/readyz" && return 0
    sleep 0.1
  done
  die "mediaq-api not ready within 10 s"
}

# start_worker LABEL [VAR=value...]: starts a worker, waits for its ready line (30 s at most);
# sets W_PID and W_NAME.
WORKER_SEQ=0
start_worker() {
  local label="$1" out i
  shift
  WORKER_SEQ=$((WORKER_SEQ + 1))
  out="$WORK/worker-$WORKER_SEQ-$label.stdout"
  : >"$out"
  env "$@" "$BIN/mediaq-worker" >"$out" 2>>"$WORK/worker-$WORKER_SEQ-$label.log" 9>&- &
  W_PID=$!
  WORKERS[$W_PID]="$label"
  W_NAME=""
  for i in $(seq 1 600); do
    W_NAME=$(sed -n 's/^mediaq-worker ready //p' "$out" | head -n 1)
    [ -n "$W_NAME" ] && return 0
    kill -0 "$W_PID" 2>/dev/null || { tail -n 20 "$WORK/worker-$WORKER_SEQ-$label.log" >&2; die "worker $label exited"; }
    sleep 0.05
  done
  die "worker $label not ready within 30 s"
}

start_api

# --- 1. recovery after kill -9 --------------------------------------------------------------------
: >"$WORK/trials"
: >"$WORK/heartbeat-age"
: >"$WORK/kill-delay"
for i in $(seq 1 "$TRIALS"); do
  start_worker A MEDIAQ_X264_PRESET=veryslow MEDIAQ_TRANSCODE_THREADS=1
  A_PID=$W_PID A_NAME=$W_NAME
  job=$(python3 scripts/bench/recovery.py hold "$API_ADDR" "$CLIP" "$A_NAME" 120) || die "trial $i: A did not take the job"
  start_worker B
  B_NAME=$W_NAME B_PID=$W_PID
  # A random pause (0..KILL_DELAY_MAX s) so that the kill falls at a random point of both workers'
  # 5 s heartbeat cycles (without it every trial would see the same phases).
  delay=$(awk -v r="$RANDOM" -v m="$KILL_DELAY_MAX" 'BEGIN { printf "%.2f", r / 32768 * m }')
  echo "$delay" >>"$WORK/kill-delay"
  log "trial $i/$TRIALS: job $job on $A_NAME; $B_NAME ready; kill -9 $A_PID in $delay s"
  sleep "$delay"
  line=$(python3 scripts/bench/recovery.py kill "$API_ADDR" "$job" "$A_PID" 300) || die "trial $i: no recovery"
  wait "$A_PID" 2>/dev/null || true
  unset "WORKERS[$A_PID]"
  echo "$line" >>"$WORK/trials"
  log "trial $i: $line"
  # How long before the kill A had last beaten (its row is no longer updated once it is dead).
  t_kill=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["t_kill"])' "$line")
  psql_q -c "SELECT $t_kill - extract(epoch FROM max(last_seen)) FROM apalis.workers WHERE id LIKE '$A_NAME%'" \
    >>"$WORK/heartbeat-age"
  stop_pid "$B_PID"
  unset "WORKERS[$B_PID]"
done

log "the 20 s clip through mediaq-transcode directly (B's settings: veryfast, threads auto), 3 runs"
: >"$WORK/transcode"
for i in 1 2 3; do
  rm -f "$WORK/direct.mp4"
  python3 scripts/bench/recovery.py transcode "$BIN/mediaq-transcode" "$CLIP" "$WORK/direct.mp4" >>"$WORK/transcode"
done

# --- 2. pickup latency after a restart ------------------------------------------------------------
: >"$WORK/pickup-fresh-ids"
: >"$WORK/pickup-steady-ids"
: >"$WORK/pickup-first-ids"
for r in $(seq 1 "$PICKUP_ROUNDS"); do
  stop_workers
  start_worker P
  log "pickup round $r/$PICKUP_ROUNDS: $PICKUP_JOBS jobs right after the restart of $W_NAME"
  python3 scripts/bench/recovery.py pickup "$API_ADDR" "$TINY" "$PICKUP_JOBS" "$WORK/ids" >/dev/null
  cat "$WORK/ids" >>"$WORK/pickup-fresh-ids"
  head -n 1 "$WORK/ids" >>"$WORK/pickup-first-ids"
  log "pickup round $r/$PICKUP_ROUNDS: $PICKUP_JOBS more on the same worker"
  python3 scripts/bench/recovery.py pickup "$API_ADDR" "$TINY" "$PICKUP_JOBS" "$WORK/ids" >/dev/null
  cat "$WORK/ids" >>"$WORK/pickup-steady-ids"
done
stop_workers

pickup_stats() { # ids-file -> "n p50 p95 max min" in ms (jobs that ran in one attempt)
  local ids
  ids=$(awk '{ printf "%s'\''%s'\''", (NR > 1 ? "," : ""), $1 }' "$1")
  psql_q -F ' ' -c "
    SELECT count(*),
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
           round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)::numeric, 1),
           round(max(ms)::numeric, 1), round(min(ms)::numeric, 1)
    FROM (SELECT extract(epoch FROM started_at - created_at) * 1000 AS ms
          FROM jobs WHERE id IN ($ids) AND attempts = 1) AS p"
}
first_jobs() { # ids-file -> the latencies in ms, space-separated, in order
  local ids
  ids=$(awk '{ printf "%s'\''%s'\''", (NR > 1 ? "," : ""), $1 }' "$1")
  psql_q -c "SELECT round((extract(epoch FROM started_at - created_at) * 1000)::numeric, 0)
             FROM jobs WHERE id IN ($ids) ORDER BY created_at" | paste -sd' '
}
read -r fr_n fr_p50 fr_p95 fr_max fr_min < <(pickup_stats "$WORK/pickup-fresh-ids")
read -r st_n st_p50 st_p95 st_max st_min < <(pickup_stats "$WORK/pickup-steady-ids")
FIRST=$(first_jobs "$WORK/pickup-first-ids")
# Each round's first 5 jobs after the restart, to see whether a slow start is confined to the first.
: >"$WORK/first5"
for r in $(seq 1 "$PICKUP_ROUNDS"); do
  sed -n "$(((r - 1) * PICKUP_JOBS + 1)),$(((r - 1) * PICKUP_JOBS + 5))p" "$WORK/pickup-fresh-ids" >"$WORK/r5"
  echo "round $r: $(first_jobs "$WORK/r5")" >>"$WORK/first5"
done

# --- report ---------------------------------------------------------------------------------------
col() { # field -> one value per trial
  python3 -c 'import json, sys
for line in open(sys.argv[1]):
    v = json.loads(line)[sys.argv[2]]
    print("nan" if v is None else v)' "$WORK/trials" "$1"
}
stats() { # values on stdin -> "median min max" with 1 decimal
  sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan nan nan"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f %.1f %.1f\n", m, v[1], v[NR] }'
}
row() { # label field
  local m lo hi all
  read -r m lo hi < <(col "$2" | stats)
  all=$(col "$2" | awk '{ printf "%s%.1f", (NR > 1 ? " " : ""), $1 }')
  echo "| $1 | $m | $lo | $hi | $all |"
}
report() {
  local cpu ram build
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
  ram=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  build="commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  git diff --quiet HEAD -- api shared worker migrations 2>/dev/null || build="$build + uncommitted changes"
  [ "${BENCH_SKIP_BUILD:-0}" = 1 ] && build="$build; prebuilt binaries from $(date -u -r "$BIN/mediaq-worker" '+%H:%M UTC')"
  echo "Machine: $(nproc) cores ($cpu), $ram RAM, $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); $build; PostgreSQL $(psql_q -c 'SHOW server_version' | cut -d' ' -f1)"
  echo "Command: bash scripts/bench-recovery.sh (TRIALS=$TRIALS KILL_DELAY_MAX=$KILL_DELAY_MAX PICKUP_JOBS=$PICKUP_JOBS PICKUP_ROUNDS=$PICKUP_ROUNDS); heartbeat 5 s, 3 missed beats (defaults)"
  [ -n "$BENCH_KEY" ] && echo "Requests authenticated with a jobs:write,jobs:read API key; rate limits and quotas raised out of the way."
  echo
  echo "Recovery after \`kill -9\` of the worker running a 20 s 640x480 VP8+Opus job, $TRIALS trials (seconds from the kill):"
  echo
  echo "| from the kill to | median s | min s | max s | trials (s) |"
  echo "|---|---|---|---|---|"
  row "attempt 2 starts on the live worker (attempt_history[1].started_at)" retry_s
  row "job \`succeeded\` (finished_at)" done_s
  row "attempt 2 itself (its wall_s)" attempt2_wall_s
  row "the killed worker's transcoder is gone" child_gone_s
  local m lo hi
  # The model: a dead worker's job is re-run about 3 x 5 s after its last heartbeat.
  col retry_s | paste -d' ' - "$WORK/heartbeat-age" | awk '{ print $1 + $2 }' >"$WORK/since-beat"
  read -r m lo hi < <(stats <"$WORK/since-beat")
  echo "| (derived) from the killed worker's last heartbeat to attempt 2 | $m | $lo | $hi | $(awk '{ printf "%s%.1f", (NR > 1 ? " " : ""), $1 }' "$WORK/since-beat") |"
  read -r m lo hi < <(stats <"$WORK/heartbeat-age")
  echo "| (before the kill) the killed worker's last heartbeat | $m | $lo | $hi | $(awk '{ printf "%s%.1f", (NR > 1 ? " " : ""), $1 }' "$WORK/heartbeat-age") |"
  read -r m lo hi < <(stats <"$WORK/kill-delay")
  echo "| (before the kill) pause after B's ready line | $m | $lo | $hi | $(awk '{ printf "%s%.1f", (NR > 1 ? " " : ""), $1 }' "$WORK/kill-delay") |"
  read -r m lo hi < <(stats <"$WORK/transcode")
  echo "| (for comparison) mediaq-transcode alone on the clip, 3 runs | $m | $lo | $hi | $(awk '{ printf "%s%.1f", (NR > 1 ? " " : ""), $1 }' "$WORK/transcode") |"
  echo
  echo "Attempt 1 as recorded: $(python3 -c 'import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("; ".join(sorted({"%s/%s (%s)" % (r["attempt1"]["outcome"], r["attempt1"]["error_code"], r["attempt1"]["exit_status"]) for r in rows})),
      "- final statuses:", ", ".join(sorted({r["status"] for r in rows})),
      "- attempts:", ", ".join(str(r["attempts"]) for r in rows),
      "- progress at the kill:", ", ".join("%.2f" % r["progress_at_kill"] for r in rows))' "$WORK/trials")"
  echo
  echo "Pickup latency (started_at - created_at), $PICKUP_ROUNDS rounds of $PICKUP_JOBS jobs each (0.5 s 320x240 clip, one at a time):"
  echo
  echo "| worker | jobs | p50 ms | p95 ms | max ms | min ms |"
  echo "|---|---|---|---|---|---|"
  echo "| fresh: submitted from its ready line on | $fr_n | $fr_p50 | $fr_p95 | $fr_max | $fr_min |"
  echo "| the same worker afterwards (no restart) | $st_n | $st_p50 | $st_p95 | $st_max | $st_min |"
  echo
  echo "First job after each restart: $FIRST ms; first five per round: $(paste -sd';' "$WORK/first5")"
}
report | tee "$RESULTS/recovery-$(date -u +%Y%m%dT%H%M%SZ).md"
