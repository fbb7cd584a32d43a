#!/usr/bin/env bash
# Build the lab's node image (Debian minbase + sshd + disk tools) with debootstrap
# and `podman import`; there is no registry to pull from. The tag is a hash of the
# recipe, so the image is rebuilt only when the recipe changes.
set -euo pipefail
# `build-node-image.sh --packages` prints the package list and stops (tests compare it to bindep).
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lab/versions.env
. "$here/versions.env"
# The nodes get what users install on theirs (bindep.txt, profile node, on Debian) plus
# what only the lab needs (NODE_LAB_PACKAGES), so the two lists cannot drift apart.
bindep="$here/../bindep.txt"
node_packages=$(awk '!/^#/ && NF && /\[/ {
    labels = $0; sub(/^[^[]*\[/, "", labels); sub(/\].*$/, "", labels)
    node = 0; platform = 0; debian = 0
    n = split(labels, l, " ")
    for (i = 1; i <= n; i++) {
      if (l[i] == "node") node = 1
      if (l[i] ~ /^platform:/) { platform = 1; if (l[i] == "platform:dpkg" || l[i] == "platform:debian") debian = 1 }
    }
    if (node && (!platform || debian)) print $1
  }' "$bindep" | paste -sd, -)
[ -n "$node_packages" ] || { echo "no node packages found in $bindep" >&2; exit 1; }
if [ "${1:-}" = --packages ]; then echo "$node_packages,$NODE_LAB_PACKAGES"; exit 0; fi
: "${CONTAINERS_CONF:?run through lab.py, which owns the podman configuration}"
tag=$(cat "$here/versions.env" "$here/node/node-init" "$here/node/sshd_config.d-lab.conf" "$0" "$bindep" \
  | sha256sum | cut -c1-12)
image="localhost/localpv-lab-node:$tag"
if podman image exists "$image"; then echo "$image"; exit 0; fi
cache=${LOCALPV_LAB_CACHE:-$HOME/.cache/localpv-lab}
root="$cache/rootfs-$tag"
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
debootstrap --variant=minbase --include="$node_packages,$NODE_LAB_PACKAGES" "$NODE_SUITE" "$root" >&2
install -m 0755 "$here/node/node-init" "$root/usr/local/sbin/node-init"
install -m 0644 "$here/node/sshd_config.d-lab.conf" "$root/etc/ssh/sshd_config.d/lab.conf"
rm -f "$root"/etc/ssh/ssh_host_*        # each node makes its own host keys at first boot
: > "$root/etc/fstab"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
tar -C "$root" --one-file-system -c . | podman import --change 'CMD ["/usr/local/sbin/node-init"]' - "$image" >&2
echo "$image"
