#!/usr/bin/env python3
"""Generates docker/seccomp-worker.json, the worker container's seccomp profile, from Docker's
default profile (docker/seccomp/docker-default.json, a verbatim copy of moby's
profiles/seccomp/default.json; see docker/seccomp/NOTICE).

What it adds, and why (docs/DEPLOY.md):
- landlock_create_ruleset, landlock_add_rule, landlock_restrict_self, allowed unconditionally:
  the transcoder confines itself with Landlock. Recent Docker defaults allow them already; older
  engines (before 2024) answer ENOSYS and the worker, in strict mode, refuses to start. Shipping our
  own profile makes the result the same on every engine.
- unshare and clone with exactly the namespace flags the worker's spawn path uses, for containers
  without CAP_SYS_ADMIN (Docker's default refuses unshare, and clone with any namespace flag,
  without it): `unshare(CLONE_NEWUSER | CLONE_NEWNET)` (or either alone; sandbox layer 3: the
  transcoder's own user and network namespaces), and `clone(CLONE_NEWPID | SIGCHLD)` (the
  transcoder's PID namespace, made inside that user namespace). unshare takes no other flag at all
  (every bit outside those two is masked: no CLONE_NEWNS, CLONE_NEWTIME, cgroup, UTS or IPC
  namespace, nor CLONE_FILES/CLONE_FS/CLONE_SYSVSEM, which the worker never unshares); clone takes
  no namespace flag but CLONE_NEWPID (its other flags, for threads and forks, are Docker's rule's).
  CLONE_NEWTIME (0x80) is not a clone flag at all (clone's low byte is the exit signal; a time
  namespace comes only from unshare or clone3), so masking it in unshare closes it. A mount
  namespace is not needed: the transcoder never mounts, and Landlock, not a mount namespace,
  limits what it sees. Where the host's kernel still forbids unprivileged user namespaces, the
  worker logs it and runs without that one optional layer. The transcoder's own seccomp filter
  forbids unshare, so only the worker can use it. clone3 stays as Docker has it (ENOSYS without
  CAP_SYS_ADMIN: its flags sit behind a pointer a filter cannot read), so libc falls back to clone,
  which this rule covers.

Usage: generate.py [--check]   (--check: exit 1 when the committed profile is not what this writes)
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "docker-default.json"
TARGET = HERE.parent / "seccomp-worker.json"

LANDLOCK = ["landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self"]
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
ALL_NAMESPACES = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
# unshare: allowed when no bit but CLONE_NEWUSER and CLONE_NEWNET is set (flags is an int: 32 bits).
UNSHARE_ALLOWED = CLONE_NEWUSER | CLONE_NEWNET
UNSHARE_MASK = 0xFFFFFFFF & ~UNSHARE_ALLOWED
# clone: allowed when no namespace flag but CLONE_NEWPID is set.
CLONE_NAMESPACES_ALLOWED = CLONE_NEWPID
CLONE_MASK = ALL_NAMESPACES & ~CLONE_NAMESPACES_ALLOWED


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
        "args": [{"index": 0, "value": UNSHARE_MASK, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        "comment": "mediaq: the worker gives each transcoder its own user and network namespaces"
                   " (CLONE_NEWUSER, CLONE_NEWNET; no other flag)",
    })
    # Docker's own clone rule refuses every namespace flag without CAP_SYS_ADMIN; this one lets
    # CLONE_NEWPID through (flags are argument 0 except on s390, which Docker's s390 rule covers).
    profile["syscalls"].append({
        "names": ["clone"],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": CLONE_MASK, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]},
        "comment": "mediaq: a process in a new PID namespace (CLONE_NEWPID; no other namespace)",
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
