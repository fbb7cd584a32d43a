# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The wipes of decommission and reclaim: what a wipe erases and refuses, the check
that a volume's path still leads to its own partition, and what each wipe says."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import os

import pytest

from ansible_collections.localpv.rollout.plugins.module_utils.host import host_volumes
from ansible_collections.localpv.rollout.plugins.module_utils.host import volume_wipe


def disk(name, parts, system=()):
    return {"name": name, "path": "/dev/" + name, "system_mounts": list(system), "signatures": [{"type": "gpt"}],
            "partition_table": [{"number": i + 1, "name": p[0]} for i, p in enumerate(parts)],
            "partitions": [{"name": "%sp%d" % (name, i + 1), "path": "/dev/%sp%d" % (name, i + 1), "partlabel": p[0],
                            "mounts": [{"mount_point": p[1]}] if p[1] else [], "holders": [], "swap": False, "openers": [],
                            "signatures": [{"type": "xfs"}]} for i, p in enumerate(parts)]}


def test_the_partition_table_is_erased_only_when_every_partition_of_the_disk_is_retired():
    disks = [disk("loop4", [("localpv-a-1", None), ("localpv-a-2", None)]),
             disk("loop5", [("localpv-b", None), ("localpv-keep", "/mnt/disks/keep")])]
    items, refused = volume_wipe.plan_partition_wipe(disks, ["a-1", "a-2", "b"])
    assert refused == []
    assert [(i["device"], bool(i.get("table"))) for i in items] == [
        ("/dev/loop4p1", False), ("/dev/loop4p2", False), ("/dev/loop4", True), ("/dev/loop5p1", False)]


def test_a_mounted_partition_is_refused():
    items, refused = volume_wipe.plan_partition_wipe([disk("loop4", [("localpv-a", "/mnt/disks/a")])], ["a"])
    assert items == [] and "mounted at /mnt/disks/a" in refused[0]["reason"]


def test_wiping_a_path_that_is_not_a_mount_is_refused(tmp_path):
    (tmp_path / "file").write_text("data")
    with pytest.raises(volume_wipe.VolumeError) as err:
        volume_wipe.wipe_contents({"path": str(tmp_path), "mode": "filesystem"}, "files", run=None)
    assert err.value.code == "not_mounted"
    # the next step: mount it again from its fstab line, or retire a volume that is gone
    assert "mount %s" % tmp_path in err.value.msg and "decommission" in err.value.msg
    assert (tmp_path / "file").exists()


def fake_sys(tmp_path, number=1):
    """/sys/dev/block/259:1 -> .../loop3/loop3p1, a partition as sysfs shows it."""
    part = tmp_path / "sys" / "devices" / "virtual" / "block" / "loop3" / ("loop3p%d" % number)
    part.mkdir(parents=True)
    (part / "partition").write_text("%d\n" % number)
    (tmp_path / "sys" / "dev" / "block").mkdir(parents=True)
    os.symlink(str(part), str(tmp_path / "sys" / "dev" / "block" / "259:1"))
    return str(tmp_path / "sys")


def partx_naming(name):
    def run(argv):
        assert argv[:2] == ["partx", "-g"] and argv[-1] == "/dev/loop3"
        return 0, " 1 2048 409600 %s 0a465f89-0ef4-6e49-a03a-ec3685fd81c9 %s\n" % (
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4", name), ""
    return run


def test_a_block_link_must_lead_to_the_volumes_own_partition(tmp_path):
    sys_root = fake_sys(tmp_path)
    state = {"path": "/mnt/disks/raw0", "is_link": True, "dev": "259:1", "link_target": "/dev/loop3p1"}
    ident = volume_wipe.check_identity({"volume": "raw0"}, state, partx_naming("localpv-raw0"), sys_root=sys_root)
    assert ident["disk"] == "/dev/loop3" and ident["number"] == 1
    with pytest.raises(volume_wipe.VolumeError) as err:
        volume_wipe.check_identity({"volume": "raw0"}, state, partx_naming("localpv-other"), sys_root=sys_root)
    assert err.value.code == "not_this_volume"
    assert "which is partition 1 of /dev/loop3 named 'localpv-other', not the partition localpv-raw0" in err.value.msg
    with pytest.raises(volume_wipe.VolumeError):
        volume_wipe.check_identity({"volume": "raw0"}, dict(state, dev="7:99"), partx_naming("x"), sys_root=sys_root)


def test_a_filesystem_volume_mounted_from_another_volumes_partition_is_refused(tmp_path):
    sys_root = fake_sys(tmp_path)
    state = {"path": "/mnt/disks/a", "is_link": False, "mount": {"dev": "259:1", "root": "/"}}
    volume_wipe.check_identity({"volume": "a"}, state, partx_naming("localpv-a"), sys_root=sys_root)
    with pytest.raises(volume_wipe.VolumeError):
        volume_wipe.check_identity({"volume": "a"}, state, partx_naming("localpv-b"), sys_root=sys_root)
    # a bind mount (or an adopted filesystem) has no GPT name of ours to check
    bind = dict(state, mount={"dev": "259:1", "root": "/data/a"})
    assert volume_wipe.check_identity({"volume": "a"}, bind, partx_naming("root"), sys_root=sys_root) is None


def test_a_wiped_table_is_not_taken_for_erased_while_its_backup_remains(tmp_path, local_run):
    image = tmp_path / "disk.img"
    with open(str(image), "wb") as handle:
        handle.truncate(8 << 20)
        handle.seek((8 << 20) - 4096)
        handle.write(b"EFI PART backup")
    assert not volume_wipe.head_is_zero(str(image))
    item = {"device": str(image), "disk": str(image), "table": True, "signatures": [], "volume": None}
    assert volume_wipe.run_wipe([item], local_run) == [str(image)]
    assert volume_wipe.head_is_zero(str(image))
    assert volume_wipe.run_wipe([item], local_run) == []


def test_each_wipe_is_said_exactly():
    said = volume_wipe.describe_wipe
    assert said({"path": "/mnt/disks/a", "changed": True, "action": "files", "removed": 3}) == \
        "/mnt/disks/a: 3 entries were removed (files)"
    assert said({"path": "/mnt/disks/a", "changed": True, "action": "files", "removed": 3}, check_mode=True) == \
        "/mnt/disks/a: 3 entries would be removed (files)"
    assert said({"path": "/mnt/disks/a", "changed": True, "action": "mkfs", "fstype": "xfs", "device": "/dev/sdb1",
                 "uuid": "u-1"}) == "/mnt/disks/a: xfs was made again on /dev/sdb1 with UUID u-1 (mkfs)"
    assert said({"path": "/mnt/disks/a", "changed": False}) == "/mnt/disks/a: nothing to erase, left as it was"


def test_a_decommission_wipe_finds_the_partitions_it_marked_retired():
    retired = host_volumes.retired_label("a", "2026-12-02")
    disks = [disk("loop4", [(retired, None)]), disk("loop5", [(host_volumes.retired_label("b", "2026-12-01"), None)])]
    items, refused = volume_wipe.plan_partition_wipe(disks, ["a"])
    assert refused == []
    assert [(i["device"], i["volume"], bool(i.get("table"))) for i in items] == [
        ("/dev/loop4p1", "a", False), ("/dev/loop4", None, True)]


def test_a_block_volume_is_zeroed_to_its_last_byte_and_says_how(tmp_path, monkeypatch, local_run):
    # quick (blkdiscard --zeroout) needs a real block device: the lab test covers it
    how = "full"
    monkeypatch.setattr(host_volumes, "PROGRESS_PATH", str(tmp_path / "progress"))
    device = tmp_path / "raw0"
    size = 8 << 20
    with open(str(device), "wb") as handle:
        handle.truncate(size)
        handle.seek(5 << 20)
        handle.write(b"tenant data, no signature" * 100)
        handle.seek(size - 10)
        handle.write(b"last bytes")
    link = tmp_path / "vol"
    link.symlink_to(device)
    state = {"path": str(link), "is_link": True, "device": str(device), "holders": [], "other_mounts": []}
    result = volume_wipe.wipe_contents({"path": str(link), "mode": "block"}, "files", local_run, state=state,
                                       block_wipe=how)
    assert not device.read_bytes().strip(b"\0")
    assert volume_wipe.describe_wipe(result) == "%s: every byte overwritten with zeros (full: %d bytes) on %s" % (
        link, size, device)
    assert (tmp_path / "progress").read_text() == "zeroed %s: all 8 MiB\n" % device
