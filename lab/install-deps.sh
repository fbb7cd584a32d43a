#!/usr/bin/env bash
# Install what a fresh Debian machine lacks to run the lab and the tests: apt packages
# (podman with runc, debootstrap, disk tools), a Python venv with the pinned
# requirements, and the collection link Ansible needs. Idempotent and quick when
# everything is there. The Go builds happen in build-control-plane.sh (lab.py up).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd -P)
cache=${LOCALPV_LAB_CACHE:-$HOME/.cache/localpv-lab}

# (the sanity test checks the shell scripts only where shellcheck is installed)
apt_packages=(podman runc conmon catatonit uidmap slirp4netns netavark aardvark-dns iptables
  containernetworking-plugins debootstrap openssh-client rsync util-linux fdisk parted xfsprogs
  e2fsprogs curl ca-certificates git make python3-venv shellcheck)
mapfile -t missing < <({ dpkg-query -W -f='${Package} ${Status}\n' "${apt_packages[@]}" 2>/dev/null \
                           | awk '$4 != "installed" {print $1}'
                         for p in "${apt_packages[@]}"; do dpkg-query -W "$p" >/dev/null 2>&1 || echo "$p"; done
                       } | sort -u)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null || ! go version | grep -qE 'go1\.(2[6-9]|[3-9][0-9])'; then
  echo "Go 1.26 or newer is needed to build the control plane (found: $(go version 2>/dev/null || echo none))" >&2
  exit 1
fi

# Python 3.11: Debian bookworm's python3, and the newest line ansible-core 2.19 supports.
py=${LOCALPV_PYTHON:-$(command -v python3.11 || command -v python3)}
venv="$cache/venv"
stamp="$venv/.requirements.sha256"
want=$(cat "$repo/requirements.txt" "$repo/requirements-dev.txt" | sha256sum | cut -c1-64)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "creating venv $venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$repo/requirements-dev.txt"
  echo "$want" > "$stamp"
fi

# Ansible finds collections as ansible_collections/<namespace>/<name>.
# One directory per checkout, named by a hash of its path (as the Makefile does).
collections=${LOCALPV_COLLECTIONS:-$cache/collections/$(printf %s "$repo" | sha256sum | cut -c1-12)}
link="$collections/ansible_collections/localpv/rollout"
mkdir -p "$(dirname "$link")"
[ "$(readlink "$link" 2>/dev/null)" = "$repo" ] || ln -sfn "$repo" "$link"
