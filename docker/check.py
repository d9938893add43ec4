#!/usr/bin/env python3
"""Checks docker/ without a Docker engine (run by scripts/check-docker.sh):

- the compose file parses and validates against the Compose Specification's JSON schema
  (docker/schema/compose-spec.json), and holds what this project requires: a hardened, scalable
  worker (cap_drop ALL, no-new-privileges, our seccomp profile, read-only root, tmpfs job
  directories, memory and pids limits, no container_name or published port), healthchecks on
  every long-running service, one-shots that do not restart, dependencies that exist;
- no secret has a default (passwords, keys and tokens are `${VAR:?message}`: compose refuses to
  start without them), the API and workers never get the object store's root credential, and a
  worker whose metrics listen beyond loopback requires MEDIAQ_METRICS_TOKEN;
- `.env` (where compose's secrets live) is in .gitignore and .dockerignore;
- the seccomp profile is what docker/seccomp/generate.py writes, allows Landlock, and lets unshare
  and clone make no namespace but the worker's (unshare: user and network; clone: PID);
- the Dockerfiles: every script their RUN steps call and every file they COPY exists, final
  stages run as a non-root user and copy their image's binaries (the API image no transcoder),
  base images are pinned, each has a HEALTHCHECK; both share one builder stage.

Usage: check.py [--compose FILE]   (paths in the compose file are relative to the repository root,
the project directory: `docker compose -f docker/compose.yaml --project-directory .`)
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
LANDLOCK = {"landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self"}
REQUIRED_ENV = ["DATABASE_URL", "MEDIAQ_STORAGE_URL", "MEDIAQ_S3_ENDPOINT", "MEDIAQ_S3_REGION", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "MEDIAQ_S3_ALLOW_HTTP"]

# Namespace flags (linux/sched.h), and what the worker's spawn path asks for (docker/seccomp/generate.py).
CLONE_FLAGS = {"CLONE_NEWTIME": 0x80, "CLONE_NEWNS": 0x20000, "CLONE_NEWCGROUP": 0x2000000, "CLONE_NEWUTS": 0x4000000,
               "CLONE_NEWIPC": 0x8000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
               "CLONE_NEWNET": 0x40000000}
ALL_NAMESPACES = sum(v for k, v in CLONE_FLAGS.items() if k != "CLONE_NEWTIME")
UNSHARE_ALLOWED = CLONE_FLAGS["CLONE_NEWUSER"] | CLONE_FLAGS["CLONE_NEWNET"]
CLONE_ALLOWED = CLONE_FLAGS["CLONE_NEWPID"]
# Environment variables that carry a secret (their value must come from the operator, never a default).
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|ROOT_USER|^DATABASE_URL$")
DEFAULTED = re.compile(r"\$\{([A-Z0-9_]+)(:?-)")
APP_SERVICES = ("api", "worker", "migrate")

problems = []


def problem(message):
    problems.append(message)


def env_of(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return env


def tmpfs_paths(service):
    tmpfs = service.get("tmpfs") or []
    if isinstance(tmpfs, str):
        tmpfs = [tmpfs]
    paths = [entry.split(":", 1)[0] for entry in tmpfs]
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict) and volume.get("type") == "tmpfs":
            paths.append(volume["target"])
    return paths


def check_seccomp(path):
    try:
        profile = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        problem(f"seccomp profile {path}: {e}")
        return
    allowed = set()
    for rule in profile.get("syscalls", []):
        if rule.get("action") == "SCMP_ACT_ALLOW" and not rule.get("args") and not rule.get("includes") \
                and not rule.get("excludes"):
            allowed.update(rule.get("names", []))
    missing = LANDLOCK - allowed
    if missing:
        problem(f"seccomp profile {path} does not allow {sorted(missing)}")
    check_namespace_rules(path, profile)
    if profile.get("defaultAction") != "SCMP_ACT_ERRNO":
        problem(f"seccomp profile {path} must deny by default (defaultAction SCMP_ACT_ERRNO)")
    generator = ROOT / "docker/seccomp/generate.py"
    if path.resolve() == (ROOT / "docker/seccomp-worker.json").resolve():
        if subprocess.run([sys.executable, str(generator), "--check"]).returncode != 0:
            problem(f"{path} is not what {generator.relative_to(ROOT)} generates")


def flag_names(bits):
    return ", ".join(name for name, value in CLONE_FLAGS.items() if bits & value) or hex(bits)


def check_namespace_rules(path, profile):
    """unshare and clone, where a rule allows them without CAP_SYS_ADMIN, make only the worker's
    namespaces: unshare CLONE_NEWUSER and CLONE_NEWNET (no other bit), clone CLONE_NEWPID."""
    for rule in profile.get("syscalls", []):
        names = set(rule.get("names", [])) & {"unshare", "clone"}
        if rule.get("action") != "SCMP_ACT_ALLOW" or not names or rule.get("includes"):
            continue
        masks = [a for a in rule.get("args") or [] if a.get("index") == 0 and a.get("op") == "SCMP_CMP_MASKED_EQ"
                 and a.get("valueTwo", 0) == 0]
        for name in sorted(names):
            # What the rule lets through: every bit its mask does not cover (all of them without one).
            open_bits = 0xFFFFFFFF & ~(masks[0]["value"] if masks else 0)
            if name == "unshare" and open_bits & ~UNSHARE_ALLOWED:
                problem(f"seccomp profile {path}: unshare may set {flag_names(open_bits & ~UNSHARE_ALLOWED)}"
                        " (only CLONE_NEWUSER and CLONE_NEWNET are needed)")
            if name == "clone" and open_bits & ALL_NAMESPACES & ~CLONE_ALLOWED:
                problem(f"seccomp profile {path}: clone may set {flag_names(open_bits & ALL_NAMESPACES & ~CLONE_ALLOWED)}"
                        " (only CLONE_NEWPID is needed)")


def check_secrets(path, services):
    """No secret falls back to a default; the application never holds the store's root credential;
    a worker's metrics beyond loopback need their token."""
    for name, service in services.items():
        for var, value in env_of(service).items():
            if not SECRET_NAME.search(var):
                continue
            value = str(value)
            defaulted = DEFAULTED.search(value)
            if defaulted:
                problem(f"{name}: {var} falls back to a default (${{{defaulted.group(1)}{defaulted.group(2)}...}}):"
                        " a secret must be required (${VAR:?message})")
            elif "${" not in value and value:
                problem(f"{name}: {var} is written in the compose file: take it from the environment (${{VAR:?message}})")
            if name in APP_SERVICES and re.search(r"MINIO_ROOT_|ROOT_PASSWORD|ROOT_USER", value):
                problem(f"{name}: {var} is the object store's root credential: give the application its own user")
        if name in APP_SERVICES and any(v.startswith("MINIO_ROOT") for v in env_of(service)):
            problem(f"{name}: holds the object store's root credential")
    worker = services.get("worker") or {}
    env = env_of(worker)
    bind = str(env.get("MEDIAQ_METRICS_BIND", ""))
    host = bind.rsplit(":", 1)[0].strip("[]")
    if bind and host not in ("127.0.0.1", "::1", "localhost"):
        token = str(env.get("MEDIAQ_METRICS_TOKEN") or "")
        if ":?" not in token:
            problem(f"worker: /metrics listens on {bind} (the compose network): MEDIAQ_METRICS_TOKEN must be required"
                    " (${MEDIAQ_METRICS_TOKEN:?message})")


def check_ignored():
    for name in (".gitignore", ".dockerignore"):
        try:
            lines = {line.strip() for line in (ROOT / name).read_text().splitlines()}
        except OSError:
            lines = set()
        if ".env" not in lines and "/.env" not in lines:
            problem(f"{name} must list .env (compose's secrets)")


def check_worker(name, service):
    if service.get("container_name"):
        problem(f"{name}: container_name prevents --scale")
    if service.get("ports"):
        problem(f"{name}: published ports clash when scaled (metrics stay on the compose network)")
    if [c.upper() for c in service.get("cap_drop") or []] != ["ALL"]:
        problem(f"{name}: cap_drop must be [ALL]")
    if service.get("cap_add"):
        problem(f"{name}: cap_add must be empty")
    if service.get("privileged"):
        problem(f"{name}: must not be privileged")
    if service.get("read_only") is not True:
        problem(f"{name}: read_only must be true")
    options = service.get("security_opt") or []
    if not any(re.fullmatch(r"no-new-privileges(:true|=true)?", o) for o in options):
        problem(f"{name}: security_opt needs no-new-privileges:true")
    seccomp = [o.split("=", 1)[1] if "=" in o else o.split(":", 1)[1] for o in options if o.startswith("seccomp")]
    if not seccomp or seccomp[0] in ("unconfined", "builtin"):
        problem(f"{name}: security_opt needs seccomp=<profile file>")
    else:
        path = ROOT / seccomp[0]
        if not path.is_file():
            problem(f"{name}: seccomp profile {seccomp[0]} does not exist (relative to the repository root)")
        else:
            check_seccomp(path)
    if not (service.get("mem_limit") or service.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory")):
        problem(f"{name}: needs a memory limit (mem_limit)")
    if not (service.get("pids_limit") or service.get("deploy", {}).get("resources", {}).get("limits", {}).get("pids")):
        problem(f"{name}: needs a pids limit (pids_limit)")
    env = env_of(service)
    work = env.get("MEDIAQ_WORK_DIR")
    if not work:
        problem(f"{name}: MEDIAQ_WORK_DIR must name the job directories' tmpfs")
    elif work not in tmpfs_paths(service):
        problem(f"{name}: MEDIAQ_WORK_DIR {work} is not a tmpfs mount")
    if env.get("MEDIAQ_SANDBOX", "strict") != "strict":
        problem(f"{name}: MEDIAQ_SANDBOX must stay strict in a deployment")
    bind = env.get("MEDIAQ_METRICS_BIND", "")
    port = bind.rsplit(":", 1)[-1] if bind else None
    test = " ".join(service.get("healthcheck", {}).get("test") or [])
    if not port or f":{port}" not in test or "/healthz" not in test:
        problem(f"{name}: the healthcheck must call /healthz on MEDIAQ_METRICS_BIND's port ({bind or 'unset'})")


def check_compose(path):
    text = path.read_text()
    try:
        compose = yaml.safe_load(text)
    except yaml.YAMLError as e:
        problem(f"{path}: not YAML: {e}")
        return
    schema = json.loads((ROOT / "docker/schema/compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    for error in sorted(validator.iter_errors(compose), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in error.path) or "(top)"
        problem(f"{path}: schema: {where}: {error.message}")
    services = compose.get("services") or {}
    for required in ["postgres", "api", "worker", "migrate"]:
        if required not in services:
            problem(f"{path}: no {required} service")
    if not any("minio" in str(s.get("image", "")) or "s3" in name for name, s in services.items()):
        problem(f"{path}: no S3-compatible store")
    for name, service in services.items():
        one_shot = service.get("restart", "no") == "no"
        if not one_shot and not service.get("healthcheck"):
            problem(f"{name}: a long-running service needs a healthcheck")
        if not one_shot and service.get("healthcheck", {}).get("disable"):
            problem(f"{name}: its healthcheck is disabled")
        image = str(service.get("image", ""))
        # `${VAR:-default}`: the default is what Docker users run, so it must be pinned.
        image = re.sub(r"^\$\{[A-Z0-9_]+:-(.*)\}$", r"\1", image)
        if image and ":" not in image or image.endswith(":latest") or "$" in image:
            problem(f"{name}: pin the image's tag ({image})")
        depends = service.get("depends_on") or {}
        for dependency in depends if isinstance(depends, list) else depends.keys():
            if dependency not in services:
                problem(f"{name}: depends on unknown service {dependency}")
        build = service.get("build")
        if isinstance(build, dict):
            context = ROOT / build.get("context", ".")
            if not context.is_dir():
                problem(f"{name}: build context {build.get('context')} does not exist")
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                problem(f"{name}: {build.get('dockerfile')} does not exist")
        if name in ("api", "worker", "migrate"):
            env = env_of(service)
            for var in REQUIRED_ENV:
                if var not in env:
                    problem(f"{name}: environment lacks {var}")
            if service.get("user") in ("root", "0", "0:0"):
                problem(f"{name}: must not run as root")
    if "worker" in services:
        check_worker("worker", services["worker"])
    check_secrets(path, services)


def stages(dockerfile):
    """The Dockerfile's instructions (continuations joined), split into stages."""
    lines, current = [], ""
    for raw in dockerfile.read_text().splitlines():
        if raw.lstrip().startswith("#") and not current:
            continue
        current += raw.rstrip("\\").strip() + " " if raw.rstrip().endswith("\\") else raw.strip()
        if not raw.rstrip().endswith("\\"):
            if current.strip():
                lines.append(current.strip())
            current = ""
    result = []
    for line in lines:
        instruction = line.split(None, 1)[0].upper()
        if instruction == "FROM":
            result.append([])
        if result:
            result[-1].append((instruction, line.split(None, 1)[1] if " " in line else ""))
    return result


IMAGE_BINARIES = {"api": ["mediaq-api"], "worker": ["mediaq-worker", "mediaq-transcode", "mediaq-sandbox-probe"]}


def check_builders(api, worker):
    """Both images build from the same builder stage (`docker/build.sh packages`, then `all`), so that
    an engine's layer cache builds it once and cargo compiles the shared dependencies once."""
    builders = [next((stage for stage in stages(path) if stage[0][1].endswith(" AS builder")), None)
                for path in (api, worker)]
    if None in builders:
        problem("both Dockerfiles need a stage `AS builder`")
        return
    if builders[0] != builders[1]:
        problem("docker/api.Dockerfile and docker/worker.Dockerfile must have the same builder stage")
    runs = " ".join(args for instruction, args in builders[0] if instruction == "RUN")
    if "docker/build.sh packages" not in runs or "docker/build.sh all /out" not in runs:
        problem("the builder stage must run docker/build.sh packages, then docker/build.sh all /out")


def check_dockerfile(path, role):
    all_stages = stages(path)
    if not all_stages:
        problem(f"{path}: no FROM")
        return
    for stage in all_stages:
        for instruction, args in stage:
            if instruction == "FROM":
                image = args.split()[0]
                if ":" not in image or image.endswith(":latest"):
                    problem(f"{path}: pin the base image ({image})")
            if instruction == "COPY" and "--from=" not in args:
                sources = [a for a in args.split() if not a.startswith("--")][:-1]
                for source in sources:
                    if source not in (".", "./") and not any(ROOT.glob(source.rstrip("/"))):
                        problem(f"{path}: COPY source {source} does not exist")
            if instruction == "RUN":
                for script in re.findall(r"bash\s+(\S+\.sh)", args):
                    local = script.replace("/tmp/mediaq-setup/", "")
                    if not (ROOT / local).is_file():
                        problem(f"{path}: RUN calls {script}, which does not exist ({local})")
                    elif script.endswith("runtime.sh") and f"runtime.sh {role} " not in args + " ":
                        problem(f"{path}: runtime.sh must be called for the {role} image")
    final = all_stages[-1]
    copied = " ".join(args for instruction, args in final if instruction == "COPY" and "--from=builder" in args)
    for binary in IMAGE_BINARIES[role]:
        if f"/out/bin/{binary} " not in copied + " ":
            problem(f"{path}: the final stage does not copy {binary} from the builder")
    if role == "api" and "mediaq-transcode" in copied:
        problem(f"{path}: the API image must not hold the transcoder")
    if final[0][1].split()[0] != "debian:12-slim":
        problem(f"{path}: the runtime stage must be debian:12-slim")
    users = [args.strip() for instruction, args in final if instruction == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problem(f"{path}: the final stage must end as a non-root USER")
    if not any(instruction == "HEALTHCHECK" for instruction, _ in final):
        problem(f"{path}: no HEALTHCHECK")
    if not any(instruction == "ENTRYPOINT" for instruction, _ in final):
        problem(f"{path}: no ENTRYPOINT")


def main():
    args = sys.argv[1:]
    compose = ROOT / "docker/compose.yaml"
    if args[:1] == ["--compose"] and len(args) == 2:
        compose = Path(args[1]).resolve()
    elif args:
        print(__doc__, file=sys.stderr)
        return 2
    check_compose(compose)
    check_ignored()
    check_dockerfile(ROOT / "docker/api.Dockerfile", "api")
    check_dockerfile(ROOT / "docker/worker.Dockerfile", "worker")
    check_builders(ROOT / "docker/api.Dockerfile", ROOT / "docker/worker.Dockerfile")
    for message in problems:
        print(f"docker check: {message}", file=sys.stderr)
    if problems:
        print(f"docker check: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"docker check: {compose.relative_to(ROOT) if compose.is_relative_to(ROOT) else compose} and the "
          "Dockerfiles are valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
