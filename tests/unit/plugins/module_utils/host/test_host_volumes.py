# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host side of volumes: what a wipe erases, the processes that hold a volume
or have a disk open (on this machine's /proc), the content sampler and the mkfs line."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import os
import subprocess
import time

import pytest

from ansible_collections.localpv.rollout.plugins.module_utils.host import host_volumes
from ansible_collections.localpv.rollout.plugins.module_utils.host.host_volumes import partition_label
from ansible_collections.localpv.rollout.plugins.module_utils.host import openers
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


def test_wiping_a_path_that_is_not_a_mount_is_refused(tmp_path):
    (tmp_path / "file").write_text("data")
    with pytest.raises(volume_wipe.VolumeError) as err:
        volume_wipe.wipe_contents({"path": str(tmp_path), "mode": "filesystem"}, "files", run=None)
    assert err.value.code == "not_mounted"
    # the next step: mount it again from its fstab line, or retire a volume that is gone
    assert "mount %s" % tmp_path in err.value.msg and "decommission" in err.value.msg
    assert (tmp_path / "file").exists()


def test_remove_contents_keeps_the_mount_point_and_lost_and_found(tmp_path):
    (tmp_path / "lost+found").mkdir()
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "sub" / "f").write_text("x")
    (tmp_path / "top").write_text("y")
    assert host_volumes.remove_contents(str(tmp_path)) == 2
    assert sorted(os.listdir(str(tmp_path))) == ["lost+found"]


def test_volume_state_reads_mount_fstab_and_other_mounts():
    mounts = [{"dev": "7:1", "root": "/", "mount_point": "/mnt/disks/a", "fstype": "xfs", "source": "/dev/loop1p1",
               "options": "rw"},
              {"dev": "7:1", "root": "/", "mount_point": "/var/lib/kubelet/pods/x/volumes/a", "fstype": "xfs",
               "source": "/dev/loop1p1", "options": "rw"}]
    fstab = [{"src": "UUID=1", "path": "/mnt/disks/a", "fstype": "xfs", "opts": "defaults", "line": 0}]
    state = host_volumes.volume_state("/mnt/disks/a", mounts=mounts, fstab=fstab)
    assert state["mounted"] and state["mount"]["source"] == "/dev/loop1p1"
    assert state["fstab"][0]["src"] == "UUID=1"
    assert state["other_mounts"] == ["/var/lib/kubelet/pods/x/volumes/a"]


def test_the_sampler_reads_both_ends_and_spread_regions(tmp_path):
    size = 64 << 20
    regions = host_volumes.sample_offsets(size)
    end = host_volumes.END_LENGTH
    assert regions[0] == (0, end) and regions[-1] == (size - end, end)
    assert len(regions) == host_volumes.SPREAD_REGIONS + 2
    assert all(end <= off < size - end for off, _n in regions[1:-1])
    image = tmp_path / "disk"
    with open(str(image), "wb") as handle:
        handle.truncate(size)
    blank = host_volumes.sample(str(image))
    assert blank["zero"] and blank["digest"] and blank["error"] is None
    # a byte inside one spread sample (as a pod's raw writes leave them) is seen
    offset, _length = regions[4]
    with open(str(image), "r+b") as handle:
        handle.seek(offset + 100)
        handle.write(b"x")
    written = host_volumes.sample(str(image))
    assert not written["zero"] and written["digest"] != blank["digest"]
    assert not host_volumes.sample(str(tmp_path / "missing"))["zero"]


def test_a_small_device_is_read_whole():
    assert host_volumes.sample_offsets(1 << 20) == [(0, 1 << 20)]
    assert host_volumes.sample_offsets(32 << 20) == [(0, 32 << 20)]


@pytest.mark.parametrize("size", [(2 << 30) + 4096 * 7, 4 << 30, 1 << 40, (3 << 40) + (1 << 20)])
def test_spread_reads_are_never_farther_apart_than_a_256th_of_the_disk(size):
    regions = host_volumes.sample_offsets(size)
    gaps = [b[0] - (a[0] + a[1]) for a, b in zip(regions, regions[1:])]
    assert max(gaps) <= size // 256
    assert regions[0][0] == 0 and regions[-1][0] + regions[-1][1] == size


def test_64_mib_of_data_in_the_middle_of_a_2_gib_disk_is_not_blank(tmp_path):
    """The case of issue 21: no signature, zero ends, data in the middle."""
    size = 2 << 30
    image = tmp_path / "disk"
    with open(str(image), "wb") as handle:
        handle.truncate(size)
        handle.seek(size // 2 - (32 << 20))
        handle.write(b"\x5a" * (64 << 20))
    found = host_volumes.sample(str(image))
    assert not found["zero"] and size // 2 - (32 << 20) <= found["data_at"] < size // 2 + (32 << 20)
    assert host_volumes.describe_proof(found, size).startswith("256 spread regions and both 8 MiB ends (")
    assert "data at offset" in host_volumes.describe_proof(found, size)


def test_spread_proof_says_what_it_read(tmp_path):
    size = 2 << 30
    image = tmp_path / "disk"
    with open(str(image), "wb") as handle:
        handle.truncate(size)
    found = host_volumes.sample(str(image))
    assert found["zero"] and found["read"] == 16 * (1 << 20) + 256 * 64 * 1024
    assert host_volumes.describe_proof(found, size) == (
        "256 spread regions and both 8 MiB ends (32 MiB of 2 GiB) read, all zero")


def test_full_proof_reads_every_byte_and_reports_progress(tmp_path):
    size = 64 << 20
    image = tmp_path / "disk"
    with open(str(image), "wb") as handle:
        handle.truncate(size)
        handle.seek(size // 2 + 12345)   # between two spread regions
        handle.write(b"x")
    assert host_volumes.sample(str(image))["zero"]
    seen = []
    found = host_volumes.sample(str(image), proof="full", progress=lambda done, total: seen.append(done))
    assert not found["zero"] and found["data_at"] == size // 2 + 12345 and found["read"] == size
    assert seen and seen[-1] == size and seen == sorted(seen)
    assert host_volumes.describe_proof(found, size).startswith("the whole device (64 MiB) read, data at offset")


def test_one_mkfs_line_for_prepare_reclaim_and_prediction():
    argv = host_volumes.mkfs_argv
    assert argv("xfs", "/dev/sdb1", "-m reflink=0") == ["mkfs.xfs", "-q", "-m", "reflink=0", "/dev/sdb1"]
    assert argv("ext4", "/dev/sdb1", uuid="u", force=True) == ["mkfs.ext4", "-q", "-F", "-U", "u", "/dev/sdb1"]
    assert host_volumes.mkfs_argv("xfs", "/dev/sdb1", uuid="u", force=True) == [
        "mkfs.xfs", "-q", "-f", "-m", "uuid=u", "/dev/sdb1"]


def test_filesystem_bytes_from_the_superblock_as_statvfs_counts_them():
    xfs = "dblocks = 102400\nlogblocks = 16384\nlogstart = 65542\nblocksize = 4096\n"
    ext4 = "Block count:              409600\nOverhead clusters:        36242\nBlock size:               1024\n"
    outputs = {"xfs_db": xfs, "dumpe2fs": ext4}

    def run(argv):
        return 0, outputs[argv[0]], ""
    # measured on a loop disk: statvfs f_blocks 86016 x 4096 and 373358 x 1024
    assert host_volumes.filesystem_bytes("/dev/x", "xfs", run) == 86016 * 4096
    assert host_volumes.filesystem_bytes("/dev/x", "ext4", run) == 373358 * 1024
    outputs["dumpe2fs"] = "Block count: 409600\nBlock size: 1024\n"   # an older mke2fs: not known
    assert host_volumes.filesystem_bytes("/dev/x", "ext4", run) is None


def test_xfs_geometry_of_a_dry_run_gives_the_same_bytes():
    text = ("data     =                       bsize=4096   blocks=102400, imaxpct=25\n"
            "log      =internal log           bsize=4096   blocks=16384, version=2\n")
    assert host_volumes._xfs_bytes_from_geometry(text) == 86016 * 4096


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


def _gpt_image(path, size=64 << 20, name="localpv-raw0"):
    with open(str(path), "wb") as handle:
        handle.truncate(size)
    subprocess.run(["sfdisk", "--quiet", str(path)], input="label: gpt\n,,L,\n", text=True, check=True,
                   capture_output=True)
    subprocess.run(["sfdisk", "--quiet", "--part-label", str(path), "1", name], check=True, capture_output=True)
    return path


def _local_run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_the_erase_leaves_no_partition_name_anywhere_not_even_in_the_backup_gpt(tmp_path):
    image = _gpt_image(tmp_path / "disk.img")
    utf16 = "localpv-raw0".encode("utf-16-le")
    data = image.read_bytes()
    assert data.count(utf16) == 2  # the primary entry array and the backup one near the end
    host_volumes.erase(str(image), _local_run)
    data = image.read_bytes()
    assert utf16 not in data
    assert host_volumes.ends_are_zero(str(image))
    assert _local_run(["wipefs", "--noheadings", str(image)])[1].strip() == ""
    assert not data[-(33 * 512):].strip(b"\0")


def test_a_wiped_table_is_not_taken_for_erased_while_its_backup_remains(tmp_path):
    image = tmp_path / "disk.img"
    with open(str(image), "wb") as handle:
        handle.truncate(8 << 20)
        handle.seek((8 << 20) - 4096)
        handle.write(b"EFI PART backup")
    assert not volume_wipe.head_is_zero(str(image))
    item = {"device": str(image), "disk": str(image), "table": True, "signatures": [], "volume": None}
    assert volume_wipe.run_wipe([item], _local_run) == [str(image)]
    assert volume_wipe.head_is_zero(str(image))
    assert volume_wipe.run_wipe([item], _local_run) == []


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


def test_a_block_volume_is_zeroed_to_its_last_byte_and_says_how(tmp_path, monkeypatch):
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
    result = volume_wipe.wipe_contents({"path": str(link), "mode": "block"}, "files", _local_run, state=state,
                                       block_wipe=how)
    assert not device.read_bytes().strip(b"\0")
    assert volume_wipe.describe_wipe(result) == "%s: every byte overwritten with zeros (full: %d bytes) on %s" % (
        link, size, device)
    assert (tmp_path / "progress").read_text() == "zeroed %s: all 8 MiB\n" % device


def test_the_probe_right_before_a_write_is_the_facts_probe_and_fails_as_a_volume_error():
    def run(out, rc=0, err=""):
        return lambda argv: (rc, out, err) if argv[:2] == ["wipefs", "--json"] else (1, "", "unexpected")
    sig = '{"signatures": [{"device": "loop0p1", "offset": "0x0", "type": "xfs", "uuid": "u1", "label": null}]}'
    assert [s["type"] for s in host_volumes.probe("/dev/loop0p1", run(sig))] == ["xfs"]
    assert host_volumes.probe("/dev/loop0p1", run("")) == []
    for bad in (run("", 1, "no such device"), run("{not json")):
        with pytest.raises(host_volumes.VolumeError) as err:
            host_volumes.probe("/dev/loop0p1", bad)
        assert "cannot probe /dev/loop0p1" in str(err.value) and err.value.code == "probe"


def test_partition_labels_fit_gpt_and_stay_distinct():
    a, b = partition_label("a" * 60 + "x"), partition_label("a" * 60 + "y")
    assert len(a) <= 36 and len(b) <= 36 and a != b
    assert partition_label("ssd0") == "localpv-ssd0"


def test_a_retired_name_is_the_volumes_own_and_dated():
    label = host_volumes.retired_label("a-rather-long-volume-name-of-forty-chars", "2026-12-02")
    assert len(label) <= host_volumes.PARTITION_LABEL_MAX
    assert host_volumes.retired_day(label) == "2026-12-02"
    assert host_volumes.retired_day(label, "a-rather-long-volume-name-of-forty-chars") == "2026-12-02"
    assert host_volumes.retired_day(label, "another") is None
    assert host_volumes.retired_day(host_volumes.partition_label("ssd0")) is None
