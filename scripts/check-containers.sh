#!/usr/bin/env bash
# Builds the images from docker/ with a container engine (podman) and runs docker/compose.yaml
# with podman-compose, three sandboxed workers, then checks the running stack end to end
# (scripts/containers/e2e.py; docs/DEPLOY.md, "What was checked"). As root on Debian 12; installs
# what it needs. No registry is used: the base images are stand-ins built from Debian's mirror
# (scripts/containers/standins.sh), swapped in through compose.yaml's own image variables.
#   scripts/check-containers.sh           reuses stand-in images and the build's cargo cache
#   scripts/check-containers.sh --cold    removes the images, the stand-ins and the build cache first
#   scripts/check-containers.sh --keep    leaves the stack running (project mediaq-check)
source "$(dirname "$0")/lib.sh"
cd "$MEDIAQ_ROOT"

cold=0
keep=0
for arg in "$@"; do
  case "$arg" in
    --cold) cold=1 ;;
    --keep) keep=1 ;;
    *) die "usage: scripts/check-containers.sh [--cold] [--keep]" ;;
  esac
done

check_start=$(date +%s)
ensure_packages "${CONTAINER_PACKAGES[@]}"
ensure_podman_compose
# This machine's engine settings (runc; ulimits it can grant), without touching /etc.
export CONTAINERS_CONF="$MEDIAQ_ROOT/scripts/containers/containers.conf"
source scripts/containers/standins.sh

PROJECT=mediaq-check
COMPOSE=(podman-compose -p "$PROJECT" -f docker/compose.yaml)
export MEDIAQ_POSTGRES_IMAGE="$STANDIN_POSTGRES" MEDIAQ_MINIO_IMAGE="$STANDIN_S3" MEDIAQ_MC_IMAGE="$STANDIN_S3"
# compose.yaml has no default secrets and refuses to start without them: this run's are random.
secret() { python3 -c 'import secrets; print(secrets.token_hex(24))'; }
POSTGRES_PASSWORD=$(secret) MINIO_ROOT_PASSWORD=$(secret) MEDIAQ_S3_SECRET_KEY=$(secret) MEDIAQ_METRICS_TOKEN=$(secret)
export POSTGRES_PASSWORD MINIO_ROOT_PASSWORD MEDIAQ_S3_SECRET_KEY MEDIAQ_METRICS_TOKEN
export MINIO_ROOT_USER=mediaq-root MEDIAQ_S3_ACCESS_KEY=mediaq-app
# Short, so that the scale-in check waits 3 s for its hand-back rather than compose's 30 s. The
# interrupted attempt cannot finish within it at any speed: it converts a live upload whose rest
# the check sends only after the hand-back (scripts/containers/e2e.py, check_scale_in).
export MEDIAQ_SHUTDOWN_GRACE=3s
# The scale-in check gives each of the three workers one live upload of the same key: one live
# slot per worker (so they spread), a key limit above three, and an idle gap longer than the
# check's pause before it sends the rest (so no attempt is parked meanwhile).
export MEDIAQ_WORKER_LIVE_SLOTS=1 MEDIAQ_LIVE_PER_KEY=10 MEDIAQ_LIVE_IDLE_GAP=180s
MEDIAQ_API_PORT=$(free_port)
export MEDIAQ_API_PORT
scratch=$(mktemp -d)

# Everything of the project but the images: podman-compose's `down` knows one container per
# service, not the --scale replicas, so the rest goes by the project's label.
down() {
  local label="label=io.podman.compose.project=$PROJECT" ids
  ids=$(podman ps -aq --filter "$label")
  [ -z "$ids" ] || timeout 120 podman rm -f -t 10 $ids >/dev/null 2>&1 || true
  timeout 120 "${COMPOSE[@]}" down -v -t 10 >/dev/null 2>&1 || true
  podman pod rm -f "pod_$PROJECT" >/dev/null 2>&1 || true
  ids=$(podman volume ls -q --filter "$label")
  [ -z "$ids" ] || podman volume rm -f $ids >/dev/null 2>&1 || true
  ids=$(podman network ls -q --filter "$label")
  [ -z "$ids" ] || podman network rm -f $ids >/dev/null 2>&1 || true
}
left_over() {
  local label="label=io.podman.compose.project=$PROJECT"
  { podman ps -aq --filter "$label"; podman volume ls -q --filter "$label"; podman network ls -q --filter "$label"
    podman pod ls -q --filter "name=pod_$PROJECT"; } | wc -l
}
cleanup() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    log "container logs (last lines of each):"
    for c in $(podman ps -a --format '{{.Names}}' --filter "label=io.podman.compose.project=$PROJECT"); do
      echo "--- $c" >&2; podman logs --tail 15 "$c" >&2 2>&1 || true
    done
  fi
  rm -rf "$scratch"
  if [ "$keep" -eq 1 ]; then log "stack left running: ${COMPOSE[*]} ps"; return; fi
  down
  if [ "$(left_over)" -ne 0 ]; then
    log "error: containers, volumes, networks or a pod of $PROJECT are left after cleaning up"
    [ "$status" -ne 0 ] || exit 1
  fi
}
trap cleanup EXIT

down
if [ "$cold" -eq 1 ]; then
  log "cold: removing the images, the stand-ins and the build cache"
  podman rmi -f mediaq-api:local mediaq-worker:local >/dev/null 2>&1 || true
  standins_remove
  podman image prune -f >/dev/null
  rm -rf /var/tmp/buildah-cache
fi

t=$(date +%s)
standin_debian
standin_rust
standin_services
standins_s=$(( $(date +%s) - t ))

# As a Docker user builds them (docker/*.Dockerfile, context the repository root); the api image
# first, so the worker's build reuses the cargo cache mount for the dependencies they share.
declare -A build_s size_mb
for image in api worker; do
  t=$(date +%s)
  log "podman build -f docker/$image.Dockerfile -t mediaq-$image:local ."
  podman build --layers -f "docker/$image.Dockerfile" -t "mediaq-$image:local" . >"$scratch/build-$image.log" 2>&1 \
    || { tail -n 40 "$scratch/build-$image.log" >&2; die "building the $image image failed"; }
  build_s[$image]=$(( $(date +%s) - t ))
  size_mb[$image]=$(( $(podman image inspect --format '{{.Size}}' "mediaq-$image:local") / 1000000 ))
  log "mediaq-$image:local: built in ${build_s[$image]} s, ${size_mb[$image]} MB"
done

# Clips for the jobs: a short one, and a longer one: killed mid-transcode, and sent in two halves as
# the live uploads of the scale-in check.
ffmpeg -v error -f lavfi -i testsrc=duration=2:size=320x240:rate=25 -f lavfi -i sine=duration=2 \
  -c:v libvpx -deadline realtime -cpu-used 8 -b:v 300k -c:a libopus "$scratch/short.webm"
ffmpeg -v error -f lavfi -i testsrc2=duration=40:size=640x360:rate=25 -f lavfi -i sine=duration=40 \
  -c:v libvpx -deadline realtime -cpu-used 8 -b:v 800k -c:a libopus "$scratch/long.webm"

# Compose's order, driven by the check: podman 4.3 cannot honour compose.yaml's depends_on here.
# - Podman runs healthchecks from systemd timers (none on these machines), and podman-compose waits
#   for `service_healthy` only with podman 4.6 or later: so the stateful services come up first and
#   the check runs their own healthchecks (`podman healthcheck run`, what the timers would do).
# - podman-compose turns depends_on into `podman create --requires`, and podman 4.3 then refuses to
#   start the API or a worker once its one-shot dependencies have exited ("generating dependency
#   graph ... not found in input list"); it would also start them again with every restart. So the
#   one-shots run next, the check waits for them to exit 0, and the long-running services start
#   with `--no-deps`, which is the order Docker Compose's conditions give.
wait_healthy() {
  local service name i
  for service in "$@"; do
    name=$(podman ps -q --filter "label=io.podman.compose.project=$PROJECT" \
      --filter "label=com.docker.compose.service=$service" | head -n 1)
    [ -n "$name" ] || die "no $service container"
    for i in $(seq 1 120); do
      podman healthcheck run "$name" >/dev/null 2>&1 && continue 2
      sleep 1
    done
    die "$service did not become healthy"
  done
}
wait_completed() {
  local service name code
  for service in "$@"; do
    name=$(podman ps -a -q --filter "label=io.podman.compose.project=$PROJECT" \
      --filter "label=com.docker.compose.service=$service" | head -n 1)
    [ -n "$name" ] || die "no $service container"
    code=$(timeout 300 podman wait "$name") || die "$service did not finish within 300 s"
    [ "$code" = 0 ] || { podman logs "$name" >&2; die "$service exited $code"; }
  done
}
up() {
  "${COMPOSE[@]}" up -d --no-build "$@" >>"$scratch/up.log" 2>&1 \
    || { cat "$scratch/up.log" >&2; die "podman-compose up $* failed"; }
}
log "${COMPOSE[*]} up -d --scale worker=3 (API on 127.0.0.1:$MEDIAQ_API_PORT)"
t=$(date +%s)
up postgres minio
wait_healthy postgres minio
up --no-deps minio-init migrate
wait_completed minio-init migrate
up --no-deps --scale worker=3 api worker
up_s=$(( $(date +%s) - t ))

# Stack start-up: from `up` to the API answering /readyz through the published port.
wait_ready() {
  local i
  for i in $(seq 1 180); do
    python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$MEDIAQ_API_PORT/readyz', timeout=2)" \
      2>/dev/null && return 0
    sleep 1
  done
  return 1
}
wait_ready || die "the API did not answer /readyz on 127.0.0.1:$MEDIAQ_API_PORT"
ready_s=$(( $(date +%s) - t ))

python3 scripts/containers/e2e.py "$PROJECT" "$MEDIAQ_API_PORT" "$scratch/short.webm" "$scratch/long.webm"

total_s=$(( $(date +%s) - check_start ))
cat <<FIGURES
[check] figures (podman $(podman version --format '{{.Client.Version}}'), $(podman-compose version 2>/dev/null | awk '/podman-compose/ { print $NF; exit }' || true) podman-compose, $(nproc) cores):
[check]   stand-in images (built or reused): ${standins_s} s
[check]   build mediaq-api:local: ${build_s[api]} s, image ${size_mb[api]} MB
[check]   build mediaq-worker:local: ${build_s[worker]} s, image ${size_mb[worker]} MB
[check]   stack start-up: up returned in ${up_s} s, API ready on the published port ${ready_s} s after up
[check]   whole check: ${total_s} s
FIGURES
