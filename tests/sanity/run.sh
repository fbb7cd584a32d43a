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
if [ "$core" = "$pinned" ]; then venv="$cache/sanity-venv"; else venv="$cache/matrix/sanity-venv-${core%.\*}"; fi
if [ ! -x "$venv/bin/ansible-test" ] || ! "$venv/bin/ansible-test" --version | grep -qF "version ${core%\*}"; then
  python_bin=${LOCALPV_PYTHON:-$(command -v python3.11 || command -v python3)}
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
bundled=$(echo "$cache"/venv/lib/python3*/site-packages/ansible_collections)
for c in kubernetes/core community/general ansible/posix; do
  mkdir -p "$root/$(dirname "$c")"
  [ -e "$root/$c" ] || cp -r "$bundled/$c" "$root/$c"
done
# ansible-test fetches its pip bootstrap script from a host outside PyPI; give it ours
pip_version=$(sed -n "s/^ *pip='\([0-9.]*\)',\$/\1/p" \
  "$venv"/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py | head -n1)
mkdir -p "$HOME/.ansible/test/cache"
cp "$repo/tests/sanity/get_pip.py" "$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
cd "$dest"
# ansible-test lists the collection's files with git when it is a git tree
git init -q && git add -A >/dev/null
"$venv/bin/ansible-test" sanity --requirements --python 3.11 --color no "$@"
