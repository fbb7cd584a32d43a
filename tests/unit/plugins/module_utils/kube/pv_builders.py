# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Volumes and PVs as the kube tests build them: a normalised volume, a PV as the API
server or the local static provisioner returns it, and a PV plan against a cluster.
Shared by the test modules of this folder, which import it by name (pytest puts this
folder on sys.path); plain functions, not fixtures, since tests call them with arguments."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import copy

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming
from ansible_collections.localpv.rollout.plugins.module_utils.kube import persistent_volumes as pvs
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v

GIB = 2 ** 30


def vol(node="node1", name="ssd0", **kw):
    item = dict(node=node, name=name, path="/mnt/disks/%s" % name, mode="filesystem", fstype="xfs",
                capacity=10 * GIB, storage_class="local-storage")
    item.update(kw)
    volume, reasons = v.normalize_volume(item)
    assert reasons == []
    return volume


def server_copy(manifest, uid="u-1", **spec):
    """A PV as the API server returns it: defaults, status, canonical quantity."""
    pv = copy.deepcopy(manifest)
    pv["metadata"].update(uid=uid, resourceVersion="7", finalizers=["kubernetes.io/pv-protection"])
    pv["spec"]["capacity"]["storage"] = "10Gi"
    pv["status"] = {"phase": "Available"}
    pv["spec"].update(spec)
    return pv


def provisioner_pv(name="local-pv-5a1c2e7b", hostname="node1", path="/mnt/disks/ssd0", claim=None):
    """A PV as the local static provisioner makes it: its own name, its annotation, no labels of ours."""
    pv = {"metadata": {"name": name, "uid": "u-" + name, "resourceVersion": "3",
                       "annotations": {pvs.PROVISIONED_BY_ANNOTATION: "local-volume-provisioner-node1-0c1d"},
                       "labels": {"kubernetes.io/hostname": hostname}},
          "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
                   "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "local-storage",
                   "local": {"path": path, "fsType": "xfs"}, "nodeAffinity": v.node_affinity(hostname)},
          "status": {"phase": "Bound" if claim else "Available"}}
    if claim:
        pv["spec"]["claimRef"] = {"namespace": "app", "name": claim, "uid": "c-" + claim}
    return pv


def hostnames(*nodes):
    return dict((n, (n, "node-label")) for n in nodes)


def plan(volumes, cluster, scope=("node1",), names=None, **kw):
    index = pvs.PvIndex(volumes, [naming.label_value(n) for n in scope])
    for pv in cluster:
        index.add(pv)
    return pvs.plan_pvs(volumes, names or hostnames(*scope), index, list(scope), **kw)
