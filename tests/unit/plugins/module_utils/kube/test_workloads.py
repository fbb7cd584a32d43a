# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The API half of decommission and reclaim, without a cluster: the plan, which pods
count and the order of the deletes."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import pytest

from ansible_collections.localpv.rollout.plugins.module_utils.common.errors import KubeError

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming
from ansible_collections.localpv.rollout.plugins.module_utils.common import waiter
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v
from ansible_collections.localpv.rollout.plugins.module_utils.kube import workloads


def entry(volume, node="node2", claim=None, uid="c1", current="c1", pods=(), phase="Bound"):
    return {"name": naming.pv_name(node, volume), "node": node, "volume": volume, "path": "/mnt/disks/" + volume,
            "volume_mode": "Filesystem", "phase": phase, "claim": claim, "claim_uid": uid if claim else None,
            "claim_current_uid": current if claim else None, "pods": list(pods), "deleting": False}


def pod(name, node="node2", controller="StatefulSet/web"):
    return {"namespace": "app", "name": name, "node": node, "phase": "Running", "uid": "u-" + name,
            "controller": controller}


def pv_object(name, owned=True, hostname="node2"):
    labels = {v.MANAGED_BY_LABEL: v.MANAGED_BY_VALUE} if owned else {}
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"local": {"path": "/x"}, "nodeAffinity": v.node_affinity(hostname)}}


def test_only_scheduled_pods_of_the_pvs_own_claim_count():
    bound = entry("ssd0", claim="app/data-web-0", pods=[pod("web-0"), pod("waiting", node=None)])
    assert [p["name"] for p in workloads.scheduled_pods(bound)] == ["web-0"]
    # a claim of that name made again (another uid) is not the PV's claim: its pods do not use this PV
    remade = entry("ssd0", claim="app/data-web-0", current="c2", pods=[pod("web-0")])
    assert workloads.scheduled_pods(remade) == []


def test_the_plan_lists_our_pvs_with_their_pods_and_controllers_as_a_table():
    report = [entry("ssd0", claim="app/data-web-0", pods=[pod("web-0")]), entry("ssd1"),
              entry("ssd0", node="node1")]
    plan = workloads.plan_decommission(report, [pv_object(e["name"]) for e in report], ["node2"], ["node2"])
    assert [e["name"] for e in plan["volumes"]] == ["local-node2-ssd0", "local-node2-ssd1"]
    assert plan["errors"] == [] and plan["foreign"] == []
    table = workloads.plan_table(plan, ["node2"])
    assert table[0].split()[:3] == ["NODE", "VOLUME", "PV"]
    assert "app/web-0 (StatefulSet/web)" in table[1] and "app/data-web-0" in table[1]


def test_a_foreign_pv_in_the_way_of_a_volume_is_an_error_and_one_on_the_node_is_left_alone():
    foreign = pv_object("local-node2-ssd9", owned=False)
    plan = workloads.plan_decommission([], [foreign], ["node2"], ["node2"], volumes=["ssd9"])
    assert plan["errors"] and "local-node2-ssd9" in plan["errors"][0] and "not managed" in plan["errors"][0]
    plan = workloads.plan_decommission([], [pv_object("someone-elses", owned=False)], ["node2"], ["node2"])
    assert plan["errors"] == [] and [f["name"] for f in plan["foreign"]] == ["someone-elses"]


def test_a_volume_whose_pv_is_gone_is_reported_not_refused_so_a_rerun_finishes():
    plan = workloads.plan_decommission([], [], ["node2"], ["node2"], volumes=["ssd1"])
    assert plan["errors"] == [] and plan["missing"] == [{"node": "node2", "volume": "ssd1",
                                                         "name": "local-node2-ssd1"}]
    assert "already retired" in "\n".join(workloads.plan_table(plan, ["node2"]))


def test_pods_are_matched_to_the_claims_they_mount():
    pods = [{"metadata": {"namespace": "app", "name": "web-0", "uid": "u1",
                          "ownerReferences": [{"kind": "StatefulSet", "name": "web", "controller": True}]},
             "spec": {"nodeName": "node2", "volumes": [
                 {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}, {"name": "tmp", "emptyDir": {}}]},
             "status": {"phase": "Running"}}]
    got = workloads.pods_by_claim(pods)
    assert list(got) == ["app/data"]
    assert got["app/data"][0]["controller"] == "StatefulSet/web" and got["app/data"][0]["node"] == "node2"


def test_a_reservation_holds_only_for_the_pv_and_claim_seen_at_the_listing():
    item = dict(entry("ssd0", claim="app/data", uid="claim-1", phase="Released"), uid="pv-1", resource_version="42")
    patch = workloads.reserve_patch(item, "res-1")
    tests = [(op["path"], op["value"]) for op in patch if op["op"] == "test"]
    assert tests == [("/metadata/uid", "pv-1"), ("/metadata/resourceVersion", "42"), ("/spec/claimRef/uid", "claim-1")]
    # the tests come before the one change, so the API server applies all or nothing
    assert [op["op"] for op in patch] == ["test", "test", "test", "replace"]
    ref = patch[-1]["value"]
    assert ref["uid"] == "res-1" and ref["namespace"] == workloads.RESERVATION_NAMESPACE and ref["name"] == item["name"]
    assert workloads.is_reserved({"spec": {"claimRef": ref}}, "res-1")
    assert not workloads.is_reserved({"spec": {"claimRef": ref}}, "res-2")
    assert not workloads.is_reserved({"spec": {"claimRef": dict(ref, namespace="app")}}, "res-1")
    assert not workloads.is_reserved({"spec": {}}, "res-1")


def test_a_refused_release_says_what_was_already_wiped():
    class OneClaimStillThere:
        def get_pv(self, name):
            return {"metadata": {"name": name, "labels": {v.MANAGED_BY_LABEL: v.MANAGED_BY_VALUE}},
                    "spec": {"claimRef": {"namespace": "app", "name": "new", "uid": "tenant"}}}

        def get_pvc(self, namespace, name):
            return {"metadata": {"uid": "tenant"}}

    with pytest.raises(workloads.RetireStop) as stop:
        workloads.release_pvs(OneClaimStillThere(), [{"name": "local-node2-a", "claim_uid": "res-1",
                                                      "wiped": "/mnt/disks/a: 2 entries were removed (files)"}],
                              {"released": [], "already": []})
    assert stop.value.msg == ("PV local-node2-a is still bound: its claim app/new exists. Its volume was already wiped "
                              "by this run (/mnt/disks/a: 2 entries were removed (files))")


class ReleaseApi(object):
    """PV ``-b``'s claim is back (a tenant bound it), the others are reserved by
    ``res-1``; a PV named in ``failing`` answers 500."""

    def __init__(self, failing=()):
        self.failing = failing
        self.patched = []

    def get_pv(self, name):
        if name in self.failing:
            raise KubeError("the API server answered 500 Internal Server Error", status=500)
        ref = {"namespace": "app", "name": "new", "uid": "tenant"} if name.endswith("-b") else \
            {"namespace": workloads.RESERVATION_NAMESPACE, "name": name, "uid": "res-1"}
        return {"metadata": {"name": name, "labels": {v.MANAGED_BY_LABEL: v.MANAGED_BY_VALUE}},
                "spec": {"claimRef": ref}}

    def get_pvc(self, namespace, name):
        return {"metadata": {"uid": "tenant"}} if namespace == "app" else None

    def patch_pv(self, name, patch, json_patch=False):
        self.patched.append(name)


def test_a_refused_release_does_not_stop_the_others_and_the_message_says_all():
    items = [{"name": "local-node2-%s" % n, "claim_uid": "res-1", "wiped": "/mnt/disks/%s: 1 entries were removed "
              "(files)" % n} for n in "abc"]
    kube = ReleaseApi()
    with pytest.raises(workloads.RetireStop) as stop:
        workloads.release_pvs(kube, items, {"released": [], "already": []})
    assert kube.patched == ["local-node2-a", "local-node2-c"]
    assert stop.value.code == "bound" and stop.value.state["released"] == ["local-node2-a", "local-node2-c"]
    assert stop.value.msg == ("PV local-node2-b is still bound: its claim app/new exists. Its volume was already "
                              "wiped by this run (/mnt/disks/b: 1 entries were removed (files)). Wiped and released "
                              "(Available again): local-node2-a, local-node2-c")


def test_an_api_error_mid_release_names_the_refusals_before_it_the_released_and_the_untried():
    items = [{"name": "local-node2-%s" % n, "claim_uid": "res-1", "wiped": "/mnt/disks/%s: erased" % n}
             for n in "abcd"]
    result = {"released": [], "already": []}
    with pytest.raises(KubeError) as err:
        workloads.release_pvs(ReleaseApi(failing=("local-node2-c",)), items, result)
    assert not isinstance(err.value, workloads.RetireStop) and err.value.status == 500
    assert result["released"] == ["local-node2-a"]
    assert err.value.msg == (
        "the API server answered 500 Internal Server Error, while releasing PV local-node2-c. "
        "PV local-node2-b is still bound: its claim app/new exists. Its volume was already wiped by this run "
        "(/mnt/disks/b: erased). Wiped and released (Available again): local-node2-a. Not released yet (run the "
        "same command again once the API server answers): local-node2-c (already wiped), local-node2-d "
        "(already wiped)")


# --- a cordon that does not hold, and pods that never start --------------------------

def test_a_pod_tolerating_the_cordon_taint_or_every_taint_is_seen_and_others_are_not():
    assert workloads.tolerates_cordon({"tolerations": [{"operator": "Exists"}]})
    assert workloads.tolerates_cordon({"tolerations": [{"key": "node.kubernetes.io/unschedulable",
                                                        "operator": "Exists", "effect": "NoSchedule"}]})
    assert workloads.tolerates_cordon({"tolerations": [{"key": "node.kubernetes.io/unschedulable"}]})
    # NoExecute-only and other keys leave the cordon in force
    assert not workloads.tolerates_cordon({"tolerations": [{"operator": "Exists", "effect": "NoExecute"}]})
    assert not workloads.tolerates_cordon({"tolerations": [{"key": "node.kubernetes.io/not-ready",
                                                            "operator": "Exists"}]})
    assert not workloads.tolerates_cordon({"tolerations": [{"key": "node.kubernetes.io/unschedulable",
                                                            "operator": "Equal", "value": "x"}]})
    assert not workloads.tolerates_cordon({})


def test_the_plan_names_controller_pods_a_cordon_does_not_hold_and_the_refusal_says_what_to_do():
    tolerant = dict(pod("web-0"), tolerates_cordon=True)
    bare = dict(pod("debug", controller=None), tolerates_cordon=True)
    report = [entry("ssd0", claim="app/data-web-0", pods=[tolerant]),
              entry("ssd1", claim="app/scratch", uid="c2", current="c2", pods=[bare])]
    plan = workloads.plan_decommission(report, [pv_object(e["name"]) for e in report], ["node2"], ["node2"])
    assert [e["cordon_tolerated"] for e in plan["volumes"]] == [["app/web-0 (StatefulSet/web)"], []]
    msg = workloads.tolerated_stop_message(plan, "node2")
    assert "app/web-0 (StatefulSet/web) on PV local-node2-ssd0" in msg and "node.kubernetes.io/unschedulable" in msg
    assert "Nothing was evicted" in msg and "Scale the controller down" in msg and "debug" not in msg
    quiet = workloads.plan_decommission([entry("ssd0", claim="app/data-web-0", pods=[pod("web-0")])],
                                        [pv_object("local-node2-ssd0")], ["node2"], ["node2"])
    assert workloads.tolerated_stop_message(quiet, "node2") is None


def test_stuck_pods_are_controller_pods_waiting_unscheduled_or_pods_of_a_node_that_is_gone():
    waiting = pod("web-0", node=None)
    bare_waiting = pod("debug", node=None, controller=None)
    on_gone = pod("web-1", node="node2", controller=None)
    on_live = pod("web-2", node="node1")
    pods = [waiting, bare_waiting, on_gone, on_live]
    assert [p["name"] for p in workloads.stuck_pods(pods, None)] == ["web-0"]
    assert [p["name"] for p in workloads.stuck_pods(pods, {"node1"})] == ["web-0", "web-1"]
    live, stuck = workloads.split_stuck([on_gone, on_live], {"node1"})
    assert [p["name"] for p in live] == ["web-2"] and [p["name"] for p in stuck] == ["web-1"]


def test_a_node_is_uncordoned_by_a_run_only_when_our_annotation_says_the_cordon_is_ours():
    ours = {"metadata": {"annotations": {workloads.CORDON_ANNOTATION: "decommission"}},
            "spec": {"unschedulable": True}}
    assert workloads.cordoned_by_decommission(ours)
    assert not workloads.cordoned_by_decommission({"metadata": {}, "spec": {"unschedulable": True}})
    assert not workloads.cordoned_by_decommission({"metadata": ours["metadata"], "spec": {}})
    assert not workloads.cordoned_by_decommission(None)


class FakeKube:
    """Only the calls delete_claims_and_pvs makes, answered from dicts; writes are recorded in order."""

    dry_run = False

    def __init__(self, pvs, pvcs, pods, nodes):
        self.pvs, self.pvcs, self.pods, self.nodes = pvs, pvcs, pods, nodes
        self.writes = []

    def get_pv(self, name):
        return self.pvs.get(name)

    def get_pvc(self, ns, name):
        return self.pvcs.get((ns, name))

    def list_pods(self, ns):
        return [p for p in self.pods if p["metadata"]["namespace"] == ns]

    def list_nodes(self):
        return [{"metadata": {"name": n}} for n in self.nodes]

    def delete_pvc(self, ns, name, uid=None):
        self.writes.append(("delete pvc", name, uid))
        self.pvcs.pop((ns, name), None)

    def delete_pod(self, ns, name, uid=None, grace_period=None):
        self.writes.append(("delete pod", name, uid, grace_period))
        self.pods = [p for p in self.pods if p["metadata"]["uid"] != uid]

    def delete_pv(self, name, uid=None):
        self.writes.append(("delete pv", name, uid))
        self.pvs.pop(name, None)


def pod_object(name, claim, node=None, uid=None, controller=True):
    meta = {"namespace": "app", "name": name, "uid": uid or "u-" + name}
    if controller:
        meta["ownerReferences"] = [{"kind": "StatefulSet", "name": "web", "controller": True}]
    return {"metadata": meta, "spec": {"nodeName": node, "volumes": [
        {"name": "d", "persistentVolumeClaim": {"claimName": claim}}]}, "status": {"phase": "Pending"}}


def bound_pv(name, claim, claim_uid):
    pv = pv_object(name)
    pv["metadata"]["uid"] = "pv-" + name
    pv["spec"]["claimRef"] = {"namespace": "app", "name": claim, "uid": claim_uid}
    return pv


def test_a_dead_nodes_claim_is_deleted_then_its_stuck_pod_then_the_pv_and_a_fresh_claims_pod_is_never_touched():
    pvs = {"local-node2-ssd0": bound_pv("local-node2-ssd0", "data-web-0", "c1")}
    pvcs = {("app", "data-web-0"): {"metadata": {"name": "data-web-0", "uid": "c1"}},
            ("app", "data-web-1"): {"metadata": {"name": "data-web-1", "uid": "c9"}}}
    # web-0 is still bound to the deleted Node; web-1 is a fresh replica waiting to be scheduled (#405)
    pods = [pod_object("web-0", "data-web-0", node="node2"), pod_object("web-1", "data-web-1")]
    kube = FakeKube(pvs, pvcs, pods, nodes=["node1", "node3"])
    result = workloads.delete_claims_and_pvs(kube, ["local-node2-ssd0"], timeout=1, sleep=lambda s: None,
                                             dead_node=True)
    assert kube.writes == [("delete pvc", "data-web-0", "c1"), ("delete pod", "web-0", "u-web-0", 0),
                           ("delete pv", "local-node2-ssd0", "pv-local-node2-ssd0")]
    assert result["pods_deleted"] == ["app/web-0"] and result["claims_deleted"] == ["app/data-web-0"]


def test_without_a_dead_node_a_pod_bound_to_a_missing_node_still_stops_the_deletes():
    pvs = {"local-node2-ssd0": bound_pv("local-node2-ssd0", "data-web-0", "c1")}
    pvcs = {("app", "data-web-0"): {"metadata": {"name": "data-web-0", "uid": "c1"}}}
    kube = FakeKube(pvs, pvcs, [pod_object("web-0", "data-web-0", node="node2")], nodes=["node1"])
    with pytest.raises(workloads.RetireStop) as info:
        workloads.delete_claims_and_pvs(kube, ["local-node2-ssd0"], timeout=1, sleep=lambda s: None)
    assert info.value.code == "in_use" and kube.writes == []


def test_a_live_nodes_statefulset_pod_waiting_for_a_deleted_claim_is_deleted_after_the_claim():
    pvs = {"local-node2-ssd0": bound_pv("local-node2-ssd0", "data-web-0", "c1")}
    pvcs = {("app", "data-web-0"): {"metadata": {"name": "data-web-0", "uid": "c1"}}}
    pods = [pod_object("web-0", "data-web-0"), pod_object("debug", "data-web-0", controller=False)]
    kube = FakeKube(pvs, pvcs, pods, nodes=["node2"])
    result = workloads.delete_claims_and_pvs(kube, ["local-node2-ssd0"], timeout=1, sleep=lambda s: None)
    assert [w[:2] for w in kube.writes] == [("delete pvc", "data-web-0"), ("delete pod", "web-0"),
                                            ("delete pv", "local-node2-ssd0")]
    # a bare pod is the user's own: it is left, it starts with nothing
    assert result["pods_deleted"] == ["app/web-0"]


class PVsGoing:
    """get_pv answered from a script: each call pops the next answer for that name."""

    def __init__(self, answers):
        self.answers = answers
        self.asked = []

    def get_pv(self, name):
        self.asked.append(name)
        script = self.answers[name]
        return script.pop(0) if len(script) > 1 else script[0]


def pv_with(name, uid, finalizers=()):
    return {"metadata": {"name": name, "uid": uid, "finalizers": list(finalizers)}}


def test_the_pv_gone_wait_returns_once_the_deleted_pv_is_gone_or_made_again_under_its_name():
    kube = PVsGoing({"local-node1-ssd0": [pv_with("local-node1-ssd0", "u1", ["kubernetes.io/pv-protection"]), None],
                     "local-node1-ssd1": [pv_with("local-node1-ssd1", "u-new")]})
    workloads.wait_pvs_gone(kube, [{"name": "local-node1-ssd0", "uid": "u1"}, {"name": "local-node1-ssd1", "uid": "u2"}],
                            sleep=lambda s: None)
    # ssd1 was made again (another uid): not the PV deleted, so it is not waited for
    assert kube.asked == ["local-node1-ssd0", "local-node1-ssd1", "local-node1-ssd0", "local-node1-ssd1"]


def test_the_pv_gone_wait_gives_up_at_the_deadline_naming_each_pv_and_its_finalizers():
    now = [0.0]
    kube = PVsGoing({"local-node1-ssd0": [pv_with("local-node1-ssd0", "u1", ["kubernetes.io/pv-protection"])]})
    with pytest.raises(waiter.WaitTimeout) as info:
        workloads.wait_pvs_gone(kube, [{"name": "local-node1-ssd0", "uid": "u1"}], timeout=3, interval=1,
                                sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    assert info.value.msg == "PVs deleted: still there 3s later: PV local-node1-ssd0 (finalizers: " \
        "kubernetes.io/pv-protection)"


def test_decommission_stops_naming_a_deleted_pv_that_stays_with_its_finalizers():
    pvs = {"local-node2-ssd0": bound_pv("local-node2-ssd0", "data-web-0", "c1")}
    pvs["local-node2-ssd0"]["metadata"]["finalizers"] = ["kubernetes.io/pv-protection"]
    kube = FakeKube(pvs, {}, [], nodes=["node2"])
    kube.delete_pv = lambda name, uid=None: kube.writes.append(("delete pv", name, uid))   # it stays
    with pytest.raises(workloads.RetireStop) as info:
        workloads.delete_claims_and_pvs(kube, ["local-node2-ssd0"], timeout=0, sleep=lambda s: None)
    assert info.value.code == "stuck" and info.value.state["pvs_deleted"] == ["local-node2-ssd0"]
    assert "PV local-node2-ssd0 (finalizers: kubernetes.io/pv-protection)" in info.value.msg
