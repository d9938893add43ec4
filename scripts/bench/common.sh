# Helpers shared by scripts/bench-ingest.sh and scripts/bench-pipeline.sh (sourced after lib.sh).

BIN="${CARGO_TARGET_DIR:-$MEDIAQ_ROOT/target}/release"
BENCH_PG_DIR="$MEDIAQ_ROOT/.mediaq/pg-bench"

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

# median FILE [COLUMN]: the median of a column of numbers.
median() {
  awk -v c="${2:-1}" '{ print $c }' "$1" | sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# API_PID and API_ADDR: starts a fresh mediaq-api on a free loopback port, waits until it is ready.
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
