# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan carried out: the partition table asked of sfdisk, the disk lock and
the checks made again under it, and the order and failures of the disks' steps. The
host is played back (a recording and fake commands); no real disk is written."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import os
import threading

import pytest

from plan_recordings import fingerprint_of, plan, recorded, zeros

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import writes as plan_writes


def test_sfdisk_script_asks_for_gpt_with_names():
    p = plan("blank", [{"name": "ssd0", "device": "/dev/loop0"}])
    script = plan_writes.sfdisk_script(p["disks"][0])
    assert script.startswith("label: gpt\n")
    assert 'start=1MiB, size=598MiB' in script and 'name="localpv-ssd0"' in script


def test_a_confirmed_wipe_stops_when_the_disk_changed_before_the_lock():
    raw = recorded("whole_ext4")
    fp = fingerprint_of("whole_ext4")
    p = plan(None, [{"name": "ssd0", "device": "/dev/loop0", "wipe": fp}], raw=raw, allow_wipe=True)
    changed = devices.find_disk(devices.build(recorded("gpt_only")), "/dev/loop0")
    locked = []
    with pytest.raises(plan_writes.PrepareError, match="changed since the plan was made .*not erased") as err:
        plan_writes.apply_plan(p, run=lambda argv: pytest.fail("ran %s" % argv), recheck=lambda disk: changed,
                               sampler=zeros(), lock=locked.append)
    assert not err.value.written and locked == ["/dev/loop0"]


def test_a_blank_disk_that_got_data_before_the_lock_is_not_partitioned():
    p = plan("blank", [{"name": "ssd0", "device": "/dev/loop0"}])
    fresh = devices.find_disk(devices.build(recorded("blank")), "/dev/loop0")
    with pytest.raises(plan_writes.PrepareError, match="holds unrecognised data"):
        plan_writes.apply_plan(p, run=lambda argv: pytest.fail("ran %s" % argv), recheck=lambda disk: fresh,
                               sampler=zeros(["/dev/loop0"]), lock=lambda disk: None)


def blank_disks(count):
    """The blank recording with ``count`` blank loop disks (loop0, loop1, ...)."""
    raw = recorded("blank")
    for i in range(1, count):
        name = "loop%d" % i
        raw["devices"][name] = dict(raw["devices"]["loop0"], name=name, dev="7:%d" % i,
                                    backing_file="/srv/disks/%d.img" % i)
        raw["probes"][name], raw["exclusive"][name] = raw["probes"]["loop0"], None
    return raw


class Host(object):
    """The host side of apply_plan, played back: every disk is still blank under the
    lock, every command succeeds but mkfs on the ``failing`` devices. What each
    step saw is recorded, so a test can say which disks were started."""

    def __init__(self, raw, failing=(), together=None):
        self.disks = devices.build(raw)
        self.failing = failing
        self.together = together
        self.locked, self.ran = [], []

    def lock(self, disk):
        self.locked.append(disk)
        if self.together:   # every disk under way before any goes on
            self.together.wait(timeout=10)

    def recheck(self, disk):
        return devices.find_disk(self.disks, disk)

    def sfdisk(self, disk, script):
        return 0, "", ""

    def run(self, argv):
        self.ran.append(argv)
        if argv[0].startswith("mkfs") and argv[-1] in self.failing:
            return 1, "", "mkfs: cannot write to %s" % argv[-1]
        if argv[0] == "blkid":
            return 0, "UUID=uuid-of-%s\nTYPE=xfs\n" % os.path.basename(argv[-1]), ""
        return 0, "", ""


@pytest.fixture
def host_steps(monkeypatch):
    """No real device is touched: the checks made on the host right before each write
    find nothing (they read /proc and open the device; the lab tests run them)."""
    monkeypatch.setattr(plan_writes, "_in_use_now", lambda path: [])
    monkeypatch.setattr(plan_writes, "_probe_now", lambda path, run, log: [])
    monkeypatch.setattr(plan_writes, "_wait_for_node", lambda path: True)


def apply_on(host, p):
    return plan_writes.apply_plan(p, run=host.run, sfdisk=host.sfdisk, recheck=host.recheck, sampler=zeros(),
                                  lock=host.lock)


def test_every_disk_is_prepared_and_logged_in_plan_order(host_steps):
    raw = blank_disks(6)
    p = plan(None, [{"name": "d%d" % i, "device": "/dev/loop%d" % i} for i in range(6)], raw=raw)
    host = Host(raw)
    log = apply_on(host, p)
    assert sorted(host.locked) == ["/dev/loop%d" % i for i in range(6)]
    assert [line.split()[-1] for line in log if line.startswith("sfdisk")] == ["/dev/loop%d" % i for i in range(6)]
    assert [v["state"] for v in p["volumes"]] == ["formatted"] * 6
    assert [v["uuid"] for v in p["volumes"]] == ["uuid-of-loop%dp1" % i for i in range(6)]


def test_after_a_failed_disk_no_other_disk_is_started_and_the_error_lists_what_ran(host_steps, monkeypatch):
    monkeypatch.setattr(plan_writes, "DISK_WORKERS", 1)
    raw = blank_disks(3)
    p = plan(None, [{"name": "d%d" % i, "device": "/dev/loop%d" % i} for i in range(3)], raw=raw)
    host = Host(raw, failing=["/dev/loop1p1"])
    with pytest.raises(plan_writes.PrepareError, match="mkfs failed .*/dev/loop1p1.*cannot write") as err:
        apply_on(host, p)
    assert host.locked == ["/dev/loop0", "/dev/loop1"]    # loop2 was left alone
    assert err.value.written
    assert err.value.commands == ["sfdisk /dev/loop0", "partx -u /dev/loop0", "mkfs.xfs -q /dev/loop0p1",
                                  "sfdisk /dev/loop1", "partx -u /dev/loop1", "mkfs.xfs -q /dev/loop1p1"]
    assert [v["state"] for v in p["volumes"]] == ["formatted", "create", "create"]


def test_disks_under_way_finish_when_another_fails_and_every_failure_is_named(host_steps):
    raw = blank_disks(3)
    p = plan(None, [{"name": "d%d" % i, "device": "/dev/loop%d" % i} for i in range(3)], raw=raw)
    host = Host(raw, failing=["/dev/loop0p1", "/dev/loop2p1"], together=threading.Barrier(3))
    with pytest.raises(plan_writes.PrepareError) as err:
        apply_on(host, p)
    message = str(err.value)
    assert message.index("/dev/loop0p1") < message.index("Also: ") < message.index("/dev/loop2p1")
    assert "mkfs.xfs -q /dev/loop1p1" in err.value.commands and p["volumes"][1]["state"] == "formatted"


def test_a_disk_lock_that_times_out_names_the_holder(held_flock):
    path, proc = held_flock
    with pytest.raises(plan_writes.PrepareError) as info:
        plan_writes.lock_disk(path, timeout=0.3)
    # the command line is cut at 60 characters, wherever the interpreter lives
    command = " ".join(proc.args)[:60]
    assert "held by pid %d (%s), FLOCK" % (proc.pid, command) in str(info.value), str(info.value)
