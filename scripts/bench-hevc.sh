#!/usr/bin/env bash
# Benchmark (issue 31, item 5): a phone's 4K HEVC clip through mediaq-transcode against the ffmpeg
# CLI with identical settings (libx264 PRESET/CRF, AAC 128k 48 kHz stereo, +faststart).
#
#   scripts/bench-hevc.sh                      # 60 s 3840x2160 30 fps HEVC + AAC MOV, 3 alternating runs
#   DURATION=10 RUNS=1 scripts/bench-hevc.sh   # a short look (the machine is shared)
#
# The input (generated once, cached under target/bench-fixtures) is what a phone keeps: HEVC
# (libx265, yuv420p) + AAC-LC 48 kHz stereo in QuickTime MOV, the index at the end, with a
# "held upright" display matrix written into the video track. mediaq converts the video and
# copies the AAC (it qualifies); the CLI command converts both, so the audio part of the CPU
# differs slightly (AAC encoding of 60 s is well under 1 % of the 4K work).
# Prints wall, user+sys CPU, peak RSS and output size (medians), and mediaq/CLI ratios.
set -euo pipefail

cd "$(dirname "$0")/.."
source scripts/lib.sh
RUNS="${RUNS:-3}"
PRESET="${PRESET:-veryfast}"
CRF="${CRF:-23}"
DURATION="${DURATION:-60}"
FIXTURES=target/bench-fixtures
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ensure_packages ffmpeg time python3

mkdir -p "$FIXTURES"
INPUT="$FIXTURES/hevc-4k-${DURATION}s.mov"
if [ ! -s "$INPUT" ]; then
    echo "generating $INPUT (libx265 at 4K takes a while)" >&2
    ffmpeg -nostdin -v error -y \
        -f lavfi -i "testsrc2=s=3840x2160:r=30:d=$DURATION" \
        -f lavfi -i "sine=f=440:d=$DURATION:sample_rate=48000" -ac 2 \
        -c:v libx265 -preset ultrafast -x265-params log-level=error -b:v 20M -tag:v hvc1 \
        -c:a aac -b:a 128k -f mov "$INPUT.tmp"
    # The phone's display matrix ([0 1; -1 0] in the first tkhd; ffmpeg 5.1 cannot write one).
    python3 - "$INPUT.tmp" <<'PY'
import struct, sys
path = sys.argv[1]
data = bytearray(open(path, 'rb').read())
at = data.find(b'tkhd')
data[at + 44:at + 80] = struct.pack('>9i', 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
open(path, 'wb').write(data)
PY
    mv "$INPUT.tmp" "$INPUT"
fi

# BENCH_SKIP_BUILD=1 keeps the binary as it is; BENCH_BIN=target/debug measures another build (the
# work is libavcodec's and libx264's, Debian's optimised builds either way).
[ "${BENCH_SKIP_BUILD:-0}" = 1 ] || cargo build --release --locked --bins >&2
BIN="$PWD/${BENCH_BIN:-target/release}/mediaq-transcode"

run() { # TOOL: appends "wall cpu rss_mb out_mb" to $WORK/TOOL
    local tool="$1" out="$WORK/out.mp4" t="$WORK/time"
    rm -f "$out"
    if [ "$tool" = mediaq ]; then
        /usr/bin/time -f '%e %U %S %M' -o "$t" \
            "$BIN" --input "$INPUT" --output "$out" --preset "$PRESET" --crf "$CRF" >/dev/null
    else
        /usr/bin/time -f '%e %U %S %M' -o "$t" \
            ffmpeg -nostdin -nostats -v error -y -i "$INPUT" -c:v libx264 -preset "$PRESET" -crf "$CRF" \
            -pix_fmt yuv420p -c:a aac -b:a 128k -ar 48000 -ac 2 -movflags +faststart "$out"
    fi
    tail -n 1 "$t" | awk -v s="$(stat -c %s "$out")" \
        '{ printf "%.2f %.2f %.1f %.2f\n", $1, $2 + $3, $4 / 1024, s / 1048576 }' >>"$WORK/$tool"
}

source scripts/bench/stats.sh # median
for i in $(seq 1 "$RUNS"); do
    if [ $((i % 2)) -eq 1 ]; then order="mediaq cli"; else order="cli mediaq"; fi
    for tool in $order; do
        echo "run $i/$RUNS $tool" >&2
        run "$tool"
    done
done

echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), load $(cut -d' ' -f1 /proc/loadavg)"
echo "binary $BIN; ffmpeg $(ffmpeg -version | head -n 1 | cut -d' ' -f3); $DURATION s 3840x2160 30 fps HEVC + AAC MOV;" \
    "preset $PRESET, crf $CRF; median of $RUNS alternating runs"
echo
echo "| tool | wall s | CPU s (user+sys) | peak RSS MB | output MB |"
echo "|---|---|---|---|---|"
for tool in cli mediaq; do
    echo "| $tool | $(median "$WORK/$tool" 1) | $(median "$WORK/$tool" 2) | $(median "$WORK/$tool" 3) | $(median "$WORK/$tool" 4) |"
done
awk -v mw="$(median "$WORK/mediaq" 1)" -v cw="$(median "$WORK/cli" 1)" -v mc="$(median "$WORK/mediaq" 2)" \
    -v cc="$(median "$WORK/cli" 2)" 'BEGIN { printf "\nmediaq / CLI: wall %.3f, CPU %.3f\n", mw / cw, mc / cc }'
