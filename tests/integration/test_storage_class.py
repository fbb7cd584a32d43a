# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""local_storage_class against the lab's API server."""

import pytest
from kubernetes import client

from pv_helpers import module, unique

SC = "localpv.rollout.local_storage_class"


@pytest.fixture
def class_name(kube):
    name = unique("sc-")
    yield name
    try:
        client.StorageV1Api(kube).delete_storage_class(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def test_the_class_local_pvs_need_is_made_once(lab, kube, tmp_path, class_name):
    res = module(lab, tmp_path, SC, storage_classes=[{"name": class_name, "labels": {"team": "storage"}}])
    assert res["changed"] is True and res["storage_classes"][0]["action"] == "create"
    sc = client.StorageV1Api(kube).read_storage_class(class_name)
    assert sc.provisioner == "kubernetes.io/no-provisioner"
    assert sc.volume_binding_mode == "WaitForFirstConsumer" and sc.reclaim_policy == "Retain"
    assert sc.metadata.labels["team"] == "storage"
    res = module(lab, tmp_path, SC, storage_classes=[{"name": class_name, "labels": {"team": "storage"}}])
    assert res["changed"] is False and res["requests"] == {"get": 1}


def test_check_mode_makes_nothing(lab, kube, tmp_path, class_name):
    res = module(lab, tmp_path, SC, check=True, storage_classes=[{"name": class_name}])
    assert res["changed"] is True
    with pytest.raises(client.ApiException) as info:
        client.StorageV1Api(kube).read_storage_class(class_name)
    assert info.value.status == 404


def test_default_class_annotation_on_request(lab, kube, tmp_path, class_name):
    module(lab, tmp_path, SC, storage_classes=[{"name": class_name}])
    res = module(lab, tmp_path, SC, storage_classes=[{"name": class_name, "default": False}])
    assert res["changed"] is True and res["storage_classes"][0]["action"] == "patch"
    sc = client.StorageV1Api(kube).read_storage_class(class_name)
    assert sc.metadata.annotations["storageclass.kubernetes.io/is-default-class"] == "false"


def test_an_immutable_change_is_reported_and_replaced_only_when_asked(lab, kube, tmp_path, class_name):
    storage = client.StorageV1Api(kube)
    module(lab, tmp_path, SC, storage_classes=[{"name": class_name}])
    uid = storage.read_storage_class(class_name).metadata.uid
    wanted = [{"name": class_name, "volume_binding_mode": "Immediate", "reclaim_policy": "Delete"}]
    res = module(lab, tmp_path, SC, storage_classes=wanted)
    assert res.get("failed") is True
    assert "reclaimPolicy, volumeBindingMode" in res["msg"] and "replace=true" in res["msg"]
    assert storage.read_storage_class(class_name).metadata.uid == uid
    res = module(lab, tmp_path, SC, storage_classes=wanted, replace=True)
    assert res["changed"] is True and res["storage_classes"][0]["action"] == "replace"
    sc = storage.read_storage_class(class_name)
    assert sc.metadata.uid != uid and sc.volume_binding_mode == "Immediate"
