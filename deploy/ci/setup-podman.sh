#!/bin/sh
# Make `docker-compose up` work on a Debian 12 machine (as root) that has no Docker engine and
# cannot pull from any container registry: Podman serves the Docker API, Debian's
# docker-compose (v1.29) drives it, and the base image is debootstrapped from the apt mirror.
#
# usage: sh deploy/ci/setup-podman.sh [WORKDIR]     (default /var/tmp/mpc-podman)
# Idempotent: about a minute the first time, seconds afterwards. Afterwards:
#   podman system service --time=0 unix://$WORKDIR/podman.sock &   (keep the pid; kill it after)
#   export DOCKER_HOST=unix://$WORKDIR/podman.sock DOCKER_BUILDKIT=0
#   docker-compose -p NAME build --build-arg BASE_IMAGE=localhost/localbase:latest ...
# tests/deploy/test_compose_smoke.py does exactly that, and skips (saying why) when this
# script has not run or failed.
set -eu
W=$(mkdir -p "${1:-/var/tmp/mpc-podman}" && cd "${1:-/var/tmp/mpc-podman}" && pwd)
if [ "$(id -u)" != 0 ]; then
  echo "setup-podman.sh: must run as root (installs packages, imports a base image)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# dnsname: service names resolve inside the compose network (needed before it is created).
# catatonit: `init: true`. runc: crun refuses hybrid cgroup layouts found on some VMs.
apt-get install -y -qq --no-install-recommends podman runc catatonit slirp4netns \
  golang-github-containernetworking-plugin-dnsname debootstrap docker-compose >/dev/null

# runc, and ulimits root can actually set inside such VMs.
if ! grep -qs 'runtime = "runc"' /etc/containers/containers.conf; then
  mkdir -p /etc/containers
  cat > /etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
CONF
fi

# A base image without a registry: a minimal Debian 12 from the mirror apt already uses.
if ! podman image exists localhost/localbase:latest; then
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n 1)
  [ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
  [ -d "$W/rootfs/etc" ] || debootstrap --variant=minbase bookworm "$W/rootfs" "$mirror" >/dev/null
  tar -C "$W/rootfs" -c . | podman import - localhost/localbase:latest >/dev/null
fi
podman run --rm localhost/localbase:latest true
echo "podman ready; base image localhost/localbase:latest"
