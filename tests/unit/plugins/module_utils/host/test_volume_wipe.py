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
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan.recognise import BLOCK_VOLUME_TYPE


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


# --- found by mutation testing (`make mutants`): each rule below was lost in a mutant
# --- that every other test let through

def test_every_disk_is_searched_for_the_volumes_to_wipe():
    disks = [disk("loop3", [("localpv-other", None)]), disk("loop4", [("localpv-a", None)])]
    items, refused = volume_wipe.plan_partition_wipe(disks, ["a"])
    assert refused == []
    assert [(i["device"], i["volume"]) for i in items] == [("/dev/loop4p1", "a"), ("/dev/loop4", None)]


def test_a_disk_without_partitions_is_never_wiped():
    # a whole-disk filesystem, or a blank disk: no partition of it is retired, so its
    # signatures and its ends are none of a volume wipe's business
    whole = dict(disk("loop2", []), signatures=[{"type": "ext4"}])
    items, refused = volume_wipe.plan_partition_wipe([whole, disk("loop4", [("localpv-a", None)])], ["a"])
    assert refused == []
    assert [i["device"] for i in items] == ["/dev/loop4p1", "/dev/loop4"]


def test_a_partition_table_is_erased_only_when_it_lists_exactly_the_partitions_the_kernel_knows():
    # the table lists a second partition the kernel does not know (yet): it may hold data
    unknown = disk("loop4", [("localpv-a", None)])
    unknown["partition_table"].append({"number": 2, "name": "data"})
    # the kernel knows a partition the table no longer lists: the table changed since
    rewritten = disk("loop5", [("localpv-b", None), ("localpv-c", None)])
    rewritten["partition_table"] = rewritten["partition_table"][:1]
    items, refused = volume_wipe.plan_partition_wipe([unknown, rewritten], ["a", "b", "c"])
    assert refused == []
    assert [i["device"] for i in items] == ["/dev/loop4p1", "/dev/loop5p1", "/dev/loop5p2"]
    assert not [i for i in items if i.get("table")]


def test_a_refused_partition_keeps_the_table_of_its_own_disk_only():
    disks = [disk("loop4", [("localpv-a", "/mnt/disks/a")]), disk("loop5", [("localpv-b", None)]),
             disk("loop3", [("localpv-c", None)])]
    items, refused = volume_wipe.plan_partition_wipe(disks, ["a", "b", "c"])
    assert [r["device"] for r in refused] == ["/dev/loop4p1"]
    assert [i["device"] for i in items if i.get("table")] == ["/dev/loop5", "/dev/loop3"]


def on_files(tmp_path, found, size=1 << 20):
    """``found`` with its disk and partitions at files of ``size`` zero bytes."""
    found["path"] = str(tmp_path / found["name"])
    for part in found["partitions"]:
        part["path"] = str(tmp_path / part["name"])
    for path in [found["path"]] + [p["path"] for p in found["partitions"]]:
        with open(path, "wb") as handle:
            handle.truncate(size)
    return found


def recording_run(ran):
    def run(argv):
        ran.append(argv)
        return 0, "", ""
    return run


def test_a_partition_and_a_table_the_probe_found_signatures_on_are_erased_even_where_their_ends_read_zero(tmp_path):
    found = on_files(tmp_path, disk("loop4", [("localpv-a", None)]))
    items, _refused = volume_wipe.plan_partition_wipe([found], ["a"])
    ran = []
    wiped = volume_wipe.run_wipe(items, recording_run(ran), length=4096)
    assert wiped == [found["partitions"][0]["path"], found["path"]]
    assert [argv[-1] for argv in ran if argv[0] == "wipefs"] == wiped


@pytest.mark.parametrize("other_type", ["0fc63daf-8483-4772-8e79-3d69d8477de4", "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"],
                         ids=["sorts-before", "sorts-after"])
def test_only_a_block_volumes_partition_is_zeroed_whole_whichever_way_the_other_type_sorts(tmp_path, other_type):
    found = on_files(tmp_path, disk("loop4", [("localpv-raw0", None), ("localpv-fs0", None)]))
    # lsblk gives partition types in lower case
    found["partitions"][0]["parttype"] = BLOCK_VOLUME_TYPE.lower()
    found["partitions"][1]["parttype"] = other_type
    items, _refused = volume_wipe.plan_partition_wipe([found], ["raw0", "fs0"])
    ran = []
    volume_wipe.run_wipe(items, recording_run(ran), length=4096, block_wipe="quick")
    assert [argv for argv in ran if argv[0] == "blkdiscard"] == [["blkdiscard", "--zeroout", found["partitions"][0]["path"]]]
    assert [i["volume"] for i in items if i.get("erased")] == ["raw0"]


@pytest.mark.parametrize("name", ["localpv-other", "localpv-scratch"], ids=["sorts-before", "sorts-after"])
def test_a_block_link_to_another_partition_is_refused_whichever_way_its_name_sorts(tmp_path, name):
    state = {"path": "/mnt/disks/raw0", "is_link": True, "dev": "259:1", "link_target": "/dev/loop3p1"}
    with pytest.raises(volume_wipe.VolumeError) as err:
        volume_wipe.check_identity({"volume": "raw0"}, state, partx_naming(name), sys_root=fake_sys(tmp_path))
    assert err.value.code == "not_this_volume"


@pytest.mark.parametrize("name", ["localpv-0", "localpv-b"], ids=["sorts-before", "sorts-after"])
def test_a_filesystem_mounted_from_another_volumes_partition_is_refused_whichever_way_its_name_sorts(tmp_path, name):
    state = {"path": "/mnt/disks/a", "is_link": False, "mount": {"dev": "259:1", "root": "/"}}
    with pytest.raises(volume_wipe.VolumeError) as err:
        volume_wipe.check_identity({"volume": "a"}, state, partx_naming(name), sys_root=fake_sys(tmp_path))
    assert err.value.code == "not_this_volume"


def test_nothing_mounted_at_a_filesystem_volume_leaves_no_partition_to_check():
    def run(argv):
        raise AssertionError("asked the host %s" % argv)
    assert volume_wipe.check_identity({"volume": "a"}, {"path": "/mnt/disks/a", "is_link": False}, run) is None
