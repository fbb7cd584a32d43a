#!/usr/bin/env bash
# The versions the collection claims, tested: unit tests and `ansible-test sanity` on
# every ansible-core minor from meta/runtime.yml's requires_ansible up to the one
# requirements-dev.txt pins, each on a Python that core runs on (lab/python.sh says which;
# a core whose Python this machine lacks FAILS its jobs, it is never skipped), and the
# unit tests on the oldest core with the lowest kubernetes.core that galaxy.yml allows and
# with the lowest Python library kubernetes requirements.txt allows. Each job has its own
# venv under the lab cache (outside the checkout); jobs run in parallel
# (LOCALPV_MATRIX_JOBS at a time, default 2) and their logs go to $cache/matrix/logs.
# Prints one line per job with its result, seconds and Python.
#   tests/matrix/run.sh            # everything
#   tests/matrix/run.sh unit       # unit tests only
# LOCALPV_MATRIX_SKIP_PINNED=1 leaves out the pinned ansible-core, which `make unit` and
# `make sanity` test already (the Makefile's `matrix` target sets it).
# shellcheck disable=SC2317 # the job functions are called through "$@"
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd -P)
cache=${LOCALPV_LAB_CACHE:-$HOME/.cache/localpv-lab}
matrix="$cache/matrix"
# shellcheck source=lab/python.sh
. "$repo/lab/python.sh"
what=${1:-all}
parallel=${LOCALPV_MATRIX_JOBS:-2}
mkdir -p "$matrix/logs"

pin() { sed -n "s/^$1==//p" "$repo/requirements-dev.txt"; }
newest=$(pin ansible-core | cut -d. -f1,2)
oldest=$(sed -n 's/^requires_ansible: *">=\([0-9]*\.[0-9]*\).*/\1/p' "$repo/meta/runtime.yml")
kcore_min=$(sed -n 's/^ *kubernetes.core: *">=\([0-9.]*\),.*/\1/p' "$repo/galaxy.yml")
kubernetes_min=$(sed -n 's/^kubernetes>=\([0-9.]*\).*/\1/p' "$repo/requirements.txt")
kubernetes_pin=$(pin kubernetes)
# The ansible release that bundles that lowest kubernetes.core (Galaxy is not needed).
kcore_carrier=11.0.0
minors=""
minor=${oldest#*.}
while [ "$minor" -le "${newest#*.}" ]; do minors="$minors ${oldest%%.*}.$minor"; minor=$((minor + 1)); done

venv_for() {  # venv_for CORE-MINOR NAME PIP-ARGS...: a venv with these packages and pytest, made once per set
  local py version venv want
  py=$(python_for "$1") || return 1
  version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  venv="$matrix/venv-$2-py$version"
  shift 2
  want=$(printf '%s\n' "$@" "pytest==$(pin pytest)" | sha256sum | cut -c1-16)
  if [ "$(cat "$venv/.want" 2>/dev/null)" != "$want" ]; then
    rm -rf "$venv" && "$py" -m venv "$venv" >&2
    "$venv/bin/pip" install -q "$@" "pytest==$(pin pytest)" >&2
    echo "$want" > "$venv/.want"
  fi
  echo "$venv"
}

collections_for() {  # collections_for NAME KCORE-DIR: ansible_collections with us and that kubernetes.core
  local root="$matrix/collections-$1/ansible_collections"
  mkdir -p "$root/localpv" "$root/kubernetes"
  ln -sfn "$repo" "$root/localpv/rollout"
  rm -rf "$root/kubernetes/core" && cp -r "$2" "$root/kubernetes/core"
  dirname "$root"
}

bundled_kcore() {  # the kubernetes.core of the project's venv (the pinned ansible package)
  echo "$(LOCALPV_LAB_CACHE=$cache bash "$repo/lab/install-deps.sh" --venv)"/lib/python3*/site-packages/ansible_collections/kubernetes/core
}

lowest_kcore() {  # kubernetes.core $kcore_min, taken from the ansible release that bundles it
  local py dir="$matrix/kubernetes.core-$kcore_min"
  if [ ! -f "$dir/MANIFEST.json" ]; then
    rm -rf "$matrix/carrier" && mkdir -p "$matrix/carrier"
    # pip from the oldest core's venv: a pyenv Python may come without pip
    py=$(venv_for "$oldest" "core-$oldest" "ansible-core==$oldest.*" "kubernetes==$kubernetes_pin")/bin/python || return 1
    "$py" -m pip download -q --no-deps --only-binary :all: -d "$matrix/carrier" "ansible==$kcore_carrier"
    "$py" - "$matrix/carrier" <<'PY'
import glob, sys, zipfile
with zipfile.ZipFile(glob.glob(sys.argv[1] + "/ansible-*.whl")[0]) as wheel:
    wheel.extractall(sys.argv[1], [n for n in wheel.namelist() if n.startswith("ansible_collections/kubernetes/core/")])
PY
    rm -rf "$dir" && mv "$matrix/carrier/ansible_collections/kubernetes/core" "$dir"
    rm -rf "$matrix/carrier"
  fi
  grep -q "\"version\": \"$kcore_min\"" "$dir/MANIFEST.json" \
    || { echo "ansible==$kcore_carrier does not bundle kubernetes.core $kcore_min" >&2; return 1; }
  echo "$dir"
}

job_unit() {  # job_unit CORE-MINOR [KCORE-DIR|-] [KUBERNETES-VERSION]
  local venv roots kcore=${2:--} name="core-$1"
  if [ "$kcore" = - ]; then kcore=$(bundled_kcore); else name="$name-kubernetes.core-low"; fi
  [ -z "${3:-}" ] || name="$name-kubernetes-$3"
  venv=$(venv_for "$1" "$name" "ansible-core==$1.*" "kubernetes==${3:-$kubernetes_pin}") || return 1
  roots=$(collections_for "$name" "$kcore")
  echo "Python: $("$venv/bin/python" --version)"
  (cd "$repo" && LOCALPV_COLLECTIONS=$roots "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit)
}

job_sanity() {  # job_sanity CORE-MINOR (its last line, the one run_job prints, counts the tests)
  LOCALPV_SANITY_CORE="$1.*" bash "$repo/tests/sanity/run.sh" || return
  echo "$(grep -c '^Running sanity test' "$matrix/logs/sanity-core-$1.log") sanity tests passed"
}

run_job() {  # run_job NAME COMMAND...: log to a file, print "NAME rc seconds"
  local name=$1 start rc=0
  shift
  start=$(date +%s)
  "$@" > "$matrix/logs/$name.log" 2>&1 || rc=$?
  printf '%-24s %-4s %4ss  %s\n' "$name" "$([ $rc = 0 ] && echo ok || echo FAIL)" \
    "$(( $(date +%s) - start ))" "$(tail -n1 "$matrix/logs/$name.log")"
  return $rc
}

jobs=()
for m in $minors; do
  if [ "${LOCALPV_MATRIX_SKIP_PINNED:-}" = 1 ] && [ "$m" = "$newest" ]; then continue; fi
  [ "$what" = sanity ] || jobs+=("unit-core-$m job_unit $m")
  [ "$what" = unit ] || jobs+=("sanity-core-$m job_sanity $m")
done
# the lowest libraries with the oldest core: the combination a user who pinned both has
[ "$what" = sanity ] || jobs+=("unit-kubernetes.core-$kcore_min job_unit $oldest LOWEST_KCORE"
                              "unit-kubernetes-$kubernetes_min job_unit $oldest - $kubernetes_min")

echo "matrix: ansible-core$minors; kubernetes.core $kcore_min and kubernetes $kubernetes_min (lowest allowed," \
  "on ansible-core $oldest); $parallel jobs at a time"
for m in $minors; do
  printf '  ansible-core %s on %s\n' "$m" "$(python_for "$m" 2>&1)"
done
start=$(date +%s)
failed=0
running=0
kcore_dir=""
for job in "${jobs[@]}"; do
  # shellcheck disable=SC2086
  set -- $job
  if [ "${4:-}" = LOWEST_KCORE ]; then
    kcore_dir=$(lowest_kcore) || { echo "$1 FAIL (kubernetes.core $kcore_min not found)"; failed=1; continue; }
    set -- "$1" "$2" "$3" "$kcore_dir"
  fi
  run_job "$@" &
  running=$((running + 1))
  if [ "$running" -ge "$parallel" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
echo "matrix: $([ $failed = 0 ] && echo passed || echo FAILED) in $(( $(date +%s) - start ))s"
exit $failed
