#!/usr/bin/env python3
"""End-to-end checks against the running compose stack (scripts/check-containers.sh starts it).

Usage: e2e.py PROJECT API_PORT SHORT_CLIP LONG_CLIP

Every check talks to the containers themselves: `podman inspect`/`exec`/`logs`/`kill`/`stop` and
HTTP to the API's published port on 127.0.0.1. Prints one line per check; exits 1 on the first
failure. Python's standard library only (runs on the host).
"""

import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

PROJECT, PORT, SHORT_CLIP, LONG_CLIP = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
BASE = f"http://127.0.0.1:{PORT}"
WORKER_UID = "10001"
KEY = None


class CheckFailed(Exception):
    pass


def ok(what):
    print(f"[check] ok: {what}", flush=True)


def expect(condition, what):
    if not condition:
        raise CheckFailed(what)


def podman(*args, check=True):
    out = subprocess.run(["podman", *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise CheckFailed(f"podman {' '.join(args)}: {out.stderr.strip()}")
    return out


def containers(service=None, all_states=True):
    args = ["ps", "--format", "json", "--filter", f"label=io.podman.compose.project={PROJECT}"]
    if all_states:
        args.append("-a")
    if service:
        args += ["--filter", f"label=com.docker.compose.service={service}"]
    return sorted(c["Names"][0] for c in json.loads(podman(*args).stdout or "[]"))


def inspect(name):
    return json.loads(podman("inspect", name).stdout)[0]


# Podman runs healthchecks from systemd timers; on a machine without systemd nothing runs them,
# so this thread does what the timers would: `podman healthcheck run` on every running container
# that has one, every 5 s (the commands are the images' own, from compose.yaml).
def drive_healthchecks(stop):
    while not stop.wait(5):
        for name in containers(all_states=False):
            podman("healthcheck", "run", name, check=False)


def health(name):
    state = inspect(name)["State"]
    return (state.get("Health") or state.get("Healthcheck") or {}).get("Status", "")


def wait_for(what, predicate, timeout, interval=1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise CheckFailed(f"timed out after {timeout} s waiting for {what}")


def http(method, path, body=None, headers=None, timeout=30):
    # A 429 (the key's rate limit: 30 uploads in a row exceed it) is retried after its Retry-After,
    # as a client should; at most 20 times.
    for _ in range(20):
        req = urllib.request.Request(BASE + path, data=body, method=method, headers=headers or {})
        if KEY:
            req.add_header("Authorization", f"Bearer {KEY}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            if e.code != 429:
                return e.code, e.read()
            time.sleep(min(float(e.headers.get("Retry-After") or 1), 5))
        except OSError:
            return 0, b""
    return 429, b"rate limited 20 times in a row"


def upload(path):
    with open(path, "rb") as f:
        status, body = http("POST", "/v1/jobs?filename=clip.webm", f.read(), {"Content-Type": "video/webm"})
    expect(status == 202, f"upload answered {status}: {body[:300]!r}")
    return json.loads(body)["id"]


def job(job_id):
    status, body = http("GET", f"/v1/jobs/{job_id}")
    return json.loads(body) if status == 200 else None


def wait_done(job_id, timeout):
    def done():
        j = job(job_id)
        return j if j and j["status"] in ("succeeded", "failed", "canceled") else None
    return wait_for(f"job {job_id}", done, timeout)


def hostname_of(worker_name):
    # Workers name themselves host-pid-random[-slot]; the host is the container's hostname.
    return worker_name.split("-")[0]


def container_by_host():
    return {inspect(name)["Config"]["Hostname"]: name for name in containers("worker", all_states=False)}


def ffprobe_ok(data, what):
    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(data)
        f.flush()
        out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name:format=format_name,duration",
                              "-of", "json", f.name], capture_output=True, text=True)
    expect(out.returncode == 0, f"{what}: ffprobe refused the download: {out.stderr.strip()}")
    probe = json.loads(out.stdout)
    codecs = sorted(s["codec_name"] for s in probe["streams"])
    expect("h264" in codecs and "mp4" in probe["format"]["format_name"], f"{what}: not an H.264 MP4: {probe}")
    return codecs, float(probe["format"]["duration"])


def check_stack_up():
    migrate = containers("migrate")
    expect(len(migrate) == 1, f"one migrate container, found {migrate}")
    state = inspect(migrate[0])["State"]
    expect(state["Status"] == "exited" and state["ExitCode"] == 0 and inspect(migrate[0])["RestartCount"] == 0,
           f"migrate ran once and exited 0 (state {state['Status']}, exit {state['ExitCode']})")
    ok(f"migrate ran once and exited 0 ({migrate[0]})")
    api = containers("api")[0]
    wait_for("the API container to be healthy", lambda: health(api) == "healthy", 120)
    ok(f"the API container is healthy ({api})")
    workers = containers("worker", all_states=False)
    expect(len(workers) == 3, f"three worker containers, found {workers}")
    wait_for("three healthy workers", lambda: all(health(w) == "healthy" for w in workers), 120)
    ok(f"three healthy worker containers: {', '.join(workers)}")
    return api, workers


def check_upload():
    started = time.monotonic()
    job_id = upload(SHORT_CLIP)
    j = wait_done(job_id, 300)
    expect(j["status"] == "succeeded", f"job {job_id} ended {j['status']}: {j.get('error')}")
    status, data = http("GET", f"/v1/jobs/{job_id}/output")
    expect(status == 200, f"download answered {status}")
    codecs, duration = ffprobe_ok(data, "the download")
    ok(f"upload through 127.0.0.1:{PORT}, job succeeded in {time.monotonic() - started:.1f} s, "
       f"the MP4 ({len(data)} bytes, {'+'.join(codecs)}, {duration:.1f} s) passes ffprobe on the host")


def check_scale(n=30):
    started = time.monotonic()
    ids = [upload(SHORT_CLIP) for _ in range(n)]
    jobs = [wait_done(i, 900) for i in ids]
    # Each job succeeds once. The S3 stand-in (moto, one process) now and then stalls a request
    # under 30 uploads at once (the worker's GET times out after object_store's retries): such an
    # attempt fails `storage_error`, which is transient, and the retry must then succeed. Any
    # other earlier attempt (a crash, a second success) fails the check.
    def retried_storage(j):
        earlier = j["attempt_history"][:-1]
        return all(a.get("outcome") == "failed" and a.get("error_code") == "storage_error" for a in earlier)
    bad = [(j["id"], j["status"], j["attempts"]) for j in jobs
           if j["status"] != "succeeded" or (j["attempts"] != 1 and not retried_storage(j))]
    expect(not bad, f"jobs that did not succeed at their first attempt: {bad}")
    retried = sum(1 for j in jobs if j["attempts"] != 1)
    hosts = container_by_host()
    per = {}
    for j in jobs:
        history = j["attempt_history"]
        expect(len(history) == j["attempts"], f"job {j['id']} has {len(history)} attempts")
        host = hostname_of(history[-1]["worker"])
        expect(host in hosts, f"job {j['id']} ran on {history[-1]['worker']}, not a worker container of {PROJECT}")
        per[hosts[host]] = per.get(hosts[host], 0) + 1
    expect(len(per) == 3, f"the {n} jobs ran on {len(per)} worker containers: {per}")
    ok(f"{n} jobs succeeded once each in {time.monotonic() - started:.1f} s ({retried} after a transient "
       f"storage_error), spread over the three worker containers: "
       f"{', '.join(f'{k}={v}' for k, v in sorted(per.items()))}")


def proc_status(container):
    # The worker's own process (PID 1 is the init that compose's `init: true` adds).
    script = ('for d in /proc/[0-9]*; do [ "$(cat $d/comm 2>/dev/null)" = mediaq-worker ] && '
              'grep -E "^(Uid|Gid|CapEff|CapPrm|NoNewPrivs|Seccomp):" $d/status && break; done')
    out = podman("exec", container, "bash", "-c", script).stdout
    return dict(line.split(":", 1) for line in out.splitlines())


def check_hardening(workers):
    for w in workers:
        info = inspect(w)
        host = info["HostConfig"]
        expect(info["Config"]["User"] in ("10001:10001", "10001"), f"{w}: user {info['Config']['User']}")
        expect(not info.get("EffectiveCaps"), f"{w}: capabilities {info.get('EffectiveCaps')} (cap_drop ALL)")
        expect(host["ReadonlyRootfs"] is True, f"{w}: the root filesystem is writable")
        opts = " ".join(host.get("SecurityOpt") or [])
        expect("no-new-privileges" in opts, f"{w}: security_opt {opts}")
        profile = info.get("SeccompProfilePath") or opts
        expect("seccomp-worker.json" in profile, f"{w}: seccomp profile {profile!r}, not docker/seccomp-worker.json")
        status = {k: v.strip() for k, v in proc_status(w).items()}
        expect(status.get("Uid", "").split() == [WORKER_UID] * 4, f"{w}: mediaq-worker runs as {status.get('Uid')}")
        expect(int(status.get("CapEff", "1"), 16) == 0 and int(status.get("CapPrm", "1"), 16) == 0,
               f"{w}: mediaq-worker has capabilities {status}")
        expect(status.get("NoNewPrivs") == "1" and status.get("Seccomp") == "2", f"{w}: {status}")
        touch = podman("exec", w, "touch", "/usr/local/bin/x", check=False)
        expect(touch.returncode != 0 and "Read-only file system" in touch.stderr, f"{w}: the root is writable")
        layers = sandbox_layers(w)
        # What strict mode requires (worker/src/selfcheck.rs): Landlock enforced, "full" or "partial"
        # (partial: the kernel's ABI is older than the one the transcoder asks for), and every other
        # layer true; unprivileged_user is null for a worker that is not root.
        others = {k: v for k, v in layers.items() if k not in ("landlock", "landlock_abi", "unprivileged_user")}
        expect(layers.get("landlock") in ("full", "partial") and layers.get("landlock_abi", 0) >= 1
               and set(others) >= {"namespaces", "pid_namespace", "seccomp", "no_new_privs", "rlimits"}
               and all(v is True for v in others.values()) and layers.get("unprivileged_user") is None,
               f"{w}: sandbox layers {layers}")
        expect(inspect(w)["Config"]["Env"] and "MEDIAQ_SANDBOX=strict" in inspect(w)["Config"]["Env"],
               f"{w}: not in strict mode")
    ok(f"each worker container runs as uid {WORKER_UID} with no capabilities (cap_drop ALL), no_new_privs, "
       f"seccomp filter mode, a read-only root, the profile docker/seccomp-worker.json, MEDIAQ_SANDBOX=strict")
    ok(f"each worker's start-up log reports every sandbox layer active: {json.dumps(layers, sort_keys=True)}")


def sandbox_layers(container):
    logs = podman("logs", container).stdout + podman("logs", container).stderr
    for line in logs.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        fields = entry.get("fields", entry)
        if fields.get("message") == "sandbox layers":
            return json.loads(fields["layers"])
    raise CheckFailed(f"{container}: no 'sandbox layers' line in its log")


PROBES = {
    # probe: what the sandbox must answer (the cases worker/engine/tests/sandbox.rs checks on the host)
    "read-input": "allowed",
    "write-inside": "allowed",
    "thread": "allowed",
    "read-passwd": "denied",
    "write-outside": "denied",
    "clone3": "denied",
    "x32-socket": "denied",
    "socket": "killed",
    "exec": "killed",
    "fork-setsid": "killed",
    "symlink-output": "killed",
}
SIGSYS_EXIT = (159, -31)


def check_probe(worker):
    seen = {}
    for probe, want in PROBES.items():
        podman("exec", worker, "bash", "-c", "rm -rf /work/probe && mkdir /work/probe && echo x >/work/probe/in.webm")
        out = podman("exec", worker, "mediaq-sandbox-probe", "--input", "/work/probe/in.webm", "--output",
                     "/work/probe/out.mp4", "--probe", probe, check=False)
        events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        verdicts = [e.get("message", "").split(":", 1)[0] for e in events if e.get("type") == "error"]
        got = verdicts[0] if verdicts else ("killed" if out.returncode in SIGSYS_EXIT else f"exit {out.returncode}")
        sandbox = next((e for e in events if e.get("type") == "sandbox"), None)
        expect(sandbox is not None, f"probe {probe}: no sandbox event ({out.stdout} {out.stderr})")
        expect(got == want, f"probe {probe} in {worker}: {got}, expected {want} ({out.stdout.strip()} {out.stderr.strip()})")
        seen[probe] = got
    podman("exec", worker, "rm", "-rf", "/work/probe", check=False)
    ok(f"hostile-file probe inside {worker} (mediaq-sandbox-probe, the host suite's cases): "
       + ", ".join(f"{k} {v}" for k, v in seen.items()))


def processing_on(job_id, timeout=120):
    def running():
        j = job(job_id)
        if j and j["status"] == "processing" and j["attempt_history"] and j["progress"] > 0:
            return j
        expect(not j or j["status"] in ("queued", "processing"), f"job {job_id} ended before it could be interrupted")
        return None
    j = wait_for(f"job {job_id} to be processing", running, timeout, 0.3)
    host = hostname_of(j["attempt_history"][-1]["worker"])
    return container_by_host()[host]


def check_kill():
    job_id = upload(LONG_CLIP)
    victim = processing_on(job_id)
    hosts = container_by_host()
    restarts = inspect(victim)["RestartCount"]
    podman("kill", victim)
    killed_at = time.monotonic()
    # `restart: unless-stopped` brings the killed container back; it is then stopped (idle, it
    # holds no job: the killed attempt is an orphan until its heartbeats are missed) so that the
    # job can only be finished by another container.
    try:
        wait_for(f"{victim} restarted by its restart policy",
                 lambda: inspect(victim)["RestartCount"] > restarts and inspect(victim)["State"]["Status"] == "running", 10)
        restarted = "restarted by its policy, then stopped"
    except CheckFailed:
        restarted = "not restarted by podman"
    podman("stop", "-t", "10", victim, check=False)
    j = wait_done(job_id, 600)
    took = time.monotonic() - killed_at
    expect(j["status"] == "succeeded", f"job {job_id} after the kill: {j['status']} {j.get('error')}")
    last = hosts.get(hostname_of(j["attempt_history"][-1]["worker"]))
    expect(j["attempts"] >= 2 and last and last != victim, f"job {job_id}: attempts {j['attempt_history']}")
    podman("start", victim)
    ok(f"kill of {victim} mid-job ({restarted}): {last} finished the job ({j['attempts']} attempts, "
       f"done {took:.1f} s after the kill)")
    wait_for(f"{victim} healthy again", lambda: health(victim) == "healthy", 120)


def tus_create(first):
    # A recording's upload (tus, /v1/uploads): length deferred, "recording.webm", video/webm, its
    # first bytes in the creation request (creation-with-upload).
    status, body = http("POST", "/v1/uploads", first, {
        "Tus-Resumable": "1.0.0", "Upload-Defer-Length": "1", "Content-Type": "application/offset+octet-stream",
        "Upload-Metadata": "filename cmVjb3JkaW5nLndlYm0=,filetype dmlkZW8vd2VibQ=="}, timeout=120)
    expect(status == 201, f"creating an upload answered {status}: {body[:300]!r}")
    return json.loads(body)["id"]


def tus_patch(job_id, offset, data, length=None):
    headers = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset)}
    if length is not None:
        headers["Upload-Length"] = str(length)
    status, body = http("PATCH", f"/v1/uploads/{job_id}", data, headers, timeout=120)
    expect(status == 204, f"PATCH of upload {job_id} at {offset} answered {status}: {body[:300]!r}")


def check_scale_in():
    """SIGTERM to a worker in the middle of a job, as a scale-in sends it (Compose's `--scale` down
    stops the highest-numbered replica; Kubernetes' the pod the ReplicaSet picks), then the job
    handed back. Deterministic, whatever the machine's speed: every worker converts a live upload
    whose second half has not been sent, so no attempt can end before the check sends it; the
    stopped worker's attempt is still running when MEDIAQ_SHUTDOWN_GRACE ends, and must be handed
    back then (not after missed heartbeats), and finished by another worker once the bytes come."""
    with open(LONG_CLIP, "rb") as f:
        data = f.read()
    half = len(data) // 2
    workers = containers("worker", all_states=False)
    hosts = container_by_host()
    ids = []
    for _ in workers:
        ids.append(tus_create(data[:half]))

    def each_worker_busy():
        on = {}
        for i in ids:
            j = job(i)
            expect(j is not None and j["status"] in ("receiving", "processing"), f"live upload {i}: {j and j['status']}")
            if j["status"] != "processing" or not j["attempt_history"]:
                return None
            on[i] = hosts.get(hostname_of(j["attempt_history"][-1]["worker"]))
        return on if set(on.values()) == set(workers) else None
    on = wait_for("each worker to convert one live upload", each_worker_busy, 120, 0.3)
    victim = max(workers, key=lambda w: int(inspect(w)["Config"]["Labels"]["com.docker.compose.container-number"]))
    victim_job = next(i for i, c in on.items() if c == victim)
    grace = next(e.split("=", 1)[1] for e in inspect(victim)["Config"]["Env"] if e.startswith("MEDIAQ_SHUTDOWN_GRACE="))
    stopped_at = time.monotonic()
    podman("stop", "-t", "45", victim)
    stop_took = time.monotonic() - stopped_at
    state = inspect(victim)["State"]
    expect(state["ExitCode"] == 0, f"{victim} exited {state['ExitCode']} on SIGTERM (137: it had to be killed)")
    back = job(victim_job)
    history = back["attempt_history"] if back else []
    expect(back is not None and back["status"] == "receiving" and len(history) == 1
           and history[0].get("outcome") == "interrupted",
           f"live upload {victim_job} was not handed back when {victim} stopped: {back}")
    for i in ids:
        tus_patch(i, half, data[half:], length=len(data))
    done = {i: wait_done(i, 600) for i in ids}
    bad = {i: (j["status"], j["attempts"]) for i, j in done.items() if j["status"] != "succeeded"}
    expect(not bad, f"live uploads after the scale-in: {bad}")
    j = done[victim_job]
    last = hosts.get(hostname_of(j["attempt_history"][-1]["worker"]))
    expect(j["attempts"] == 2 and last and last != victim, f"job {victim_job}: {j['attempt_history']}")
    others = [done[i]["attempts"] for i in ids if i != victim_job]
    expect(others == [1] * len(others), f"the other workers' live uploads took {others} attempts")
    podman("start", victim)
    ok(f"scale-in: SIGTERM to {victim} (the highest replica) while each worker converted a live upload still "
       f"arriving: with MEDIAQ_SHUTDOWN_GRACE={grace} it exited 0 in {stop_took:.1f} s, its attempt handed back "
       f"(interrupted, the job back to receiving, no heartbeat timeout); once the rest arrived {last} finished it "
       f"(2 attempts) and the other two finished theirs at their first attempt")
    wait_for(f"{victim} healthy again", lambda: health(victim) == "healthy", 120)


def check_postgres_restart(api, workers):
    before = {c: (inspect(c)["State"]["StartedAt"], inspect(c)["RestartCount"]) for c in [api, *workers]}
    pg = containers("postgres")[0]
    podman("restart", pg)
    restarted_at = time.monotonic()
    wait_for("the API to answer /readyz after the PostgreSQL restart",
             lambda: http("GET", "/readyz")[0] == 200, 120)
    job_id = upload(SHORT_CLIP)
    j = wait_done(job_id, 300)
    expect(j["status"] == "succeeded", f"job after the PostgreSQL restart: {j['status']} {j.get('error')}")
    after = {c: (inspect(c)["State"]["StartedAt"], inspect(c)["RestartCount"]) for c in [api, *workers]}
    expect(before == after, f"containers restarted instead of reconnecting: {before} -> {after}")
    ok(f"PostgreSQL container restarted: the API and workers reconnected without restarting "
       f"(a new job succeeded {time.monotonic() - restarted_at:.1f} s after the restart)")


def main():
    global KEY
    stop = threading.Event()
    threading.Thread(target=drive_healthchecks, args=(stop,), daemon=True).start()
    try:
        api, workers = check_stack_up()
        KEY = podman("exec", api, "mediaq-api", "keys", "create", "--name", "check", "--scopes",
                     "jobs:write,jobs:read,admin").stdout.strip().splitlines()[-1]
        check_upload()
        check_hardening(workers)
        check_probe(workers[0])
        check_scale()
        check_kill()
        check_scale_in()
        check_postgres_restart(api, containers("worker", all_states=False))
    except CheckFailed as e:
        print(f"[check] FAILED: {e}", flush=True)
        return 1
    finally:
        stop.set()
    print("[check] all container checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
