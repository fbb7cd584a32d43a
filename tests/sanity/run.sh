#!/usr/bin/env bash
# Run `ansible-test sanity` on a copy of the checkout placed where ansible-test wants
# it (ansible_collections/localpv/rollout), locally, without containers. The tools
# the sanity tests need go into a venv of their own (ansible-test pins them and would
# otherwise change the project's venv); the collections we depend on sit beside ours
# so that the import tests can load them.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd -P)
cache=${LOCALPV_LAB_CACHE:-$HOME/.cache/localpv-lab}
# LOCALPV_SANITY_CORE (e.g. "2.16.*", tests/matrix/run.sh sets it) tests another
# ansible-core in a venv of its own; the default is the pinned one.
pinned=$(sed -n 's/^ansible-core==//p' "$repo/requirements-dev.txt")
core=${LOCALPV_SANITY_CORE:-$pinned}
minor=$(echo "$core" | cut -d. -f1,2)
# shellcheck source=lab/python.sh
. "$repo/lab/python.sh"
python_bin=$(python_for "$minor")
python_version=$("$python_bin" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# one venv per core and Python, beside (never instead of) those of other pins
venv="$cache/matrix/sanity-venv-$minor-py$python_version"
if [ ! -x "$venv/bin/ansible-test" ] || ! "$venv/bin/ansible-test" --version | grep -qF "version ${core%\*}"; then
  rm -rf "$venv"
  "$python_bin" -m venv "$venv"
  "$venv/bin/pip" install -q "ansible-core==$core" -r "$repo/requirements.txt"
fi
# one copy per checkout and ansible-core, so that two of them can run sanity at once
root="$cache/sanity/$(printf %s "$repo$core" | sha256sum | cut -c1-12)/ansible_collections"
dest="$root/localpv/rollout"
rm -rf "$dest" && mkdir -p "$dest"
# shellcheck disable=SC2016 # $1 and $2 are the inner shell's arguments
(cd "$repo" && git ls-files -z --cached --others --exclude-standard \
  | xargs -0 -I{} sh -c 'test -e "$1" && cp --parents -P "$1" "$2/"' _ {} "$dest")
# the collections of the project's venv (the ansible package of requirements-dev.txt)
project_venv=$(LOCALPV_LAB_CACHE=$cache bash "$repo/lab/install-deps.sh" --venv)
bundled=$(echo "$project_venv"/lib/python3*/site-packages/ansible_collections)
for c in kubernetes/core community/general ansible/posix; do
  mkdir -p "$root/$(dirname "$c")"
  [ -e "$root/$c" ] || cp -r "$bundled/$c" "$root/$c"
done
# ansible-test fetches its pip bootstrap script from a host outside PyPI; give it ours
pip_version=$(sed -n "s/^ *pip='\([0-9.]*\)',\$/\1/p" \
  "$venv"/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py | head -n1)
# ansible-test keeps its cache in ~/.ansible/test: a home of its own in the lab cache
export HOME="$cache/home/ansible-test"
mkdir -p "$HOME/.ansible/test/cache"
cp "$repo/tests/sanity/get_pip.py" "$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
cd "$dest"
# ansible-test lists the collection's files with git when it is a git tree
git init -q && git add -A >/dev/null
"$venv/bin/ansible-test" sanity --requirements --python "$python_version" --color no "$@"
