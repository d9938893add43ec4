#!/usr/bin/env python3
"""Client side of mediaq's benchmarks (standard library only; loopback only; every loop bounded).

  driver.py etags ADDR IDS_FILE OUT_FILE        GET each job id, write "id etag" lines (for wrk)
  driver.py e2e ADDR CLIP [TIMEOUT_S]           upload CLIP, poll every 20 ms until terminal; JSON line
  driver.py transcode BIN CLIP OUT              wall time of one direct mediaq-transcode run; JSON line
  driver.py pickup ADDR CLIP N OUT_IDS [PAUSE_S] N jobs one at a time, each on an idle worker

ADDR is host:port. Times are wall seconds from time.monotonic(); the server timestamps in the job
(created_at, started_at, finished_at) come from PostgreSQL's now() on the same machine.
"""
import http.client
import json
import os
import subprocess
import sys
import time
from datetime import datetime

POLL_INTERVAL = 0.020
TERMINAL = {"succeeded", "failed", "canceled"}


# The API key, when the API wants one (scripts/bench/common.sh: bench_api_key).
AUTH = {"Authorization": "Bearer " + os.environ["BENCH_KEY"]} if os.environ.get("BENCH_KEY") else {}


def conn(addr):
    host, port = addr.rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=60)


def post_clip(c, body, name):
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
    return json.loads(data), r.getheader("ETag")


def ts(value):
    # RFC 3339 from chrono, e.g. 2026-11-22T20:01:02.123456Z
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def cmd_etags(addr, ids_file, out_file):
    c = conn(addr)
    n = 0
    with open(ids_file) as f, open(out_file, "w") as out:
        for line in f:
            job_id = line.strip()
            if not job_id:
                continue
            _, etag = get_job(c, job_id)
            out.write(f"{job_id} {etag}\n")
            n += 1
    print(n)


def cmd_e2e(addr, clip, timeout_s="120"):
    body = open(clip, "rb").read()
    deadline = time.monotonic() + float(timeout_s)
    post_c, poll_c = conn(addr), conn(addr)
    # Open the polling connection before the clock starts (a browser keeps one open too).
    poll_c.connect()
    t0 = time.monotonic()
    wall0 = time.time()
    job = post_clip(post_c, body, "clip.webm")
    t_uploaded = time.monotonic()
    polls = 0
    while job["status"] not in TERMINAL:
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job['id']} not finished after {timeout_s} s: {job['status']}")
        time.sleep(POLL_INTERVAL)
        job, _ = get_job(poll_c, job["id"])
        polls += 1
    t1 = time.monotonic()
    if job["status"] != "succeeded":
        raise SystemExit(f"job {job['id']} {job['status']}: {job.get('error')}")
    created, started, finished = ts(job["created_at"]), ts(job["started_at"]), ts(job["finished_at"])
    print(json.dumps({
        "id": job["id"],
        "e2e_s": t1 - t0,
        "upload_s": t_uploaded - t0,
        # upload start -> job row created (PostgreSQL now() is the transaction start)
        "to_created_s": created - wall0,
        "pickup_s": started - created,
        "attempt_s": finished - started,
        # finished_at -> the poll that saw it
        "poll_lag_s": (wall0 + (t1 - t0)) - finished,
        "polls": polls,
    }))


def cmd_transcode(binary, clip, out):
    t0 = time.monotonic()
    p = subprocess.run([binary, "--input", clip, "--output", out],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    t1 = time.monotonic()
    if p.returncode != 0:
        raise SystemExit(f"mediaq-transcode failed ({p.returncode}): {p.stderr[-500:]!r}")
    print(json.dumps({"transcode_s": t1 - t0}))


def cmd_pickup(addr, clip, n, out_ids, pause_s="0.3"):
    body = open(clip, "rb").read()
    c = conn(addr)
    with open(out_ids, "w") as out:
        for i in range(int(n)):
            job = post_clip(c, body, "tiny.webm")
            out.write(job["id"] + "\n")
            deadline = time.monotonic() + 60
            # Wait until the job is finished, so that the worker is idle when the next one arrives.
            while job["status"] not in TERMINAL:
                if time.monotonic() > deadline:
                    raise SystemExit(f"job {job['id']} not finished after 60 s: {job['status']}")
                time.sleep(0.010)
                job, _ = get_job(c, job["id"])
            if job["status"] != "succeeded":
                raise SystemExit(f"job {job['id']} {job['status']}: {job.get('error')}")
            # Let the worker acknowledge the task and go back to waiting.
            time.sleep(float(pause_s))
    print(n)


def main():
    cmds = {"etags": cmd_etags, "e2e": cmd_e2e, "transcode": cmd_transcode, "pickup": cmd_pickup}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        raise SystemExit(__doc__)
    cmds[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    main()
