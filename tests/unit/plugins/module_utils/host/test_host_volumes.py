# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host side of volumes: the content sampler and its proof, the mkfs line and the
filesystem's size, the erase of a partition table, the partition names of a volume and
of a retired one, and a volume's state read from the mount table and fstab."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import os
import subprocess

import pytest

from ansible_collections.localpv.rollout.plugins.module_utils.host import host_volumes
from ansible_collections.localpv.rollout.plugins.module_utils.host.host_volumes import partition_label


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


def _gpt_image(path, size=64 << 20, name="localpv-raw0"):
    with open(str(path), "wb") as handle:
        handle.truncate(size)
    subprocess.run(["sfdisk", "--quiet", str(path)], input="label: gpt\n,,L,\n", text=True, check=True,
                   capture_output=True)
    subprocess.run(["sfdisk", "--quiet", "--part-label", str(path), "1", name], check=True, capture_output=True)
    return path


def test_the_erase_leaves_no_partition_name_anywhere_not_even_in_the_backup_gpt(tmp_path, local_run):
    image = _gpt_image(tmp_path / "disk.img")
    utf16 = "localpv-raw0".encode("utf-16-le")
    data = image.read_bytes()
    assert data.count(utf16) == 2  # the primary entry array and the backup one near the end
    host_volumes.erase(str(image), local_run)
    data = image.read_bytes()
    assert utf16 not in data
    assert host_volumes.ends_are_zero(str(image))
    assert local_run(["wipefs", "--noheadings", str(image)])[1].strip() == ""
    assert not data[-(33 * 512):].strip(b"\0")


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
