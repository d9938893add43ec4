#!/usr/bin/env bash
# End-to-end half of scripts/bench-transcode.sh (issue 19, item 5): the same clip through the
# whole system (upload accepted -> `succeeded`) against the ffmpeg CLI and the child alone, with
# identical settings, runs alternating (the order rotates), medians.
#
#   bash scripts/bench/transcode-e2e.sh INPUT...      # RUNS (3), PRESET, CRF as bench-transcode.sh
#
# Per run:
#   cli    ffmpeg -i IN -c:v libx264 -preset P -crf C ... (as bench-transcode.sh), /usr/bin/time
#   child  target/release/mediaq-transcode run directly (its own Landlock + seccomp), /usr/bin/time
#   e2e    POST /v1/jobs (raw body) to a release API + worker (own PostgreSQL cluster, fsync on,
#          local storage, the worker's full sandbox); wall = jobs.finished_at - jobs.created_at
#          (upload accepted -> succeeded, server clocks, so the client's polling, one GET every
#          2 s with curl, adds nothing but the API's and the database's answer to it); CPU = the child's user+sys (wait4, job_attempts) + the worker's,
#          the API's and PostgreSQL's own CPU during the run (/proc, postmaster with its backends).
#          Also: pickup (started_at - created_at), the attempt (finished_at - started_at) and the
#          child's wall time inside the worker (job_attempts.wall_s).
# Each run records the 1-minute load average before it. Needs root (PostgreSQL as postgres, the
# worker's sandbox user). Own cluster (.mediaq/pg-bench) and scratch (.mediaq/bench-transcode-e2e),
# both removed at exit. BENCH_SKIP_BUILD=1: the binaries in target/release as they are.
source "$(dirname "$0")/../lib.sh"
cd "$MEDIAQ_ROOT"
source scripts/bench/common.sh
# BENCH_BIN=target/debug (with BENCH_SKIP_BUILD=1) measures other binaries than the release build.
BIN="${BENCH_BIN:-$BIN}"

RUNS="${RUNS:-3}"
PRESET="${PRESET:-veryfast}"
CRF="${CRF:-23}"
export MEDIAQ_X264_PRESET="$PRESET" MEDIAQ_X264_CRF="$CRF"
[ "$#" -gt 0 ] || die "usage: $0 INPUT.webm..."

ensure_packages "${BUILD_PACKAGES[@]}" ffmpeg curl python3 time
ensure_rust
bench_lock

WORKER_PID=""
stop_worker() {
  [ -n "${WORKER_PID:-}" ] || return 0
  kill -TERM "$WORKER_PID" 2>/dev/null || true
  wait "$WORKER_PID" 2>/dev/null || true
  WORKER_PID=""
}
bench_scratch transcode-e2e
STORAGE="$SCRATCH/storage"
mkdir -p "$STORAGE"
bench_build
bench_pg_fresh
bench_api_key
export MEDIAQ_STORAGE_DIR="$STORAGE"
start_api
: >"$WORK/worker.stdout"
"$BIN/mediaq-worker" >"$WORK/worker.stdout" 2>>"$WORK/worker.log" 9>&- &
WORKER_PID=$!
for _ in $(seq 1 200); do
  grep -q '^mediaq-worker ready' "$WORK/worker.stdout" && break
  kill -0 "$WORKER_PID" 2>/dev/null || { tail -n 20 "$WORK/worker.log" >&2; die "mediaq-worker exited"; }
  sleep 0.05
done
grep -q '^mediaq-worker ready' "$WORK/worker.stdout" || die "mediaq-worker not ready within 10 s"
POSTMASTER=$(head -n 1 "$BENCH_PG_DIR/pgdata/postmaster.pid")
TICK=$(getconf CLK_TCK)

# cpu_s PID: the process's own user+sys CPU seconds.
cpu_s() { awk -v t="$TICK" '{ sub(/^.*\) /, ""); print ($12 + $13) / t }' "/proc/$1/stat"; }
# pg_cpu_s: the postmaster's CPU, its reaped children's, and its live backends'.
pg_cpu_s() {
  local total
  total=$(awk -v t="$TICK" '{ sub(/^.*\) /, ""); print ($12 + $13 + $14 + $15) / t }' "/proc/$POSTMASTER/stat")
  for p in $(ps --ppid "$POSTMASTER" -o pid=); do
    [ -r "/proc/$p/stat" ] && total=$(awk -v a="$total" -v t="$TICK" '{ sub(/^.*\) /, ""); print a + ($12 + $13) / t }' "/proc/$p/stat")
  done
  echo "$total"
}
load1() { cut -d' ' -f1 /proc/loadavg; }

# timed TOOL INPUT: appends "wall cpu load" to $WORK/TOOL-INPUT
timed() {
  local tool="$1" input="$2" out="$WORK/out.mp4" t="$WORK/time" load
  rm -f "$out" "$WORK/poster.jpg"
  load=$(load1)
  if [ "$tool" = child ]; then
    /usr/bin/time -f '%e %U %S' -o "$t" "$BIN/mediaq-transcode" --input "$input" --output "$out" \
      --poster "$WORK/poster.jpg" --preset "$PRESET" --crf "$CRF" >/dev/null 9>&-
  else
    /usr/bin/time -f '%e %U %S' -o "$t" ffmpeg -nostdin -nostats -v error -y -i "$input" -c:v libx264 \
      -preset "$PRESET" -crf "$CRF" -pix_fmt yuv420p -c:a aac -b:a 128k -ar 48000 -ac 2 \
      -movflags +faststart "$out" 9>&-
  fi
  tail -n 1 "$t" | awk -v l="$load" '{ printf "%.3f %.3f %s\n", $1, $2 + $3, l }' >>"$WORK/$tool-$(basename "$input")"
}

# e2e INPUT: appends "wall cpu load pickup attempt child_wall child_cpu worker_cpu api_cpu pg_cpu"
e2e() {
  local input="$1" load w0 a0 p0 id status=""
  load=$(load1)
  w0=$(cpu_s "$WORKER_PID"); a0=$(cpu_s "$API_PID"); p0=$(pg_cpu_s)
  # The client stays light while the job runs: curl and sed, no interpreter. (A python3 started
  # for every poll, once a second, cost 0.1 s of CPU each here: 5-7 % of the 2 cores, which the
  # child then lacked. That was the "less parallelism inside the worker" of the first runs.)
  id=$(curl -fsS "${AUTH[@]}" -H 'Content-Type: video/webm' --data-binary "@$input" \
    "http://$API_ADDR/v1/jobs?filename=$(basename "$input")" | sed -n 's/.*"id":"\([0-9a-f-]\{36\}\)".*/\1/p')
  [ -n "$id" ] || die "upload failed"
  for _ in $(seq 1 300); do
    sleep 2
    status=$(curl -fsS "${AUTH[@]}" "http://$API_ADDR/v1/jobs/$id" | grep -o '"status":"[a-z]*"' | head -n 1 | cut -d'"' -f4)
    case "$status" in succeeded | failed | canceled) break ;; esac
  done
  [ "$status" = succeeded ] || die "job $id ended $status"
  local w a p
  w=$(cpu_s "$WORKER_PID"); a=$(cpu_s "$API_PID"); p=$(pg_cpu_s)
  psql_bench -F ' ' -c "
    SELECT extract(epoch FROM j.finished_at - j.created_at), extract(epoch FROM j.started_at - j.created_at),
           extract(epoch FROM j.finished_at - j.started_at), a.wall_s, a.user_cpu_s + a.system_cpu_s
    FROM jobs j JOIN job_attempts a ON a.job_id = j.id AND a.attempt = j.attempts WHERE j.id = '$id'" |
    awk -v l="$load" -v w="$(awk -v x="$w" -v y="$w0" 'BEGIN { print x - y }')" \
      -v a="$(awk -v x="$a" -v y="$a0" 'BEGIN { print x - y }')" -v p="$(awk -v x="$p" -v y="$p0" 'BEGIN { print x - y }')" \
      '{ printf "%.3f %.3f %s %.3f %.3f %.3f %.3f %.3f %.3f %.3f\n", $1, $5 + w + a + p, l, $2, $3, $4, $5, w, a, p }' \
      >>"$WORK/e2e-$(basename "$input")"
}

log "warm-up: one job and one child run per input (not counted)"
for input in "$@"; do
  e2e "$input"; rm -f "$WORK/e2e-$(basename "$input")"
  timed child "$input"; rm -f "$WORK/child-$(basename "$input")"
done
ORDERS=("cli child e2e" "e2e cli child" "child e2e cli")
for input in "$@"; do
  for i in $(seq 1 "$RUNS"); do
    for tool in ${ORDERS[$(((i - 1) % 3))]}; do
      log "run $i/$RUNS $tool $(basename "$input") (load $(load1))"
      sleep 1 # let the worker settle back to waiting
      if [ "$tool" = e2e ]; then e2e "$input"; else timed "$tool" "$input"; fi
    done
  done
done
stop_worker
stop_api

echo
echo "End to end (upload accepted -> succeeded) against the CLI and the child alone"
echo "Machine: $(machine_line "$STORAGE")"
echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(build_line); preset $PRESET, crf $CRF; median of $RUNS runs per tool, order rotating"
echo
echo "| input (30 s) | tool | wall s | CPU s | load (1 min) before each run |"
echo "|---|---|---|---|---|"
for input in "$@"; do
  name=$(basename "$input")
  for tool in cli child e2e; do
    f="$WORK/$tool-$name"
    echo "| $name | $tool | $(median "$f" 1) | $(median "$f" 2) | $(awk '{ printf "%s%s", (NR > 1 ? " " : ""), $3 }' "$f") |"
  done
done
echo
echo "| input | e2e / cli wall | e2e / cli CPU | child / cli wall | child in worker / child alone, wall | pickup ms | attempt - child in worker, ms | worker / API / PostgreSQL CPU s |"
echo "|---|---|---|---|---|---|---|---|"
for input in "$@"; do
  name=$(basename "$input")
  e="$WORK/e2e-$name" c="$WORK/cli-$name" d="$WORK/child-$name"
  awk -v ew="$(median "$e" 1)" -v cw="$(median "$c" 1)" -v ec="$(median "$e" 2)" -v cc="$(median "$c" 2)" \
    -v dw="$(median "$d" 1)" -v iw="$(median "$e" 6)" -v pk="$(median "$e" 4)" -v at="$(median "$e" 5)" \
    -v wc="$(median "$e" 8)" -v ac="$(median "$e" 9)" -v pc="$(median "$e" 10)" -v n="$name" \
    'BEGIN { printf "| %s | %.3f | %.3f | %.3f | %.3f | %.0f | %.0f | %.2f / %.2f / %.2f |\n",
             n, ew / cw, ec / cc, dw / cw, iw / dw, pk * 1000, (at - iw) * 1000, wc, ac, pc }'
done
echo
# The machine's speed drifts between runs (the same work's CPU seconds vary by 10 % and more), so
# the ratio of each round's runs (made within a minute of each other) is steadier than a ratio of
# medians taken over the whole session.
echo "Per round (the three runs of one round, next to each other): median of the round's ratios, and"
echo "below each the interval that holds the true median at 95 % confidence (order statistics)"
echo
echo "| input | e2e / cli wall | e2e / child wall | child / cli wall | e2e / cli CPU | rounds' e2e / cli wall |"
echo "|---|---|---|---|---|---|"
for input in "$@"; do
  name=$(basename "$input")
  paste -d' ' "$WORK/cli-$name" "$WORK/child-$name" "$WORK/e2e-$name" >"$WORK/rounds-$name"
  # columns: cli wall cpu load (1-3), child wall cpu load (4-6), e2e wall cpu load ... (7-16)
  awk '{ print $7 / $1, $7 / $4, $4 / $1, $8 / $2 }' "$WORK/rounds-$name" >"$WORK/ratios-$name"
  r="$WORK/ratios-$name"
  echo "| $name | $(median "$r" 1) | $(median "$r" 2) | $(median "$r" 3) | $(median "$r" 4) | $(awk '{ printf "%s%.3f", (NR > 1 ? " " : ""), $1 }' "$r") |"
  echo "| (95 %) | $(median_interval "$r" 1) | $(median_interval "$r" 2) | $(median_interval "$r" 3) | $(median_interval "$r" 4) | |"
done
echo
echo "Raw e2e runs (wall cpu load pickup attempt child_wall child_cpu worker_cpu api_cpu pg_cpu):"
for input in "$@"; do echo "$(basename "$input"):"; sed 's/^/    /' "$WORK/e2e-$(basename "$input")"; done
