# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host half of decommission and reclaim: what a wipe erases, and finding the
processes that hold a volume (on this machine's /proc)."""

import os
import subprocess
import time

import pytest

from ansible_collections.localpv.rollout.plugins.module_utils import retire


def disk(name, parts, system=()):
    return {"name": name, "path": "/dev/" + name, "system_mounts": list(system), "signatures": [{"type": "gpt"}],
            "partition_table": [{"number": i + 1, "name": p[0]} for i, p in enumerate(parts)],
            "partitions": [{"name": "%sp%d" % (name, i + 1), "path": "/dev/%sp%d" % (name, i + 1), "partlabel": p[0],
                            "mounts": [{"mount_point": p[1]}] if p[1] else [], "holders": [], "swap": False,
                            "signatures": [{"type": "xfs"}]} for i, p in enumerate(parts)]}


def test_the_partition_table_is_erased_only_when_every_partition_of_the_disk_is_retired():
    disks = [disk("loop4", [("localpv-a-1", None), ("localpv-a-2", None)]),
             disk("loop5", [("localpv-b", None), ("localpv-keep", "/mnt/disks/keep")])]
    items, refused = retire.plan_partition_wipe(disks, ["a-1", "a-2", "b"])
    assert refused == []
    assert [(i["device"], bool(i.get("table"))) for i in items] == [
        ("/dev/loop4p1", False), ("/dev/loop4p2", False), ("/dev/loop4", True), ("/dev/loop5p1", False)]


def test_a_mounted_partition_is_refused():
    items, refused = retire.plan_partition_wipe([disk("loop4", [("localpv-a", "/mnt/disks/a")])], ["a"])
    assert items == [] and "mounted at /mnt/disks/a" in refused[0]["reason"]


def test_a_process_with_its_cwd_in_the_volume_holds_it(tmp_path):
    inside = tmp_path / "vol" / "work"
    inside.mkdir(parents=True)
    proc = subprocess.Popen(["sleep", "30"], cwd=str(inside))
    try:
        deadline = time.time() + 10
        found = []
        while time.time() < deadline and not found:
            found = [h for h in retire.holders([str(tmp_path / "vol")]) if h["pid"] == proc.pid]
        assert found and found[0]["how"] == "cwd" and found[0]["command"] == "sleep 30"
        assert not [h for h in retire.holders([str(tmp_path / "other")]) if h["pid"] == proc.pid]
    finally:
        proc.kill()
        proc.wait()


def test_an_open_file_holds_the_volume(tmp_path):
    with open(str(tmp_path / "data"), "w"):
        mine = [h for h in retire.holders([str(tmp_path)], self_pid=-1) if h["pid"] == os.getpid()]
    assert mine and mine[0]["how"] == "fd"


def test_wiping_a_path_that_is_not_a_mount_is_refused(tmp_path):
    (tmp_path / "file").write_text("data")
    with pytest.raises(retire.RetireError) as err:
        retire.wipe_contents({"path": str(tmp_path), "mode": "filesystem"}, "files", run=None)
    assert err.value.code == "not_mounted"
    assert (tmp_path / "file").exists()


def test_remove_contents_keeps_the_mount_point_and_lost_and_found(tmp_path):
    (tmp_path / "lost+found").mkdir()
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "sub" / "f").write_text("x")
    (tmp_path / "top").write_text("y")
    assert retire.remove_contents(str(tmp_path)) == 2
    assert sorted(os.listdir(str(tmp_path))) == ["lost+found"]


def test_volume_state_reads_mount_fstab_and_other_mounts():
    mounts = [{"dev": "7:1", "root": "/", "mount_point": "/mnt/disks/a", "fstype": "xfs", "source": "/dev/loop1p1",
               "options": "rw"},
              {"dev": "7:1", "root": "/", "mount_point": "/var/lib/kubelet/pods/x/volumes/a", "fstype": "xfs",
               "source": "/dev/loop1p1", "options": "rw"}]
    fstab = [{"src": "UUID=1", "path": "/mnt/disks/a", "fstype": "xfs", "opts": "defaults", "line": 0}]
    state = retire.volume_state("/mnt/disks/a", mounts=mounts, fstab=fstab)
    assert state["mounted"] and state["mount"]["source"] == "/dev/loop1p1"
    assert state["fstab"][0]["src"] == "UUID=1"
    assert state["other_mounts"] == ["/var/lib/kubelet/pods/x/volumes/a"]
