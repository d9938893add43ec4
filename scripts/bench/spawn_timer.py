#!/usr/bin/env python3
"""Start-up cost of short-lived processes (helper of scripts/bench-sandbox.sh; standard library only).

  spawn_timer.py RUNS WARMUP OUT_TSV @NAME ARGV... @NAME ARGV...
  spawn_timer.py pairs OUT_TSV NAME BASE      paired differences NAME - BASE, round by round

Each variant is "@NAME" followed by an absolute program path and its arguments. Every round runs
each variant once, the first variant rotating from round to round (so that no variant always
follows the same one); WARMUP rounds are run first and not recorded. A run is
posix_spawn (empty environment, stdin and stdout on /dev/null, own process group, as the worker
does) -> wait4, timed with time.perf_counter; wait4 also gives the child's user and system CPU.
A run that exits non-zero stops the benchmark (with its stderr).

Writes "name round wall_ms cpu_ms" lines to OUT_TSV, prints nothing on success.

"pairs" prints "wall_median wall_q25 wall_q75 cpu_median cpu_q25 cpu_q75" (ms) of the per-round
differences NAME - BASE: the two ran next to each other in every round, so slow drifts in the
machine's load cancel out, which the difference of two medians does not do.
"""
import os
import sys
import tempfile
import time


def parse(args):
    variants = []
    for a in args:
        if a.startswith("@"):
            variants.append((a[1:], []))
        elif not variants:
            raise SystemExit("the first variant must start with @NAME")
        else:
            variants[-1][1].append(a)
    for name, argv in variants:
        if not argv or not os.path.isabs(argv[0]):
            raise SystemExit(f"variant {name}: needs an absolute program path")
    return variants


def run_once(argv, err_path):
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
    ]
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, {}, file_actions=actions, setpgroup=0)
    _, status, usage = os.wait4(pid, 0)
    t1 = time.perf_counter()
    code = os.waitstatus_to_exitcode(status)
    return (t1 - t0) * 1000.0, (usage.ru_utime + usage.ru_stime) * 1000.0, code


def quantile(values, q):
    # Linear interpolation between closest ranks (as numpy's default and PostgreSQL's percentile_cont).
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def pairs(out, name, base):
    rows = {}
    with open(out) as f:
        for line in f:
            v, r, wall, cpu = line.split("\t")
            rows[(v, r)] = (float(wall), float(cpu))
    rounds = sorted({r for (v, r) in rows if v == name and (base, r) in rows}, key=int)
    if not rounds:
        raise SystemExit(f"no rounds with both {name} and {base}")
    cols = []
    for i in (0, 1):
        d = [rows[(name, r)][i] - rows[(base, r)][i] for r in rounds]
        cols += [quantile(d, 0.5), quantile(d, 0.25), quantile(d, 0.75)]
    print(" ".join(f"{x:+.2f}" for x in cols))


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "pairs":
        return pairs(*sys.argv[2:])
    if len(sys.argv) < 5:
        raise SystemExit(__doc__)
    runs, warmup, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    variants = parse(sys.argv[4:])
    if not (1 <= runs <= 10000 and 0 <= warmup <= 100):
        raise SystemExit("RUNS must be 1..10000 and WARMUP 0..100")
    fd, err_path = tempfile.mkstemp(prefix="spawn-timer-", suffix=".stderr")
    os.close(fd)
    try:
        with open(out, "w") as f:
            for r in range(-warmup, runs):
                k = r % len(variants)
                for name, argv in variants[k:] + variants[:k]:
                    wall, cpu, code = run_once(argv, err_path)
                    if code != 0:
                        with open(err_path, errors="replace") as e:
                            tail = e.read()[-2000:]
                        raise SystemExit(f"variant {name} exited with {code}: {' '.join(argv)}\n{tail}")
                    if r >= 0:
                        f.write(f"{name}\t{r + 1}\t{wall:.3f}\t{cpu:.3f}\n")
    finally:
        os.unlink(err_path)


if __name__ == "__main__":
    main()
