# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the preflight finds from the inventory and one LIST of PVs before any host
step, and what a host proves about itself (its machine id, the directories of its
volumes), without a cluster: the Nodes and PVs are plain dicts as the API server
returns them."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import os

import pytest

from ansible_collections.localpv.rollout.plugins.module_utils.kube import preflight as pf
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v

from pv_builders import provisioner_pv, vol

MID = "3f1c9a2be0d84c67a5e1f0b2c4d6e8f0"


class ListsOnly:
    """The two LISTs the preflight may send, and a count of them."""

    def __init__(self, nodes=(), pvs=()):
        self.nodes, self.pvs, self.lists = list(nodes), list(pvs), []

    def list_nodes(self):
        self.lists.append("nodes")
        return self.nodes

    def scan_pvs(self, add, start=None, label_selector=None, limit=None):
        self.lists.append("persistentvolumes")
        if start:
            start()
        for pv in self.pvs:
            add(pv)


def node(name, label=None, machine_id=MID):
    return {"metadata": {"name": name, "labels": {v.HOSTNAME_LABEL: label or name}},
            "status": {"nodeInfo": {"machineID": machine_id, "systemUUID": ""}}}


def host(name, node_name=None, disks=None, in_play=True):
    return {"host": name, "node": node_name or name, "in_play": in_play, "mount_root": "/mnt/disks",
            "disks": [{"name": "ssd0", "device": "/dev/sdb"}] if disks is None else disks}


def ours(node_name="node1", name="ssd0", hostname=None, claim=None):
    volume = vol(node=node_name, name=name)
    pv = v.pv_manifest(volume, hostname or node_name)
    pv["metadata"].update(uid="u-" + volume["pv_name"], resourceVersion="5")
    pv["spec"]["capacity"]["storage"] = "10Gi"
    if claim:
        pv["spec"]["claimRef"] = {"namespace": "app", "name": claim}
    return pv


def test_the_inventory_names_its_volumes_and_their_canonical_paths_before_any_disk_is_read():
    disks = [{"name": "ssd0", "device": "/dev/sdb"}, {"name": "data", "device": "/dev/sdc", "partitions": 2},
             {"match": {"rotational": False}, "name_prefix": "nvme"}, {"name": "vol1", "bind": "/data/vol1"}]
    assert pf.planned_volumes(disks, "/mnt/disks//") == [
        ("ssd0", "/mnt/disks/ssd0"), ("data-1", "/mnt/disks/data-1"), ("data-2", "/mnt/disks/data-2"),
        ("vol1", "/mnt/disks/vol1")]


def test_two_inventory_hosts_naming_one_node_are_refused_naming_both_even_when_one_is_left_out():
    kube = ListsOnly([node("node1")])
    found = pf.inventory_preflight(kube, [host("node1"), host("node1-copy", "node1", in_play=False)])
    (problem,) = found["problems"]
    assert "node1 and node1-copy" in problem and "Kubernetes node node1" in problem
    assert "Nothing was changed" in problem


def test_the_controller_side_reads_one_list_of_nodes_and_one_of_pvs():
    kube = ListsOnly([node("node1")], [ours()])
    pf.inventory_preflight(kube, [host("node1")])
    assert sorted(kube.lists) == ["nodes", "persistentvolumes"]


@pytest.mark.parametrize("spelling", ["/mnt/disks/ssd0", "/mnt/disks/ssd0/", "/mnt/disks/./ssd0", "/mnt/disks//ssd0"])
def test_a_foreign_pv_at_any_spelling_of_our_path_is_found_before_the_host_steps(spelling):
    kube = ListsOnly([node("node1")], [provisioner_pv(path=spelling)])
    (problem,) = pf.inventory_preflight(kube, [host("node1")])["problems"]
    assert "local-pv-5a1c2e7b" in problem and "take_over" in problem
    assert pf.inventory_preflight(ListsOnly([node("node1")], [provisioner_pv(path=spelling)]), [host("node1")],
                                  take_over=True)["problems"] == []


def test_a_pv_holding_our_pv_name_at_another_path_is_found_before_the_host_steps():
    other = provisioner_pv(name="local-node1-ssd0", path="/srv/elsewhere")
    (problem,) = pf.inventory_preflight(ListsOnly([node("node1")], [other]), [host("node1")])["problems"]
    assert "would be PV local-node1-ssd0" in problem


def test_our_own_pv_at_its_place_is_no_conflict():
    assert pf.inventory_preflight(ListsOnly([node("node1")], [ours()]), [host("node1")])["problems"] == []


def test_a_relabelled_node_is_found_before_the_host_steps_naming_both_values():
    kube = ListsOnly([node("node1", label="node1-new")], [ours(hostname="node1")])
    (problem,) = pf.inventory_preflight(kube, [host("node1")])["problems"]
    assert "node node1 now has the kubernetes.io/hostname label node1-new" in problem
    assert "pinned to node1" in problem and "pv_register_hostname_labels" in problem
    kept = pf.inventory_preflight(ListsOnly([node("node1", label="node1-new")], [ours(hostname="node1")]),
                                  [host("node1")], hostname_overrides={"node1": "node1"})
    assert kept["problems"] == []


def test_an_empty_volume_list_for_a_host_with_our_pvs_is_refused_unless_meant():
    def run(**kw):
        return pf.inventory_preflight(ListsOnly([node("node1")], [ours(), ours(name="ssd1")]),
                                      [host("node1", disks=[])], **kw)["problems"]
    (problem,) = run()
    assert "host node1 (node node1) has no localpv_disks" in problem and "localpv_prune_empty: true" in problem
    assert "local-node1-ssd0" in problem and "local-node1-ssd1" in problem
    assert run(prune_empty=True) == [] and run(prune=False) == []


def test_a_host_without_pvs_may_have_no_volumes():
    assert pf.inventory_preflight(ListsOnly([node("node1")]), [host("node1", disks=[])])["problems"] == []


def test_the_node_facts_are_returned_for_each_node_of_the_play():
    found = pf.inventory_preflight(ListsOnly([node("node3.lab", label="node3")]), [host("node3", "node3.lab")])
    assert found["nodes"]["node3.lab"] == {"exists": True, "machine_id": MID, "system_uuid": "", "hostname": "node3",
                                           "volume_paths": ["/mnt/disks/ssd0"]}
    found = pf.inventory_preflight(ListsOnly([]), [host("node9")])
    assert found["nodes"]["node9"]["exists"] is False and found["problems"] == []


def test_foreign_pvs_of_the_node_at_other_paths_go_to_the_host_to_be_resolved():
    pvs = [provisioner_pv(name="elsewhere", path="/mnt/fast/ssd0"),
           provisioner_pv(name="other-node", hostname="node2", path="/mnt/fast/x"), ours()]
    found = pf.inventory_preflight(ListsOnly([node("node1"), node("node2")], pvs), [host("node1")])
    assert found["other_paths"] == {"node1": [{"name": "elsewhere", "path": "/mnt/fast/ssd0", "hostname": "node1"}]}


# --- on the host ---------------------------------------------------------------------

def test_a_host_whose_machine_id_is_its_nodes_is_proven():
    cluster = {"exists": True, "machine_id": MID, "system_uuid": ""}
    assert pf.host_identity_problems("node1", "node1", cluster, MID + "\n", "") == ([], [])


def test_a_host_whose_machine_id_is_another_is_refused_with_both_values():
    cluster = {"exists": True, "machine_id": MID, "system_uuid": ""}
    problems, _notes = pf.host_identity_problems("node1", "node2", cluster, "0" * 32, "")
    assert len(problems) == 1 and MID in problems[0] and "0" * 32 in problems[0]
    assert "host node1 is not Node node2" in problems[0] and "localpv_node_name" in problems[0]


def test_the_product_uuid_proves_a_host_whose_node_reports_no_machine_id():
    cluster = {"exists": True, "machine_id": "", "system_uuid": "4C4C4544-0042-3510-8048-B4C04F4E3732"}
    assert pf.host_identity_problems("h", "n", cluster, MID, "4c4c4544-0042-3510-8048-b4c04f4e3732") == ([], [])
    problems, _notes = pf.host_identity_problems("h", "n", cluster, MID, "4c4c4544-0000-0000-0000-000000000000")
    assert problems and "systemUUID" in problems[0]


def test_a_node_not_joined_yet_is_allowed_and_said():
    problems, notes = pf.host_identity_problems("node7", "node7", {"exists": False}, MID, "")
    assert problems == [] and "not a Node of the cluster yet" in notes[0]


def test_a_node_with_no_ids_to_compare_is_allowed_and_said():
    problems, notes = pf.host_identity_problems("node7", "node7", {"exists": True, "machine_id": ""}, MID, "")
    assert problems == [] and "cannot be proven" in notes[0]


def test_a_foreign_pv_whose_path_is_a_symlink_to_our_volume_is_the_same_directory(tmp_path):
    ours_dir = tmp_path / "disks" / "ssd0"
    ours_dir.mkdir(parents=True)
    (tmp_path / "fast").mkdir()
    (tmp_path / "fast" / "ssd0").symlink_to(ours_dir)
    (tmp_path / "fast" / "other").mkdir()
    others = [{"name": "linked", "path": str(tmp_path / "fast" / "ssd0")},
              {"name": "apart", "path": str(tmp_path / "fast" / "other")}]
    (problem,) = pf.same_directory_problems("node1", [str(ours_dir)], others, os.path.realpath)
    assert problem.startswith("PV linked ") and str(ours_dir) in problem


def test_the_host_reads_its_machine_id_and_product_uuid(tmp_path):
    (tmp_path / "machine-id").write_text(MID + "\n")
    assert pf.read_host_ids([str(tmp_path / "absent"), str(tmp_path / "machine-id")],
                            str(tmp_path / "no-dmi")) == (MID, "")
