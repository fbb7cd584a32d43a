#!/usr/bin/env bash
# Build the base image of the execution environment (lab/ee.py build): Debian minbase
# with what ansible-builder's Containerfile runs in it (python3 and pip for its
# pip installs and introspect.py, venv for its `assemble` script, dpkg for bindep,
# apt-get as its package manager) and what Ansible needs on a controller (ssh).
# No image registry is reachable, so it is made like the node image: debootstrap and
# `podman import`. The tag is a hash of the recipe and of the machine's CA bundle.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lab/versions.env
. "$here/versions.env"
: "${CONTAINERS_CONF:?run through lab/ee.py, which sets the podman configuration of the lab}"
packages=python3,python3-pip,python3-venv,openssh-client,ca-certificates
# pip inside the builds reaches PyPI only through the machine's TLS set-up: the
# image carries the machine's CA bundle and pip is told to use it.
bundle=/etc/ssl/certs/ca-certificates.crt
[ -r "$bundle" ] || { echo "no CA bundle at $bundle" >&2; exit 1; }
tag=$(cat "$here/versions.env" "$0" "$bundle" | sha256sum | cut -c1-12)
image="localhost/localpv-ee-base:$tag"
if podman image exists "$image"; then echo "$image"; exit 0; fi
cache=${LOCALPV_LAB_CACHE:-$HOME/.cache/localpv-lab}
root="$cache/ee-rootfs-$tag"
clean_root() {
  # debootstrap mounts /proc (and may bind /dev) inside the tree: unmount before
  # removing, and never cross into another filesystem
  if [ -d "$root" ]; then
    { findmnt -rn -o TARGET | grep -F "$root/" || true; } | sort -r | xargs -r -n1 umount -l
    rm -rf --one-file-system "$root"
  fi
  return 0
}
trap clean_root EXIT
clean_root
echo "debootstrap $NODE_SUITE into $root" >&2
debootstrap --variant=minbase --include="$packages" "$NODE_SUITE" "$root" >&2
install -m 0644 "$bundle" "$root/etc/ssl/certs/ca-certificates.crt"
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$root/etc/pip.conf"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
tar -C "$root" --one-file-system -c . | podman import --change 'CMD ["/bin/bash"]' - "$image" >&2
echo "$image"
