#!/usr/bin/env bash
# Install what a fresh Debian machine lacks to run the lab and the tests: apt packages
# (podman with runc, debootstrap, disk tools), a Python venv with the pinned
# requirements, and the collection link Ansible needs. Idempotent and quick when
# everything is there. The Go builds happen in build-control-plane.sh (lab.py up).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd -P)
cache=${LOCALPV_LAB_CACHE:-$HOME/.cache/localpv-lab}

# The apt packages the lab and the tests call. tests/unit/project/test_install_deps.py checks
# this list against the commands the scripts run, and tests/integration/test_install_deps.py
# the detection below in a clean Debian root, so the two cannot drift apart.
apt_packages=(podman runc conmon catatonit uidmap slirp4netns netavark aardvark-dns iptables
  containernetworking-plugins debootstrap openssh-client util-linux fdisk parted xfsprogs
  e2fsprogs iproute2 curl ca-certificates git make python3-venv shellcheck)

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
# The pinned ansible-core (requirements-dev.txt) decides the Python of the project's venv.
# shellcheck source=lab/python.sh
. "$here/python.sh"
pinned_core() { sed -n 's/^ansible-core==\([0-9]*\.[0-9]*\).*/\1/p' "$repo/requirements-dev.txt"; }
# venv_path: the venv for this Python and these requirements. Named by both, so that a
# venv of other pins (another checkout, an older branch) stays as it is beside it.
venv_path() {
  local py version
  py=$(python_for "$(pinned_core)") || return 1
  version=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
  echo "$cache/venv-py$version-$(cat "$repo/requirements.txt" "$repo/requirements-dev.txt" | sha256sum | cut -c1-12)"
}
case "${1:-}" in
  --missing) missing_packages "${2:-}"; exit 0 ;;
  --packages) printf '%s\n' "${apt_packages[@]}"; exit 0 ;;
  --venv) venv_path; exit ;;       # where the venv is (the Makefile asks), nothing installed
esac

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

core=$(pinned_core)
py=$(python_for "$core")
venv=$(venv_path)
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  echo "creating venv $venv ($("$py" --version), ansible-core $core)"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$repo/requirements-dev.txt"
  # written last: a venv whose install was interrupted is made again
  touch "$venv/.complete"
fi

# Ansible finds collections as ansible_collections/<namespace>/<name>.
# One directory per checkout, named by a hash of its path (as the Makefile does).
collections=${LOCALPV_COLLECTIONS:-$cache/collections/$(printf %s "$repo" | sha256sum | cut -c1-12)}
link="$collections/ansible_collections/localpv/rollout"
mkdir -p "$(dirname "$link")"
[ "$(readlink "$link" 2>/dev/null)" = "$repo" ] || ln -sfn "$repo" "$link"
