# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""StorageClasses of local PVs, without a cluster: the wanted class, and who may change one."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


from ansible_collections.localpv.rollout.plugins.module_utils.kube import storage_classes as sc
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v


def test_storage_class_defaults_are_what_local_pvs_need():
    cls, reasons = sc.normalize_storage_class({"name": "local-storage"})
    manifest = sc.storage_class_manifest(cls)
    assert reasons == []
    assert manifest["provisioner"] == "kubernetes.io/no-provisioner"
    assert manifest["volumeBindingMode"] == "WaitForFirstConsumer"
    assert manifest["reclaimPolicy"] == "Retain"


def test_storage_class_binding_mode_change_is_immutable_and_default_annotation_is_patched():
    cls = sc.normalize_storage_class({"name": "local-storage", "default": True})[0]
    existing = {"metadata": {"name": "local-storage", "labels": {"x": "y"}},
                "provisioner": "kubernetes.io/no-provisioner", "reclaimPolicy": "Retain",
                "volumeBindingMode": "Immediate"}
    immutable, patch = sc.compare_storage_class(sc.storage_class_manifest(cls), existing)
    assert immutable == ["volumeBindingMode"]
    assert patch == {"metadata": {"annotations": {sc.DEFAULT_CLASS_ANNOTATION: "true"}}}


def test_a_class_of_someone_else_is_used_when_it_matches_and_never_changed_when_it_differs():
    wanted = sc.normalize_storage_class({"name": "local-storage", "default": True})[0]
    theirs = {"metadata": {"name": "local-storage", "labels": {}}, "provisioner": "kubernetes.io/no-provisioner",
              "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}
    item = sc.plan_storage_class(wanted, theirs, replace=True)
    assert item["action"] == "conflict" and "not managed by localpv.rollout" in item["reason"]
    assert "reclaimPolicy: 'Delete' -> 'Retain'" in item["reason"] and "default: None -> 'true'" in item["reason"]
    same = sc.normalize_storage_class({"name": "local-storage", "reclaim_policy": "Delete"})[0]
    assert sc.plan_storage_class(same, theirs)["action"] == "unchanged"


def test_a_class_of_ours_is_patched_or_replaced_when_asked():
    wanted = sc.normalize_storage_class({"name": "local-storage", "default": True})[0]
    ours = sc.storage_class_manifest(sc.normalize_storage_class({"name": "local-storage"})[0])
    assert sc.plan_storage_class(wanted, ours)["action"] == "patch"
    wanted = sc.normalize_storage_class({"name": "local-storage", "reclaim_policy": "Delete"})[0]
    assert sc.plan_storage_class(wanted, ours)["action"] == "conflict"
    assert sc.plan_storage_class(wanted, ours, replace=True)["action"] == "replace"
    assert v.is_owned(ours)


PROVISIONER_CLASS = {"metadata": {"name": "fast-disks", "labels": {}}, "provisioner": "kubernetes.io/no-provisioner",
                     "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}


def test_the_provisioners_delete_class_is_named_with_the_entry_that_uses_it_as_it_is():
    wanted = sc.normalize_storage_class({"name": "fast-disks"})[0]
    item = sc.plan_storage_class(wanted, PROVISIONER_CLASS)
    assert item["action"] == "conflict"
    assert "StorageClass fast-disks" in item["reason"] and "reclaimPolicy Delete" in item["reason"]
    assert "{name: fast-disks, reclaim_policy: Delete, pv_reclaim_policy: Retain}" in item["reason"]


def test_a_delete_class_used_as_it_is_gives_its_pvs_retain():
    cls, reasons = sc.normalize_storage_class({"name": "fast-disks", "reclaim_policy": "Delete",
                                               "pv_reclaim_policy": "Retain"})
    assert reasons == [] and cls["pv_reclaim_policy"] == "Retain"
    assert sc.plan_storage_class(cls, PROVISIONER_CLASS)["action"] == "unchanged"
    assert "pv_reclaim_policy" not in str(sc.storage_class_manifest(cls))


def test_the_pv_reclaim_policy_defaults_to_the_classs_and_is_checked():
    assert sc.normalize_storage_class({"name": "c", "reclaim_policy": "Delete"})[0]["pv_reclaim_policy"] == "Delete"
    assert "pv_reclaim_policy 'Keep'" in sc.normalize_storage_class({"name": "c", "pv_reclaim_policy": "Keep"})[1][0]
