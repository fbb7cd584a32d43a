# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The API half of decommission and reclaim, without a cluster: the plan, which pods
count, and waiting with a deadline."""

import pytest

from ansible_collections.localpv.rollout.plugins.module_utils import volumes as v
from ansible_collections.localpv.rollout.plugins.module_utils import waiter
from ansible_collections.localpv.rollout.plugins.module_utils import workloads


def entry(volume, node="node2", claim=None, uid="c1", current="c1", pods=(), phase="Bound"):
    return {"name": v.pv_name(node, volume), "node": node, "volume": volume, "path": "/mnt/disks/" + volume,
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


def test_the_waiter_gives_up_at_the_deadline_naming_what_is_left():
    now = [0.0]
    seen = []
    wait = waiter.Waiter(timeout=3, interval=1, sleep=lambda s: now.__setitem__(0, now[0] + s),
                         clock=lambda: now[0], progress=lambda what, left, waited: seen.append(len(left)))
    with pytest.raises(waiter.WaitTimeout) as info:
        wait.until_done(lambda: ["pv-a"], "PVs deleted", lambda x: "PV " + x)
    assert "PVs deleted" in info.value.msg and "PV pv-a" in info.value.msg and info.value.left == ["pv-a"]
    assert wait.polls == 5 and seen == [1] * 5


def test_the_waiter_returns_as_soon_as_nothing_is_left():
    left = [["a", "b"], ["b"], []]
    wait = waiter.Waiter(timeout=60, interval=0, sleep=lambda s: None)
    wait.until_done(lambda: left.pop(0))
    assert wait.polls == 3


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
