#!/usr/bin/env bash
# The runtime side of the images (debian:12-slim), in two modes:
#   docker/runtime.sh api|worker --image
#       in the Dockerfile's final stage (as root): installs the image's runtime packages only,
#       creates the unprivileged user `mediaq` (uid/gid 10001) and its directories, installs
#       mediaq-healthcheck.
#   docker/runtime.sh api|worker --check PREFIX
#       on a Debian 12 host (scripts/check-docker.sh --build): checks that the binaries in
#       PREFIX/bin need no shared library beyond those packages, their dependencies and Debian's
#       required packages (what debian:12-slim holds), that the API links no libav, and runs them.
source "$(dirname "$0")/../scripts/lib.sh"

what=${1:-}
mode=${2:-}
case "$what" in
  api) packages=("${RUNTIME_API_PACKAGES[@]}"); bins=(mediaq-api) ;;
  worker) packages=("${RUNTIME_WORKER_PACKAGES[@]}"); bins=(mediaq-worker mediaq-transcode) ;;
  *) die "usage: docker/runtime.sh api|worker --image | --check PREFIX" ;;
esac

UID_GID=10001

image() {
  ensure_packages "${packages[@]}"
  apt-get clean
  rm -rf /var/lib/apt/lists/*
  groupadd --system --gid "$UID_GID" mediaq
  useradd --system --uid "$UID_GID" --gid "$UID_GID" --home-dir /var/lib/mediaq --no-create-home \
    --shell /usr/sbin/nologin mediaq
  # The storage root (a volume in docker/compose.yaml) and, for the worker, the job directories (a tmpfs).
  install -d -o "$UID_GID" -g "$UID_GID" -m 0750 /var/lib/mediaq
  # /work is sticky and world-writable, like /tmp: the container runtime (runc, under Docker and
  # podman) gives the tmpfs mounted here this directory's mode whatever compose's mode= says, and
  # not its owner (podman 4.3 also refuses tmpfs uid=); uid 10001 makes its 0700 job directories in it.
  if [ "$what" = worker ]; then install -d -m 1777 /work; fi
  install -m 0755 "$MEDIAQ_ROOT/docker/healthcheck.sh" /usr/local/bin/mediaq-healthcheck
  log "runtime image for $what: ${packages[*]}, user mediaq ($UID_GID)"
}

# The Debian package that owns a library path (usrmerge: dpkg may know it under /lib or /usr/lib).
owner_of() {
  local path="$1" real candidate
  real=$(readlink -f "$path")
  for candidate in "$path" "$real" "${path#/usr}" "${real#/usr}" "/usr$path" "/usr$real"; do
    dpkg-query -S "$candidate" 2>/dev/null | head -n 1 | cut -d: -f1 && return 0
  done
  return 1
}

check() {
  local prefix="$1" allowed bin lib path pkg libs failed=0
  ensure_packages "${packages[@]}"
  # What the image holds: the runtime packages and their dependencies, and Debian's required set.
  allowed=$( {
    apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
      --no-enhances "${packages[@]}" | grep -v '^ ' | grep -v '^<'
    dpkg-query -W -f '${Package} ${Priority}\n' | awk '$2 == "required" { print $1 }'
  } | sort -u)
  for bin in "${bins[@]}"; do
    [ -x "$prefix/bin/$bin" ] || { log "missing $prefix/bin/$bin"; failed=1; continue; }
    libs=$(ldd "$prefix/bin/$bin")
    if grep 'not found' <<<"$libs" >&2; then failed=1; fi
    while read -r lib path; do
      pkg=$(owner_of "$path") || { log "$bin: $lib ($path) belongs to no package"; failed=1; continue; }
      if ! grep -qx "$pkg" <<<"$allowed"; then
        log "$bin: $lib comes from $pkg, which the $what image does not install"
        failed=1
      fi
      if [ "$what" = api ] && [[ "$lib" =~ ^lib(av|sw|postproc) ]]; then
        log "$bin: the API image must not need libav, but links $lib"
        failed=1
      fi
    done < <(awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' <<<"$libs")
    "$prefix/bin/$bin" --version >/dev/null 2>&1 || [ "$bin" = mediaq-transcode ] \
      || { log "$bin --version failed"; failed=1; }
    log "$bin: $(awk '$2 == "=>" { print $1 }' <<<"$libs" | wc -l) shared libraries checked"
  done
  if [ "$what" = worker ]; then
    # Every libav runtime package listed is one the worker links (the sonames match Debian 12's).
    libs=$(ldd "$prefix/bin/mediaq-transcode")
    for lib in libavcodec.so.59 libavformat.so.59 libavfilter.so.8 libavutil.so.57 libswscale.so.6 \
      libswresample.so.4; do
      grep -q "^[[:space:]]*$lib " <<<"$libs" || { log "mediaq-transcode does not link $lib"; failed=1; }
    done
  fi
  [ "$failed" -eq 0 ] || die "the $what runtime check failed"
  log "the $what binaries need only what the $what image installs (${packages[*]})"
}

case "$mode" in
  --image) image ;;
  --check) check "${3:?usage: docker/runtime.sh api|worker --check PREFIX}" ;;
  *) die "usage: docker/runtime.sh api|worker --image | --check PREFIX" ;;
esac
