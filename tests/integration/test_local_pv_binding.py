# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The seed scenario through our own objects: the real scheduler and PV binder
use the PVs and the StorageClass our modules made, on the lab's kwok nodes."""

import pytest
from kubernetes import client

from pv_helpers import local_pv, module, remove_test_space, unique, volume, wait_until

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming


@pytest.fixture
def scenario(lab, kube, tmp_path):
    """A namespace and a StorageClass of our own (so no other test's PVs can bind)."""
    core = client.CoreV1Api(kube)
    tag = unique("seed")
    made = {"ns": tag, "sc": tag, "pvs": []}
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=tag)))
    wait_until("default ServiceAccount in %s" % tag, lambda: core.list_namespaced_service_account(
        tag, field_selector="metadata.name=default").items)
    res = module(lab, tmp_path, "localpv.rollout.local_storage_class", storage_classes=[{"name": tag}])
    assert res.get("failed") is not True, res.get("msg")
    yield made
    remove_test_space(kube, tag, made["pvs"])


def register(lab, tmp_path, scenario, nodes, per_node=1):
    wanted = [volume(n["node_name"], "%s-v%d" % (scenario["sc"], i), storage_class=scenario["sc"])
              for n in nodes for i in range(per_node)]
    scenario["pvs"] += [naming.pv_name(w["node"], w["name"]) for w in wanted]
    res = local_pv(lab, tmp_path, volumes=wanted)
    assert res["rc"] == 0, res.get("msg")
    return dict((naming.pv_name(w["node"], w["name"]), w["node"]) for w in wanted)


def pod_spec(claim, node_selector=None):
    return client.V1PodSpec(
        node_selector=node_selector,
        tolerations=[client.V1Toleration(operator="Exists")],
        containers=[client.V1Container(name="app", image="registry.invalid/app:1",
                                       volume_mounts=[client.V1VolumeMount(name="data", mount_path="/data")])],
        volumes=[client.V1Volume(name="data", persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
            claim_name=claim))] if claim else None)


def claim_spec(storage_class):
    return client.V1PersistentVolumeClaimSpec(
        access_modes=["ReadWriteOnce"], storage_class_name=storage_class,
        resources=client.V1VolumeResourceRequirements(requests={"storage": "512Mi"}))


def test_a_pod_pinned_to_node2_binds_a_pv_of_node2(lab, kube, tmp_path, scenario):
    core = client.CoreV1Api(kube)
    node1, node2 = lab.node("node1"), lab.node("node2")
    owners = register(lab, tmp_path, scenario, [node1, node2])
    ns = scenario["ns"]
    core.create_namespaced_persistent_volume_claim(ns, client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="data"), spec=claim_spec(scenario["sc"])))
    core.create_namespaced_pod(ns, client.V1Pod(
        metadata=client.V1ObjectMeta(name="app"),
        spec=pod_spec("data", {"kubernetes.io/hostname": node2["hostname_label"]})))

    def bound():
        pvc = core.read_namespaced_persistent_volume_claim("data", ns)
        return pvc if pvc.status.phase == "Bound" else None

    def scheduled():
        pod = core.read_namespaced_pod("app", ns)
        return pod if pod.spec.node_name else None

    pvc = wait_until("claim bound", bound)
    assert owners[pvc.spec.volume_name] == node2["node_name"]
    pod = wait_until("pod scheduled", scheduled)
    assert pod.spec.node_name == node2["node_name"]


def test_a_statefulset_of_three_spreads_and_binds_one_pv_per_pod(lab, kube, tmp_path, scenario):
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    nodes = [lab.node("node1"), lab.node("node2"), next(n for n in lab.nodes if n["node_name"] != n["hostname_label"])]
    owners = register(lab, tmp_path, scenario, nodes)
    ns = scenario["ns"]
    labels = {"app": "db"}
    apps.create_namespaced_stateful_set(ns, client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name="db"),
        spec=client.V1StatefulSetSpec(
            replicas=3, service_name="db", pod_management_policy="Parallel",
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels), spec=pod_spec(None)),
            volume_claim_templates=[client.V1PersistentVolumeClaim(
                metadata=client.V1ObjectMeta(name="data"), spec=claim_spec(scenario["sc"]))])))
    # the template's pod spec mounts the claim template by name

    def all_bound():
        claims = core.list_namespaced_persistent_volume_claim(ns).items
        return claims if len(claims) == 3 and all(c.status.phase == "Bound" for c in claims) else None

    def all_scheduled():
        pods = core.list_namespaced_pod(ns).items
        return pods if len(pods) == 3 and all(p.spec.node_name for p in pods) else None

    bound = wait_until("3 claims bound", all_bound)
    pvs = sorted(c.spec.volume_name for c in bound)
    assert len(set(pvs)) == 3
    assert sorted(owners[p] for p in pvs) == sorted(n["node_name"] for n in nodes)
    pods = wait_until("3 pods scheduled", all_scheduled)
    claim_node = dict((c.metadata.name, owners[c.spec.volume_name]) for c in bound)
    for pod in pods:
        assert pod.spec.node_name == claim_node["data-" + pod.metadata.name]
