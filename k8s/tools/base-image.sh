#!/usr/bin/env bash
# Builds the local base image localhost/prelabel-base:bookworm (Debian 12 minbase + Python 3.11 + venv +
# CA certificates) with mmdebstrap, for machines that reach Debian's mirror but no container registry.
# Idempotent: returns at once when the image already exists (--force rebuilds it).
#
#   k8s/tools/base-image.sh [--force] [--tag localhost/prelabel-base:bookworm]
#
# Needs root (or a working unshare mode of mmdebstrap), mmdebstrap and podman:
#   apt-get install -y podman runc mmdebstrap
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
tag="${PRELABEL_BASE_IMAGE:-localhost/prelabel-base:bookworm}"
force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    --tag) tag="$2"; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "base-image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

# Podman settings for these machines (runc, cgroupfs, no default ulimits), unless the caller set its own.
if [ -z "${CONTAINERS_CONF:-}" ] && [ -f "$root/../shared/containers/containers.conf" ]; then
  export CONTAINERS_CONF="$root/../shared/containers/containers.conf"
fi

if [ "$force" = 0 ] && podman image exists "$tag"; then
  echo "base image $tag exists"
  exit 0
fi

for tool in mmdebstrap podman; do
  command -v "$tool" >/dev/null || { echo "base-image.sh: $tool not found (apt-get install -y podman runc mmdebstrap)" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
start=$SECONDS
# minbase keeps apt and dpkg (the gpu target installs Debian's OpenCL packages with them).
mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
  --aptopt='APT::Install-Recommends "false"' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  bookworm "$work/rootfs.tar" \
  "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main"
podman import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  --message "Debian 12 minbase + python3 + python3-venv (mmdebstrap)" \
  "$work/rootfs.tar" "$tag" >/dev/null
echo "base image $tag built in $((SECONDS - start)) s ($(podman image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
