# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sameness proven before any host step, on the lab's real API server and nodes: a
PV at another spelling (or through a symlink) of a volume's directory, a host whose
machine id is not its Node's, a Node not joined yet, two inventory hosts naming one
node under --limit, a relabelled node, a foreign PV holding a volume's PV name, an
empty localpv_disks for a host with PVs of ours, and the provisioner's Delete class.

The volumes are bind mounts of directories, so no disk is formatted; each refusal is
checked against the audit log (no write by our modules) and the hosts' fstab and
mounts (no host step)."""

import posixpath

import pytest
import yaml
from kubernetes import client

from pv_helpers import MANAGED, now_rfc3339, unique
from test_guard_rails import host_state, real_writes_by_us, text

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v

ROOT = "/mnt/disks"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


def base_vars(name, **extra):
    """One bind volume ``name`` on each host of the run; prune off (other tests'
    PVs share the nodes) unless a test turns it on."""
    return dict({"localpv_disks": [{"name": name, "bind": "/data/idn/%s" % name, "capacity": "1G"}],
                 "pv_register_prune": False, "pv_register_report": False}, **extra)


def foreign_pv(name, hostname, path, storage_class="local-storage", labels=None):
    """A PV as the local static provisioner makes one for a directory."""
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {PROVISIONED_BY: "local-volume-provisioner-%s-0c1d" % hostname},
                         "labels": dict(labels or {})},
            "spec": {"capacity": {"storage": "1G"}, "accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
                     "persistentVolumeReclaimPolicy": "Delete", "storageClassName": storage_class,
                     "local": {"path": path}, "nodeAffinity": v.node_affinity(hostname)}}


def owned_pv(node, volume, hostname, path):
    """A PV of ours, as an earlier run made it."""
    wanted, reasons = v.normalize_volume({"node": node, "name": volume, "path": path, "capacity": 2 ** 30})
    assert reasons == []
    return v.pv_manifest(wanted, hostname)


@pytest.fixture
def cluster(lab, kube):
    """Makes PVs and StorageClasses for a test and removes them (and what site.yml made
    for the volumes it names) afterwards, with the bind mounts on the nodes."""
    core, storage = client.CoreV1Api(kube), client.StorageV1Api(kube)
    made = {"pvs": set(), "classes": set(), "volumes": set()}

    class Cluster:
        def pv(self, body):
            core.create_persistent_volume(body)
            made["pvs"].add(body["metadata"]["name"])

        def storage_class(self, body):
            storage.create_storage_class(body)
            made["classes"].add(body["metadata"]["name"])

        def volume(self, name):
            made["volumes"].add(name)
            return name

        def pvs_at(self, hostname, path):
            return [pv for pv in core.list_persistent_volume().items if pv.spec.local
                    and posixpath.normpath("/" + pv.spec.local.path.lstrip("/")) == path
                    and v.affinity_hostname({"spec": {"nodeAffinity": kube.sanitize_for_serialization(
                        pv.spec.node_affinity)}}) == hostname]

    yield Cluster()
    for pv in core.list_persistent_volume(label_selector=MANAGED).items:
        if (pv.metadata.labels or {}).get(v.VOLUME_LABEL) in made["volumes"]:
            made["pvs"].add(pv.metadata.name)
    for name in made["pvs"]:
        try:
            core.delete_persistent_volume(name)
        except client.ApiException:
            pass
    for name in made["classes"]:
        storage.delete_storage_class(name)
    for node in lab.nodes:
        for name in made["volumes"]:
            lab.ssh(node["host"], "umount %s/%s 2>/dev/null; sed -i '\\#%s/%s #d' /etc/fstab; rm -rf %s/%s "
                    "/data/idn/%s /mnt/idn-link" % (ROOT, name, ROOT, name, ROOT, name, name))


def inventory_with(lab, tmp_path, **node_names):
    """The lab's inventory with some hosts' localpv_node_name changed."""
    with open(lab.inventory) as f:
        inv = yaml.safe_load(f)
    hosts = inv["all"]["children"]["nodes"]["hosts"]
    for host, name in node_names.items():
        hosts[host]["localpv_node_name"] = name
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inv))
    return str(path)


def refused_before_any_host_step(lab, res, since, hosts_before, hosts):
    assert res.returncode != 0, res.stdout[-4000:]
    # the play that prepares the disks never started
    assert "PLAY [Prepare the local disks" not in res.stdout, res.stdout[-4000:]
    assert real_writes_by_us(lab, since) == []
    assert host_state(lab, hosts) == hosts_before


# --- canonical paths -------------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["{root}/{name}/", "{root}/./{name}", "{root}//{name}"])
def test_a_provisioner_pv_at_another_spelling_of_the_volume_path_is_taken_over_not_doubled(
        lab, kube, cluster, spelling):
    name = cluster.volume(unique("idn"))
    path = "%s/%s" % (ROOT, name)
    cluster.pv(foreign_pv("local-pv-" + name, "node1", spelling.format(root=ROOT, name=name)))
    res = lab.playbook("playbooks/site.yml", "--limit", "node1", extra_vars=base_vars(name, localpv_take_over=True))
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-2000:]
    (pv,) = cluster.pvs_at("node1", path)          # one PV for one directory, not two
    assert pv.metadata.name == "local-pv-" + name and pv.metadata.labels[v.NODE_LABEL] == "node1"
    assert pv.spec.persistent_volume_reclaim_policy == "Retain"
    again = lab.playbook("playbooks/site.yml", "--limit", "node1", extra_vars=base_vars(name))
    assert again.returncode == 0 and again.recap["node1"]["changed"] == 0, again.stdout[-4000:]


def test_a_provisioner_pv_through_a_symlink_to_the_volume_directory_is_refused_before_any_host_step(
        lab, kube, cluster):
    name = cluster.volume(unique("idn"))
    link = "/mnt/idn-link/%s" % name
    assert lab.ssh("node1", "mkdir -p /mnt/idn-link && ln -s %s/%s %s" % (ROOT, name, link)).returncode == 0
    cluster.pv(foreign_pv("local-pv-" + name, "node1", link))
    before, since = host_state(lab, ["node1"]), now_rfc3339()
    res = lab.playbook("playbooks/site.yml", "--limit", "node1", extra_vars=base_vars(name, localpv_take_over=True))
    refused_before_any_host_step(lab, res, since, before, ["node1"])
    out = text(res)
    assert "PV local-pv-%s" % name in out and "%s/%s" % (ROOT, name) in out and link in out
    assert cluster.pvs_at("node1", "%s/%s" % (ROOT, name)) == []


# --- the host is its Node ----------------------------------------------------------------

def test_the_lab_nodes_report_their_hosts_own_machine_ids(lab, kube):
    core = client.CoreV1Api(kube)
    ids = {}
    for node in lab.nodes:
        on_host = lab.ssh(node["host"], "cat /etc/machine-id").stdout.strip()
        assert core.read_node(node["node_name"]).status.node_info.machine_id == on_host != ""
        ids[node["host"]] = on_host
    assert len(set(ids.values())) == len(ids), ids


@pytest.fixture
def node2_machine_id(lab, kube):
    """Node node2's reported machine id, given back afterwards."""
    core = client.CoreV1Api(kube)
    original = core.read_node("node2").status.node_info.machine_id

    def set_to(value):
        core.patch_node_status("node2", {"status": {"nodeInfo": {"machineID": value}}})
    yield set_to
    set_to(original)


def test_a_host_whose_machine_id_is_not_its_nodes_is_refused_with_both_values_before_any_host_step(
        lab, kube, cluster, node2_machine_id):
    name = cluster.volume(unique("idn"))
    node2_machine_id("0123456789abcdef0123456789abcdef")
    on_host = lab.ssh("node2", "cat /etc/machine-id").stdout.strip()
    before, since = host_state(lab, ["node2"]), now_rfc3339()
    res = lab.playbook("playbooks/site.yml", "--limit", "node2", extra_vars=base_vars(name))
    refused_before_any_host_step(lab, res, since, before, ["node2"])
    out = text(res)
    assert "host node2 is not Node node2" in out and on_host in out and "0123456789abcdef0123456789abcdef" in out


def test_a_node_not_joined_yet_is_allowed_and_said(lab, kube, cluster, tmp_path):
    name = cluster.volume(unique("idn"))
    inventory = inventory_with(lab, tmp_path, node1="idn-not-joined")
    res = lab.playbook("playbooks/site.yml", "--check", "--limit", "node1", inventory=inventory,
                       extra_vars=base_vars(name))
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-2000:]
    assert "node idn-not-joined is not a Node of the cluster yet" in text(res)


def test_two_inventory_hosts_naming_one_node_are_refused_under_limit_naming_both(lab, kube, cluster, tmp_path):
    name = cluster.volume(unique("idn"))
    inventory = inventory_with(lab, tmp_path, node2="node1")
    before, since = host_state(lab, ["node1", "node2"]), now_rfc3339()
    res = lab.playbook("playbooks/site.yml", "--limit", "node1", inventory=inventory, extra_vars=base_vars(name))
    refused_before_any_host_step(lab, res, since, before, ["node1", "node2"])
    assert "inventory hosts node1 and node2 all name Kubernetes node node1" in text(res)


# --- conflicts known before the host steps ---------------------------------------------------

def test_a_relabelled_node_is_refused_before_any_host_step(lab, kube, cluster):
    name = cluster.volume(unique("idn"))
    cluster.pv(owned_pv("node1", name, "idn-old-label", "%s/%s" % (ROOT, name)))
    before, since = host_state(lab, ["node1"]), now_rfc3339()
    res = lab.playbook("playbooks/site.yml", "--limit", "node1", extra_vars=base_vars(name))
    refused_before_any_host_step(lab, res, since, before, ["node1"])
    assert "node node1 now has the kubernetes.io/hostname label node1" in text(res)
    assert "pinned to idn-old-label" in text(res)


def test_a_foreign_pv_holding_the_volumes_pv_name_is_refused_before_any_host_step(lab, kube, cluster):
    name = cluster.volume(unique("idn"))
    cluster.pv(foreign_pv(naming.pv_name("node1", name), "node1", "/srv/elsewhere/%s" % name))
    before, since = host_state(lab, ["node1"]), now_rfc3339()
    res = lab.playbook("playbooks/site.yml", "--limit", "node1", extra_vars=base_vars(name))
    refused_before_any_host_step(lab, res, since, before, ["node1"])
    assert "would be PV %s" % naming.pv_name("node1", name) in text(res)


def test_a_foreign_pv_at_the_volume_path_is_refused_before_any_host_step(lab, kube, cluster):
    name = cluster.volume(unique("idn"))
    cluster.pv(foreign_pv("local-pv-" + name, "node1", "%s/%s" % (ROOT, name)))
    before, since = host_state(lab, ["node1"]), now_rfc3339()
    res = lab.playbook("playbooks/site.yml", "--limit", "node1", extra_vars=base_vars(name))
    refused_before_any_host_step(lab, res, since, before, ["node1"])
    assert "local-pv-%s" % name in text(res)


def test_an_empty_volume_list_for_a_host_with_our_pvs_is_refused_unless_meant(lab, kube, cluster):
    name = cluster.volume(unique("idn"))
    cluster.pv(owned_pv("node1", name, "node1", "%s/%s" % (ROOT, name)))
    empty = dict(base_vars(name), localpv_disks=[], pv_register_prune=True)
    since = now_rfc3339()
    res = lab.playbook("playbooks/site.yml", "--limit", "node1", extra_vars=empty)
    assert res.returncode != 0 and real_writes_by_us(lab, since) == []
    assert "host node1 (node node1) has no localpv_disks" in text(res) and naming.pv_name("node1", name) in text(res)
    assert "localpv_prune_empty: true" in text(res)
    meant = lab.playbook("playbooks/site.yml", "--limit", "node1", extra_vars=dict(empty, localpv_prune_empty=True))
    assert meant.returncode == 0, meant.stdout[-4000:]
    assert cluster.pvs_at("node1", "%s/%s" % (ROOT, name)) == []


# --- the provisioner's usual class ----------------------------------------------------------------

def test_the_provisioners_pvs_are_taken_over_with_its_delete_class_used_as_it_is(lab, kube, cluster):
    name = cluster.volume(unique("idn"))
    klass = unique("idn-fast-")
    cluster.storage_class({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                           "metadata": {"name": klass}, "provisioner": "kubernetes.io/no-provisioner",
                           "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"})
    cluster.pv(foreign_pv("local-pv-" + name, "node1", "%s/%s" % (ROOT, name), storage_class=klass))
    wanted = base_vars(name, localpv_take_over=True)
    named = lab.playbook("playbooks/site.yml", "--limit", "node1",
                         extra_vars=dict(wanted, localpv_storage_classes=[{"name": klass}]))
    assert named.returncode != 0
    assert "{name: %s, reclaim_policy: Delete, pv_reclaim_policy: Retain}" % klass in text(named)
    res = lab.playbook("playbooks/site.yml", "--limit", "node1", extra_vars=dict(wanted, localpv_storage_classes=[
        {"name": klass, "reclaim_policy": "Delete", "pv_reclaim_policy": "Retain"}]))
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-2000:]
    (pv,) = cluster.pvs_at("node1", "%s/%s" % (ROOT, name))
    assert pv.metadata.name == "local-pv-" + name and v.is_owned(kube.sanitize_for_serialization(pv))
    assert (pv.spec.storage_class_name, pv.spec.persistent_volume_reclaim_policy) == (klass, "Retain")
    assert client.StorageV1Api(kube).read_storage_class(klass).reclaim_policy == "Delete"
