#!/usr/bin/env python3
"""Client side of the fair-queue benchmarks (issue 25; standard library only; loopback only;
every loop bounded).

  fair.py eta ADDR PLAN OUT [TIMEOUT_S]
      PLAN: lines "GAP_S CLIP LABEL". Each clip is uploaded whole (POST /v1/jobs) GAP_S seconds
      after the previous upload's 202. The finish estimate is the one the 202 carries
      (queue.estimated_finish_at), or the first GET's right after it when the 202 has none. When
      all are uploaded, every job is polled until terminal. OUT: one line per job:
      "label id bytes upload_at estimate_at finished_at position workers status" (epoch seconds).
  fair.py live ADDR CLIP SECONDS N EXTRA_DELAY_S OUT [TIMEOUT_S]
      N + 1 recordings of CLIP sent as resumable uploads (POST /v1/uploads, deferred length),
      each cut into SECONDS PATCHes at one per second (the recorder's timeslice), every PATCH
      acknowledged before the next; the last one brings the length. The first N start together,
      the extra one EXTRA_DELAY_S later. Each job is then polled every 20 ms until terminal.
      OUT: one line per recording: "index id last_ack_at done_at latency_s status lane_at_end".

Times are wall seconds (time.time()); the server's timestamps come from PostgreSQL's now() on the
same machine.
"""
import json
import sys
import threading
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from driver import AUTH, TERMINAL, conn, get_job, post_clip, ts  # noqa: E402


def cmd_eta(addr, plan, out, timeout_s="1200"):
    rows = []
    c = conn(addr)
    for line in open(plan):
        if not line.strip():
            continue
        gap, clip, label = line.split()
        time.sleep(float(gap))
        body = open(clip, "rb").read()
        job = post_clip(c, body, label + ".webm")
        uploaded = time.time()
        q = job.get("queue") or {}
        if not q.get("estimated_finish_at"):
            job, _ = get_job(c, job["id"])
            q = job.get("queue") or {}
        rows.append({"label": label, "id": job["id"], "bytes": len(body), "upload_at": uploaded,
                     "estimate_at": ts(q.get("estimated_finish_at")), "position": q.get("position"),
                     "workers": q.get("workers")})
    deadline = time.monotonic() + float(timeout_s)
    pending = {r["id"]: r for r in rows}
    while pending:
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(pending)} jobs unfinished after {timeout_s} s")
        for job_id in list(pending):
            job, _ = get_job(c, job_id)
            if job["status"] in TERMINAL:
                pending.pop(job_id)["finished"] = job
        time.sleep(0.2)
    with open(out, "w") as f:
        for r in rows:
            j = r["finished"]
            f.write(f"{r['label']} {r['id']} {r['bytes']} {r['upload_at']:.3f} "
                    f"{r['estimate_at'] if r['estimate_at'] is not None else 'nan'} "
                    f"{ts(j.get('finished_at')) or 'nan'} {r['position']} {r['workers']} {j['status']}\n")
    print(len(rows))


def tus_create(c):
    c.request("POST", "/v1/uploads", headers={
        "Tus-Resumable": "1.0.0", "Upload-Defer-Length": "1", "Content-Length": "0",
        # "recording.webm", "video/webm"
        "Upload-Metadata": "filename cmVjb3JkaW5nLndlYm0=,filetype dmlkZW8vd2VibQ==", **AUTH})
    r = c.getresponse()
    data = r.read()
    if r.status != 201:
        raise SystemExit(f"upload creation refused: {r.status} {data[:300]!r}")
    return json.loads(data)["id"], r.getheader("Location")


def tus_patch(c, url, offset, part, length=None):
    headers = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream",
               "Upload-Offset": str(offset), "Content-Length": str(len(part)), **AUTH}
    if length is not None:
        headers["Upload-Length"] = str(length)
    c.request("PATCH", url, body=part, headers=headers)
    r = c.getresponse()
    data = r.read()
    if r.status != 204:
        raise SystemExit(f"PATCH at {offset} refused: {r.status} {data[:300]!r}")


def record(addr, body, seconds, start_at, timeout_s, result):
    c = conn(addr)
    time.sleep(max(0.0, start_at - time.time()))
    job_id, url = tus_create(c)
    result["id"] = job_id
    n = int(seconds)
    cuts = [len(body) * i // n for i in range(n + 1)]
    t0 = time.monotonic()
    for i in range(n):
        # One timeslice a second, as a recorder sends them.
        time.sleep(max(0.0, t0 + i + 1 - time.monotonic()))
        part = body[cuts[i]:cuts[i + 1]]
        tus_patch(c, url, cuts[i], part, len(body) if i == n - 1 else None)
    result["last_ack"] = time.time()
    deadline = time.monotonic() + float(timeout_s)
    while True:
        job, _ = get_job(c, job_id)
        if job["status"] in TERMINAL or time.monotonic() > deadline:
            break
        time.sleep(0.020)
    result["done"] = time.time()
    result["status"] = job["status"]
    result["lane"] = job.get("lane")


def cmd_live(addr, clip, seconds, n, extra_delay_s, out, timeout_s="600"):
    body = open(clip, "rb").read()
    start = time.time() + 0.5
    results = [{} for _ in range(int(n) + 1)]
    threads = []
    for i, res in enumerate(results):
        at = start + (float(extra_delay_s) if i == int(n) else 0.0)
        t = threading.Thread(target=record, args=(addr, body, seconds, at, timeout_s, res))
        t.start()
        threads.append(t)
    for t in threads:
        t.join(float(timeout_s) + float(seconds) + 60)
    with open(out, "w") as f:
        for i, r in enumerate(results):
            if "done" not in r:
                f.write(f"{i} {r.get('id', '?')} nan nan nan client_error none\n")
                continue
            f.write(f"{i} {r['id']} {r['last_ack']:.3f} {r['done']:.3f} {r['done'] - r['last_ack']:.3f} "
                    f"{r['status']} {r['lane']}\n")
    print(len(results))


def main():
    cmds = {"eta": cmd_eta, "live": cmd_live}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        raise SystemExit(__doc__)
    cmds[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    main()
