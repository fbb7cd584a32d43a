# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A selector (``match:``): which disks it takes, in which order, and what it
says of those it skipped. Runs make_plan() on recorded hosts; nothing here writes."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


from plan_recordings import plan, reasons, recorded

from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import render as plan_render


def test_selector_picks_only_eligible_disks_in_stable_id_order():
    # loop0 has data, loop1..3 are the lab's blank disks of 1G, 2G and 512M.
    p = plan("vm_gpt_partitions", [{"match": {"min_size": "1Gi"}, "name_prefix": "d"}])
    assert p["refusals"] == []
    assert [(v["name"], v["disk"]) for v in p["volumes"]] == [("d0", "/dev/loop1"), ("d1", "/dev/loop2")]


def test_selector_count_is_a_requirement():
    p = plan("vm_gpt_partitions", [{"match": {"count": 4}, "name_prefix": "d"}])
    assert "wants 4 disk(s)" in reasons(p)
    p = plan("vm_gpt_partitions", [{"match": {"count": 2, "max_size": "1Gi"}, "name_prefix": "d"}])
    assert [v["disk"] for v in p["volumes"]] == ["/dev/loop1", "/dev/loop3"]


def test_selector_skips_disks_named_explicitly():
    p = plan("vm_gpt_partitions", [{"match": {}, "name_prefix": "d"}, {"name": "pinned", "device": "/dev/loop2"}])
    assert sorted((v["name"], v["disk"]) for v in p["volumes"]) == [
        ("d0", "/dev/loop1"), ("d1", "/dev/loop3"), ("pinned", "/dev/loop2")]


def test_selector_matches_model_and_rotational():
    raw = recorded("vm_gpt_partitions")
    raw["devices"]["loop2"]["model"] = "Samsung SSD 870"
    p = plan(None, [{"match": {"model": "Samsung*"}, "name_prefix": "s"}], raw=raw)
    assert [v["disk"] for v in p["volumes"]] == ["/dev/loop2"]
    # loop devices say rotational=1
    p = plan(None, [{"match": {"rotational": False}, "name_prefix": "r"}], raw=raw)
    assert p["volumes"] == []


def test_a_selector_finds_its_own_disk_again_and_keeps_its_name():
    p = plan("ours_two_ext4", [{"match": {}, "name_prefix": "data", "partitions": 2, "fstype": "ext4"}])
    assert [(v["name"], v["state"]) for v in p["volumes"]] == [("data0-1", "existing"), ("data0-2", "existing")]


def test_a_selector_names_every_disk_it_skipped_and_why():
    p = plan("vm_gpt_partitions", [{"match": {"min_size": "1Gi"}, "name_prefix": "d"}], data=["/dev/loop2"])
    skipped = "\n".join(p["skipped"])
    assert "match d: skipped /dev/loop0: " in skipped and "has partitions" in skipped
    assert "match d: skipped /dev/loop2: holds unrecognised data" in skipped
    assert "match d: skipped /dev/loop3: " in skipped and "below min_size" in skipped
    assert [v["disk"] for v in p["volumes"]] == ["/dev/loop1"]
    assert "match d: skipped /dev/loop2" in plan_render.render(p, after=False)
