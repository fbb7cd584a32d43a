#!/usr/bin/env bash
# Install what a fresh Debian machine lacks to run the lab and the tests: apt packages
# (podman with runc, debootstrap, disk tools), a Python venv with the pinned
# requirements, and the collection link Ansible needs. Idempotent and quick when
# everything is there. The Go builds happen in build-control-plane.sh (lab.py up).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd -P)
cache=${LOCALPV_LAB_CACHE:-$HOME/.cache/localpv-lab}

# The apt packages the lab and the tests call. tests/unit/test_install_deps.py checks
# this list against the commands the scripts run, and tests/integration/test_install_deps.py
# the detection below in a clean Debian root, so the two cannot drift apart.
apt_packages=(podman runc conmon catatonit uidmap slirp4netns netavark aardvark-dns iptables
  containernetworking-plugins debootstrap openssh-client util-linux fdisk parted xfsprogs
  e2fsprogs iproute2 curl ca-certificates git make python3 python3-venv shellcheck)

# missing_packages [DPKG-ADMINDIR]: the packages of apt_packages not installed, one a line.
# Asked one package at a time: dpkg-query exits non-zero for a package it has never heard
# of, and under `set -e` a query for all of them at once stopped at the first unknown one.
missing_packages() {
  local p status admindir=()
  [ -z "${1:-}" ] || admindir=(--admindir="$1")
  for p in "${apt_packages[@]}"; do
    status=$(dpkg-query "${admindir[@]}" -W -f='${Status}' "$p" 2>/dev/null) || status=
    [ "$status" = "install ok installed" ] || echo "$p"
  done
}
if [ "${1:-}" = --missing ]; then missing_packages "${2:-}"; exit 0; fi
if [ "${1:-}" = --packages ]; then printf '%s\n' "${apt_packages[@]}"; exit 0; fi

missing=()
while IFS= read -r p; do missing+=("$p"); done < <(missing_packages)
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
