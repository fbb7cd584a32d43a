# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One disk, one PV, on the lab's API server: PVs found by node and path, taken over
from the local static provisioner, names that cannot collide, nothing written when
a write would be refused, results that say only what was written, and the
StorageClasses of others left alone.

Every test works on node names, paths and classes of its own and removes what it
made, so tests never see each other's PVs.
"""

import http.client
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest
import yaml
from kubernetes import client

from pv_helpers import claim_pv, delete_pvs, local_pv, module, now_rfc3339, pvs_of, remove_test_space, unique, volume, wait_until, writes_by_us
# a fixture: a ServiceAccount bound to the rules a test gives
from test_rbac import identity  # noqa: F401 pylint: disable=unused-import

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v

PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


@pytest.fixture
def made(kube):
    """Names of the PVs a test made; deleted afterwards (claims first, by the test)."""
    names = []
    yield names
    delete_pvs(kube, names)


@pytest.fixture
def space(lab, kube, tmp_path):
    """A namespace and a StorageClass of the test's own; pods, claims, PVs and both
    removed afterwards in the safe order."""
    core = client.CoreV1Api(kube)
    tag = unique("ident")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=tag)))
    wait_until("default ServiceAccount in %s" % tag, lambda: core.list_namespaced_service_account(
        tag, field_selector="metadata.name=default").items)
    res = module(lab, tmp_path, "localpv.rollout.local_storage_class", storage_classes=[{"name": tag}])
    assert res.get("failed") is not True, res.get("msg")
    made = {"tag": tag, "pvs": []}
    yield made
    remove_test_space(kube, tag, made["pvs"])


def fnv1a32(data):
    """FNV-1a, 32 bits: the hash in the local static provisioner's PV names."""
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def provisioner_pv(node, file, storage_class, host_dir="/mnt/fast-disks", capacity="1Gi"):
    """A PV as the local static provisioner makes it: named local-pv-<FNV-1a of file,
    node name and class>, annotated with the provisioner's name, the class's reclaim
    policy, none of our labels."""
    name = "local-pv-%x" % fnv1a32((file + node["node_name"] + storage_class).encode())
    return client.V1PersistentVolume(
        metadata=client.V1ObjectMeta(name=name, annotations={
            PROVISIONED_BY: "local-volume-provisioner-%s-0c1d2e3f" % node["node_name"]}),
        spec=client.V1PersistentVolumeSpec(
            capacity={"storage": capacity}, access_modes=["ReadWriteOnce"], volume_mode="Filesystem",
            persistent_volume_reclaim_policy="Delete", storage_class_name=storage_class,
            local=client.V1LocalVolumeSource(path="%s/%s" % (host_dir, file), fs_type="xfs"),
            node_affinity=client.V1VolumeNodeAffinity(required=client.V1NodeSelector(node_selector_terms=[
                client.V1NodeSelectorTerm(match_expressions=[client.V1NodeSelectorRequirement(
                    key="kubernetes.io/hostname", operator="In", values=[node["hostname_label"]])])]))))


def claim_and_pod(kube, ns, name, pv, node, storage_class):
    """A claim bound to ``pv`` by name and a running pod on ``node`` that mounts it."""
    core = client.CoreV1Api(kube)
    claim_pv(core, ns, name, pv, storage_class, "512Mi")
    core.create_namespaced_pod(ns, client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            node_selector={"kubernetes.io/hostname": node["hostname_label"]},
            tolerations=[client.V1Toleration(operator="Exists")],
            containers=[client.V1Container(name="app", image="registry.invalid/app:1",
                                           volume_mounts=[client.V1VolumeMount(name="data", mount_path="/data")])],
            volumes=[client.V1Volume(name="data", persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                claim_name=name))])))
    wait_until("%s bound" % pv, lambda: core.read_persistent_volume(pv).status.phase == "Bound")
    wait_until("pod %s running" % name, lambda: core.read_namespaced_pod(name, ns).status.phase == "Running")


def uids(kube, ns, pvs):
    """uid and resourceVersion-free facts of the PVs, their claims and the pods."""
    core = client.CoreV1Api(kube)
    out = {}
    for name in pvs:
        pv = core.read_persistent_volume(name)
        out[name] = {"uid": pv.metadata.uid, "claim": pv.spec.claim_ref and pv.spec.claim_ref.uid}
    out["claims"] = dict((c.metadata.name, c.metadata.uid) for c in core.list_namespaced_persistent_volume_claim(ns).items)
    out["pods"] = dict((p.metadata.name, (p.metadata.uid, p.status.phase)) for p in core.list_namespaced_pod(ns).items)
    return out


def test_a_foreign_pv_at_our_path_is_a_conflict_naming_both_pvs(lab, kube, tmp_path, space):
    core = client.CoreV1Api(kube)
    node, tag = lab.node("node1"), space["tag"]
    foreign = provisioner_pv(node, tag + "-d0", tag)
    core.create_persistent_volume(foreign)
    space["pvs"].append(foreign.metadata.name)
    wait_until("foreign PV Available", lambda: core.read_persistent_volume(foreign.metadata.name).status.phase
               == "Available")
    before = core.read_persistent_volume(foreign.metadata.name)
    wanted = [volume(node["node_name"], tag + "-d0", path="/mnt/fast-disks/%s-d0" % tag, storage_class=tag),
              volume(node["node_name"], tag + "-d1", path="/mnt/fast-disks/%s-d1" % tag, storage_class=tag)]
    space["pvs"] += [naming.pv_name(w["node"], w["name"]) for w in wanted]
    since = now_rfc3339()
    res = local_pv(lab, tmp_path, volumes=wanted)
    assert res["rc"] != 0 and res["changed"] is False and res["created"] == []
    (conflict,) = res["conflicts"]
    assert foreign.metadata.name in conflict["reason"] and naming.pv_name(node["node_name"], tag + "-d0") in conflict["reason"]
    assert "provisioned by local-volume-provisioner-node1" in conflict["reason"]
    assert "take_over=true" in conflict["reason"] and "nothing was changed" in res["msg"]
    assert writes_by_us(lab, since) == []
    after = core.read_persistent_volume(foreign.metadata.name)
    assert after.metadata.resource_version == before.metadata.resource_version


def test_provisioner_pvs_are_taken_over_with_their_claims_and_pods(lab, kube, tmp_path, space):
    core = client.CoreV1Api(kube)
    tag = space["tag"]
    nodes = [lab.node("node1"), lab.node("node2")]
    pvs, wanted = [], []
    for node in nodes:
        for i in range(2):
            pv = provisioner_pv(node, "%s-v%d" % (tag, i), tag)
            core.create_persistent_volume(pv)
            pvs.append(pv.metadata.name)
            wanted.append(volume(node["node_name"], "%s-v%d" % (tag, i), path=pv.spec.local.path, storage_class=tag))
    space["pvs"] += pvs
    # two of the four are in use: a claim bound to them and a running pod on their node
    claim_and_pod(kube, tag, "data-0", pvs[0], nodes[0], tag)
    claim_and_pod(kube, tag, "data-2", pvs[2], nodes[1], tag)
    wait_until("free PVs Available", lambda: all(core.read_persistent_volume(p).status.phase == "Available"
                                                 for p in (pvs[1], pvs[3])))
    before = uids(kube, tag, pvs)

    check = local_pv(lab, tmp_path, check=True, volumes=wanted, take_over=True)
    assert check["rc"] == 0, check.get("msg")
    assert sorted(check["taken_over"]) == sorted(pvs) and check["created"] == []
    res = local_pv(lab, tmp_path, volumes=wanted, take_over=True)
    assert res["rc"] == 0, res.get("msg")
    assert sorted(res["taken_over"]) == sorted(pvs) and res["created"] == [] and res["changed"] is True
    assert uids(kube, tag, pvs) == before
    for name in pvs:
        pv = core.read_persistent_volume(name)
        assert pv.metadata.labels[v.MANAGED_BY_LABEL] == v.MANAGED_BY_VALUE
        assert pv.metadata.labels[v.NODE_LABEL] in ("node1", "node2")
        assert pv.spec.persistent_volume_reclaim_policy == "Retain"
        assert pv.metadata.annotations[PROVISIONED_BY].startswith("local-volume-provisioner-")
    # from now on they are ours: no take_over needed, nothing to change, nothing written
    since = now_rfc3339()
    again = local_pv(lab, tmp_path, volumes=wanted)
    assert again["rc"] == 0 and again["changed"] is False, again.get("msg")
    assert writes_by_us(lab, since, names=set(pvs)) == []


def test_node_1_volume_data0_and_node_volume_1_data0_get_two_pvs(lab, kube, tmp_path, made):
    tag = unique("n")
    wanted = [volume(tag + "-1", "data0"), volume(tag, "1-data0")]
    names = [naming.pv_name(w["node"], w["name"]) for w in wanted]
    made += names
    assert names[0] != names[1]
    res = local_pv(lab, tmp_path, volumes=wanted)
    assert res["rc"] == 0, res.get("msg")
    assert sorted(res["created"]) == sorted(names)
    got = pvs_of(kube, names)
    assert got[names[0]].metadata.labels[v.NODE_LABEL] == tag + "-1"
    assert got[names[1]].metadata.labels[v.NODE_LABEL] == tag


def test_a_write_the_api_server_would_refuse_stops_the_run_before_any_write(lab, kube, tmp_path, made):
    good, long_node = unique("n"), "n" + "x" * 79
    wanted = [volume(good, "d0"), volume(long_node, "d0")]
    made += [naming.pv_name(w["node"], w["name"]) for w in wanted]
    since = now_rfc3339()
    res = local_pv(lab, tmp_path, volumes=wanted)
    assert res["rc"] != 0 and res["changed"] is False and res["created"] == []
    assert "nothing was changed" in res["msg"] and "kubernetes.io/hostname value" in res["msg"]
    assert long_node in res["msg"]
    res = local_pv(lab, tmp_path, volumes=[volume(good, "d0"), volume(good, "d1", storage_class=unique("nosuch"))])
    assert res["rc"] != 0 and "does not exist" in res["msg"] and res["created"] == []
    assert writes_by_us(lab, since) == []
    assert pvs_of(kube, made) == {}


def test_a_failed_run_lists_exactly_what_was_written(lab, kube, tmp_path, made, identity):  # noqa: F811
    node = unique("n")
    made += [naming.pv_name(node, "d0"), naming.pv_name(node, "d1")]
    assert local_pv(lab, tmp_path, volumes=[volume(node, "d0")])["rc"] == 0
    # an identity that may create PVs but not patch them: the create goes through, the patch is refused
    rules = [{"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get", "list", "create"]},
             {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]},
             {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["get"]}]
    conn = identity(rules)
    res = local_pv(lab, tmp_path, volumes=[volume(node, "d0", labels={"tier": "a"}), volume(node, "d1")], **conn)
    assert res["rc"] != 0
    assert res["created"] == [made[1]] and res["updated"] == [] and res["changed"] is True
    assert [(e["action"], e["name"]) for e in res["errors"]] == [("patch", made[0])]
    assert "not allowed to patch persistentvolumes" in res["msg"] and "1 were made" in res["msg"]
    assert sorted(pvs_of(kube, made)) == sorted(made)


def test_a_run_stopped_by_a_conflict_says_nothing_was_written(lab, kube, tmp_path, made):
    core = client.CoreV1Api(kube)
    node = unique("n")
    foreign = client.V1PersistentVolume(
        metadata=client.V1ObjectMeta(name=unique("hand-made")),
        spec=client.V1PersistentVolumeSpec(
            capacity={"storage": "1Gi"}, access_modes=["ReadWriteOnce"], storage_class_name="local-storage",
            local=client.V1LocalVolumeSource(path="/mnt/disks/d0"),
            node_affinity=client.V1VolumeNodeAffinity(required=client.V1NodeSelector(node_selector_terms=[
                client.V1NodeSelectorTerm(match_expressions=[client.V1NodeSelectorRequirement(
                    key="kubernetes.io/hostname", operator="In", values=[node])])]))))
    core.create_persistent_volume(foreign)
    made += [foreign.metadata.name, naming.pv_name(node, "d0"), naming.pv_name(node, "d1")]
    res = local_pv(lab, tmp_path, volumes=[volume(node, "d0"), volume(node, "d1")])
    assert res["rc"] != 0 and res["changed"] is False
    assert res["created"] == [] and res["nodes"][node]["created"] == 0 and res["nodes"][node]["conflicts"] == 1
    assert sorted(pvs_of(kube, made)) == []


def test_two_pvs_of_ours_on_one_disk_are_a_conflict_and_neither_is_shown_as_pruned(lab, kube, tmp_path, made):
    # a copy of our PV under another name, as a hand-run `kubectl create` of an old manifest leaves it
    core = client.CoreV1Api(kube)
    node = unique("n")
    made += [naming.pv_name(node, "d0"), unique("copy")]
    assert local_pv(lab, tmp_path, volumes=[volume(node, "d0")])["rc"] == 0
    copy = kube.sanitize_for_serialization(core.read_persistent_volume(made[0]))
    copy["metadata"] = {"name": made[1], "labels": copy["metadata"]["labels"],
                        "annotations": copy["metadata"].get("annotations")}
    copy.pop("status", None)
    core.create_persistent_volume(copy)
    for check in (True, False):
        res = local_pv(lab, tmp_path, check=check, diff=True, volumes=[volume(node, "d0")], prune=True)
        assert res["rc"] != 0 and res["changed"] is False
        assert res["nodes"][node]["conflicts"] == 1 and made[1] in res["msg"]
        assert res["deleted"] == [] and not [d for d in res.get("diff") or [] if "(deleted)" in d["after_header"]]
        assert sorted(pvs_of(kube, made)) == sorted(made)


class DropFirstDelete:
    """A small HTTP proxy in front of the API server. The module talks plain HTTP to
    it; it forwards every request over TLS as the lab's admin, except that the
    answer to the first DELETE of ``name`` is dropped after the API server
    carried it out and the PV is gone (its pv-protection finalizer removed): the
    connection is closed with no response, as when a network fails at the wrong
    moment, and the delete sent again finds nothing."""

    def __init__(self, kube, name):
        conf = kube.configuration
        target = urlparse(conf.host)
        context = ssl.create_default_context(cafile=conf.ssl_ca_cert)
        context.load_cert_chain(conf.cert_file, conf.key_file)
        self.deletes = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = dict((k, val) for k, val in self.headers.items()
                               if k.lower() not in ("host", "authorization", "connection", "accept-encoding"))
                upstream = http.client.HTTPSConnection(target.hostname, target.port, context=context, timeout=30)
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                upstream.close()
                if self.command == "DELETE" and self.path.split("?")[0].endswith("/" + name):
                    proxy.deletes.append(answer.status)
                    if len(proxy.deletes) == 1:
                        wait_until("PV %s gone" % name, lambda: self.gone(headers))
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                self.send_response(answer.status)
                for key, val in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, val)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def gone(self, headers):
                upstream = http.client.HTTPSConnection(target.hostname, target.port, context=context, timeout=30)
                upstream.request("GET", self.path.split("?")[0], headers=headers)
                status = upstream.getresponse().status
                upstream.close()
                return status == 404

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_retried_delete_that_finds_the_pv_gone_is_done(lab, kube, tmp_path, made):
    node = unique("n")
    name = naming.pv_name(node, "d0")
    made.append(name)
    assert local_pv(lab, tmp_path, volumes=[volume(node, "d0")])["rc"] == 0
    uid = pvs_of(kube, [name])[name].metadata.uid
    proxy = DropFirstDelete(kube, name)
    try:
        res = local_pv(lab, tmp_path, volumes=[], nodes=[node], prune=True, kubeconfig=None, host=proxy.url,
                       api_key="the-proxy-authenticates")
    finally:
        proxy.close()
    assert proxy.deletes[0] == 200 and proxy.deletes[1:] == [404], proxy.deletes
    assert res["rc"] == 0, res.get("msg")
    assert res["deleted"] == [name] and res["errors"] == [] and res["changed"] is True
    wait_until("PV %s (uid %s) gone" % (name, uid), lambda: name not in pvs_of(kube, [name]))


def test_capacity_drift_is_one_patch_in_place(lab, kube, tmp_path, made):
    node = unique("n")
    name = naming.pv_name(node, "d0")
    made.append(name)
    assert local_pv(lab, tmp_path, volumes=[volume(node, "d0", 2 ** 30)])["rc"] == 0
    uid = pvs_of(kube, [name])[name].metadata.uid
    since = now_rfc3339()
    res = local_pv(lab, tmp_path, volumes=[volume(node, "d0", 3 * 2 ** 30 + 12345)], capacity_round_down="Gi")
    assert res["rc"] == 0 and res["updated"] == [name] and res["replaced"] == [], res.get("msg")
    pv = pvs_of(kube, [name])[name]
    assert pv.metadata.uid == uid and v.parse_quantity(pv.spec.capacity["storage"]) == 3 * 2 ** 30
    assert [e["verb"] for e in writes_by_us(lab, since, names={name})] == ["patch"]


def test_a_bind_volume_on_the_root_filesystem_needs_a_capacity(lab, tmp_path):
    tag = unique("b")
    play = [{"name": "bind", "hosts": "node1", "gather_facts": False, "tasks": [{
        "localpv.rollout.disk_prepare": {"host": "node1", "disks": [{"name": tag, "bind": "/data/%s/v" % tag}]},
        "check_mode": True, "ignore_errors": True, "register": "r"}, {
        "localpv.rollout.disk_prepare": {"host": "node1",
                                         "disks": [{"name": tag, "bind": "/data/%s/v" % tag, "capacity": "3Gi"}]},
        "check_mode": True, "register": "r2"}, {
        "ansible.builtin.debug": {"msg": "{{ {'refused': r.msg | default(''), 'capacity': r2.volumes[0].capacity} "
                                         "| to_json }}"}}]}]
    path = tmp_path / "bind.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    res = lab.playbook(str(path), env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"})
    assert res.returncode == 0, res.stdout[-3000:]
    out = json.loads(json.loads(res.stdout)["plays"][0]["tasks"][2]["hosts"]["node1"]["msg"])
    assert "bind volume %s: its source /data/%s/v is on the root filesystem" % (tag, tag) in out["refused"]
    assert "capacity:" in out["refused"] and out["capacity"] == 3 * 2 ** 30


def test_a_storage_class_of_someone_else_is_never_changed(lab, kube, tmp_path):
    storage = client.StorageV1Api(kube)
    name = unique("theirs")
    storage.create_storage_class(client.V1StorageClass(
        metadata=client.V1ObjectMeta(name=name, labels={"owner": "platform-team"}),
        provisioner="kubernetes.io/no-provisioner", reclaim_policy="Delete",
        volume_binding_mode="WaitForFirstConsumer"))
    try:
        before = storage.read_storage_class(name)
        since = now_rfc3339()
        res = module(lab, tmp_path, "localpv.rollout.local_storage_class", replace=True,
                     storage_classes=[{"name": name, "reclaim_policy": "Retain", "default": False}])
        assert res.get("failed") is True and res["changed"] is False
        assert "not managed by localpv.rollout" in res["msg"] and "reclaimPolicy: 'Delete' -> 'Retain'" in res["msg"]
        after = storage.read_storage_class(name)
        assert (after.metadata.uid, after.metadata.resource_version) == (before.metadata.uid,
                                                                         before.metadata.resource_version)
        assert writes_by_us(lab, since, resource="storageclasses", names={name}) == []
        # the same class, as it is: used, not changed
        res = module(lab, tmp_path, "localpv.rollout.local_storage_class",
                     storage_classes=[{"name": name, "reclaim_policy": "Delete"}])
        assert res.get("failed") is not True and res["changed"] is False, res.get("msg")
    finally:
        storage.delete_storage_class(name)
