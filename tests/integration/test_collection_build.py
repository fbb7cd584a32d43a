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


def test_built_collection_holds_the_plugins_and_roles_but_not_the_lab(tmp_path):
    galaxy("collection", "build", "--output-path", str(tmp_path))
    (tarball,) = [p for p in tmp_path.iterdir() if p.name.endswith(".tar.gz")]
    assert tarball.name == "localpv-rollout-0.1.0.tar.gz"
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    for wanted in ("MANIFEST.json", "meta/runtime.yml", "plugins/modules/local_pv.py",
                   "plugins/module_utils/volumes.py", "roles/disk_prep/tasks/main.yml",
                   "playbooks/site.yml", "README.md"):
        assert wanted in names, wanted
    for name in names:
        top = name.split("/")[0]
        assert top not in ("lab", "bench", "molecule", ".ci", ".git"), name
        assert not name.startswith("tests/integration"), name
        assert "__pycache__" not in name and ".pytest_cache" not in name, name

    dest = tmp_path / "installed"
    # --no-deps: the dependencies come from the ansible package here, not from Galaxy
    galaxy("collection", "install", "--no-deps", "-p", str(dest), str(tarball))
    listed = galaxy("collection", "list", "-p", str(dest), "localpv.rollout").stdout
    assert "localpv.rollout" in listed and "0.1.0" in listed
