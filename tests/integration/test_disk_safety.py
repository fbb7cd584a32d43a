# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nothing is destroyed by a re-run: each way a re-run used to destroy the
collection's own data (or a live user's), on real loop disks of a lab node.

Every test takes a digest of the WHOLE device (every byte, not only its ends)
before and after the run that must not write, and compares them. The lab has no
udev, so tests that make block volumes opt in to kernel names and say so.
"""

import json
import re
import subprocess
import time

import pytest

import test_disk_prep
from test_disk_prep import HOST, PLAY, ROOT, SSH_ARGS, ok, refused

KERNEL_NAMES = {"localpv_allow_kernel_names": True}  # the lab has no udev, so no by-partuuid links

# The node under test, its two work disks blanked before and after each test.
node = test_disk_prep.node


def fingerprint_in(text):
    found = re.findall(r"wipe: '([0-9a-f]{16})'", text)
    assert found, text[-2000:]
    return found[0]


def record(node, case, before, after, message):
    """One line per case for the evidence table (pytest -s shows them)."""
    found = re.search(r"Module failed: (.*?)(?: Origin:| fatal:|$)", message)
    print("\nCASE %s | before %s | after %s | %s" % (case, before, after, (found.group(1) if found else message)[:900]))


# --- 1. mode switch: a block volume's data is never formatted ----------------------

def _block_volume_with_data(node, name):
    disk = node.disks[0]
    ok(node.play([{"name": name, "device": disk, "mode": "block"}], **KERNEL_NAMES))
    node.sh("dd if=/dev/urandom of=%s/%s bs=1M count=16 conv=fsync status=none" % (ROOT, name))
    return disk


@pytest.mark.parametrize("check", [True, False], ids=["check-diff", "real-run"])
def test_a_block_volume_switched_to_filesystem_keeps_its_data(node, check):
    disk = _block_volume_with_data(node, "lpvtm")
    before = node.whole(disk)
    args = ("--check", "--diff") if check else ()
    out = refused(node.play([{"name": "lpvtm", "device": disk, "mode": "filesystem"}], *args, **KERNEL_NAMES))
    after = node.whole(disk)
    assert "volume lpvtm was made mode block" in out and "erasing it needs wipe: '" in out
    assert after == before
    record(node, "mode block->filesystem (%s)" % ("check" if check else "run"), before[disk], after[disk], out)


def test_an_older_block_volume_without_its_mode_on_disk_still_keeps_its_data(node):
    """Block volumes made before the partition type told the modes apart: the sampler decides."""
    disk = _block_volume_with_data(node, "lpvto")
    node.sh("sfdisk --no-reread --no-tell-kernel --part-type %s 1 0FC63DAF-8483-4772-8E79-3D69D8477DE4" % disk)
    before = node.whole(disk)
    out = refused(node.play([{"name": "lpvto", "device": disk}], **KERNEL_NAMES))
    after = node.whole(disk)
    assert "of volume lpvto holds unrecognised data (no signature, but not zero where sampled" in out
    assert after == before
    record(node, "old block volume (fs type) -> filesystem", before[disk], after[disk], out)


@pytest.mark.parametrize("change, words", [
    ({"fstype": "ext4"}, "volume lpvtv carries xfs, the entry asks for ext4"),
    ({"partitions": 2}, "it carries volume(s) lpvtv (1 partition(s)); the entry asks for 2 partition(s) (lpvtv-1, "
                        "lpvtv-2): changing a disk's partition count destroys every volume on it"),
    ({"mode": "block"}, "volume lpvtv is a filesystem volume (xfs); making it mode block"),
], ids=["fstype", "partition-count", "filesystem-to-block"])
def test_changing_an_existing_volume_is_refused_naming_the_confirmation(node, change, words):
    disk = node.disks[0]
    ok(node.play([{"name": "lpvtv", "device": disk}]))
    node.sh("echo precious > %s/lpvtv/data && umount %s/lpvtv" % (ROOT, ROOT))   # (mounted is refused anyway)
    before = node.whole(disk)
    out = refused(node.play([dict({"name": "lpvtv", "device": disk}, **change)], **KERNEL_NAMES))
    after = node.whole(disk)
    assert words in out and "erasing it needs wipe: '%s'" % fingerprint_in(out) in out
    assert after == before
    node.sh("mount %s/lpvtv" % ROOT)
    assert node.sh("cat %s/lpvtv/data" % ROOT).stdout.strip() == "precious"
    record(node, "change %s" % change, before[disk], after[disk], out)


# --- 2. wipe confirmations bound to what they destroy ------------------------------

def _wiped_into_volumes(node):
    """Both work disks hold ext4 data; each is wiped with its own confirmation and
    becomes a volume. Returns the inventory entries (with the now stale confirmations)."""
    a, b = node.disks
    node.sh("mkfs.ext4 -q %s && mkfs.ext4 -q %s" % (a, b))
    wanted = [{"name": "lpvta", "device": a}, {"name": "lpvtb", "device": b}]
    out = refused(node.play(wanted, localpv_allow_wipe=True))
    fps = re.findall(r"(/dev/\S+) \(volume (lpvt[ab])\): .*?wipe: '([0-9a-f]{16})'", out)
    fp = dict((vol, f) for _dev, vol, f in fps)
    assert sorted(fp) == ["lpvta", "lpvtb"], out
    wanted = [dict(wanted[0], wipe=fp["lpvta"]), dict(wanted[1], wipe=fp["lpvtb"])]
    ok(node.play(wanted, localpv_allow_wipe=True))
    for name in ("lpvta", "lpvtb"):
        node.sh("echo %s > %s/%s/marker && sync" % (name, ROOT, name))
    return wanted


def test_wipe_true_alone_erases_nothing_and_the_refusal_prints_the_fingerprint(node):
    disk = node.disks[0]
    node.sh("mkfs.ext4 -q %s" % disk)
    before = node.whole(disk)
    out = refused(node.play([{"name": "lpvtw", "device": disk, "wipe": True}], "--check", "--diff",
                            localpv_allow_wipe=True))
    assert "wipe: true alone no longer erases a disk; to erase this disk as it is now, set wipe: '" in out
    out = refused(node.play([{"name": "lpvtw", "device": disk, "wipe": True}], localpv_allow_wipe=True))
    after = node.whole(disk)
    assert after == before
    record(node, "wipe: true alone", before[disk], after[disk], out)
    fp = fingerprint_in(out)
    check = ok(node.play([{"name": "lpvtw", "device": disk, "wipe": fp}], "--check", "--diff",
                         localpv_allow_wipe=True))
    assert "holds data (to be wiped, confirmed fingerprint %s)" % fp in check.stdout
    assert node.whole(disk) == before
    res = ok(node.play([{"name": "lpvtw", "device": disk, "wipe": fp}], localpv_allow_wipe=True))
    assert res.volumes[0]["fstype"] == "xfs"
    # the confirmation stays in the inventory: the disk is ours now, a re-run changes nothing
    assert ok(node.play([{"name": "lpvtw", "device": disk, "wipe": fp}], localpv_allow_wipe=True)).host["changed"] == 0


def test_swapped_disks_with_the_wipe_keys_still_set_are_not_wiped(node):
    wanted = _wiped_into_volumes(node)
    a, b = node.disks
    node.sh("umount %s/lpvta %s/lpvtb" % (ROOT, ROOT))
    files = [_backing(a), _backing(b)]
    _reattach(a, b, files[1], files[0])
    try:
        before = node.whole(a, b)
        out = refused(node.play(wanted, localpv_allow_wipe=True))
        after = node.whole(a, b)
        assert after == before
        # each entry's path now leads to the other volume: the disk-identity proof names where each
        # volume is and what to do, and offers no wipe (the old confirmations are not even weighed)
        for mine, other, its_disk in (("lpvta", "lpvtb", b), ("lpvtb", "lpvta", a)):
            assert "volume %s was made on a disk with filesystem UUID" % mine in out
            assert "The disk with those ids is still on this host: %s (" % its_disk in out
            assert "This is volume %s of this host; the entry for %s now points at it" % (other, mine) in out
            assert "point the entry for %s back at its own disk" % mine in out
        assert "wipe: '" not in out and "replace: '" not in out
        record(node, "swapped disks, stale confirmations", before, after, out)
    finally:
        _reattach(a, b, files[0], files[1])


def test_a_confirmation_copied_from_another_disk_is_refused(node):
    a, b = node.disks
    node.sh("mkfs.ext4 -q %s && mkfs.xfs -q -f %s" % (a, b))
    out_b = refused(node.play([{"name": "lpvtb", "device": b}], localpv_allow_wipe=True))
    before = node.whole(a, b)
    out = refused(node.play([{"name": "lpvta", "device": a, "wipe": fingerprint_in(out_b)}], localpv_allow_wipe=True))
    after = node.whole(a, b)
    assert "the confirmation wipe: '%s' does not match this disk" % fingerprint_in(out_b) in out
    assert after == before
    record(node, "confirmation copied from another disk", before, after, out)


def test_a_confirmation_left_from_an_earlier_state_is_refused(node):
    disk = node.disks[0]
    node.sh("mkfs.ext4 -q %s" % disk)
    old = fingerprint_in(refused(node.play([{"name": "lpvts", "device": disk}], localpv_allow_wipe=True)))
    node.sh("mkfs.ext4 -q -F %s" % disk)   # reformatted since: another filesystem UUID
    before = node.whole(disk)
    out = refused(node.play([{"name": "lpvts", "device": disk, "wipe": old}], localpv_allow_wipe=True))
    after = node.whole(disk)
    assert "the confirmation wipe: '%s' does not match this disk as it is now" % old in out
    assert after == before
    record(node, "stale confirmation (reformatted)", before[disk], after[disk], out)


def _backing(dev):
    out = subprocess.run(["losetup", "-n", "-O", "BACK-FILE", dev], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _losetup(*args, tries=20):
    """losetup, tried again while the device is busy: a scan of the device by blkid
    or partx of another run holds it open for a moment, more so on a loaded machine,
    and a swap left half done would leave the lab's disks detached for later tests."""
    for attempt in range(tries):
        res = subprocess.run(["losetup"] + list(args), capture_output=True, text=True, check=False)
        if res.returncode == 0:
            return
        if attempt + 1 == tries or "busy" not in res.stderr.lower():
            raise AssertionError("losetup %s: %s" % (" ".join(args), res.stderr.strip()))
        time.sleep(0.5)


def _reattach(a, b, file_a, file_b):
    for dev in (a, b):
        subprocess.run(["partx", "-d", dev], capture_output=True, check=False)
        _losetup("-d", dev)
    _losetup(a, file_a)
    _losetup(b, file_b)
    for dev in (a, b):
        subprocess.run(["partx", "-a", dev], capture_output=True, check=False)


# --- 3. a plain (non-exclusive) opener -----------------------------------------------

OPENER = r'''
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
print(os.getpid(), flush=True)
time.sleep(float(sys.argv[2]))
'''


def start_opener(node, disk, seconds=300, wait_for_lock=False):
    """A process on the node that opens ``disk`` O_RDWR (no O_EXCL) and holds it;
    with ``wait_for_lock`` it first waits until someone takes the disk's flock."""
    script = OPENER
    if wait_for_lock:
        # watch /proc/locks for a flock on the disk's node, without opening the disk
        # (an open fd would be seen, and refused, already at plan time)
        script = ("import os, sys, time\n"
                  "st = os.stat(sys.argv[1])\n"
                  "key = ':%d' % st.st_ino\n"
                  "while not any(l.split()[1] == 'FLOCK' and l.split()[5].endswith(key)\n"
                  "              and l.split()[5].startswith('%02x:%02x:' % (os.major(st.st_dev), os.minor(st.st_dev)))\n"
                  "              for l in open('/proc/locks')):\n"
                  "    time.sleep(0.001)\n") + OPENER.replace("import os, sys, time\n", "import os, sys, time\n", 1)
    node.sh("cat > /tmp/lpvt-opener.py <<'EOF'\n%s\nEOF" % script)
    res = node.sh("nohup python3 /tmp/lpvt-opener.py %s %d > /tmp/lpvt-opener.pid 2>&1 & echo $!" % (disk, seconds))
    return int(res.stdout.split()[-1])


def stop_opener(node, pid):
    node.sh("kill %d 2>/dev/null; true" % pid, check=False)


def test_a_process_that_has_the_disk_open_is_named_and_refused(node):
    disk = node.disks[0]
    pid = start_opener(node, disk)
    try:
        time.sleep(1)
        before = node.whole(disk)
        out = refused(node.play([{"name": "lpvtp", "device": disk}]))
        after = node.whole(disk)
    finally:
        stop_opener(node, pid)
    assert "in use: pid %d (python3 /tmp/lpvt-opener.py %s" % (pid, disk) in out
    assert after == before
    record(node, "non-exclusive opener", before[disk], after[disk], out)


# --- 4. block links: stable names or an explicit opt-in ------------------------------

def test_a_block_volume_on_a_host_without_udev_needs_the_kernel_names_opt_in(node):
    disk = node.disks[0]
    before = node.whole(disk)
    out = refused(node.play([{"name": "lpvtk", "device": disk, "mode": "block"}]))
    after = node.whole(disk)
    assert "block volume lpvtk: this host has no /dev/disk/by-partuuid links (no udev)" in out
    assert "localpv_allow_kernel_names: true" in out
    assert after == before
    record(node, "block link without udev", before[disk], after[disk], out)
    res = ok(node.play([{"name": "lpvtk", "device": disk, "mode": "block"}], **KERNEL_NAMES))
    assert res.volumes[0]["link_target"] == disk + "p1"


# --- 6. the check-to-write window -----------------------------------------------------

def test_a_writer_that_arrives_after_the_plan_is_caught_under_the_lock(node):
    """The opener waits until disk_prepare takes the disk's lock, then opens the disk:
    the re-check under the lock, right before sfdisk, finds it."""
    disk = node.disks[0]
    pid = start_opener(node, disk, wait_for_lock=True)
    try:
        before = node.whole(disk)
        res = node.play([{"name": "lpvtl", "device": disk}])
        out = refused(res)
        after = node.whole(disk)
    finally:
        stop_opener(node, pid)
    assert "right before" in out and "in use: pid %d" % pid in out
    assert after == before
    record(node, "writer in the check-to-write window", before[disk], after[disk], out)


# --- capacity in check mode -----------------------------------------------------------

CHECK_PLAY = PLAY.replace("      when: not ansible_check_mode\n", "      check_mode: false\n")


@pytest.mark.parametrize("fstype", ["xfs", "ext4"])
def test_check_mode_predicts_the_capacity_the_real_run_reports(node, fstype):
    disk = node.disks[0]
    wanted = [{"name": "lpvtc", "device": disk, "fstype": fstype, "partitions": 2}]
    node.runs += 1
    out = str(node.tmp / "check.json")
    path = node.tmp / "check.yml"
    path.write_text(CHECK_PLAY.format(host=HOST, out=out))
    before = node.whole(disk)
    res = node.lab.playbook(str(path), "--limit", HOST, "--check", "--diff",
                            extra_vars={"localpv_disks": wanted, "ansible_ssh_common_args": SSH_ARGS})
    assert res.returncode == 0, res.stdout[-3000:]
    predicted = json.load(open(out))
    assert node.whole(disk) == before
    real = ok(node.play(wanted)).volumes
    assert [v["capacity"] for v in predicted] == [v["capacity"] for v in real]
    assert all(v["capacity"] for v in real)
    for v in real:
        statvfs = node.sh("python3 -c \"import os; s = os.statvfs('%s'); print(s.f_blocks * s.f_frsize)\"" % v["path"])
        assert int(statvfs.stdout) == v["capacity"]
    again = ok(node.play(wanted))
    assert again.host["changed"] == 0 and [v["capacity"] for v in again.volumes] == [v["capacity"] for v in real]
