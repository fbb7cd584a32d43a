# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The changelog fragments make a clean first release: `antsibull-changelog release`
on a copy of the checkout lists every module once (under New Modules), every filter,
role and playbook, and no module again as a major or minor change."""

import os
import re
import shutil
import subprocess
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
ALLOWED = {"Release Summary", "Minor Changes", "Bugfixes", "Known Issues", "New Modules", "New Plugins",
           "New Roles", "New Playbooks"}


def checkout_copy(dest):
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = os.path.join(REPO, name)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(os.path.join(dest, name)), exist_ok=True)
            shutil.copy2(src, os.path.join(dest, name))


def sections(rst):
    """{section title: [bullet lines]} of the one release in CHANGELOG.rst."""
    found, title = {}, None
    lines = rst.splitlines()
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and re.fullmatch(r"-{3,}", lines[i + 1]) and len(lines[i + 1]) >= len(line) > 0:
            title = line
            found[title] = []
        elif title and line.startswith("- "):
            found[title].append(line[2:])
    return found


def test_first_release_lists_modules_once_and_every_role_and_playbook(tmp_path):
    copy = tmp_path / "collection"
    checkout_copy(str(copy))
    with open(os.path.join(REPO, "galaxy.yml")) as f:
        version = yaml.safe_load(f)["version"]
    res = subprocess.run([os.path.join(BIN, "antsibull-changelog"), "release", "--version", version,
                          "--date", "2026-01-01"], cwd=str(copy), capture_output=True, text=True,
                         env=dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"]), check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    notes = sections((copy / "CHANGELOG.rst").read_text())
    assert set(notes) <= ALLOWED, set(notes) - ALLOWED
    assert "Release Summary" in notes and "Major Changes" not in notes

    modules = sorted(n[:-3] for n in os.listdir(os.path.join(REPO, "plugins", "modules")) if n.endswith(".py"))
    listed = [line.split(" - ")[0] for line in notes["New Modules"]]
    assert listed == ["localpv.rollout." + m for m in modules]
    filters = sorted(n[:-3] for n in os.listdir(os.path.join(REPO, "plugins", "filter")) if n.endswith(".py"))
    assert [line.split(" - ")[0] for line in notes["New Plugins"]] == ["localpv.rollout." + f for f in filters]
    roles = sorted(os.listdir(os.path.join(REPO, "roles")))
    assert [line.split(" - ")[0] for line in notes["New Roles"]] == ["localpv.rollout." + r for r in roles]
    playbooks = sorted(n[:-4] for n in os.listdir(os.path.join(REPO, "playbooks")) if n.endswith(".yml"))
    assert [line.split(" - ")[0] for line in notes["New Playbooks"]] == ["localpv.rollout." + p for p in playbooks]
    for title, bullets in notes.items():
        if title.startswith("New "):
            continue
        for bullet in bullets:
            assert "new module" not in bullet.lower() and "new role" not in bullet.lower(), (title, bullet)
