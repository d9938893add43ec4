#!/usr/bin/env bash
# Checks docker/ on a machine without a Docker engine (see docs/DEPLOY.md, "What was checked"):
#   scripts/check-docker.sh [--compose FILE]   the compose file (Compose Specification schema and the
#                                              project's own rules), the seccomp profile, the Dockerfiles;
#                                              fast, run by tests/tests/deploy.rs
#   scripts/check-docker.sh --build            also runs each image's build and runtime steps on this
#                                              Debian 12 host (release build, slow; never in the suite)
# Uses Debian's python3 with python3-yaml and python3-jsonschema (installed when missing).
source "$(dirname "$0")/lib.sh"
cd "$MEDIAQ_ROOT"

build=0
check_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=1 ;;
    --compose) check_args=(--compose "${2:?--compose FILE}"); shift ;;
    *) die "usage: scripts/check-docker.sh [--compose FILE] [--build]" ;;
  esac
  shift
done

ensure_packages python3 python3-yaml python3-jsonschema
/usr/bin/python3 docker/check.py "${check_args[@]}"

if [ "$build" -eq 1 ]; then
  scratch="${MEDIAQ_DOCKER_CHECK_DIR:-$MEDIAQ_ROOT/.mediaq/docker-check}"
  rm -rf "$scratch"
  for image in api worker; do
    log "image $image: build steps (docker/build.sh $image) into $scratch/$image"
    nice -n 19 bash docker/build.sh "$image" "$scratch/$image"
    log "image $image: runtime steps (docker/runtime.sh $image --check)"
    bash docker/runtime.sh "$image" --check "$scratch/$image"
  done
  log "both images' build and runtime steps passed on this host"
fi
