# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a run does to the PVs of the cluster, without a cluster: identity by node
and path, take-over, conflicts, prune, validation and the results it reports."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import pytest

from ansible_collections.localpv.rollout.plugins.module_utils.kube import persistent_volumes as pvs
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v

from pv_builders import GIB, hostnames, plan, provisioner_pv, server_copy, vol


def test_nothing_to_do_when_the_server_has_what_is_wanted():
    volume = vol()
    assert [a["action"] for a in plan([volume], [server_copy(v.pv_manifest(volume, "node1"))])] == ["unchanged"]


def test_missing_pv_is_created():
    assert [(a["action"], a["name"]) for a in plan([vol()], [])] == [("create", "local-node1-ssd0")]


def test_a_label_changed_by_hand_is_patched_back_and_other_labels_stay():
    volume = vol(labels={"tier": "ssd"})
    existing = server_copy(v.pv_manifest(volume, "node1"))
    existing["metadata"]["labels"].update(tier="hdd", other="keep")
    (action,) = plan([volume], [existing])
    assert action["action"] == "patch" and action["patch"] == {"metadata": {"labels": {"tier": "ssd"}}}


def test_an_extra_label_removed_from_the_inventory_is_removed_from_the_pv():
    existing = server_copy(v.pv_manifest(vol(labels={"tier": "ssd"}), "node1"))
    (action,) = plan([vol()], [existing])
    assert action["patch"] == {"metadata": {"labels": {"tier": None}, "annotations": {v.EXTRA_LABELS_ANNOTATION: None}}}


def test_reclaim_policy_and_capacity_drift_are_one_patch_in_place():
    volume = vol(capacity=20 * GIB)
    existing = server_copy(v.pv_manifest(volume, "node1"), persistentVolumeReclaimPolicy="Delete")
    (action,) = plan([volume], [existing])
    assert action["action"] == "patch"
    assert action["patch"] == {"spec": {"persistentVolumeReclaimPolicy": "Retain",
                                        "capacity": {"storage": str(20 * GIB)}}}


def test_a_bound_pv_is_patched_only_in_safe_fields_and_the_rest_is_held():
    volume = vol(capacity=20 * GIB)
    existing = server_copy(v.pv_manifest(volume, "node1"), persistentVolumeReclaimPolicy="Delete",
                           claimRef={"namespace": "db", "name": "data-db-0"})
    (action,) = plan([volume], [existing])
    assert action["patch"] == {"spec": {"persistentVolumeReclaimPolicy": "Retain"}}
    assert action["held"] == ["spec.capacity"]


@pytest.mark.parametrize("change,field", [
    (dict(path="/mnt/disks/other"), "spec.local"),
    (dict(fstype="ext4"), "spec.local"),
    (dict(mode="block"), "spec.volumeMode"),
    (dict(storage_class="fast-local"), "spec.storageClassName"),
])
def test_immutable_change_of_an_unbound_pv_needs_replace_unbound(change, field):
    existing = server_copy(v.pv_manifest(vol(), "node1"))
    (action,) = plan([vol(**change)], [existing])
    assert action["action"] == "conflict" and field in action["changes"]
    assert "replace_unbound=true" in action["reason"]
    (action,) = plan([vol(**change)], [existing], replace_unbound=True)
    assert action["action"] == "replace" and action["name"] == "local-node1-ssd0"


class ReplacingServer:
    """The calls a replace makes: the deleted PV stays (its protection finalizer) for
    ``stays`` reads, then is gone; the new one is created."""

    dry_run = False

    def __init__(self, existing, stays):
        self.existing, self.stays = existing, stays
        self.calls, self.slept = [], 0.0

    def run(self, jobs):
        return [(job(), None) for job in jobs]

    def delete_pv(self, name, uid=None, version=None):
        self.calls.append(("delete", name, uid))

    def get_pv(self, name):
        self.calls.append(("get", name))
        self.stays -= 1
        return self.existing if self.stays >= 0 else None

    def create_pv(self, body):
        self.calls.append(("create", body["metadata"]["name"]))

    def _sleep(self, seconds):
        self.slept += seconds


def test_a_replaced_pv_is_made_again_only_once_the_deleted_one_is_gone():
    existing = server_copy(v.pv_manifest(vol(), "node1"))
    existing["metadata"]["finalizers"] = ["kubernetes.io/pv-protection"]
    (action,) = plan([vol(fstype="ext4")], [existing], replace_unbound=True)
    kube = ReplacingServer(existing, stays=2)
    pvs.apply_plan(kube, [action])
    assert action.get("confirmed") and action["confirmed_delete"], action
    assert kube.calls == [("delete", "local-node1-ssd0", "u-1")] + [("get", "local-node1-ssd0")] * 3 + [
        ("create", "local-node1-ssd0")]
    assert kube.slept > 0


def test_new_hostname_label_is_an_immutable_change():
    existing = server_copy(v.pv_manifest(vol(), "node1"))
    (action,) = plan([vol()], [existing], names={"node1": ("node1-new", "node-label")})
    assert action["changes"] == ["spec.nodeAffinity"]


def test_a_pv_equal_to_the_wanted_one_is_kept_without_its_body_and_still_replaced_with_its_own_uid():
    existing = server_copy(v.pv_manifest(vol(), "node1"), uid="u-mine",
                           claimRef={"namespace": "db", "name": "data-db-0"})
    index = pvs.PvIndex([vol()], ["node1"])
    index.add(existing)
    (listed,) = index.at("node1", "/mnt/disks/ssd0/")
    assert listed.settled and listed.text is None and listed.claim == "db/data-db-0"
    rebuilt = listed.pv()
    assert pvs.managed_view(rebuilt) == pvs.managed_view(existing) and v.claim_of(rebuilt) == "db/data-db-0"
    assert (rebuilt["metadata"]["uid"], rebuilt["metadata"]["resourceVersion"]) == ("u-mine", "7")
    del existing["spec"]["claimRef"]
    (action,) = plan([vol()], [existing], names={"node1": ("node1-new", "node-label")}, replace_unbound=True)
    assert action["action"] == "replace" and action["existing"]["metadata"]["uid"] == "u-mine"


def test_a_pv_with_a_label_of_someone_else_keeps_its_body_and_is_unchanged():
    existing = server_copy(v.pv_manifest(vol(), "node1"))
    existing["metadata"]["labels"]["team"] = "db"
    index = pvs.PvIndex([vol()], ["node1"])
    index.add(existing)
    assert not index.at("node1", "/mnt/disks/ssd0")[0].settled
    assert [a["action"] for a in plan([vol()], [existing])] == ["unchanged"]


def test_a_pv_being_deleted_is_never_settled_and_says_so():
    existing = server_copy(v.pv_manifest(vol(), "node1"))
    existing["metadata"]["deletionTimestamp"] = "2026-11-30T00:00:00Z"
    (action,) = plan([vol()], [existing])
    assert action["action"] == "conflict" and "being deleted" in action["reason"]


def test_immutable_change_of_a_bound_pv_is_an_error_naming_pv_and_claim():
    existing = server_copy(v.pv_manifest(vol(), "node1"), claimRef={"namespace": "db", "name": "data-db-0"})
    (action,) = plan([vol(fstype="ext4")], [existing], replace_unbound=True)
    assert action["action"] == "conflict"
    assert "local-node1-ssd0" in action["reason"] and "db/data-db-0" in action["reason"]


def test_prune_deletes_only_unbound_pvs_of_nodes_in_scope():
    free = server_copy(v.pv_manifest(vol(name="old0"), "node1"))
    bound = server_copy(v.pv_manifest(vol(name="old1"), "node1"), claimRef={"namespace": "a", "name": "c"})
    other_rack = server_copy(v.pv_manifest(vol(node="node7", name="old2"), "node7"))
    cluster = [free, bound, other_rack]
    got = sorted((a["action"], a["name"]) for a in plan([vol()], cluster, prune=True))
    assert got == [("create", "local-node1-ssd0"), ("delete", "local-node1-old0"), ("kept_bound", "local-node1-old1")]
    assert sorted(a["action"] for a in plan([vol()], cluster)) == ["create", "stale", "stale"]


def test_a_node_with_no_volume_left_is_pruned_when_in_scope():
    free = server_copy(v.pv_manifest(vol(node="node2"), "node2"))
    assert [(a["action"], a["node"]) for a in plan([], [free], scope=["node2"], prune=True)] == [("delete", "node2")]


# --- identity: node and path, whatever the name -------------------------------------

def test_a_foreign_pv_at_our_path_is_a_conflict_naming_both_pvs():
    (action,) = plan([vol()], [provisioner_pv(claim="data-0")])
    assert action["action"] == "conflict"
    assert "local-pv-5a1c2e7b" in action["reason"] and "provisioned by local-volume-provisioner" in action["reason"]
    assert "app/data-0" in action["reason"] and "second PV (local-node1-ssd0)" in action["reason"]
    # the advice is what a user of the playbooks types, not the module option
    assert "-e localpv_take_over=true" in action["reason"]


def test_a_foreign_pv_on_another_node_or_path_is_not_in_the_way():
    cluster = [provisioner_pv(hostname="node2"), provisioner_pv(name="local-pv-2", path="/mnt/disks/ssd9")]
    assert [a["action"] for a in plan([vol()], cluster)] == ["create"]


def test_take_over_labels_the_pv_in_place_keeping_name_and_claim():
    (action,) = plan([vol()], [provisioner_pv(claim="data-0")], take_over=True)
    assert action["action"] == "take_over" and action["name"] == "local-pv-5a1c2e7b"
    labels = action["patch"]["metadata"]["labels"]
    assert labels[v.MANAGED_BY_LABEL] == v.MANAGED_BY_VALUE and labels[v.NODE_LABEL] == "node1"
    assert labels[v.VOLUME_LABEL] == "ssd0"
    assert action["patch"]["spec"] == {"persistentVolumeReclaimPolicy": "Retain"}
    assert "claimRef" not in str(action["patch"])


def test_take_over_never_replaces_a_pv_whose_fixed_fields_differ():
    (action,) = plan([vol(fstype="ext4")], [provisioner_pv()], take_over=True, replace_unbound=True)
    assert action["action"] == "conflict" and "never deleted" in action["reason"]


def test_a_pv_taken_over_earlier_is_ours_by_identity_under_its_old_name():
    taken = provisioner_pv()
    taken["metadata"]["labels"].update(v.pv_labels(vol()))
    taken["spec"]["persistentVolumeReclaimPolicy"] = "Retain"
    (action,) = plan([vol()], [taken], prune=True)
    assert (action["action"], action["name"]) == ("unchanged", "local-pv-5a1c2e7b")


def test_an_owned_pv_of_another_node_at_the_identity_is_a_conflict_never_patched():
    # node "node-1" and node "node" pinned to one hostname: the PV of one is never the other's
    theirs = server_copy(v.pv_manifest(vol(node="node", name="1-data0", path="/mnt/disks/d"), "h1"))
    (action,) = plan([vol(node="node-1", name="data0", path="/mnt/disks/d")], [theirs], scope=["node-1"],
                     names={"node-1": ("h1", "node-label")})
    assert action["action"] == "conflict" and "not of node node-1" in action["reason"] and "patch" not in action


def test_a_pv_name_taken_elsewhere_is_a_conflict_not_an_overwrite():
    elsewhere = provisioner_pv(name="local-node1-ssd0", path="/srv/other")
    (action,) = plan([vol()], [elsewhere])
    assert action["action"] == "conflict" and "not managed by localpv.rollout" in action["reason"]


def test_two_pvs_at_one_identity_are_a_conflict_naming_both():
    cluster = [provisioner_pv(), provisioner_pv(name="local-pv-2")]
    (action,) = plan([vol()], cluster, take_over=True)
    assert action["action"] == "conflict" and "local-pv-2" in action["reason"] and "local-pv-5a1c2e7b" in action["reason"]


def test_a_second_pv_beside_ours_at_its_identity_is_a_conflict_naming_both():
    ours = server_copy(v.pv_manifest(vol(), "node1"))
    action = plan([vol()], [ours, provisioner_pv(name="local-pv-9")], prune=True)[0]
    assert action["action"] == "conflict" and "local-pv-9" in action["reason"] and "local-node1-ssd0" in action["reason"]


def test_the_pvs_of_a_conflict_are_never_pruned_in_that_run():
    # two PVs of ours at one disk (a copy under another name): the run stops on the
    # conflict, and its plan must not say prune would delete either of them
    ours = server_copy(v.pv_manifest(vol(), "node1"))
    copy_of_ours = server_copy(v.pv_manifest(vol(), "node1"), uid="u-2")
    copy_of_ours["metadata"]["name"] = "local-node1-ssd0-copy"
    actions = plan([vol()], [ours, copy_of_ours], prune=True)
    assert [a["action"] for a in actions] == ["conflict"]
    assert "local-node1-ssd0-copy" in actions[0]["reason"] and "local-node1-ssd0 " in actions[0]["reason"] + " "
    # an owned PV of the node that no volume wants is still pruned beside it
    gone = server_copy(v.pv_manifest(vol(name="old0"), "node1"), uid="u-3")
    assert sorted((a["action"], a["name"]) for a in plan([vol()], [ours, copy_of_ours, gone], prune=True)) == [
        ("conflict", "local-node1-ssd0"), ("delete", "local-node1-old0")]


def test_the_index_keeps_only_what_the_plan_needs():
    index = pvs.PvIndex([vol()], ["node1"])
    index.add(provisioner_pv())
    index.add(provisioner_pv(name="unrelated", path="/x"))
    index.add(server_copy(v.pv_manifest(vol(node="node7", name="z"), "node7")))
    assert index.count == 3 and index.names == {"local-pv-5a1c2e7b", "unrelated", "local-node7-z"}
    assert list(index.at_path) == [("node1", "/mnt/disks/ssd0")] and index.owned == {}
    assert index.owned_hostnames == {"node7": {"node7"}}


# --- validation and results ------------------------------------------------------

def test_validation_finds_what_the_api_server_would_refuse_before_any_write():
    actions = plan([vol(node="n" * 80), vol(node="node1", storage_class="gone")], [],
                   scope=["n" * 80, "node1"])
    errors, warnings = pvs.validate_plan(actions, hostnames("n" * 80, "node1"), {"local-storage"})
    assert any("kubernetes.io/hostname value" in e and "n" * 80 in e for e in errors)
    assert any(e.startswith("StorageClass gone does not exist") for e in errors) and warnings == []
    errors, warnings = pvs.validate_plan(actions[1:], hostnames("node1"), {"local-storage"}, dry_run=True)
    assert errors == [] and warnings[0].startswith("StorageClass gone")


def test_results_list_only_what_the_api_confirmed():
    actions = [{"action": "create", "node": "a", "name": "p1", "confirmed": True},
               {"action": "create", "node": "a", "name": "p2", "error": "boom"},
               {"action": "unchanged", "node": "a", "name": "p3"},
               {"action": "replace", "node": "b", "name": "p4", "confirmed_delete": True, "error": "boom"},
               {"action": "take_over", "node": "b", "name": "p5", "confirmed": True},
               {"action": "delete", "node": "b", "name": "p6"}]
    per_node, names = pvs.summarize(actions, nodes=["a", "b", "c"])
    assert names["created"] == ["p1"] and names["deleted"] == ["p4"] and names["taken_over"] == ["p5"]
    assert per_node["a"]["created"] == 1 and per_node["a"]["unchanged"] == 1 and sum(per_node["c"].values()) == 0
    result = pvs.run_result({"actions": actions, "hostnames": {}, "invalid": []}, ["a", "b"])
    assert result["changed"] is True and [e["name"] for e in result["errors"]] == ["p2", "p4"]
    nothing = pvs.run_result({"actions": [dict(actions[1])], "hostnames": {}, "invalid": []}, ["a"])
    assert nothing["changed"] is False and nothing["created"] == []


def test_a_capacity_known_only_after_apply_is_checked_in_everything_else_and_not_sent():
    item = dict(node="node1", name="ssd0", path="/mnt/disks/ssd0", fstype="xfs")
    (volume,), errors = v.normalize_volumes([item], {"capacity_unknown_ok": True})
    assert errors == [] and volume["capacity"] is None
    (action,) = plan([volume], [])
    assert action["action"] == "create" and action["capacity_known"] is False
    assert pvs.validate_plan([action], hostnames("node1"), {"local-storage"}, dry_run=True) == ([], [])
    assert "has no capacity" in pvs.validate_plan([action], hostnames("node1"), {"local-storage"})[0][0]
    pvs.apply_plan(None, [action])   # nothing is sent: no client needed
    result = pvs.run_result({"actions": [action], "hostnames": {}, "invalid": []}, ["node1"])
    assert result["capacity_unknown"] == [{"name": "local-node1-ssd0", "node": "node1", "volume": "ssd0",
                                           "capacity": "known after apply"}]
    assert result["created"] == [] and result["changed"] is False
    # an existing PV is not found different only because its capacity is not known yet
    existing = server_copy(v.pv_manifest(vol(), "node1"))
    assert [a["action"] for a in plan([volume], [existing])] == ["unchanged"]


# --- a bound PV's disk never changes (issue 21) ----------------------------------

def test_a_bound_pvs_disk_identity_is_never_changed_and_the_conflict_names_pv_and_claim():
    old = vol(uuid="f-old", partuuid="p-old")
    existing = server_copy(v.pv_manifest(old, "node1"), claimRef={"namespace": "db", "name": "data-db-0"})
    (action,) = plan([vol(uuid="f-new", partuuid="p-new")], [existing])
    assert action["action"] == "conflict"
    assert "PV local-node1-ssd0 (of node node1, bound to claim db/data-db-0) records the disk its volume lives " \
        "on (localpv.rollout/partuuid=p-old, localpv.rollout/fs-uuid=f-old)" in action["reason"]
    assert "The disk of a bound PV never changes" in action["reason"]
    (removed,) = plan([vol()], [existing])
    assert removed["action"] == "conflict" and "localpv.rollout/fs-uuid=(none)" in removed["reason"]


def test_an_unbound_pv_follows_its_volumes_disk_and_a_missing_identity_is_added_to_a_bound_one():
    old = vol(uuid="f-old")
    (action,) = plan([vol(uuid="f-new", partuuid="p-new")], [server_copy(v.pv_manifest(old, "node1"))])
    assert action["action"] == "patch"
    assert action["patch"]["metadata"]["annotations"] == {v.FS_UUID_ANNOTATION: "f-new", v.PARTUUID_ANNOTATION: "p-new"}
    bound = server_copy(v.pv_manifest(old, "node1"), claimRef={"namespace": "db", "name": "data-db-0"})
    (added,) = plan([vol(uuid="f-old", partuuid="p-1")], [bound])
    assert added["action"] == "patch" and added["patch"]["metadata"]["annotations"] == {v.PARTUUID_ANNOTATION: "p-1"}


def test_the_records_of_our_pvs_reach_each_node_by_volume():
    bound = server_copy(v.pv_manifest(vol(uuid="f-1", partuuid="p-1"), "node1"),
                        claimRef={"namespace": "db", "name": "data-db-0"})
    other = server_copy(v.pv_manifest(vol(name="raw0", node="node2", partuuid="p-2"), "node2"))
    records = v.recorded_identities([bound, other, provisioner_pv()], ["node1"])
    assert records["node1"]["ssd0"] == {"pv": "local-node1-ssd0", "stable_id": bound["metadata"]["annotations"].get(
        v.STABLE_ID_ANNOTATION), "partuuid": "p-1", "fs_uuid": "f-1", "claim": "db/data-db-0"}
    assert records["node2"]["raw0"]["partuuid"] == "p-2" and records["node2"]["raw0"]["claim"] is None
    assert len(records) == 2


@pytest.mark.parametrize("spelling", ["/mnt/disks/ssd0/", "/mnt/disks/./ssd0", "/mnt/disks//ssd0"])
def test_a_provisioner_pv_at_another_spelling_of_our_path_is_taken_over_not_doubled(spelling):
    (action,) = plan([vol()], [provisioner_pv(path=spelling, claim="data-0")], take_over=True)
    assert (action["action"], action["name"]) == ("take_over", "local-pv-5a1c2e7b"), action
    assert "spec.local" not in str(action.get("changes"))


@pytest.mark.parametrize("spelling", ["/mnt/disks/ssd0/", "/mnt/disks/./ssd0", "/mnt/disks//ssd0"])
def test_a_provisioner_pv_at_another_spelling_of_our_path_is_a_conflict_without_take_over(spelling):
    (action,) = plan([vol()], [provisioner_pv(path=spelling)])
    assert action["action"] == "conflict" and "local-pv-5a1c2e7b" in action["reason"]


def test_our_pv_at_another_spelling_of_its_path_is_settled_and_unchanged():
    volume = vol()
    pv = server_copy(v.pv_manifest(volume, "node1"))
    pv["spec"]["capacity"]["storage"] = str(volume["capacity"])
    pv["spec"]["local"]["path"] = "/mnt/disks/ssd0/"
    assert [a["action"] for a in plan([volume], [pv])] == ["unchanged"]


class LostAnswers:
    """A client whose server does each create, then drops the connection before
    answering (the API server killed mid-request); reads answer again after."""

    def __init__(self, reads_answer=True):
        self.stored, self.reads_answer = {}, reads_answer

    def create_pv(self, body):
        self.stored[body["metadata"]["name"]] = server_copy(body)
        raise pvs.KubeError("cannot reach the API server for create persistentvolumes: connection reset",
                            verb="create", resource="persistentvolumes", name=body["metadata"]["name"])

    def get_pv(self, name):
        if not self.reads_answer:
            raise pvs.KubeError("cannot reach the API server for get persistentvolumes: connection refused",
                                verb="get", resource="persistentvolumes", name=name)
        return self.stored.get(name)

    def run(self, jobs):
        out = []
        for job in jobs:
            try:
                out.append((job(), None))
            except pvs.KubeError as err:
                out.append((None, err))
        return out


def test_a_create_whose_answer_was_lost_is_read_again_and_reported_as_created():
    (action,) = plan([vol()], [])
    pvs.apply_plan(LostAnswers(), [action])
    assert action.get("confirmed") is True and "error" not in action


def test_a_create_whose_answer_was_lost_and_cannot_be_read_again_says_it_may_have_been_made():
    (action,) = plan([vol()], [])
    pvs.apply_plan(LostAnswers(reads_answer=False), [action])
    assert "confirmed" not in action
    assert "may have been written" in action["error"] and "local-node1-ssd0" in action["error"]
