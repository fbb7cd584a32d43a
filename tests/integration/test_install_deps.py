# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""lab/install-deps.sh on a machine that has nothing: a clean Debian bookworm root
(debootstrap --variant=minbase, made once into the lab cache, about two minutes),
with the installer run inside it by chroot and apt in simulate mode (apt-get -s
against the root's own package lists: nothing is installed or downloaded). Every
package the installer needs and the root lacks must be named, and apt must be able to
install them all. Needs root and debootstrap, as the lab does."""

import os
import re
import shutil
import subprocess

import pytest

from conftest import CACHE, REPO

SUITE = "bookworm"
ROOT = os.path.join(CACHE, "clean-root-" + SUITE)
STAMP = os.path.join(ROOT, ".localpv-clean-root")
RECIPE = "debootstrap --variant=minbase " + SUITE
# apt as the installer calls it, in simulate mode: `update` needs no network here (the
# root has debootstrap's lists) and `install` says what it would install.
SIMULATED_APT = """#!/bin/sh
case "$1" in update) exit 0 ;; esac
/usr/bin/apt-get -s -o Debug::NoLocking=1 "$@" > /tmp/apt-simulated.log 2>&1
"""


def _unmount_below(root):
    mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True,
                            check=False).stdout.split()
    for target in sorted((m for m in mounts if m.startswith(root + "/")), reverse=True):
        subprocess.run(["umount", "-l", target], check=False)


@pytest.fixture(scope="module")
def clean_root():
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        pytest.fail("a clean Debian root needs root and debootstrap (lab/install-deps.sh installs it)")
    if not os.path.exists(STAMP) or open(STAMP).read().strip() != RECIPE:
        _unmount_below(ROOT)
        shutil.rmtree(ROOT, ignore_errors=True)
        res = subprocess.run(["debootstrap", "--variant=minbase", SUITE, ROOT], capture_output=True, text=True,
                             check=False)
        _unmount_below(ROOT)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        with open(STAMP, "w") as f:
            f.write(RECIPE + "\n")
    return ROOT


def installed_in(root):
    """The packages dpkg records as installed in ``root``, read from its status file."""
    with open(os.path.join(root, "var", "lib", "dpkg", "status")) as f:
        stanzas = f.read().split("\n\n")
    names = set()
    for stanza in stanzas:
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", stanza, re.M))
        if fields.get("Status") == "install ok installed":
            names.add(fields["Package"])
    return names


def needed_packages():
    """The installer's apt_packages, read from its text (nothing of it is run on this host)."""
    with open(os.path.join(REPO, "lab", "install-deps.sh")) as f:
        (listed,) = re.findall(r"^apt_packages=\(([^)]*)\)", f.read(), re.M)
    return listed.split()


def run_installer_in(root, script_text, tmp_name):
    """Run an install-deps.sh (its text) inside ``root`` with apt simulated; returns
    (the process, the apt log)."""
    work = os.path.join(root, "tmp", tmp_name)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(work, "lab"))
    os.makedirs(os.path.join(work, "sim"))
    try:
        with open(os.path.join(work, "lab", "install-deps.sh"), "w") as f:
            f.write(script_text)
        # what it sources beside it
        shutil.copy(os.path.join(REPO, "lab", "python.sh"), os.path.join(work, "lab"))
        with open(os.path.join(work, "sim", "apt-get"), "w") as f:
            f.write(SIMULATED_APT.replace("/tmp/apt-simulated.log", "/tmp/%s/apt.log" % tmp_name))
        os.chmod(os.path.join(work, "sim", "apt-get"), 0o755)
        inside = "/tmp/" + tmp_name
        # a machine has /proc and /dev (bash's process substitution needs /dev/fd): mounted
        # in a mount namespace of its own, so they go away with it
        res = subprocess.run(["unshare", "--mount", "--fork", "sh", "-c",
                              'mount -t proc proc "$1/proc" && mount --bind /dev "$1/dev" && shift && exec "$@"',
                              "-", root, "chroot", root, "/usr/bin/env", "-i", "HOME=/root", "LANG=C",
                              "PATH=%s/sim:/usr/sbin:/usr/bin:/sbin:/bin" % inside,
                              "bash", inside + "/lab/install-deps.sh"],
                             capture_output=True, text=True, check=False, timeout=600)
        log = os.path.join(work, "apt.log")
        return res, (open(log).read() if os.path.exists(log) else "")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_a_fresh_debian_root_gets_every_package_it_lacks_named_and_installable(clean_root):
    with open(os.path.join(REPO, "lab", "install-deps.sh")) as f:
        res, apt_log = run_installer_in(clean_root, f.read(), "install-deps-test")
    lacking = [p for p in needed_packages() if p not in installed_in(clean_root)]
    said = [line for line in res.stdout.splitlines() if line.startswith("installing apt packages: ")]
    assert said == ["installing apt packages: " + " ".join(lacking)], res.stdout + res.stderr
    # the root lacks most of them (podman, debootstrap, fdisk, xfsprogs, shellcheck...)
    assert {"podman", "runc", "debootstrap", "fdisk", "xfsprogs", "shellcheck", "iproute2"} <= set(lacking)
    # apt, simulating, would install every one of them: each name exists in the suite
    for package in lacking:
        assert re.search(r"^Inst %s " % re.escape(package), apt_log, re.M), (package, apt_log[-2000:])
    # the run then stops at the Go check (this root has no Go), saying so
    assert res.returncode == 1 and "Go 1.26 or newer is needed" in res.stderr


def test_the_detection_alone_names_what_a_fresh_root_lacks(clean_root):
    res = subprocess.run(["bash", os.path.join(REPO, "lab", "install-deps.sh"), "--missing",
                          os.path.join(clean_root, "var", "lib", "dpkg")], capture_output=True, text=True, check=True)
    lacking = [p for p in needed_packages() if p not in installed_in(clean_root)]
    assert len(lacking) > 15 and res.stdout.split() == lacking
