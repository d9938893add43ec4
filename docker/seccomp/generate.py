#!/usr/bin/env python3
"""Generates docker/seccomp-worker.json, the worker container's seccomp profile, from Docker's
default profile (docker/seccomp/docker-default.json, a verbatim copy of moby's
profiles/seccomp/default.json; see docker/seccomp/NOTICE).

What it adds, and why (docs/DEPLOY.md):
- landlock_create_ruleset, landlock_add_rule, landlock_restrict_self, allowed unconditionally:
  the transcoder confines itself with Landlock. Recent Docker defaults allow them already; older
  engines (before 2024) answer ENOSYS and the worker, in strict mode, refuses to start. Shipping our
  own profile makes the result the same on every engine.
- unshare, and clone with namespace flags, for CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWPID and
  CLONE_NEWNS only (never cgroup, UTS or IPC namespaces), for containers without CAP_SYS_ADMIN: the
  worker puts each transcoder in its own user and network namespaces (sandbox layer 3), and may
  give it its own PID and mount namespaces (a mount namespace made inside a new user namespace
  cannot change the container's mounts: its mounts are locked and do not propagate back). Docker's
  default refuses unshare, and clone with any namespace flag, without CAP_SYS_ADMIN. Where the
  host's kernel still forbids unprivileged user namespaces, the worker logs it and runs without
  that one optional layer. The transcoder's own seccomp filter forbids unshare, so only the worker
  can use it. clone3 stays as Docker has it (ENOSYS without CAP_SYS_ADMIN: its flags sit behind a
  pointer a filter cannot read), so libc falls back to clone, which this rule covers.

Usage: generate.py [--check]   (--check: exit 1 when the committed profile is not what this writes)
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "docker-default.json"
TARGET = HERE.parent / "seccomp-worker.json"

LANDLOCK = ["landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self"]
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
# Namespace flags other than user, network, PID and mount: unshare and clone are allowed only when
# none is set.
FORBIDDEN_NAMESPACES = CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC


def unconditional_allows(profile):
    names = set()
    for rule in profile["syscalls"]:
        if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args") and not rule.get("includes") \
                and not rule.get("excludes"):
            names.update(rule["names"])
    return names


def generate(profile):
    allowed = unconditional_allows(profile)
    missing = [name for name in LANDLOCK if name not in allowed]
    if missing:
        profile["syscalls"].append({
            "names": missing,
            "action": "SCMP_ACT_ALLOW",
            "comment": "mediaq: the transcoder confines itself with Landlock",
        })
    profile["syscalls"].append({
        "names": ["unshare"],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": FORBIDDEN_NAMESPACES, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        "comment": "mediaq: the worker gives each transcoder its own user, network, PID and mount namespaces"
                   " (no other)",
    })
    # Docker's own clone rule refuses every namespace flag without CAP_SYS_ADMIN; this one lets the
    # same four through (flags are argument 0 except on s390, which Docker's s390 rule covers).
    profile["syscalls"].append({
        "names": ["clone"],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": FORBIDDEN_NAMESPACES, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]},
        "comment": "mediaq: a process in new user, network, PID and mount namespaces (no other)",
    })
    return profile


def render():
    profile = generate(json.loads(SOURCE.read_text()))
    return json.dumps(profile, indent=2) + "\n"


def main():
    text = render()
    if sys.argv[1:] == ["--check"]:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is not what {Path(__file__).name} generates: run it and commit the result",
                  file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
