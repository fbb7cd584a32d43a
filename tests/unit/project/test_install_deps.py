# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The installer's package list and the commands the lab, the Makefile, CI and the
tests run on this machine cannot drift apart: each such command belongs to a package
the installer installs or to Debian's base system (what debootstrap --variant=minbase
gives), and each package the installer names serves a command or says what it is for.
The detection itself is tested in a clean Debian root in tests/integration/test_install_deps.py."""

import glob
import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO

INSTALLER = os.path.join(REPO, "lab", "install-deps.sh")
# Host-side callers: what runs on the machine, not inside a lab node.
CALLERS = ["lab/*.sh", "lab/lab.py", "Makefile", ".ci/run", "tests/matrix/run.sh", "tests/sanity/run.sh",
           "tests/conftest.py", "tests/integration/*.py", "bench/*.py"]
# Packages no script calls by name, and what needs them.
INDIRECT = {
    "runc": "podman's OCI runtime (crun fails on this kernel's hybrid cgroups)",
    "conmon": "podman's container monitor", "catatonit": "podman's init for --init",
    "uidmap": "podman's user namespaces", "slirp4netns": "podman's rootless network",
    "netavark": "podman's network backend", "aardvark-dns": "netavark's DNS",
    "iptables": "netavark's port publishing", "containernetworking-plugins": "podman's CNI plugins",
    "ca-certificates": "TLS for pip and the Go module downloads",
    "python3-venv": "Debian's Python 3.11 with venv, for the older cores' matrix jobs where pyenv has no 3.11",
    "e2fsprogs": "mkfs.ext4 and the lab's disk checks (base on older Debian, not in minbase)",
    "xfsprogs": "mkfs.xfs for the lab's disk checks",
    "fdisk": "sfdisk, which the lab and the tests use to lay out loop disks",
    "parted": "the lab's partition fixtures",
    "util-linux": "losetup, partx, wipefs, blkid, flock",
    "shellcheck": "ansible-test sanity's shellcheck test of the lab's scripts",
}
# Commands the issue that added this test named: the host must have each of them.
NAMED = ("podman", "debootstrap", "sfdisk", "mkfs.xfs", "mkfs.ext4", "shellcheck", "partx", "losetup", "wipefs",
         "blkid", "ss", "ssh", "git", "make", "curl")
_SEPARATORS = re.compile(r"\|\||&&|[|;(){}`]|\$\(|\bthen\b|\bdo\b|\belse\b")
_WRAPPERS = {"command", "exec", "nice", "timeout", "sudo", "xargs", "env", "!", "time", "-v", "-r", "-n", "-0",
             "-I{}", "-n1", "setsid", "-f"}


def packages():
    out = subprocess.run(["bash", INSTALLER, "--packages"], capture_output=True, text=True, check=True).stdout
    return out.split()


# Words in command position that are not commands run on the host.
NOT_COMMANDS = {"node": "a variable of the awk program in build-node-image.sh"}


def _shell_commands(text):
    # a heredoc is another language's text (python in tests/matrix/run.sh)
    text = re.sub(r"<<-?'?(\w+)'?\n.*?\n\1\n", "\n", text, flags=re.S)
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line.startswith("#"):
            continue
        for part in _SEPARATORS.split(line):
            words = [w for w in part.split() if not re.match(r"^\w+=", w)]
            while words and (words[0] in _WRAPPERS or re.match(r"^-?\d+$", words[0])):
                words = words[1:]
            if words and re.match(r"^[a-z][a-z0-9_.+-]*$", words[0]) and words[0] not in NOT_COMMANDS:
                yield words[0]


def _python_commands(text):
    # the first item of a list literal: run(["podman", "ps"]) and friends
    for match in re.finditer(r"""\[\s*["']([a-z][a-z0-9_.+-]*)["']\s*,""", text):
        yield match.group(1)
    for match in re.finditer(r"""shutil\.which\(\s*["']([a-z][a-z0-9_.+-]*)["']""", text):
        yield match.group(1)


def called_commands():
    """{command: [files]} of the words in command position of the host-side callers."""
    found = {}
    for pattern in CALLERS:
        for path in glob.glob(os.path.join(REPO, pattern)):
            with open(path) as f:
                text = f.read()
            words = _python_commands(text) if path.endswith(".py") else _shell_commands(text)
            for word in words:
                found.setdefault(word, set()).add(os.path.relpath(path, REPO))
    return found


def _host_executable(command):
    for directory in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        path = os.path.join(directory, command)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return os.path.realpath(path) if not os.path.islink(path) else path
    return None


def owners(commands):
    """{command: dpkg package} of the commands this host has from a Debian package."""
    paths = {}
    for command in commands:
        path = _host_executable(command)
        if path:
            # usrmerge: dpkg may know /bin/x or /usr/bin/x, or only the link's target
            for candidate in (path, os.path.realpath(path), path.replace("/usr/", "/", 1)):
                paths.setdefault(candidate, command)
    res = subprocess.run(["dpkg-query", "-S"] + sorted(paths), capture_output=True, text=True, check=False)
    found = {}
    for line in res.stdout.splitlines():
        if line.startswith("diversion by"):
            continue
        package, _sep, path = line.partition(": ")
        if path in paths:
            found.setdefault(paths[path], package.split(",")[0].split(":")[0].strip())
    return found


def with_dependencies(names):
    """``names`` and every installed package they depend on, transitively."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Pre-Depends}, ${Depends}\n"],
                         capture_output=True, text=True, check=True).stdout
    depends = {}
    for line in out.splitlines():
        package, _tab, deps = line.partition("\t")
        depends[package] = [alt.split()[0].split(":")[0] for dep in deps.split(",") if dep.strip()
                            for alt in dep.split("|")[:1]]
    seen, todo = set(), list(names)
    while todo:
        package = todo.pop()
        if package not in seen:
            seen.add(package)
            todo += depends.get(package, [])
    return seen


def base_packages():
    """Debian's base system: Essential or Priority required, what minbase installs."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Essential} ${Priority}\n"], capture_output=True,
                         text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if " yes " in line or line.endswith(" required")}


needs_dpkg = pytest.mark.skipif(not shutil.which("dpkg-query"), reason="needs a Debian host (dpkg-query)")


@needs_dpkg
def test_every_command_the_host_side_runs_comes_from_a_package_the_installer_installs():
    wanted, base = with_dependencies(packages()), base_packages()
    called = called_commands()
    unlisted = {}
    for command, package in owners(called).items():
        if package not in wanted and package not in base:
            unlisted[command] = (package, sorted(called[command]))
    assert unlisted == {}, "add these packages to apt_packages in lab/install-deps.sh"


@needs_dpkg
def test_the_commands_named_in_the_lab_notes_are_installed_by_the_installer_or_the_base_system():
    wanted, base = with_dependencies(packages()), base_packages()
    found = owners(NAMED)
    assert sorted(found) == sorted(NAMED), "this host lacks %s" % sorted(set(NAMED) - set(found))
    assert {c: p for c, p in found.items() if p not in wanted | base} == {}


@needs_dpkg
def test_every_package_the_installer_names_serves_a_command_or_says_what_for():
    serving = set(owners(called_commands()).values())
    # python3 serves through python3-minimal, which it depends on
    idle = [p for p in packages() if not with_dependencies([p]) & serving and p not in INDIRECT]
    assert idle == [], "a package nothing calls: remove it from lab/install-deps.sh or say in INDIRECT what needs it"


def test_the_called_commands_are_found_where_they_are_called():
    """The extraction itself: the commands of the README's first step and the lab are found."""
    called = called_commands()
    for command in ("podman", "debootstrap", "losetup", "ss", "git", "ssh"):
        assert command in called, command
