# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""disk_prep on real loop disks of a lab node: the safety matrix, idempotence,
re-attach and interrupted runs.

Every refusal test records a checksum of the first and last MiB of the node's
work disks (the good and the bad one of the plan) before the run and checks that
none changed: a refused plan writes nothing to any disk. Each test wipes only the
two work disks, before and after, unmounts only what is mounted from them or at
the tests' own mount points, and removes only those fstab lines.
"""

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

HOST = os.environ.get("LOCALPV_TEST_DISK_NODE", "node3")
ROOT = "/mnt/disks"

PLAY = """\
- name: Prepare the disks of the node under test
  hosts: {host}
  gather_facts: false
  roles:
    - role: localpv.rollout.disk_prep
  post_tasks:
    - name: Hand the published volumes to the test
      ansible.builtin.copy:
        content: "{{{{ localpv_volumes | to_json }}}}"
        dest: "{out}"
        mode: "0644"
      delegate_to: localhost
      changed_when: false
      when: not ansible_check_mode
"""

# Runs on the node: put disks back to blank and forget what tests mounted.
RESET = r'''
import os, re, subprocess, sys
disks = sys.argv[1:]
names = [os.path.basename(d) for d in disks]
def ours(dev):
    base = os.path.basename(dev)
    return any(base == n or re.match(re.escape(n) + r"p[0-9]+$", base) for n in names)
def test_path(path):
    return path.startswith("/mnt/disks/lpvt") or path.startswith("/mnt/lpvtest")
def run(*argv):
    return subprocess.call(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for line in open("/proc/swaps").read().splitlines()[1:]:
    if ours(line.split()[0]):
        run("swapoff", line.split()[0])
gone = set()
for line in reversed(open("/proc/self/mountinfo").read().splitlines()):
    f = line.split()
    sep = f.index("-", 6)
    target = f[4].replace("\\040", " ")
    if ours(f[sep + 2]) or test_path(target):
        run("umount", "-l", target)
        gone.add(target)
# drop the fstab lines of what was unmounted and of the tests' own mount points only
with open("/etc/fstab") as handle:
    lines = handle.read().splitlines(True)
keep = [l for l in lines if len(l.split()) < 2 or not (l.split()[1] in gone or test_path(l.split()[1]))]
if keep != lines:
    with open("/etc/fstab", "w") as handle:
        handle.writelines(keep)
for entry in os.listdir("/mnt/disks") if os.path.isdir("/mnt/disks") else []:
    path = os.path.join("/mnt/disks", entry)
    if entry.startswith("lpvt"):
        if os.path.islink(path):
            os.unlink(path)
        elif os.path.isdir(path) and not os.path.ismount(path) and not os.listdir(path):
            os.rmdir(path)
subprocess.call(["rm", "-rf", "/data/lpvtest"])
for entry in os.listdir("/mnt/lpvtest") if os.path.isdir("/mnt/lpvtest") else []:
    path = os.path.join("/mnt/lpvtest", entry)
    if os.path.isdir(path) and not os.path.ismount(path) and not os.listdir(path):
        os.rmdir(path)
for disk in disks:
    run("blockdev", "--setrw", disk)
    run("partx", "-u", disk)
    name = os.path.basename(disk)
    for part in sorted(os.listdir("/sys/block/" + name)):
        if part.startswith(name) and os.path.exists("/sys/block/%s/%s/partition" % (name, part)):
            run("wipefs", "-a", "/dev/" + part)
    run("partx", "-d", disk)
    run("wipefs", "-a", disk)
    size = int(open("/sys/block/%s/size" % name).read()) * 512
    with open(disk, "r+b") as handle:
        for offset in (0, size - (1 << 20)):
            handle.seek(offset)
            handle.write(b"\0" * (1 << 20))
    # zero throughout (disk_prep samples content): discard punches holes in the image
    subprocess.check_call(["blkdiscard", "-f", disk], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run("partx", "-d", disk)
'''

# sha256 of the first and last MiB of each disk; for a disk given as "header:<path>"
# only of its first 4 KiB (an active swap area is written to by the kernel, but
# never its header page).
CHECKSUM = r'''
import hashlib, json, os, sys
out = {}
for arg in sys.argv[1:]:
    header = arg.startswith("header:")
    disk = arg.split(":", 1)[1] if header else arg
    size = int(open("/sys/block/%s/size" % os.path.basename(disk)).read()) * 512
    with open(disk, "rb") as handle:
        if header:
            out[disk] = hashlib.sha256(handle.read(4096)).hexdigest()
            continue
        head = handle.read(1 << 20)
        handle.seek(size - (1 << 20))
        tail = handle.read(1 << 20)
    out[disk] = hashlib.sha256(head).hexdigest() + hashlib.sha256(tail).hexdigest()
print(json.dumps(out))
'''


# One SSH master per node. (The lab inventory's ControlPath must expand %C per host;
# a literal path would send every host's tasks down the first host's connection.)
CONTROL_DIR = tempfile.mkdtemp(prefix="lpvt-cm-")
SSH_ARGS = ("-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ControlMaster=auto "
            "-o ControlPersist=60s -o ControlPath=%s/%%C" % CONTROL_DIR)


def whole_disk_digest(disk):
    """A digest of the whole content of a lab disk: its size and every 4 KiB block
    that is not all zeros, with its offset. Read on this machine from the disk's
    image (a sparse file: holes read as zeros, so only data extents are read),
    after flushing the disk's cache, so that any write through the device shows."""
    subprocess.run(["blockdev", "--flushbufs", disk], check=True)
    image = _backing(disk)
    digest = hashlib.blake2b(digest_size=16)
    with open(image, "rb") as handle:
        fd = handle.fileno()
        size = os.fstat(fd).st_size
        digest.update(b"size %d" % size)
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:   # ENXIO: only a hole is left
                break
            start -= start % 4096
            end = os.lseek(fd, start, os.SEEK_HOLE)
            handle.seek(start)
            for block_at in range(start, end, 4096):
                block = handle.read(4096)
                if block.count(b"\0") != len(block):
                    digest.update(b"%d:" % block_at + block)
            offset = end
    return digest.hexdigest()


def node_python(lab, script, *args):
    payload = base64.b64encode(script.encode()).decode()
    res = lab.ssh(HOST, "echo %s | base64 -d > /tmp/lpvt.py && python3 /tmp/lpvt.py %s" % (
        payload, " ".join("'%s'" % a for a in args)))
    assert res.returncode == 0, res.stderr
    return res.stdout


class Node:
    """The node under test, its disks (largest first) and helpers."""

    def __init__(self, lab, tmp_path):
        self.lab = lab
        self.tmp = tmp_path
        info = lab.node(HOST)
        self.all_disks = [d["path"] for d in info["disks"]]
        # The two largest disks are the tests' to write to (and wipe); the others
        # may be in use by other tests on the same lab at the same time.
        self.disks = [d["path"] for d in sorted(info["disks"], key=lambda d: -d["size"])][:2]
        self.sizes = dict((d["path"], d["size"]) for d in info["disks"])
        self.runs = 0

    def sh(self, command, check=True):
        res = self.lab.ssh(HOST, command)
        if check:
            assert res.returncode == 0, "%s: %s %s" % (command, res.stdout, res.stderr)
        return res

    def whole(self, *disks):
        """A digest of every byte of each disk (of the two work disks by default)."""
        return dict((disk, whole_disk_digest(disk)) for disk in (disks or self.disks))

    def checksums(self, header_only=()):
        args = [("header:" + d) if d in header_only else d for d in self.disks]
        return json.loads(node_python(self.lab, CHECKSUM, *args))

    def reset(self):
        node_python(self.lab, RESET, *self.disks)

    def play(self, localpv_disks, *args, **extra):
        self.runs += 1
        out = str(self.tmp / ("volumes-%d.json" % self.runs))
        path = self.tmp / ("play-%d.yml" % self.runs)
        path.write_text(PLAY.format(host=HOST, out=out))
        extra_vars = {"localpv_disks": localpv_disks, "ansible_ssh_common_args": SSH_ARGS}
        extra_vars.update(extra)
        res = self.lab.playbook(str(path), "--limit", HOST, *args, extra_vars=extra_vars)
        res.volumes = json.load(open(out)) if os.path.exists(out) else None
        res.host = res.recap.get(HOST, {})
        return res

    def fstab_lines(self, path):
        return [line for line in self.sh("cat /etc/fstab").stdout.splitlines()
                if len(line.split()) > 1 and line.split()[1] == path]

    def findmnt(self, path):
        res = self.sh("findmnt -rn -o SOURCE,FSTYPE,UUID --mountpoint %s" % path, check=False)
        return res.stdout.split() if res.returncode == 0 else None


@pytest.fixture
def node(lab, tmp_path):
    n = Node(lab, tmp_path)
    n.reset()
    yield n
    n.reset()


def ok(res):
    assert res.returncode == 0 and res.host.get("failed") == 0, res.stdout[-4000:] + res.stderr[-2000:]
    return res


def refused(res):
    """The failure text of a refused run, with the callback's line folding undone."""
    assert res.returncode != 0 and res.host.get("failed") == 1, res.stdout[-4000:]
    return " ".join((res.stdout + res.stderr).split())


# --- the happy path ----------------------------------------------------------------

def test_blank_disks_become_xfs_volumes_mounted_by_uuid_and_a_rerun_changes_nothing(node):
    big = node.disks[0]
    first = ok(node.play([{"name": "lpvt0", "device": big}]))
    assert first.host["changed"] > 0
    (vol,) = first.volumes
    assert (vol["name"], vol["path"], vol["fstype"], vol["mode"]) == ("lpvt0", ROOT + "/lpvt0", "xfs", "filesystem")
    assert vol["uuid"] and vol["stable_id"].startswith("loop:")
    assert vol["capacity"] and 0 < vol["capacity"] <= node.sizes[big]
    source, fstype, uuid = node.findmnt(ROOT + "/lpvt0")
    assert (fstype, uuid) == ("xfs", vol["uuid"])
    assert node.fstab_lines(ROOT + "/lpvt0") == ["UUID=%s %s/lpvt0 xfs defaults,nofail 0 0" % (vol["uuid"], ROOT)]
    assert "PTTYPE=\"gpt\"" in node.sh("blkid -p %s" % big, check=False).stdout or \
        "gpt" in node.sh("wipefs %s" % big).stdout

    second = ok(node.play([{"name": "lpvt0", "device": big}]))
    assert second.host["changed"] == 0
    # what a PV is made of is the same; state and needs_mount tell what each run found
    keys = ("name", "path", "mode", "fstype", "uuid", "size", "capacity", "stable_id", "storage_class", "mount")
    assert [dict((k, v[k]) for k in keys) for v in second.volumes] == \
        [dict((k, v[k]) for k in keys) for v in first.volumes]
    assert (first.volumes[0]["state"], second.volumes[0]["state"]) == ("formatted", "existing")

    # Unmount everything and mount -a, as after a reboot: still correct, still a no-op.
    node.sh("umount %s/lpvt0 && mount -a" % ROOT)
    assert node.findmnt(ROOT + "/lpvt0")[2] == vol["uuid"]
    assert ok(node.play([{"name": "lpvt0", "device": big}])).host["changed"] == 0


def test_check_mode_shows_the_plan_and_writes_nothing(node):
    before = node.checksums()
    res = ok(node.play([{"name": "lpvt0", "device": node.disks[0]}], "--check", "--diff"))
    assert "[localpv-lpvt0] xfs -> %s/lpvt0" % ROOT in res.stdout
    assert "fstab: UUID=<new> %s/lpvt0 xfs" % ROOT in res.stdout
    assert node.checksums() == before
    assert node.findmnt(ROOT + "/lpvt0") is None


def test_split_disk_ext4_block_volume_and_bind_mount(node):
    big, other = node.disks[0], node.disks[1]
    wanted = [
        {"name": "lpvts", "device": big, "partitions": 2, "fstype": "ext4"},
        {"name": "lpvtraw", "device": other, "mode": "block"},
        {"name": "lpvtbind", "bind": "/data/lpvtest/vol1", "capacity": "1G"},
    ]
    # the lab has no udev (no by-partuuid links): the block volume opts in to kernel names
    res = ok(node.play(wanted, localpv_allow_kernel_names=True))
    by_name = dict((v["name"], v) for v in res.volumes)
    assert sorted(by_name) == ["lpvtbind", "lpvtraw", "lpvts-1", "lpvts-2"]
    assert node.findmnt(ROOT + "/lpvts-2")[1] == "ext4"
    assert by_name["lpvtraw"]["fstype"] is None and by_name["lpvtraw"]["capacity"] == by_name["lpvtraw"]["size"]
    target = node.sh("readlink %s/lpvtraw" % ROOT).stdout.strip()
    assert target == by_name["lpvtraw"]["link_target"] and node.sh("test -b %s" % target).returncode == 0
    node.sh("touch /data/lpvtest/vol1/seen-through-bind && test -f %s/lpvtbind/seen-through-bind" % ROOT)
    assert node.fstab_lines(ROOT + "/lpvtbind") == ["/data/lpvtest/vol1 %s/lpvtbind none bind 0 0" % ROOT]
    assert ok(node.play(wanted, localpv_allow_kernel_names=True)).host["changed"] == 0


def test_selector_picks_eligible_disks_only(node):
    # Both work disks match the selector's size; one holds data, so only the other is
    # taken. (The node's smaller disk does not match, and may be busy with other tests.)
    node.sh("mkfs.ext4 -q %s" % node.disks[1])
    before = node.checksums()[node.disks[1]]
    wanted = [{"match": {"min_size": node.sizes[node.disks[1]]}, "name_prefix": "lpvt", "fstype": "ext4"}]
    res = ok(node.play(wanted))
    assert [(v["name"], v["disk"]) for v in res.volumes] == [("lpvt0", node.disks[0])]
    assert node.checksums()[node.disks[1]] == before
    # The machine's other disks are listed on the node but must never be picked.
    assert all(v["disk"] in node.all_disks for v in res.volumes)
    assert ok(node.play(wanted)).host["changed"] == 0


# --- mounting and linking in one module run (volume_mounts) -------------------------

MOUNT_TASK = "Mount volumes by filesystem UUID in fstab and link block volumes"


def task_outcome(stdout, task):
    """What the default callback printed for ``task`` on the node: ok, changed, skipping, fatal."""
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("TASK [") and task in line:
            for after in lines[i + 1:]:
                if after.startswith(("ok:", "changed:", "skipping:", "fatal:")):
                    return after.split(":")[0]
    return None


MIXED = [
    {"name": "lpvtm", "device": None, "partitions": 2},      # two xfs volumes on the big disk
    {"name": "lpvtraw", "device": None, "mode": "block"},
    {"name": "lpvtbind", "bind": "/data/lpvtest/vol1", "capacity": "1G"},
]


def mixed(node):
    wanted = [dict(entry) for entry in MIXED]
    wanted[0]["device"], wanted[1]["device"] = node.disks[0], node.disks[1]
    return wanted


def test_one_run_mounts_every_volume_with_one_fstab_line_each_and_a_rerun_skips_the_mount_task(node):
    first = ok(node.play(mixed(node), localpv_allow_kernel_names=True))
    assert task_outcome(first.stdout, MOUNT_TASK) == "changed"
    by_name = dict((v["name"], v) for v in first.volumes)
    for name in ("lpvtm-1", "lpvtm-2"):
        uuid = by_name[name]["uuid"]
        assert node.findmnt("%s/%s" % (ROOT, name))[1:] == ["xfs", uuid]
        assert node.fstab_lines("%s/%s" % (ROOT, name)) == [
            "UUID=%s %s/%s xfs defaults,nofail 0 0" % (uuid, ROOT, name)]
    assert node.fstab_lines(ROOT + "/lpvtbind") == ["/data/lpvtest/vol1 %s/lpvtbind none bind 0 0" % ROOT]
    node.sh("touch /data/lpvtest/vol1/seen && test -f %s/lpvtbind/seen" % ROOT)
    assert node.sh("readlink %s/lpvtraw" % ROOT).stdout.strip() == by_name["lpvtraw"]["link_target"]
    assert node.sh("stat -c %%a %s" % ROOT).stdout.strip() == "755"

    again = ok(node.play(mixed(node), localpv_allow_kernel_names=True))
    assert again.host["changed"] == 0 and task_outcome(again.stdout, MOUNT_TASK) == "skipping"


def test_check_mode_says_which_mounts_and_fstab_lines_it_would_make_and_changes_nothing(node):
    wanted = [{"name": "lpvtc", "device": node.disks[0]}]
    ok(node.play(wanted, disk_prep_stop_after="format"))  # the filesystem exists, not mounted yet
    uuid = node.sh("blkid -p -s UUID -o value %sp1" % node.disks[0]).stdout.strip()
    fstab = node.sh("cat /etc/fstab").stdout
    res = ok(node.play(wanted, "--check", "--diff"))
    assert task_outcome(res.stdout, MOUNT_TASK) == "changed"
    assert "+UUID=%s %s/lpvtc xfs defaults,nofail 0 0" % (uuid, ROOT) in res.stdout
    assert "+%s/lpvtc: mounted from UUID=%s" % (ROOT, uuid) in res.stdout
    assert node.sh("cat /etc/fstab").stdout == fstab
    assert node.findmnt(ROOT + "/lpvtc") is None and node.sh("test -e %s/lpvtc" % ROOT, check=False).returncode != 0


def test_a_foreign_mount_at_a_mount_point_is_refused_and_nothing_is_mounted_or_written(node):
    wanted = [{"name": "lpvtf", "device": node.disks[0], "partitions": 2}]
    ok(node.play(wanted, disk_prep_stop_after="format"))
    node.sh("mkdir -p %s/lpvtf-1 && mount -t tmpfs lpvt-foreign %s/lpvtf-1" % (ROOT, ROOT))
    fstab = node.sh("cat /etc/fstab").stdout
    text = refused(node.play(wanted))
    assert "%s/lpvtf-1 is mounted from lpvt-foreign (tmpfs), not from UUID=" % ROOT in text
    assert "refusing to mount or link anything; nothing was changed" in text
    assert node.findmnt(ROOT + "/lpvtf-1")[:2] == ["lpvt-foreign", "tmpfs"]
    assert node.findmnt(ROOT + "/lpvtf-2") is None and node.sh("cat /etc/fstab").stdout == fstab


def test_a_mount_point_taken_before_a_new_volume_is_made_is_refused_and_its_disk_is_not_written(node):
    wanted = [{"name": "lpvtn", "device": node.disks[0]}]
    node.sh("mkdir -p %s/lpvtn && mount -t tmpfs lpvt-scratch %s/lpvtn" % (ROOT, ROOT))
    fstab = node.sh("cat /etc/fstab").stdout
    for dry_run in (["--check", "--diff"], []):
        text = refused(node.play(wanted, *dry_run))
        assert "%s/lpvtn is mounted from lpvt-scratch (tmpfs), where the new volume lpvtn belongs" % ROOT in text
        assert node.sh("wipefs %s" % node.disks[0]).stdout.strip() == ""   # no table, no filesystem
        assert node.findmnt(ROOT + "/lpvtn")[:2] == ["lpvt-scratch", "tmpfs"]
        assert node.sh("cat /etc/fstab").stdout == fstab


def test_a_directory_where_a_block_volume_link_belongs_is_refused_and_nothing_is_changed(node):
    wanted = [{"name": "lpvtd", "device": node.disks[0]},
              {"name": "lpvtdraw", "device": node.disks[1], "mode": "block"}]
    node.sh("mkdir -p %s/lpvtdraw" % ROOT)
    fstab, disks = node.sh("cat /etc/fstab").stdout, node.checksums()
    text = refused(node.play(wanted, localpv_allow_kernel_names=True))
    # the plan refuses it, before any disk is written (volume_mounts, which would name the link's
    # target, is never reached)
    assert "host %s: refusing to prepare disks; nothing was written to any disk of this host" % HOST in text
    assert "%s/lpvtdraw is a directory where the link of block volume lpvtdraw belongs; move it away and run " \
           "again" % ROOT in text
    assert node.sh("test -d %s/lpvtdraw -a ! -L %s/lpvtdraw" % (ROOT, ROOT), check=False).returncode == 0
    assert node.findmnt(ROOT + "/lpvtd") is None and node.sh("cat /etc/fstab").stdout == fstab
    assert node.checksums() == disks


MOUNTS_PLAY = """\
- name: Mount volumes with volume_mounts alone
  hosts: {host}
  gather_facts: false
  tasks:
    - name: Mount them
      localpv.rollout.volume_mounts:
        host: "{{{{ inventory_hostname }}}}"
        root: {root}
        mounts: "{{{{ lpvt_mounts }}}}"
"""


def mount_only(node, items):
    """Run volume_mounts by itself, as after a disk_prepare that found the mount points empty."""
    path = node.tmp / "mounts.yml"
    path.write_text(MOUNTS_PLAY.format(host=HOST, root=ROOT))
    res = node.lab.playbook(str(path), "--limit", HOST,
                            extra_vars={"lpvt_mounts": items, "ansible_ssh_common_args": SSH_ARGS})
    res.host = res.recap.get(HOST, {})
    return res


def test_files_in_an_unmounted_mount_point_are_refused_not_hidden_and_a_run_after_moving_them_mounts(node):
    wanted, path, stray = [{"name": "lpvth", "device": node.disks[0]}], ROOT + "/lpvth", "pod-wrote-this"
    uuid = ok(node.play(wanted)).volumes[0]["uuid"]
    line = "UUID=%s %s xfs defaults,nofail 0 0" % (uuid, path)
    # As after a reboot whose mount failed: the fstab line stays, a pod writes into the bare directory.
    node.sh("umount %s && echo precious > %s/%s" % (path, path, stray))
    fstab, disks = node.sh("cat /etc/fstab").stdout, node.checksums()

    def nothing_changed():
        assert node.findmnt(path) is None and node.sh("cat %s/%s" % (path, stray)).stdout == "precious\n"
        assert node.sh("cat /etc/fstab").stdout == fstab and node.checksums() == disks

    try:
        for args in (("--check", "--diff"), ()):
            text = refused(node.play(wanted, *args))
            assert "host %s: refusing to prepare disks; nothing was written" % HOST in text
            assert "%s is not mounted but holds 1 entry ('%s'), on the filesystem below it; mounting the volume " \
                   "there would hide them" % (path, stray) in text and "Move them away" in text
            nothing_changed()
        # volume_mounts keeps the rule too, for files that come after disk_prepare looked
        text = refused(mount_only(node, [{"path": path, "src": "UUID=" + uuid, "fstype": "xfs",
                                          "opts": "defaults,nofail"}]))
        assert "host %s: refusing to mount or link anything; nothing was changed" % HOST in text
        assert "%s is not mounted but holds 1 entry ('%s')" % (path, stray) in text
        nothing_changed()

        node.sh("mkdir -p /data/lpvtest && mv %s/%s /data/lpvtest/" % (path, stray))
        res = ok(node.play(wanted))
        assert res.volumes[0]["uuid"] == uuid and node.findmnt(path)[1:] == ["xfs", uuid]
        assert node.fstab_lines(path) == [line]
        assert node.sh("cat /data/lpvtest/%s" % stray).stdout == "precious\n"
    finally:
        node.sh("mountpoint -q %s || rm -f %s/%s" % (path, path, stray), check=False)


# --- the safety matrix ---------------------------------------------------------------

def _root_disk():
    dev = os.stat("/").st_dev
    link = os.path.realpath("/sys/dev/block/%d:%d" % (os.major(dev), os.minor(dev)))
    if os.path.exists(os.path.join(link, "partition")):
        link = os.path.dirname(link)
    return "/dev/" + os.path.basename(link)


SETUPS = {
    "filesystem": ("mkfs.ext4 -q {disk}", "carries ext4"),
    "partition table only": ("echo 'label: gpt' | sfdisk -q --no-reread --no-tell-kernel {disk}",
                             "has a gpt partition table"),
    "partitions": ("printf 'label: gpt\\nsize=64MiB\\n' | sfdisk -q --no-reread --no-tell-kernel {disk}"
                   " && partx -u {disk}", "has partitions"),
    # read-only and without journal replay, so that the kernel itself writes nothing
    # to it (a fresh ext4 mounted rw gets its inode tables zeroed in the background)
    "mounted": ("mkfs.ext4 -q {disk} && mkdir -p /mnt/lpvtest/m && mount -o ro,noload {disk} /mnt/lpvtest/m",
                "mounted at"),
    # swapon is not allowed inside a node container; swap is global, so the machine
    # turns it on for the node's disk and the node sees it in /proc/swaps.
    "swap": ("mkswap -q {disk}", "used as swap"),
    "read-only": ("blockdev --setro {disk}", "read-only"),
}


@pytest.mark.parametrize("state", sorted(SETUPS))
def test_a_disk_in_use_or_with_data_is_refused_and_no_disk_of_the_host_is_touched(node, state):
    setup, words = SETUPS[state]
    bad, good = node.disks[1], node.disks[0]
    node.sh(setup.format(disk=bad))
    if state == "swap":
        subprocess.run(["swapon", bad], check=True)
    loose = [bad] if state == "swap" else []
    try:
        before = node.checksums(loose)
        res = node.play([{"name": "lpvtgood", "device": good}, {"name": "lpvtbad", "device": bad}])
        after = node.checksums(loose)
    finally:
        if state == "swap":
            subprocess.run(["swapoff", bad], check=True)
    out = refused(res)
    assert "host %s: refusing" % HOST in out
    assert "%s (volume lpvtbad)" % bad in out and words in out
    assert after == before, "a refused plan wrote to a disk"
    assert node.findmnt(ROOT + "/lpvtgood") is None


@pytest.mark.parametrize("wanted, words", [
    ([{"name": "lpvtx", "device": "/dev/lpvt-no-such-disk"}], "does not exist on this host"),
    ([{"name": "lpvtx", "device": "{good}"}, {"name": "lpvtx", "device": "{other}"}], "used more than once"),
    ([{"name": "LPVT_bad", "device": "{good}"}], "not an RFC 1123 label"),
    ([{"name": "lpvt/../etc", "device": "{good}"}], "not an RFC 1123 label"),
    ([{"name": "lpvtx", "device": "{good}", "expect": {"size": 12345}}], "expected size 12345 bytes"),
])
def test_a_bad_inventory_is_refused_before_any_write(node, wanted, words):
    good, other = node.disks[0], node.disks[1]
    wanted = [dict((k, v.format(good=good, other=other) if isinstance(v, str) else v) for k, v in w.items())
              for w in wanted]
    before = node.checksums()
    out = refused(node.play(wanted))
    assert words in out
    assert node.checksums() == before


def test_the_disk_holding_the_root_filesystem_is_refused(node):
    root = _root_disk()
    before = node.checksums()
    out = refused(node.play([{"name": "lpvtroot", "device": root}]))
    assert "%s (volume lpvtroot)" % root in out
    # Inside the node the machine's root disk is mounted (bind mounts of /etc/hosts...)
    # and cannot be opened; either reason must stop it.
    assert "mounted at" in out or "holds the system" in out or "cannot be" in out
    assert node.checksums() == before


def test_a_holder_is_refused(node):
    res = node.sh("dmsetup create lpvtdm --table '0 2048 linear %s 0'" % node.disks[1], check=False)
    if res.returncode != 0:
        pytest.skip("this kernel has no device-mapper: %s" % res.stderr.strip()[:200])
    try:
        before = node.checksums()
        out = refused(node.play([{"name": "lpvtheld", "device": node.disks[1]}]))
        assert "held by dm-" in out
        assert node.checksums() == before
    finally:
        node.sh("dmsetup remove lpvtdm", check=False)


def test_wipe_needs_the_run_key_and_the_disks_fingerprint(node):
    disk = node.disks[0]
    node.sh("mkfs.ext4 -q %s" % disk)
    before = node.checksums()
    out = refused(node.play([{"name": "lpvtw", "device": disk}], localpv_allow_wipe=True))
    fp = out.split("erasing it needs wipe: '", 1)[1].split("'", 1)[0]
    assert len(fp) == 16
    wanted = [{"name": "lpvtw", "device": disk, "wipe": fp}]
    out = refused(node.play(wanted))
    assert "wipe: '%s' on this entry and localpv_allow_wipe: true for the run" % fp in out
    assert node.checksums() == before
    res = ok(node.play(wanted, localpv_allow_wipe=True))
    assert res.volumes[0]["fstype"] == "xfs"
    # Already ours: the confirmation stays in the inventory, the disk is not wiped again.
    again = ok(node.play(wanted, localpv_allow_wipe=True))
    assert again.host["changed"] == 0 and again.volumes[0]["uuid"] == res.volumes[0]["uuid"]


# --- moving, re-attaching, interrupting ------------------------------------------

def test_adopt_mounts_an_existing_filesystem_and_keeps_its_data(node):
    disk = node.disks[0]
    node.sh("mkfs.ext4 -q -L moved %s && mkdir -p /mnt/lpvtest/a && mount %s /mnt/lpvtest/a && "
            "echo precious > /mnt/lpvtest/a/data && umount /mnt/lpvtest/a" % (disk, disk))
    uuid = node.sh("blkid -p -s UUID -o value %s" % disk).stdout.strip()
    wrong = refused(node.play([{"name": "lpvtmoved", "device": disk, "adopt": True,
                                "expect": {"fs_uuid": "00000000-0000-0000-0000-000000000000"}}]))
    assert "expected filesystem UUID" in wrong
    res = ok(node.play([{"name": "lpvtmoved", "device": disk, "adopt": True, "expect": {"fs_uuid": uuid}}]))
    assert res.volumes[0]["uuid"] == uuid
    assert node.sh("cat %s/lpvtmoved/data" % ROOT).stdout.strip() == "precious"


def _backing(lab_disk):
    out = subprocess.run(["losetup", "-n", "-O", "BACK-FILE", lab_disk], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_reattached_disks_with_new_dev_names_are_recognised_not_reformatted(node):
    a, b = node.disks[0], node.disks[1]
    wanted = [{"match": {"min_size": min(node.sizes[a], node.sizes[b])}, "name_prefix": "lpvtr", "fstype": "ext4"}]
    first = ok(node.play(wanted))
    uuids = dict((v["stable_id"], v["uuid"]) for v in first.volumes)
    for v in first.volumes:
        node.sh("echo %s > %s/marker" % (v["name"], v["path"]))
    # Unmount, detach both loop devices and attach each image to the other's device.
    node.sh("umount %s/lpvtr0 %s/lpvtr1" % (ROOT, ROOT))
    fa, fb = _backing(a), _backing(b)
    for dev in (a, b):
        subprocess.run(["partx", "-d", dev], capture_output=True, check=False)
        subprocess.run(["losetup", "-d", dev], check=True)
    subprocess.run(["losetup", a, fb], check=True)
    subprocess.run(["losetup", b, fa], check=True)
    try:
        second = ok(node.play(wanted))
        assert dict((v["stable_id"], v["uuid"]) for v in second.volumes) == uuids
        # proven by the filesystem UUIDs read in place (the kernel knew no partition yet), not formatted
        assert [v["state"] for v in second.volumes] == ["existing", "existing"]
        moved = dict((v["name"], v["disk"]) for v in second.volumes)
        assert moved != dict((v["name"], v["disk"]) for v in first.volumes), "the /dev names did not change"
        for v in second.volumes:
            assert node.sh("cat %s/marker" % v["path"]).stdout.strip() == v["name"]
            assert len(node.fstab_lines(v["path"])) == 1
    finally:
        node.sh("umount %s/lpvtr0 %s/lpvtr1" % (ROOT, ROOT), check=False)
        for dev in (a, b):
            subprocess.run(["partx", "-d", dev], capture_output=True, check=False)
            subprocess.run(["losetup", "-d", dev], check=True)
        subprocess.run(["losetup", a, fa], check=True)
        subprocess.run(["losetup", b, fb], check=True)


def test_interrupted_between_partitioning_and_mkfs_converges(node):
    disk = node.disks[0]
    wanted = [{"name": "lpvti", "device": disk, "partitions": 2, "fstype": "ext4"}]
    ok(node.play(wanted, disk_prep_stop_after="partition"))
    parts = node.sh("partx -g -o NAME %s" % disk).stdout.split()
    assert parts == ["localpv-lpvti-1", "localpv-lpvti-2"]
    assert node.sh("wipefs %sp1" % disk).stdout.strip() == ""
    assert node.findmnt(ROOT + "/lpvti-1") is None
    res = ok(node.play(wanted))
    # the partitions are ours and blank (the blank proof finds zeros): made into filesystems now
    assert [v["state"] for v in res.volumes] == ["formatted", "formatted"]
    assert all(v["uuid"] for v in res.volumes)
    for v in res.volumes:
        assert node.findmnt(v["path"])[2] == v["uuid"]
        assert len(node.fstab_lines(v["path"])) == 1
    assert ok(node.play(wanted)).host["changed"] == 0


def test_interrupted_between_mkfs_and_mount_converges_without_reformatting(node):
    disk = node.disks[0]
    wanted = [{"name": "lpvtj", "device": disk}]
    ok(node.play(wanted, disk_prep_stop_after="format"))
    uuid = node.sh("blkid -p -s UUID -o value %sp1" % disk).stdout.strip()
    assert uuid and node.findmnt(ROOT + "/lpvtj") is None
    res = ok(node.play(wanted))
    assert res.volumes[0]["uuid"] == uuid
    assert node.fstab_lines(ROOT + "/lpvtj") == ["UUID=%s %s/lpvtj xfs defaults,nofail 0 0" % (uuid, ROOT)]
    assert ok(node.play(wanted)).host["changed"] == 0


def test_killed_mid_run_converges(node):
    """Kill ansible-playbook while it runs, at whatever point it reached, then re-run."""
    disk = node.disks[0]
    wanted = [{"name": "lpvtk", "device": disk, "partitions": 2, "fstype": "ext4"}]
    path = node.tmp / "kill.yml"
    path.write_text(PLAY.format(host=HOST, out=str(node.tmp / "kill.json")))
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i",
           node.lab.inventory, "--limit", HOST, "-e",
           json.dumps({"localpv_disks": wanted, "ansible_ssh_common_args": SSH_ARGS}), str(path)]
    proc = subprocess.Popen(cmd, env=node.lab.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    time.sleep(2.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    res = ok(node.play(wanted))
    for v in res.volumes:
        assert node.findmnt(v["path"])[2] == v["uuid"]
        assert len(node.fstab_lines(v["path"])) == 1
    assert ok(node.play(wanted)).host["changed"] == 0


# mount(8) for the test below, first in the play's PATH on the node: it passes every
# call on to the real one, except the mount of one path, where it says who it is (its
# parent is the module) and blocks, so that the run can be killed right there.
MOUNT_SHIM = """\
#!/bin/sh
for arg in "$@"; do last="$arg"; done
if [ "$last" = "{blocked}" ]; then
    echo "$PPID $$" > {shim}/blocked.tmp && mv {shim}/blocked.tmp {shim}/blocked
    exec sleep 3600
fi
exec {real} "$@"
"""
SHIM_DIR = "/tmp/lpvt-shim"


def _wait_for(check, what, timeout=240):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "gave up waiting for " + what
        time.sleep(0.5)


def kill_at_mount(node, wanted, blocked, done_first):
    """Run the role with the mount(8) shim, wait until volume_mounts waits on the
    mount of ``blocked`` and the mounts of ``done_first`` are made, then kill
    ansible-playbook and, on the node, the module and the mount it waits for."""
    real = node.sh("command -v mount").stdout.strip()
    script = base64.b64encode(MOUNT_SHIM.format(blocked=blocked, shim=SHIM_DIR, real=real).encode()).decode()
    node.sh("mkdir -p {0} && echo {1} | base64 -d > {0}/mount && chmod 755 {0}/mount".format(SHIM_DIR, script))
    play = node.tmp / "shimmed.yml"
    play.write_text(PLAY.format(host=HOST, out=str(node.tmp / "shimmed.json")).replace(
        "  gather_facts: false\n", "  gather_facts: false\n  environment:\n    PATH: %s:%s\n" % (
            SHIM_DIR, node.sh("echo $PATH").stdout.strip()), 1))
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", node.lab.inventory, "--limit",
           HOST, "-e", json.dumps({"localpv_disks": wanted, "localpv_allow_kernel_names": True,
                                   "ansible_ssh_common_args": SSH_ARGS}), str(play)]
    proc = subprocess.Popen(cmd, env=node.lab.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        _wait_for(lambda: node.sh("test -f %s/blocked" % SHIM_DIR, check=False).returncode == 0 or
                  proc.poll() is not None, "volume_mounts to reach the mount of " + blocked)
        assert proc.poll() is None, "the run ended before it reached the mount of " + blocked
        _wait_for(lambda: all(node.findmnt(path) for path in done_first), "the other mounts of the run")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        module_pid, mount_pid = node.sh("cat %s/blocked" % SHIM_DIR).stdout.split()
        node.sh("kill -9 %s %s" % (module_pid, mount_pid))
        _wait_for(lambda: node.sh("kill -0 %s" % module_pid, check=False).returncode != 0, "the module to die")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        node.sh("test -f {0}/blocked && kill -9 $(cat {0}/blocked); rm -rf {0}".format(SHIM_DIR), check=False)


def test_volume_mounts_killed_after_writing_fstab_and_before_the_last_mount_converges_on_a_plain_rerun(node):
    """The run is killed while volume_mounts waits for one mount(8), after /etc/fstab
    has every line and the other mounts are done, before any link: a re-run mounts
    the rest, makes the link, keeps one fstab line per volume and loses nothing."""
    wanted, blocked = mixed(node), ROOT + "/lpvtm-2"
    kill_at_mount(node, wanted, blocked, [ROOT + "/lpvtm-1", ROOT + "/lpvtbind"])

    # Killed between fstab and the last mount: every line is in fstab, lpvtm-2 is not mounted, no link yet.
    for name in ("lpvtm-1", "lpvtm-2", "lpvtbind"):
        assert len(node.fstab_lines("%s/%s" % (ROOT, name))) == 1, name
    assert node.findmnt(blocked) is None and node.sh("test -e %s/lpvtraw" % ROOT, check=False).returncode != 0
    uuids = dict((n, node.sh("blkid -p -s UUID -o value %sp%d" % (node.disks[0], n)).stdout.strip()) for n in (1, 2))
    node.sh("echo precious > %s/lpvtm-1/written-before-the-rerun && echo kept > /data/lpvtest/vol1/too" % ROOT)

    res = ok(node.play(wanted, localpv_allow_kernel_names=True))
    by_name = dict((v["name"], v) for v in res.volumes)
    for n in (1, 2):
        path = "%s/lpvtm-%d" % (ROOT, n)
        assert by_name["lpvtm-%d" % n]["uuid"] == uuids[n] and node.findmnt(path)[1:] == ["xfs", uuids[n]]
        assert node.fstab_lines(path) == ["UUID=%s %s xfs defaults,nofail 0 0" % (uuids[n], path)]
    assert node.fstab_lines(ROOT + "/lpvtbind") == ["/data/lpvtest/vol1 %s/lpvtbind none bind 0 0" % ROOT]
    assert node.sh("readlink %s/lpvtraw" % ROOT).stdout.strip() == by_name["lpvtraw"]["link_target"]
    assert node.sh("cat %s/lpvtm-1/written-before-the-rerun %s/lpvtbind/too" % (ROOT, ROOT)).stdout == "precious\nkept\n"
    assert ok(node.play(wanted, localpv_allow_kernel_names=True)).host["changed"] == 0


# --- facts -------------------------------------------------------------------------

FACTS_PLAY = """\
- name: Read the block devices of the node under test
  hosts: {host}
  gather_facts: false
  tasks:
    - name: Read the disks
      localpv.rollout.block_devices:
      register: blk
    - name: Hand them to the test
      ansible.builtin.copy:
        content: "{{{{ blk.disks | to_json }}}}"
        dest: "{out}"
        mode: "0644"
      delegate_to: localhost
      changed_when: false
"""


def test_block_devices_judges_own_disks_eligible_and_the_machines_others_not(node):
    node.sh("mkfs.ext4 -q %s" % node.disks[1])
    out = node.tmp / "facts.json"
    path = node.tmp / "facts.yml"
    path.write_text(FACTS_PLAY.format(host=HOST, out=out))
    res = node.lab.playbook(str(path), "--limit", HOST, extra_vars={"ansible_ssh_common_args": SSH_ARGS})
    assert res.returncode == 0, res.stdout[-3000:]
    disks = dict((d["path"], d) for d in json.loads(out.read_text()))
    own = [disks[p] for p in node.all_disks]
    assert all(d["udev"] is False and d["stable_id_source"] == "loop-backing-file" for d in own)
    assert disks[node.disks[0]]["eligible"] and disks[node.disks[0]]["reasons"] == []
    fs = disks[node.disks[1]]
    assert not fs["eligible"] and fs["fstype"] == "ext4" and fs["reason_codes"] == ["signatures"]
    # Every other disk of the machine is listed (the node sees all of sysfs) and none
    # is eligible: the node may not open them.
    others = [d for p, d in disks.items() if p not in node.all_disks and d["size"]]
    assert others, "the node should list the machine's other disks"
    assert not any(d["eligible"] for d in others)
    assert all("probe" in d["reason_codes"] or "system" in d["reason_codes"] or "mounted" in d["reason_codes"]
               for d in others)
