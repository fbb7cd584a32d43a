# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A volume's disk is proven, "blank" says how it was proven, and refusals say what
a disk is: on real loop disks of a lab node and the lab's real API server.

A stable path that comes to lead to another disk is made here the way it happens
to a loop disk: the loop device keeps its name and gets another image (a re-attach).
Every test digests the WHOLE content of the disks before and after a run that must
not write, and compares them. ``CASE`` lines (pytest -s) are the evidence table.
"""

import os
import re
import subprocess

import pytest

import test_disk_prep
from kubernetes import client
from pv_helpers import delete_pvs, local_pv, module, now_rfc3339, unique, writes_by_us
from test_disk_prep import HOST, ROOT, ok, refused
from test_disk_safety import _backing, _reattach, record
from test_local_pv import prebind

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming
from ansible_collections.localpv.rollout.plugins.module_utils.host import host_volumes as hv

node = test_disk_prep.node
MIB = 1 << 20


@pytest.fixture
def namespace(kube):
    """A namespace of the test's own for its claims; removed with them."""
    core = client.CoreV1Api(kube)
    ns = unique("pvt-")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    yield ns
    for pvc in core.list_namespaced_persistent_volume_claim(ns).items:
        core.delete_namespaced_persistent_volume_claim(pvc.metadata.name, ns)
    core.delete_namespace(ns)


def replace_in(text):
    found = re.findall(r"replace: '([0-9a-f]{16})'", text)
    assert found, text[-3000:]
    return found[0]


def _volume_with_data(node, name):
    """Volume ``name`` on the first work disk with a file in it, unmounted (its fstab line stays)."""
    disk = node.disks[0]
    res = ok(node.play([{"name": name, "device": disk}]))
    node.sh("echo precious > %s/%s/data && sync && umount %s/%s" % (ROOT, name, ROOT, name))
    return disk, res.volumes[0]


class BlankInstead:
    """The loop device ``disk`` gets a new blank image of its size; the old one is
    detached (gone from the host) until :meth:`restore`."""

    def __init__(self, disk):
        self.disk = disk
        self.old = _backing(disk)
        self.new = self.old + ".lpvt-new"
        size = os.path.getsize(self.old)
        with open(self.new, "wb") as handle:
            handle.truncate(size)
        self._attach(self.new)

    def _attach(self, image):
        subprocess.run(["partx", "-d", self.disk], capture_output=True, check=False)
        subprocess.run(["losetup", "-d", self.disk], check=True)
        subprocess.run(["losetup", self.disk, image], check=True)
        subprocess.run(["partx", "-a", self.disk], capture_output=True, check=False)

    def restore(self):
        self._attach(self.old)
        os.unlink(self.new)


# --- 1. a volume's disk is proven ---------------------------------------------------

@pytest.mark.parametrize("check", [True, False], ids=["check-diff", "real-run"])
def test_a_path_re_pointed_to_a_blank_disk_is_refused_while_the_old_disk_is_still_attached(node, check):
    a, b = node.disks
    disk, vol = _volume_with_data(node, "lpvti")
    fstab = node.fstab_lines(ROOT + "/lpvti")
    files = [_backing(a), _backing(b)]
    _reattach(a, b, files[1], files[0])     # a now leads to b's blank image; the volume's image is b
    try:
        before = node.whole(a, b)
        out = refused(node.play([{"name": "lpvti", "device": a}], *(("--check", "--diff") if check else ())))
        after = node.whole(a, b)
        assert "volume lpvti was made on a disk with filesystem UUID %s (recorded in /etc/fstab)" % vol["uuid"] in out
        assert "the entry's device %s now leads to %s (loop:%s, " % (a, a, files[1]) in out
        assert "The disk with those ids is still on this host: %s (loop:%s, " % (b, files[0]) in out
        assert "set replace: '%s' on this entry" % replace_in(out) in out
        assert after == before and node.fstab_lines(ROOT + "/lpvti") == fstab
        record(node, "path re-pointed, old disk attached (%s)" % ("check" if check else "run"), before, after, out)
    finally:
        _reattach(a, b, files[0], files[1])
    node.sh("mount %s/lpvti" % ROOT)
    assert node.sh("cat %s/lpvti/data" % ROOT).stdout.strip() == "precious"


def test_a_path_re_pointed_to_a_blank_disk_with_the_old_disk_gone_needs_replace_and_then_converges(node):
    disk, vol = _volume_with_data(node, "lpvtg")
    swap = BlankInstead(disk)
    try:
        before = node.whole(disk)
        out = refused(node.play([{"name": "lpvtg", "device": disk}], "--check", "--diff"))
        assert "volume lpvtg was made on a disk with filesystem UUID %s" % vol["uuid"] in out
        assert "No disk of this host carries those ids now (the old disk is gone" in out
        out = refused(node.play([{"name": "lpvtg", "device": disk}]))
        after = node.whole(disk)
        assert after == before
        record(node, "path re-pointed, old disk gone", before[disk], after[disk], out)
        # a deliberate replacement: confirmed by the new disk's fingerprint, the volume is made again on it
        entry = {"name": "lpvtg", "device": disk, "replace": replace_in(out)}
        check = ok(node.play([entry], "--check", "--diff"))
        assert "blank (no signature; 256 spread regions and both 8 MiB ends (" in check.stdout
        assert node.whole(disk) == before
        made = ok(node.play([entry]))
        (new,) = made.volumes
        assert new["uuid"] != vol["uuid"] and new["state"] == "formatted"
        assert node.fstab_lines(ROOT + "/lpvtg") == ["UUID=%s %s/lpvtg xfs defaults,nofail 0 0" % (new["uuid"], ROOT)]
        # the confirmation may stay in the inventory: the disk now carries the recorded ids
        assert ok(node.play([entry])).host["changed"] == 0
        record(node, "replace confirmed (old disk gone)", before[disk], node.whole(disk)[disk], "ok")
    finally:
        node.sh("umount %s/lpvtg" % ROOT, check=False)
        swap.restore()


def _records(lab, tmp_path, node_name):
    res = module(lab, tmp_path, "localpv.rollout.local_pv_records", nodes=[node_name])
    assert not res.get("failed"), res
    assert res["requests"] == {"list": 1}, res["requests"]
    return res["nodes"][node_name]


@pytest.fixture
def registered(lab, kube, tmp_path):
    """PVs a test registers for the node under test; deleted afterwards."""
    names = []
    yield names
    delete_pvs(kube, names)


def _register(lab, tmp_path, node_name, vol):
    item = dict((k, vol[k]) for k in ("name", "path", "mode", "fstype", "capacity", "stable_id", "uuid", "partuuid")
                if vol.get(k) is not None)
    item["node"] = node_name
    res = local_pv(lab, tmp_path, volumes=[item])
    assert res["rc"] == 0, res.get("msg")
    return item


def test_a_bound_pvs_volume_is_never_made_again_on_a_re_pointed_disk(
        lab, kube, tmp_path, node, registered, namespace):
    node_name = lab.node(HOST)["node_name"]
    disk, vol = _volume_with_data(node, "lpvtb")
    pv = naming.pv_name(node_name, "lpvtb")
    registered.append(pv)
    item = _register(lab, tmp_path, node_name, vol)
    prebind(kube, namespace, "data-lpvtb", pv)
    recorded = _records(lab, tmp_path, node_name)
    assert recorded["lpvtb"]["claim"] == "%s/data-lpvtb" % namespace
    assert recorded["lpvtb"]["partuuid"] == vol["partuuid"] and recorded["lpvtb"]["fs_uuid"] == vol["uuid"]
    swap = BlankInstead(disk)
    try:
        before = node.whole(disk)
        bound = refused(node.play([{"name": "lpvtb", "device": disk}], disk_prep_recorded=recorded))
        assert "replace: '" not in bound      # no offer to make a bound PV's volume again
        # the fingerprint as a run without the PV's record offers it (the host alone does not know the claim)
        fp = replace_in(refused(node.play([{"name": "lpvtb", "device": disk}], "--check")))
        out = refused(node.play([{"name": "lpvtb", "device": disk, "replace": fp}], disk_prep_recorded=recorded))
        after = node.whole(disk)
        assert "recorded in /etc/fstab and PV %s" % pv in out
        assert "Its PV %s is bound to claim %s/data-lpvtb: the volume of a bound PV is never made again on another " \
               "disk" % (pv, namespace) in out
        assert after == before
        record(node, "path re-pointed, PV Bound, replace given", before[disk], after[disk], out)
        # the cluster side holds on its own: a run that would record another disk on the bound PV is refused
        since = now_rfc3339()
        res = local_pv(lab, tmp_path, volumes=[dict(item, uuid="00000000-0000-4000-8000-000000000000",
                                                    partuuid="00000000-0000-4000-8000-000000000001")])
        assert res["rc"] != 0
        assert "%s/data-lpvtb" % namespace in res["msg"] and "The disk of a bound PV never changes" in res["msg"]
        assert "localpv.rollout/fs-uuid=%s" % vol["uuid"] in res["msg"]
        assert writes_by_us(lab, since, names={pv}) == []
        record(node, "local_pv: identity change of a Bound PV", "-", "-", res["msg"])
    finally:
        swap.restore()


def test_an_available_pvs_record_proves_the_disk_when_the_host_lost_its_fstab_line(lab, tmp_path, node, registered):
    node_name = lab.node(HOST)["node_name"]
    disk, vol = _volume_with_data(node, "lpvta")
    registered.append(naming.pv_name(node_name, "lpvta"))
    _register(lab, tmp_path, node_name, vol)
    recorded = _records(lab, tmp_path, node_name)
    assert recorded["lpvta"]["claim"] is None
    node.sh("sed -i '\\#%s/lpvta #d' /etc/fstab" % ROOT)
    swap = BlankInstead(disk)
    try:
        before = node.whole(disk)
        out = refused(node.play([{"name": "lpvta", "device": disk}], "--check", "--diff",
                                disk_prep_recorded=recorded))
        after = node.whole(disk)
        assert "volume lpvta was made on a disk with partition UUID %s, filesystem UUID %s (recorded in PV %s)" % (
            vol["partuuid"], vol["uuid"], naming.pv_name(node_name, "lpvta")) in out
        assert after == before
        record(node, "path re-pointed, PV Available, no fstab line", before[disk], after[disk], out)
    finally:
        swap.restore()


def test_a_wiped_disk_still_on_the_host_is_named_as_the_volumes_own_disk(lab, tmp_path, node, registered):
    """The volume's own disk, wiped in place: the same stable id, none of the recorded
    ids. The refusal says it is that very disk, wiped, not that another disk holds them."""
    node_name = lab.node(HOST)["node_name"]
    disk, vol = _volume_with_data(node, "lpvtv")
    registered.append(naming.pv_name(node_name, "lpvtv"))
    _register(lab, tmp_path, node_name, vol)
    recorded = _records(lab, tmp_path, node_name)
    assert recorded["lpvtv"]["stable_id"] == vol["stable_id"]
    # wiped to zeros (a discard on a loop disk), so that replace alone makes it again
    node.sh("partx -d %s && blkdiscard -f %s" % (disk, disk))
    before = node.whole(disk)
    for args in (("--check", "--diff"), ()):
        out = refused(node.play([{"name": "lpvtv", "device": disk}], *args, disk_prep_recorded=recorded))
        assert "%s is the very disk volume lpvtv was made on (it carries the stable id %s recorded for it), and the " \
               "recorded partition UUID %s, filesystem UUID %s are gone from it: it was wiped or re-partitioned " \
               "since" % (disk, vol["stable_id"], vol["partuuid"], vol["uuid"]) in out
        assert "still on this host" not in out and "point device at it" not in out
    after = node.whole(disk)
    assert after == before
    record(node, "volume's own disk wiped, still attached", before[disk], after[disk], out)
    # the advice works: replace with this disk's fingerprint makes the volume again, empty
    made = ok(node.play([{"name": "lpvtv", "device": disk, "replace": replace_in(out)}],
                        disk_prep_recorded=recorded))
    (new,) = made.volumes
    assert new["uuid"] != vol["uuid"] and new["state"] == "formatted"


# --- 2. "blank" says how it was proven ----------------------------------------------

def test_a_disk_with_data_only_in_its_middle_is_not_blank(node):
    disk = node.disks[0]
    size = node.sizes[disk]
    middle = size // 2 - 32 * MIB
    node.sh("dd if=/dev/urandom of=%s bs=1M count=64 seek=%d conv=notrunc,fsync status=none" % (disk, middle // MIB))
    before = node.whole(disk)
    for args in (("--check", "--diff"), ()):
        out = refused(node.play([{"name": "lpvtm", "device": disk}], *args))
        assert "holds unrecognised data (no signature; 256 spread regions and both 8 MiB ends (32 MiB of" in out
        found = int(re.search(r"read, data at offset (\d+)", out).group(1))
        assert middle <= found < middle + 64 * MIB
    after = node.whole(disk)
    assert after == before
    record(node, "64 MiB of data in the middle, spread proof", before[disk], after[disk], out)


def test_full_proof_finds_data_the_spread_proof_cannot_see(node):
    disk = node.disks[0]
    size = node.sizes[disk]
    # a spot near the middle that no spread region covers
    regions = hv.sample_offsets(size)
    spot = next(o for o in range(size // 2, size, 4096) if not any(s <= o < s + n for s, n in regions))
    node.sh("printf secret | dd of=%s bs=1 seek=%d conv=notrunc,fsync status=none" % (disk, spot))
    before = node.whole(disk)
    spread = ok(node.play([{"name": "lpvtf", "device": disk}], "--check", "--diff"))
    assert "blank (no signature; 256 spread regions and both 8 MiB ends (" in spread.stdout
    out = refused(node.play([{"name": "lpvtf", "device": disk, "blank_proof": "full"}]))
    after = node.whole(disk)
    assert "holds unrecognised data (no signature; the whole device (" in out and "data at offset %d" % spot in out
    assert after == before
    record(node, "a few bytes between spread regions, full proof", before[disk], after[disk], out)


# --- 3. refusals say what the disk is ------------------------------------------------

def test_two_of_our_disks_that_swapped_paths_are_named_as_each_others_volumes(node):
    a, b = node.disks
    ok(node.play([{"name": "lpvtx", "device": a}, {"name": "lpvty", "device": b}]))
    node.sh("umount %s/lpvtx %s/lpvty" % (ROOT, ROOT))
    files = [_backing(a), _backing(b)]
    _reattach(a, b, files[1], files[0])
    try:
        before = node.whole(a, b)
        out = refused(node.play([{"name": "lpvtx", "device": a}, {"name": "lpvty", "device": b}],
                                localpv_allow_wipe=True))
        after = node.whole(a, b)
        assert "This is volume lpvty of this host; the entry for lpvtx now points at it" in out
        assert "This is volume lpvtx of this host; the entry for lpvty now points at it" in out
        assert "wipe: '" not in out and "replace: '" not in out
        assert after == before
        record(node, "two of our disks swapped paths", before, after, out)
    finally:
        _reattach(a, b, files[0], files[1])


def test_stale_kernel_partitions_are_re_read_not_taken_for_data(node):
    disk, _vol = _volume_with_data(node, "lpvts")
    part = disk + "p1"
    # the kernel's entry now says another place than the table (as a re-attach left it)
    node.sh("delpart %s 1 && addpart %s 1 4096 409600" % (disk, disk))
    before = node.whole(disk)
    ok(node.play([{"name": "lpvts", "device": disk}], "--check", "--diff"))
    assert node.whole(disk) == before
    ok(node.play([{"name": "lpvts", "device": disk}]))
    assert node.sh("cat %s/lpvts/data" % ROOT).stdout.strip() == "precious"
    assert node.sh("cat /sys/class/block/%s/start" % os.path.basename(part)).stdout.strip() == "2048"
    record(node, "stale kernel partition entry", before[disk], "-", "ok: re-read with partx -u, data kept")


def test_a_partition_count_change_is_named_as_such(node):
    disk, _vol = _volume_with_data(node, "lpvtc")
    before = node.whole(disk)
    out = refused(node.play([{"name": "lpvtc", "device": disk, "partitions": 2}]))
    after = node.whole(disk)
    assert "it carries volume(s) lpvtc (1 partition(s)); the entry asks for 2 partition(s) (lpvtc-1, lpvtc-2): " \
           "changing a disk's partition count destroys every volume on it" in out
    assert "localpv-lpvtc, not" not in out
    assert after == before
    record(node, "partition count 1 -> 2", before[disk], after[disk], out)


# --- issue 27: check mode predicts mount-point refusals --------------------------------

@pytest.mark.parametrize("check", [True, False], ids=["check-diff", "real-run"])
def test_a_symlinked_mount_point_is_refused_before_any_disk_is_written(node, check):
    a, b = node.disks
    node.sh("mkdir -p %s && ln -sfn /etc %s/lpvtn" % (ROOT, ROOT))
    try:
        before = node.whole(a, b)
        out = refused(node.play([{"name": "lpvto", "device": a}, {"name": "lpvtn", "device": b}],
                                *(("--check", "--diff") if check else ())))
        after = node.whole(a, b)
        assert "%s/lpvtn is a symlink, not a directory to mount volume lpvtn on" % ROOT in out
        assert "nothing was written to any disk of this host" in out
        assert after == before
        record(node, "symlinked mount point (%s)" % ("check" if check else "run"), before, after, out)
    finally:
        node.sh("rm -f %s/lpvtn" % ROOT)


# --- issue 27: a wipe covers only the volumes it names -----------------------------------

def test_a_volume_retired_with_wipe_on_a_split_disk_is_made_again_alone(node):
    disk = node.disks[0]
    entry = {"name": "lpvtd", "device": disk, "partitions": 2, "fstype": "ext4"}
    ok(node.play([entry]))
    # a tenant's data filling much of lpvtd-1 (the case: about 970 MiB of it stayed after the wipe)
    node.sh("dd if=/dev/urandom of=%s/lpvtd-1/data bs=1M count=400 conv=fsync status=none && "
            "echo two > %s/lpvtd-2/data && sync" % (ROOT, ROOT))
    # lpvtd-1 retired with wipe, as decommission leaves it: unmounted, out of fstab, signatures and first MiB gone
    node.sh("umount %s/lpvtd-1 %s/lpvtd-2 && wipefs -a -q %sp1 && dd if=/dev/zero of=%sp1 bs=1M count=1 "
            "conv=fsync status=none && sed -i '\\#%s/lpvtd-1 #d' /etc/fstab" % (ROOT, ROOT, disk, disk, ROOT))
    two_uuid = node.findmnt(ROOT + "/lpvtd-2")
    before = node.whole(disk)
    out = refused(node.play([entry], "--check", "--diff", localpv_allow_wipe=True))
    assert "partition %sp1 of volume lpvtd-1 holds unrecognised data" % disk in out
    assert "volume(s) lpvtd-2 on the same disk are intact and kept" in out
    pfp = re.findall(r"erasing only %sp1 \(volume\(s\) lpvtd-1\) and making it again needs wipe: '([0-9a-f]{16})'"
                     % re.escape(disk), out)
    assert pfp, out[-3000:]
    assert node.whole(disk) == before
    record(node, "split disk, one volume retired with wipe", before[disk], node.whole(disk)[disk], out)
    made = ok(node.play([dict(entry, wipe=pfp[0])], localpv_allow_wipe=True))
    states = dict((v["name"], v["state"]) for v in made.volumes)
    assert states == {"lpvtd-1": "formatted", "lpvtd-2": "existing"}, states
    assert node.sh("cat %s/lpvtd-2/data" % ROOT).stdout.strip() == "two"
    assert node.sh("ls %s/lpvtd-1" % ROOT).stdout.split() == ["lost+found"]
    assert two_uuid is None and node.findmnt(ROOT + "/lpvtd-2") is not None
    assert ok(node.play([dict(entry, wipe=pfp[0])], localpv_allow_wipe=True)).host["changed"] == 0
