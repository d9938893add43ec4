#!/usr/bin/env bash
# Benchmark: end-to-end pipeline (upload -> queue -> worker -> succeeded) against the transcode
# alone, and the worker's pickup latency.
#
#   bash scripts/bench-pipeline.sh                 # 5 alternating runs, 100 pickups, ~3 minutes
#   RUNS=9 PICKUP_JOBS=200 bash scripts/bench-pipeline.sh
#
# 1. A 5 s 640x480 browser-style clip (VP8 + Opus, libvpx -deadline realtime). End to end: from the
#    start of the upload (raw body POST /v1/jobs) to the first GET /v1/jobs/{id} (polled every
#    20 ms on a keep-alive connection) that reports `succeeded`; beside it, the same clip through
#    target/release/mediaq-transcode run directly. Alternating, medians; overhead = e2e - transcode.
#    The job's own timestamps split the overhead into upload, queue pickup, attempt (child spawn,
#    transcode, hashing, fsync, commit) and polling lag.
# 2. Pickup latency: PICKUP_JOBS jobs of a 0.2 s clip submitted one at a time, each when the
#    previous one has finished (so the worker is idle and waiting); started_at - created_at per
#    job, from the jobs table.
#
# Requests carry a fresh API key (when the API has keys); rate limits and quotas are raised out of
# the way (scripts/bench/common.sh). BENCH_SKIP_BUILD=1 measures target/release as it is.
# One API and one worker (release build, MEDIAQ_X264_PRESET=veryfast unless set). Needs root
# (packages, PostgreSQL as the postgres user). Own cluster (.mediaq/pg-bench, wiped at start,
# stopped at exit) and scratch dir (.mediaq/bench-pipeline, removed at exit). Not run in CI.
source "$(dirname "$0")/lib.sh"
cd "$MEDIAQ_ROOT"
source scripts/bench/common.sh

RUNS="${RUNS:-5}"
PICKUP_JOBS="${PICKUP_JOBS:-100}"
export MEDIAQ_X264_PRESET="${MEDIAQ_X264_PRESET:-veryfast}"

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
bench_scratch pipeline
STORAGE="$SCRATCH/storage"
mkdir -p "$STORAGE"
bench_build
bench_pg_fresh
bench_api_key
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)
export MEDIAQ_STORAGE_DIR="$STORAGE"

# --- clips ----------------------------------------------------------------------------------------
clip() { # out seconds size
  ffmpeg -nostdin -v error -y \
    -f lavfi -i "testsrc2=size=$3:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
    -t "$2" -ac 2 -c:v libvpx -deadline realtime -cpu-used 8 -b:v 1M -c:a libopus -b:a 96k "$1"
}
CLIP="$WORK/clip.webm"
TINY="$WORK/tiny.webm"
clip "$CLIP" 5 640x480
clip "$TINY" 0.2 320x240

# --- services -------------------------------------------------------------------------------------
start_api
: >"$WORK/worker.stdout"
"$BIN/mediaq-worker" >"$WORK/worker.stdout" 2>>"$WORK/worker.log" 9>&- &
WORKER_PID=$!
for i in $(seq 1 200); do
  grep -q '^mediaq-worker ready' "$WORK/worker.stdout" && break
  kill -0 "$WORKER_PID" 2>/dev/null || { tail -n 20 "$WORK/worker.log" >&2; die "mediaq-worker exited"; }
  sleep 0.05
done
grep -q '^mediaq-worker ready' "$WORK/worker.stdout" || die "mediaq-worker not ready within 10 s"

e2e() { python3 scripts/bench/driver.py e2e "$API_ADDR" "$CLIP" 300; }
transcode() {
  rm -f "$WORK/direct.mp4"
  python3 scripts/bench/driver.py transcode "$BIN/mediaq-transcode" "$CLIP" "$WORK/direct.mp4"
}
# JSON line -> "field" value
field() { python3 -c 'import json, sys; print("%.4f" % json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

log "warm-up (one of each, not counted)"
e2e >/dev/null
transcode >/dev/null
for i in $(seq 1 "$RUNS"); do
  if [ $((i % 2)) -eq 1 ]; then order="e2e transcode"; else order="transcode e2e"; fi
  for what in $order; do
    sleep 0.5 # let the worker settle back to waiting
    line=$($what) || die "$what run $i failed"
    log "run $i/$RUNS $what: $line"
    if [ "$what" = e2e ]; then
      echo "$(field "$line" e2e_s) $(field "$line" upload_s) $(field "$line" pickup_s) $(field "$line" attempt_s) $(field "$line" poll_lag_s) $(field "$line" to_created_s) $(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["id"])' "$line")" >>"$WORK/e2e"
    else
      field "$line" transcode_s >>"$WORK/transcode"
    fi
  done
done

# Paired differences (each e2e run against the transcode run next to it) and, when the worker
# records its child's wall time (job_attempts.wall_s), the overhead inside each e2e run itself:
# e2e - the transcoder child's own wall time for that very job.
paste -d' ' <(awk '{ print $1 }' "$WORK/e2e") "$WORK/transcode" | awk '{ print $1 - $2 }' >"$WORK/paired"
if [ "$(psql_bench -c "SELECT count(*) FROM information_schema.columns
    WHERE table_name = 'job_attempts' AND column_name = 'wall_s'")" = 1 ]; then
  while read -r e _ _ _ _ _ id; do
    w=$(psql_bench -c "SELECT wall_s FROM job_attempts WHERE job_id = '$id' ORDER BY attempt DESC LIMIT 1")
    [ -n "$w" ] && echo "$e $w" | awk '{ print $1 - $2, $2 }'
  done <"$WORK/e2e" >"$WORK/inrun"
fi

# --- pickup latency -------------------------------------------------------------------------------
log "pickup latency: $PICKUP_JOBS jobs one at a time"
python3 scripts/bench/driver.py pickup "$API_ADDR" "$TINY" "$PICKUP_JOBS" "$WORK/pickup-ids" >/dev/null
ids_sql=$(awk '{ printf "%s'\''%s'\''", (NR > 1 ? "," : ""), $1 }' "$WORK/pickup-ids")
psql_bench -F ' ' -c "
  SELECT count(*),
         round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
         round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)::numeric, 1),
         round(max(ms)::numeric, 1),
         round(min(ms)::numeric, 1),
         count(*) FILTER (WHERE ms > 100)
  FROM (SELECT extract(epoch FROM started_at - created_at) * 1000 AS ms
        FROM jobs WHERE id IN ($ids_sql) AND attempts = 1) AS p" >"$WORK/pickup"
psql_bench -c "SELECT round((extract(epoch FROM started_at - created_at) * 1000)::numeric, 1)
               FROM jobs WHERE id IN ($ids_sql) ORDER BY created_at" >"$WORK/pickup-all"
read -r pk_n pk_p50 pk_p95 pk_max pk_min pk_over <"$WORK/pickup"
[ "$pk_n" -eq "$PICKUP_JOBS" ] || log "WARNING: only $pk_n of $PICKUP_JOBS jobs ran in one attempt"
stop_worker
stop_api

# --- report ---------------------------------------------------------------------------------------
report() {
  local e t
  e=$(median "$WORK/e2e" 1); t=$(median "$WORK/transcode" 1)
  ms() { awk -v v="$1" 'BEGIN { printf "%.0f", v * 1000 }'; }
  echo "Machine: $(machine_line "$STORAGE")"
  echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(build_line)"
  echo "Load average (1/5/15 min) at start: $LOAD_START, at end: $(cut -d" " -f1-3 /proc/loadavg) (other work shares the machine)"
  [ -n "$BENCH_KEY" ] && echo "Every request authenticated with an API key (Authorization: Bearer), as the API requires;" \
    "rate limits and quotas raised out of the way (MEDIAQ_RATE_LIMIT_IP/KEY=$MEDIAQ_RATE_LIMIT_IP, MEDIAQ_QUOTA_ACTIVE_JOBS=$MEDIAQ_QUOTA_ACTIVE_JOBS)."
  echo "Command: bash scripts/bench-pipeline.sh (RUNS=$RUNS PICKUP_JOBS=$PICKUP_JOBS, preset $MEDIAQ_X264_PRESET); medians of $RUNS alternating runs"
  echo
  echo "| 5 s 640x480 VP8+Opus clip | median ms | runs (ms) |"
  echo "|---|---|---|"
  echo "| end to end (upload start -> GET sees succeeded) | $(ms "$e") | $(awk '{ printf "%s%.0f", (NR > 1 ? " " : ""), $1 * 1000 }' "$WORK/e2e") |"
  echo "| mediaq-transcode alone | $(ms "$t") | $(awk '{ printf "%s%.0f", (NR > 1 ? " " : ""), $1 * 1000 }' "$WORK/transcode") |"
  echo "| **overhead** (median e2e - median transcode) | **$(awk -v a="$e" -v b="$t" 'BEGIN { printf "%.0f", (a - b) * 1000 }')** | |"
  echo "| overhead, median of paired runs (e2e_i - transcode_i) | $(ms "$(median "$WORK/paired" 1)") | $(awk '{ printf "%s%.0f", (NR > 1 ? " " : ""), $1 * 1000 }' "$WORK/paired") |"
  if [ -s "$WORK/inrun" ]; then
    echo "| overhead within each e2e run (e2e - that job's transcoder child wall time, job_attempts.wall_s) | $(ms "$(median "$WORK/inrun" 1)") | $(awk '{ printf "%s%.0f", (NR > 1 ? " " : ""), $1 * 1000 }' "$WORK/inrun") |"
    echo "| transcoder child wall time inside the worker | $(ms "$(median "$WORK/inrun" 2)") | $(awk '{ printf "%s%.0f", (NR > 1 ? " " : ""), $2 * 1000 }' "$WORK/inrun") |"
  fi
  echo "| e2e: upload request (POST -> 202) | $(ms "$(median "$WORK/e2e" 2)") | |"
  echo "| e2e: queue pickup (created_at -> started_at) | $(ms "$(median "$WORK/e2e" 3)") | |"
  echo "| e2e: attempt (started_at -> finished_at) | $(ms "$(median "$WORK/e2e" 4)") | |"
  echo "| e2e: attempt - transcode alone | $(awk -v a="$(median "$WORK/e2e" 4)" -v b="$t" 'BEGIN { printf "%.0f", (a - b) * 1000 }') | |"
  echo "| e2e: polling lag (finished_at -> GET that saw it) | $(ms "$(median "$WORK/e2e" 5)") | |"
  echo
  echo "| pickup latency, $pk_n jobs on an idle worker | p50 ms | p95 ms | max ms | min ms | jobs > 100 ms |"
  echo "|---|---|---|---|---|---|"
  echo "| started_at - created_at | $pk_p50 | $pk_p95 | $pk_max | $pk_min | $pk_over |"
}
report | tee "$RESULTS/pipeline-$(date -u +%Y%m%dT%H%M%SZ).md"
