# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host plan: which disk becomes which volume, and every reason to refuse.

Runs make_plan() on recorded hosts (tests/unit/plugins/module_utils/host/data); nothing here writes.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import copy
import json

import pytest

from plan_recordings import fingerprint_of, fresh, plan, reasons, recorded, zeros

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import capacity as plan_capacity
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import planner as plan_planner
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import recognise as plan_recognise
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import render as plan_render
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import writes as plan_writes
from ansible_collections.localpv.rollout.plugins.module_utils.host import host_volumes
from ansible_collections.localpv.rollout.plugins.module_utils.host import mounts


def still_to_do(p):
    """What a run of the plan would still do on the host: each disk's actions and each
    volume's mount, link or bind source to make; [] on a host where all is done."""
    needs = ["%s %s" % (need, v["name"]) for v in p["volumes"]
             for need in ("needs_mount", "needs_link", "needs_source") if v.get(need)]
    return [a for d in p["disks"] for a in d["actions"]] + needs


def test_blank_disk_gets_one_gpt_partition_an_xfs_and_a_mount_under_the_root():
    p = plan("blank", [{"name": "ssd0", "device": "/dev/loop0"}])
    assert p["refusals"] == []
    (entry,) = p["disks"]
    assert entry["actions"] == ["partition", "mkfs /dev/loop0p1"]
    (part,) = entry["layout"]
    assert dict((k, part[k]) for k in ("number", "start", "size", "label", "volume")) == {
        "number": 1, "start": 1024 ** 2, "size": 598 * 1024 ** 2, "label": "localpv-ssd0", "volume": "ssd0"}
    (vol,) = p["volumes"]
    assert (vol["path"], vol["fstype"], vol["device"], vol["needs_mount"]) == (
        "/mnt/disks/ssd0", "xfs", "/dev/loop0p1", True)


def test_split_into_equal_partitions_names_volumes_by_number():
    p = plan("blank", [{"name": "ssd0", "device": "/dev/loop0", "partitions": 2, "fstype": "ext4"}])
    assert [v["name"] for v in p["volumes"]] == ["ssd0-1", "ssd0-2"]
    sizes = [part["size"] for part in p["disks"][0]["layout"]]
    assert sizes[0] == sizes[1] == 299 * 1024 ** 2


def test_partitions_too_small_for_xfs_are_refused_in_the_plan():
    p = plan("blank", [{"name": "ssd0", "device": "/dev/loop0", "partitions": 2}])
    assert "xfs needs at least 300 MiB" in reasons(p)


@pytest.mark.parametrize("recording, words", [
    ("whole_ext4", "carries ext4"),
    ("gpt_only", "gpt partition table"),
    ("vm_gpt_partitions", "has partitions"),
    ("table_no_nodes", "partition table lists 1"),
])
def test_disk_with_data_is_refused_naming_host_disk_and_both_wipe_keys(recording, words):
    p = plan(recording, [{"name": "ssd0", "device": "/dev/loop0"}])
    text = plan_render.refusal_message(p)
    assert text.startswith("host node1: refusing")
    assert "/dev/loop0 (volume ssd0)" in text and words in text
    (refusal,) = p["refusals"]
    assert "erasing it needs wipe: '%s' on this entry and localpv_allow_wipe: true" % refusal["fingerprint"] in text


@pytest.mark.parametrize("recording, words", [
    ("mounted", "mounted at"), ("swap", "used as swap")])
def test_wipe_never_overrides_a_disk_in_use(recording, words):
    p = plan(recording, [{"name": "ssd0", "device": "/dev/loop0", "wipe": True}], allow_wipe=True)
    assert words in reasons(p)
    assert p["disks"] == []


def test_a_wipe_needs_the_run_key_and_the_disks_fingerprint():
    fp = fingerprint_of("whole_ext4")
    entry = {"name": "ssd0", "device": "/dev/loop0", "wipe": fp}
    only_disk = plan("whole_ext4", [entry])
    assert "and localpv_allow_wipe: true for the run" in reasons(only_disk)
    only_run = plan("whole_ext4", [{"name": "ssd0", "device": "/dev/loop0"}], allow_wipe=True)
    assert "erasing it needs wipe: '%s' on this entry (the fingerprint" % fp in reasons(only_run)
    both = plan("whole_ext4", [entry], allow_wipe=True)
    assert both["refusals"] == []
    assert both["disks"][0]["actions"][:2] == ["wipe", "partition"]
    assert both["disks"][0]["fingerprint"] == fp
    assert "holds data (to be wiped, confirmed fingerprint %s)" % fp in plan_render.render(both, after=False)


def test_wipe_true_alone_no_longer_erases_and_says_what_to_set():
    fp = fingerprint_of("whole_ext4")
    p = plan("whole_ext4", [{"name": "ssd0", "device": "/dev/loop0", "wipe": True}], allow_wipe=True)
    assert p["disks"] == []
    assert "wipe: true alone no longer erases a disk; to erase this disk as it is now, set wipe: '%s'" % fp \
        in reasons(p)


def test_a_confirmation_of_another_disk_or_an_earlier_state_is_refused():
    other = fingerprint_of("gpt_only")
    p = plan("whole_ext4", [{"name": "ssd0", "device": "/dev/loop0", "wipe": other}], allow_wipe=True)
    assert p["disks"] == []
    assert "the confirmation wipe: '%s' does not match this disk as it is now (fingerprint %s)" % (
        other, fingerprint_of("whole_ext4")) in reasons(p)


def test_a_signatureless_disk_that_is_not_zero_holds_unrecognised_data():
    p = plan("blank", [{"name": "ssd0", "device": "/dev/loop0"}], data=["/dev/loop0"])
    assert "holds unrecognised data (no signature; not zero where sampled)" in reasons(p)
    fp = p["refusals"][0]["fingerprint"]
    wiped = plan("blank", [{"name": "ssd0", "device": "/dev/loop0", "wipe": fp}], data=["/dev/loop0"],
                 allow_wipe=True)
    assert wiped["refusals"] == [] and wiped["disks"][0]["actions"][:2] == ["wipe", "partition"]


def test_one_bad_disk_refuses_the_whole_host_plan():
    raw = recorded("vm_gpt_partitions")
    p = plan(None, [{"name": "good", "device": "/dev/loop1"}, {"name": "bad", "device": "/dev/loop0"}], raw=raw)
    assert [r["volume"] for r in p["refusals"]] == ["bad"]
    # make_plan still lists the good disk; apply_plan refuses any plan with refusals.
    with pytest.raises(plan_writes.PrepareError, match="refusing"):
        plan_writes.apply_plan(p, run=lambda argv: pytest.fail("ran %s" % argv))


@pytest.mark.parametrize("entries, words", [
    ([{"name": "a", "device": "/dev/sdq"}], "/dev/sdq: does not exist on this host"),
    # and what to do about it
    ([{"name": "a", "device": "/dev/sdq"}], "or take the entry out of localpv_disks"),
    ([{"name": "a", "device": "/dev/loop0p1"}], "is a partition of /dev/loop0"),
    ([{"name": "a", "device": "/dev/loop1"}, {"name": "a", "device": "/dev/loop2"}], "used more than once"),
    ([{"name": "Data_1", "device": "/dev/loop1"}], "not an RFC 1123 label"),
    ([{"name": "a/b", "device": "/dev/loop1"}], "not an RFC 1123 label"),
    ([{"name": "x" * 64, "device": "/dev/loop1"}], "longer than 63"),
    ([{"name": "a", "device": "/dev/loop1"}, {"name": "b", "device": "/dev/loop1"}], "asked for twice"),
    ([{"name": "a", "device": "/dev/vda"}], "holds the system (/)"),
    ([{"name": "a", "device": "/dev/loop1", "fstype": "btrfs"}], "fstype 'btrfs' is not one of"),
    ([{"name": "a", "device": "/dev/loop1", "bind": "/data"}], "exactly one of device, match or bind"),
    ([{"name": "a", "device": "/dev/loop1", "expect": {"size": "5Gi"}}], "expected size 5Gi = 5368709120 bytes, within 1%"),
    ([{"name": "a", "device": "/dev/loop1", "expect": {"serial": "X1"}}], "expected serial 'X1'"),
    ([{"name": "a", "device": "/dev/loop1", "colour": "red"}], "unknown key(s) colour"),
])
def test_plan_refusals(entries, words):
    p = plan("vm_gpt_partitions", entries)
    assert words in reasons(p), reasons(p)


def test_expect_that_matches_lets_the_disk_through():
    p = plan("vm_gpt_partitions", [{"name": "a", "device": "/dev/loop1", "expect": {"size": "1Gi"}}])
    assert p["refusals"] == []


def test_a_disk_that_is_ours_is_kept_on_a_rerun_without_adopt():
    p = plan("ours_two_ext4", [{"name": "data0", "device": "/dev/loop0", "partitions": 2, "fstype": "ext4"}])
    assert p["refusals"] == [], reasons(p)
    assert p["disks"][0]["state"] == "ours" and p["disks"][0]["actions"] == []
    assert all(v["state"] == "existing" and v["uuid"] for v in p["volumes"])


def test_ours_with_other_names_is_refused():
    p = plan("ours_two_ext4", [{"name": "other", "device": "/dev/loop0", "partitions": 2, "fstype": "ext4"}])
    assert "it carries localpv.rollout volume(s) data0-1, data0-2, which no entry of this host names (the entry " \
        "wants other-1, other-2)" in reasons(p)
    assert "localpv-data0" not in reasons(p)


def test_ours_with_another_fstype_is_refused_not_reformatted():
    p = plan("ours_two_ext4", [{"name": "data0", "device": "/dev/loop0", "partitions": 2, "fstype": "xfs"}])
    assert "volume data0-1 carries ext4, the entry asks for xfs: changing a volume's filesystem destroys" in reasons(p)
    assert "erasing it needs wipe: '%s'" % p["refusals"][0]["fingerprint"] in reasons(p)


def without_signatures(raw, *parts):
    for part in parts:
        raw["probes"][part] = {"signatures": [], "error": None}
    return raw


def test_a_mode_change_is_refused_both_ways():
    to_block = plan("ours_two_ext4", [{"name": "data0", "device": "/dev/loop0", "partitions": 2, "mode": "block"}])
    assert "volume data0-1 is a filesystem volume (ext4); making it mode block" in reasons(to_block)
    raw = without_signatures(recorded("ours_two_ext4"), "loop0p1", "loop0p2")
    for entry in raw["tables"]["loop0"]:
        entry["type"] = plan_recognise.BLOCK_VOLUME_TYPE
    to_fs = plan(None, [{"name": "data0", "device": "/dev/loop0", "partitions": 2, "fstype": "ext4"}], raw=raw)
    assert "volume data0-1 was made mode block (a raw device a pod writes to); making it a filesystem" in \
        reasons(to_fs)
    assert to_fs["disks"] == []


def test_an_old_block_volume_with_data_and_no_signature_is_not_formatted():
    """Block volumes made before partition types told the modes apart: the content decides."""
    raw = without_signatures(recorded("ours_two_ext4"), "loop0p1", "loop0p2")
    entries = [{"name": "data0", "device": "/dev/loop0", "partitions": 2, "fstype": "ext4"}]
    p = plan(None, entries, raw=raw, data=["/dev/loop0p1"])
    assert "partition /dev/loop0p1 of volume data0-1 holds unrecognised data" in reasons(p)
    blank = plan(None, entries, raw=raw)
    assert blank["refusals"] == [] and [v["state"] for v in blank["volumes"]] == ["format", "format"]


def test_a_partition_count_change_needs_a_confirmation():
    p = plan("ours_two_ext4", [{"name": "data0", "device": "/dev/loop0", "partitions": 3, "fstype": "ext4"}])
    assert "it carries volume(s) data0-1, data0-2 (2 partition(s)); the entry asks for 3 partition(s) (data0-1, " \
        "data0-2, data0-3): changing a disk's partition count destroys every volume on it" in reasons(p)
    assert "erasing it needs wipe: '%s'" % p["refusals"][0]["fingerprint"] in reasons(p)


def test_block_volumes_without_udev_links_need_the_kernel_names_opt_in():
    p = plan("blank", [{"name": "raw0", "device": "/dev/loop0", "mode": "block"}], allow_kernel_names=False)
    assert "block volume raw0: this host has no /dev/disk/by-partuuid links" in reasons(p)
    assert "localpv_allow_kernel_names: true" in reasons(p)


def test_expect_wwn_and_serial_match_exactly_not_as_substrings():
    raw = recorded("blank")
    raw["devices"]["loop0"]["wwid"] = "naa.5000c500a1b2c3d4"
    raw["devices"]["loop0"]["serial"] = "S1234567"
    for expect in ({"wwn": "0x5000c500a1b2c3d4"}, {"wwn": "wwn-0x5000c500a1b2c3d4"}, {"serial": "S1234567"}):
        assert plan(None, [{"name": "a", "device": "/dev/loop0", "expect": expect}], raw=raw)["refusals"] == []
    for expect in ({"wwn": "5000c500"}, {"wwn": "a1b2c3d4"}, {"serial": "S123"}):
        assert plan(None, [{"name": "a", "device": "/dev/loop0", "expect": expect}], raw=raw)["refusals"], expect


def test_ours_without_partition_nodes_is_registered_then_checked():
    p = plan("ours_no_nodes", [{"name": "data0", "device": "/dev/loop0", "partitions": 2, "fstype": "ext4"}])
    assert p["refusals"] == []
    assert p["disks"][0]["actions"][0] == "register"


def test_no_op_when_fstab_and_mounts_already_match():
    raw = recorded("ours_two_ext4")
    parts = raw["devices"]["loop0"]["partitions"]
    first = plan(None, [{"name": "data0", "device": "/dev/loop0", "partitions": 2, "fstype": "ext4"}], raw=raw)
    fstab = "".join("UUID=%s /mnt/disks/%s ext4 defaults,nofail 0 0\n" % (v["uuid"], v["name"])
                    for v in first["volumes"])
    raw["mountinfo"] = mountinfo = raw["mountinfo"] + "".join(
        "9%d 27 %s / /mnt/disks/data0-%d rw - ext4 /dev/loop0p%d rw\n" % (n, parts["loop0p%d" % n]["dev"], n, n)
        for n in (1, 2))
    again = plan(None, [{"name": "data0", "device": "/dev/loop0", "partitions": 2, "fstype": "ext4"}],
                 fstab=fstab, mountinfo=mountinfo, raw=raw)
    assert again["refusals"] == [], reasons(again)
    assert still_to_do(again) == []
    assert not any(v["needs_mount"] for v in again["volumes"])
    # a duplicated fstab line is something to fix
    dup = plan(None, [{"name": "data0", "device": "/dev/loop0", "partitions": 2, "fstype": "ext4"}],
               fstab=fstab + fstab.splitlines()[0] + "\n", mountinfo=mountinfo, raw=raw)
    assert dup["volumes"][0]["needs_mount"]
    # a volume remounted read-only by hand, its fstab line right: the run remounts it
    read_only = mountinfo.replace("/mnt/disks/data0-1 rw", "/mnt/disks/data0-1 ro")
    raw["mountinfo"] = read_only
    drifted = plan(None, [{"name": "data0", "device": "/dev/loop0", "partitions": 2, "fstype": "ext4"}],
                   fstab=fstab, mountinfo=read_only, raw=raw)
    assert [v["needs_mount"] for v in drifted["volumes"]] == [True, False]


def test_an_fstab_line_with_dump_or_passno_set_is_fixed_by_the_plan_too():
    """disk_prepare and volume_mounts judge an fstab line by one rule: a ``0 2`` line
    is not ours, so the plan asks volume_mounts to write it (which then rewrites it)."""
    raw = recorded("ours_two_ext4")
    parts = raw["devices"]["loop0"]["partitions"]
    entries = [{"name": "data0", "device": "/dev/loop0", "partitions": 2, "fstype": "ext4"}]
    first = plan(None, entries, raw=raw)
    raw["mountinfo"] = mountinfo = raw["mountinfo"] + "".join(
        "9%d 27 %s / /mnt/disks/data0-%d rw - ext4 /dev/loop0p%d rw\n" % (n, parts["loop0p%d" % n]["dev"], n, n)
        for n in (1, 2))
    lines = ["UUID=%s /mnt/disks/%s ext4 defaults,nofail" % (v["uuid"], v["name"]) for v in first["volumes"]]
    fstab = lines[0] + " 0 2\n" + lines[1] + " 0 0\n"
    p = plan(None, entries, fstab=fstab, mountinfo=mountinfo, raw=raw)
    assert p["refusals"] == [], reasons(p)
    assert [v["needs_mount"] for v in p["volumes"]] == [True, False]
    # what volume_mounts then writes: the same line with dump and passno 0, the other line untouched
    fixed = p["volumes"][0]
    item = {"path": fixed["path"], "src": fixed["fstab_src"], "fstype": fixed["fstab_fstype"],
            "opts": fixed["mount_options"]}
    assert mounts.render_fstab(fstab, [item]).splitlines() == [lines[0] + " 0 0", lines[1] + " 0 0"]
    assert mounts.fstab_right(devices.parse_fstab(mounts.render_fstab(fstab, [item])), item["path"], item["src"],
                              item["fstype"], item["opts"])


def test_a_bare_mount_point_holding_files_is_refused_before_any_disk_is_written():
    entries = [{"name": "ssd0", "device": "/dev/loop0"}, {"name": "vol1", "bind": "/data/vol1", "capacity": "1G"}]
    dirs = {"/mnt/disks/ssd0": ["pod.log"], "/mnt/disks/vol1": ["a", "b"], "/data/vol1": ["db"]}
    p = plan("blank", entries, dirs=dirs)
    assert [(r["disk"], r["volume"]) for r in p["refusals"]] == [
        ("/mnt/disks/ssd0", "ssd0"), ("/mnt/disks/vol1", "vol1")]
    assert p["refusals"][0]["reasons"] == mounts.hidden_files_refusal("/mnt/disks/ssd0", ["pod.log"])
    assert "/mnt/disks/vol1 is not mounted but holds 2 entries ('a', 'b')" in plan_render.refusal_message(p)
    # empty mount points, and a bind source holding data, are as they should be
    assert plan("blank", entries, dirs={"/mnt/disks/ssd0": [], "/data/vol1": ["db"]})["refusals"] == []


def test_a_mounted_volume_holding_files_is_not_refused():
    mountinfo = ("27 1 254:0 / / rw - ext4 /dev/vda rw\n"
                 "90 27 254:0 /data/k8s/localpv/vol1 /mnt/disks/vol1 rw - ext4 /dev/vda rw\n")
    p = plan("blank", [{"name": "vol1", "bind": "/data/k8s/localpv/vol1", "capacity": "1G"}], mountinfo=mountinfo,
             fstab="/data/k8s/localpv/vol1 /mnt/disks/vol1 none bind 0 0\n", dirs={"/mnt/disks/vol1": ["db"]})
    assert p["refusals"] == [] and still_to_do(p) == []


def test_ours_mounted_somewhere_else_is_refused():
    raw = recorded("ours_two_ext4")
    dev = raw["devices"]["loop0"]["partitions"]["loop0p1"]["dev"]
    raw["mountinfo"] += "99 27 %s / /srv/elsewhere rw - ext4 /dev/loop0p1 rw\n" % dev
    p = plan(None, [{"name": "data0", "device": "/dev/loop0", "partitions": 2, "fstype": "ext4"}], raw=raw)
    assert "mounted at /srv/elsewhere" in reasons(p)


def test_adopt_mounts_a_foreign_filesystem_as_it_is_and_checks_its_uuid():
    raw = recorded("whole_ext4")
    uuid = raw["probes"]["loop0"]["signatures"][0]["uuid"]
    p = plan(None, [{"name": "moved", "device": "/dev/loop0", "adopt": True, "expect": {"fs_uuid": uuid}}], raw=raw)
    assert p["refusals"] == []
    (vol,) = p["volumes"]
    assert (vol["state"], vol["uuid"], vol["fstype"], vol["device"]) == ("adopted", uuid, "ext4", "/dev/loop0")
    assert p["disks"][0]["actions"] == []
    wrong = plan(None, [{"name": "moved", "device": "/dev/loop0", "adopt": True,
                         "expect": {"fs_uuid": "0000"}}], raw=raw)
    assert "expected filesystem UUID 0000" in reasons(wrong)


def test_adopt_of_a_blank_disk_is_refused():
    p = plan("blank", [{"name": "moved", "device": "/dev/loop0", "adopt": True}])
    assert "no filesystem to adopt" in reasons(p)


def test_block_mode_makes_a_partition_without_filesystem_and_a_link():
    p = plan("blank", [{"name": "raw0", "device": "/dev/loop0", "mode": "block"}])
    assert p["disks"][0]["actions"] == ["partition"]
    (vol,) = p["volumes"]
    assert (vol["fstype"], vol["link_target"], vol["needs_link"]) == (None, "/dev/loop0p1", True)


def test_bind_mount_of_a_directory():
    p = plan("blank", [{"name": "vol1", "bind": "/data/k8s/localpv/vol1", "capacity": "2Gi"}])
    assert p["refusals"] == []
    (vol,) = p["volumes"]
    assert plan_capacity.capacity(vol, statvfs=None) == 2 * 2 ** 30
    assert (vol["path"], vol["fstab_src"], vol["fstab_fstype"], vol["mount_options"]) == (
        "/mnt/disks/vol1", "/data/k8s/localpv/vol1", "none", "bind")
    assert plan("blank", [{"name": "vol1", "bind": "/mnt/disks/x"}])["refusals"]


def test_bind_mount_is_recognised_in_mountinfo():
    mountinfo = ("27 1 254:0 / / rw - ext4 /dev/vda rw\n"
                 "90 27 254:0 /data/k8s/localpv/vol1 /mnt/disks/vol1 rw - ext4 /dev/vda rw\n")
    fstab = "/data/k8s/localpv/vol1 /mnt/disks/vol1 none bind 0 0\n"
    p = plan("blank", [{"name": "vol1", "bind": "/data/k8s/localpv/vol1", "capacity": 10 ** 9}], fstab=fstab,
             mountinfo=mountinfo)
    assert still_to_do(p) == [] and p["refusals"] == []


def test_a_bind_volume_on_the_root_filesystem_needs_an_explicit_capacity():
    mountinfo = "27 1 254:0 / / rw - ext4 /dev/vda rw\n"
    p = plan("blank", [{"name": "vol1", "bind": "/data/k8s/localpv/vol1"}], mountinfo=mountinfo)
    (refusal,) = p["refusals"]
    assert refusal["volume"] == "vol1" and "on the root filesystem (/dev/vda)" in refusal["reasons"][0]
    assert "capacity:" in refusal["reasons"][0]


def test_bind_volumes_that_share_a_filesystem_need_an_explicit_capacity():
    mountinfo = ("27 1 254:0 / / rw - ext4 /dev/vda rw\n"
                 "28 27 254:3 / /data rw - xfs /dev/vdb rw\n")
    entries = [{"name": "a", "bind": "/data/a"}, {"name": "b", "bind": "/data/b", "capacity": "1G"},
               {"name": "c", "bind": "/srv/c", "capacity": "1G"}]
    p = plan("blank", entries, mountinfo=mountinfo)
    assert [r["volume"] for r in p["refusals"]] == ["a"]
    assert "mounted at /data (/dev/vdb), which also holds volume(s) b" in p["refusals"][0]["reasons"][0]
    alone = plan("blank", [{"name": "a", "bind": "/data/a"}], mountinfo=mountinfo)
    assert alone["refusals"] == []


def test_an_explicit_capacity_is_for_bind_volumes_only():
    p = plan("blank", [{"name": "ssd0", "device": "/dev/loop0", "capacity": "1G"}])
    assert "only given for bind volumes" in p["refusals"][0]["reasons"][0]


def test_a_mount_is_matched_by_device_number_not_by_the_name_it_had_when_mounted():
    raw = recorded("ours_two_ext4")
    parts = raw["devices"]["loop0"]["partitions"]
    entries = [{"name": "data0", "device": "/dev/loop0", "partitions": 2, "fstype": "ext4"}]
    first = plan(None, entries, raw=raw)
    fstab = "".join("UUID=%s /mnt/disks/%s ext4 defaults,nofail 0 0\n" % (v["uuid"], v["name"]) for v in first["volumes"])
    # mounted when the disk was called loop5; same device numbers now
    renamed = raw["mountinfo"] + "".join(
        "9%d 27 %s / /mnt/disks/data0-%d rw - ext4 /dev/loop5p%d rw\n" % (n, parts["loop0p%d" % n]["dev"], n, n)
        for n in (1, 2))
    assert still_to_do(plan(None, entries, fstab=fstab, mountinfo=renamed, raw=raw)) == []
    # same name, other device: something else is mounted there
    other = raw["mountinfo"] + "".join(
        "9%d 27 259:9%d / /mnt/disks/data0-%d rw - ext4 /dev/loop0p%d rw\n" % (n, n, n, n) for n in (1, 2))
    assert all(v["needs_mount"] for v in plan(None, entries, fstab=fstab, mountinfo=other, raw=raw)["volumes"])


def test_block_volume_links_to_the_partition_uuid_when_udev_makes_such_links():
    raw = recorded("blank")
    raw["by_id"] = {"wwn-0x5000c500a1b2c3d4": "loop0"}
    p = plan(None, [{"name": "raw0", "device": "/dev/loop0", "mode": "block"}], raw=raw)
    (vol,) = p["volumes"]
    assert vol["link_target"] == "/dev/disk/by-partuuid/" + vol["partuuid"]
    assert "uuid=%s" % vol["partuuid"] in plan_writes.sfdisk_script(p["disks"][0])
    # a re-run reads the same UUID back from the table
    ours = without_signatures(recorded("ours_two_ext4"), "loop0p1", "loop0p2")
    ours["by_id"] = {"wwn-0x5000c500a1b2c3d4": "loop0"}
    again = plan(None, [{"name": "data0", "device": "/dev/loop0", "partitions": 2, "mode": "block"}], raw=ours)
    on_disk = [entry["uuid"].lower() for entry in ours["tables"]["loop0"]]
    assert len(on_disk) == 2
    assert [v["link_target"] for v in again["volumes"]] == ["/dev/disk/by-partuuid/" + u for u in on_disk]


def test_adopt_refuses_a_filesystem_that_is_mounted_somewhere_else():
    raw = recorded("mounted")
    p = plan(None, [{"name": "moved", "device": "/dev/loop0", "adopt": True}], raw=raw)
    assert "loop0 is mounted at /srv/disks/mnt" in reasons(p)


def test_device_mapper_and_zram_devices_are_not_prepared():
    p = plan("vm_gpt_partitions", [{"name": "z", "device": "/dev/zram0"}])
    assert "is a zram device" in reasons(p)


def test_a_mount_point_taken_by_something_else_is_refused_before_a_new_volume_is_made():
    raw = recorded("blank")
    raw["mountinfo"] += "99 27 0:77 / /mnt/disks/ssd0 rw - tmpfs scratch rw\n"
    p = plan(None, [{"name": "ssd0", "device": "/dev/loop0"}], raw=raw)
    assert "/mnt/disks/ssd0 is mounted from scratch (tmpfs), where the new volume ssd0 belongs" in reasons(p)
    with pytest.raises(plan_writes.PrepareError):
        plan_writes.apply_plan(p, run=lambda argv: pytest.fail("ran %s" % argv))


# --- a volume's disk is proven (issue 21) -------------------------------------------

OLD_FS = "f97eaaa8-a20c-49ac-a706-332abfb7ee1f"
FSTAB_SSD0 = "UUID=%s /mnt/disks/ssd0 xfs defaults,nofail 0 2\n" % OLD_FS


def located(*found):
    seen = []

    def locate(ids):
        seen.append(ids)
        return list(found)
    locate.seen = seen
    return locate


def plan_with(recording, entries, fstab="", locate=None, **options):
    raw = recorded(recording)
    options.setdefault("mount_root", "/mnt/disks")
    options.setdefault("allow_kernel_names", True)
    return plan_planner.make_plan("node1", devices.build(raw), entries, options, fstab, raw["mountinfo"],
                                  isdir=lambda p: True, sampler=zeros(), dir_entries={}.get, locate=locate)


def test_a_path_that_now_leads_to_a_blank_disk_is_refused_naming_old_and_new():
    where = located("/dev/loop7 (loop:/srv/disks/old.img, 600 MiB)")
    p = plan_with("blank", [{"name": "ssd0", "device": "/dev/loop0"}], fstab=FSTAB_SSD0, locate=where)
    text = reasons(p)
    assert p["disks"] == [] and p["volumes"] == []
    assert "volume ssd0 was made on a disk with filesystem UUID %s (recorded in /etc/fstab)" % OLD_FS in text
    assert "now leads to /dev/loop0 (loop:/srv/disks/a.img, 600 MiB), blank, which does not carry it" in text
    assert "The disk with those ids is still on this host: /dev/loop7 (loop:/srv/disks/old.img, 600 MiB)" in text
    assert "set replace: '%s' on this entry" % p["refusals"][0]["fingerprint"] in text
    assert where.seen[0] == {"fs_uuid": OLD_FS, "partuuid": None, "stable_id": None}


def test_an_unmounted_path_whose_old_disk_is_still_here_is_told_how_to_mount_it_again():
    """A reboot in which the old disk came back late: its mount is gone, fstab stays. The
    refusal mounts nothing, but says the command that gives the path its data back."""
    where = located("/dev/loop7 (loop:/srv/disks/old.img, 600 MiB)")
    rec = {"ssd0": {"fs_uuid": OLD_FS, "pv": "local-node1-ssd0", "claim": "default/data-web-0"}}
    p = plan_with("blank", [{"name": "ssd0", "device": "/dev/loop0"}], fstab=FSTAB_SSD0, locate=where, recorded=rec)
    text = reasons(p)
    assert p["disks"] == [] and p["volumes"] == []
    assert "still on this host: /dev/loop7 (loop:/srv/disks/old.img, 600 MiB); nothing is mounted at /mnt/disks/ssd0 " \
        "now: run `mount /mnt/disks/ssd0` to mount that disk's filesystem (UUID=%s, by its fstab line) there " \
        "again, with its data. Its PV local-node1-ssd0 is bound" % OLD_FS in text
    assert where.seen[-1] == {"fs_uuid": OLD_FS}


def test_no_mount_command_is_offered_unless_fstab_and_exactly_one_disk_make_it_mount_the_old_filesystem():
    entries = [{"name": "ssd0", "device": "/dev/loop0"}]
    two = plan_with("blank", entries, fstab=FSTAB_SSD0, locate=located("/dev/loop7 (a)", "/dev/loop8 (b)"))
    assert "still on this host: /dev/loop7 (a), /dev/loop8 (b)" in reasons(two) and "mount /mnt" not in reasons(two)
    pv_only = plan_with("blank", entries, locate=located("/dev/loop7 (a)"),
                        recorded={"ssd0": {"fs_uuid": OLD_FS, "pv": "local-node1-ssd0"}})
    assert "still on this host: /dev/loop7 (a)" in reasons(pv_only) and "mount /mnt" not in reasons(pv_only)
    raw = recorded("blank")
    mounted = raw["mountinfo"] + "99 1 7:7 / /mnt/disks/ssd0 rw,relatime - xfs /dev/loop7 rw\n"
    p = plan_planner.make_plan("node1", devices.build(raw), entries, {"mount_root": "/mnt/disks", "allow_kernel_names": True},
                               FSTAB_SSD0, mounted, isdir=lambda p: True, sampler=zeros(), dir_entries={}.get,
                               locate=located("/dev/loop7 (a)"))
    assert "still on this host: /dev/loop7 (a)" in reasons(p) and "mount /mnt" not in reasons(p)


def test_the_old_disk_gone_is_said():
    p = plan_with("blank", [{"name": "ssd0", "device": "/dev/loop0"}], fstab=FSTAB_SSD0, locate=located())
    assert "No disk of this host carries those ids now (the old disk is gone" in reasons(p)


SSD0_ON_A = {"ssd0": {"fs_uuid": OLD_FS, "stable_id": "loop:/srv/disks/a.img", "pv": "local-node1-ssd0"}}


def test_a_wiped_disk_still_on_the_host_is_named_as_the_volumes_own_disk_not_as_where_its_ids_went():
    """/dev/loop0 carries the stable id the PV recorded but not the filesystem: it was
    wiped. The refusal says so, and never names /dev/loop0 as the disk that holds the ids."""
    where = located()
    entries = [{"name": "ssd0", "device": "/dev/loop0"}]
    p = plan_with("blank", entries, fstab=FSTAB_SSD0, locate=where, recorded=SSD0_ON_A)
    text = reasons(p)
    assert p["disks"] == [] and p["volumes"] == []
    assert "now leads to /dev/loop0 (loop:/srv/disks/a.img, 600 MiB), blank, which does not carry it. /dev/loop0 " \
        "is the very disk volume ssd0 was made on (it carries the stable id loop:/srv/disks/a.img recorded for " \
        "it), and the recorded filesystem UUID %s is gone from it: it was wiped or re-partitioned since. If that " \
        "was meant and volume ssd0 is to be made again, empty, on this disk, set replace: '%s' on this entry" % (
            OLD_FS, p["refusals"][0]["fingerprint"]) in text
    assert "still on this host" not in text and "point device at it" not in text
    # only the ids the disk lacks are looked for: the disk itself is never found as their holder
    assert where.seen == [{"fs_uuid": OLD_FS, "partuuid": None, "stable_id": None}]
    fixed = plan_with("blank", [dict(entries[0], replace=p["refusals"][0]["fingerprint"])], fstab=FSTAB_SSD0,
                      locate=where, recorded=SSD0_ON_A)
    assert fixed["refusals"] == [], reasons(fixed)
    assert fixed["disks"][0]["replaces"] == "volume ssd0 is made again on this disk, which no longer carries " \
        "filesystem UUID %s" % OLD_FS


def test_a_wiped_disks_bound_pv_is_refused_without_pointing_at_another_disk():
    rec = {"ssd0": dict(SSD0_ON_A["ssd0"], claim="default/data-web-0")}
    text = reasons(plan_with("blank", [{"name": "ssd0", "device": "/dev/loop0"}], fstab=FSTAB_SSD0,
                             locate=located(), recorded=rec))
    assert "/dev/loop0 is the very disk volume ssd0 was made on" in text
    assert "Its PV local-node1-ssd0 is bound to claim default/data-web-0: the claim's data is no longer on this " \
        "disk, and the volume of a bound PV is never made again; free the claim first (see decommission)" in text
    assert "another disk" not in text and "replace: '" not in text


def test_a_selectors_wiped_disk_is_named_as_the_volumes_own_disk_and_retiring_it_is_the_way_on():
    text = reasons(plan_with("blank", [{"name_prefix": "ssd", "match": {"count": 1}}], fstab=FSTAB_SSD0,
                             locate=located(), recorded=SSD0_ON_A))
    assert "/dev/loop0 is the very disk volume ssd0 was made on" in text
    assert "If volume ssd0 is to be made again, empty, on this disk, retire it first (decommission.yml with " \
        "decommission_volumes: [ssd0])" in text
    assert "attach it again" not in text


def test_a_partition_whose_filesystem_was_made_again_is_named_on_its_own_disk():
    """The recorded partition is still there, its filesystem is another: the disk is the
    volume's own, and only the filesystem went."""
    gone = "00000000-0000-4000-8000-000000000001"
    rec = {"data0-1": {"fs_uuid": gone, "partuuid": "9bd69b12-fcbd-874d-9237-6196037f06e3", "pv": "local-node1-data0-1"}}
    where = located()
    text = reasons(plan_with("ours_two_ext4", [{"name": "data0", "device": "/dev/loop0", "partitions": 2,
                                                "fstype": "ext4"}], locate=where, recorded=rec))
    assert "/dev/loop0 is the very disk volume data0-1 was made on (it carries the partition UUID " \
        "9bd69b12-fcbd-874d-9237-6196037f06e3 recorded for it), and the recorded filesystem UUID %s is gone from " \
        "it: its filesystem was wiped or made again since" % gone in text
    assert where.seen == [{"fs_uuid": gone, "partuuid": None, "stable_id": None}]


def test_a_wiped_disk_whose_ids_are_on_another_disk_names_that_disk():
    """The ids on another disk of the host (a copy of the old disk): that disk is named,
    with the advice to point the entry at it, as when the path moved."""
    where = located("/dev/loop7 (loop:/srv/disks/copy.img, 600 MiB)")
    text = reasons(plan_with("blank", [{"name": "ssd0", "device": "/dev/loop0"}], fstab=FSTAB_SSD0, locate=where,
                             recorded=SSD0_ON_A))
    assert "The disk with those ids is still on this host: /dev/loop7 (loop:/srv/disks/copy.img, 600 MiB)" in text
    assert "If the entry should follow the old disk, point device at it" in text
    assert "the very disk" not in text


def test_replace_with_the_new_disks_fingerprint_makes_the_volume_again():
    entries = [{"name": "ssd0", "device": "/dev/loop0"}]
    fp = plan_with("blank", entries, fstab=FSTAB_SSD0)["refusals"][0]["fingerprint"]
    p = plan_with("blank", [dict(entries[0], replace=fp)], fstab=FSTAB_SSD0)
    assert p["refusals"] == [], reasons(p)
    assert p["disks"][0]["state"] == "new" and "replacing the disk with filesystem UUID" in p["disks"][0]["replaces"]
    stale = plan_with("blank", [dict(entries[0], replace="0123456789abcdef")], fstab=FSTAB_SSD0)
    assert "the confirmation replace: '0123456789abcdef' does not match this disk" in reasons(stale)


def test_a_bound_pvs_volume_is_never_made_again_on_another_disk():
    entries = [{"name": "ssd0", "device": "/dev/loop0"}]
    fp = plan_with("blank", entries, fstab=FSTAB_SSD0)["refusals"][0]["fingerprint"]
    rec = {"ssd0": {"fs_uuid": OLD_FS, "stable_id": "loop:/srv/disks/old.img", "pv": "local-node1-ssd0",
                    "claim": "default/data-web-0"}}
    p = plan_with("blank", [dict(entries[0], replace=fp)], fstab=FSTAB_SSD0, recorded=rec)
    assert "recorded in /etc/fstab and PV local-node1-ssd0" in reasons(p)
    assert "Its PV local-node1-ssd0 is bound to claim default/data-web-0: the volume of a bound PV is never made " \
        "again on another disk" in reasons(p)
    assert p["disks"] == []


def test_the_pvs_record_alone_proves_a_block_volume():
    rec = {"raw0": {"partuuid": "9BD69B12-FCBD-874D-9237-6196037F06E3", "stable_id": "loop:/srv/disks/a.img",
                    "pv": "local-node1-raw0"}}
    moved = plan_with("blank", [{"name": "raw0", "device": "/dev/loop0", "mode": "block"}], recorded=rec)
    assert "volume raw0 was made on a disk with partition UUID 9bd69b12-fcbd-874d-9237-6196037f06e3 (recorded " \
        "in PV local-node1-raw0)" in reasons(moved)
    # the PV's stable id is this very disk's: its partition went with a wipe, nowhere else
    assert "/dev/loop0 is the very disk volume raw0 was made on (it carries the stable id loop:/srv/disks/a.img " \
        "recorded for it), and the recorded partition UUID 9bd69b12-fcbd-874d-9237-6196037f06e3 is gone from it: " \
        "it was wiped or re-partitioned since" in reasons(moved)


def test_a_volume_on_its_own_disk_passes_and_a_new_stable_id_alone_is_no_mismatch():
    fstab = "".join("UUID=%s /mnt/disks/data0-%d ext4 defaults,nofail 0 2\n" % (u, n) for n, u in (
        (1, OLD_FS), (2, "7eb2a081-5970-4c03-8787-6cc42dddda4f")))
    rec = {"data0-1": {"fs_uuid": OLD_FS, "partuuid": "9bd69b12-fcbd-874d-9237-6196037f06e3",
                       "stable_id": "wwn-0x5000c500a1b2c3d4"}}
    entries = [{"name": "data0", "device": "/dev/loop0", "partitions": 2, "fstype": "ext4"}]
    p = plan_with("ours_two_ext4", entries, fstab=fstab, recorded=rec)
    assert p["refusals"] == [], reasons(p)
    only_id = plan_with("blank", [{"name": "ssd0", "device": "/dev/loop0"}],
                        recorded={"ssd0": {"stable_id": "wwn-0x5000c500a1b2c3d4", "pv": "local-node1-ssd0"}})
    assert "was made on a disk with disk wwn-0x5000c500a1b2c3d4" in reasons(only_id)


def test_a_disk_that_is_another_wanted_volume_is_named_and_never_offered_a_wipe():
    entries = [{"name": "other", "device": "/dev/loop0", "partitions": 2, "fstype": "ext4"},
               {"name": "data0", "device": "/dev/loop9", "partitions": 2, "fstype": "ext4"}]
    p = plan_with("ours_two_ext4", entries, allow_wipe=True)
    (mine,) = [r for r in p["refusals"] if r["disk"] == "/dev/loop0"]
    assert "this is volume data0-1, data0-2 of this host; the entry for other-1, other-2 now points at it" in \
        "; ".join(mine["reasons"])
    assert "fingerprint" not in mine and "wipe:" not in "; ".join(mine["reasons"])


def test_the_plan_says_how_blank_was_proven():
    raw = recorded("blank")

    def sampler(path, size, proof="spread"):
        return {"zero": True, "digest": "0", "error": None, "proof": proof, "read": 32 << 20, "regions": 256}
    p = plan_planner.make_plan("node1", devices.build(raw), [{"name": "ssd0", "device": "/dev/loop0"}],
                               {"mount_root": "/mnt/disks"}, "", raw["mountinfo"], isdir=lambda p: True, sampler=sampler,
                               dir_entries={}.get)
    assert "blank (no signature; 256 spread regions and both 8 MiB ends (32 MiB of 600 MiB) read, all zero)" in \
        plan_render.render(p, after=False)


def test_blank_proof_full_is_asked_of_the_sampler():
    raw = recorded("blank")
    asked = []

    def sampler(path, size, proof="spread"):
        asked.append(proof)
        return {"zero": True, "digest": "0", "error": None, "proof": proof, "read": size}
    p = plan_planner.make_plan("node1", devices.build(raw), [{"name": "ssd0", "device": "/dev/loop0", "blank_proof": "full"}],
                               {"mount_root": "/mnt/disks"}, "", raw["mountinfo"], isdir=lambda p: True, sampler=sampler,
                               dir_entries={}.get)
    assert asked == ["full"] and "the whole device (600 MiB) read, all zero" in plan_render.render(p, after=False)
    bad = plan("blank", [{"name": "ssd0", "device": "/dev/loop0", "blank_proof": "some"}])
    assert "blank_proof 'some' is not one of spread, full" in reasons(bad)


def test_a_path_that_now_leads_to_another_wanted_volume_names_it_and_offers_no_replace():
    fstab = "UUID=0e0e0e0e-0000-4000-8000-000000000001 /mnt/disks/other-1 ext4 defaults,nofail 0 2\n"
    entries = [{"name": "other", "device": "/dev/loop0", "partitions": 2, "fstype": "ext4"},
               {"name": "data0", "device": "/dev/loop9", "partitions": 2, "fstype": "ext4"}]
    p = plan_with("ours_two_ext4", entries, fstab=fstab, locate=located("/dev/loop9"))
    (mine,) = [r for r in p["refusals"] if r["disk"] == "/dev/loop0"]
    text = "; ".join(mine["reasons"])
    assert "volume other-1 was made on a disk with filesystem UUID 0e0e0e0e-0000-4000-8000-000000000001" in text
    assert "This is volume data0-1, data0-2 of this host; the entry for other-1, other-2 now points at it" in text
    assert "replace:" not in text and "fingerprint" not in mine


def test_a_mount_point_that_is_a_symlink_or_a_file_is_refused_before_any_disk_is_written():
    """Issue 27: a symlinked /mnt/disks/<name> was found only after both new disks were formatted."""
    raw = recorded("blank")
    kinds = {"/mnt/disks/new0": "symlink", "/mnt/disks/raw0": "file"}
    entries = [{"name": "new0", "device": "/dev/loop0"}]
    p = plan_planner.make_plan("node1", devices.build(raw), entries, {"mount_root": "/mnt/disks"}, "", raw["mountinfo"],
                               isdir=lambda p: True, sampler=zeros(), dir_entries={}.get, kind_at=kinds.get)
    assert "/mnt/disks/new0 is a symlink, not a directory to mount volume new0 on; move it away" in reasons(p)
    block = plan_planner.make_plan("node1", devices.build(raw), [{"name": "raw0", "device": "/dev/loop0", "mode": "block"}],
                                   {"mount_root": "/mnt/disks", "allow_kernel_names": True}, "", raw["mountinfo"],
                                   isdir=lambda p: True, sampler=zeros(), dir_entries={}.get, kind_at=kinds.get)
    assert "/mnt/disks/raw0 is a file where the link of block volume raw0 belongs" in reasons(block)


# --- issue 27: a wipe covers only the volumes it names ----------------------------------

def _one_retired():
    """data0-1's partition lost its filesystem but kept data (a retirement with wipe); data0-2 is intact."""
    return without_signatures(recorded("ours_two_ext4"), "loop0p1")


def _plan_split(raw, wipe=False, allow_wipe=True):
    entry = {"name": "data0", "device": "/dev/loop0", "partitions": 2, "fstype": "ext4"}
    if wipe:
        entry["wipe"] = wipe
    return plan_planner.make_plan("node1", devices.build(raw), [entry], {"mount_root": "/mnt/disks", "allow_wipe": allow_wipe},
                                  "", raw["mountinfo"], isdir=lambda p: True, sampler=zeros(["/dev/loop0p1", "/dev/loop0"]),
                                  dir_entries={}.get)


def test_a_damaged_volume_beside_an_intact_one_is_offered_a_wipe_of_its_partition_only():
    p = _plan_split(_one_retired())
    (refusal,) = p["refusals"]
    text = "; ".join(refusal["reasons"])
    assert "partition /dev/loop0p1 of volume data0-1 holds unrecognised data" in text
    assert "erasing only /dev/loop0p1 (volume(s) data0-1) and making it again needs wipe: '%s' on this entry" % (
        refusal["fingerprint"]) in text
    assert "volume(s) data0-2 on the same disk are intact and kept" in text
    disk = devices.build(_one_retired())[0]
    assert refusal["fingerprint"] != plan_recognise.fingerprint(disk, "d-/dev/loop0")


def test_the_partition_confirmation_erases_that_partition_and_keeps_its_sibling():
    pfp = _plan_split(_one_retired())["refusals"][0]["fingerprint"]
    p = _plan_split(_one_retired(), wipe=pfp)
    assert p["refusals"] == [], reasons(p)
    (entry,) = p["disks"]
    assert entry["erase"] == ["/dev/loop0p1"] and "wipe /dev/loop0p1" in entry["actions"]
    assert "partition" not in entry["actions"] and "wipe" not in entry["actions"]
    assert [(v["name"], v["state"], bool(v.get("erase"))) for v in p["volumes"]] == [
        ("data0-1", "format", True), ("data0-2", "existing", False)]
    assert _plan_split(_one_retired(), wipe=pfp, allow_wipe=False)["refusals"]


def test_a_whole_disk_confirmation_never_erases_an_intact_sibling():
    disk = devices.build(_one_retired())[0]
    whole = plan_recognise.fingerprint(disk, "d-/dev/loop0")
    p = _plan_split(_one_retired(), wipe=whole)
    assert p["disks"] == [] and "erasing only /dev/loop0p1" in reasons(p)


def _retired(raw, number, volume, day="2026-12-02"):
    raw = json.loads(json.dumps(raw))
    for entry in raw["tables"]["loop0"]:
        if entry["number"] == number:
            entry["name"] = host_volumes.retired_label(volume, day)
    return raw


def test_a_volume_retired_by_decommission_is_never_mounted_or_published_again():
    raw = _retired(recorded("ours_two_ext4"), 1, "data0-1")
    entries = [{"name": "data0", "device": "/dev/loop0", "partitions": 2, "fstype": "ext4"}]
    p = plan("ours_two_ext4", entries, raw=raw)
    assert p["volumes"] == [] and p["disks"] == []
    (refusal,) = p["refusals"]
    assert refusal["reasons"][0] == (
        "volume data0-1 was retired by decommission on 2026-12-02 (partition 1 of /dev/loop0 is named "
        "localpv-retired-20261202-%s); it is not mounted or published again" % host_volumes.retired_label(
            "data0-1", "2026-12-02")[-8:])
    # its sibling is live: no whole-disk confirmation is offered, that would erase it too
    assert "volume(s) data0-2 on the same disk are not retired, so the whole disk is never erased" in \
        refusal["reasons"][1]
    assert "fingerprint" not in refusal


def test_a_disk_whose_volumes_are_all_retired_is_made_new_only_with_the_confirmation_it_names():
    raw = _retired(_retired(recorded("ours_two_ext4"), 1, "data0-1"), 2, "data0-2")
    entries = [{"name": "data0", "device": "/dev/loop0", "partitions": 2, "fstype": "ext4"}]
    (refusal,) = plan("ours_two_ext4", entries, raw=raw)["refusals"]
    fp = refusal["fingerprint"]
    assert refusal["reasons"][-1] == (
        "two ways on: take the entry out of localpv_disks, or make data0-1, data0-2 new and empty with wipe: '%s' on "
        "this entry and localpv_allow_wipe: true for the run (it erases the whole disk /dev/loop0, every partition "
        "on it)" % fp)
    confirmed = plan("ours_two_ext4", [dict(entries[0], wipe=fp)], raw=raw, allow_wipe=True)
    assert confirmed["refusals"] == [], reasons(confirmed)
    assert confirmed["disks"][0]["state"] == "wipe"
    assert [v["state"] for v in confirmed["volumes"]] == ["create", "create"]


def test_a_retired_bind_volume_is_refused_by_its_marker():
    entries = [{"name": "vol1", "bind": "/data/vol1", "capacity": "1G"},
               {"name": "vol2", "bind": "/data/vol2", "capacity": "1G"}]
    markers = {"/data/vol1": {"volume": "vol1", "day": "2026-12-02"}}
    raw = recorded("blank")
    p = plan_planner.make_plan("node1", devices.build(raw), entries, {"mount_root": "/mnt/disks"}, "", raw["mountinfo"],
                               isdir=lambda p: True, sampler=zeros(), dir_entries={}.get, read_marker=markers.get)
    assert [v["name"] for v in p["volumes"]] == ["vol2"]
    assert reasons(p) == ("/data/vol1: bind volume vol1 was retired by decommission on 2026-12-02 (marker "
                          "/data/vol1/.localpv-retired); it is not mounted or published again; two ways on: take the "
                          "entry out of localpv_disks, or empty the directory (its files are the old tenant's) and "
                          "remove the marker")


# --- a selector's volumes on disks attached again under each other's names ----------------

FS_R0, FS_R1 = "e258ddf5-5907-4129-aba2-933a4c73541b", "11cd2183-d83b-4f09-b673-8a74336f5f3c"
FSTAB_R = "UUID=%s /mnt/disks/lpvtr0 ext4 defaults,nofail 0 0\nUUID=%s /mnt/disks/lpvtr1 ext4 defaults,nofail 0 0\n" % (
    FS_R0, FS_R1)


def swapped_selector_disks(in_place):
    """loop0 and loop1, each one ext4 volume of selector lpvtr, attached again under each other's
    names without a partition scan: the kernel knows no partition, the GPT names them,
    ``in_place`` gives the filesystem UUID read at each partition's place."""
    raw = recorded("ours_no_nodes")
    raw["devices"]["loop1"] = dict(copy.deepcopy(raw["devices"]["loop0"]), name="loop1", dev="7:1",
                                   backing_file="/srv/disks/b.img")
    raw["probes"]["loop1"] = copy.deepcopy(raw["probes"]["loop0"])
    raw["exclusive"]["loop1"] = None
    entry = dict(raw["tables"]["loop0"][0], sectors=1224704, size=1224704 * 512)
    raw["tables"] = {"loop0": [dict(entry, name="localpv-lpvtr1", uuid="ca42b7fe-2c6d-1c4f-9d1e-75b3f5843eae")],
                     "loop1": [dict(entry, name="localpv-lpvtr0", uuid="9bd69b12-fcbd-874d-9237-6196037f06e3")]}
    raw["table_probes"] = dict((name, {"1": {"fstype": "ext4", "uuid": uuid, "label": None}})
                               for name, uuid in in_place.items())
    return raw


SELECTOR_R = [{"match": {"min_size": 1}, "name_prefix": "lpvtr", "fstype": "ext4"}]


def test_a_selectors_volumes_swapped_between_disks_are_proven_in_place_and_kept():
    raw = swapped_selector_disks({"loop0": FS_R1, "loop1": FS_R0})
    p = plan_planner.make_plan("node1", devices.build(raw), SELECTOR_R, {"mount_root": "/mnt/disks"}, FSTAB_R, raw["mountinfo"],
                               isdir=lambda p: True, sampler=zeros(), dir_entries={}.get)
    assert p["refusals"] == [], reasons(p)
    assert sorted((v["name"], v["disk"], v["state"], v["uuid"]) for v in p["volumes"]) == [
        ("lpvtr0", "/dev/loop1", "existing", FS_R0), ("lpvtr1", "/dev/loop0", "existing", FS_R1)]
    # the kernel is told of the partitions; nothing is formatted
    assert [d["actions"] for d in p["disks"]] == [["register"], ["register"]]


def test_a_selectors_volume_whose_disk_carries_another_filesystem_is_refused_with_a_way_a_selector_takes():
    raw = swapped_selector_disks({"loop0": FS_R1, "loop1": "0e0e0e0e-0000-4000-8000-000000000001"})
    p = plan_planner.make_plan("node1", devices.build(raw), SELECTOR_R, {"mount_root": "/mnt/disks"}, FSTAB_R, raw["mountinfo"],
                               isdir=lambda p: True, sampler=zeros(), dir_entries={}.get, locate=located())
    (refusal,) = p["refusals"]
    text = "; ".join(refusal["reasons"])
    assert refusal["disk"] == "/dev/loop1" and "None" not in text
    assert "volume lpvtr0 was made on a disk with filesystem UUID %s (recorded in /etc/fstab); the entry's selector " \
           "(match, name_prefix lpvtr) now takes for it /dev/loop1" % FS_R0 in text
    assert "retire it first (decommission.yml with decommission_volumes: [lpvtr0])" in text
    assert "replace:" not in text and "fingerprint" not in refusal


def test_a_partition_the_kernel_does_not_know_with_another_filesystem_is_refused_not_left_to_mkfs():
    raw = swapped_selector_disks({"loop0": FS_R1, "loop1": FS_R0})
    raw["table_probes"]["loop1"]["1"]["fstype"] = "xfs"
    p = plan_planner.make_plan("node1", devices.build(raw), SELECTOR_R, {"mount_root": "/mnt/disks"}, FSTAB_R, raw["mountinfo"],
                               isdir=lambda p: True, sampler=zeros(), dir_entries={}.get)
    assert "volume lpvtr0 carries xfs, the entry asks for ext4" in reasons(p)


# --- a wipe confirmation is compared exactly --------------------------------------------
# Found by mutation testing (`make mutants`): a confirmation compared with ``>=``
# instead of ``==`` (so that any string sorting after the fingerprint erased the
# disk), or by identity, passed every other test.

@pytest.mark.parametrize("stale", ["f" * 16, "0" * 16], ids=["sorts-after", "sorts-before"])
def test_a_stale_confirmation_erases_nothing_whichever_way_it_sorts(stale):
    assert stale != fingerprint_of("whole_ext4")
    p = plan("whole_ext4", [{"name": "ssd0", "device": "/dev/loop0", "wipe": stale}], allow_wipe=True)
    assert p["disks"] == [] and p["volumes"] == []
    assert "the confirmation wipe: '%s' does not match this disk as it is now (fingerprint %s)" % (
        stale, fingerprint_of("whole_ext4")) in reasons(p)


def test_the_right_confirmation_without_the_run_key_asks_for_the_key_not_another_fingerprint():
    fp = fingerprint_of("whole_ext4")
    p = plan("whole_ext4", [{"name": "ssd0", "device": "/dev/loop0", "wipe": fresh(fp)}])
    assert p["disks"] == []
    text = reasons(p)
    assert "erasing it needs wipe: '%s' on this entry and localpv_allow_wipe: true for the run" % fp in text
    assert "does not match" not in text


def test_the_right_confirmation_read_as_another_string_object_erases():
    fp = fresh(fingerprint_of("whole_ext4"))
    p = plan("whole_ext4", [{"name": "ssd0", "device": "/dev/loop0", "wipe": fp}], allow_wipe=True)
    assert p["refusals"] == []
    assert p["disks"][0]["actions"][:2] == ["wipe", "partition"]
