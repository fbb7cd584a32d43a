# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the plan recognises on a disk: the fingerprint a wipe confirms, the
partitions the kernel still knows, and the expectations (expect:, adopt) and holders
that refuse a disk, each pinned by a test.

Found by mutation testing (`make mutants`): a label check compared by order or
identity passed every other test.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import pytest

from plan_recordings import fresh, reasons, recorded
from plan_recordings import plan as plan_on

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import recognise as plan_recognise


def plan(entries, raw=None):
    """make_plan() on ``raw``, by default on the recording of a disk that carries ext4."""
    return plan_on("whole_ext4", entries, raw=raw)


def test_adopt_accepts_the_expected_filesystem_label():
    p = plan([{"name": "moved", "device": "/dev/loop0", "adopt": True, "expect": {"fs_label": fresh("data")}}])
    assert p["refusals"] == []
    assert p["volumes"][0]["state"] == "adopted"


@pytest.mark.parametrize("label", ["aaa", "zzz"])
def test_adopt_refuses_another_filesystem_label_whichever_way_it_sorts(label):
    p = plan([{"name": "moved", "device": "/dev/loop0", "adopt": True, "expect": {"fs_label": label}}])
    assert p["volumes"] == []
    assert "expected filesystem label %r, found 'data'" % label in reasons(p)


def blank_with_identity():
    raw = recorded("blank")
    raw["devices"]["loop0"].update(model="INTEL SSDPE2KX010T8", serial="PHLJ1234001X1P0FGN",
                                   wwid="naa.5000c500a1b2c3d4")
    return raw


def expect_plan(expect):
    return plan([{"name": "ssd0", "device": "/dev/loop0", "expect": expect}], raw=blank_with_identity())


def test_expect_lets_through_the_disk_it_describes():
    size = recorded("blank")["devices"]["loop0"]["size"]
    p = expect_plan({"size": size, "model": fresh("INTEL SSDPE2KX010T8"), "serial": fresh("PHLJ1234001X1P0FGN"),
                     "wwn": "wwn-0x5000c500a1b2c3d4"})
    assert p["refusals"] == [] and len(p["disks"]) == 1


@pytest.mark.parametrize("delta", [-1, 1], ids=["smaller", "larger"])
def test_expect_refuses_a_size_off_by_one_byte_either_way(delta):
    size = recorded("blank")["devices"]["loop0"]["size"]
    p = expect_plan({"size": size + delta})
    assert p["disks"] == []
    assert "expected size %d bytes exactly, the disk has %d bytes" % (size + delta, size) in reasons(p)


def test_expect_names_the_wwid_the_disk_has():
    p = expect_plan({"wwn": "0x5000c500a1b2c3d5"})
    assert "expected WWN 0x5000c500a1b2c3d5, the disk has naa.5000c500a1b2c3d4" in reasons(p)


@pytest.mark.parametrize("uuid", ["00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"])
def test_adopt_refuses_another_filesystem_uuid_whichever_way_it_sorts(uuid):
    p = plan([{"name": "moved", "device": "/dev/loop0", "adopt": True, "expect": {"fs_uuid": uuid}}])
    assert p["volumes"] == []
    assert "expected filesystem UUID %s" % uuid in reasons(p)


def test_our_disk_with_a_held_partition_is_refused_naming_the_partition():
    raw = recorded("ours_two_ext4")
    raw["devices"]["loop0"]["partitions"]["loop0p1"]["holders"] = ["dm-3"]
    p = plan([{"name": "data0", "device": "/dev/loop0", "partitions": 2, "fstype": "ext4"}], raw=raw)
    assert p["volumes"] == []
    assert "partition loop0p1 is held by dm-3" in reasons(p)


def test_the_fingerprint_follows_identity_signatures_table_and_content():
    raw = recorded("whole_ext4")
    disk = devices.find_disk(devices.build(raw), "/dev/loop0")
    fp = plan_recognise.fingerprint(disk, "c1")
    assert len(fp) == 16 and fp == plan_recognise.fingerprint(dict(disk), "c1")
    assert plan_recognise.fingerprint(dict(disk, stable_id="serial-OTHER"), "c1") != fp      # another disk
    assert plan_recognise.fingerprint(disk, "c2") != fp                                      # other bytes
    sigs = [dict(s, uuid="00000000-0000-0000-0000-000000000000") for s in disk["signatures"]]
    assert plan_recognise.fingerprint(dict(disk, signatures=sigs), "c1") != fp               # reformatted
    table = [{"number": 1, "start": 2048, "sectors": 100, "name": "localpv-a", "uuid": "u1", "type": "T"}]
    with_table = dict(disk, partition_table=table)
    assert plan_recognise.fingerprint(with_table, "c1") != fp                                # repartitioned
    renamed = dict(disk, partition_table=[dict(table[0], name="localpv-b")])
    assert plan_recognise.fingerprint(renamed, "c1") != plan_recognise.fingerprint(with_table, "c1")     # partition names


def test_kernel_partitions_the_table_does_not_list_are_stale():
    ours = devices.build(recorded("ours_two_ext4"))[0]
    assert ours["name"] == "loop0" and plan_recognise.stale_partitions(ours) == []
    raw = recorded("ours_two_ext4")
    raw["tables"]["loop0"] = raw["tables"]["loop0"][:1]
    assert plan_recognise.stale_partitions(devices.build(raw)[0]) == ["loop0p2"]
    raw["tables"]["loop0"] = []
    assert plan_recognise.stale_partitions(devices.build(raw)[0]) == ["loop0p1", "loop0p2"]
