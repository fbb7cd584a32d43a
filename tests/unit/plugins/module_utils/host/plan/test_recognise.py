# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host plan's confirmation and expectation rules, each pinned by a test.

Found by mutation testing (`make mutants`): a wipe confirmation compared with
``>=`` instead of ``==`` (so that any string sorting after the fingerprint erased
the disk) and a label check compared by order or identity passed every other test.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import ast
import json
import os

import pytest
import yaml

from conftest import REPO

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import entries as plan_entries
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import planner as plan_planner
from ansible_collections.localpv.rollout.plugins.module_utils.host import host_volumes as hv
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as vol

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def recorded(name):
    with open(os.path.join(DATA, name + ".json")) as handle:
        return json.load(handle)


def zeros(path, size):
    return {"zero": True, "digest": "0", "error": None}


def plan(entries, raw=None, allow_wipe=False):
    raw = raw or recorded("whole_ext4")
    options = {"mount_root": "/mnt/disks", "allow_kernel_names": True, "allow_wipe": allow_wipe}
    return plan_planner.make_plan("node1", devices.build(raw), entries, options, "", raw["mountinfo"],
                                  isdir=lambda p: True, sampler=zeros, dir_entries=lambda p: None)


def reasons(p):
    return " | ".join("; ".join(r["reasons"]) for r in p["refusals"])


def fingerprint():
    return plan([{"name": "ssd0", "device": "/dev/loop0"}])["refusals"][0]["fingerprint"]


def fresh(text):
    """An equal string that is another object, as one read from an inventory is."""
    return "".join(list(text))


@pytest.mark.parametrize("stale", ["f" * 16, "0" * 16], ids=["sorts-after", "sorts-before"])
def test_a_stale_confirmation_erases_nothing_whichever_way_it_sorts(stale):
    assert stale != fingerprint()
    p = plan([{"name": "ssd0", "device": "/dev/loop0", "wipe": stale}], allow_wipe=True)
    assert p["disks"] == [] and p["volumes"] == []
    assert "the confirmation wipe: '%s' does not match this disk as it is now (fingerprint %s)" % (
        stale, fingerprint()) in reasons(p)


def test_the_right_confirmation_without_the_run_key_asks_for_the_key_not_another_fingerprint():
    fp = fingerprint()
    p = plan([{"name": "ssd0", "device": "/dev/loop0", "wipe": fresh(fp)}])
    assert p["disks"] == []
    text = reasons(p)
    assert "erasing it needs wipe: '%s' on this entry and localpv_allow_wipe: true for the run" % fp in text
    assert "does not match" not in text


def test_the_right_confirmation_read_as_another_string_object_erases():
    p = plan([{"name": "ssd0", "device": "/dev/loop0", "wipe": fresh(fingerprint())}], allow_wipe=True)
    assert p["refusals"] == []
    assert p["disks"][0]["actions"][:2] == ["wipe", "partition"]


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


def test_the_fstype_lists_agree():
    """Three lists by purpose: what disk_prepare makes (disk_plan.FSTYPES, also the
    module's and the role's choices), what mkfs_argv can make again (reclaim) and
    what a PV may declare. What disk_prepare makes must be in the other two."""
    assert set(plan_entries.FSTYPES) <= set(hv.MKFS_TYPES) <= set(vol.FSTYPES)
    spec = os.path.join(REPO, "roles", "disk_prep", "meta", "argument_specs.yml")
    with open(spec) as handle:
        options = yaml.safe_load(handle)["argument_specs"]["main"]["options"]
    assert options["disk_prep_fstype"]["choices"] == list(plan_entries.FSTYPES)


def module_documentation(name):
    with open(os.path.join(REPO, "plugins", "modules", name + ".py")) as handle:
        tree = ast.parse(handle.read())
    (doc,) = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
              and getattr(node.targets[0], "id", None) == "DOCUMENTATION"]
    return yaml.safe_load(doc)


def documented_spec(options):
    """What documented options state of an argument spec: type, choices, default, suboptions."""
    out = {}
    for key, doc in options.items():
        out[key] = dict((k, doc[k]) for k in ("type", "choices", "default") if k in doc)
        if "suboptions" in doc:
            out[key]["options"] = documented_spec(doc["suboptions"])
    return out


def test_disk_prepare_documents_the_entry_schema_the_plan_takes():
    """One schema (disk_plan.ENTRY_OPTIONS) is the module's argument spec and the keys
    normalize_spec takes; the module's documentation states the same keys, types and
    choices, no default (normalize_spec fills them), and the host-wide defaults."""
    options = module_documentation("disk_prepare")["options"]
    assert documented_spec(options["disks"]["suboptions"]) == plan_entries.entry_argument_spec()
    assert sorted(plan_entries.SPEC_KEYS) == sorted(options["disks"]["suboptions"])
    assert plan_entries.MATCH_KEYS == tuple(key for key, _spec in plan_entries.MATCH_OPTIONS)
    for key, value in plan_entries.HOST_DEFAULTS.items():
        assert options[key].get("default") == value, key
    # what an entry leaves out is said in its option's description
    for key, value in plan_entries.ENTRY_DEFAULTS.items():
        text = " ".join(options["disks"]["suboptions"][key]["description"]
                        if isinstance(options["disks"]["suboptions"][key]["description"], list)
                        else [options["disks"]["suboptions"][key]["description"]])
        assert "Default V(%s)." % str(value).lower() in text, key
