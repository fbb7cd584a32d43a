# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PV plan rules that mutation testing found unguarded (`make mutants`): prune must
look at every PV of ours, not stop at the first one still wanted; a missing
StorageClass names the PVs that need it, a few of them when there are many, and only
the PVs to write need it; another node's PV is never changed; a hostname that is no
label value is refused; a stale PV and a PV being deleted are described."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import pytest

from ansible_collections.localpv.rollout.plugins.module_utils.kube import persistent_volumes as pvs
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v

from pv_builders import hostnames, plan, server_copy, vol


def test_prune_looks_past_the_pvs_still_wanted():
    # PVs are visited by name: a wanted one ("a...") comes before the unwanted ("z...")
    wanted = vol(name="aaa")
    cluster = [server_copy(v.pv_manifest(wanted, "node1"), uid="u-a"),
               server_copy(v.pv_manifest(vol(name="zzz"), "node1"), uid="u-z")]
    got = sorted((a["action"], a["name"]) for a in plan([wanted], cluster, prune=True))
    assert got == [("delete", "local-node1-zzz"), ("unchanged", "local-node1-aaa")]


def missing_class_message(count):
    volumes = [vol(name="d%d" % n, storage_class="gone") for n in range(count)]
    errors, _warnings = pvs.validate_plan(plan(volumes, []), hostnames("node1"), {"local-storage"})
    return errors[0]


def test_a_missing_class_names_up_to_five_pvs_and_says_when_there_are_more():
    five = missing_class_message(5)
    assert "PVs local-node1-d0, local-node1-d1, local-node1-d2, local-node1-d3, local-node1-d4 name it" in five
    assert " ..." not in five
    six = missing_class_message(6)
    assert "local-node1-d4 ... name it" in six and "local-node1-d5" not in six


@pytest.mark.parametrize("other", ["node0", "node2"], ids=["sorts-before", "sorts-after"])
def test_a_pv_of_ours_labelled_for_another_node_is_never_changed_whichever_way_that_node_sorts(other):
    wanted = vol(node="node1", name="ssd0")
    pv = server_copy(v.pv_manifest(wanted, "node1"))
    pv["metadata"]["labels"][v.NODE_LABEL] = other
    (action,) = [a for a in plan([wanted], [pv]) if a.get("volume") == "ssd0"]
    assert action["action"] == "conflict"
    assert "it is never changed as another node's PV" in action["reason"]


def test_a_stale_pv_names_its_node_and_volume():
    gone = server_copy(v.pv_manifest(vol(node="node1", name="zzz"), "node1"))
    (action,) = plan([], [gone])
    assert (action["action"], action["name"], action["node"], action["volume"]) == (
        "stale", "local-node1-zzz", "node1", "zzz")


@pytest.mark.parametrize("finalizers, said", [
    (["kubernetes.io/pv-protection", "example.com/backup"], "finalizers kubernetes.io/pv-protection, example.com/backup"),
    ([], "finalizers none"),
], ids=["finalizers", "none"])
def test_a_pv_being_deleted_is_a_conflict_that_names_what_holds_it(finalizers, said):
    wanted = vol()
    pv = server_copy(v.pv_manifest(wanted, "node1"))
    pv["metadata"].update(deletionTimestamp="2026-12-02T10:00:00Z", finalizers=finalizers)
    (action,) = plan([wanted], [pv])
    assert action["action"] == "conflict"
    assert "is being deleted (%s); run again once it is gone" % said in action["reason"]


@pytest.mark.parametrize("value", ["node 1", "node~1"], ids=["label-sorts-after", "label-sorts-before"])
def test_a_hostname_that_is_no_label_value_is_refused_whichever_way_its_label_sorts(value):
    errors, _warnings = pvs.validate_plan([], {"node1": (value, "the inventory")}, {"local-storage"})
    assert len(errors) == 1 and "node node1: its kubernetes.io/hostname value %r" % value in errors[0]


def test_a_missing_class_named_by_one_pv_names_just_that_pv():
    one = missing_class_message(1)
    assert "PVs local-node1-d0 name it" in one and " ..." not in one


def test_only_the_pvs_to_write_need_their_class_and_each_of_them_is_checked():
    # a PV kept as it is, or pruned, needs no class: the class may be gone already
    kept, made = vol(name="a", storage_class="gone"), vol(name="b", storage_class="gone-too")
    pruned = vol(name="z", storage_class="gone")
    cluster = [server_copy(v.pv_manifest(kept, "node1")), server_copy(v.pv_manifest(pruned, "node1"), uid="u-z")]
    actions = sorted(plan([kept, made], cluster, prune=True), key=lambda a: a["name"])
    assert [a["action"] for a in actions] == ["unchanged", "create", "delete"]
    errors, _warnings = pvs.validate_plan(actions, hostnames("node1"), {"local-storage"})
    assert len(errors) == 1 and errors[0].startswith("StorageClass gone-too does not exist; PVs local-node1-b name it")
