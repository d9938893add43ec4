#!/usr/bin/env bash
# Benchmark: upload ingest throughput (against cp on the same disk), API peak RSS, status polling.
#
#   bash scripts/bench-ingest.sh                  # 3 alternating runs of each, ~5 minutes
#   RUNS=5 POLL_SECONDS=30 bash scripts/bench-ingest.sh
#
# 1. Ingest: raw-body POST /v1/jobs (Content-Type: video/webm) of one 200 MB body and of 50
#    concurrent 20 MB bodies, streamed from the file as a browser does (curl -X POST -T FILE,
#    with Content-Length; `--data-binary @FILE` would first read the whole body into curl's
#    memory). Bodies are a real 1 s WebM (the API only sniffs the first 4 KiB) padded with random
#    bytes. Beside each, in the same run and alternating with it, the same bytes copied with
#    `cp` into the storage filesystem: plain (mostly page cache) and followed by `sync FILE` (an
#    fsync, as the API does before its 202); and hashed with `openssl dgst -sha256` (SHA-NI), the
#    time the SHA-256 the API must compute takes on its own. The disk is settled (syncfs) before
#    every measurement. MB = 10^6 bytes.
# 2. Peak RSS (VmHWM) of the API during each upload run, on a freshly started API.
# 3. Status polling: 100,000 jobs in the table, wrk -t2 -c32 --latency with keep-alive on
#    GET /v1/jobs/{id} over 1,000 existing ids, plain (200) and with If-None-Match (304).
#
# Requests carry a fresh API key (when the API has keys); rate limits and quotas are raised out of
# the way (scripts/bench/common.sh). BENCH_SKIP_BUILD=1 measures target/release as it is.
# Needs root (packages, PostgreSQL run as the postgres user). Uses its own cluster
# (.mediaq/pg-bench, wiped at start, stopped at exit) and scratch dir (.mediaq/bench-ingest,
# removed at exit). Not run in CI. Prints a markdown table (also saved under .mediaq/bench-results).
source "$(dirname "$0")/lib.sh"
cd "$MEDIAQ_ROOT"
source scripts/bench/common.sh

RUNS="${RUNS:-3}"
BIG_MB="${BIG_MB:-200}"
SMALL_MB="${SMALL_MB:-20}"
CONCURRENCY="${CONCURRENCY:-50}"
POLL_JOBS="${POLL_JOBS:-100000}"
POLL_IDS="${POLL_IDS:-1000}"
POLL_SECONDS="${POLL_SECONDS:-15}"
POLL_CONNECTIONS="${POLL_CONNECTIONS:-32}"

ensure_packages "${BUILD_PACKAGES[@]}" ffmpeg curl wrk time python3 util-linux openssl
ensure_rust
bench_lock

bench_scratch ingest
STORAGE="$SCRATCH/storage"
CPDST="$STORAGE/cp-bench"
mkdir -p "$STORAGE" "$CPDST"
bench_build
bench_pg_fresh
bench_api_key
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)

export MEDIAQ_STORAGE_DIR="$STORAGE"
export MEDIAQ_MAX_UPLOAD_BYTES="$(((BIG_MB + 10) * 1000000))"

# --- bodies: a real small WebM, then random bytes up to the size ---------------------------------
BODIES="$SCRATCH/bodies"
mkdir -p "$BODIES"
ffmpeg -nostdin -v error -y -f lavfi -i testsrc2=size=320x240:rate=25 -t 1 -c:v libvpx \
  -deadline realtime -f webm "$BODIES/head.webm"
make_body() { # name megabytes
  local f="$BODIES/$1" size=$(($2 * 1000000)) head
  head=$(stat -c %s "$BODIES/head.webm")
  { cat "$BODIES/head.webm"; head -c $((size - head)) /dev/urandom; } >"$f"
  [ "$(stat -c %s "$f")" -eq "$size" ] || die "body $f has the wrong size"
}
make_body big.webm "$BIG_MB"
make_body small.webm "$SMALL_MB"
BIG_BYTES=$(stat -c %s "$BODIES/big.webm")
SMALL_BYTES=$(stat -c %s "$BODIES/small.webm")
sync -f "$STORAGE"

# Settles the disk between measurements: previous copies and inputs removed, dirty pages written.
settle() {
  rm -f "$CPDST"/* "$STORAGE"/inputs/*
  sync -f "$STORAGE"
}

# upload_one NAME -> prints seconds (curl's time_total); fails unless 202.
upload_one() {
  local r
  r=$(curl -sS -o "$WORK/resp.json" -w '%{http_code} %{time_total}' -H 'Expect:' "${AUTH[@]}" \
    -H 'Content-Type: video/webm' -X POST -T "$BODIES/$1" "http://$API_ADDR/v1/jobs?filename=$1")
  [ "${r%% *}" = 202 ] || { cat "$WORK/resp.json" >&2; die "upload of $1 answered ${r%% *}"; }
  echo "${r#* }"
}

# wall_of_many N FUNCTION ARGS... -> wall seconds for `FUNCTION K ARGS...` run N times at once
# (K = 1..N); fails if any of them failed.
wall_of_many() {
  local n="$1" fn="$2" k t0 t1 pid failed=0 pids=()
  shift 2
  t0=$(now_s)
  for k in $(seq 1 "$n"); do
    "$fn" "$k" "$@" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  t1=$(now_s)
  [ "$failed" = 0 ] || die "$fn failed ($n at once)"
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
}

# One of the N: upload K of NAME (status code to $WORK/code-K), copy K (FSYNC=1: then sync FILE),
# hash of NAME.
upload_k() {
  curl -sS -o "$WORK/resp-$1.json" -w '%{http_code}' -H 'Expect:' "${AUTH[@]}" -H 'Content-Type: video/webm' \
    -X POST -T "$BODIES/$2" "http://$API_ADDR/v1/jobs?filename=$2" >"$WORK/code-$1"
}
copy_k() {
  cp "$BODIES/$2" "$CPDST/$1-$2" || return 1
  if [ "$3" = 1 ]; then sync "$CPDST/$1-$2"; fi
}
hash_k() { openssl dgst -sha256 -r "$BODIES/$2" >/dev/null; }

# upload_many NAME N -> wall seconds for N concurrent uploads; fails unless all got 202.
upload_many() {
  local name="$1" n="$2" k s
  rm -f "$WORK"/code-*
  s=$(wall_of_many "$n" upload_k "$name") || exit 1
  for k in $(seq 1 "$n"); do
    [ "$(cat "$WORK/code-$k" 2>/dev/null)" = 202 ] || { cat "$WORK/resp-$k.json" >&2; die "concurrent upload $k failed"; }
  done
  echo "$s"
}

# measure KIND RUN: appends seconds to $WORK/KIND (and peak RSS to $WORK/KIND.rss for uploads).
measure() {
  local kind="$1" s
  settle
  case "$kind" in
    cp-big) s=$(wall_of_many 1 copy_k big.webm 0) ;;
    cpsync-big) s=$(wall_of_many 1 copy_k big.webm 1) ;;
    cp-conc) s=$(wall_of_many "$CONCURRENCY" copy_k small.webm 0) ;;
    cpsync-conc) s=$(wall_of_many "$CONCURRENCY" copy_k small.webm 1) ;;
    hash-big) s=$(wall_of_many 1 hash_k big.webm) ;;
    hash-conc) s=$(wall_of_many "$CONCURRENCY" hash_k small.webm) ;;
    up-big | up-conc)
      # A fresh API for every upload run, so that its VmHWM is this run's peak.
      start_api
      if [ "$kind" = up-big ]; then s=$(upload_one big.webm); else s=$(upload_many small.webm "$CONCURRENCY"); fi
      peak_rss_mb "$API_PID" >>"$WORK/$kind.rss"
      stop_api
      ;;
  esac
  [ -n "$s" ] || die "$kind: no measurement"
  log "  $kind: ${s} s"
  echo "$s" >>"$WORK/$kind"
}

for i in $(seq 1 "$RUNS"); do
  log "ingest run $i/$RUNS"
  # Alternate the order, so that neither side always runs on a warmer (or dirtier) machine.
  if [ $((i % 2)) -eq 1 ]; then order="cp-big cpsync-big hash-big up-big up-conc hash-conc cpsync-conc cp-conc"
  else order="up-big hash-big cpsync-big cp-big cp-conc cpsync-conc hash-conc up-conc"; fi
  for kind in $order; do measure "$kind"; done
done
settle

# --- status polling -------------------------------------------------------------------------------
insert_poll_jobs "$POLL_JOBS"
TOTAL_JOBS=$(psql_bench -c 'SELECT count(*) FROM jobs')
psql_bench -c "SELECT id FROM jobs ORDER BY random() LIMIT $POLL_IDS" >"$WORK/ids"

start_api
POLL_RSS_START=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$API_PID/status")
python3 scripts/bench/driver.py etags "$API_ADDR" "$WORK/ids" "$WORK/ids-etags" >/dev/null
read -r sample_id sample_etag < <(head -n 1 "$WORK/ids-etags")
code=$(curl -sS -o /dev/null -w '%{http_code}' "${AUTH[@]}" "http://$API_ADDR/v1/jobs/$sample_id")
[ "$code" = 200 ] || die "GET job answered $code"
code=$(curl -sS -o /dev/null -w '%{http_code}' "${AUTH[@]}" -H "If-None-Match: $sample_etag" "http://$API_ADDR/v1/jobs/$sample_id")
[ "$code" = 304 ] || die "GET job with If-None-Match answered $code, not 304"

log "status polling warm-up (3 s)"
wrk_run plain 3 >/dev/null
for i in $(seq 1 "$RUNS"); do
  if [ $((i % 2)) -eq 1 ]; then order="plain etag"; else order="etag plain"; fi
  for mode in $order; do
    log "polling run $i/$RUNS $mode (${POLL_SECONDS} s)"
    wrk_run "$mode" "$POLL_SECONDS" | tee -a "$WORK/poll-$mode" >&2
  done
done
POLL_RSS_END=$(peak_rss_mb "$API_PID")
stop_api
awk '$4 > 0 { bad = 1 } END { exit bad }' "$WORK/poll-plain" "$WORK/poll-etag" \
  || log "WARNING: some polling responses were errors (see the last column)"

# --- report ---------------------------------------------------------------------------------------
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / 1e6 / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; } # ratio of speeds = inverse ratio of times
report() {
  local big_total=$BIG_BYTES conc_total=$((SMALL_BYTES * CONCURRENCY))
  local ub cb sb hb uc cc sc hc
  ub=$(median "$WORK/up-big"); cb=$(median "$WORK/cp-big"); sb=$(median "$WORK/cpsync-big"); hb=$(median "$WORK/hash-big")
  uc=$(median "$WORK/up-conc"); cc=$(median "$WORK/cp-conc"); sc=$(median "$WORK/cpsync-conc"); hc=$(median "$WORK/hash-conc")
  echo "Machine: $(machine_line "$STORAGE")"
  echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(build_line)"
  echo "Load average (1/5/15 min) at start: $LOAD_START, at end: $(cut -d" " -f1-3 /proc/loadavg) (other work shares the machine)"
  [ -n "$BENCH_KEY" ] && echo "Every request authenticated with an API key (Authorization: Bearer), as the API requires;" \
    "rate limits and quotas raised out of the way (MEDIAQ_RATE_LIMIT_IP/KEY=$MEDIAQ_RATE_LIMIT_IP, MEDIAQ_QUOTA_ACTIVE_JOBS=$MEDIAQ_QUOTA_ACTIVE_JOBS)."
  echo "Command: bash scripts/bench-ingest.sh (RUNS=$RUNS); medians of $RUNS alternating runs; MB = 10^6 bytes"
  echo
  echo "| ingest | upload MB/s | cp MB/s | cp+fsync MB/s | SHA-256 alone MB/s | upload/cp | upload/(cp+fsync) | SHA-256 alone/cp | API peak RSS MiB (median, max) |"
  echo "|---|---|---|---|---|---|---|---|---|"
  echo "| 1 x ${BIG_MB} MB | $(mbps "$big_total" "$ub") | $(mbps "$big_total" "$cb") | $(mbps "$big_total" "$sb") | $(mbps "$big_total" "$hb") | $(ratio "$ub" "$cb") | $(ratio "$ub" "$sb") | $(ratio "$hb" "$cb") | $(median "$WORK/up-big.rss"), $(sort -g "$WORK/up-big.rss" | tail -n 1) |"
  echo "| ${CONCURRENCY} x ${SMALL_MB} MB concurrent | $(mbps "$conc_total" "$uc") | $(mbps "$conc_total" "$cc") | $(mbps "$conc_total" "$sc") | $(mbps "$conc_total" "$hc") | $(ratio "$uc" "$cc") | $(ratio "$uc" "$sc") | $(ratio "$hc" "$cc") | $(median "$WORK/up-conc.rss"), $(sort -g "$WORK/up-conc.rss" | tail -n 1) |"
  echo
  echo "Wall seconds per run (upload / cp / cp+fsync / SHA-256 alone):"
  echo "- 1 x ${BIG_MB} MB: $(paste -sd' ' "$WORK/up-big") / $(paste -sd' ' "$WORK/cp-big") / $(paste -sd' ' "$WORK/cpsync-big") / $(paste -sd' ' "$WORK/hash-big")"
  echo "- ${CONCURRENCY} x ${SMALL_MB} MB: $(paste -sd' ' "$WORK/up-conc") / $(paste -sd' ' "$WORK/cp-conc") / $(paste -sd' ' "$WORK/cpsync-conc") / $(paste -sd' ' "$WORK/hash-conc")"
  echo
  echo "Status polling: $TOTAL_JOBS jobs in the table, wrk -t2 -c$POLL_CONNECTIONS -d${POLL_SECONDS}s (keep-alive) over $POLL_IDS ids; API RSS $POLL_RSS_START MiB at start, peak $POLL_RSS_END MiB"
  echo
  echo "| GET /v1/jobs/{id} | requests/s | p50 ms | p99 ms | errors (all runs) |"
  echo "|---|---|---|---|---|"
  for mode in plain etag; do
    local label="200 (full body)"
    [ "$mode" = etag ] && label="304 (If-None-Match)"
    echo "| $label | $(median "$WORK/poll-$mode" 1 | awk '{ printf "%.0f", $1 }') | $(median "$WORK/poll-$mode" 2) | $(median "$WORK/poll-$mode" 3) | $(awk '{ s += $4 } END { print s + 0 }' "$WORK/poll-$mode") |"
  done
}
report | tee "$RESULTS/ingest-$(date -u +%Y%m%dT%H%M%SZ).md"
