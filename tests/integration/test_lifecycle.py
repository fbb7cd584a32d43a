# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A volume's life recorded where the next run looks, on the lab's real loop disks:
a retired volume stays retired, our own erase leaves a disk our own prep takes,
a block volume's next tenant reads zeros, two runs at once wait for each other,
and a killed run leaves no mkfs behind."""

import json
import os
import signal
import subprocess
import sys
import threading

import pytest
from kubernetes import client

from pv_helpers import wait_until
from test_decommission_support import PREPARE, ROOT, SSH_ARGS, Scenario, playbook

from ansible_collections.localpv.rollout.plugins.module_utils.host import host_volumes


@pytest.fixture
def scenario(lab, kube, tmp_path):
    s = Scenario(lab, kube, tmp_path)
    yield s
    s.sh("pkill -x mkfs.xfs; pkill -x mkfs.ext4; rm -rf /tmp/%s" % s.tag, check=False)
    s.cleanup()


def ok(res, host):
    assert res.returncode == 0, (res.failed_msg(host), res.text[-3000:], res.stderr[-2000:])
    return res


def today(s):
    return s.sh("date -u +%Y-%m-%d").stdout.strip()


def sha256(s, device):
    return s.sh("sha256sum %s" % device).stdout.split()[0]


def prepare(s, disks, *args, env=None, **extra):
    """disk_prep on the node, as site.yml runs it; returns the run (it may fail)."""
    s.runs += 1
    play = s.tmp / ("prepare-%d.yml" % s.runs)
    play.write_text(PREPARE.format(host=s.host, out=str(s.tmp / ("volumes-%d.json" % s.runs))))
    extra["localpv_disks"] = disks
    return playbook(s.lab, str(play), "--limit", s.host, *args, extra_vars=extra, env=env)


def setup_block(s, entries):
    """Scenario.setup for block volumes: this kernel has no udev, so their links use kernel names."""
    original = s.prepare

    def prepare_with_kernel_names(disks):
        ok(prepare(s, disks, localpv_allow_kernel_names=True), s.host)
        with open(str(s.tmp / ("volumes-%d.json" % s.runs))) as handle:
            return json.load(handle)
    s.prepare = prepare_with_kernel_names
    try:
        return s.setup(entries)
    finally:
        s.prepare = original


def test_a_retired_volume_is_never_mounted_or_published_again(lab, scenario):
    s = scenario
    disk = s.blank_disk()
    a, b = s.tag + "-a", s.tag + "-b"
    entries = [{"name": a, "device": disk, "fstype": "ext4"},
               {"name": b, "bind": "/data/%s/%s" % (s.tag, b), "capacity": "1G"}]
    s.setup(entries)
    s.sh("echo tenant > %s/%s/file && echo tenant > %s/%s/file" % (ROOT, a, ROOT, b))

    ok(s.decommission(), s.host)          # no wipe, the default: the data stays
    assert s.pvs() == [] and not s.mounted(a) and not s.mounted(b)
    day = today(s)
    label = host_volumes.retired_label(a, day)
    assert s.sh("sfdisk --part-label %s 1" % disk).stdout.strip() == label
    assert s.sh("cat /data/%s/%s/.localpv-retired" % (s.tag, b)).stdout.split()[1] == "retired=" + day

    # the routine run with the entries still in the inventory: refused, nothing mounted, nothing written
    before = sha256(s, disk)
    res = prepare(s, entries)
    assert res.returncode != 0
    msg = " ".join((res.failed_msg(s.host) or "").split())
    assert "volume %s was retired by decommission on %s (partition 1 of %s is named %s)" % (a, day, disk, label) in msg
    assert "bind volume %s was retired by decommission on %s" % (b, day) in msg
    assert "take the entry out of localpv_disks" in msg and "wipe: '" in msg
    assert not s.mounted(a) and not s.mounted(b) and not s.fstab_has(a) and not s.fstab_has(b)
    assert sha256(s, disk) == before
    assert s.pvs() == []
    # a re-read of the table from the disk (what a reboot or a move to another host does) keeps the mark
    s.sh("partx -d %s; partx -a %s" % (disk, disk))
    assert s.sh("sfdisk --part-label %s 1" % disk).stdout.strip() == label

    # the confirmation it names makes the disk a new, empty volume
    fp = msg.split("new and empty with wipe: '")[1].split("'")[0]
    made = prepare(s, [dict(entries[0], wipe=fp)], localpv_allow_wipe=True)
    ok(made, s.host)
    assert s.mounted(a) and s.sh("ls -A %s/%s" % (ROOT, a)).stdout.split() == ["lost+found"]


def test_our_erase_leaves_a_disk_our_prep_takes_and_a_rerun_changes_nothing(lab, scenario):
    s = scenario
    disk = s.blank_disk()
    a = s.tag + "-raw"
    entry = {"name": a, "device": disk, "mode": "block"}
    setup_block(s, [entry])
    s.sh("printf 'tenant data' | dd of=%s/%s bs=1M seek=100 conv=notrunc 2>/dev/null" % (ROOT, a))

    ok(s.decommission(decommission_wipe=True, localpv_allow_wipe=True), s.host)
    utf16 = "".join("%s\\x00" % c for c in "localpv-")
    assert s.sh("grep -c -a -P '%s' %s || true" % (utf16, disk)).stdout.strip() == "0"
    assert s.sh("wipefs --noheadings %s" % disk).stdout.strip() == ""

    first = prepare(s, [entry], localpv_allow_kernel_names=True)
    ok(first, s.host)
    assert first.stats[s.host]["changed"] > 0
    again = prepare(s, [entry], localpv_allow_kernel_names=True)
    ok(again, s.host)
    assert again.stats[s.host]["changed"] == 0


def claim_block(s, name):
    spec = s.claim_spec()
    spec.volume_mode = "Block"
    s.core.create_namespaced_persistent_volume_claim(s.ns, client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name=name), spec=spec))
    pod = s.pod_spec(None)
    pod.containers[0].volume_mounts = None
    pod.containers[0].volume_devices = [client.V1VolumeDevice(name="data", device_path="/dev/data")]
    pod.volumes = [client.V1Volume(name="data", persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
        claim_name=name))]
    s.core.create_namespaced_pod(s.ns, client.V1Pod(metadata=client.V1ObjectMeta(name=name), spec=pod))
    return s.bound_claims(1)[name]


@pytest.mark.parametrize("how", ["full", "quick"])
def test_a_block_volumes_next_tenant_reads_zeros_where_the_last_one_wrote(lab, scenario, how):
    s = scenario
    disk = sorted(s.info["disks"], key=lambda d: d["size"])[-1]["path"]   # 2 GiB: room past 100 MiB
    s.lab.wipe_disks(s.host, only=[disk])
    s.disks_used.append(disk)
    a = s.tag + "-raw"
    setup_block(s, [{"name": a, "device": disk, "mode": "block"}])
    pv = claim_block(s, "first")
    link = "%s/%s" % (ROOT, a)
    s.sh("head -c 4096 /dev/urandom | tr -d '\\0' | head -c 1000 > /tmp/%s.pattern && "
         "dd if=/tmp/%s.pattern of=%s bs=1M seek=100 conv=notrunc,fsync 2>/dev/null" % (s.tag, s.tag, link))
    at_100m = "dd if=%s bs=1M skip=100 count=1 2>/dev/null | head -c 1000 | sha256sum" % link
    assert s.sh(at_100m).stdout.split()[0] == s.sh("sha256sum < /tmp/%s.pattern" % s.tag).stdout.split()[0]
    s.core.delete_namespaced_pod("first", s.ns, grace_period_seconds=0)
    wait_until("pod gone", lambda: not s.core.list_namespaced_pod(s.ns).items)
    s.core.delete_namespaced_persistent_volume_claim("first", s.ns)
    wait_until("PV Released", lambda: s.core.read_persistent_volume(pv).status.phase == "Released")

    res = ok(s.reclaim(reclaim_block_wipe=how), s.host)
    (wiped,) = res.result("Wipe the volumes' data on the host", s.host)["volumes"]
    assert ("(quick: blkdiscard --zeroout)" if how == "quick" else "(full: ") in wiped["said"], wiped["said"]
    wait_until("PV Available", lambda: s.core.read_persistent_volume(pv).status.phase == "Available")
    assert claim_block(s, "next") == pv
    # the next tenant reads its device: zeros at 100 MiB, and everywhere else
    zeros = "dd if=/dev/zero bs=1M count=1 2>/dev/null | head -c 1000 | sha256sum"
    assert s.sh(at_100m).stdout.split()[0] == s.sh(zeros).stdout.split()[0]
    assert s.sh("cmp -s %s /dev/zero -n $(blockdev --getsize64 $(readlink -f %s)) && echo zero" % (
        link, link)).stdout.strip() == "zero"


def test_two_runs_at_once_on_one_host_format_once_and_the_second_changes_nothing(lab, scenario):
    s = scenario
    disk = s.blank_disk()
    entry = {"name": s.tag + "-a", "device": disk, "fstype": "ext4"}
    runs = {}
    threads = [threading.Thread(target=lambda i=i: runs.update({i: prepare(s, [entry])})) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    for run in runs.values():
        ok(run, s.host)
    changed = sorted(run.stats[s.host]["changed"] for run in runs.values())
    assert changed[0] == 0 and changed[1] > 0, changed
    assert s.mounted(entry["name"])


def test_a_run_waiting_for_the_lock_names_a_disk_tool_left_running(lab, scenario):
    s = scenario
    disk = s.blank_disk()
    fake = "/tmp/%s/mkfs.xfs" % s.tag
    # what a killed run leaves: a mkfs still running with the host lock
    s.sh("mkdir -p /tmp/%s && cp /bin/sleep %s && (setsid flock /run/localpv-rollout.lock %s 120 >/dev/null 2>&1 &) && sleep 1" % (
        s.tag, fake, fake))
    pid = s.sh("pgrep -f '^%s 120'" % fake).stdout.split()[0]
    before = sha256(s, disk)
    res = prepare(s, [{"name": s.tag + "-a", "device": disk}], disk_prep_lock_timeout=3)
    assert res.returncode != 0
    msg = " ".join((res.failed_msg(s.host) or "").split())
    assert "host %s: another run has held /run/localpv-rollout.lock for 3 s" % s.host in msg, msg
    assert "pid %s is mkfs.xfs, still running (%s 120)" % (pid, fake) in msg
    assert "Nothing was changed" in msg
    assert sha256(s, disk) == before
    s.sh("kill %s" % pid)


def kill_run(pid):
    """SIGKILL a playbook run and every process under it, as a cancelled CI job is killed:
    ansible-core's workers call setsid(), so a kill of the playbook's process group leaves
    them and their ssh running, and the module on the node finishes its task."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (IOError, OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    for sig in (signal.SIGSTOP, signal.SIGKILL):   # stopped first: none forks or reaps meanwhile
        for member in tree:
            try:
                os.kill(member, sig)
            except OSError:
                pass


def test_a_killed_run_leaves_no_mkfs_running_and_the_next_run_finishes(lab, scenario):
    s = scenario
    disk = sorted(s.info["disks"], key=lambda d: d["size"])[-1]["path"]
    s.lab.wipe_disks(s.host, only=[disk])
    s.disks_used.append(disk)
    # many inodes, written at mkfs time: a mkfs that runs for a few seconds. Only when mke2fs
    # writes the zeros itself: the lab's loop disks take write-zeroes (BLKZEROOUT, a fallocate
    # of the image), and with it this mkfs took 40 ms, too short to be seen and killed.
    # UNIX_IO_NOZEROOUT (e2fsprogs) turns that off: about 10 s on the lab's 2 GiB disk.
    entry = {"name": s.tag + "-a", "device": disk, "fstype": "ext4",
             "mkfs_options": "-N 4000000 -E lazy_itable_init=0,lazy_journal_init=0,nodiscard"}
    play = s.tmp / "prepare-killed.yml"
    slow = "  gather_facts: false\n  environment:\n    UNIX_IO_NOZEROOUT: \"1\"\n"
    play.write_text(PREPARE.format(host=s.host, out=str(s.tmp / "killed.json")).replace(
        "  gather_facts: false\n", slow, 1))
    assert "UNIX_IO_NOZEROOUT" in play.read_text()
    env = dict(lab.env(), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", lab.inventory, "--limit", s.host,
           "-e", json.dumps({"ansible_ssh_common_args": SSH_ARGS, "localpv_disks": [entry]}), str(play)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_until("mkfs running on the node", lambda: s.sh("pgrep -x mkfs.ext4", check=False).returncode == 0,
                   timeout=300)
    finally:
        kill_run(proc.pid)
        proc.wait()
    wait_until("mkfs gone with its run", lambda: s.sh("pgrep -x mkfs.ext4", check=False).returncode != 0, timeout=30)
    # the module is gone too: nothing holds the host lock (with pipelining a module is a bare
    # python3; without it, AnsiballZ; brackets: the pattern must not match the shell running pgrep)
    assert s.sh("find /proc/[0-9]*/fd -lname /run/localpv-rollout.lock 2>/dev/null || true").stdout.strip() == ""
    assert s.sh("pgrep -af '[A]nsiballZ|[a]nsible_module' || true").stdout.strip() == ""
    # stopped halfway, not run to its end: no filesystem on the partition
    part = disk + ("p1" if disk[-1].isdigit() else "1")
    assert s.sh("blkid -p -s TYPE -o value %s || true" % part).stdout.strip() == ""
    # the next run finishes: no "use the -f option", no half-made filesystem taken for a volume
    res = ok(prepare(s, [entry]), s.host)
    assert any(c.startswith("mkfs.ext4 ") for c in res.result(
        "Plan the disks of this host, refuse unsafe ones, then partition and format", s.host)["commands"])
    assert s.mounted(entry["name"])
