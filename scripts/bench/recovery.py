#!/usr/bin/env python3
"""Client side of scripts/bench-recovery.sh (standard library only; loopback only; every loop bounded).

  recovery.py hold ADDR CLIP WORKER TIMEOUT_S
      upload CLIP, wait until the job is `processing` in an attempt of WORKER (the name the worker
      printed in its ready line); prints the job id
  recovery.py kill ADDR JOB_ID PID TIMEOUT_S
      SIGKILL the worker PID, then poll the job every 100 ms until it reaches a terminal status in a
      later attempt; prints one JSON line (times in seconds from the kill)
  recovery.py pickup ADDR CLIP N OUT_IDS [PAUSE_S]
      N jobs one at a time, each submitted PAUSE_S (0.3) after the previous one succeeded
  recovery.py transcode BIN CLIP OUT
      wall seconds of one direct mediaq-transcode run with the worker's default settings

The job's timestamps (created_at, started_at, attempt_history[].started_at, finished_at) come from
PostgreSQL's now() on this machine, and the kill time from time.time() on the same clock.
Requests carry `Authorization: Bearer $BENCH_KEY` when BENCH_KEY is set (the API wants an API key).
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime

TERMINAL = {"succeeded", "failed", "canceled"}
AUTH = {"Authorization": "Bearer " + os.environ["BENCH_KEY"]} if os.environ.get("BENCH_KEY") else {}


def conn(addr):
    host, port = addr.rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=30)


def post_clip(c, path, name):
    body = open(path, "rb").read()
    c.request("POST", "/v1/jobs?filename=" + name, body=body,
              headers={"Content-Type": "video/webm", "Content-Length": str(len(body)), **AUTH})
    r = c.getresponse()
    data = r.read()
    if r.status != 202:
        raise SystemExit(f"upload refused: {r.status} {data[:300]!r}")
    return json.loads(data)


def get_job(c, job_id):
    c.request("GET", "/v1/jobs/" + job_id, headers=AUTH)
    r = c.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit(f"GET job {job_id}: {r.status} {data[:300]!r}")
    return json.loads(data)


def ts(value):
    # RFC 3339 from chrono, e.g. 2026-11-22T20:01:02.123456Z (fromisoformat of Python 3.11 takes it)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def cmd_hold(addr, clip, worker, timeout_s):
    c = conn(addr)
    job = post_clip(c, clip, "recovery.webm")
    deadline = time.monotonic() + float(timeout_s)
    while True:
        hist = job.get("attempt_history") or []
        if job["status"] == "processing" and hist:
            if not hist[-1]["worker"].startswith(worker):
                raise SystemExit(f"job {job['id']} taken by {hist[-1]['worker']}, not by {worker}")
            print(job["id"])
            return
        if job["status"] in TERMINAL:
            raise SystemExit(f"job {job['id']} ended before the kill: {job['status']} {job.get('error')}")
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job['id']} not processing after {timeout_s} s: {job['status']}")
        time.sleep(0.05)
        job = get_job(c, job["id"])


def transcoders_of(job_id):
    """Pids of live processes whose command line names this job's directories."""
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{p}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if job_id.encode() in cmd and b"mediaq-transcode" in cmd and state != "Z":
            pids.append(int(p))
    return pids


def cmd_kill(addr, job_id, pid, timeout_s):
    c = conn(addr)
    before = get_job(c, job_id)
    children = transcoders_of(job_id)
    t_kill = time.time()
    os.kill(int(pid), signal.SIGKILL)
    # The worker's transcoder must die with it (PR_SET_PDEATHSIG): check for 5 s at most.
    child_gone_s = None
    for _ in range(500):
        if not any(p in transcoders_of(job_id) for p in children):
            child_gone_s = time.time() - t_kill
            break
        time.sleep(0.01)
    deadline = time.monotonic() + float(timeout_s)
    seen_queued = None
    while True:
        job = get_job(c, job_id)
        if seen_queued is None and job["status"] == "queued":
            seen_queued = time.time() - t_kill
        if job["status"] in TERMINAL and job["attempts"] >= 2:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id} not finished {timeout_s} s after the kill: {json.dumps(job)}")
        time.sleep(0.1)
    hist = job["attempt_history"]
    second = hist[1] if len(hist) > 1 else {}
    print(json.dumps({
        "job": job_id,
        "status": job["status"],
        "attempts": job["attempts"],
        "progress_at_kill": before["progress"],
        "transcoders_at_kill": len(children),
        "child_gone_s": child_gone_s,
        "queued_seen_s": seen_queued,
        "retry_s": ts(second.get("started_at")) - t_kill if second else None,
        "done_s": ts(job["finished_at"]) - t_kill,
        "attempt2_wall_s": second.get("wall_s"),
        "attempt1": {k: hist[0].get(k) for k in ("worker", "outcome", "error_code", "exit_status")},
        "attempt2_worker": second.get("worker"),
        "t_kill": t_kill,
    }))


def cmd_pickup(addr, clip, n, out_ids, pause_s="0.3"):
    c = conn(addr)
    with open(out_ids, "w") as out:
        for _ in range(int(n)):
            job = post_clip(c, clip, "tiny.webm")
            out.write(job["id"] + "\n")
            out.flush()
            deadline = time.monotonic() + 60
            while job["status"] not in TERMINAL:
                if time.monotonic() > deadline:
                    raise SystemExit(f"job {job['id']} not finished after 60 s: {job['status']}")
                time.sleep(0.01)
                job = get_job(c, job["id"])
            if job["status"] != "succeeded":
                raise SystemExit(f"job {job['id']} {job['status']}: {job.get('error')}")
            # Let the worker acknowledge the task and go back to waiting.
            time.sleep(float(pause_s))
    print(n)


def cmd_transcode(binary, clip, out):
    t0 = time.monotonic()
    p = subprocess.run([binary, "--input", clip, "--output", out], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900)
    t1 = time.monotonic()
    if p.returncode != 0:
        raise SystemExit(f"mediaq-transcode failed ({p.returncode}): {p.stderr[-500:]!r}")
    print(f"{t1 - t0:.3f}")


def main():
    cmds = {"hold": cmd_hold, "kill": cmd_kill, "pickup": cmd_pickup, "transcode": cmd_transcode}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        raise SystemExit(__doc__)
    cmds[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    main()
