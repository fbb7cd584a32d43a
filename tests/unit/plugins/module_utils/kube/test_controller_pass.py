# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's side of a site run in as few requests as it can: StorageClasses read
once, the report made from local_pv's own LIST (read again only after writes), the
records of the PVs taken from the preflight's LIST. Against an in-memory API server
that counts every request."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import copy
import threading

from ansible_collections.localpv.rollout.plugins.module_utils.common.errors import KubeError
from ansible_collections.localpv.rollout.plugins.module_utils.kube import persistent_volumes as pvs
from ansible_collections.localpv.rollout.plugins.module_utils.kube import preflight as pf
from ansible_collections.localpv.rollout.plugins.module_utils.kube import storage_classes as sc
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v
from ansible_collections.localpv.rollout.plugins.module_utils.kube import workloads

from pv_builders import server_copy, vol


def node(name):
    return {"metadata": {"name": name, "labels": {v.HOSTNAME_LABEL: name}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"machineID": "m"}}}


class Server:
    """PVs, Nodes and StorageClasses in memory, with a count of requests by (verb,
    resource). A PV created is Pending until ``pending_reads`` reads later, as the PV
    controller gives it its phase a moment after the create."""

    def __init__(self, nodes=("node1",), pvs_=(), classes=(), dry_run=False, pending_reads=0):
        self.nodes = [node(n) for n in nodes]
        self.pvs = dict((pv["metadata"]["name"], copy.deepcopy(pv)) for pv in pvs_)
        self.classes = dict((c["metadata"]["name"], copy.deepcopy(c)) for c in classes)
        self.dry_run = dry_run
        self.pending_reads = pending_reads
        self.requests = {}
        self.slept = 0.0
        self._lock = threading.Lock()

    def _sleep(self, seconds):
        self.slept += seconds

    def _clock(self):
        return self.slept

    def count(self, verb, resource):
        with self._lock:
            self.requests[(verb, resource)] = self.requests.get((verb, resource), 0) + 1

    def run(self, jobs):
        out = []
        for job in jobs:
            try:
                out.append((job(), None))
            except KubeError as err:
                out.append((None, err))
        return out

    def list_nodes(self):
        self.count("list", "nodes")
        return copy.deepcopy(self.nodes)

    def _age(self):
        for pv in self.pvs.values():
            if pv["status"]["phase"] == "Pending":
                pv["_reads"] = pv.get("_reads", 0) + 1
                if pv["_reads"] > self.pending_reads:
                    pv["status"]["phase"] = "Available"
                    pv.pop("_reads")

    def _listed(self, label_selector=None):
        out = []
        for pv in sorted(self.pvs.values(), key=lambda p: p["metadata"]["name"]):
            labels = pv["metadata"].get("labels") or {}
            if label_selector and any(labels.get(k) != val for k, val in
                                      (part.split("=", 1) for part in label_selector.split(","))):
                continue
            out.append(dict((k, copy.deepcopy(val)) for k, val in pv.items() if not k.startswith("_")))
        return out

    def scan_pvs(self, add, start=None, label_selector=None, limit=None):
        self.count("list", "persistentvolumes")
        if start:
            start()
        for pv in self._listed(label_selector):
            add(pv)

    def list_pvs(self, label_selector=None):
        self.count("list", "persistentvolumes")
        self._age()
        return self._listed(label_selector)

    def get_pv(self, name):
        self.count("get", "persistentvolumes")
        return copy.deepcopy(self.pvs.get(name))

    def create_pv(self, body):
        self.count("create", "persistentvolumes")
        if not self.dry_run:
            pv = server_copy(body, uid="u-" + body["metadata"]["name"])
            pv["status"] = {"phase": "Pending"}
            self.pvs[body["metadata"]["name"]] = pv
        return body

    def get_storage_class(self, name):
        self.count("get", "storageclasses")
        return copy.deepcopy(self.classes.get(name))

    def create_storage_class(self, body):
        self.count("create", "storageclasses")
        if not self.dry_run:
            self.classes[body["metadata"]["name"]] = copy.deepcopy(body)
        return body

    def list_storage_classes(self):
        self.count("list", "storageclasses")
        return list(self.classes.values())


LOCAL = sc.normalize_storage_class({"name": "local-storage"})[0]


def existing_pv(volume, phase="Available"):
    pv = server_copy(v.pv_manifest(volume, volume["node"]), uid="u-" + volume["pv_name"])
    pv["spec"]["capacity"]["storage"] = str(volume["capacity"])
    pv["status"] = {"phase": phase}
    return pv


# --- StorageClasses: one function reads them, once ---------------------------------------

def test_storage_classes_are_read_by_one_get_each_and_what_is_known_is_not_read_again():
    server = Server(classes=[sc.storage_class_manifest(LOCAL)])
    found = sc.read_storage_classes(server, ["local-storage", "gone", "local-storage"])
    assert sorted(found) == ["gone", "local-storage"] and found["gone"] is None
    assert server.requests == {("get", "storageclasses"): 2}
    assert sc.missing_storage_classes(server, ["local-storage", "gone"], known=found) == ["gone"]
    assert server.requests == {("get", "storageclasses"): 2}
    assert sc.missing_storage_classes(server, ["other"], known=found) == ["other"]
    assert server.requests[("get", "storageclasses")] == 3


def test_a_class_made_in_dry_run_is_known_not_to_exist_and_one_made_for_real_to_exist():
    for dry_run, exists in ((False, True), (True, False)):
        server = Server(dry_run=dry_run)
        results = sc.ensure_storage_classes(server, [LOCAL])
        assert results[0]["action"] == "create" and results[0]["confirmed"]
        assert (sc.known_after(results, dry_run)["local-storage"] is not None) is exists


def test_register_reads_the_class_once_and_the_pvs_check_uses_that_read():
    server = Server()
    outcome = pvs.register(server, [LOCAL], [vol()], nodes=["node1"])
    assert not outcome["failed"] and outcome["classes"][0]["action"] == "create"
    assert [a["action"] for a in outcome["actions"]] == ["create"] and outcome["actions"][0]["confirmed"]
    assert server.requests[("get", "storageclasses")] == 1
    assert ("list", "storageclasses") not in server.requests


def test_register_in_dry_run_warns_that_the_class_it_would_make_does_not_exist_yet():
    outcome = pvs.register(Server(dry_run=True), [LOCAL], [vol()], nodes=["node1"])
    assert not outcome["failed"] and outcome["invalid"] == []
    assert any("StorageClass local-storage does not exist" in w for w in outcome["warnings"])


def test_a_class_in_conflict_stops_register_before_any_pv_is_listed():
    theirs = sc.storage_class_manifest(LOCAL)
    theirs["metadata"]["labels"] = {}
    theirs["volumeBindingMode"] = "Immediate"
    server = Server(classes=[theirs])
    outcome = pvs.register(server, [LOCAL], [vol()], nodes=["node1"])
    assert outcome["classes"][0]["action"] == "conflict" and "actions" not in outcome
    assert sc.ensure_outcome(outcome["classes"])[2].startswith("nothing was changed")
    assert server.requests == {("get", "storageclasses"): 1}


def test_pvs_naming_a_class_that_is_not_ensured_are_checked_with_one_get_of_it():
    server = Server()
    outcome = pvs.register(server, [], [vol(storage_class="elsewhere")], nodes=["node1"])
    assert outcome["failed"] and "StorageClass elsewhere does not exist" in outcome["invalid"][0]
    assert server.requests[("get", "storageclasses")] == 1


# --- The report: local_pv's own LIST, read again only after writes ----------------------

def test_a_no_op_reports_from_its_own_list_with_no_request_more():
    volumes = [vol(), vol(name="ssd1")]
    server = Server(pvs_=[existing_pv(volumes[0]), existing_pv(volumes[1], phase="Bound")],
                    classes=[sc.storage_class_manifest(LOCAL)])
    outcome = pvs.register(server, [LOCAL], volumes, nodes=["node1"], report=True)
    assert [a["action"] for a in outcome["actions"]] == ["unchanged", "unchanged"]
    assert server.requests == {("get", "storageclasses"): 1, ("list", "nodes"): 1, ("list", "persistentvolumes"): 1}
    # the same entries a read-back would give, from the PVs as listed
    presence = workloads.node_presence(server.nodes)
    assert outcome["report"] == [workloads.pv_entry(pv, *presence) for pv in server._listed()]
    assert [e["phase"] for e in outcome["report"]] == ["Available", "Bound"]
    assert outcome["report"][0]["node_exists"] and outcome["report"][0]["node_ready"]


def test_a_bound_pv_reported_from_the_list_keeps_its_claim_and_its_uid():
    volume = vol()
    pv = existing_pv(volume, phase="Bound")
    pv["spec"]["claimRef"] = {"namespace": "app", "name": "data-web-0", "uid": "c-1"}
    (entry,) = pvs.register(Server(pvs_=[pv]), [], [volume], nodes=["node1"], report=True)["report"]
    assert (entry["claim"], entry["claim_uid"], entry["phase"], entry["uid"]) == (
        "app/data-web-0", "c-1", "Bound", "u-local-node1-ssd0")


def test_after_writes_the_report_reads_the_pvs_again_and_waits_for_the_phase_of_the_ones_made():
    server = Server(pending_reads=2)
    outcome = pvs.register(server, [LOCAL], [vol()], nodes=["node1"], report=True)
    (entry,) = outcome["report"]
    assert entry["name"] == "local-node1-ssd0" and entry["phase"] == "Available"
    # one LIST to see the PV Pending twice, a third once the PV controller gave it its phase
    assert server.requests[("list", "persistentvolumes")] == 1 + 3 and server.slept > 0


def test_a_pv_still_without_a_phase_at_the_deadline_is_reported_as_the_server_has_it():
    server = Server(pending_reads=10 ** 6)
    outcome = pvs.register(server, [LOCAL], [vol()], nodes=["node1"], report=True)
    assert [e["phase"] for e in outcome["report"]] == ["Pending"]
    assert pvs.PHASE_WAIT <= server.slept <= pvs.PHASE_WAIT + 1


def test_in_dry_run_the_report_is_the_list_before_the_writes_that_were_not_persisted():
    server = Server(dry_run=True)
    outcome = pvs.register(server, [LOCAL], [vol()], nodes=["node1"], report=True)
    assert outcome["actions"][0]["confirmed"] and outcome["report"] == []
    assert server.requests[("list", "persistentvolumes")] == 1


def test_the_report_holds_only_our_pvs_of_the_nodes_in_scope():
    other = existing_pv(vol(node="node2"))
    volume = vol()
    server = Server(nodes=("node1", "node2"), pvs_=[existing_pv(volume), other])
    outcome = pvs.register(server, [], [volume], nodes=["node1"], report=True)
    assert [e["name"] for e in outcome["report"]] == ["local-node1-ssd0"]


# --- The preflight's one LIST also gives the records of the PVs --------------------------

def test_the_preflight_returns_what_the_pvs_record_from_its_one_list():
    volume = vol(stable_id="wwn-0x5000c500a1b2c3d4")
    recorded = existing_pv(volume)
    other = existing_pv(vol(node="node9"))
    server = Server(nodes=("node1",), pvs_=[recorded, other])
    hosts = [{"host": "node1", "node": "node1", "in_play": True, "mount_root": "/mnt/disks",
              "disks": [{"name": "ssd0", "device": "/dev/sdb"}]},
             {"host": "node2", "node": "node2", "in_play": True, "mount_root": "/mnt/disks", "disks": []}]
    found = pf.inventory_preflight(server, hosts)
    assert found["records"] == {"node1": v.recorded_identities([recorded])["node1"], "node2": {}}
    assert found["records"]["node1"]["ssd0"]["stable_id"] == "wwn-0x5000c500a1b2c3d4"
    assert server.requests == {("list", "nodes"): 1, ("list", "persistentvolumes"): 1}


def test_the_site_preflight_asks_no_right_for_the_table_it_no_longer_reads_claims_and_pods_for():
    keys = set((n["verb"], n["resource"]) for n in pf.rights_for("site", report=True))
    assert ("list", "persistentvolumeclaims") not in keys and ("list", "pods") not in keys
    assert ("get", "storageclasses") in keys
