#!/usr/bin/env bash
# Starts the container runtimes that cnet's container tests talk to, and
# imports the test image. Idempotent: what is already running is left alone.
# What this script starts is recorded in $STATE/started so that
# scripts/stop-runtimes.sh stops exactly that, by PID.
#
# Never touches forwarding or the firewall: dockerd runs with
# --ip-forward=false --iptables=false --ip6tables=false --bridge=none.
set -euo pipefail

STATE=${CNET_RUNTIME_STATE:-/run/cnet-runtimes}
IMAGE=${CNET_TEST_IMAGE:-cnet-busybox:latest}
mkdir -p "$STATE"
touch "$STATE/started"

need_pkgs=()
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v containerd >/dev/null || need_pkgs+=(containerd)
[ -x /bin/busybox ] || need_pkgs+=(busybox-static)
command -v podman >/dev/null || need_pkgs+=(podman)
command -v protoc >/dev/null || need_pkgs+=(protobuf-compiler)
[ -x /usr/lib/cni/bridge ] || need_pkgs+=(containernetworking-plugins)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "start-runtimes: installing ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# Waits up to 30 s for a unix socket to accept connections.
wait_socket() {
    local sock=$1 what=$2
    for _ in $(seq 300); do
        [ -S "$sock" ] && return 0
        sleep 0.1
    done
    echo "start-runtimes: $what did not create $sock; see $STATE/$what.log" >&2
    return 1
}

# Starts "$@" in the background unless $sock already answers; records its PID.
start_daemon() {
    local what=$1 sock=$2
    shift 2
    if [ -S "$sock" ] && socket_alive "$sock"; then
        return 0
    fi
    rm -f "$sock"
    setsid "$@" >"$STATE/$what.log" 2>&1 < /dev/null &
    echo "$what $!" >>"$STATE/started"
    wait_socket "$sock" "$what"
}

# True when something listens on the unix socket (a stale socket file left
# by a killed daemon is not enough).
socket_alive() {
    command -v python3 >/dev/null || { [ -S "$1" ]; return; }
    python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])
PY
}

# containerd on its default socket (dockerd uses it too when it is there).
start_daemon containerd /run/containerd/containerd.sock containerd

# dockerd, without touching forwarding or firewall state. --bridge=none: no
# docker0 with a host address; containers need --network with a user network.
DOCKER_SOCK=/var/run/docker.sock
start_daemon dockerd "$DOCKER_SOCK" dockerd \
    --ip-forward=false --iptables=false --ip6tables=false --ip-masq=false \
    --bridge=none --containerd=/run/containerd/containerd.sock
for _ in $(seq 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done

# Podman's Docker-compatible API. Its own containers.conf: rlimits that fit
# this machine's hard limits.
cat >"$STATE/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[network]
network_backend = "netavark"
CONF
export CONTAINERS_CONF="$STATE/containers.conf"
mkdir -p /run/podman
start_daemon podman /run/podman/podman.sock podman system service --time=0 unix:///run/podman/podman.sock

# The test image: a busybox-static rootfs (no registry is reachable).
ROOTFS="$STATE/rootfs"
if [ ! -x "$ROOTFS/bin/busybox" ]; then
    rm -rf "$ROOTFS.tmp"
    mkdir -p "$ROOTFS.tmp"/{bin,etc,proc,sys,dev,tmp,root}
    cp /bin/busybox "$ROOTFS.tmp/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$ROOTFS.tmp/bin/$applet"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' >"$ROOTFS.tmp/etc/passwd"
    echo 'root:x:0:' >"$ROOTFS.tmp/etc/group"
    mv "$ROOTFS.tmp" "$ROOTFS"
fi
if [ ! -f "$STATE/rootfs.tar" ]; then
    tar -C "$ROOTFS" -cf "$STATE/rootfs.tar.tmp" .
    mv "$STATE/rootfs.tar.tmp" "$STATE/rootfs.tar"
fi
docker image inspect "$IMAGE" >/dev/null 2>&1 || docker import "$STATE/rootfs.tar" "$IMAGE" >/dev/null
podman image exists "$IMAGE" 2>/dev/null || podman import "$STATE/rootfs.tar" "$IMAGE" >/dev/null
echo "start-runtimes: docker, podman and containerd ready; image $IMAGE, rootfs $ROOTFS"
