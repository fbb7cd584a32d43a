# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A StatefulSet replica moves off a retired volume and runs again, on the lab's
real controllers (StatefulSet, PV binder, scheduler, pod GC) and kwok pods:

- one disk of a live node: the node is cordoned only while the pods move, and
  uncordoned at the end; a pod that tolerates the cordon stops the run first;
- a dead node (its container stopped, its Node deleted): one command retires its
  PVs and claims and deletes the stuck pod, claim first (kubernetes#113139).

The audit log shows the order of the writes."""

import os
import subprocess
import sys
import time

import pytest
from kubernetes import client

from conftest import LAB, REPO
from pv_helpers import now_rfc3339, wait_until
from test_decommission_support import TEST_LABEL, Scenario, audit_writes

UNCORDON = "Uncordon the node that stays, now that its retired volumes are gone"
SAID = "Say what was retired"


@pytest.fixture
def scenario(lab, kube, tmp_path):
    s = Scenario(lab, kube, tmp_path)
    yield s
    s.cleanup()


def bind(s, name):
    return {"name": name, "bind": "/data/%s/%s" % (s.tag, name), "capacity": "1G"}


def ok(res, host="node2"):
    assert res.returncode == 0, (res.failed_msg(host), res.text[-3000:], res.stderr[-2000:])
    return res


def pv_elsewhere(s, host="node1", suffix="elsewhere"):
    """A PV of the test's StorageClass on another node, for the replica to move to."""
    info = s.lab.node(host)
    name = "%s-%s" % (s.tag, suffix)
    s.core.create_persistent_volume(client.V1PersistentVolume(
        metadata=client.V1ObjectMeta(name=name, labels={TEST_LABEL: s.tag}),
        spec=client.V1PersistentVolumeSpec(
            capacity={"storage": "1Gi"}, access_modes=["ReadWriteOnce"], storage_class_name=s.sc,
            persistent_volume_reclaim_policy="Retain",
            local=client.V1LocalVolumeSource(path="/mnt/disks/" + name),
            node_affinity=client.V1VolumeNodeAffinity(required=client.V1NodeSelector(node_selector_terms=[
                client.V1NodeSelectorTerm(match_expressions=[client.V1NodeSelectorRequirement(
                    key="kubernetes.io/hostname", operator="In", values=[info["hostname_label"]])])])))))
    return name


def free_statefulset(s, name, replicas=1):
    """A StatefulSet whose pods may run on any lab node (no node selector): its
    first claim binds on node2, where the only PVs of the test's class are."""
    labels = {"app": name}
    spec = s.pod_spec(None)
    spec.node_selector = None
    s.apps.create_namespaced_stateful_set(s.ns, client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1StatefulSetSpec(
            replicas=replicas, service_name=name, selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels), spec=spec),
            volume_claim_templates=[client.V1PersistentVolumeClaim(
                metadata=client.V1ObjectMeta(name="data"), spec=s.claim_spec())])))


def replica_running(s, pod="web-0", claim="data-web-0"):
    """(node, PV) once the pod runs and its claim is bound, else None."""
    pods = [p for p in s.core.list_namespaced_pod(s.ns).items if p.metadata.name == pod]
    claims = [c for c in s.core.list_namespaced_persistent_volume_claim(s.ns).items if c.metadata.name == claim]
    if pods and claims and pods[0].status.phase == "Running" and claims[0].status.phase == "Bound" \
            and not pods[0].metadata.deletion_timestamp:
        return pods[0].spec.node_name, claims[0].spec.volume_name
    return None


def print_writes(title, events, ns):
    """The writes of the run in the order the API server took them (for docs/decommission.md)."""
    print("\n%s" % title)
    for e in events:
        ref = e["objectRef"]
        if ref.get("namespace") not in (None, ns) or ref.get("subresource") == "status":
            continue
        agent = (e.get("userAgent") or "").split("/")[0]
        if agent.startswith("kwok") or ref["resource"] == "events":
            continue
        print("%s %-6s %-24s %-40s %s" % (e["stageTimestamp"][11:23], e["verb"], ref["resource"] + (
            "/" + ref["subresource"] if ref.get("subresource") else ""), ref.get("name"), agent))


def ours(events, ns):
    return [e for e in events if (e.get("userAgent") or "").startswith("localpv.rollout")
            and e["objectRef"].get("namespace") in (None, ns)]


def first(events, verb, resource, name, subresource=None):
    found = [e for e in events if e["verb"] == verb and e["objectRef"]["resource"] == resource
             and e["objectRef"].get("name") == name and e["objectRef"].get("subresource") == subresource
             and e["responseStatus"]["code"] < 300]
    assert found, (verb, resource, name, [(e["verb"], e["objectRef"]) for e in events])
    return found[0]["stageTimestamp"]


def test_one_disk_of_a_live_node_moves_its_statefulset_replica_and_the_node_is_uncordoned(lab, scenario):
    s = scenario
    a, b = s.tag + "-a", s.tag + "-b"
    s.setup([bind(s, a), bind(s, b)])
    free_statefulset(s, "web")
    claims = s.bound_claims(1)
    retired_pv = claims["data-web-0"]
    retire = next(n for n in (a, b) if retired_pv.endswith(n))
    keep = b if retire == a else a
    # the replica's new claim may bind the PV on node1, or node2's other volume once node2 is uncordoned
    elsewhere = pv_elsewhere(s)
    since = now_rfc3339()

    res = ok(s.decommission(decommission_volumes=[retire]))

    said = res.result(SAID, "node2")["msg"]
    assert "uncordoned again" in said, said
    assert s.core.read_node(s.node_name).spec.unschedulable in (None, False)
    annotations = s.core.read_node(s.node_name).metadata.annotations or {}
    assert "localpv.rollout/cordoned-by" not in annotations
    assert s.mounted(keep) and not s.mounted(retire)
    node, pv = wait_until("web-0 running on another PV", lambda: replica_running(s), timeout=300)
    assert pv != retired_pv and pv in (elsewhere, "local-%s-%s" % (s.node_name, keep)), (node, pv)

    # cordon < eviction < claim delete < delete of the replica that waited for it < PV delete < uncordon
    events = audit_writes(lab, since)
    print("\n".join(res.result("Show the plan", "node2")["msg"]))
    print(said)
    print_writes("live node: writes in order", events, s.ns)
    mine = ours(events, s.ns)
    # the cordon and the uncordon (kubernetes.core.k8s has a user agent of its own; kwok patches the status)
    node_patches = [e["stageTimestamp"] for e in events if e["objectRef"]["resource"] == "nodes"
                    and e["verb"] == "patch" and e["objectRef"].get("name") == s.node_name
                    and not e["objectRef"].get("subresource")
                    and not (e.get("userAgent") or "").startswith(("kwok", "kube-"))]
    assert len(node_patches) == 2, node_patches
    evicted = first(mine, "create", "pods", "web-0", "eviction")
    claim_deleted = first(mine, "delete", "persistentvolumeclaims", "data-web-0")
    pod_deleted = first(mine, "delete", "pods", "web-0")
    pv_deleted = first(mine, "delete", "persistentvolumes", retired_pv)
    assert node_patches[0] < evicted < claim_deleted < pod_deleted < pv_deleted < node_patches[1]
    assert res.result("Delete the claims and wait until gone, then the PVs and wait until gone",
                      "node2")["pods_deleted"] == ["%s/web-0" % s.ns]


def test_a_pod_that_tolerates_the_cordon_is_named_and_nothing_is_evicted(lab, scenario):
    s = scenario
    a = s.tag + "-a"
    (pv,) = s.setup([bind(s, a)])
    s.statefulset("web", tolerate_all=True)
    s.bound_claims(1)
    since = now_rfc3339()

    for args in (("--check",), ()):
        res = s.decommission(*args, decommission_volumes=[a])
        assert res.returncode != 0, args
        msg = res.failed_msg("node2")
        assert "%s/web-0 (StatefulSet/web)" % s.ns in msg and "node.kubernetes.io/unschedulable" in msg, msg
        assert "Nothing was evicted" in msg and "Scale the controller down" in msg, msg

    assert not ours(audit_writes(lab, since), s.ns)
    assert s.mounted(a) and [p.metadata.name for p in s.pvs()] == [pv]
    assert s.core.read_node(s.node_name).spec.unschedulable in (None, False)
    assert [p.status.phase for p in s.core.list_namespaced_pod(s.ns).items] == ["Running"]


@pytest.fixture
def dead_node2(lab):
    """Kills node2: its container stopped, its Node deleted. Afterwards the lab's
    ``up`` starts the container again and makes the Node again."""
    node = lab.node("node2")

    def kill():
        LAB.podman("stop", "-t", "2", node["container"])
        lab.kubectl("delete", "node", node["node_name"], "--wait=true")
    yield kill
    up = subprocess.run([sys.executable, os.path.join(REPO, "lab", "lab.py"), "up"], capture_output=True, text=True,
                        check=False)
    assert up.returncode == 0, up.stderr[-3000:]
    wait_until("ssh on node2", lambda: lab.ssh("node2", "true").returncode == 0, timeout=120)


def test_a_dead_nodes_statefulset_replica_runs_on_another_node_after_one_command(lab, scenario, dead_node2):
    s = scenario
    a = s.tag + "-a"
    (dead_pv,) = s.setup([bind(s, a)])
    free_statefulset(s, "web")
    s.bound_claims(1)
    claim_uid = s.core.read_namespaced_persistent_volume_claim("data-web-0", s.ns).metadata.uid
    elsewhere = [pv_elsewhere(s, suffix="elsewhere-1"), pv_elsewhere(s, suffix="elsewhere-2")]
    dead_node2()
    # a replica added while the node is dead: its fresh claim and pod are never touched (the
    # node-cleanup controller's #405)
    s.apps.patch_namespaced_stateful_set("web", s.ns, {"spec": {"replicas": 2}})
    since = now_rfc3339()
    started = time.monotonic()

    res = ok(s.decommission(decommission_host_unreachable=True))
    command_done = time.monotonic() - started
    node, pv = wait_until("web-0 running on another node's PV", lambda: replica_running(s), timeout=300)
    to_running = time.monotonic() - started
    print("dead node: decommission command %.1f s; web-0 Running on %s (%s) %.1f s after the command started"
          % (command_done, node, pv, to_running))
    assert node == "node1" and pv in elsewhere
    assert s.core.read_namespaced_persistent_volume_claim("data-web-0", s.ns).metadata.uid != claim_uid
    assert sorted(p.metadata.name for p in s.pvs()) == elsewhere
    said = res.result("Say that the host steps are skipped", "node2")["msg"]
    assert "NOT" in said

    events = audit_writes(lab, since)
    print_writes("dead node: writes in order", events, s.ns)
    mine = ours(events, s.ns)
    claim_deleted = first(mine, "delete", "persistentvolumeclaims", "data-web-0")
    pv_deleted = first(mine, "delete", "persistentvolumes", dead_pv)
    pod_deletes = [e["stageTimestamp"] for e in mine if e["verb"] == "delete" and e["objectRef"]["resource"] == "pods"]
    # the replica, if the pod GC had not removed it already, goes after its claim
    assert all(claim_deleted < t < pv_deleted for t in pod_deletes), (claim_deleted, pod_deletes, pv_deleted)
    assert not [e for e in mine if e["objectRef"].get("subresource") == "eviction"]
    # web-1 and its fresh claim: never written by us
    assert not [e for e in mine if e["objectRef"].get("name") in ("web-1", "data-web-1")]
