# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading and judging disks, on hosts recorded with tests/unit/plugins/module_utils/host/data/record_host.py.

Each recording is a real machine's sysfs, mountinfo, swaps and wipefs/partx output
in one state (blank, mounted, swap, ...), so these tests check the verdicts on
what the kernel and util-linux really print.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import copy
import json
import os

import pytest

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def recorded(name):
    with open(os.path.join(DATA, name + ".json")) as handle:
        return json.load(handle)


def disk(raw, name="loop0"):
    return next(d for d in devices.build(raw) if d["name"] == name)


def test_blank_loop_disk_is_eligible_and_identified_by_its_backing_file():
    d = disk(recorded("blank"))
    assert d["eligible"], d["reasons"]
    assert d["reasons"] == []
    assert d["stable_id"] == "loop:/srv/disks/a.img"
    assert d["stable_id_source"] == "loop-backing-file"
    assert d["stable_path"] is None and d["udev"] is False
    assert d["size"] == 600 * 1024 * 1024


@pytest.mark.parametrize("recording, code, words", [
    ("whole_ext4", "signatures", "carries ext4"),
    ("mounted", "mounted", "mounted at /srv/disks/mnt"),
    ("swap", "swap", "used as swap"),
    ("gpt_only", "partition_table", "gpt partition table"),
    ("table_no_nodes", "partitions", "partition table lists 1"),
    ("vm_gpt_partitions", "partitions", "has partitions: loop0p1, loop0p2"),
    ("ours_two_ext4", "signatures", "partition loop0p1 carries ext4"),
])
def test_disk_with_data_or_in_use_is_not_eligible(recording, code, words):
    d = disk(recorded(recording))
    assert not d["eligible"]
    assert code in d["reason_codes"]
    assert any(words in reason for reason in d["reasons"]), d["reasons"]


def test_mounted_and_swap_disks_fail_the_exclusive_open_too():
    for recording in ("mounted", "swap"):
        d = disk(recorded(recording))
        assert "exclusive" in d["reason_codes"]
        assert "EBUSY" in d["exclusive_open_error"]


def test_read_only_disk_is_refused():
    d = disk(recorded("read_only"), "loop4")
    assert d["reason_codes"] == ["read_only"]


def test_system_disk_is_refused_for_holding_root():
    d = disk(recorded("blank"), "vda")
    assert "system" in d["reason_codes"]
    assert "holds the system (/)" in d["reasons"]


def test_a_device_that_cannot_be_probed_is_never_eligible():
    # The lab nodes list every disk of the machine but may open only their own.
    d = disk(recorded("blank"), "vda")
    assert "probe" in d["reason_codes"]
    assert d["signatures"] is None


def test_a_holder_makes_a_blank_disk_ineligible():
    raw = recorded("blank")
    raw["devices"]["loop0"]["holders"] = ["dm-0"]
    d = disk(raw)
    assert d["reason_codes"] == ["holders"]
    assert "dm-0" in d["reasons"][0]


def test_partition_mounted_marks_the_whole_disk_mounted():
    raw = recorded("ours_two_ext4")
    raw["mountinfo"] += "99 27 %s / /mnt/disks/data0-1 rw - ext4 /dev/loop0p1 rw\n" % (
        raw["devices"]["loop0"]["partitions"]["loop0p1"]["dev"])
    d = disk(raw)
    assert "mounted" in d["reason_codes"]
    assert d["mounts"][0]["device"] == "loop0p1"


def test_gpt_written_partitions_are_read_from_the_disk_even_without_kernel_nodes():
    d = disk(recorded("ours_no_nodes"))
    assert d["partitions"] == []
    assert [p["name"] for p in d["partition_table"]] == ["localpv-data0-1", "localpv-data0-2"]
    assert d["pttype"] == "gpt"


def test_partitions_carry_their_gpt_names_and_filesystems():
    d = disk(recorded("ours_two_ext4"))
    assert [(p["name"], p["partlabel"], p["fstype"]) for p in d["partitions"]] == [
        ("loop0p1", "localpv-data0-1", "ext4"), ("loop0p2", "localpv-data0-2", "ext4")]
    assert all(p["uuid"] for p in d["partitions"])


def test_unattached_loop_devices_are_listed_but_empty():
    disks = devices.build(recorded("vm_gpt_partitions"))
    empty = [d for d in disks if d["kind"] == "loop" and not d["size"]]
    assert empty and all(d["reason_codes"] == ["empty"] for d in empty)


def test_zram_is_never_a_candidate():
    d = disk(recorded("vm_gpt_partitions"), "zram0")
    assert "virtual" in d["reason_codes"]


def test_udev_by_id_link_wins_over_sysfs_and_partition_links_are_ignored():
    raw = recorded("blank")
    raw["by_id"] = {"wwn-0x5000c500a1b2c3d4": "loop0", "ata-DISK_123": "loop0",
                    "wwn-0x5000c500a1b2c3d4-part1": "loop0p1"}
    d = disk(raw)
    assert d["stable_id"] == "wwn-0x5000c500a1b2c3d4"
    assert d["stable_id_source"] == "by-id"
    assert d["stable_path"] == "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"


@pytest.mark.parametrize("attrs, expected", [
    ({"wwid": "naa.5000c500a1b2c3d4"}, ("wwn-0x5000c500a1b2c3d4", "wwid")),
    ({"wwid": "eui.0025385b71b0a1c2"}, ("nvme-eui.0025385b71b0a1c2", "wwid")),
    ({"wwid": "t10.ATA     QEMU HARDDISK"}, ("wwid-t10.ATA_QEMU_HARDDISK", "wwid")),
    ({"serial": "S3Z9NB0K123"}, ("serial-S3Z9NB0K123", "serial")),
    ({"backing_file": "/srv/a.img"}, ("loop:/srv/a.img", "loop-backing-file")),
    ({}, (None, "none")),
])
def test_stable_id_without_udev_is_spelled_like_the_by_id_link(attrs, expected):
    assert devices.stable_id_from_sysfs(attrs) == expected


def test_find_disk_accepts_kernel_path_by_id_path_and_stable_id():
    raw = recorded("blank")
    disks = devices.build(raw)
    assert devices.find_disk(disks, "/dev/loop0")["name"] == "loop0"
    assert devices.find_disk(disks, "loop:/srv/disks/a.img")["name"] == "loop0"
    raw2 = copy.deepcopy(raw)
    raw2["devices"]["loop0"]["wwid"] = "naa.5000c500a1b2c3d4"
    disks2 = devices.build(raw2)
    # An inventory written on a host with udev still finds the disk without it.
    assert devices.find_disk(disks2, "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4")["name"] == "loop0"
    assert devices.find_disk(disks, "/dev/sdzz") is None


def test_mountinfo_unescapes_spaces_and_keeps_bind_roots():
    text = "36 35 7:0 /data/vol\\0401 /mnt/disks/vol\\0401 rw,relatime shared:1 - ext4 /dev/loop0 rw\n"
    (mount,) = devices.parse_mountinfo(text)
    assert mount["root"] == "/data/vol 1"
    assert mount["mount_point"] == "/mnt/disks/vol 1"
    assert mount["source"] == "/dev/loop0" and mount["dev"] == "7:0"


def test_partx_names_may_be_empty_or_contain_spaces_and_types_and_uuids_are_read():
    fs, raw = "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "4c6f6361-6c50-5642-6c6f-636b00000001"
    text = (" 1   2048  409600 %s 0a465f89-0ef4-6e49-a03a-ec3685fd81c9 localpv-data0\n"
            " 2 411648  409600 %s 0ac15dc0-70c6-6541-aa55-e0da7c9ad3c4\n"
            " 3 821248  409600 %s 1C15DC00-70C6-6541-AA55-E0DA7C9AD3C4 my data\n" % (fs, fs.lower(), raw))
    table = devices.parse_partx(text)
    assert [(p["number"], p["name"]) for p in table] == [(1, "localpv-data0"), (2, ""), (3, "my data")]
    assert [p["type"] for p in table] == [fs, fs, raw.upper()]
    assert table[2]["uuid"] == "1c15dc00-70c6-6541-aa55-e0da7c9ad3c4"
    assert table[0]["size"] == 409600 * 512


def fake_sysfs(root, disks):
    """A /sys/block of ``{disk: [partition, ...]}``, with what collect() reads."""
    for disk, parts in disks.items():
        base = root / "block" / disk
        base.mkdir(parents=True)
        (base / "dev").write_text("7:%d\n" % len(list((root / "block").iterdir())))
        (base / "size").write_text("2048\n")
        for number, part in enumerate(parts, 1):
            (base / part).mkdir()
            (base / part / "partition").write_text("%d\n" % number)
            (base / part / "size").write_text("1024\n")


def test_a_recheck_of_some_disks_reads_only_their_sysfs_entries(tmp_path):
    fake_sysfs(tmp_path, {"loop0": ["loop0p1"], "loop1": [], "sda": ["sda1", "sda2"]})
    some = devices.collect(sys_root=str(tmp_path), proc_root=str(tmp_path), probe=False, names={"loop0"},
                           list_all=False)
    assert list(some["devices"]) == ["loop0"] and list(some["devices"]["loop0"]["partitions"]) == ["loop0p1"]
    every = devices.collect(sys_root=str(tmp_path), proc_root=str(tmp_path), probe=False, names={"loop0"})
    assert sorted(every["devices"]) == ["loop0", "loop1", "sda"]


def test_a_partition_the_kernel_does_not_know_is_probed_in_place_on_the_disk(tmp_path):
    """A disk attached again without a partition scan: the filesystem inside each table entry
    is read from the whole disk at the entry's place, so that a recorded UUID can be proven."""
    fake_sysfs(tmp_path, {"loop0": []})
    asked = []

    def run(argv):
        asked.append(argv)
        if argv[0] == "wipefs":
            return 0, json.dumps({"signatures": [{"type": "gpt", "offset": "0x200"}]}), ""
        if argv[0] == "partx":
            return 0, (" 1 2048 4096 0FC63DAF-8483-4772-8E79-3D69D8477DE4 9BD69B12-FCBD-874D-9237-6196037F06E3 "
                       "localpv-lpvtr0\n 2 6144 4096 0FC63DAF-8483-4772-8E79-3D69D8477DE4 "
                       "CA42B7FE-2C6D-1C4F-9D1E-75B3F5843EAE localpv-lpvtr1\n"), ""
        if argv[0] == "blkid" and argv[argv.index("-O") + 1] == str(2048 * 512):
            return 0, "UUID=E258DDF5-5907-4129-ABA2-933A4C73541B\nTYPE=ext4\nUSAGE=filesystem\n", ""
        return 2, "", ""   # blkid: nothing there
    raw = devices.collect(sys_root=str(tmp_path), dev_root=str(tmp_path), proc_root=str(tmp_path), probe=False)
    devices.add_probes(raw, {"loop0"}, dev_root=str(tmp_path), proc_root=str(tmp_path), run=run)
    blkid = [argv for argv in asked if argv[0] == "blkid"]
    assert blkid[0] == ["blkid", "-p", "-o", "export", "-O", str(2048 * 512), "-S", str(4096 * 512),
                        str(tmp_path / "loop0")]
    assert len(blkid) == 2 and all("-p" in argv for argv in blkid)
    json.dumps(raw)   # still a recording
    (first, second) = disk(raw)["partition_table"]
    assert (first["fstype"], first["fs_uuid"]) == ("ext4", "e258ddf5-5907-4129-aba2-933a4c73541b")
    assert (second["fstype"], second["fs_uuid"]) == (None, None)


def test_a_partition_the_kernel_knows_is_not_probed_in_place(tmp_path):
    fake_sysfs(tmp_path, {"loop0": ["loop0p1"]})
    asked = []

    def run(argv):
        asked.append(argv[0])
        if argv[0] == "wipefs":
            return 0, json.dumps({"signatures": [{"type": "gpt", "offset": "0x200"}]}), ""
        if argv[0] == "partx":
            return 0, " 1 2048 1024 0FC63DAF-8483-4772-8E79-3D69D8477DE4 9BD69B12-FCBD-874D-9237-6196037F06E3 x\n", ""
        return 2, "", ""
    raw = devices.collect(sys_root=str(tmp_path), dev_root=str(tmp_path), proc_root=str(tmp_path), probe=False)
    devices.add_probes(raw, {"loop0"}, dev_root=str(tmp_path), proc_root=str(tmp_path), run=run)
    assert "blkid" not in asked and "fs_uuid" not in disk(raw)["partition_table"][0]
