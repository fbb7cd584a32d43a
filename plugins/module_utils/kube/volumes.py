# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The volume model: the inventory's volumes and the PersistentVolume each becomes.

The naming rules these use (volume, node and PV names, label values, path
spellings) are in ``common/naming.py``, shared with the node side.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming
from ansible_collections.localpv.rollout.plugins.module_utils.common import sizes

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "localpv.rollout"
NODE_LABEL = "localpv.rollout/node"
VOLUME_LABEL = "localpv.rollout/volume"
HOSTNAME_LABEL = "kubernetes.io/hostname"


# --- The PersistentVolume a volume becomes -------------------------------------

STABLE_ID_ANNOTATION = "localpv.rollout/stable-id"
FS_UUID_ANNOTATION = "localpv.rollout/fs-uuid"
PARTUUID_ANNOTATION = "localpv.rollout/partuuid"
# What proves which disk a volume lives on; a bound PV's are never changed.
DISK_IDENTITY_ANNOTATIONS = (STABLE_ID_ANNOTATION, PARTUUID_ANNOTATION, FS_UUID_ANNOTATION)
# The extra labels the last run set, so that a label removed from the inventory is
# removed from the PV too (labels set by others are never touched).
EXTRA_LABELS_ANNOTATION = "localpv.rollout/extra-labels"

DEFAULT_STORAGE_CLASS = "local-storage"
DEFAULT_RECLAIM_POLICY = "Retain"
RECLAIM_POLICIES = ("Retain", "Delete")
VOLUME_MODES = {"filesystem": "Filesystem", "block": "Block"}
FSTYPES = ("xfs", "ext4", "ext3", "btrfs")

# The API server's quantities and the inputs' sizes share one grammar (sizes.py).
parse_quantity = sizes.parse_quantity


def labels_reasons(labels):
    reasons = []
    for key, value in (labels or {}).items():
        prefix, _sep, name = key.rpartition("/")
        if (prefix and naming.node_name_reasons(prefix)) or not name or not naming.is_label_value(name):
            reasons.append("label key %r is not a valid Kubernetes label key" % key)
        if not isinstance(value, str) or not naming.is_label_value(value):
            reasons.append("label %s=%r has no valid Kubernetes label value" % (key, value))
        if key in (MANAGED_BY_LABEL, NODE_LABEL, VOLUME_LABEL):
            reasons.append("label %s is set by localpv.rollout and cannot be given" % key)
    return reasons


# Units a capacity may be rounded down to (capacity_round_down).
ROUND_UNITS = ("Mi", "Gi", "Ti", "M", "G", "T")


def volume_capacity(item, defaults=None):
    """``(capacity, reasons)`` of one desired volume: its bytes, rounded down to
    ``defaults["capacity_round_down"]`` (a unit of :data:`ROUND_UNITS`) when
    asked, so that a claim for "N Gi" behaves predictably. A null capacity is
    an error naming what to do, or, with ``defaults["capacity_unknown_ok"]``
    (check mode, before anything is mounted), None: "known after apply"."""
    defaults = defaults or {}
    given = item.get("capacity")
    if given is None:
        if defaults.get("capacity_unknown_ok"):
            return None, []
        return None, ["no capacity: the volume is not mounted yet, or it is a bind volume measured by device "
                      "(give a bind volume an explicit capacity)"]
    if isinstance(given, bool) or not isinstance(given, (int, str)):
        return None, ["capacity %r is not a positive number of bytes" % (given,)]
    try:
        capacity = sizes.parse_size(given)
    except ValueError as exc:
        return None, ["capacity %s" % exc]
    if capacity <= 0:
        return None, ["capacity %r is not a positive number of bytes" % (given,)]
    unit = defaults.get("capacity_round_down")
    if unit:
        rounded = capacity // sizes.UNITS[unit] * sizes.UNITS[unit]
        if rounded <= 0:
            return None, ["capacity %d bytes is less than one %s, the unit capacity_round_down rounds down to"
                          % (capacity, unit)]
        capacity = rounded
    return capacity, []


def normalize_volume(item, defaults=None):
    """Check one desired volume and fill in defaults.

    ``item`` is one entry of ``localpv_volumes`` plus ``node``. Returns
    ``(volume, reasons)``: a normalized dict, and why it cannot become a PV
    (empty when it can). Nothing here talks to the cluster.
    """
    defaults = defaults or {}
    reasons = []
    node = item.get("node")
    name = item.get("name")
    reasons += ["node: %s" % r for r in naming.node_name_reasons(node)]
    reasons += ["name: %s" % r for r in naming.volume_name_reasons(name)]
    path = naming.canonical_path(item.get("path"))
    if path is None:
        reasons.append("path %r is not an absolute path" % (item.get("path"),))
    mode = item.get("mode") or "filesystem"
    if mode not in VOLUME_MODES:
        reasons.append("mode %r is not one of %s" % (mode, ", ".join(sorted(VOLUME_MODES))))
    fstype = item.get("fstype") or None
    if mode == "block":
        fstype = None
    elif fstype is not None and fstype not in FSTYPES:
        reasons.append("fstype %r is not one of %s" % (fstype, ", ".join(FSTYPES)))
    capacity, why = volume_capacity(item, defaults)
    reasons += why
    storage_class = item.get("storage_class") or defaults.get("storage_class") or DEFAULT_STORAGE_CLASS
    if naming.node_name_reasons(storage_class):
        reasons.append("storage_class %r is not a valid StorageClass name" % (storage_class,))
    reclaim = item.get("reclaim_policy") or defaults.get("reclaim_policy") or DEFAULT_RECLAIM_POLICY
    if reclaim not in RECLAIM_POLICIES:
        reasons.append("reclaim_policy %r is not one of %s" % (reclaim, ", ".join(RECLAIM_POLICIES)))
    labels = dict(defaults.get("labels") or {})
    labels.update(item.get("labels") or {})
    reasons += labels_reasons(labels)
    volume = {
        "node": node,
        "name": name,
        "path": path,
        "mode": mode,
        "fstype": fstype,
        "capacity": capacity,
        "storage_class": storage_class,
        "reclaim_policy": reclaim,
        "labels": labels,
        "stable_id": item.get("stable_id") or None,
        "uuid": item.get("uuid") or None,
        "partuuid": item.get("partuuid") or None,
    }
    if not reasons:
        volume["pv_name"] = naming.pv_name(node, name)
    return volume, reasons


def _shared(volume, shared):
    """The volume with its repeated values (node names, paths, names, label sets:
    a fleet repeats each many times) as one object each, from ``shared``: a run
    over 100,000 volumes keeps a few thousand strings and label dicts, not
    100,000 copies. Label dicts are shared, so never changed in place."""
    for key in ("node", "name", "path"):
        if isinstance(volume[key], str):
            volume[key] = shared.setdefault(volume[key], volume[key])
    try:
        labels = tuple(sorted(volume["labels"].items()))
        volume["labels"] = shared.setdefault(labels, volume["labels"])
    except TypeError:   # a value that is no string: its reasons say so, nothing to share
        pass
    return volume


def normalize_volumes(items, defaults=None):
    """Check the whole desired set. Returns ``(volumes, errors)``; ``errors`` are
    sentences naming the node and volume, and include duplicate PV names."""
    volumes, errors = [], []
    shared = {}
    for index, item in enumerate(items or []):
        volume, reasons = normalize_volume(item, defaults)
        if reasons:
            errors.append("volume %s of node %s (item %d): %s" % (
                item.get("name"), item.get("node"), index, "; ".join(reasons)))
        volumes.append(_shared(volume, shared))
    if not errors:
        for dup in naming.duplicate_names([v["pv_name"] for v in volumes]):
            owners = ["%s/%s" % (v["node"], v["name"]) for v in volumes if v["pv_name"] == dup]
            errors.append("PV name %s is wanted more than once (%s)" % (dup, ", ".join(owners)))
        for dup in naming.duplicate_names(["%s:%s" % (v["node"], v["path"]) for v in volumes]):
            owners = ["%s/%s" % (v["node"], v["name"]) for v in volumes if "%s:%s" % (v["node"], v["path"]) == dup]
            errors.append("path %s is wanted by more than one volume (%s): one disk, one PV" % (dup, ", ".join(owners)))
    return volumes, errors


def node_affinity(hostname_value):
    """The nodeAffinity of a local PV: the node's ``kubernetes.io/hostname`` label value."""
    return {"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": HOSTNAME_LABEL, "operator": "In", "values": [hostname_value]}]}]}}


def affinity_hostname(pv):
    """The single ``kubernetes.io/hostname`` value a PV's nodeAffinity pins it to, or None."""
    try:
        terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        values = [v for t in terms for e in t.get("matchExpressions") or []
                  if e.get("key") == HOSTNAME_LABEL and e.get("operator") == "In" for v in e.get("values") or []]
    except (KeyError, TypeError):
        return None
    return values[0] if len(values) == 1 else None


def resolve_hostnames(nodes, cluster_nodes, existing=None, overrides=None):
    """Decide the ``kubernetes.io/hostname`` value each node's PVs are pinned to.

    In order: an explicit override; the label of the Node object with that name
    (from one LIST of Nodes); for a node that has not joined (yet), the value its
    existing PVs already carry (``existing``: ``{node label value: set of
    hostname values}`` of owned PVs), so that a node leaving the cluster for a
    while never turns into a change; else the node name itself, which is what
    the kubelet sets when no hostname override is used.

    Returns ``{node: (value, source)}`` with source one of ``override``,
    ``node-label``, ``existing-pv``, ``node-name``.
    """
    overrides = overrides or {}
    existing = existing or {}
    labels = {}
    for obj in cluster_nodes or ():
        meta = obj.get("metadata") or {}
        value = (meta.get("labels") or {}).get(HOSTNAME_LABEL)
        if meta.get("name") and value:
            labels[meta["name"]] = value
    result = {}
    for node in nodes:
        if overrides.get(node):
            result[node] = (overrides[node], "override")
        elif node in labels:
            result[node] = (labels[node], "node-label")
        elif len(existing.get(naming.label_value(node), ())) == 1:
            result[node] = (next(iter(existing[naming.label_value(node)])), "existing-pv")
        else:
            result[node] = (node, "node-name")
    return result


def pv_labels(volume):
    labels = dict(volume.get("labels") or {})
    labels[MANAGED_BY_LABEL] = MANAGED_BY_VALUE
    labels[NODE_LABEL] = naming.label_value(volume["node"])
    labels[VOLUME_LABEL] = naming.label_value(volume["name"])
    return labels


def pv_annotations(volume):
    annotations = {}
    if volume.get("labels"):
        annotations[EXTRA_LABELS_ANNOTATION] = ",".join(sorted(volume["labels"]))
    if volume.get("stable_id"):
        annotations[STABLE_ID_ANNOTATION] = volume["stable_id"]
    if volume.get("uuid"):
        annotations[FS_UUID_ANNOTATION] = volume["uuid"]
    if volume.get("partuuid"):
        annotations[PARTUUID_ANNOTATION] = volume["partuuid"]
    return annotations


ACCESS_MODES = ("ReadWriteOnce",)


def _local_source(volume):
    local = {"path": volume["path"]}
    if volume["mode"] == "filesystem" and volume.get("fstype"):
        local["fsType"] = volume["fstype"]
    return local


def pv_manifest(volume, hostname_value):
    """The PersistentVolume object for a normalized ``volume`` pinned to ``hostname_value``."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": volume["pv_name"],
            "labels": pv_labels(volume),
            "annotations": pv_annotations(volume),
        },
        "spec": {
            "capacity": {"storage": str(volume["capacity"])} if volume["capacity"] is not None else {},
            "accessModes": list(ACCESS_MODES),
            "volumeMode": VOLUME_MODES[volume["mode"]],
            "persistentVolumeReclaimPolicy": volume["reclaim_policy"],
            "storageClassName": volume["storage_class"],
            "local": _local_source(volume),
            "nodeAffinity": node_affinity(hostname_value),
        },
    }


def wanted_view(volume, hostname_value):
    """``pv_view(pv_manifest(volume, hostname_value))`` without its name, made
    straight from the volume: a re-run compares every listed PV with the volume
    at its place, and building and reading a whole manifest for each cost more
    than the rest of that comparison."""
    return {
        "labels": pv_labels(volume),
        "annotations": pv_annotations(volume),
        "capacity": volume["capacity"],
        "accessModes": list(ACCESS_MODES),
        "volumeMode": VOLUME_MODES[volume["mode"]],
        "persistentVolumeReclaimPolicy": volume["reclaim_policy"],
        "storageClassName": volume["storage_class"] or "",
        "local": _local_source(volume),
        "nodeAffinity": node_affinity(hostname_value),
    }


def is_owned(pv):
    """Whether a PV (or any object) carries our managed-by label."""
    return ((pv.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE


def claim_of(pv):
    """``namespace/name`` of the claim a PV is bound (or reserved) to, or None."""
    ref = (pv.get("spec") or {}).get("claimRef")
    if not ref:
        return None
    return "%s/%s" % (ref.get("namespace") or "", ref.get("name") or "")


def pv_view(pv):
    """The part of a PV this collection manages, for diffs and comparisons."""
    meta = pv.get("metadata") or {}
    spec = pv.get("spec") or {}
    annotations = meta.get("annotations") or {}
    ours = DISK_IDENTITY_ANNOTATIONS + (EXTRA_LABELS_ANNOTATION,)
    local = dict(spec.get("local") or {})
    capacity = (spec.get("capacity") or {}).get("storage")
    return {
        "name": meta.get("name"),
        "labels": dict(meta.get("labels") or {}),
        "annotations": dict((k, v) for k, v in annotations.items() if k in ours),
        "capacity": parse_quantity(capacity) if capacity is not None else None,
        "accessModes": list(spec.get("accessModes") or []),
        "volumeMode": spec.get("volumeMode") or "Filesystem",
        "persistentVolumeReclaimPolicy": spec.get("persistentVolumeReclaimPolicy"),
        "storageClassName": spec.get("storageClassName") or "",
        "local": local,
        "nodeAffinity": spec.get("nodeAffinity"),
    }


def compare_pv(desired, existing):
    """Compare a desired PV manifest with the PV on the server.

    Returns ``(immutable, patch)``: the names of the fields that differ and that
    the API server does not let change in place (``spec.local``,
    ``spec.volumeMode``, ``spec.nodeAffinity``; ``spec.storageClassName``,
    which we never move under a claim), and a JSON merge patch for the others
    (None when nothing differs): labels, our annotations, reclaim policy,
    access modes and capacity. Labels and annotations that others set are
    left alone; extra labels this collection set earlier and that are no longer
    wanted are removed.
    """
    want, have = pv_view(desired), pv_view(existing)
    immutable = []
    # another spelling of the same directory is the same path (spec.local.path is
    # immutable: a PV made with "/mnt/disks/x/" keeps that spelling for good)
    if naming.canonical_path(want["local"].get("path")) != naming.canonical_path(have["local"].get("path")) or \
            want["local"].get("fsType") != have["local"].get("fsType"):
        immutable.append("spec.local")
    if want["volumeMode"] != have["volumeMode"]:
        immutable.append("spec.volumeMode")
    if want["nodeAffinity"] != have["nodeAffinity"]:
        immutable.append("spec.nodeAffinity")
    if want["storageClassName"] != have["storageClassName"]:
        immutable.append("spec.storageClassName")

    labels = {}
    for key, value in want["labels"].items():
        if have["labels"].get(key) != value:
            labels[key] = value
    previous = [k for k in have["annotations"].get(EXTRA_LABELS_ANNOTATION, "").split(",") if k]
    for key in previous:
        if key not in want["labels"] and key in have["labels"]:
            labels[key] = None
    annotations = {}
    for key in DISK_IDENTITY_ANNOTATIONS + (EXTRA_LABELS_ANNOTATION,):
        if want["annotations"].get(key) != have["annotations"].get(key):
            annotations[key] = want["annotations"].get(key)
    patch = {}
    if labels or annotations:
        patch["metadata"] = {}
        if labels:
            patch["metadata"]["labels"] = labels
        if annotations:
            patch["metadata"]["annotations"] = annotations
    spec = {}
    if want["persistentVolumeReclaimPolicy"] != have["persistentVolumeReclaimPolicy"]:
        spec["persistentVolumeReclaimPolicy"] = want["persistentVolumeReclaimPolicy"]
    if want["accessModes"] != have["accessModes"]:
        spec["accessModes"] = want["accessModes"]
    # The API server allows a PV's capacity to change in place (unknown: not compared).
    if want["capacity"] is not None and want["capacity"] != have["capacity"]:
        spec["capacity"] = {"storage": str(want["capacity"])}
    if spec:
        patch["spec"] = spec
    return immutable, (patch or None)


def identity_changes(desired, existing):
    """The disk-identity annotations (stable id, partition UUID, filesystem UUID)
    that ``existing`` records and ``desired`` would change or remove, as
    ``[(annotation, have, want)]``. A PV that records none yet gets them added:
    that is no change."""
    want, have = pv_view(desired)["annotations"], pv_view(existing)["annotations"]
    return [(key, have[key], want.get(key)) for key in DISK_IDENTITY_ANNOTATIONS
            if have.get(key) and want.get(key) != have[key]]


def recorded_identity(pv):
    """``(node label, volume label, record)`` of what one PV of ours records about the
    disk of its volume (``record``: ``{pv, stable_id, partuuid, fs_uuid, claim}``), or
    None for a PV that is not ours or lacks those labels."""
    meta = pv.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE or not labels.get(NODE_LABEL) or not labels.get(VOLUME_LABEL):
        return None
    notes = meta.get("annotations") or {}
    return labels[NODE_LABEL], labels[VOLUME_LABEL], {
        "pv": meta.get("name"), "stable_id": notes.get(STABLE_ID_ANNOTATION),
        "partuuid": notes.get(PARTUUID_ANNOTATION), "fs_uuid": notes.get(FS_UUID_ANNOTATION),
        "claim": claim_of(pv)}


def recorded_identities(pvs, nodes=()):
    """What our PVs record about the disks of their volumes, for the hosts' next
    run: ``{node: {volume: {pv, stable_id, partuuid, fs_uuid, claim}}}``, by the
    PVs' node and volume labels (node names of ``nodes`` where their label value
    differs from the name)."""
    node_of = dict((naming.label_value(node), node) for node in nodes)
    out = {}
    for pv in pvs:
        found = recorded_identity(pv)
        if found is not None:
            label, volume, record = found
            out.setdefault(node_of.get(label, label), {})[volume] = record
    return out
