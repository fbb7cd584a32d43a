# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who holds a volume or a disk: the processes whose working directory, open files or
open block devices are in it (on this machine's /proc), and who holds an flock (a
real flock held by a real process, read back from /proc/locks)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import os
import subprocess
import time

from ansible_collections.localpv.rollout.plugins.module_utils.host import openers


def test_the_holder_of_a_flock_is_found_by_pid_and_command(held_flock):
    path, proc = held_flock
    (holder,) = openers.lock_holders(path)
    assert holder["pid"] == proc.pid and holder["kind"] == "FLOCK"
    assert "localpv-lock-holder" in holder["command"]


def test_a_file_nobody_locks_has_no_holder(tmp_path):
    path = tmp_path / "free"
    path.write_text("x")
    assert openers.lock_holders(str(path)) == []
    assert "no holder" in openers.describe_lock_holders(str(path))


def test_a_process_with_its_cwd_in_the_volume_holds_it(tmp_path):
    inside = tmp_path / "vol" / "work"
    inside.mkdir(parents=True)
    proc = subprocess.Popen(["sleep", "30"], cwd=str(inside))
    try:
        deadline = time.time() + 10
        found = []
        while time.time() < deadline and not found:
            found = [h for h in openers.holders([str(tmp_path / "vol")]) if h["pid"] == proc.pid]
        assert found and found[0]["how"] == "cwd" and found[0]["command"] == "sleep 30"
        assert not [h for h in openers.holders([str(tmp_path / "other")]) if h["pid"] == proc.pid]
    finally:
        proc.kill()
        proc.wait()


def test_an_open_file_holds_the_volume(tmp_path):
    with open(str(tmp_path / "data"), "w"):
        mine = [h for h in openers.holders([str(tmp_path)], self_pid=-1) if h["pid"] == os.getpid()]
    assert mine and mine[0]["how"] == "fd"


def test_a_process_with_a_block_device_open_is_found_by_device_number(tmp_path):
    """A fake /proc whose process has an fd on a real block device node of this machine."""
    block = [os.path.join("/dev", n) for n in sorted(os.listdir("/sys/class/block"))
             if os.path.exists(os.path.join("/dev", n))]
    assert block, "this machine has no block device node to point at"
    proc = tmp_path / "proc"
    (proc / "4242" / "fd").mkdir(parents=True)
    os.symlink(block[0], str(proc / "4242" / "fd" / "3"))
    (proc / "4242" / "cmdline").write_bytes(b"dd\0of=" + block[0].encode() + b"\0")
    (proc / "4242" / "maps").write_text("")
    rdev = os.stat(block[0]).st_rdev
    found = openers.device_openers([rdev], proc_root=str(proc))
    assert found == [{"pid": 4242, "command": "dd of=" + block[0], "how": "fd", "path": block[0], "rdev": rdev}]
    assert openers.device_openers([rdev + 1], proc_root=str(proc)) == []
