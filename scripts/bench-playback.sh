#!/usr/bin/env bash
# Benchmark: playing a large MP4 through its signed link in Chromium (issue #27, item 2): first
# frame after play(), and the frame after seeking to the middle, both in the page's own clock.
#
#   bash scripts/bench-playback.sh                 # 200 MB MP4, 5 rounds, a few minutes
#   SIZE_MB=50 ROUNDS=9 bash scripts/bench-playback.sh
#
# The MP4 is a real job's output: a 1280x720 30 fps H.264 (constrained baseline, as Chrome
# records) + Opus recording in Matroska, made with the ffmpeg CLI at the bitrate that gives
# SIZE_MB, uploaded to the API and converted by the worker (its H.264 is kept: `remuxed`), then
# played from `links.play.output` by tests/browser/bench-play.mjs, one fresh browser context
# (empty cache) per round, over loopback. Goal: both under 0.5 s.
#
# One API and one worker (release build). Needs root (packages, PostgreSQL as the postgres user).
# Own cluster (.mediaq/pg-bench, wiped at start) and scratch dir (.mediaq/bench-playback, removed
# at exit). BENCH_SKIP_BUILD=1 measures target/release as it is. Not run in CI.
source "$(dirname "$0")/lib.sh"
cd "$MEDIAQ_ROOT"
source scripts/bench/common.sh

SIZE_MB="${SIZE_MB:-200}"
ROUNDS="${ROUNDS:-5}"
SECONDS_LONG="${SECONDS_LONG:-120}"
export MEDIAQ_MAX_UPLOAD_BYTES="${MEDIAQ_MAX_UPLOAD_BYTES:-2GiB}"
export MEDIAQ_MAX_OUTPUT_BYTES="${MEDIAQ_MAX_OUTPUT_BYTES:-4GiB}"

ensure_packages "${BUILD_PACKAGES[@]}" ffmpeg curl python3 util-linux chromium
ensure_node
ensure_browser_modules
ensure_rust
bench_lock

WORKER_PID=""
stop_worker() {
  [ -n "${WORKER_PID:-}" ] || return 0
  kill -TERM "$WORKER_PID" 2>/dev/null || true
  wait "$WORKER_PID" 2>/dev/null || true
  WORKER_PID=""
}
bench_scratch playback
STORAGE="$SCRATCH/storage"
mkdir -p "$STORAGE"
export MEDIAQ_STORAGE_DIR="$STORAGE"
bench_build
bench_pg_fresh
bench_api_key
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)

# --- the recording --------------------------------------------------------------------------------
CLIP="$WORK/recording.mkv"
KBPS=$(( SIZE_MB * 8 * 1024 * 1024 / SECONDS_LONG / 1000 - 96 ))
log "making a ${SECONDS_LONG} s 1280x720 H.264 recording at ${KBPS} kbit/s (about $SIZE_MB MB)"
ffmpeg -nostdin -v error -y \
  -f lavfi -i "testsrc2=size=1280x720:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
  -t "$SECONDS_LONG" -ac 2 -c:v libx264 -profile:v baseline -preset ultrafast -pix_fmt yuv420p \
  -b:v "${KBPS}k" -maxrate "${KBPS}k" -bufsize "$((KBPS * 2))k" -g 60 -c:a libopus -b:a 96k -f matroska "$CLIP"

# --- services -------------------------------------------------------------------------------------
start_api
: >"$WORK/worker.stdout"
"$BIN/mediaq-worker" >"$WORK/worker.stdout" 2>>"$WORK/worker.log" 9>&- &
WORKER_PID=$!
for _ in $(seq 1 200); do
  grep -q '^mediaq-worker ready' "$WORK/worker.stdout" && break
  kill -0 "$WORKER_PID" 2>/dev/null || { tail -n 20 "$WORK/worker.log" >&2; die "mediaq-worker exited"; }
  sleep 0.05
done

log "uploading and converting"
ID=$(curl -fsS "${AUTH[@]}" -H 'Content-Type: video/x-matroska' --data-binary @"$CLIP" \
  "http://$API_ADDR/v1/jobs?filename=recording.mkv" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
JOB=""
for _ in $(seq 1 600); do
  JOB=$(curl -fsS "${AUTH[@]}" "http://$API_ADDR/v1/jobs/$ID")
  case "$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["status"])' "$JOB")" in
    succeeded) break ;;
    failed | canceled | expired) die "the job did not succeed: $JOB" ;;
  esac
  sleep 0.5
done
read -r OUT_BYTES VIDEO_PATH PLAY < <(python3 -c 'import json, sys
j = json.loads(sys.argv[1])
print(j["output"]["size_bytes"], j["output"]["video_path"], j["links"]["play"]["output"])' "$JOB")
log "job $ID: $OUT_BYTES bytes ($VIDEO_PATH); playing $PLAY"

# --- playback -------------------------------------------------------------------------------------
MEDIAQ_PAGE_URL="http://$API_ADDR/" MEDIAQ_PLAY_URL="http://$API_ADDR$PLAY" MEDIAQ_ROUNDS="$ROUNDS" \
  node tests/browser/bench-play.mjs 9>&- >"$WORK/rounds.jsonl"
cat "$WORK/rounds.jsonl" >&2
col() { python3 -c 'import json, sys
for line in open(sys.argv[1]): print(round(json.loads(line)[sys.argv[2]]))' "$WORK/rounds.jsonl" "$1" >"$WORK/$1"; }
col first_frame_ms
col seek_frame_ms
col bytes_received
stop_worker
stop_api

{
  echo "Machine: $(machine_line "$STORAGE")"
  echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(build_line)"
  echo "Load average (1/5/15 min) at start: $LOAD_START, at end: $(cut -d" " -f1-3 /proc/loadavg) (other work shares the machine)"
  echo "MP4: $OUT_BYTES bytes, ${SECONDS_LONG} s 1280x720 H.264 ($VIDEO_PATH) + AAC, played from its signed link over loopback"
  echo "Chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{ print $2 }'), headless, fresh context per round; $ROUNDS rounds"
  echo "play() -> first frame: median $(median "$WORK/first_frame_ms" 1) ms (all: $(paste -sd' ' "$WORK/first_frame_ms"))"
  echo "seek to the middle -> frame: median $(median "$WORK/seek_frame_ms" 1) ms (all: $(paste -sd' ' "$WORK/seek_frame_ms"))"
  echo "bytes received per round (of $OUT_BYTES): $(paste -sd' ' "$WORK/bytes_received")"
} | tee "$RESULTS/playback-$(date -u +%Y%m%d-%H%M%S).txt"
