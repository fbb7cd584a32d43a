# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""site.yml end to end on the lab nodes: disks prepared by disk_prep, then one PV per
prepared volume registered by pv_register; a second run changes nothing and sends no
write to the API server."""

import json

import pytest
from kubernetes import client

from pv_helpers import MANAGED, forget_unbound_pvs, now_rfc3339, writes_by_us

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming
from ansible_collections.localpv.rollout.plugins.module_utils.common import sizes
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v

# Prune is left off: other tests make PVs of their own on the same lab nodes at the
# same time, and pruning is tested on nodes of its own in test_local_pv.py.
# as the lab's site-vars.yml: its nodes have no udev, so the block volume opts in to kernel names
SITE_VARS = {"localpv_disks": "{{ lab_site_disks }}", "pv_register_prune": False, "localpv_allow_kernel_names": True}


def expected_volumes(lab):
    """{(node name, volume name): mode} of what site.yml prepares on each lab node."""
    import yaml
    with open(lab.inventory) as f:
        hosts = yaml.safe_load(f)["all"]["children"]["nodes"]["hosts"]
    wanted = {}
    for host, hv in hosts.items():
        for disk in hv.get("lab_site_disks") or []:
            names = ["%s-%d" % (disk["name"], i) for i in range(1, disk["partitions"] + 1)] \
                if disk.get("partitions") else [disk["name"]]
            for name in names:
                wanted[(hv.get("localpv_node_name") or host, name)] = (host, disk)
    return wanted


def node_size(lab, host, path, mode):
    """Bytes the node itself reports for a prepared volume: the filesystem size
    (statvfs) of a mount, the device size of a block volume."""
    if mode == "block":
        cmd = "blockdev --getsize64 $(readlink -f %s)" % path
    else:
        cmd = "python3 -c 'import os; s = os.statvfs(\"%s\"); print(s.f_blocks * s.f_frsize)'" % path
    res = lab.ssh(host, cmd)
    assert res.returncode == 0, res.stderr
    return int(res.stdout.strip())


@pytest.fixture
def site_pvs(lab, kube):
    """The PVs of the lab nodes' site volumes; deleted afterwards when unbound."""
    wanted = expected_volumes(lab)
    names = set(naming.pv_name(node, name) for node, name in wanted)
    # site.yml meets the nodes as a provisioning pipeline does: blank disks and no PVs
    forget_unbound_pvs(kube, names)
    lab.wipe_disks()
    yield wanted
    forget_unbound_pvs(kube, names)
    lab.wipe_disks()


def report_block(stdout):
    """The lines of the printed report (a YAML block in the output)."""
    start = stdout.index("Local volumes per node")
    lines = []
    for line in stdout[start:].splitlines():
        if not line.strip():
            break
        lines.append(line)
    return lines


def test_site_makes_one_pv_per_prepared_volume_and_a_rerun_changes_nothing(lab, kube, site_pvs, tmp_path):
    report_dir = tmp_path / "report"
    res = lab.playbook("playbooks/site.yml", extra_vars=dict(SITE_VARS, localpv_report_dir=str(report_dir)))
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-3000:]
    # the table of volumes per node: printed once, every line of the output within 100 columns
    assert res.stdout.count("Local volumes per node") == 1
    table = report_block(res.stdout)
    assert "PHASE" in table[1] and max(len(line) for line in table) <= 100, "\n".join(table)
    done = json.loads((report_dir / "site.json").read_text())
    rows = dict(((n["node"], r["volume"]), r) for n in done["nodes"] for r in n["volumes"])
    for key in site_pvs:
        assert rows[key]["pv"] == naming.pv_name(*key) and rows[key]["phase"] == "Available", rows[key]
        assert rows[key]["device"] and rows[key]["mount"] == "/mnt/disks/%s" % key[1]
    assert (report_dir / "site.md").read_text().startswith("# Local volumes per node")

    # --check on the prepared nodes: the report is the plan, nothing to do
    plan = lab.playbook("playbooks/site.yml", "--check", extra_vars=dict(SITE_VARS, localpv_report_dir=str(report_dir)))
    assert plan.returncode == 0, plan.stdout[-5000:] + plan.stderr[-3000:]
    planned = json.loads((report_dir / "site-plan.json").read_text())
    assert planned["planned"] and "planned (check mode" in plan.stdout
    rows = dict(((n["node"], r["volume"]), r) for n in planned["nodes"] for r in n["volumes"])
    for key in site_pvs:
        assert (rows[key]["action"], rows[key]["phase"]) == ("none", "Available"), rows[key]

    hostname = dict((n["node_name"], n["hostname_label"]) for n in lab.nodes)
    nodes = set(node for node, _volume in site_pvs)
    core = client.CoreV1Api(kube)
    ours = [pv for pv in core.list_persistent_volume(label_selector=MANAGED).items
            if pv.metadata.labels.get(v.NODE_LABEL) in nodes]
    got = dict(((pv.metadata.labels[v.NODE_LABEL], pv.metadata.labels[v.VOLUME_LABEL]), pv) for pv in ours
               if (pv.metadata.labels[v.NODE_LABEL], pv.metadata.labels[v.VOLUME_LABEL]) in site_pvs)
    # one PV per prepared volume, and no other PV of ours points at one of their paths
    assert sorted(got) == sorted(site_pvs)
    paths = [(pv.metadata.labels[v.NODE_LABEL], pv.spec.local.path) for pv in ours]
    assert len(paths) == len(set(paths)), paths
    for (node, name), (host, disk) in site_pvs.items():
        pv = got[(node, name)]
        mode = disk.get("mode", "filesystem")
        assert pv.metadata.name == naming.pv_name(node, name)
        assert pv.spec.local.path == "/mnt/disks/%s" % name
        assert pv.spec.volume_mode == ("Block" if mode == "block" else "Filesystem")
        if disk.get("fstype"):
            assert pv.spec.local.fs_type == disk["fstype"]
        assert pv.spec.storage_class_name == "local-storage"
        assert pv.spec.persistent_volume_reclaim_policy == "Retain"
        # a bind volume's explicit capacity is what it offers (its filesystem is the node's root)
        expected = (sizes.parse_size(disk["capacity"]) if disk.get("capacity")
                    else node_size(lab, host, pv.spec.local.path, mode))
        assert v.parse_quantity(pv.spec.capacity["storage"]) == expected
        assert v.affinity_hostname({"spec": {"nodeAffinity": kube.sanitize_for_serialization(
            pv.spec.node_affinity)}}) == hostname[node]
    sc = client.StorageV1Api(kube).read_storage_class("local-storage")
    assert (sc.provisioner, sc.volume_binding_mode) == ("kubernetes.io/no-provisioner", "WaitForFirstConsumer")

    since = now_rfc3339()
    again = lab.playbook("playbooks/site.yml", extra_vars=SITE_VARS)
    assert again.returncode == 0, again.stdout[-5000:] + again.stderr[-3000:]
    assert all(r["changed"] == 0 for r in again.recap.values()), again.recap
    # (other tests may write their own objects meanwhile: look at ours only)
    assert writes_by_us(lab, since, names=set(pv.metadata.name for pv in got.values())) == []
    assert writes_by_us(lab, since, resource="storageclasses", names={"local-storage"}) == []
