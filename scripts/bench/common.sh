# Helpers shared by scripts/bench-ingest.sh and scripts/bench-pipeline.sh (sourced after lib.sh).

BIN="${CARGO_TARGET_DIR:-$MEDIAQ_ROOT/target}/release"
BENCH_PG_DIR="$MEDIAQ_ROOT/.mediaq/pg-bench"
RESULTS="$MEDIAQ_ROOT/.mediaq/bench-results"

# bench_scratch NAME: SCRATCH (.mediaq/bench-NAME, wiped now and at exit) with WORK inside it, and
# RESULTS. At exit, or on INT/TERM, the API, the worker (when the script defines stop_worker)
# and the benchmark's cluster are stopped.
bench_scratch() {
  SCRATCH="$MEDIAQ_ROOT/.mediaq/bench-$1"
  WORK="$SCRATCH/work"
  API_PID=""
  trap bench_cleanup EXIT INT TERM
  rm -rf "$SCRATCH"
  mkdir -p "$WORK" "$RESULTS"
}

bench_cleanup() {
  trap - EXIT INT TERM
  if declare -F stop_worker >/dev/null; then stop_worker; fi
  stop_api
  stop_local_pg "$BENCH_PG_DIR"
  rm -rf "$SCRATCH"
}

# Only one benchmark at a time: they share the CPU (and the disk). Waits a bounded time for the
# lock (BENCH_LOCK_WAIT seconds, default 1800). Children get `9>&-` so that a leftover process can
# never keep holding it.
bench_lock() {
  mkdir -p "$MEDIAQ_ROOT/.mediaq"
  exec 9>"$MEDIAQ_ROOT/.mediaq/bench.lock"
  if ! flock -n 9; then
    log "another benchmark holds .mediaq/bench.lock; waiting (at most ${BENCH_LOCK_WAIT:-1800} s)"
    flock -w "${BENCH_LOCK_WAIT:-1800}" 9 || die "benchmark lock still held after ${BENCH_LOCK_WAIT:-1800} s"
  fi
}

# BENCH_SKIP_BUILD=1 measures the binaries already in target/release (e.g. while the checkout is
# mid-edit and does not compile); the report then says so.
bench_build() {
  if [ "${BENCH_SKIP_BUILD:-0}" = 1 ]; then
    for b in mediaq-api mediaq-worker mediaq-transcode; do [ -x "$BIN/$b" ] || die "$BIN/$b missing"; done
    log "BENCH_SKIP_BUILD=1: using the binaries in $BIN as they are"
    return 0
  fi
  log "building (release)"
  cargo build --release --locked --bins
}

# What was measured: commit, local changes, and binaries not built by this run.
build_line() {
  local line
  line="commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  git diff --quiet HEAD -- api shared worker migrations 2>/dev/null || line="$line + uncommitted changes"
  [ "${BENCH_SKIP_BUILD:-0}" = 1 ] && line="$line; prebuilt binaries from $(date -u -r "$BIN/mediaq-api" '+%H:%M UTC')"
  echo "$line"
}

# A fresh, migrated database on a dedicated cluster (fsync on, as in production).
bench_pg_fresh() {
  stop_local_pg "$BENCH_PG_DIR"
  rm -rf "$BENCH_PG_DIR"
  MEDIAQ_PG_FSYNC=on start_local_pg "$BENCH_PG_DIR" 9>&-
  "$BIN/mediaq-api" migrate 9>&- 2>>"$WORK/migrate.log" || { cat "$WORK/migrate.log" >&2; die "migration failed"; }
}

# Rate limits and per-key quotas exist to stop abuse; a benchmark measures the machinery behind
# them, so they are raised far out of the way (the limiter still runs on every request).
export MEDIAQ_RATE_LIMIT_IP="${MEDIAQ_RATE_LIMIT_IP:-1000000}"
export MEDIAQ_RATE_LIMIT_KEY="${MEDIAQ_RATE_LIMIT_KEY:-1000000}"
export MEDIAQ_QUOTA_ACTIVE_JOBS="${MEDIAQ_QUOTA_ACTIVE_JOBS:-1000000}"
export MEDIAQ_QUOTA_DAILY_BYTES="${MEDIAQ_QUOTA_DAILY_BYTES:-1000GiB}"
# Concurrent uploads all come from one key: its per-key share of the upload slots is raised too.
export MEDIAQ_MAX_UPLOADS_PER_KEY="${MEDIAQ_MAX_UPLOADS_PER_KEY:-1000000}"

# BENCH_KEY and AUTH (curl arguments): when the API requires keys (`mediaq-api keys` exists), a
# fresh jobs:write,jobs:read key for the owner "bench"; both empty otherwise.
BENCH_OWNER=bench
bench_api_key() {
  BENCH_KEY="" AUTH=()
  if "$BIN/mediaq-api" --help 2>/dev/null | grep -qE '^ +keys'; then
    BENCH_KEY=$("$BIN/mediaq-api" keys create --name "$BENCH_OWNER" --scopes jobs:write,jobs:read 9>&- 2>>"$WORK/keys.log" | tail -n 1)
    [[ "$BENCH_KEY" == mq_* ]] || { cat "$WORK/keys.log" >&2; die "could not create an API key"; }
    AUTH=(-H "Authorization: Bearer $BENCH_KEY")
    log "API key created for owner $BENCH_OWNER"
  fi
  export BENCH_KEY
}

psql_bench() { psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -qtAX "$@"; }

now_s() { date +%s.%N; }

# median, median_interval
source "$MEDIAQ_ROOT/scripts/bench/stats.sh"

# API_PID and API_ADDR: starts a fresh mediaq-api on a free loopback port, waits until it is ready.
start_api() {
  local out="$WORK/api.stdout" i
  : >"$out"
  MEDIAQ_BIND=127.0.0.1:0 "${API_BIN:-$BIN/mediaq-api}" serve >"$out" 2>>"$WORK/api.log" 9>&- &
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
    curl -fsS -o /dev/null "${AUTH[@]}" "http://$API_ADDR/readyz" && return 0
    sleep 0.1
  done
  die "mediaq-api not ready within 10 s"
}

stop_api() {
  [ -n "${API_PID:-}" ] || return 0
  kill -TERM "$API_PID" 2>/dev/null || true
  wait "$API_PID" 2>/dev/null || true
  API_PID=""
}

# Peak resident set of a live process, in MiB.
peak_rss_mb() { awk '/^VmHWM:/ { printf "%.1f\n", $2 / 1024 }' "/proc/$1/status"; }

machine_line() {
  local cpu ram disk
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
  ram=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  disk=$(df -T "$1" | awk 'NR == 2 { print $1 " (" $2 ")" }')
  local dev rota=""
  dev=$(basename "$(df "$1" | awk 'NR == 2 { print $1 }')")
  [ -r "/sys/block/$dev/queue/rotational" ] && rota=" (queue/rotational=$(cat "/sys/block/$dev/queue/rotational"))"
  echo "$(nproc) cores ($cpu), $ram RAM, storage on $disk$rota, $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
}

# insert_poll_jobs N: N finished and unfinished jobs (owned by the benchmark key's owner), analyzed.
insert_poll_jobs() {
  local POLL_JOBS="$1"
  log "inserting $POLL_JOBS jobs"
  # Jobs belong to the benchmark key's owner when the schema has owners.
  owner_col="" owner_val=""
  if [ -n "$BENCH_KEY" ] && [ "$(psql_bench -c "SELECT count(*) FROM information_schema.columns
      WHERE table_name = 'jobs' AND column_name = 'owner'")" = 1 ]; then
    owner_col="owner, " owner_val="'$BENCH_OWNER', "
  fi
  psql_bench <<SQL
  INSERT INTO jobs ($owner_col id, status, progress, attempts, error_code, error_message,
                    input_filename, input_size, input_sha256, input_content_type, input_key,
                    output_key, output_size, output_sha256, output_duration_s, output_width,
                    output_height, output_video_codec, output_audio_codec,
                    created_at, started_at, finished_at, updated_at)
  SELECT $owner_val id, st,
         CASE st WHEN 'succeeded' THEN 1 WHEN 'processing' THEN 0.5 ELSE 0 END,
         CASE st WHEN 'queued' THEN 0 ELSE 1 END,
         CASE st WHEN 'failed' THEN 'invalid_media' END,
         CASE st WHEN 'failed' THEN 'the file is not a decodable WebM video' END,
         'recording-' || i || '.webm', 1000000 + i, encode(sha256(i::text::bytea), 'hex'),
         'video/webm', 'inputs/' || id || '.webm',
         CASE st WHEN 'succeeded' THEN 'outputs/' || id || '-a1.mp4' END,
         CASE st WHEN 'succeeded' THEN 800000 + i END,
         CASE st WHEN 'succeeded' THEN encode(sha256(('out' || i)::bytea), 'hex') END,
         CASE st WHEN 'succeeded' THEN 30.0 END,
         CASE st WHEN 'succeeded' THEN 1280 END,
         CASE st WHEN 'succeeded' THEN 720 END,
         CASE st WHEN 'succeeded' THEN 'h264' END,
         CASE st WHEN 'succeeded' THEN 'aac' END,
         t,
         CASE WHEN st <> 'queued' THEN t + interval '1 second' END,
         CASE WHEN st IN ('succeeded', 'failed') THEN t + interval '40 seconds' END,
         t + interval '40 seconds'
  FROM (SELECT i, gen_random_uuid() AS id,
               CASE WHEN i % 10 = 0 THEN 'queued' WHEN i % 10 = 1 THEN 'processing'
                    WHEN i % 20 = 2 THEN 'failed' ELSE 'succeeded' END AS st,
               now() - (($POLL_JOBS - i) * interval '10 seconds') AS t
        FROM generate_series(1, $POLL_JOBS) AS i) AS s;
  VACUUM ANALYZE jobs;
SQL
}

# wrk_run MODE SECONDS -> appends "req/s p50_ms p99_ms errors" to $WORK/poll-MODE
wrk_run() {
  local mode="$1" secs="$2" out="$WORK/wrk.out" etag=0
  [ "$mode" = etag ] && etag=1
  BENCH_IDS="$WORK/ids-etags" BENCH_ETAG=$etag BENCH_KEY="$BENCH_KEY" timeout $((secs + 30)) \
    wrk -t2 -c"$POLL_CONNECTIONS" -d"${secs}s" --latency -s scripts/bench/poll.lua "http://$API_ADDR" >"$out"
  awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec:/ { rps = $2 }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    /Non-2xx or 3xx responses:/ { bad += $NF }
    /Socket errors:/ { bad += 1 }
    END { printf "%s %.3f %.3f %d\n", rps, p50, p99, bad }' "$out"
}
