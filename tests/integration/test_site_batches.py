# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""site.yml a batch of nodes at a time (localpv_batch): a node that fails stops the
run after its batch, the later batches are untouched (their disks byte for byte,
their PVs not written), and the same command finishes the job once the node is fixed."""

import hashlib

from kubernetes import client

from pv_helpers import MANAGED, now_rfc3339, writes_by_us
from test_local_pv_site import SITE_VARS
from test_local_pv_site import site_pvs  # noqa: F401  # pylint: disable=unused-import

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v

# node2's entries name a disk that is not there: disk_prep refuses that host
BROKEN_NODE2 = ("{{ lab_site_disks + ([{'name': 'gone0', 'device': '/dev/disk/by-id/wwn-0x5000c500deadbeef'}]"
                " if inventory_hostname == 'node2' else []) }}")


def digests(lab, host):
    """sha256 of every lab disk of ``host``, read whole from the machine's side."""
    out = {}
    for disk in lab.node(host)["disks"]:
        sha = hashlib.sha256()
        with open(disk["path"], "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                sha.update(block)
        out[disk["path"]] = sha.hexdigest()
    return out


def pv_names_of(kube, node):
    return sorted(pv.metadata.name for pv in client.CoreV1Api(kube).list_persistent_volume(
        label_selector=MANAGED).items if pv.metadata.labels.get(v.NODE_LABEL) == naming.label_value(node))


def forget_site_pvs(kube, site_pvs):  # noqa: F811
    """The unbound PVs of the site volumes deleted: the nodes start as new ones (their disks
    are blank already, see site_pvs)."""
    core = client.CoreV1Api(kube)
    names = set(naming.pv_name(node, name) for node, name in site_pvs)
    for pv in core.list_persistent_volume(label_selector=MANAGED).items:
        if pv.metadata.name in names:
            assert not pv.spec.claim_ref, "%s is bound: this test needs the site PVs unbound" % pv.metadata.name
            core.delete_persistent_volume(pv.metadata.name)


def test_a_failing_node_stops_the_batches_after_it_and_the_same_command_resumes(lab, kube, site_pvs):  # noqa: F811
    node_name = dict((n["host"], n["node_name"]) for n in lab.nodes)
    forget_site_pvs(kube, site_pvs)
    third = digests(lab, "node3")
    since = now_rfc3339()
    batched = dict(SITE_VARS, localpv_batch=1)
    res = lab.playbook("playbooks/site.yml", extra_vars=dict(batched, localpv_disks=BROKEN_NODE2))
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "wwn-0x5000c500deadbeef" in out and "NO MORE HOSTS LEFT" in out, out[-4000:]
    # batch 1 (node1) is done, batch 2 (node2) failed, batch 3 (node3) never started
    assert pv_names_of(kube, node_name["node1"]) != []
    assert pv_names_of(kube, node_name["node3"]) == []
    assert digests(lab, "node3") == third
    assert [e for e in writes_by_us(lab, since) if naming.label_value(node_name["node3"]) in e["objectRef"]["name"]] == []

    res = lab.playbook("playbooks/site.yml", extra_vars=batched)
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-3000:]
    made = set(pv_names_of(kube, node_name["node1"]) + pv_names_of(kube, node_name["node2"])
               + pv_names_of(kube, node_name["node3"]))
    assert set(naming.pv_name(node, name) for node, name in site_pvs) <= made


def test_the_gate_stops_on_a_pv_that_is_not_available_or_bound(lab, kube, site_pvs):  # noqa: F811
    node1 = lab.node("node1")["node_name"]
    forget_site_pvs(kube, site_pvs)
    res = lab.playbook("playbooks/site.yml", "--limit", "node1", extra_vars=SITE_VARS)
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-3000:]
    core = client.CoreV1Api(kube)
    victim = pv_names_of(kube, node1)[0]
    # a claim that was bound and deleted leaves the PV Released: the binder sets the phase
    core.patch_persistent_volume(victim, {"spec": {"claimRef": {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "default", "name": "gone",
        "uid": "00000000-0000-0000-0000-000000000001"}}})
    from pv_helpers import wait_until
    wait_until("%s Released" % victim, lambda: core.read_persistent_volume(victim).status.phase == "Released")
    try:
        res = lab.playbook("playbooks/site.yml", "--limit", "node1", extra_vars=dict(SITE_VARS, localpv_batch=1))
        assert res.returncode != 0
        assert "PV %s is Released" % victim in res.stdout and "reclaim.yml" in res.stdout, res.stdout[-4000:]
    finally:
        core.patch_persistent_volume(victim, {"spec": {"claimRef": None}})
