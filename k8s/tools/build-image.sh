#!/usr/bin/env bash
# Builds Prelabel's image with podman (buildah), from the Dockerfile at the repository root.
#
#   k8s/tools/build-image.sh [--target cpu|gpu|devservers] [--tag TAG] [--base IMAGE] [--no-cache]
#
#   cpu         (default) the runtime image, tag localhost/prelabel:dev
#   gpu         cpu + Debian's Intel OpenCL runtime, tag localhost/prelabel-gpu:dev
#   devservers  valkey-server + weed for the end-to-end test only (k8s/tools/devservers.Dockerfile),
#               tag localhost/prelabel-devservers:dev
#
# The base is --base, else $PRELABEL_BASE, else python:3.11-slim-bookworm when it is present or can be
# pulled, else the local Debian 12 base built once by k8s/tools/base-image.sh (no registry needed).
# pip inside the build uses the host's CA bundle and a pip cache on the host ($PRELABEL_PIP_CACHE, default
# ~/.cache/prelabel-image-pip), so rebuilds after a dependency change reuse the downloads.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
target=cpu
tag=""
base="${PRELABEL_BASE:-}"
no_cache=0
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target="$2"; shift ;;
    --tag) tag="$2"; shift ;;
    --base) base="$2"; shift ;;
    --no-cache) no_cache=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "build-image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
case "$target" in
  cpu) tag="${tag:-localhost/prelabel:dev}"; file="$root/Dockerfile" ;;
  gpu) tag="${tag:-localhost/prelabel-gpu:dev}"; file="$root/Dockerfile" ;;
  devservers) tag="${tag:-localhost/prelabel-devservers:dev}"; file="$root/k8s/tools/devservers.Dockerfile" ;;
  *) echo "build-image.sh: --target is cpu, gpu or devservers, not $target" >&2; exit 2 ;;
esac

# Podman settings for these machines (runc, cgroupfs, no default ulimits), unless the caller set its own.
if [ -z "${CONTAINERS_CONF:-}" ] && [ -f "$root/../shared/containers/containers.conf" ]; then
  export CONTAINERS_CONF="$root/../shared/containers/containers.conf"
fi
command -v podman >/dev/null || { echo "build-image.sh: podman not found (apt-get install -y podman runc mmdebstrap)" >&2; exit 1; }

if [ -z "$base" ]; then
  upstream=docker.io/library/python:3.11-slim-bookworm
  if podman image exists "$upstream" || timeout 60 podman pull -q "$upstream" >/dev/null 2>&1; then
    base="$upstream"
  else
    base=localhost/prelabel-base:bookworm
    "$root/k8s/tools/base-image.sh" --tag "$base"
  fi
fi

# pip in the build trusts the host's CA bundle (mounted read-only), as the host's own pip does.
ca=""
for candidate in "${PIP_CERT:-}" /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
  if [ -n "$candidate" ] && [ -f "$candidate" ]; then ca="$candidate"; break; fi
done
args=(--network host --build-arg "BASE=$base" --layers)
if [ -n "$ca" ]; then
  args+=(-v "$(dirname "$ca"):$(dirname "$ca"):ro" --build-arg "PIP_CERT=$ca")
fi
# pip's cache lives on the host across builds (buildah 1.28 does not keep --mount=type=cache).
pip_cache="${PRELABEL_PIP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/prelabel-image-pip}"
mkdir -p "$pip_cache"
args+=(-v "$pip_cache:/var/cache/prelabel-pip" --build-arg PIP_CACHE_DIR=/var/cache/prelabel-pip)
if [ "$no_cache" = 1 ]; then
  args+=(--no-cache)
fi
if [ "$target" != devservers ]; then
  args+=(--target "$target")
fi

start=$SECONDS
echo "building $tag (target $target, base $base)"
podman build "${args[@]}" -f "$file" -t "$tag" "$root"
size="$(podman image inspect --format '{{.Size}}' "$tag")"
echo "built $tag in $((SECONDS - start)) s: $(awk -v s="$size" 'BEGIN {printf "%.0f MB", s / 1e6}')"
