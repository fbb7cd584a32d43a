# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""lab/python.sh: the installer, the matrix and sanity find a Python each ansible-core
runs on, on PATH or under pyenv, and fail with a message when there is none (a matrix
job then fails; it is never skipped)."""

import os
import subprocess
import sys

from conftest import REPO

FINDER = os.path.join(REPO, "lab", "python.sh")


def python_for(core, path, pyenv_root):
    env = {"PATH": path, "PYENV_ROOT": str(pyenv_root), "HOME": str(pyenv_root)}
    return subprocess.run(["/bin/bash", "-c", '. "$0"; python_for "$1"', FINDER, core], capture_output=True, text=True,
                          env=env, check=False)


def test_a_core_without_its_python_fails_and_says_which_python_to_install(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    res = python_for("2.21", "%s:/usr/bin:/bin" % empty, tmp_path / "no-pyenv")
    if res.returncode == 0:   # this machine has a 3.12 or 3.13 in /usr/bin: the finder may use it
        assert os.path.basename(res.stdout.strip()).startswith(("python3.12", "python3.13"))
        return
    assert res.stdout == ""
    assert "ansible-core 2.21 needs Python 3.13 or 3.12; none was found" in res.stderr
    assert "LOCALPV_PYTHON" in res.stderr


def test_a_python_under_pyenv_is_found_and_the_newest_patch_wins(tmp_path):
    minor = "%d.%d" % sys.version_info[:2]
    for patch in ("0", "10", "9"):
        bin_dir = tmp_path / "versions" / ("%s.%s" % (minor, patch)) / "bin"
        bin_dir.mkdir(parents=True)
        os.symlink(sys.executable, bin_dir / ("python" + minor))
    core = {"3.11": "2.16", "3.12": "2.21", "3.13": "2.21"}[minor]
    res = python_for(core, "/usr/bin:/bin", tmp_path)
    assert res.returncode == 0, res.stderr
    if res.stdout.startswith("/usr/bin/"):    # this machine has that Python installed: it comes first
        return
    assert res.stdout.strip() == str(tmp_path / "versions" / ("%s.10" % minor) / "bin" / ("python" + minor))


def test_a_pyenv_shim_without_its_version_is_not_taken(tmp_path):
    shims = tmp_path / "shims"
    shims.mkdir()
    shim = shims / "python3.13"
    shim.write_text("#!/bin/sh\necho 'pyenv: python3.13: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    res = python_for("2.21", "%s:/usr/bin:/bin" % shims, tmp_path / "no-pyenv")
    assert str(shim) not in res.stdout
