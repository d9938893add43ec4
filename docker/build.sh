#!/usr/bin/env bash
# Builds one image's release binaries and installs them in PREFIX/bin:
#   docker/build.sh api PREFIX      mediaq-api (no libav: its builder needs no libav headers)
#   docker/build.sh worker PREFIX   mediaq-worker and mediaq-transcode (libav headers, clang for bindgen)
# The images' builder stage runs it (docker/*.Dockerfile); `scripts/check-docker.sh --build` runs
# the same steps on a Debian 12 host. CARGO_TARGET_DIR is honoured.
source "$(dirname "$0")/../scripts/lib.sh"
cd "$MEDIAQ_ROOT"

what=${1:-}
prefix=${2:-}
[ -n "$prefix" ] || die "usage: docker/build.sh api|worker PREFIX"
case "$what" in
  api) package=mediaq-api; bins=(mediaq-api); packages=(gcc libc6-dev ca-certificates) ;;
  worker) package=mediaq-worker; bins=(mediaq-worker mediaq-transcode); packages=(gcc libc6-dev "${COMPILE_PACKAGES[@]}") ;;
  *) die "usage: docker/build.sh api|worker PREFIX" ;;
esac

ensure_packages "${packages[@]}"
ensure_rust
args=()
for bin in "${bins[@]}"; do args+=(--bin "$bin"); done
log "cargo build --release -p $package ${args[*]}"
cargo build --release --locked -p "$package" "${args[@]}"
target="${CARGO_TARGET_DIR:-$MEDIAQ_ROOT/target}"
install -d "$prefix/bin"
for bin in "${bins[@]}"; do
  install -m 0755 "$target/release/$bin" "$prefix/bin/$bin"
done
log "installed ${bins[*]} in $prefix/bin"
