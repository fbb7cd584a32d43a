# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each rule of the disk judge on its own, so that losing any one fails a test.

Found by mutation testing (`make mutants`): with one rule of ``devices.judge`` or
``devices.judge_partition`` switched off, the rest of the unit tests still passed.
Every case starts from a recorded host and changes the one thing the rule is about.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


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


def partition(found, name):
    return next(p for p in found["partitions"] if p["name"] == name)


def two_partitions():
    """A disk with two ext4 partitions (ours, not mounted), as recorded."""
    return recorded("ours_two_ext4")


def part_dev(raw, name):
    return raw["devices"]["loop0"]["partitions"][name]["dev"]


def an_opener(path):
    return [{"pid": 4242, "command": "dd if=%s of=/dev/null" % path, "how": "fd", "path": path}]


def test_a_partition_nobody_uses_gives_no_reason():
    found = disk(two_partitions())
    for part in found["partitions"]:
        assert devices.judge_partition(part) == []


def test_a_partition_holding_the_system_is_refused_and_its_disk_too():
    raw = two_partitions()
    raw["mountinfo"] += "99 27 %s / /boot rw - ext4 /dev/loop0p2 rw\n" % part_dev(raw, "loop0p2")
    found = disk(raw)
    assert ("system", "holds the system (/boot)") in devices.judge_partition(partition(found, "loop0p2"))
    assert devices.judge_partition(partition(found, "loop0p1")) == []
    assert "system" in found["reason_codes"] and not found["eligible"]


def test_a_mounted_partition_is_refused():
    raw = two_partitions()
    raw["mountinfo"] += "99 27 %s / /srv/data rw - ext4 /dev/loop0p1 rw\n" % part_dev(raw, "loop0p1")
    codes = [code for code, _msg in devices.judge_partition(partition(disk(raw), "loop0p1"))]
    assert codes == ["mounted"]


def test_a_partition_used_as_swap_is_refused_and_its_disk_too():
    raw = two_partitions()
    raw["swaps"] = [{"path": "/dev/loop0p1", "type": "partition"}]
    found = disk(raw)
    assert devices.judge_partition(partition(found, "loop0p1")) == [("swap", "in use as swap")]
    assert "swap" in found["reason_codes"]


def test_swap_named_by_another_path_is_found_by_its_device_number():
    # /proc/swaps may show a by-uuid or dm path; only the device number says which disk
    raw = two_partitions()
    raw["swaps"] = [{"path": "/dev/disk/by-partuuid/4b2a", "type": "partition"}]
    raw["swap_devs"] = {"/dev/disk/by-partuuid/4b2a": part_dev(raw, "loop0p2")}
    found = disk(raw)
    assert partition(found, "loop0p2")["swap"] and not partition(found, "loop0p1")["swap"]
    assert "swap" in found["reason_codes"]


def test_a_partition_with_holders_is_refused_and_its_disk_too():
    raw = two_partitions()
    raw["devices"]["loop0"]["partitions"]["loop0p2"]["holders"] = ["dm-3"]
    found = disk(raw)
    assert devices.judge_partition(partition(found, "loop0p2")) == [("holders", "held by dm-3")]
    assert "holders" in found["reason_codes"] and "dm-3" in found["holders"]


def test_a_partition_a_process_holds_open_is_refused_and_its_disk_too():
    raw = two_partitions()
    raw["openers"] = {part_dev(raw, "loop0p1"): an_opener("/dev/loop0p1")}
    found = disk(raw)
    reasons = devices.judge_partition(partition(found, "loop0p1"))
    assert [code for code, _msg in reasons] == ["opened"]
    assert "pid 4242" in reasons[0][1]
    assert "opened" in found["reason_codes"]


def test_a_blank_disk_a_process_holds_open_is_refused():
    raw = recorded("blank")
    raw["openers"] = {raw["devices"]["loop0"]["dev"]: an_opener("/dev/loop0")}
    found = disk(raw)
    assert found["reason_codes"] == ["opened"]
    assert "pid 4242 (dd if=/dev/loop0 of=/dev/null) has /dev/loop0 open" in found["reasons"][0]


def test_a_blank_removable_disk_is_refused():
    raw = recorded("blank")
    raw["devices"]["loop0"]["removable"] = 1
    found = disk(raw)
    assert found["reason_codes"] == ["removable"]
    assert found["reasons"] == ["removable medium"]


@pytest.mark.parametrize("kernel_name", ["sr0", "fd0"])
def test_optical_and_floppy_drives_are_refused_even_when_they_look_blank(kernel_name):
    raw = recorded("blank")
    raw["devices"][kernel_name] = dict(raw["devices"]["loop0"], name=kernel_name, backing_file=None, dev="11:0")
    raw["probes"][kernel_name] = raw["probes"]["loop0"]
    raw["exclusive"][kernel_name] = None
    found = disk(raw, kernel_name)
    assert found["reason_codes"] == ["removable"]
    assert found["reasons"] == ["an optical or floppy drive"]


def test_a_probe_failure_is_named_in_the_refusal():
    raw = recorded("blank")
    raw["probes"]["loop0"] = {"signatures": None, "error": "wipefs: /dev/loop0: Permission denied"}
    found = disk(raw)
    assert found["reasons"] == ["cannot be probed: wipefs: /dev/loop0: Permission denied"]
