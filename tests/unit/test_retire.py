# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure logic of decommission and reclaim: the plan, which pods count, what a
wipe erases, and finding the processes that hold a volume (on this machine's /proc)."""

import os
import subprocess
import time

import pytest

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


def disk(name, parts, system=()):
    return {"name": name, "path": "/dev/" + name, "system_mounts": list(system), "signatures": [{"type": "gpt"}],
            "partition_table": [{"number": i + 1, "name": p[0]} for i, p in enumerate(parts)],
            "partitions": [{"name": "%sp%d" % (name, i + 1), "path": "/dev/%sp%d" % (name, i + 1), "partlabel": p[0],
                            "mounts": [{"mount_point": p[1]}] if p[1] else [], "holders": [], "swap": False,
                            "signatures": [{"type": "xfs"}]} for i, p in enumerate(parts)]}


def test_the_partition_table_is_erased_only_when_every_partition_of_the_disk_is_retired():
    disks = [disk("loop4", [("localpv-a-1", None), ("localpv-a-2", None)]),
             disk("loop5", [("localpv-b", None), ("localpv-keep", "/mnt/disks/keep")])]
    items, refused = retire.plan_partition_wipe(disks, ["a-1", "a-2", "b"])
    assert refused == []
    assert [(i["device"], bool(i.get("table"))) for i in items] == [
        ("/dev/loop4p1", False), ("/dev/loop4p2", False), ("/dev/loop4", True), ("/dev/loop5p1", False)]


def test_a_mounted_partition_is_refused():
    items, refused = retire.plan_partition_wipe([disk("loop4", [("localpv-a", "/mnt/disks/a")])], ["a"])
    assert items == [] and "mounted at /mnt/disks/a" in refused[0]["reason"]


def test_a_process_with_its_cwd_in_the_volume_holds_it(tmp_path):
    inside = tmp_path / "vol" / "work"
    inside.mkdir(parents=True)
    proc = subprocess.Popen(["sleep", "30"], cwd=str(inside))
    try:
        deadline = time.time() + 10
        found = []
        while time.time() < deadline and not found:
            found = [h for h in retire.holders([str(tmp_path / "vol")]) if h["pid"] == proc.pid]
        assert found and found[0]["how"] == "cwd" and found[0]["command"] == "sleep 30"
        assert not [h for h in retire.holders([str(tmp_path / "other")]) if h["pid"] == proc.pid]
    finally:
        proc.kill()
        proc.wait()


def test_an_open_file_holds_the_volume(tmp_path):
    with open(str(tmp_path / "data"), "w"):
        mine = [h for h in retire.holders([str(tmp_path)], self_pid=-1) if h["pid"] == os.getpid()]
    assert mine and mine[0]["how"] == "fd"


def test_wiping_a_path_that_is_not_a_mount_is_refused(tmp_path):
    (tmp_path / "file").write_text("data")
    with pytest.raises(retire.RetireError) as err:
        retire.wipe_contents({"path": str(tmp_path), "mode": "filesystem"}, "files", run=None)
    assert err.value.code == "not_mounted"
    assert (tmp_path / "file").exists()


def test_remove_contents_keeps_the_mount_point_and_lost_and_found(tmp_path):
    (tmp_path / "lost+found").mkdir()
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "sub" / "f").write_text("x")
    (tmp_path / "top").write_text("y")
    assert retire.remove_contents(str(tmp_path)) == 2
    assert sorted(os.listdir(str(tmp_path))) == ["lost+found"]


def test_volume_state_reads_mount_fstab_and_other_mounts():
    mounts = [{"dev": "7:1", "root": "/", "mount_point": "/mnt/disks/a", "fstype": "xfs", "source": "/dev/loop1p1",
               "options": "rw"},
              {"dev": "7:1", "root": "/", "mount_point": "/var/lib/kubelet/pods/x/volumes/a", "fstype": "xfs",
               "source": "/dev/loop1p1", "options": "rw"}]
    fstab = [{"src": "UUID=1", "path": "/mnt/disks/a", "fstype": "xfs", "opts": "defaults", "line": 0}]
    state = retire.volume_state("/mnt/disks/a", mounts=mounts, fstab=fstab)
    assert state["mounted"] and state["mount"]["source"] == "/dev/loop1p1"
    assert state["fstab"][0]["src"] == "UUID=1"
    assert state["other_mounts"] == ["/var/lib/kubelet/pods/x/volumes/a"]
