#!/usr/bin/env bash
# `make images`: every service's image, built with podman (buildah) from deploy/docker/Dockerfile
# on a Python base image made here with debootstrap, so no container registry is needed.
#
#   deploy/images/build.sh [service ...]    (default: all five)
#
# IMAGE_TAG (0.1.0) tags the images localhost/loyalty-<service>:<tag>. The base image
# (BASE_IMAGE, localhost/loyalty-python:3.11-bookworm) is made once and reused: remove it
# (`podman rmi`) to make it again. DEBIAN_MIRROR names the Debian mirror debootstrap reads;
# by default the first one this machine's apt sources name. See deploy/README.md, "Images".
set -euo pipefail
cd "$(dirname "$0")/../.."

TAG="${IMAGE_TAG:-0.1.0}"
BASE="${BASE_IMAGE:-localhost/loyalty-python:3.11-bookworm}"
SUITE=bookworm  # Debian 12: Python 3.11, the version uv.lock and the Dockerfile expect
WORK="${IMAGES_WORK:-.images}"
SERVICES=("$@")
[ ${#SERVICES[@]} -gt 0 ] || SERVICES=(identity points tiers benefits insights engagement gateway)

for tool in podman debootstrap; do
  command -v "$tool" > /dev/null || {
    echo "$tool is missing: apt-get install podman buildah runc debootstrap (deploy/README.md)" >&2
    exit 1
  }
done

mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local found
  found="$(
    { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
      grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}'
    } | grep -v -- '-security' | head -n 1
  )"
  [ -n "$found" ] || { echo "no Debian mirror in the apt sources: set DEBIAN_MIRROR" >&2; exit 1; }
  echo "$found"
}

make_base() {
  # A minimal Debian with the distribution's Python 3.11, laid out like the official
  # python:3.11-slim where the Dockerfile relies on it: python3, python and pip on PATH under
  # /usr/local/bin, and pip allowed to install into the system (PEP 668 marker removed; only
  # uv is installed that way, in a build stage).
  local rootfs="$WORK/rootfs"
  rm -rf "$rootfs" && mkdir -p "$WORK"
  debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    "$SUITE" "$rootfs" "$(mirror)"
  rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
  ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python3"
  ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
  ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" --numeric-owner -c . |
    podman import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$BASE"
  rm -rf "$rootfs"
}

if ! podman image exists "$BASE"; then
  echo "== base image $BASE (debootstrap $SUITE)"
  make_base
fi

# The build steps reach PyPI with this machine's trust store, mounted for RUN steps only (not
# in any layer): where TLS is inspected by a proxy, its CA is there and not in Debian's bundle.
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
mounts=()
[ -f "$CA_BUNDLE" ] && mounts=(--volume "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")

for service in "${SERVICES[@]}"; do
  echo "== localhost/loyalty-$service:$TAG"
  podman build --layers "${mounts[@]}" \
    --file deploy/docker/Dockerfile --ignorefile deploy/docker/Dockerfile.dockerignore \
    --build-arg SERVICE="$service" --build-arg PYTHON_IMAGE="$BASE" \
    --tag "localhost/loyalty-$service:$TAG" .
done
