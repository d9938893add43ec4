#!/usr/bin/env bash
# Builds the images' release binaries and installs them in PREFIX/bin:
#   docker/build.sh packages        only installs what compiling needs (the images' own layer, so
#                                   that a source change does not repeat it)
#   docker/build.sh all PREFIX      both images' binaries in one cargo run, so that their shared
#                                   dependencies compile once: the images' common builder stage
#   docker/build.sh api PREFIX      mediaq-api alone (no libav: it needs no libav headers)
#   docker/build.sh worker PREFIX   mediaq-worker, and from mediaq-engine: mediaq-transcode (libav headers,
#                                   clang for bindgen) and
#                                   mediaq-sandbox-probe (checks the sandbox where the worker runs:
#                                   docs/DEPLOY.md; scripts/check-containers.sh runs it in the container)
# The images' builder stage runs `packages` then `all` (docker/*.Dockerfile); `scripts/check-docker.sh
# --build` runs `api` and `worker` on a Debian 12 host. CARGO_TARGET_DIR is honoured.
source "$(dirname "$0")/../scripts/lib.sh"
cd "$MEDIAQ_ROOT"

API_BINS=(mediaq-api)
WORKER_BINS=(mediaq-worker mediaq-transcode mediaq-sandbox-probe)
what=${1:-}
prefix=${2:-}
case "$what" in
  packages) ensure_packages gcc libc6-dev "${COMPILE_PACKAGES[@]}"; exit 0 ;;
  api) packages=(mediaq-api); bins=("${API_BINS[@]}"); deps=(gcc libc6-dev ca-certificates) ;;
  worker) packages=(mediaq-worker mediaq-engine); bins=("${WORKER_BINS[@]}"); deps=(gcc libc6-dev "${COMPILE_PACKAGES[@]}") ;;
  all) packages=(mediaq-api mediaq-worker mediaq-engine); bins=("${API_BINS[@]}" "${WORKER_BINS[@]}")
    deps=(gcc libc6-dev "${COMPILE_PACKAGES[@]}") ;;
  *) die "usage: docker/build.sh packages | api|worker|all PREFIX" ;;
esac
[ -n "$prefix" ] || die "usage: docker/build.sh packages | api|worker|all PREFIX"

ensure_packages "${deps[@]}"
ensure_rust
args=()
for package in "${packages[@]}"; do args+=(-p "$package"); done
for bin in "${bins[@]}"; do args+=(--bin "$bin"); done
log "cargo build --release ${args[*]}"
cargo build --release --locked "${args[@]}"
target="${CARGO_TARGET_DIR:-$MEDIAQ_ROOT/target}"
install -d "$prefix/bin"
for bin in "${bins[@]}"; do
  install -m 0755 "$target/release/$bin" "$prefix/bin/$bin"
done
log "installed ${bins[*]} in $prefix/bin"
