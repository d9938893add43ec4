#!/usr/bin/env bash
# Benchmark: mediaq-transcode against the ffmpeg CLI reference command with identical settings.
#
#   scripts/bench-transcode.sh            # 3 alternating runs per tool and input, preset veryfast
#   RUNS=5 PRESET=ultrafast scripts/bench-transcode.sh
#   E2E=0 scripts/bench-transcode.sh       # child alone only (no PostgreSQL, API, worker)
#   THREADS=1 E2E=0 scripts/bench-transcode.sh   # one codec thread each (`--threads 1`; the CLI's
#                                         # `-threads 1` on the decoders and the encoders): the
#                                         # work itself, without the threads' scheduling
#
# Inputs (generated once, cached under target/bench-fixtures):
#   vp9-opus-720p.webm    30 s 1280x720 VP9 + Opus 48 kHz stereo
#   vp8-vorbis-1080p.webm 30 s 1920x1080 VP8 + Vorbis 44.1 kHz stereo
#   vp8-opus-720p.webm    30 s 1280x720 VP8 + Opus 48 kHz stereo (Chrome's default recording)
#   h264-opus-720p.webm   30 s 1280x720 H.264 (constrained baseline) + Opus in Matroska, the shape
#                         of Chrome's video/x-matroska;codecs=avc1 recordings: mediaq copies the
#                         video (remux) where the CLI command transcodes it; target CPU <= 0.2 x,
#                         and the script checks the copied packets' SHA-256 against the input's.
# Measures wall seconds, user+sys CPU seconds and peak RSS with /usr/bin/time, prints a markdown
# table of medians and the ratios mediaq/CLI. Then (unless E2E=0) the end-to-end half,
# scripts/bench/transcode-e2e.sh: the two 720p clips through a release API + worker (upload
# accepted -> succeeded) beside the CLI and the child alone, alternating (needs root and
# PostgreSQL, see that script). Not run in CI.
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS="${RUNS:-3}"
PRESET="${PRESET:-veryfast}"
CRF="${CRF:-23}"
THREADS="${THREADS:-auto}"
FIXTURES=target/bench-fixtures
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

if [ ! -x /usr/bin/time ]; then
    echo "installing GNU time" >&2
    if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq time >/dev/null; else sudo apt-get install -y -qq time >/dev/null; fi
fi

mkdir -p "$FIXTURES"
# Test pattern with light temporal noise (so the encoder works roughly as on camera footage).
gen() { # name size video-codec-args... -- audio-codec-args...
    local name="$1" size="$2"
    shift 2
    [ -s "$FIXTURES/$name" ] && return
    echo "generating $FIXTURES/$name" >&2
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
gen vp8-opus-720p.webm 1280x720 -c:v libvpx -deadline realtime -cpu-used 8 -b:v 2M \
    -c:a libopus -b:a 96k
gen h264-opus-720p.webm 1280x720 -c:v libx264 -profile:v baseline -preset veryfast -b:v 2M \
    -pix_fmt yuv420p -c:a libopus -b:a 96k -f matroska

# The workspace's release build (the same features as every other binary: `-p` alone would
# rebuild the dependencies with other features). BENCH_SKIP_BUILD=1 keeps target/release as it is.
[ "${BENCH_SKIP_BUILD:-0}" = 1 ] || cargo build --release --locked --bins >&2
BIN="$PWD/target/release/mediaq-transcode"

# run TOOL INPUT: appends "wall cpu rss_mb out_mb" to $WORK/TOOL-INPUT
run() {
    local tool="$1" input="$2" out="$WORK/out.mp4" t="$WORK/time"
    rm -f "$out" "$WORK/poster.jpg"
    if [ "$tool" = mediaq ]; then
        /usr/bin/time -f '%e %U %S %M' -o "$t" \
            "$BIN" --input "$input" --output "$out" --poster "$WORK/poster.jpg" --preset "$PRESET" --crf "$CRF" --threads "$THREADS" >/dev/null
    else
        /usr/bin/time -f '%e %U %S %M' -o "$t" \
            ffmpeg -nostdin -nostats -v error -y -threads "$THREADS" -i "$input" -c:v libx264 -preset "$PRESET" \
            -crf "$CRF" -pix_fmt yuv420p -c:a aac -b:a 128k -ar 48000 -ac 2 -threads "$THREADS" \
            -movflags +faststart "$out"
    fi
    local size
    size=$(stat -c %s "$out")
    if [ "$tool" = mediaq ] && [ "$(basename "$input")" = h264-opus-720p.webm ]; then
        hashes() { ffprobe -v error -select_streams v:0 -show_entries packet=data_hash -show_data_hash sha256 -of csv=p=0 "$1" | sha256sum; }
        if [ "$(hashes "$input")" = "$(hashes "$out")" ]; then echo same >"$WORK/remux-packets"; else echo DIFFERENT >"$WORK/remux-packets"; fi
    fi
    tail -n 1 "$t" | awk -v s="$size" \
        '{ printf "%.2f %.2f %.1f %.2f\n", $1, $2 + $3, $4 / 1024, s / 1048576 }' \
        >>"$WORK/$tool-$(basename "$input")"
}

source scripts/bench/stats.sh # median, median_interval

INPUTS=("$FIXTURES/vp9-opus-720p.webm" "$FIXTURES/vp8-opus-720p.webm" "$FIXTURES/vp8-vorbis-1080p.webm" "$FIXTURES/h264-opus-720p.webm")
for input in "${INPUTS[@]}"; do
    for i in $(seq 1 "$RUNS"); do
        # Alternate which tool goes first.
        if [ $((i % 2)) -eq 1 ]; then order="mediaq cli"; else order="cli mediaq"; fi
        for tool in $order; do
            echo "run $i/$RUNS $tool $(basename "$input")" >&2
            run "$tool" "$input"
        done
    done
done

echo
echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -n 1)," \
    "$(free -g | awk '/^Mem:/ { print $2 }') GB RAM, $(uname -sr)"
echo "ffmpeg: $(ffmpeg -version | head -n 1 | cut -d' ' -f3); preset $PRESET, crf $CRF, threads $THREADS;" \
    "median of $RUNS alternating runs"
echo
echo "| input (30 s) | tool | wall s | CPU s (user+sys) | peak RSS MB | output MB |"
echo "|---|---|---|---|---|---|"
for input in "${INPUTS[@]}"; do
    name=$(basename "$input")
    for tool in cli mediaq; do
        f="$WORK/$tool-$name"
        echo "| $name | $tool | $(median "$f" 1) | $(median "$f" 2) | $(median "$f" 3) | $(median "$f" 4) |"
    done
done
echo
echo "| input (30 s) | wall ratio | CPU ratio | RSS difference MB |"
echo "|---|---|---|---|"
for input in "${INPUTS[@]}"; do
    name=$(basename "$input")
    m="$WORK/mediaq-$name" c="$WORK/cli-$name"
    awk -v mw="$(median "$m" 1)" -v cw="$(median "$c" 1)" -v mc="$(median "$m" 2)" \
        -v cc="$(median "$c" 2)" -v mr="$(median "$m" 3)" -v cr="$(median "$c" 3)" -v n="$name" \
        'BEGIN { printf "| %s | %.3f | %.3f | %+.1f |\n", n, mw / cw, mc / cc, mr - cr }'
done
echo
# Each pair of runs (one round: the two tools next to each other) gives a ratio; their median is
# steadier than the ratio of medians when the machine's speed drifts during the session.
echo "Per round: median of each round's mediaq/cli ratio, with the interval that holds the true"
echo "median at 95 % confidence (order statistics; n/a below 6 rounds), and the rounds' wall ratios"
echo
echo "| input (30 s) | wall ratio | 95 % interval | CPU ratio | 95 % interval | rounds' wall ratios |"
echo "|---|---|---|---|---|---|"
for input in "${INPUTS[@]}"; do
    name=$(basename "$input")
    r="$WORK/ratios-$name"
    paste -d' ' "$WORK/mediaq-$name" "$WORK/cli-$name" | awk '{ print $1 / $5, $2 / $6 }' >"$r"
    echo "| $name | $(median "$r" 1) | $(median_interval "$r" 1) | $(median "$r" 2) | $(median_interval "$r" 2) | $(awk '{ printf "%s%.3f", (NR > 1 ? " " : ""), $1 }' "$r") |"
done
echo
echo "h264-opus-720p.webm: mediaq remuxes the video (CPU ratio target <= 0.2 against the CLI's full" \
    "transcode); its video packets are $(cat "$WORK/remux-packets" 2>/dev/null || echo unchecked) as the input's (per-packet SHA-256)."

if [ "${E2E:-1}" != 0 ]; then
    echo
    RUNS="$RUNS" PRESET="$PRESET" CRF="$CRF" BENCH_SKIP_BUILD="${BENCH_SKIP_BUILD:-0}" \
        bash scripts/bench/transcode-e2e.sh "$PWD/$FIXTURES/vp9-opus-720p.webm" "$PWD/$FIXTURES/vp8-opus-720p.webm"
fi
