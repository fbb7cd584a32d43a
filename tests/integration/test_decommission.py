# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""decommission.yml on the lab: the safe order proven by the API server's audit
log and the task times of the host steps, partial retirement, interrupted runs,
and the stops (PDB, a process holding the volume, an unreachable host).

Each test works on volumes of its own on node2 (see test_decommission_support)."""

import pytest
from kubernetes import client

from pv_helpers import now_rfc3339, wait_until
from test_decommission_support import ROOT, Scenario, audit_writes

UNMOUNT = "Unmount the volumes and remove their fstab lines and mount points"
EVICT = "Evict the pods that use the volumes and wait until they are gone"
DELETE = "Delete the claims and wait until gone, then the PVs and wait until gone"


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


def pods_of(s):
    return s.core.list_namespaced_pod(s.ns).items


def workloads(s):
    """A StatefulSet (claim data-web-0) and a Deployment (claim db) on the node, a PDB
    on the Deployment that allows one disruption; returns {claim: PV}."""
    s.statefulset("web")
    s.deployment("db", "db")
    s.pdb("db", 1)
    return s.bound_claims(2)


def ref_name(ev):
    ref = ev.get("objectRef") or {}
    return "%s/%s" % (ref.get("namespace") or "", ref.get("name"))


def test_the_audit_log_shows_pods_then_unmount_then_claim_then_pv_for_every_volume(lab, scenario):
    s = scenario
    a, b, c = s.tag + "-a", s.tag + "-b", s.tag + "-c"
    pvs = s.setup([bind(s, a), bind(s, b), bind(s, c)])
    claims = workloads(s)
    pods = dict((p.metadata.name, p) for p in pods_of(s))
    assert len(pods) == 2 and all(p.spec.node_name == s.node_name for p in pods.values())
    s.sh("echo hello > %s/%s/file" % (ROOT, a))
    since = now_rfc3339()

    # --check: the plan, as a table, and nothing else
    check = ok(s.decommission("--check"))
    table = "\n".join(check.result("Show the plan", "node2")["msg"])
    for pv in pvs:
        assert pv in table
    assert "StatefulSet/web" in table and "ReplicaSet/db-" in table
    assert check.tasks(EVICT, "node2") == [] or check.result(EVICT, "node2").get("skipped")
    assert not [e for e in audit_writes(lab, since) if e["objectRef"].get("namespace") == s.ns
                or e["objectRef"].get("name") in pvs]
    assert len(s.pvs()) == 3 and s.mounted(a)

    others_before = set(pv.metadata.name for pv in s.core.list_persistent_volume().items
                        if (pv.metadata.labels or {}).get("localpv.rollout/node") not in (None, s.node_name))
    res = ok(s.decommission())
    assert s.pvs() == []
    for name in (a, b, c):
        assert not s.mounted(name) and not s.fstab_has(name), (
            name, s.mounted(name), s.sh("grep %s /proc/mounts /etc/fstab" % s.tag, check=False).stdout,
            res.result(UNMOUNT, "node2"))
    # the run retires a selection of the node's PVs (decommission_label_selector): the node stays, and is
    # uncordoned once its pods have moved and the volumes are gone
    assert s.core.read_node(s.node_name).spec.unschedulable in (None, False)
    assert "uncordoned again" in res.result("Say what was retired", "node2")["msg"]

    events = audit_writes(lab, since)
    ours = [e for e in events if (e.get("userAgent") or "").startswith("localpv.rollout")]
    unmount_start, unmount_end = res.times(UNMOUNT, "node2")
    for claim, pv in claims.items():
        pod_name = "web-0" if claim == "data-web-0" else next(n for n in pods if n.startswith("db-"))
        evictions = [e for e in ours if e["objectRef"].get("subresource") == "eviction"
                     and e["objectRef"]["name"] == pod_name and e["responseStatus"]["code"] < 300]
        pvc_delete = [e for e in ours if e["verb"] == "delete" and e["objectRef"]["resource"] == "persistentvolumeclaims"
                      and ref_name(e) == "%s/%s" % (s.ns, claim)]
        pv_delete = [e for e in ours if e["verb"] == "delete" and e["objectRef"]["resource"] == "persistentvolumes"
                     and e["objectRef"]["name"] == pv]
        assert evictions and len(pvc_delete) == 1 and len(pv_delete) == 1, (claim, pv)
        # the node's own delete of the evicted pod (kwok plays the kubelet), when it made one
        kubelet_deletes = [e for e in events if e["verb"] == "delete" and e["objectRef"]["resource"] == "pods"
                           and not e["objectRef"].get("subresource") and e["objectRef"]["name"] == pod_name
                           and (e.get("userAgent") or "").startswith("kwok")
                           and e["stageTimestamp"] < pvc_delete[0]["stageTimestamp"]]
        # pods (evicted, then removed) < host unmount < claim delete < PV delete
        assert evictions[0]["stageTimestamp"] < unmount_start
        assert all(e["stageTimestamp"] < unmount_start for e in kubelet_deletes)
        assert unmount_end < pvc_delete[0]["stageTimestamp"] < pv_delete[0]["stageTimestamp"]
    # the PV nobody used is deleted after the unmount too
    (unused,) = set(pvs) - set(claims.values())
    assert [e["stageTimestamp"] > unmount_end for e in ours if e["verb"] == "delete"
            and e["objectRef"]["resource"] == "persistentvolumes" and e["objectRef"]["name"] == unused] == [True]

    # node1 and node3: no task ran there, and nothing of theirs was written by us
    for other in ("node1", "node3"):
        ran = set(t for t in res.ran_on(other) if not t.startswith("Validating arguments against arg spec"))
        assert ran <= {"Refuse unknown options and node names before any change",
                       "Work out which nodes this run retires", "Note whether this host is retired",
                       "Refuse to retire every node of the inventory by accident",
                       "Refuse to wipe without the run's key",
                       # run once, on the controller, for the whole run (reported under the play's first host)
                       "Check with the API server that every right is there and the nodes exist, before any host "
                       "step"}, res.ran_on(other)
    other_nodes = [n["node_name"] for n in lab.nodes if n["host"] != "node2"]
    assert not [e for e in events if e["objectRef"].get("resource") == "nodes"
                and e["objectRef"].get("name") in other_nodes
                and not (e.get("userAgent") or "").startswith(("kwok", "kube-"))]
    assert all(e["objectRef"].get("namespace") in (None, s.ns) for e in ours)
    # the modules say exactly what they deleted (the audit's user agent is shared with every other
    # localpv.rollout run on this lab, so other PVs are checked by name below)
    deleted = res.result(DELETE, "node2")
    assert sorted(deleted["pvs_deleted"]) == sorted(pvs)
    assert sorted(deleted["claims_deleted"]) == sorted("%s/%s" % (s.ns, c) for c in claims)
    assert not [e for e in ours if e["objectRef"]["resource"] == "persistentvolumes"
                and e["objectRef"]["name"] in others_before]

    # a second run has nothing left to do
    again = ok(s.decommission())
    assert again.stats["node2"]["changed"] == 0, again.ran_on("node2")


def test_retire_one_disk_while_the_other_volumes_stay_in_use(lab, scenario):
    s = scenario
    a, b = s.tag + "-a", s.tag + "-b"
    s.setup([bind(s, a), bind(s, b)])
    s.deployment("db", "db")
    s.claim("scratch")
    s.core.create_namespaced_pod(s.ns, client.V1Pod(metadata=client.V1ObjectMeta(name="scratch"),
                                                    spec=s.pod_spec("scratch")))
    claims = s.bound_claims(2)
    volume_of = dict(("local-%s-%s" % (s.node_name, n), n) for n in (a, b))
    retire, keep = volume_of[claims["scratch"]], volume_of[claims["db"]]
    since = now_rfc3339()
    ok(s.decommission(decommission_volumes=[retire], decommission_cordon=False))
    assert [p.metadata.name for p in s.pvs()] == [claims["db"]]
    assert s.mounted(keep) and s.fstab_has(keep) and not s.mounted(retire) and not s.fstab_has(retire)
    assert [p.metadata.name for p in pods_of(s)] != [] and "scratch" not in [p.metadata.name for p in pods_of(s)]
    # the Deployment's pod on the kept volume was not touched, and the node not cordoned
    ours = [e for e in audit_writes(lab, since) if (e.get("userAgent") or "").startswith("localpv.rollout")]
    assert not [e for e in ours if e["objectRef"]["resource"] == "pods" and e["objectRef"]["name"].startswith("db-")]
    assert not [e for e in ours if e["objectRef"].get("name") == "db"]
    assert s.core.read_node(s.node_name).spec.unschedulable in (None, False)
    assert [p.status.phase for p in pods_of(s) if p.metadata.name.startswith("db-")] == ["Running"]


def test_a_controller_that_puts_the_pod_back_onto_the_node_stops_the_run(lab, scenario):
    s = scenario
    a = s.tag + "-a"
    (pv,) = s.setup([bind(s, a)])
    s.statefulset("web")
    s.bound_claims(1)
    # not cordoned: the StatefulSet makes web-0 again at once and the scheduler puts it back
    res = s.decommission(decommission_cordon=False)
    assert res.returncode != 0
    msg = res.failed_msg("node2")
    assert "StatefulSet/web" in msg and "puts it back" in msg, msg
    assert res.tasks(UNMOUNT, "node2") == [] and res.tasks(DELETE, "node2") == []
    assert s.mounted(a) and [p.metadata.name for p in s.pvs()] == [pv]
    # cordoned (the default), the new web-0 waits unscheduled and the run finishes
    ok(s.decommission())
    assert s.pvs() == [] and not s.mounted(a)


def test_interrupted_after_the_pods_and_after_the_unmount_a_rerun_finishes(lab, scenario):
    s = scenario
    a = s.tag + "-a"
    (pv,) = s.setup([bind(s, a)])
    s.deployment("db", "db")
    s.bound_claims(1)
    ok(s.decommission(decommission_stop_after="pods"))
    assert [p for p in pods_of(s) if p.spec.node_name] == []
    assert s.mounted(a) and [p.metadata.name for p in s.pvs()] == [pv]

    second = ok(s.decommission(decommission_stop_after="unmount"))
    assert not second.result(EVICT, "node2").get("evicted")
    assert not s.mounted(a) and not s.fstab_has(a)
    assert [p.metadata.name for p in s.pvs()] == [pv]
    assert s.core.read_namespaced_persistent_volume_claim("db", s.ns).metadata.deletion_timestamp is None

    third = ok(s.decommission())
    for _task, result in third.tasks(UNMOUNT, "node2"):
        assert not result.get("changed")
    assert s.pvs() == []
    wait_until("claim db gone", lambda: not [c for c in s.core.list_namespaced_persistent_volume_claim(s.ns).items
                                             if c.metadata.name == "db" and c.status.phase == "Bound"])


def test_a_pdb_that_blocks_eviction_stops_the_run_before_the_host_and_the_claims(lab, scenario):
    s = scenario
    a = s.tag + "-a"
    (pv,) = s.setup([bind(s, a)])
    s.deployment("db", "db")
    s.pdb("db", 0)
    s.bound_claims(1)
    res = s.decommission(decommission_pod_timeout=3)
    assert res.returncode != 0
    msg = res.failed_msg("node2")
    assert "PodDisruptionBudget" in msg and "db-" in msg, msg
    assert res.tasks(UNMOUNT, "node2") == [] and res.tasks(DELETE, "node2") == []
    assert s.mounted(a) and [p.metadata.name for p in s.pvs()] == [pv]
    assert [p.status.phase for p in pods_of(s)] == ["Running"]
    # with the budget relaxed, the same command finishes
    s.policy.patch_namespaced_pod_disruption_budget("db", s.ns, {"spec": {"maxUnavailable": 1}})
    ok(s.decommission())
    assert s.pvs() == [] and not s.mounted(a)


def test_a_process_holding_the_volume_stops_the_run_before_the_claims(lab, scenario):
    s = scenario
    a = s.tag + "-a"
    (pv,) = s.setup([bind(s, a)])
    s.sh("mkdir -p %s/%s/work && cd %s/%s/work && (nohup sleep 600 >/dev/null 2>&1 &) " % (ROOT, a, ROOT, a))
    try:
        res = s.decommission()
        assert res.returncode != 0
        msg = res.failed_msg("node2")
        assert "sleep 600" in msg and "%s/%s" % (ROOT, a) in msg, msg
        assert s.mounted(a) and [p.metadata.name for p in s.pvs()] == [pv]
    finally:
        s.sh("pkill -f '^sleep 600$' || true")
    ok(s.decommission())
    assert s.pvs() == [] and not s.mounted(a)


def test_an_unreachable_host_stops_the_run_unless_told_to_skip_the_host_steps(lab, scenario):
    s = scenario
    a = s.tag + "-a"
    (pv,) = s.setup([bind(s, a)])
    s.deployment("db", "db")
    s.bound_claims(1)
    dead = {"ansible_port": 1, "ansible_ssh_common_args": "-o ConnectTimeout=3"}
    res = s.decommission(**dead)
    assert res.returncode != 0
    assert "unreachable" in res.failed_msg("node2") and "decommission_host_unreachable" in res.failed_msg("node2")
    assert [p.metadata.name for p in s.pvs()] == [pv] and [p.status.phase for p in pods_of(s)] == ["Running"]

    res = ok(s.decommission(decommission_host_unreachable=True, **dead))
    said = res.result("Say that the host steps are skipped", "node2")["msg"]
    assert "NOT" in said and "%s/%s" % (ROOT, a) in said
    assert s.pvs() == []
    # the host was never touched: the volume is still mounted there
    assert s.mounted(a) and s.fstab_has(a)


def test_a_pv_of_that_name_that_is_not_ours_stops_the_run(lab, kube, scenario):
    s = scenario
    name = s.tag + "-x"
    pv_name = "local-%s-%s" % (s.node_name, name)
    core = client.CoreV1Api(kube)
    core.create_persistent_volume(client.V1PersistentVolume(
        metadata=client.V1ObjectMeta(name=pv_name),
        spec=client.V1PersistentVolumeSpec(
            capacity={"storage": "1Gi"}, access_modes=["ReadWriteOnce"], storage_class_name="foreign-" + s.tag,
            local=client.V1LocalVolumeSource(path="/mnt/disks/" + name),
            node_affinity=client.V1VolumeNodeAffinity(required=client.V1NodeSelector(node_selector_terms=[
                client.V1NodeSelectorTerm(match_expressions=[client.V1NodeSelectorRequirement(
                    key="kubernetes.io/hostname", operator="In", values=[s.info["hostname_label"]])])])))))
    try:
        since = now_rfc3339()
        res = s.decommission(decommission_volumes=[name])
        assert res.returncode != 0
        assert "not managed by localpv.rollout" in res.failed_msg("node2") and pv_name in res.failed_msg("node2")
        assert core.read_persistent_volume(pv_name).metadata.deletion_timestamp is None
        assert not [e for e in audit_writes(lab, since) if (e.get("userAgent") or "").startswith("localpv.rollout")]
    finally:
        core.delete_persistent_volume(pv_name)


def test_wipe_needs_both_keys_and_leaves_the_disk_blank(lab, scenario):
    s = scenario
    disk = s.blank_disk()
    a, b = s.tag + "-1", s.tag + "-2"    # disk_prep names the two partitions' volumes <name>-1, <name>-2
    # ext4: two halves of the smallest lab disk are below xfs's 300 MiB minimum
    s.setup([{"name": s.tag, "device": disk, "partitions": 2, "fstype": "ext4"}])
    assert s.mounted(a) and s.mounted(b)
    s.sh("echo secret > %s/%s/file" % (ROOT, a))

    # one key only: refused before anything is done
    res = s.decommission(decommission_wipe=True)
    assert res.returncode != 0 and "localpv_allow_wipe" in res.failed_msg(s.host)
    assert len(s.pvs()) == 2 and s.mounted(a)

    ok(s.decommission(decommission_wipe=True, localpv_allow_wipe=True), s.host)
    assert s.pvs() == [] and not s.mounted(a) and not s.mounted(b)
    # both partitions were ours and retired: the disk is blank again, as disk_prep wants it
    assert s.sh("wipefs --noheadings %s" % disk).stdout.strip() == ""
    assert s.sh("head -c 1048576 %s | tr -d '\\0' | wc -c" % disk).stdout.strip() == "0"
