# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab is real: a scheduler that honours local PV node affinity, nodes with their
own disks, and an audit log that records what happened in which order."""

import os
import subprocess
import sys
import uuid

import pytest
from conftest import REPO
from kubernetes import client
from pv_helpers import wait_until

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming


def local_pv(name, node_label, sc, size, test_id):
    return client.V1PersistentVolume(
        metadata=client.V1ObjectMeta(name=name, labels={"lab-test": test_id}),
        spec=client.V1PersistentVolumeSpec(
            capacity={"storage": size}, access_modes=["ReadWriteOnce"], volume_mode="Filesystem",
            persistent_volume_reclaim_policy="Retain", storage_class_name=sc,
            local=client.V1LocalVolumeSource(path="/mnt/disks/" + name),
            node_affinity=client.V1VolumeNodeAffinity(required=client.V1NodeSelector(
                node_selector_terms=[client.V1NodeSelectorTerm(match_expressions=[
                    client.V1NodeSelectorRequirement(key="kubernetes.io/hostname", operator="In",
                                                     values=[node_label])])])),
        ))


@pytest.fixture
def seed(lab, kube):
    """Objects of one seed scenario, removed afterwards (pods first, then claims, then PVs)."""
    core, storage = client.CoreV1Api(kube), client.StorageV1Api(kube)
    test_id = uuid.uuid4().hex[:8]
    ns = "seed-" + test_id
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    # pods are admitted only once the controller manager made the namespace's default
    # ServiceAccount
    wait_until("default ServiceAccount in %s" % ns, lambda: core.list_namespaced_service_account(
        ns, field_selector="metadata.name=default").items)
    made = {"ns": ns, "id": test_id, "pvs": [], "scs": []}
    yield made
    core.delete_namespace(ns)
    wait_until("namespace %s gone" % ns, lambda: ns not in
               [n.metadata.name for n in core.list_namespace().items], timeout=120)
    for pv in made["pvs"]:
        core.delete_persistent_volume(pv)
    for sc in made["scs"]:
        storage.delete_storage_class(sc)


def make_scenario(lab, kube, seed, binding_mode):
    core, storage = client.CoreV1Api(kube), client.StorageV1Api(kube)
    sc = "seed-%s-%s" % (binding_mode.lower(), seed["id"])
    storage.create_storage_class(client.V1StorageClass(
        metadata=client.V1ObjectMeta(name=sc), provisioner="kubernetes.io/no-provisioner",
        volume_binding_mode=binding_mode, reclaim_policy="Retain"))
    seed["scs"].append(sc)
    node1, node2 = lab.node("node1"), lab.node("node2")
    # node1's PV is the smaller one, so a binder that ignores the pod (Immediate)
    # picks it: the smallest PV that fits wins
    for node, size in ((node1, "1Gi"), (node2, "2Gi")):
        name = "seed-%s-%s" % (seed["id"], node["host"])
        core.create_persistent_volume(local_pv(name, node["hostname_label"], sc, size, seed["id"]))
        seed["pvs"].append(name)
    core.create_namespaced_persistent_volume_claim(seed["ns"], client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="data"),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"], storage_class_name=sc,
            resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}))))
    core.create_namespaced_pod(seed["ns"], client.V1Pod(
        metadata=client.V1ObjectMeta(name="app"),
        spec=client.V1PodSpec(
            node_selector={"kubernetes.io/hostname": node2["hostname_label"]},
            tolerations=[client.V1Toleration(operator="Exists")],
            containers=[client.V1Container(name="app", image="app:lab",
                                           volume_mounts=[client.V1VolumeMount(name="data",
                                                                               mount_path="/data")])],
            volumes=[client.V1Volume(name="data", persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                claim_name="data"))])))
    return core


def test_wait_for_first_consumer_binds_the_pv_of_the_pods_node(lab, kube, seed):
    core = make_scenario(lab, kube, seed, "WaitForFirstConsumer")
    node2 = lab.node("node2")

    def running():
        pod = core.read_namespaced_pod("app", seed["ns"])
        return pod if pod.status.phase == "Running" else None

    pod = wait_until("pod app running", running)
    assert pod.spec.node_name == node2["node_name"]
    pvc = core.read_namespaced_persistent_volume_claim("data", seed["ns"])
    assert pvc.status.phase == "Bound"
    assert pvc.spec.volume_name == "seed-%s-node2" % seed["id"]


# The scheduler's VolumeBinding plugin reports the conflict; releases before 1.33 said
# "volume node affinity conflict", current ones "didn't match PersistentVolume's node
# affinity".
NODE_AFFINITY_CONFLICT = ("volume node affinity conflict", "didn't match PersistentVolume's node affinity")


def test_immediate_binding_strands_the_pod_with_a_node_affinity_conflict(lab, kube, seed):
    core = make_scenario(lab, kube, seed, "Immediate")

    def bound():
        pvc = core.read_namespaced_persistent_volume_claim("data", seed["ns"])
        return pvc if pvc.status.phase == "Bound" else None

    pvc = wait_until("claim bound", bound)
    assert pvc.spec.volume_name == "seed-%s-node1" % seed["id"]

    def unschedulable():
        pod = core.read_namespaced_pod("app", seed["ns"])
        for cond in pod.status.conditions or []:
            if cond.type == "PodScheduled" and cond.status == "False" and \
                    any(reason in (cond.message or "") for reason in NODE_AFFINITY_CONFLICT):
                return pod
        return None

    pod = wait_until("pod unschedulable with a volume node affinity conflict", unschedulable)
    assert pod.status.phase == "Pending"
    assert not pod.spec.node_name


def test_every_node_answers_over_ssh_and_sees_only_its_own_disks(lab):
    for node in lab.nodes:
        res = lab.ssh(node["host"], "hostname")
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == node["host"]
        for disk in node["disks"]:
            size = lab.ssh(node["host"], "blockdev --getsize64 %s" % disk["path"])
            assert size.returncode == 0, size.stderr
            assert int(size.stdout) == disk["size"]
        # another node's disk is listed by the kernel but cannot be opened
        other = next(n for n in lab.nodes if n["host"] != node["host"])
        denied = lab.ssh(node["host"], "head -c 512 %s >/dev/null" % other["disks"][0]["path"])
        assert denied.returncode != 0
        assert "not permitted" in denied.stderr


def test_node3_is_named_differently_from_its_hostname_label(lab, kube):
    node3 = lab.node("node3")
    obj = client.CoreV1Api(kube).read_node(node3["node_name"])
    assert obj.metadata.name != node3["hostname_label"]
    assert obj.metadata.labels["kubernetes.io/hostname"] == node3["hostname_label"]
    ready = [c.status for c in obj.status.conditions if c.type == "Ready"]
    assert ready == ["True"]


def test_audit_log_records_the_delete_of_a_pv(lab, kube):
    core = client.CoreV1Api(kube)
    name = "audit-" + uuid.uuid4().hex[:8]
    core.create_persistent_volume(local_pv(name, "node1", "audit-none", "1Gi", "audit"))
    core.delete_persistent_volume(name)

    def deleted():
        return [e for e in lab.audit_events() if e.get("verb") == "delete"
                and e.get("objectRef", {}).get("resource") == "persistentvolumes"
                and e.get("objectRef", {}).get("name") == name and e.get("stage") == "ResponseComplete"]

    events = wait_until("the delete of %s in the audit log" % name, deleted, timeout=20)
    created = [e for e in lab.audit_events() if e.get("verb") == "create"
               and e.get("objectRef", {}).get("resource") == "persistentvolumes"
               and e.get("objectRef", {}).get("name") == name]
    assert created and created[0]["stageTimestamp"] <= events[0]["stageTimestamp"]
    assert events[0]["responseStatus"]["code"] == 200


def test_ansible_reaches_each_node_on_its_own_connection(lab):
    """Every inventory host answers from its own container, also with SSH master
    connections shared across tasks (ControlPath must differ per host)."""
    for connection in ("new master connections", "reused master connections"):
        res = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "ansible"), "-i", lab.inventory, "nodes",
             "-m", "ansible.builtin.command", "-a", "hostname", "-o"],
            capture_output=True, text=True, env=lab.env(), check=False)
        assert res.returncode == 0, res.stdout + res.stderr
        answers = dict(line.split(" | ")[0:1] + [line.rsplit(" ", 1)[-1]]
                       for line in res.stdout.splitlines() if " | " in line)
        assert answers == {n["host"]: n["host"] for n in lab.nodes}, connection


def test_make_site_works_again_after_a_test_blanked_a_site_disk(lab, kube):
    """make site, a test that blanks a site disk, make site: the site PVs record the
    disk's old ids, which site.yml rightly refuses to make a volume over; site-ready
    blanks the disk and forgets those PVs (unbound ones only), so the site comes back."""
    site_vars = "@" + os.path.join(os.path.dirname(lab.inventory), "site-vars.yml")

    def make_site():
        ready = subprocess.run([sys.executable, os.path.join(REPO, "lab", "lab.py"), "site-ready"],
                               capture_output=True, text=True, env=lab.env(), check=False)
        assert ready.returncode == 0, ready.stdout + ready.stderr
        res = lab.playbook("playbooks/site.yml", "-e", site_vars)
        assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-2000:]
        return ready

    make_site()
    node = lab.node("node3")
    core = client.CoreV1Api(kube)
    pv = naming.pv_name(node["node_name"], "ssd0")
    before = core.read_persistent_volume(pv).metadata.uid
    lab.wipe_disks("node3", only=[node["disks"][0]["path"]])
    ready = make_site()
    assert "deleted the site PVs %s of the blanked disks of node3" % pv in ready.stderr + ready.stdout
    assert core.read_persistent_volume(pv).metadata.uid != before
