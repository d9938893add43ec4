# Stand-in images for a machine that reaches Debian's mirror, PyPI and crates.io but no container
# registry (sourced by scripts/check-containers.sh, after scripts/lib.sh). Each is tagged with the
# name docker/*.Dockerfile or docker/compose.yaml uses, so those files build and run unchanged:
#   docker.io/library/debian:12, :12-slim   debootstrap (minbase) from the machine's Debian mirror,
#                                            trusting the machine's extra CA certificates
#   docker.io/library/rust:<v>-bookworm      that base plus this host's Rust toolchain of version <v>
#   localhost/mediaq-standin-postgres:15    Debian's PostgreSQL 15 (MEDIAQ_POSTGRES_IMAGE)
#   localhost/mediaq-standin-s3:moto        moto's S3 server and an `mc` (MEDIAQ_MINIO_IMAGE, MEDIAQ_MC_IMAGE)
# Each is built only when missing (scripts/check-containers.sh --cold removes them first).

STANDIN_DIR="$MEDIAQ_ROOT/scripts/containers"
STANDIN_POSTGRES=localhost/mediaq-standin-postgres:15
STANDIN_S3=localhost/mediaq-standin-s3:moto

image_exists() { podman image exists "$1"; }

# The first Debian mirror in the machine's apt sources (deb822 or one-line format).
debian_mirror() {
  local uri
  uri=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$uri" ] || die "no Debian mirror in /etc/apt/sources.list*"
  echo "$uri"
}

standin_debian() {
  if image_exists docker.io/library/debian:12 && image_exists docker.io/library/debian:12-slim; then return 0; fi
  local rootfs mirror
  mirror=$(debian_mirror)
  rootfs=$(mktemp -d /var/tmp/mediaq-debian-rootfs.XXXXXX)
  log "stand-in debian:12: debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -n 20 "$rootfs.log" >&2; die "debootstrap failed"; }
  cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
SOURCES
  # HTTPS from inside the images (cargo's registry, PyPI) trusts what this machine trusts.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null
  fi
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" -c . | podman import --change 'CMD ["bash"]' - docker.io/library/debian:12 >/dev/null
  podman tag docker.io/library/debian:12 docker.io/library/debian:12-slim
  rm -rf "$rootfs" "$rootfs.log"
}

# The version in the Dockerfiles' `FROM rust:<v>-bookworm`.
rust_image() {
  local from
  from=$(awk '$1 == "FROM" && $2 ~ /^rust:/ { print $2; exit }' "$MEDIAQ_ROOT/docker/worker.Dockerfile")
  [ -n "$from" ] || die "docker/worker.Dockerfile has no rust builder stage"
  echo "docker.io/library/$from"
}

standin_rust() {
  local image version toolchain
  image=$(rust_image)
  image_exists "$image" && return 0
  version=${image##*rust:}; version=${version%-bookworm}
  ensure_rust
  toolchain=$(rustc --print sysroot)
  toolchain=$(readlink -f "$toolchain")
  rustc --version | grep -q "^rustc $version\b" \
    || die "$image: this host's rustc is $(rustc --version), not $version"
  log "stand-in $image: the Debian base plus $toolchain"
  podman build -q -f "$STANDIN_DIR/rust.Containerfile" --build-arg "TOOLCHAIN=$version-x86_64-unknown-linux-gnu" \
    -t "$image" "$toolchain" >/dev/null
}

standin_services() {
  if ! image_exists "$STANDIN_POSTGRES"; then
    log "stand-in $STANDIN_POSTGRES: Debian's PostgreSQL 15"
    podman build -q -t "$STANDIN_POSTGRES" "$STANDIN_DIR/postgres" >/dev/null
  fi
  if ! image_exists "$STANDIN_S3"; then
    log "stand-in $STANDIN_S3: moto $MOTO_VERSION"
    podman build -q --build-arg "MOTO_VERSION=$MOTO_VERSION" -t "$STANDIN_S3" "$STANDIN_DIR/s3" >/dev/null
  fi
}

standins_remove() {
  podman rmi -f docker.io/library/debian:12 docker.io/library/debian:12-slim "$(rust_image)" \
    "$STANDIN_POSTGRES" "$STANDIN_S3" >/dev/null 2>&1 || true
}
