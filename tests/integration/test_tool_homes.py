# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make test`'s tools write nothing outside the checkout and the lab cache: with HOME
pointed at an empty directory, `make lint build site` (ansible-lint, which installs
the collection it lints; ansible-galaxy; ansible-playbook against the lab) leaves it
empty. (A fresh HOME rather than a look at the real ~/.ansible: on a shared machine
someone else's tools may write there meanwhile.)"""

import os
import subprocess

from conftest import CACHE, REPO, STATE


def tree(path):
    """{relative path: (size, mtime)} of every file and directory under ``path``."""
    found = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            st = os.lstat(full)
            found[os.path.relpath(full, path)] = (st.st_size, st.st_mtime_ns)
    return found


def test_make_lint_build_and_site_leave_home_as_they_found_it(lab, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    pyenv_root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False).stdout.strip()
    env = {k: val for k, val in os.environ.items()
           if not k.startswith(("ANSIBLE_", "XDG_", "VIRTUAL_ENV", "LOCALPV_COLLECTIONS"))}
    env.update(HOME=str(home), LAB_CACHE=CACHE, LOCALPV_LAB_STATE=STATE,
               PYENV_ROOT=pyenv_root or os.path.expanduser("~/.pyenv"))
    res = subprocess.run(["make", "-s", "lint", "build", "site"], cwd=REPO, env=env, capture_output=True,
                         text=True, check=False, timeout=1800)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert tree(str(home)) == {}
