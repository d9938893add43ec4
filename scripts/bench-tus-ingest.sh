#!/usr/bin/env bash
# Benchmark: tus ingest (POST /v1/uploads, then PATCHes of 5 MiB) beside the classic upload
# (one raw-body POST /v1/jobs) of the same 200 MB body, alternating, RUNS rounds, medians.
# Target (issue "Live uploads"): tus >= 0.9 x the classic throughput.
#
#   bash scripts/bench-tus-ingest.sh                         # release build, RUNS=3
#   BENCH_BIN=$PWD/target/debug BENCH_SKIP_BUILD=1 bash scripts/bench-tus-ingest.sh
#
# Bodies: a real 1 s WebM padded with random bytes (the API sniffs only the first 4 KiB), split
# into 5 MiB parts up front. Classic: `curl -T` (streamed). tus: one Python client on one
# keep-alive connection (each part read into memory before its PATCH, as a browser slices a
# Blob). Times are wall clock from the first request to the last 2xx; local storage, fsync on
# (PostgreSQL too). No worker runs.
# Needs root (PostgreSQL as the postgres user). Not run in CI.
source "$(dirname "$0")/lib.sh"
cd "$MEDIAQ_ROOT"
source scripts/bench/common.sh
BIN="${BENCH_BIN:-$BIN}"

RUNS="${RUNS:-3}"
BIG_MB="${BIG_MB:-200}"
PART_BYTES=$((5 * 1024 * 1024))

ensure_packages "${BUILD_PACKAGES[@]}" ffmpeg curl python3 util-linux
ensure_rust
bench_lock
bench_scratch tus-ingest
STORAGE="$SCRATCH/storage"
mkdir -p "$STORAGE"
bench_build
bench_pg_fresh
bench_api_key
export MEDIAQ_STORAGE_DIR="$STORAGE"
export MEDIAQ_MAX_UPLOAD_BYTES="$(((BIG_MB + 10) * 1000000))"
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)

BODIES="$SCRATCH/bodies"
mkdir -p "$BODIES/parts"
ffmpeg -nostdin -v error -y -f lavfi -i testsrc2=size=320x240:rate=25 -t 1 -c:v libvpx \
  -deadline realtime -f webm "$BODIES/head.webm"
SIZE=$((BIG_MB * 1000000))
{ cat "$BODIES/head.webm"; head -c $((SIZE - $(stat -c %s "$BODIES/head.webm"))) /dev/urandom; } >"$BODIES/big.webm"
split -b "$PART_BYTES" -d -a 4 "$BODIES/big.webm" "$BODIES/parts/p"
sync -f "$STORAGE"

settle() {
  rm -rf "$STORAGE"/inputs/* "$STORAGE"/uploads/*
  sync -f "$STORAGE"
}

classic() {
  local code
  code=$(curl -sS -o "$WORK/resp.json" -w '%{http_code}' -H 'Expect:' "${AUTH[@]}" -H 'Content-Type: video/webm' \
    -X POST -T "$BODIES/big.webm" "http://$API_ADDR/v1/jobs?filename=big.webm")
  [ "$code" = 202 ] || { cat "$WORK/resp.json" >&2; die "classic upload answered $code"; }
}

# One client process and one keep-alive connection for the whole upload, as tus clients (and
# browsers) send it: a curl process per PATCH would add its own start-up to every 5 MiB.
tus() {
  python3 - "$API_ADDR" "$BENCH_KEY" "$SIZE" "$BODIES"/parts/p* <<'PY'
import http.client, os, sys, base64
addr, key, size, parts = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
host, port = addr.rsplit(":", 1)
# Bodies stream from the files in 256 KiB blocks, as curl streams the classic upload's (reading
# each 5 MiB part whole before sending it would serialise the client's copy with the server's).
conn = http.client.HTTPConnection(host, int(port), blocksize=256 * 1024)
auth = {"Authorization": f"Bearer {key}"} if key else {}
meta = "filename " + base64.b64encode(b"big.webm").decode()
conn.request("POST", "/v1/uploads", headers={**auth, "Tus-Resumable": "1.0.0", "Upload-Length": str(size), "Upload-Metadata": meta})
r = conn.getresponse(); r.read()
assert r.status == 201, r.status
location, offset = r.getheader("Location"), 0
for part in parts:
    with open(part, "rb") as f:
        conn.request("PATCH", location, body=f, headers={**auth, "Tus-Resumable": "1.0.0",
            "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset),
            "Content-Length": str(os.path.getsize(part))})
    r = conn.getresponse(); r.read()
    assert r.status == 204, (r.status, offset)
    offset = int(r.getheader("Upload-Offset"))
assert offset == size, offset
PY
}

timed() { # FUNCTION -> seconds
  local t0 t1
  t0=$(now_s)
  "$1"
  t1=$(now_s)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
}

# The API's debug event per stored PATCH says where its time goes (summarised below).
RUST_LOG="${RUST_LOG:-info,mediaq_api::ingest::resumable=debug}" start_api
for run in $(seq 1 "$RUNS"); do
  if [ $((run % 2)) = 1 ]; then order="classic tus"; else order="tus classic"; fi
  for kind in $order; do
    settle
    s=$(timed "$kind")
    echo "$s" >>"$WORK/$kind"
    log "run $run $kind: $s s ($(awk -v b="$SIZE" -v s="$s" 'BEGIN { printf "%.1f", b / s / 1e6 }') MB/s)"
  done
done
# The API's own count of the PATCHes' time, from the request's first byte to its response.
curl -fsS "http://$API_ADDR/metrics" | awk '/^mediaq_http_request_duration_seconds_(sum|count)\{/ && /method="PATCH"/ {
  if ($1 ~ /_sum/) s += $2; else n += $2 } END { if (n) printf "%.2f %d\n", s / n * 1000, n }' >"$WORK/patch-latency"
stop_api

c=$(median "$WORK/classic")
t=$(median "$WORK/tus")
{
  echo "tus ingest vs classic ($(build_line); $(machine_line 2>/dev/null || echo "$(nproc) cores"); load at start $LOAD_START, at end $(cut -d" " -f1-3 /proc/loadavg))"
  echo
  echo "| upload of ${BIG_MB} MB | median s (runs) | MB/s | vs classic |"
  echo "|---|---|---|---|"
  echo "| classic POST /v1/jobs | $c ($(paste -sd' ' "$WORK/classic")) | $(awk -v b="$SIZE" -v s="$c" 'BEGIN { printf "%.1f", b / s / 1e6 }') | 1.00 |"
  echo "| tus, 5 MiB PATCHes | $t ($(paste -sd' ' "$WORK/tus")) | $(awk -v b="$SIZE" -v s="$t" 'BEGIN { printf "%.1f", b / s / 1e6 }') | $(awk -v c="$c" -v t="$t" 'BEGIN { printf "%.2f", c / t }') |"
  if [ -s "$WORK/patch-latency" ]; then
    echo
    echo "The API's own latency per PATCH (request in -> response out, mean of $(cut -d' ' -f2 "$WORK/patch-latency")): $(cut -d' ' -f1 "$WORK/patch-latency") ms;" \
      "per PATCH at the client: $(awk -v t="$t" -v b="$SIZE" -v p="$PART_BYTES" 'BEGIN { printf "%.2f", t / ((b + p - 1) / p) * 1000 }') ms (the tus median / the PATCHes of one upload)."
  fi
  if grep -q 'segment stored' "$WORK/api.log"; then
    echo
    echo "Inside the API, per PATCH (medians over $(grep -c 'segment stored' "$WORK/api.log") PATCHes): bytes arrived and written" \
      "$(grep -o 'arrived_ms=[0-9.]*' "$WORK/api.log" | cut -d= -f2 | sort -g | awk '{ v[NR] = $1 } END { printf "%.2f", v[int((NR + 1) / 2)] }') ms," \
      "made durable (flush, fsync, rename, directory fsync) $(grep -o 'durable_ms=[0-9.]*' "$WORK/api.log" | cut -d= -f2 | sort -g | awk '{ v[NR] = $1 } END { printf "%.2f", v[int((NR + 1) / 2)] }') ms," \
      "recorded (one PostgreSQL transaction) $(grep -o 'recorded_ms=[0-9.]*' "$WORK/api.log" | cut -d= -f2 | sort -g | awk '{ v[NR] = $1 } END { printf "%.2f", v[int((NR + 1) / 2)] }') ms."
  fi
} | tee "$RESULTS/tus-ingest-$(date -u +%Y%m%dT%H%M%SZ).md"
