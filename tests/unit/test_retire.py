# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure logic of decommission and reclaim on the API side: the plan and which pods count."""

from ansible_collections.localpv.rollout.plugins.module_utils import retire
from ansible_collections.localpv.rollout.plugins.module_utils import volumes as v


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
    assert [p["name"] for p in retire.scheduled_pods(bound)] == ["web-0"]
    # a claim of that name made again (another uid) is not the PV's claim: its pods do not use this PV
    remade = entry("ssd0", claim="app/data-web-0", current="c2", pods=[pod("web-0")])
    assert retire.scheduled_pods(remade) == []


def test_the_plan_lists_our_pvs_with_their_pods_and_controllers_as_a_table():
    report = [entry("ssd0", claim="app/data-web-0", pods=[pod("web-0")]), entry("ssd1"),
              entry("ssd0", node="node1")]
    plan = retire.plan_decommission(report, [pv_object(e["name"]) for e in report], ["node2"], ["node2"])
    assert [e["name"] for e in plan["volumes"]] == ["local-node2-ssd0", "local-node2-ssd1"]
    assert plan["errors"] == [] and plan["foreign"] == []
    table = retire.plan_table(plan, ["node2"])
    assert table[0].split()[:3] == ["NODE", "VOLUME", "PV"]
    assert "app/web-0 (StatefulSet/web)" in table[1] and "app/data-web-0" in table[1]


def test_a_foreign_pv_in_the_way_of_a_volume_is_an_error_and_one_on_the_node_is_left_alone():
    foreign = pv_object("local-node2-ssd9", owned=False)
    plan = retire.plan_decommission([], [foreign], ["node2"], ["node2"], volumes=["ssd9"])
    assert plan["errors"] and "local-node2-ssd9" in plan["errors"][0] and "not managed" in plan["errors"][0]
    plan = retire.plan_decommission([], [pv_object("someone-elses", owned=False)], ["node2"], ["node2"])
    assert plan["errors"] == [] and [f["name"] for f in plan["foreign"]] == ["someone-elses"]


def test_a_volume_whose_pv_is_gone_is_reported_not_refused_so_a_rerun_finishes():
    plan = retire.plan_decommission([], [], ["node2"], ["node2"], volumes=["ssd1"])
    assert plan["errors"] == [] and plan["missing"] == [{"node": "node2", "volume": "ssd1",
                                                         "name": "local-node2-ssd1"}]
    assert "already retired" in "\n".join(retire.plan_table(plan, ["node2"]))


def test_reclaimable_means_released_with_the_claim_gone_for_good():
    assert retire.reclaimable(entry("a", claim="app/x", current=None, phase="Released"))
    assert retire.reclaimable(entry("a", claim="app/x", current="other", phase="Failed"))
    assert not retire.reclaimable(entry("a", claim="app/x", phase="Bound"))
    assert not retire.reclaimable(entry("a", phase="Available"))
