#!/usr/bin/env python3
"""Checks deploy/k8s without a cluster (scripts/check-k8s.sh installs the tools and runs this).

For every overlay (and the prometheus-hpa component on the base):
1. renders it with `kubectl kustomize` (kustomize built into kubectl);
2. validates every object strictly (unknown fields refused) against the Kubernetes API schemas
   of each version in K8S_VERSIONS (kubernetes-validate, the schemas it ships); only KEDA's kinds may be unknown there;
3. validates the KEDA objects with the models generated from KEDA's CRDs (cloudcoil-models-keda):
   types, and strictly (a field the CRD does not know is refused);
4. checks the project's policy: what docs/DEPLOY.md promises about the pods (securityContext,
   seccomp, resources, probes, grace, the worker's sandbox settings and tmpfs, the autoscaler).
Then proves the policy and the validators have teeth: each mutation of a rendered manifest in
MUTATIONS (a securityContext field removed, a probe removed, the grace shortened...) must fail.

Usage: check.py KUBECTL  (with the venv's python, which has kubernetes-validate and cloudcoil; from the repository root). Exit 1 on a failure.
"""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import kubernetes_validate
import yaml
from cloudcoil.models.keda import v1alpha1 as keda

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy/k8s"
# The oldest Kubernetes the manifests support and the newest kubernetes-validate ships.
K8S_VERSIONS = ["1.30.0", "1.37.0"]
KEDA_KINDS = {"ScaledObject": keda.ScaledObject, "TriggerAuthentication": keda.TriggerAuthentication}
WORKER, API = "mediaq-worker", "mediaq-api"
SECCOMP_PROFILE = "mediaq/seccomp-worker.json"
DEMAND_VIEW = "mediaq_worker_demand"
KUBECTL = sys.argv[1]


def render(target):
    out = subprocess.run([KUBECTL, "kustomize", str(target)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"[k8s] FAILED: kubectl kustomize {target}: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def targets():
    """(name, kustomization dir) of every overlay, and the base with the prometheus-hpa component."""
    found = [(f"overlays/{d.name}", d) for d in sorted((K8S / "overlays").iterdir()) if d.is_dir()]
    tmp = Path(tempfile.mkdtemp(prefix="mediaq-k8s-"))
    (tmp / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": "mediaq",
        "resources": [os.path.relpath(K8S / "base", tmp)],
        "components": [os.path.relpath(K8S / "components/prometheus-hpa", tmp)]}))
    return found + [("base+components/prometheus-hpa", tmp)]


SCHEMA_CHECKED = {}


def schema_errors(docs):
    """Strict validation against each version's schemas; KEDA's kinds are checked by keda_errors.
    An object already checked (the same text, the same version) is not checked again."""
    errors = []
    for version in K8S_VERSIONS:
        for d in docs:
            if d.get("kind") in KEDA_KINDS and d.get("apiVersion") == "keda.sh/v1alpha1":
                continue
            key = (version, json.dumps(d, sort_keys=True))
            if key in SCHEMA_CHECKED:
                errors += SCHEMA_CHECKED[key]
                continue
            before = len(errors)
            try:
                kubernetes_validate.validate(d, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                errors.append(f"Kubernetes {version}: {d['kind']}/{d['metadata'].get('name')}: {e.message} "
                              f"at {'.'.join(map(str, e.path))}")
            except kubernetes_validate.SchemaNotFoundError:
                errors.append(f"Kubernetes {version}: no schema for {d.get('apiVersion')} {d.get('kind')}")
            SCHEMA_CHECKED[key] = errors[before:]
    return errors


def diff(given, known, path=""):
    """Where `given` has what the model dropped (an unknown field) or changed (a coerced value)."""
    if isinstance(given, dict) and isinstance(known, dict):
        return [e for k, v in given.items()
                for e in ([f"{path}.{k}: unknown field"] if k not in known else diff(v, known[k], f"{path}.{k}"))]
    if isinstance(given, list) and isinstance(known, list) and len(given) == len(known):
        return [e for i, (g, k) in enumerate(zip(given, known)) for e in diff(g, k, f"{path}[{i}]")]
    return [] if given == known else [f"{path}: {given!r} is not a valid value (read as {known!r})"]


def keda_errors(docs):
    errors = []
    for d in docs:
        model = KEDA_KINDS.get(d.get("kind")) if d.get("apiVersion") == "keda.sh/v1alpha1" else None
        if model is None:
            continue
        name = f"{d['kind']}/{d['metadata']['name']}"
        try:
            known = model.model_validate(d).model_dump(by_alias=True, exclude_unset=True, mode="json")
        except Exception as e:  # pydantic's ValidationError: a wrong type, a missing field
            errors.append(f"{name}: {e}")
            continue
        errors += [f"{name}: {e}" for e in diff(d, known)]
    return errors


def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def seconds(duration):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", duration or "")
    if not m:
        return None
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def bytes_of(quantity):
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|KiB|MiB|GiB|TiB)?", str(quantity))
    if not m:
        return None
    return int(m.group(1)) * {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[(m.group(2) or "")[:2] or None]


def pod_errors(name, kind, pod):
    """The pod template of a Deployment or Job: what every pod here must have."""
    e = []
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        e.append("pod securityContext.runAsNonRoot is not true")
    if not isinstance(psc.get("runAsUser"), int) or psc["runAsUser"] == 0:
        e.append("pod securityContext.runAsUser is not a non-zero uid")
    if psc.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
        e.append("pod securityContext.seccompProfile is not RuntimeDefault or Localhost")
    if pod.get("automountServiceAccountToken") is not False:
        e.append("automountServiceAccountToken is not false (no pod here talks to the Kubernetes API)")
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        e.append("shares a host namespace")
    if not isinstance(pod.get("terminationGracePeriodSeconds"), int):
        e.append("terminationGracePeriodSeconds is not set")
    for c in pod.get("initContainers", []) + pod["containers"]:
        where = f"container {c['name']}"
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            e.append(f"{where}: securityContext.allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            e.append(f"{where}: securityContext.readOnlyRootFilesystem is not true")
        if sc.get("privileged") not in (None, False):
            e.append(f"{where}: securityContext.privileged")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            e.append(f"{where}: securityContext.capabilities.drop does not hold ALL")
        if sc.get("capabilities", {}).get("add"):
            e.append(f"{where}: securityContext.capabilities.add {sc['capabilities']['add']}")
        if sc.get("runAsUser") == 0 or sc.get("runAsNonRoot") is False:
            e.append(f"{where}: runs as root")
        res = c.get("resources", {})
        for need in ("requests.cpu", "requests.memory", "limits.memory"):
            section, key = need.split(".")
            if key not in res.get(section, {}):
                e.append(f"{where}: resources.{need} is not set")
        image = c.get("image", "")
        if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
            e.append(f"{where}: image {image!r} has no pinned tag")
        if kind == "Deployment":
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    e.append(f"{where}: no {probe}")
    return [f"{kind}/{name}: {x}" for x in e]


def worker_errors(docs):
    """The sandbox on a cluster: docs/DEPLOY.md's promises about the worker pod."""
    worker = by_kind(docs, "Deployment").get(WORKER)
    if worker is None:
        return [f"no Deployment {WORKER}"]
    e = []
    pod = worker["spec"]["template"]["spec"]
    profile = pod.get("securityContext", {}).get("seccompProfile", {})
    if profile != {"type": "Localhost", "localhostProfile": SECCOMP_PROFILE}:
        e.append(f"pod seccompProfile is {profile}, not the project's Localhost profile {SECCOMP_PROFILE}")
    c = next(c for c in pod["containers"] if c["name"] == "worker")
    env = env_of(c)
    if env.get("MEDIAQ_SANDBOX") != "strict":
        e.append("MEDIAQ_SANDBOX is not strict")
    grace = seconds(env.get("MEDIAQ_SHUTDOWN_GRACE") or "30s")
    term = pod.get("terminationGracePeriodSeconds")
    if grace is None or not isinstance(term, int) or term < grace + 10:
        e.append(f"terminationGracePeriodSeconds {term} is not at least MEDIAQ_SHUTDOWN_GRACE "
                 f"({env.get('MEDIAQ_SHUTDOWN_GRACE')}) + 10 s to hand the job back")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    work = volumes.get(mounts.get(env.get("MEDIAQ_WORK_DIR") or "", ""), {}).get("emptyDir")
    if not work or work.get("medium") != "Memory" or "sizeLimit" not in work:
        e.append(f"MEDIAQ_WORK_DIR ({env.get('MEDIAQ_WORK_DIR')}) is not a memory-backed emptyDir with a sizeLimit")
    else:
        limit = bytes_of(c.get("resources", {}).get("limits", {}).get("memory", "0"))
        need = (bytes_of(work["sizeLimit"]) or 0) + (bytes_of(env.get("MEDIAQ_TRANSCODE_MEMORY") or "4GiB") or 0)
        if not limit or limit <= need:
            e.append(f"the memory limit does not hold the work tmpfs ({work['sizeLimit']}) and "
                     f"MEDIAQ_TRANSCODE_MEMORY ({env.get('MEDIAQ_TRANSCODE_MEMORY')}) with room for the worker")
    if "MEDIAQ_METRICS_BIND" not in env:
        e.append("MEDIAQ_METRICS_BIND is not set: the probes have no /healthz")
    return [f"Deployment/{WORKER}: {x}" for x in e]


def scaling_errors(docs, target_name):
    e = []
    if not any(p["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name") == API
               for p in by_kind(docs, "PodDisruptionBudget").values()):
        e.append(f"no PodDisruptionBudget for {API}")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    api_hpa = [h for h in hpas.values() if h["spec"]["scaleTargetRef"]["name"] == API]
    if not any(m.get("resource", {}).get("name") == "cpu" for h in api_hpa for m in h["spec"]["metrics"]):
        e.append(f"no HorizontalPodAutoscaler on CPU for {API}")
    worker = by_kind(docs, "Deployment").get(WORKER)
    concurrency = env_of(worker["spec"]["template"]["spec"]["containers"][0]).get("MEDIAQ_WORKER_CONCURRENCY") if worker else None
    view = (ROOT / "migrations").glob("2026120830*_queue_depth.sql")
    if not any(f"CREATE VIEW {DEMAND_VIEW}" in p.read_text() for p in view):
        e.append(f"no migration creates the view {DEMAND_VIEW}")
    for so in by_kind(docs, "ScaledObject").values():
        spec = so["spec"]
        if spec["scaleTargetRef"]["name"] != WORKER:
            e.append(f"ScaledObject {so['metadata']['name']} scales {spec['scaleTargetRef']['name']}")
        if spec.get("minReplicaCount", 0) < 1:
            e.append("ScaledObject minReplicaCount < 1: webhooks and the janitor need a worker")
        for t in spec["triggers"]:
            if t["type"] != "postgresql" or t["metadata"].get("query") != f"SELECT demand FROM {DEMAND_VIEW}":
                e.append(f"ScaledObject trigger {t['type']} does not read {DEMAND_VIEW}")
            if t["metadata"].get("targetQueryValue") != concurrency:
                e.append(f"targetQueryValue {t['metadata'].get('targetQueryValue')} is not MEDIAQ_WORKER_CONCURRENCY {concurrency}")
    for h in hpas.values():
        if h["spec"]["scaleTargetRef"]["name"] == WORKER and not any(
                m.get("external", {}).get("metric", {}).get("name") == DEMAND_VIEW for m in h["spec"]["metrics"]):
            e.append(f"the worker's HPA does not follow {DEMAND_VIEW}")
    if target_name != "overlays/self-contained" and not (by_kind(docs, "ScaledObject") or
                                                         any(h["spec"]["scaleTargetRef"]["name"] == WORKER for h in hpas.values())):
        e.append("the workers have no autoscaler")
    return e


def selects(selector, labels):
    """Whether a NetworkPolicy's podSelector (matchLabels, matchExpressions In/NotIn/Exists) selects labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        value = labels.get(e["key"])
        if (e["operator"] == "In" and value not in e["values"]) or (e["operator"] == "NotIn" and value in e["values"]) \
                or (e["operator"] == "Exists" and value is None) or (e["operator"] == "DoesNotExist" and value is not None):
            return False
    return True


# What the worker may reach (DNS, PostgreSQL, HTTPS for the store and webhooks, the trial's MinIO)
# and what may reach it (Prometheus on the metrics port); the API takes connections on 8080 only.
WORKER_EGRESS_PORTS = {53, 5432, 443, 9000}
INGRESS_PORTS = {WORKER: {9464}, API: {8080}}


def network_errors(docs):
    e = []
    policies = by_kind(docs, "NetworkPolicy")
    if "mediaq-default-deny" not in policies or policies["mediaq-default-deny"]["spec"] != {
            "podSelector": {}, "policyTypes": ["Ingress", "Egress"]}:
        e.append("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rule)")
    for name in (WORKER, API):
        deployment = by_kind(docs, "Deployment").get(name)
        if deployment is None:
            continue
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        for pname, p in policies.items():
            if not selects(p["spec"]["podSelector"], labels):
                continue
            for rule in p["spec"].get("ingress", []):
                ports = {x.get("port") for x in rule.get("ports", [])}
                if not rule.get("ports") or not ports <= INGRESS_PORTS[name]:
                    e.append(f"NetworkPolicy/{pname} lets {name} take connections on {sorted(ports, key=str) or 'every port'}")
            for rule in p["spec"].get("egress", []) if name == WORKER else []:
                ports = {x.get("port") for x in rule.get("ports", [])}
                if not rule.get("ports") or not ports <= WORKER_EGRESS_PORTS:
                    e.append(f"NetworkPolicy/{pname} lets {name} reach {sorted(ports, key=str) or 'every port'}")
    return e


def policy_errors(docs, target_name):
    e = []
    for kind in ("Deployment", "Job"):
        for name, d in by_kind(docs, kind).items():
            e += pod_errors(name, kind, d["spec"]["template"]["spec"])
    return e + network_errors(docs) + worker_errors(docs) + scaling_errors(docs, target_name)


def all_errors(docs, target_name):
    try:
        policy = policy_errors(docs, target_name)
    except (KeyError, TypeError, ValueError, AttributeError, StopIteration) as e:
        policy = [f"the policy cannot read the manifests: {e!r}"]
    return schema_errors(docs) + keda_errors(docs) + policy


def pod_of(docs, name):
    return by_kind(docs, "Deployment")[name]["spec"]["template"]["spec"]


def container_of(docs, name):
    return pod_of(docs, name)["containers"][0]


def drop_env(docs, name, var):
    c = container_of(docs, name)
    c["env"] = [e for e in c["env"] if e["name"] != var]


# Each mutation of a rendered manifest that the checks must refuse: (what, change).
MUTATIONS = [
    *[(f"{who}: securityContext.{field} removed", lambda d, who=who, field=field: container_of(d, who)["securityContext"].pop(field))
      for who in (WORKER, API) for field in ("allowPrivilegeEscalation", "readOnlyRootFilesystem", "capabilities")],
    *[(f"{who}: pod securityContext.{field} removed", lambda d, who=who, field=field: pod_of(d, who)["securityContext"].pop(field))
      for who in (WORKER, API) for field in ("runAsNonRoot", "runAsUser", "seccompProfile")],
    (f"{WORKER}: privileged: true", lambda d: container_of(d, WORKER)["securityContext"].update(privileged=True)),
    (f"{WORKER}: a capability added", lambda d: container_of(d, WORKER)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"])),
    (f"{WORKER}: seccomp RuntimeDefault", lambda d: pod_of(d, WORKER)["securityContext"].update(seccompProfile={"type": "RuntimeDefault"})),
    (f"{WORKER}: MEDIAQ_SANDBOX removed", lambda d: drop_env(d, WORKER, "MEDIAQ_SANDBOX")),
    (f"{WORKER}: terminationGracePeriodSeconds 30", lambda d: pod_of(d, WORKER).update(terminationGracePeriodSeconds=30)),
    (f"{WORKER}: terminationGracePeriodSeconds removed", lambda d: pod_of(d, WORKER).pop("terminationGracePeriodSeconds")),
    (f"{WORKER}: work dir on disk", lambda d: next(v for v in pod_of(d, WORKER)["volumes"] if v["name"] == "work")["emptyDir"].pop("medium")),
    (f"{WORKER}: work tmpfs without a size limit", lambda d: next(v for v in pod_of(d, WORKER)["volumes"] if v["name"] == "work")["emptyDir"].pop("sizeLimit")),
    (f"{WORKER}: memory limit removed", lambda d: container_of(d, WORKER)["resources"]["limits"].pop("memory")),
    (f"{WORKER}: cpu request removed", lambda d: container_of(d, WORKER)["resources"]["requests"].pop("cpu")),
    (f"{WORKER}: livenessProbe removed", lambda d: container_of(d, WORKER).pop("livenessProbe")),
    (f"{API}: readinessProbe removed", lambda d: container_of(d, API).pop("readinessProbe")),
    (f"{API}: image :latest", lambda d: container_of(d, API).update(image="mediaq-api:latest")),
    (f"{WORKER}: an unknown securityContext field (strict schema)",
     lambda d: container_of(d, WORKER)["securityContext"].update(allowPrivilegeEscalations=False)),
    (f"{WORKER}: terminationGracePeriodSeconds as a string (schema)", lambda d: pod_of(d, WORKER).update(terminationGracePeriodSeconds="45")),
    ("ScaledObject: an unknown field (KEDA's CRD)", lambda d: by_kind(d, "ScaledObject")["mediaq-worker"]["spec"].update(minReplicas=1)),
    ("ScaledObject: minReplicaCount not a number (KEDA's CRD)",
     lambda d: by_kind(d, "ScaledObject")["mediaq-worker"]["spec"].update(minReplicaCount="one")),
    ("ScaledObject: minReplicaCount 0", lambda d: by_kind(d, "ScaledObject")["mediaq-worker"]["spec"].update(minReplicaCount=0)),
    ("ScaledObject: another query", lambda d: by_kind(d, "ScaledObject")["mediaq-worker"]["spec"]["triggers"][0]["metadata"].update(
        query="SELECT count(*) FROM jobs WHERE status = 'queued'")),
    ("no PodDisruptionBudget", lambda d: d.remove(next(x for x in d if x["kind"] == "PodDisruptionBudget"))),
    ("the default-deny NetworkPolicy removed", lambda d: d.remove(by_kind(d, "NetworkPolicy")["mediaq-default-deny"])),
    (f"{WORKER}: egress to every port", lambda d: by_kind(d, "NetworkPolicy")["mediaq-worker-webhooks"]["spec"]["egress"][0].pop("ports")),
    (f"{WORKER}: ingress on 22", lambda d: by_kind(d, "NetworkPolicy")["mediaq-worker-ingress"]["spec"]["ingress"][0]["ports"].append(
        {"protocol": "TCP", "port": 22})),
]


def main():
    failed = False
    rendered = {}
    found = targets()
    for name, target in found:
        docs = render(target)
        rendered[name] = docs
        errors = all_errors(docs, name)
        kinds = sorted({d["kind"] for d in docs})
        if errors:
            failed = True
            print(f"[k8s] FAILED {name}:\n  " + "\n  ".join(errors), flush=True)
        else:
            print(f"[k8s] ok: {name}: {len(docs)} objects ({', '.join(kinds)}) render, validate strictly against "
                  f"Kubernetes {' and '.join(K8S_VERSIONS)}{' and KEDA' if 'ScaledObject' in kinds else ''}, pass the policy",
                  flush=True)
    shutil.rmtree(found[-1][1])
    base = rendered["overlays/production"]
    missed = []
    for what, mutate in MUTATIONS:
        docs = copy.deepcopy(base)
        mutate(docs)
        if not all_errors(docs, "overlays/production"):
            missed.append(what)
    if missed:
        failed = True
        print("[k8s] FAILED: mutations of the rendered production overlay that the checks let through:\n  "
              + "\n  ".join(missed), flush=True)
    else:
        print(f"[k8s] ok: each of {len(MUTATIONS)} mutations of the rendered production overlay is refused "
              f"({'; '.join(w for w, _ in MUTATIONS[:3])}; ...)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
