# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make test`'s tools write nothing outside the checkout and the lab cache: with HOME
pointed at an empty directory, `make lint build site` (ansible-lint, which installs
the collection it lints; ansible-galaxy; ansible-playbook against the lab) leaves it
empty. (A fresh HOME rather than a look at the real ~/.ansible: on a shared machine
someone else's tools may write there meanwhile.)"""

import os
import subprocess
import sys

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


RUN_OUTSIDE_MAKE = """
import json, os, sys
sys.path.insert(0, os.path.join(sys.argv[1], "tests"))
import conftest
with open(os.path.join(conftest.STATE, "lab.json")) as f:
    lab = conftest.Lab(json.load(f))
res = lab.playbook(sys.argv[2])
print(res.stdout[-2000:], res.stderr[-2000:])
sys.exit(res.returncode)
"""


def test_a_playbook_the_tests_or_benches_run_outside_make_leaves_home_as_it_found_it(lab, tmp_path):
    # bench/ scripts are started by hand, without the Makefile's tool homes: the lab's
    # environment gives Ansible its home in the lab cache all the same
    home = tmp_path / "home"
    home.mkdir()
    playbook = tmp_path / "ping.yml"
    playbook.write_text("- hosts: nodes\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping:\n")
    env = {k: val for k, val in os.environ.items()
           if not k.startswith(("ANSIBLE_", "XDG_", "KUBECACHEDIR", "LOCALPV_COLLECTIONS"))}
    env.update(HOME=str(home), LAB_CACHE=CACHE, LOCALPV_LAB_STATE=STATE)
    res = subprocess.run([sys.executable, "-c", RUN_OUTSIDE_MAKE, REPO, str(playbook)], env=env,
                         capture_output=True, text=True, check=False, timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert tree(str(home)) == {}
