# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection users install: built by ansible-galaxy, without the lab, tests or
caches, and installable."""

import os
import subprocess
import sys
import tarfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def galaxy(*args, cwd=REPO):
    res = subprocess.run([os.path.join(BIN, "ansible-galaxy")] + list(args), cwd=cwd,
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


# What users get: every tracked file under these directories, these files, and nothing else.
SHIPPED_DIRS = ("plugins", "roles", "playbooks", "docs", "deploy", "meta")
SHIPPED_FILES = ("README.md", "bindep.txt", "requirements.txt", "changelogs/changelog.yaml",
                 "changelogs/config.yaml", "MANIFEST.json", "FILES.json")


def shipped():
    tracked = subprocess.run(["git", "ls-files", "--"] + list(SHIPPED_DIRS), cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    return sorted(set(tracked) | set(SHIPPED_FILES))


def test_built_collection_holds_exactly_what_users_need_and_installs(tmp_path):
    galaxy("collection", "build", "--output-path", str(tmp_path))
    (tarball,) = [p for p in tmp_path.iterdir() if p.name.endswith(".tar.gz")]
    assert tarball.name == "localpv-rollout-0.1.0.tar.gz"
    with tarfile.open(tarball) as tar:
        names = sorted(m.name for m in tar.getmembers() if not m.isdir())
    # no lab, tests, CI, dev requirements, ansible.cfg, pytest.ini, changelog fragments or caches
    assert names == shipped()
    for wanted in ("meta/runtime.yml", "meta/execution-environment.yml", "plugins/modules/local_pv.py",
                   "roles/disk_prep/tasks/main.yml", "playbooks/site.yml", "deploy/rbac/localpv-rollout-clusterrole.yaml"):
        assert wanted in names, wanted

    dest = tmp_path / "installed"
    # --no-deps: the dependencies come from the ansible package here, not from Galaxy
    galaxy("collection", "install", "--no-deps", "-p", str(dest), str(tarball))
    listed = galaxy("collection", "list", "-p", str(dest), "localpv.rollout").stdout
    assert "localpv.rollout" in listed and "0.1.0" in listed
