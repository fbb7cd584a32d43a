# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PV a volume becomes, and what a run does to the owned PVs (no cluster)."""

import copy

import pytest

from ansible_collections.localpv.rollout.plugins.module_utils import volumes as v

GIB = 2 ** 30


def vol(node="node1", name="ssd0", **kw):
    item = dict(node=node, name=name, path="/mnt/disks/%s" % name, mode="filesystem", fstype="xfs",
                capacity=10 * GIB, storage_class="local-storage")
    item.update(kw)
    volume, reasons = v.normalize_volume(item)
    assert reasons == []
    return volume


def server_copy(manifest, **spec):
    """A PV as the API server returns it: defaults, status, canonical quantity."""
    pv = copy.deepcopy(manifest)
    pv["metadata"].update(uid="u-1", resourceVersion="7", finalizers=["kubernetes.io/pv-protection"])
    pv["spec"]["capacity"]["storage"] = "10Gi"
    pv["status"] = {"phase": "Available"}
    pv["spec"].update(spec)
    return pv


def hostnames(*nodes):
    return dict((n, (n, "node-label")) for n in nodes)


def test_pv_of_a_filesystem_volume_has_the_fields_a_local_pv_needs():
    pv = v.pv_manifest(vol(), "node1-host")
    assert pv["metadata"]["name"] == "local-node1-ssd0"
    assert pv["metadata"]["labels"] == {v.MANAGED_BY_LABEL: "localpv.rollout", v.NODE_LABEL: "node1",
                                        v.VOLUME_LABEL: "ssd0"}
    spec = pv["spec"]
    assert spec["local"] == {"path": "/mnt/disks/ssd0", "fsType": "xfs"}
    assert spec["volumeMode"] == "Filesystem"
    assert spec["accessModes"] == ["ReadWriteOnce"]
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"
    assert spec["storageClassName"] == "local-storage"
    assert v.parse_quantity(spec["capacity"]["storage"]) == 10 * GIB
    assert v.affinity_hostname(pv) == "node1-host"


def test_block_volume_has_block_mode_and_no_fstype():
    pv = v.pv_manifest(vol(name="raw0", mode="block", path="/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"), "node1")
    assert pv["spec"]["volumeMode"] == "Block"
    assert pv["spec"]["local"] == {"path": "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"}


@pytest.mark.parametrize("text,value", [
    ("10Gi", 10 * GIB), ("10737418240", 10 * GIB), ("1G", 10 ** 9), ("1e3", 1000), ("1.5Ki", 1536),
    ("500m", 0), ("bogus", None), ("", None),
])
def test_quantities_are_compared_by_value(text, value):
    assert v.parse_quantity(text) == value


@pytest.mark.parametrize("item,expect", [
    (dict(name="Bad_Name"), "name: not an RFC 1123 label"),
    (dict(node="Node_1"), "node: not a valid Kubernetes node name"),
    (dict(path="relative/path"), "not an absolute path"),
    (dict(path="/mnt/disks/x/"), "not an absolute path"),
    (dict(mode="raw"), "mode 'raw'"),
    (dict(capacity=0), "not a positive number of bytes"),
    (dict(capacity="lots"), "not a positive number of bytes"),
    (dict(storage_class="Local_Storage"), "not a valid StorageClass name"),
    (dict(reclaim_policy="Recycle"), "reclaim_policy"),
    (dict(labels={v.NODE_LABEL: "x"}), "is set by localpv.rollout"),
    (dict(labels={"team": "a b"}), "no valid Kubernetes label value"),
])
def test_invalid_volumes_are_refused_with_the_reason(item, expect):
    base = dict(node="node1", name="ssd0", path="/mnt/disks/ssd0", capacity=GIB)
    base.update(item)
    volumes, errors = v.normalize_volumes([base])
    assert len(errors) == 1 and expect in errors[0], errors


def test_two_volumes_wanting_one_pv_name_are_refused():
    items = [dict(node="node1", name="ssd0", path="/a", capacity=1), dict(node="node1", name="ssd0", path="/b", capacity=1)]
    errors = v.normalize_volumes(items)[1]
    assert errors == ["PV name local-node1-ssd0 is wanted more than once (node1/ssd0, node1/ssd0)"]


def test_capacity_may_be_a_quantity():
    volume, reasons = v.normalize_volume(dict(node="n", name="a", path="/a", capacity="100Gi"))
    assert reasons == [] and volume["capacity"] == 100 * GIB


def test_hostname_comes_from_the_node_label_not_the_node_name():
    nodes = [{"metadata": {"name": "node3", "labels": {v.HOSTNAME_LABEL: "node3-host"}}}]
    got = v.resolve_hostnames(["node3", "node9"], nodes)
    assert got == {"node3": ("node3-host", "node-label"), "node9": ("node9", "node-name")}


def test_a_node_that_left_the_cluster_keeps_the_hostname_of_its_pvs():
    pv = server_copy(v.pv_manifest(vol(node="node3"), "node3-host"))
    got = v.resolve_hostnames(["node3"], [], [pv])
    assert got == {"node3": ("node3-host", "existing-pv")}
    assert v.resolve_hostnames(["node3"], [], [pv], {"node3": "x"}) == {"node3": ("x", "override")}


def test_nothing_to_do_when_the_server_has_what_is_wanted():
    volume = vol()
    existing = server_copy(v.pv_manifest(volume, "node1"))
    actions = v.plan_pvs([volume], hostnames("node1"), [existing], ["node1"])
    assert [a["action"] for a in actions] == ["unchanged"]


def test_missing_pv_is_created():
    actions = v.plan_pvs([vol()], hostnames("node1"), [], ["node1"])
    assert [(a["action"], a["name"]) for a in actions] == [("create", "local-node1-ssd0")]


def test_a_label_changed_by_hand_is_patched_back_and_other_labels_stay():
    volume = vol(labels={"tier": "ssd"})
    existing = server_copy(v.pv_manifest(volume, "node1"))
    existing["metadata"]["labels"]["tier"] = "hdd"
    existing["metadata"]["labels"]["someone-else"] = "keep"
    (action,) = v.plan_pvs([volume], hostnames("node1"), [existing], ["node1"])
    assert action["action"] == "patch"
    assert action["patch"] == {"metadata": {"labels": {"tier": "ssd"}}}


def test_an_extra_label_removed_from_the_inventory_is_removed_from_the_pv():
    existing = server_copy(v.pv_manifest(vol(labels={"tier": "ssd"}), "node1"))
    existing["metadata"]["labels"]["someone-else"] = "keep"
    (action,) = v.plan_pvs([vol()], hostnames("node1"), [existing], ["node1"])
    assert action["patch"] == {"metadata": {"labels": {"tier": None},
                                            "annotations": {v.EXTRA_LABELS_ANNOTATION: None}}}


def test_reclaim_policy_is_patched_in_place():
    volume = vol(reclaim_policy="Retain")
    existing = server_copy(v.pv_manifest(volume, "node1"), persistentVolumeReclaimPolicy="Delete")
    (action,) = v.plan_pvs([volume], hostnames("node1"), [existing], ["node1"])
    assert action["patch"] == {"spec": {"persistentVolumeReclaimPolicy": "Retain"}}


@pytest.mark.parametrize("change,field", [
    (dict(capacity=20 * GIB), "spec.capacity"),
    (dict(path="/mnt/disks/other"), "spec.local"),
    (dict(fstype="ext4"), "spec.local"),
    (dict(mode="block"), "spec.volumeMode"),
    (dict(storage_class="fast-local"), "spec.storageClassName"),
])
def test_immutable_change_of_an_unbound_pv_needs_replace_unbound(change, field):
    existing = server_copy(v.pv_manifest(vol(), "node1"))
    (action,) = v.plan_pvs([vol(**change)], hostnames("node1"), [existing], ["node1"])
    assert action["action"] == "conflict" and field in action["changes"]
    assert "replace_unbound=true" in action["reason"]
    (action,) = v.plan_pvs([vol(**change)], hostnames("node1"), [existing], ["node1"], replace_unbound=True)
    assert action["action"] == "replace"


def test_new_hostname_label_is_an_immutable_change():
    existing = server_copy(v.pv_manifest(vol(), "node1"))
    (action,) = v.plan_pvs([vol()], {"node1": ("node1-new", "node-label")}, [existing], ["node1"])
    assert action["changes"] == ["spec.nodeAffinity"]


def test_immutable_change_of_a_bound_pv_is_an_error_naming_pv_and_claim():
    existing = server_copy(v.pv_manifest(vol(), "node1"),
                           claimRef={"namespace": "db", "name": "data-db-0", "kind": "PersistentVolumeClaim"})
    (action,) = v.plan_pvs([vol(capacity=20 * GIB)], hostnames("node1"), [existing], ["node1"], replace_unbound=True)
    assert action["action"] == "conflict"
    assert "local-node1-ssd0" in action["reason"] and "db/data-db-0" in action["reason"]


def test_prune_deletes_only_unbound_pvs_of_nodes_in_scope():
    free = server_copy(v.pv_manifest(vol(name="old0"), "node1"))
    bound = server_copy(v.pv_manifest(vol(name="old1"), "node1"), claimRef={"namespace": "a", "name": "c"})
    other_rack = server_copy(v.pv_manifest(vol(node="node7", name="old2"), "node7"))
    owned = [free, bound, other_rack]
    actions = v.plan_pvs([vol()], hostnames("node1"), owned, ["node1"], prune=True)
    got = sorted((a["action"], a["name"]) for a in actions)
    assert got == [("create", "local-node1-ssd0"), ("delete", "local-node1-old0"), ("kept_bound", "local-node1-old1")]
    actions = v.plan_pvs([vol()], hostnames("node1"), owned, ["node1"], prune=False)
    assert sorted(a["action"] for a in actions) == ["create", "stale", "stale"]


def test_a_node_with_no_volume_left_is_pruned_when_in_scope():
    free = server_copy(v.pv_manifest(vol(node="node2"), "node2"))
    actions = v.plan_pvs([], {}, [free], ["node2"], prune=True)
    assert [(a["action"], a["node"]) for a in actions] == [("delete", "node2")]


def test_summary_counts_per_node():
    actions = [{"action": "create", "node": "a", "name": "p1"}, {"action": "unchanged", "node": "a", "name": "p2"},
               {"action": "delete", "node": "b", "name": "p3"}]
    per_node, names = v.summarize(actions, nodes=["a", "b", "c"])
    assert per_node["a"]["created"] == 1 and per_node["a"]["unchanged"] == 1
    assert per_node["b"]["deleted"] == 1 and sum(per_node["c"].values()) == 0
    assert names["created"] == ["p1"] and names["deleted"] == ["p3"]


def test_storage_class_defaults_are_what_local_pvs_need():
    cls, reasons = v.normalize_storage_class({"name": "local-storage"})
    manifest = v.storage_class_manifest(cls)
    assert reasons == []
    assert manifest["provisioner"] == "kubernetes.io/no-provisioner"
    assert manifest["volumeBindingMode"] == "WaitForFirstConsumer"
    assert manifest["reclaimPolicy"] == "Retain"


def test_storage_class_binding_mode_change_is_immutable_and_default_annotation_is_patched():
    cls = v.normalize_storage_class({"name": "local-storage", "default": True})[0]
    existing = {"metadata": {"name": "local-storage", "labels": {"x": "y"}},
                "provisioner": "kubernetes.io/no-provisioner", "reclaimPolicy": "Retain",
                "volumeBindingMode": "Immediate"}
    immutable, patch = v.compare_storage_class(v.storage_class_manifest(cls), existing)
    assert immutable == ["volumeBindingMode"]
    assert patch == {"metadata": {"annotations": {v.DEFAULT_CLASS_ANNOTATION: "true"}}}
