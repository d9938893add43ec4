#!/usr/bin/env bash
# Runs mediaq locally: API + worker(s), local-disk storage, and (when DATABASE_URL is unset) a
# throwaway PostgreSQL cluster under .mediaq/pg-local that it provisions itself (under /var/tmp
# when the checkout is where the postgres user cannot go, e.g. /root). Ctrl-C stops all.
# MEDIAQ_BIN_DIR: run the binaries there instead of building them (release) here.
source "$(dirname "$0")/lib.sh"
cd "$MEDIAQ_ROOT"

ensure_packages "${BUILD_PACKAGES[@]}" python3
ensure_rust

if [ -z "${DATABASE_URL:-}" ]; then
  PG_DIR="$MEDIAQ_ROOT/.mediaq/pg-local"
  start_local_pg "$PG_DIR"
  STOP_PG=1
fi
export MEDIAQ_STORAGE_DIR="${MEDIAQ_STORAGE_DIR:-$MEDIAQ_ROOT/.mediaq/storage}"
export MEDIAQ_BIND="${MEDIAQ_BIND:-127.0.0.1:8080}"

if [ -n "${MEDIAQ_BIN_DIR:-}" ]; then
  BIN="$MEDIAQ_BIN_DIR"
else
  log "building (release)"
  cargo build --release --locked --bins
  BIN="${CARGO_TARGET_DIR:-$MEDIAQ_ROOT/target}/release"
fi
# As root, the worker runs each transcoder as MEDIAQ_SANDBOX_USER (nobody), which must reach the
# transcoder's binary and the job directories: outside the checkout when it cannot reach that.
if [ "$(id -u)" -eq 0 ] && [ -z "${MEDIAQ_TRANSCODE_BIN:-}" ]; then
  SANDBOX_DIR=$(outside_dir "$MEDIAQ_ROOT/.mediaq/sandbox" "${MEDIAQ_SANDBOX_USER:-nobody}")
  if [ "$SANDBOX_DIR" != "$MEDIAQ_ROOT/.mediaq/sandbox" ]; then
    install -d -m 0755 "$SANDBOX_DIR"
    install -m 0755 "$BIN/mediaq-transcode" "$SANDBOX_DIR/mediaq-transcode"
    export MEDIAQ_TRANSCODE_BIN="$SANDBOX_DIR/mediaq-transcode"
    export MEDIAQ_WORK_DIR="${MEDIAQ_WORK_DIR:-$SANDBOX_DIR/work}"
    log "the sandbox user cannot reach this checkout: transcoder and job directories in $SANDBOX_DIR"
  fi
fi

"$BIN/mediaq-api" migrate

# A local API key (admin, so the whole API can be tried), made once and kept beside the data.
KEY_FILE="$MEDIAQ_ROOT/.mediaq/local-api-key"
if [ ! -s "$KEY_FILE" ] || ! "$BIN/mediaq-api" keys list 2>/dev/null | grep -q "\"id\":\"$(cut -c4-19 "$KEY_FILE")\".*\"revoked_at\":null"; then
  mkdir -p "$(dirname "$KEY_FILE")"
  "$BIN/mediaq-api" keys create --name local --scopes jobs:write,jobs:read,admin --owner local | tail -n 1 > "$KEY_FILE"
  chmod 600 "$KEY_FILE"
fi
MEDIAQ_KEY=$(cat "$KEY_FILE")

pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${STOP_PG:-}" ]; then stop_local_pg "$PG_DIR"; fi
}
trap cleanup EXIT INT TERM

"$BIN/mediaq-api" serve & pids+=($!)
for i in $(seq 1 "${MEDIAQ_WORKERS:-1}"); do
  "$BIN/mediaq-worker" & pids+=($!)
done
log "mediaq is running on http://$MEDIAQ_BIND (storage: $MEDIAQ_STORAGE_DIR); Ctrl-C stops it"
log "API key (also in $KEY_FILE): $MEDIAQ_KEY"
log "upload page: http://$MEDIAQ_BIND/ (paste the API key there)"
log "try: curl -H \"Authorization: Bearer $MEDIAQ_KEY\" -F file=@clip.webm http://$MEDIAQ_BIND/v1/jobs"
wait -n "${pids[@]}"
