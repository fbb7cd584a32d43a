#!/usr/bin/env bash
# Run `ansible-test sanity` on a copy of the checkout placed where ansible-test wants it
# (ansible_collections/localpv/rollout). Locally, no containers: the test-specific
# tools go into ansible-test's own venvs (--venv --requirements).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${LOCALPV_LAB_CACHE:-$HOME/.cache/localpv-lab}
dest="$cache/sanity/ansible_collections/localpv/rollout"
rm -rf "$dest" && mkdir -p "$dest"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents -P {} "$dest/" 2>/dev/null || true)
cd "$dest"
# ansible-test lists the collection's files with git when it is a git tree
git init -q && git add -A >/dev/null
"$cache/venv/bin/ansible-test" sanity --venv --requirements --python 3.11 --color no "$@"
