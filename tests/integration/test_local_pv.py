# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""local_pv against the lab's real API server: the user's stories.

Every test works on node names of its own (nodes that have not joined: the
hostname falls back to the node name) or on volume names of its own on the lab's
nodes, and removes its PVs afterwards, so tests never see each other's PVs.
"""

import json

import pytest
from kubernetes import client

from pv_helpers import claim_pv, delete_pvs, local_pv, now_rfc3339, pvs_of, unique, volume, wait_until, writes_by_us

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v


@pytest.fixture
def made(kube):
    """Names of the PVs a test made; deleted afterwards (claims first, by the test)."""
    names = []
    yield names
    delete_pvs(kube, names)


def test_one_pv_per_volume_with_the_right_fields(lab, kube, tmp_path, made):
    node3 = next(n for n in lab.nodes if n["node_name"] != n["hostname_label"])
    tag = unique()
    wanted = [
        volume(node3["node_name"], tag + "-ssd0", 10 * 2 ** 30, storage_class="local-storage", stable_id="wwn-1",
               uuid="0b7c"),
        volume(node3["node_name"], tag + "-raw0", 4 * 2 ** 30, mode="block", path="/dev/disk/by-id/wwn-" + tag),
        volume(tag + "-new", "ssd0", 2 ** 30),
    ]
    made += [naming.pv_name(w["node"], w["name"]) for w in wanted]
    res = local_pv(lab, tmp_path, volumes=wanted, labels={"team": "storage"})
    assert res["rc"] == 0, res.get("msg")
    assert res["changed"] is True and sorted(res["created"]) == sorted(made)
    assert res["nodes"][node3["node_name"]]["created"] == 2
    assert res["hostnames"][node3["node_name"]] == {"value": node3["hostname_label"], "source": "node-label"}
    assert res["hostnames"][tag + "-new"] == {"value": tag + "-new", "source": "node-name"}

    got = pvs_of(kube, made)
    assert sorted(got) == sorted(made)
    ssd = got[naming.pv_name(node3["node_name"], tag + "-ssd0")]
    assert ssd.spec.local.path == "/mnt/disks/%s-ssd0" % tag and ssd.spec.local.fs_type == "xfs"
    assert ssd.spec.volume_mode == "Filesystem" and ssd.spec.access_modes == ["ReadWriteOnce"]
    assert v.parse_quantity(ssd.spec.capacity["storage"]) == 10 * 2 ** 30
    assert ssd.spec.storage_class_name == "local-storage"
    assert ssd.spec.persistent_volume_reclaim_policy == "Retain"
    term = ssd.spec.node_affinity.required.node_selector_terms[0].match_expressions[0]
    assert (term.key, term.operator, term.values) == ("kubernetes.io/hostname", "In", [node3["hostname_label"]])
    assert ssd.metadata.labels[v.NODE_LABEL] == node3["node_name"] and ssd.metadata.labels["team"] == "storage"
    assert ssd.metadata.annotations[v.STABLE_ID_ANNOTATION] == "wwn-1"
    raw = got[naming.pv_name(node3["node_name"], tag + "-raw0")]
    assert raw.spec.volume_mode == "Block" and raw.spec.local.fs_type is None


def test_a_rerun_changes_nothing_and_writes_nothing(lab, kube, tmp_path, made):
    node = unique("n")
    wanted = [volume(node, "d%d" % i) for i in range(5)]
    made += [naming.pv_name(node, w["name"]) for w in wanted]
    assert local_pv(lab, tmp_path, volumes=wanted)["rc"] == 0
    since = now_rfc3339()
    res = local_pv(lab, tmp_path, volumes=wanted, prune=True)
    assert res["rc"] == 0 and res["changed"] is False
    assert res["nodes"][node]["unchanged"] == 5 and res["created"] == []
    assert set(res["requests"]) == {"list"}, res["requests"]
    assert writes_by_us(lab, since, names=set(made)) == []


def test_volumes_as_json_text_make_the_same_pvs_and_the_result_only_counts_them(lab, kube, tmp_path, made):
    """The compact hand-over of pv_register: one JSON string; the default result
    counts per node and echoes the number of volumes, not the volumes. ansible-core 2.21
    echoes a module's arguments only when asked (inject_invocation), so ask."""
    node = unique("n")
    wanted = [volume(node, "d%d" % i) for i in range(3)]
    made += [naming.pv_name(node, w["name"]) for w in wanted]
    res = local_pv(lab, tmp_path, volumes=json.dumps(wanted), return_names=False,
                   extra_env={"ANSIBLE_INJECT_INVOCATION": "true"})
    assert res["rc"] == 0 and res["changed"] is True, res.get("msg")
    assert res["nodes"][node]["created"] == 3 and "created" not in res
    assert res["invocation"]["module_args"]["volumes"] == "3 volume(s), not echoed"
    assert sorted(pvs_of(kube, made)) == sorted(made)
    res = local_pv(lab, tmp_path, volumes=wanted)
    assert res["rc"] == 0 and res["changed"] is False and res["created"] == []


def test_a_volume_of_the_wrong_shape_is_refused_before_any_request(lab, kube, tmp_path, made):
    node = unique("n")
    good, bad = volume(node, "d0"), volume(node, "d1", size_gb=1)
    made += [naming.pv_name(node, "d0"), naming.pv_name(node, "d1")]
    res = local_pv(lab, tmp_path, volumes=[good, bad])
    assert res["rc"] != 0 and res["changed"] is False
    assert "volume d1 of node %s (item 1): unknown key(s) size_gb" % node in res["msg"], res["msg"]
    assert not res["requests"] and pvs_of(kube, made) == {}


def test_check_mode_says_what_would_happen_and_changes_nothing(lab, kube, tmp_path, made):
    node = unique("n")
    wanted = [volume(node, "d0"), volume(node, "d1")]
    names = [naming.pv_name(node, w["name"]) for w in wanted]
    made += names
    res = local_pv(lab, tmp_path, check=True, diff=True, volumes=wanted)
    assert res["rc"] == 0 and res["changed"] is True and sorted(res["created"]) == sorted(names)
    assert res["requests"].get("create") == 2          # sent, as server-side dry-run
    assert [d["after"]["local"]["path"] for d in res["diff"]] == ["/mnt/disks/d0", "/mnt/disks/d1"]
    assert pvs_of(kube, names) == {}


def test_a_pv_deleted_by_hand_is_made_again_and_a_label_changed_by_hand_is_put_back(lab, kube, tmp_path, made):
    core = client.CoreV1Api(kube)
    node = unique("n")
    wanted = [volume(node, "d0", labels={"tier": "ssd"}), volume(node, "d1")]
    made += [naming.pv_name(node, w["name"]) for w in wanted]
    assert local_pv(lab, tmp_path, volumes=wanted)["rc"] == 0
    core.delete_persistent_volume(made[0])
    wait_until("%s gone" % made[0], lambda: made[0] not in pvs_of(kube, made))
    core.patch_persistent_volume(made[1], {"metadata": {"labels": {v.VOLUME_LABEL: "elsewhere", "mine": "stays"}}})

    res = local_pv(lab, tmp_path, volumes=wanted)
    assert res["rc"] == 0, res.get("msg")
    assert res["created"] == [made[0]] and res["updated"] == [made[1]]
    got = pvs_of(kube, made)
    assert got[made[0]].metadata.labels["tier"] == "ssd"
    assert got[made[1]].metadata.labels[v.VOLUME_LABEL] == "d1" and got[made[1]].metadata.labels["mine"] == "stays"

    # its node label changed by hand: the PV is another node's now, and never patched as this node's
    core.patch_persistent_volume(made[1], {"metadata": {"labels": {v.NODE_LABEL: "elsewhere"}}})
    res = local_pv(lab, tmp_path, volumes=wanted)
    assert res["rc"] != 0 and res["updated"] == [] and "localpv.rollout/node=elsewhere" in res["msg"]


def prebind(kube, ns, claim, pv, storage_class="local-storage"):
    """A claim bound to ``pv`` by name: the binder binds it without a pod."""
    core = client.CoreV1Api(kube)
    claim_pv(core, ns, claim, pv, storage_class, "1Mi")
    wait_until("%s bound" % pv, lambda: core.read_persistent_volume(pv).status.phase == "Bound")


@pytest.fixture
def namespace(kube):
    core = client.CoreV1Api(kube)
    ns = unique("pvt-")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    yield ns
    for pvc in core.list_namespaced_persistent_volume_claim(ns).items:
        core.delete_namespaced_persistent_volume_claim(pvc.metadata.name, ns)
    core.delete_namespace(ns)


def test_a_volume_removed_from_the_inventory_is_pruned_but_a_bound_pv_never(lab, kube, tmp_path, made, namespace):
    node = unique("n")
    wanted = [volume(node, "d0"), volume(node, "d1"), volume(node, "d2")]
    made += [naming.pv_name(node, w["name"]) for w in wanted]
    assert local_pv(lab, tmp_path, volumes=wanted)["rc"] == 0
    prebind(kube, namespace, "data", made[1])

    # d0 stays; d1 (bound) and d2 (free) are no longer wanted
    res = local_pv(lab, tmp_path, volumes=wanted[:1], prune=False)
    assert res["rc"] == 0 and res["changed"] is False and sorted(res["stale"]) == sorted(made[1:])
    res = local_pv(lab, tmp_path, volumes=wanted[:1], prune=True)
    assert res["rc"] == 0, res.get("msg")
    assert res["deleted"] == [made[2]]
    assert res["kept_bound"] == [{"name": made[1], "node": node, "claim": "%s/data" % namespace}]
    assert res["nodes"][node]["deleted"] == 1 and res["nodes"][node]["kept_bound"] == 1
    wait_until("%s gone" % made[2], lambda: made[2] not in pvs_of(kube, made))
    assert made[1] in pvs_of(kube, made)

    # a node in scope with no volume left: its free PVs go, the bound one stays
    res = local_pv(lab, tmp_path, volumes=[], nodes=[node], prune=True)
    assert res["deleted"] == [made[0]] and [k["name"] for k in res["kept_bound"]] == [made[1]]


def test_prune_leaves_nodes_outside_the_run_alone(lab, kube, tmp_path, made):
    rack1, rack2 = unique("n"), unique("n")
    made += [naming.pv_name(rack1, "d0"), naming.pv_name(rack2, "d0")]
    assert local_pv(lab, tmp_path, volumes=[volume(rack1, "d0"), volume(rack2, "d0")])["rc"] == 0
    res = local_pv(lab, tmp_path, volumes=[volume(rack1, "d0")], prune=True)   # like --limit rack1
    assert res["rc"] == 0 and res["deleted"] == [] and res["changed"] is False
    assert sorted(pvs_of(kube, made)) == sorted(made)


def test_an_immutable_change_replaces_an_unbound_pv_only_when_asked(lab, kube, tmp_path, made):
    node = unique("n")
    made.append(naming.pv_name(node, "d0"))
    assert local_pv(lab, tmp_path, volumes=[volume(node, "d0", 2 ** 30)])["rc"] == 0
    uid = pvs_of(kube, made)[made[0]].metadata.uid

    since = now_rfc3339()
    # the filesystem type is part of spec.local, which the API server does not let change
    res = local_pv(lab, tmp_path, volumes=[volume(node, "d0", 2 ** 30, fstype="ext4")])
    assert res["rc"] != 0 and "replace_unbound=true" in res["msg"] and "spec.local" in res["msg"]
    assert res["conflicts"][0]["name"] == made[0]
    assert writes_by_us(lab, since, names=set(made)) == []

    res = local_pv(lab, tmp_path, volumes=[volume(node, "d0", 2 ** 30, fstype="ext4")], replace_unbound=True)
    assert res["rc"] == 0, res.get("msg")
    assert res["replaced"] == [made[0]]
    pv = pvs_of(kube, made)[made[0]]
    assert pv.metadata.uid != uid and pv.spec.local.fs_type == "ext4"


def test_an_immutable_change_of_a_bound_pv_is_an_error_naming_pv_and_claim(lab, kube, tmp_path, made, namespace):
    node = unique("n")
    made.append(naming.pv_name(node, "d0"))
    assert local_pv(lab, tmp_path, volumes=[volume(node, "d0")])["rc"] == 0
    prebind(kube, namespace, "db-data", made[0])
    before = pvs_of(kube, made)[made[0]]
    since = now_rfc3339()
    res = local_pv(lab, tmp_path, volumes=[volume(node, "d0", path="/mnt/disks/other")], replace_unbound=True)
    assert res["rc"] != 0
    assert made[0] in res["msg"] and "%s/db-data" % namespace in res["msg"] and "spec.local" in res["msg"]
    assert writes_by_us(lab, since, names=set(made)) == []
    assert pvs_of(kube, made)[made[0]].metadata.uid == before.metadata.uid


def test_a_foreign_pv_in_the_way_is_an_error_and_nothing_changes(lab, kube, tmp_path, made):
    core = client.CoreV1Api(kube)
    node = unique("n")
    foreign = naming.pv_name(node, "d0")
    made += [foreign, naming.pv_name(node, "d1")]
    core.create_persistent_volume(client.V1PersistentVolume(
        metadata=client.V1ObjectMeta(name=foreign, labels={"owner": "someone-else"}),
        spec=client.V1PersistentVolumeSpec(
            capacity={"storage": "1Gi"}, access_modes=["ReadWriteOnce"], storage_class_name="manual",
            host_path=client.V1HostPathVolumeSource(path="/srv/x"))))
    # controllers add the pv-protection finalizer and the phase: wait for them, so
    # that any later change of the object can only be ours
    wait_until("%s Available" % foreign, lambda: core.read_persistent_volume(foreign).status.phase == "Available")
    before = core.read_persistent_volume(foreign)
    since = now_rfc3339()
    res = local_pv(lab, tmp_path, volumes=[volume(node, "d0"), volume(node, "d1")], prune=True)
    assert res["rc"] != 0
    assert foreign in res["msg"] and "not managed by localpv.rollout" in res["msg"]
    assert "nothing was changed" in res["msg"]
    assert writes_by_us(lab, since, names=set(made)) == []
    after = core.read_persistent_volume(foreign)
    assert after.metadata.labels == before.metadata.labels and after.spec == before.spec
    assert naming.pv_name(node, "d1") not in pvs_of(kube, made)


def test_invalid_names_are_refused_before_any_request(lab, kube, tmp_path, made):
    res = local_pv(lab, tmp_path, volumes=[volume("Node_1", "ok"), volume("node1", "Bad.Name")])
    assert res["rc"] != 0
    assert "volume ok of node Node_1" in res["msg"] and "volume Bad.Name of node node1" in res["msg"]
    assert "nothing was changed" in res["msg"] and res["requests"] == {}


def test_a_name_ending_in_a_newline_is_refused_before_any_request(lab, tmp_path):
    res = local_pv(lab, tmp_path, volumes=[volume("node1", "d0\n"), volume("node1\n", "d1")])
    assert res["rc"] != 0
    assert "name: not an RFC 1123 label" in res["msg"] and "node: not a valid Kubernetes node name" in res["msg"]
    assert "nothing was changed" in res["msg"] and res["requests"] == {}


def test_an_unreachable_api_server_is_a_clear_error(lab, tmp_path):
    res = local_pv(lab, tmp_path, volumes=[volume("node1", "d0")], kubeconfig=None,
                   host="https://127.0.0.1:9", api_key="not-a-token", validate_certs=False)
    assert res["rc"] != 0
    assert res["msg"].startswith("cannot reach the API server at https://127.0.0.1:9 for list nodes")
    assert "not-a-token" not in str(res)


def test_wrong_credentials_are_a_clear_error(lab, kube, tmp_path):
    conf = kube.configuration
    res = local_pv(lab, tmp_path, volumes=[volume("node1", "d0")], kubeconfig=None, host=conf.host,
                   api_key="wrong-token", ca_cert=conf.ssl_ca_cert)
    assert res["rc"] != 0
    assert "rejected the credentials (401 Unauthorized)" in res["msg"], res["msg"]
    assert "wrong-token" not in str(res)


def test_local_pv_info_shows_claims_pods_and_orphans(lab, kube, tmp_path, made, namespace):
    from pv_helpers import module
    node = unique("n")
    made += [naming.pv_name(node, "d0"), naming.pv_name(node, "d1")]
    assert local_pv(lab, tmp_path, volumes=[volume(node, "d0"), volume(node, "d1")])["rc"] == 0
    prebind(kube, namespace, "data", made[0])
    res = module(lab, tmp_path, "localpv.rollout.local_pv_info", nodes=[node])
    pvs = dict((p["name"], p) for p in res["pvs"])
    assert sorted(pvs) == sorted(made)
    assert pvs[made[0]]["claim"] == "%s/data" % namespace and pvs[made[0]]["phase"] == "Bound"
    assert pvs[made[1]]["phase"] == "Available" and pvs[made[1]]["claim"] is None
    assert sorted(res["orphaned"]) == sorted(made)      # the node never joined
    assert res["nodes"][node] == {"Bound": 1, "Available": 1}
