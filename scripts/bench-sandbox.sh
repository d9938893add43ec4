#!/usr/bin/env bash
# Benchmark: what the transcoder sandbox costs (start-up of a sandboxed child, and a whole
# transcode under the sandbox against the ffmpeg CLI).
#
#   bash scripts/bench-sandbox.sh                        # ~6 minutes on 2 cores
#   SPAWN_RUNS=300 RUNS=5 bash scripts/bench-sandbox.sh
#   SKIP_TRANSCODE=1 bash scripts/bench-sandbox.sh       # start-up part only (about a minute)
#   SKIP_SPAWN=1 INPUTS_ONLY=vp8-vorbis-1080p.webm TOOLS="sandboxed inner" RUNS=6 bash scripts/bench-sandbox.sh
#
# 1. Start-up: SPAWN_RUNS (100) rounds of five variants, each round in a rotating order, after 3
#    warm-up rounds; every run is posix_spawn -> wait4 from scripts/bench/spawn_timer.py (empty
#    environment, stdin/stdout /dev/null, own process group):
#      plain      mediaq-transcode --help                       exec + exit, no sandbox
#      tools      unshare / prlimit / setpriv as no-ops + --help   the 3 wrapper execs alone
#      outer      the worker-side layers + --help               new netns, rlimits, uid nobody, no_new_privs
#      inner      mediaq-transcode --self-test (worker's args)  Landlock + seccomp + no_new_privs in the child
#      full       the worker-side layers + --self-test          everything the worker's child gets
#    The worker applies the worker-side steps in-process between fork and exec
#    (worker/src/spawn.rs), so it does not pay the three extra execs: its cost is about
#    full - tools (reported as "worker-equivalent").
# 2. Transcode: the two 30 s inputs of scripts/bench-transcode.sh (generated once under
#    target/bench-fixtures, shared with it), RUNS (3) alternating runs each of
#      cli        ffmpeg -i in.webm -c:v libx264 -preset veryfast -crf 23 ... (as root, no sandbox)
#      sandboxed  mediaq-transcode with the worker's full command line, wrapped like "full" above,
#                 on a private copy of the input in a job directory owned by nobody (as the worker does)
#      inner      mediaq-transcode run directly, as in bench-transcode.sh: only the layers the child
#                 applies itself (Landlock, seccomp, no_new_privs), none of the worker-side ones;
#                 TOOLS="cli sandboxed" drops it
#    under /usr/bin/time -f '%e %U %S %M'; medians of wall and CPU, ratios sandboxed / cli.
#
# Needs root (uid change, network namespace). Scratch in .mediaq/bench-sandbox (removed at exit);
# results also saved under .mediaq/bench-results. Waits for .mediaq/bench.lock (shared with the
# other benchmarks, so that two never run at once). BENCH_SKIP_BUILD=1 uses the binaries in
# target/release as they are. Not run in CI.
source "$(dirname "$0")/lib.sh"
cd "$MEDIAQ_ROOT"

SPAWN_RUNS="${SPAWN_RUNS:-100}"
RUNS="${RUNS:-3}"
PRESET="${PRESET:-veryfast}"
CRF="${CRF:-23}"
TOOLS="${TOOLS:-cli sandboxed inner}"
SANDBOX_USER="${SANDBOX_USER:-nobody}"
SANDBOX_GROUP="${SANDBOX_GROUP:-$(id -gn "$SANDBOX_USER")}"
FIXTURES=target/bench-fixtures
BIN="${CARGO_TARGET_DIR:-$MEDIAQ_ROOT/target}/release"
SCRATCH="$MEDIAQ_ROOT/.mediaq/bench-sandbox"
WORK="$SCRATCH/work"
RESULTS="$MEDIAQ_ROOT/.mediaq/bench-results"

[ "$(id -u)" -eq 0 ] || die "run as root: the sandbox's uid change and network namespace need it"
ensure_packages "${BUILD_PACKAGES[@]}" ffmpeg python3 util-linux time
ensure_rust

# One benchmark at a time (same lock file as scripts/bench/common.sh), waiting a bounded time.
mkdir -p "$MEDIAQ_ROOT/.mediaq"
exec 9>"$MEDIAQ_ROOT/.mediaq/bench.lock"
if ! flock -n 9; then
  log "another benchmark holds .mediaq/bench.lock; waiting (at most ${BENCH_LOCK_WAIT:-1800} s)"
  flock -w "${BENCH_LOCK_WAIT:-1800}" 9 || die "benchmark lock still held after ${BENCH_LOCK_WAIT:-1800} s"
fi

cleanup() {
  trap - EXIT INT TERM
  rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM # (then the EXIT trap cleans up)
rm -rf "$SCRATCH"
mkdir -p "$WORK" "$RESULTS"
chmod 0755 "$SCRATCH" "$WORK"

if [ "${BENCH_SKIP_BUILD:-0}" = 1 ]; then
  log "BENCH_SKIP_BUILD=1: using the binaries in $BIN as they are"
else
  log "building (release)"
  cargo build --release --locked --bins >&2
fi
T="$BIN/mediaq-transcode"
[ -x "$T" ] || die "$T missing"

median() { # file column -> median
  awk -v c="$2" '{ print $c }' "$1" | sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
quantile() { # file column q -> nearest-rank quantile
  awk -v c="$2" '{ print $c }' "$1" | sort -g | awk -v q="$3" '{ v[NR] = $1 }
    END { i = int(q * NR + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR; print v[i] }'
}

# The worker's defaults (worker/src/attempt.rs child_spec, README configuration table).
MEMORY=$((4 << 30))
MAX_OUTPUT=$((4 << 30))
CPU_CEILING=$((60 + 20 * 7200))
WORKER_ARGS=(--preset "$PRESET" --crf "$CRF" --threads auto --max-width 4096 --max-height 4096
  --max-pixels 8294400 --max-duration 7200 --max-streams 8 --max-fps 240
  --max-output-bytes "$MAX_OUTPUT" --cpu-per-media-second 20)
# The worker-side steps, in the worker's order: network namespace, rlimits, uid/gid, no_new_privs.
OUTER=(/usr/bin/unshare --net
  /usr/bin/prlimit --as="$MEMORY" --cpu="$CPU_CEILING:$((CPU_CEILING + 5))"
  --fsize="$((MAX_OUTPUT + (1 << 20)))" --nofile=64 --core=0
  /usr/bin/setpriv --reuid="$SANDBOX_USER" --regid="$SANDBOX_GROUP" --clear-groups --no-new-privs)
# The same three programs doing (next to) nothing: what the extra execs cost.
NOOP_TOOLS=(/usr/bin/unshare /usr/bin/prlimit --core=unlimited /usr/bin/setpriv --reuid=root)

# A job directory as the worker makes one (worker/src/jobdir.rs): owned by the sandbox user, 0700.
job_dir() {
  local d
  d=$(mktemp -d "$WORK/job-XXXXXX")
  chown "$SANDBOX_USER:$SANDBOX_GROUP" "$d"
  chmod 0700 "$d"
  echo "$d"
}

# --- 1. start-up ----------------------------------------------------------------------------------
SELFTEST_DIR=$(job_dir)
SELFTEST=("$T" --self-test --input "$SELFTEST_DIR" --output "$SELFTEST_DIR/self-test.mp4" "${WORKER_ARGS[@]}")

log "checking the variants"
check_layers() { # name argv...: the self-test must report Landlock and seccomp
  local name="$1" out
  shift
  out=$(env -i "$@" </dev/null) || die "$name: exited with $?"
  echo "$out" | grep -q '"seccomp":true' || die "$name: seccomp not reported active: $out"
  echo "$out" | grep -Eq '"landlock":"(full|partial)"' || die "$name: Landlock not reported active: $out"
  echo "$out"
}
LAYERS_INNER=$(check_layers inner "${SELFTEST[@]}")
LAYERS_FULL=$(check_layers full "${OUTER[@]}" "${SELFTEST[@]}")
# What the worker-side wrapper really gives the child (uid, netns, no_new_privs, limits).
OUTER_CHECK=$(env -i "${OUTER[@]}" /bin/sh -c 'printf "uid=%s netns=%s %s as=%s nofile=%s\n" "$(id -u)" \
  "$(readlink /proc/self/ns/net)" "$(grep NoNewPrivs /proc/self/status | tr -d "\t")" \
  "$(ulimit -v)" "$(ulimit -n)"')
HOST_NETNS=$(readlink /proc/self/ns/net)
log "inner: $LAYERS_INNER"
log "full:  $LAYERS_FULL"
log "outer: $OUTER_CHECK (host $HOST_NETNS)"
case "$OUTER_CHECK" in
  "uid=$(id -u "$SANDBOX_USER") "*"NoNewPrivs:1"*) ;;
  *) die "the worker-side wrapper did not take effect: $OUTER_CHECK" ;;
esac
[[ "$OUTER_CHECK" != *"$HOST_NETNS"* ]] || die "the wrapper did not get its own network namespace"

if [ "${SKIP_SPAWN:-0}" != 1 ]; then
  log "start-up: $SPAWN_RUNS rounds of 5 variants (+3 warm-up rounds)"
  python3 scripts/bench/spawn_timer.py "$SPAWN_RUNS" 3 "$WORK/spawn" \
    @plain "$T" --help \
    @tools "${NOOP_TOOLS[@]}" "$T" --help \
    @outer "${OUTER[@]}" "$T" --help \
    @inner "${SELFTEST[@]}" \
    @full "${OUTER[@]}" "${SELFTEST[@]}"
  for v in plain tools outer inner full; do
    awk -v v="$v" '$1 == v { print $3, $4 }' "$WORK/spawn" >"$WORK/spawn-$v"
  done
fi
sm() { median "$WORK/spawn-$1" 1; }

# --- 2. transcode under the sandbox ---------------------------------------------------------------
if [ "${SKIP_TRANSCODE:-0}" != 1 ]; then
  mkdir -p "$FIXTURES"
  # Same fixtures as scripts/bench-transcode.sh (same names and content; whichever runs first makes them).
  gen() { # name size video-codec-args...
    local name="$1" size="$2"
    shift 2
    [ -s "$FIXTURES/$name" ] && return
    log "generating $FIXTURES/$name"
    ffmpeg -nostdin -v error -y \
      -f lavfi -i "testsrc2=s=$size:r=30:d=30,noise=alls=6:allf=t" \
      -f lavfi -i "sine=f=440:d=30:sample_rate=48000" -ac 2 \
      "$@" "$FIXTURES/$name.tmp.webm"
    mv "$FIXTURES/$name.tmp.webm" "$FIXTURES/$name"
  }
  gen vp9-opus-720p.webm 1280x720 -c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 2M \
    -c:a libopus -b:a 96k
  gen vp8-vorbis-1080p.webm 1920x1080 -c:v libvpx -deadline realtime -cpu-used 8 -b:v 4M \
    -c:a libvorbis -ar 44100 -b:a 128k

  # run TOOL INPUT: appends "wall cpu rss_mb out_mb sys" to $WORK/TOOL-INPUT
  run() {
    local tool="$1" input="$2" t="$WORK/time" dir out
    dir=$(job_dir)
    out="$dir/output.mp4"
    case "$tool" in
      cli)
        /usr/bin/time -f '%e %U %S %M' -o "$t" \
          ffmpeg -nostdin -nostats -v error -y -i "$input" -c:v libx264 -preset "$PRESET" \
          -crf "$CRF" -pix_fmt yuv420p -c:a aac -b:a 128k -ar 48000 -ac 2 \
          -movflags +faststart "$out" 2>"$WORK/stderr" ;;
      sandboxed)
        # The worker's private read-only copy of the input (made before the clock starts).
        cp "$input" "$dir/input.webm"
        chown "$SANDBOX_USER:$SANDBOX_GROUP" "$dir/input.webm"
        chmod 0400 "$dir/input.webm"
        /usr/bin/time -f '%e %U %S %M' -o "$t" \
          env -i "${OUTER[@]}" "$T" --input "$dir/input.webm" --output "$out" "${WORKER_ARGS[@]}" \
          </dev/null >"$WORK/events" 2>"$WORK/stderr" ;;
      inner)
        /usr/bin/time -f '%e %U %S %M' -o "$t" \
          "$T" --input "$input" --output "$out" --preset "$PRESET" --crf "$CRF" \
          </dev/null >"$WORK/events" 2>"$WORK/stderr" ;;
    esac || { tail -n 20 "$WORK/stderr" >&2; die "$tool failed on $input"; }
    local size
    size=$(stat -c %s "$out")
    tail -n 1 "$t" | awk -v s="$size" \
      '{ printf "%.2f %.2f %.1f %.2f %.2f\n", $1, $2 + $3, $4 / 1024, s / 1048576, $3 }' \
      >>"$WORK/$tool-$(basename "$input")"
    rm -rf "$dir"
  }

  INPUTS=()
  for name in ${INPUTS_ONLY:-vp9-opus-720p.webm vp8-vorbis-1080p.webm}; do INPUTS+=("$FIXTURES/$name"); done
  read -r -a TOOL_LIST <<<"$TOOLS"
  for input in "${INPUTS[@]}"; do
    for i in $(seq 1 "$RUNS"); do
      # Rotate which tool goes first.
      k=$(((i - 1) % ${#TOOL_LIST[@]}))
      order=("${TOOL_LIST[@]:k}" "${TOOL_LIST[@]:0:k}")
      for tool in "${order[@]}"; do
        log "run $i/$RUNS $tool $(basename "$input")"
        run "$tool" "$input"
      done
    done
  done
fi

# --- report ---------------------------------------------------------------------------------------
report() {
  local cpu ram
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
  ram=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  local build="commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  git diff --quiet HEAD -- api shared worker migrations 2>/dev/null || build="$build + uncommitted changes"
  [ "${BENCH_SKIP_BUILD:-0}" = 1 ] && build="$build; prebuilt binaries from $(date -u -r "$T" '+%H:%M UTC')"
  echo "Machine: $(nproc) cores ($cpu), $ram RAM, $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); $build; $(ffmpeg -version | head -n 1 | cut -d' ' -f1-3)"
  local opts="SPAWN_RUNS=$SPAWN_RUNS RUNS=$RUNS PRESET=$PRESET CRF=$CRF TOOLS=\"$TOOLS\""
  [ "${SKIP_SPAWN:-0}" = 1 ] && opts="$opts SKIP_SPAWN=1"
  [ "${SKIP_TRANSCODE:-0}" = 1 ] && opts="$opts SKIP_TRANSCODE=1"
  [ -n "${INPUTS_ONLY:-}" ] && opts="$opts INPUTS_ONLY=\"$INPUTS_ONLY\""
  echo "Command: bash scripts/bench-sandbox.sh ($opts)"
  echo "Layers reported by the child: $LAYERS_FULL; worker-side wrapper: $OUTER_CHECK"
  [ "${SKIP_SPAWN:-0}" = 1 ] || report_spawn
  [ "${SKIP_TRANSCODE:-0}" = 1 ] || report_transcode
}
report_spawn() {
  echo
  echo "Start-up, $SPAWN_RUNS rotating rounds (posix_spawn -> wait4):"
  echo
  echo "| variant | layers | median ms | p10 ms | p90 ms | CPU ms (median) |"
  echo "|---|---|---|---|---|---|"
  local v desc
  for v in plain tools outer inner full; do
    case $v in
      plain) desc="(i) \`mediaq-transcode --help\`: exec + exit, none" ;;
      tools) desc="\`unshare\`, \`prlimit\`, \`setpriv\` as no-ops + \`--help\`: the 3 extra execs" ;;
      outer) desc="worker-side: netns, rlimits, uid $SANDBOX_USER, no_new_privs (via the 3 tools) + \`--help\`" ;;
      inner) desc="(ii) \`--self-test\`: Landlock + seccomp + no_new_privs in the child" ;;
      full) desc="(iii) worker-side (3 tools) + \`--self-test\`: every layer" ;;
    esac
    printf '| %s | %s | %.1f | %.1f | %.1f | %.1f |\n' "$v" "$desc" "$(sm $v)" "$(quantile "$WORK/spawn-$v" 1 0.1)" \
      "$(quantile "$WORK/spawn-$v" 1 0.9)" "$(median "$WORK/spawn-$v" 2)"
  done
  echo
  # Per-round paired differences (the two variants ran next to each other in each round).
  d() {
    local m w25 w75 c c25 c75
    read -r m w25 w75 c c25 c75 < <(python3 scripts/bench/spawn_timer.py pairs "$WORK/spawn" "$1" "$2")
    echo "$m | $w25 .. $w75 | $c | $c25 .. $c75"
  }
  echo "Differences, per round then median ($SPAWN_RUNS pairs), with the interquartile range:"
  echo
  echo "| difference | wall ms | wall IQR | CPU ms | CPU IQR |"
  echo "|---|---|---|---|---|"
  echo "| in-child layers: inner - plain | $(d inner plain) |"
  echo "| worker-side layers: outer - tools | $(d outer tools) |"
  echo "| the 3 tools' execs: tools - plain | $(d tools plain) |"
  echo "| everything, as measured: full - plain | $(d full plain) |"
  echo "| **worker-equivalent** (no extra execs): full - tools | $(d full tools) |"
}
report_transcode() {
  echo
  echo "Transcode, median of $RUNS rotating runs, preset $PRESET, crf $CRF:"
  echo
  echo "| input (30 s) | tool | wall s | CPU s (user+sys) | of which sys s | peak RSS MB | output MB |"
  echo "|---|---|---|---|---|---|---|"
  local input name tool a b
  for input in "${INPUTS[@]}"; do
    name=$(basename "$input")
    for tool in "${TOOL_LIST[@]}"; do
      f="$WORK/$tool-$name"
      echo "| $name | $tool | $(median "$f" 1) | $(median "$f" 2) | $(median "$f" 5) | $(median "$f" 3) | $(median "$f" 4) |"
    done
  done
  echo
  echo "| input (30 s) | ratio | wall | CPU | RSS difference MB |"
  echo "|---|---|---|---|---|"
  for input in "${INPUTS[@]}"; do
    name=$(basename "$input")
    for pair in "sandboxed cli" "inner cli" "sandboxed inner"; do
      read -r a b <<<"$pair"
      [ -s "$WORK/$a-$name" ] && [ -s "$WORK/$b-$name" ] || continue
      awk -v aw="$(median "$WORK/$a-$name" 1)" -v bw="$(median "$WORK/$b-$name" 1)" \
        -v ac="$(median "$WORK/$a-$name" 2)" -v bc="$(median "$WORK/$b-$name" 2)" \
        -v ar="$(median "$WORK/$a-$name" 3)" -v br="$(median "$WORK/$b-$name" 3)" -v n="$name" -v p="$a / $b" \
        'BEGIN { printf "| %s | %s | %.3f | %.3f | %+.1f |\n", n, p, aw / bw, ac / bc, ar - br }'
    done
  done
  echo
  echo "Raw runs [wall CPU sys RSS], in run order:"
  echo
  for input in "${INPUTS[@]}"; do
    name=$(basename "$input")
    for tool in "${TOOL_LIST[@]}"; do
      echo "- $name $tool: $(awk '{ printf "%s[%s %s %s %s]", (NR > 1 ? " " : ""), $1, $2, $5, $3 }' "$WORK/$tool-$name")"
    done
  done
}
report | tee "$RESULTS/sandbox-$(date -u +%Y%m%dT%H%M%SZ).md"
