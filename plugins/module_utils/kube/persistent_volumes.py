# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Local PersistentVolumes on the cluster: identity, plan, writes, prune, report.

One disk, one PV: a PV's identity is the ``kubernetes.io/hostname`` value its
nodeAffinity pins it to plus its ``spec.local.path``, across every PV of the
cluster, whoever made it. A run reads every PV in one paginated LIST, streamed
into a :class:`PvIndex` that keeps only what the plan needs (the names of all
PVs, the PVs at the paths the run wants, and the owned PVs of the nodes in
scope), each in a compact form (:class:`Listed`), so memory does not grow with
full objects: 100,000 PVs fit in a few hundred MiB.

Then a plan (:func:`plan_pvs`, pure), a validation of everything the API
server would refuse (:func:`validate_plan`), and only then the writes, each
reported only once the API server confirmed it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming

from ansible_collections.localpv.rollout.plugins.module_utils.common.errors import KubeError
from ansible_collections.localpv.rollout.plugins.module_utils.common.waiter import Waiter, WaitTimeout
from ansible_collections.localpv.rollout.plugins.module_utils.kube import storage_classes as sc
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as vol
from ansible_collections.localpv.rollout.plugins.module_utils.kube import workloads

PROVISIONED_BY_ANNOTATION = "pv.kubernetes.io/provisioned-by"
# Pages of the LIST of every PV: bigger than the default page, because this LIST
# also carries the PVs of others; a page of 1000 PVs is about 2 MB of JSON.
PV_PAGE_SIZE = 1000
WRITE_ACTIONS = ("create", "patch", "take_over", "replace", "delete")
# The fields of a bound PV a run may change: a claim was matched against its
# capacity and access modes, so those stay as they are while it is bound.
BOUND_SAFE_SPEC = ("persistentVolumeReclaimPolicy",)


_path_key = naming.canonical_path


def _path(pv):
    path = ((pv.get("spec") or {}).get("local") or {}).get("path")
    return _path_key(path) if isinstance(path, str) else None


def identity(pv):
    """``(hostname value, local path)`` of a local PV, or None for any other PV."""
    path = _path(pv)
    return (vol.affinity_hostname(pv), path) if path else None


owned = vol.is_owned


def _slim(pv):
    """The part of a PV the plan, the diff and the writes read: a PV-shaped dict."""
    meta, spec = pv.get("metadata") or {}, pv.get("spec") or {}
    keep = ("name", "uid", "resourceVersion", "labels", "deletionTimestamp", "finalizers")
    slim_meta = dict((key, meta[key]) for key in keep if key in meta)
    slim_meta["annotations"] = dict((k, v) for k, v in (meta.get("annotations") or {}).items()
                                    if k.startswith("localpv.rollout/") or k == PROVISIONED_BY_ANNOTATION)
    ref = spec.get("claimRef")
    slim_spec = dict((k, v) for k, v in spec.items() if k != "claimRef")
    if ref:
        slim_spec["claimRef"] = dict((k, ref.get(k)) for k in ("namespace", "name", "uid"))
    return {"metadata": slim_meta, "spec": slim_spec, "status": {"phase": (pv.get("status") or {}).get("phase")}}


def managed_view(pv):
    """The part of a PV this collection manages, its name aside: a PV whose view
    equals that of the manifest wanted at its place needs no change."""
    view = vol.pv_view(pv)
    view.pop("name", None)
    if "path" in view["local"]:   # compared as the directory it names, whatever its spelling
        view["local"]["path"] = naming.canonical_path(view["local"]["path"])
    return view


_PHASES = {}


class Listed:
    """One PV of the index, compact, with what the plan looks at for every PV: its
    name, whether it is being deleted, its claim, and for an owned PV its node and
    volume labels.

    A PV found equal to the manifest wanted at its place (its managed view, under
    the hostname it is pinned to) is *settled*: it keeps no body, only the volume
    it matches (``wanted``), its hostname, uid and resourceVersion, from which
    :meth:`pv` rebuilds every field a plan reads. Any other PV keeps its slim form
    as JSON text. In a re-run almost every PV is settled, so the index costs a few
    hundred bytes a PV, and the plan compares nothing twice.
    """

    __slots__ = ("name", "text", "deleting", "claim", "owner", "uid", "version", "wanted", "hostname", "phase",
                 "claim_uid")

    def __init__(self, pv, owner=None, wanted=None, hostname=None):
        meta = pv.get("metadata") or {}
        self.name = meta.get("name")
        self.deleting = bool(meta.get("deletionTimestamp"))
        self.claim = vol.claim_of(pv)
        self.owner = owner
        self.wanted, self.hostname = wanted, hostname
        phase = (pv.get("status") or {}).get("phase")
        self.phase = _PHASES.setdefault(phase, phase)   # one string per phase, not one per PV
        self.claim_uid = ((pv.get("spec") or {}).get("claimRef") or {}).get("uid") if self.claim else None
        if wanted is None:
            self.text = json.dumps(_slim(pv), separators=(",", ":"))
            self.uid = self.version = None
        else:
            self.text = None
            self.uid, self.version = meta.get("uid"), meta.get("resourceVersion")

    @property
    def settled(self):
        return self.wanted is not None

    def pv(self):
        """The slim PV (a PV-shaped dict), made anew on each call."""
        if self.text is not None:
            return json.loads(self.text)
        pv = vol.pv_manifest(self.wanted, self.hostname)
        pv["metadata"].update(name=self.name, uid=self.uid, resourceVersion=self.version)
        pv["status"] = {"phase": self.phase}
        if self.claim:
            namespace, name = self.claim.split("/", 1)
            pv["spec"]["claimRef"] = {"namespace": namespace, "name": name, "uid": self.claim_uid}
        return pv


class PvIndex:
    """What one LIST of every PV tells a run, fed one PV at a time (:meth:`add`).

    ``volumes``: the volumes the run wants (normalized); ``scope_labels``: the
    ``localpv.rollout/node`` label values of the nodes in scope. Keeps the names
    of all PVs, the PVs at the wanted paths (any owner), the owned PVs of the
    nodes in scope (each as a :class:`Listed`), and per node label the hostname
    values of owned PVs; nothing else.
    """

    def __init__(self, volumes=(), scope_labels=()):
        self.wanted = {}   # (node label, path): the first volume that wants it
        for volume in volumes:
            self.wanted.setdefault((naming.label_value(volume["node"]), _path_key(volume["path"])), volume)
        self.paths = set(path for _label, path in self.wanted)
        self.scope_labels = set(scope_labels)
        self.reset()

    def reset(self):
        self.count = 0
        self.names = set()
        self.at_path = {}      # (hostname value, path): PVs there; every node of a fleet has the same paths
        self.owned = {}
        self.owned_hostnames = {}

    def add(self, pv):
        meta = pv.get("metadata") or {}
        self.count += 1
        self.names.add(meta.get("name"))
        mine = owned(pv)
        labels = meta.get("labels") or {}
        label = labels.get(vol.NODE_LABEL)
        path = _path(pv)
        wanted_path = path in self.paths
        # read only for the PVs kept: most PVs of a big cluster are neither ours nor at our paths
        hostname = vol.affinity_hostname(pv) if (mine and label) or wanted_path else None
        if mine and label and hostname:
            self.owned_hostnames.setdefault(label, set()).add(hostname)
        in_scope = mine and label in self.scope_labels
        if not in_scope and not wanted_path:
            return
        owner = (label, labels.get(vol.VOLUME_LABEL)) if mine else None
        wanted = self.wanted.get((label, path)) if mine and wanted_path and not meta.get("deletionTimestamp") else None
        if wanted is not None and managed_view(pv) != vol.wanted_view(wanted, hostname):
            wanted = None
        listed = Listed(pv, owner, wanted, hostname)
        if wanted_path:
            self.at_path.setdefault((hostname, path), []).append(listed)
        if in_scope:
            self.owned[listed.name] = listed

    def at(self, hostname, path):
        """The PVs (as :class:`Listed`) of any owner at ``path`` on the node of ``hostname``."""
        return self.at_path.get((hostname, _path_key(path)), [])

    def owned_by_volume(self):
        """``{(node label, volume label): [owned PVs as Listed, by name]}``: where a
        volume's PV went when its path or hostname changed, in one pass."""
        found = {}
        for name in sorted(self.owned):
            found.setdefault(self.owned[name].owner, []).append(self.owned[name])
        return found


def read_cluster(kube, volumes, scope_nodes):
    """One LIST of Nodes and one streamed LIST of every PV: ``(cluster_nodes, index)``."""
    cluster_nodes = kube.list_nodes()
    index = PvIndex(volumes, [naming.label_value(n) for n in scope_nodes])
    kube.scan_pvs(index.add, start=index.reset, limit=PV_PAGE_SIZE)
    return cluster_nodes, index


# --- The plan --------------------------------------------------------------------

def _describe(pv):
    """A PV as a user recognises it: name, owner, claim."""
    meta = pv.get("metadata") or {}
    bits = []
    if not owned(pv):
        by = (meta.get("annotations") or {}).get(PROVISIONED_BY_ANNOTATION)
        bits.append("not managed by localpv.rollout" + (", provisioned by %s" % by if by else ""))
    else:
        bits.append("of node %s" % (meta.get("labels") or {}).get(vol.NODE_LABEL))
    if vol.claim_of(pv):
        bits.append("bound to claim %s" % vol.claim_of(pv))
    return "PV %s (%s)" % (meta.get("name"), ", ".join(bits))


def _split_bound_patch(patch):
    """``(safe, held)`` of a merge patch for a bound PV: metadata and the reclaim
    policy may change; the other spec fields are held (named in ``held``)."""
    spec = dict((patch or {}).get("spec") or {})
    held = sorted("spec." + key for key in spec if key not in BOUND_SAFE_SPEC)
    safe = dict((k, v) for k, v in (patch or {}).items() if k != "spec")
    kept = dict((k, v) for k, v in spec.items() if k in BOUND_SAFE_SPEC)
    if kept:
        safe["spec"] = kept
    return (safe or None), held


def plan_existing(base, existing, replace_unbound=False, take_over=False):
    """The action for a wanted volume whose PV ``existing`` is already there."""
    name = existing["metadata"]["name"]
    base = dict(base, name=name, existing=existing, claim=vol.claim_of(existing))
    if existing["metadata"].get("deletionTimestamp"):
        return dict(base, action="conflict", reason="%s is being deleted (finalizers %s); run again once it is "
                    "gone" % (_describe(existing), ", ".join(existing["metadata"].get("finalizers") or []) or "none"))
    immutable, patch = vol.compare_pv(manifest_of(base), existing)
    if immutable:
        if base["claim"]:
            reason = "%s needs %s changed, which cannot change in place, and a bound PV is never deleted; " \
                     "free the claim first (see decommission)" % (_describe(existing), ", ".join(immutable))
        elif take_over:
            reason = "%s differs in %s, which cannot change in place; a PV that is not ours is never deleted: " \
                     "make the volume match it, or delete it yourself" % (_describe(existing), ", ".join(immutable))
        elif not replace_unbound:
            reason = "%s needs %s changed, which the API server only allows by deleting and creating it; it " \
                     "is not bound, set replace_unbound=true to replace it" % (_describe(existing), ", ".join(immutable))
        else:
            return dict(base, action="replace", changes=immutable)
        return dict(base, action="conflict", changes=immutable, reason=reason)
    held = []
    if base["claim"]:
        changes = vol.identity_changes(manifest_of(base), existing)
        if changes:
            return dict(base, action="conflict", changes=[key for key, _h, _w in changes], reason=(
                "%s records the disk its volume lives on (%s); this run would change that to %s. The disk of a "
                "bound PV never changes: its claim keeps the old disk's data. Point the volume's device back at "
                "that disk, or free the claim first (see decommission)" % (
                    _describe(existing), ", ".join("%s=%s" % (k, h) for k, h, _w in changes),
                    ", ".join("%s=%s" % (k, w or "(none)") for k, _h, w in changes))))
        patch, held = _split_bound_patch(patch)
    base["held"] = held
    if take_over:
        return dict(base, action="take_over", patch=patch)
    return dict(base, action="patch", patch=patch) if patch else dict(base, action="unchanged")


def _match(volume, hostname, index, take_over):
    """The PV already at the volume's identity: ``(pv, None)``, ``(None, None)``
    when there is none, or ``(None, reason)`` when that is a conflict."""
    there = [listed.pv() for listed in index.at(hostname, volume["path"])]
    where = "path %s on node %s (hostname %s)" % (volume["path"], volume["node"], hostname)
    if len(there) > 1:
        return None, "%s already holds %d PVs: %s; one disk must have one PV, remove all but one" % (
            where, len(there), "; ".join(_describe(pv) for pv in there))
    if not there:
        return None, None
    pv = there[0]
    label = (pv["metadata"].get("labels") or {}).get(vol.NODE_LABEL)
    if owned(pv) and label != naming.label_value(volume["node"]):
        return None, "%s is %s by its label %s=%s, not of node %s; it is never changed as another node's PV" % (
            where, _describe(pv), vol.NODE_LABEL, label, volume["node"])
    if not owned(pv) and not take_over:
        return None, "%s already has %s; a second PV (%s) for one disk would let two claims share it. Run " \
                     "with -e localpv_take_over=true (the module option take_over) to make that PV ours (its " \
                     "name, claim and data stay), or delete it" % (
                         where, _describe(pv), volume["pv_name"])
    return pv, None


def _moved(volume, owned_by_volume, claimed):
    """An owned PV of this node and volume (by labels) at another identity: the
    volume's path or hostname changed."""
    want = (naming.label_value(volume["node"]), naming.label_value(volume["name"]))
    found = next((pv for pv in owned_by_volume.get(want, ()) if pv.name not in claimed), None)
    return found.pv() if found else None


def plan_pvs(volumes, hostnames, index, scope_nodes, prune=False, replace_unbound=False, take_over=False):
    """What makes the PVs of ``scope_nodes`` match ``volumes`` (normalized).

    Each wanted volume is matched by identity (hostname, path) against every
    PV of the cluster (``index``, a :class:`PvIndex`); failing that, against an
    owned PV of the same node and volume elsewhere (a change of path or
    hostname). Owned PVs of the nodes in scope that no volume wants are
    stale, kept (bound) or deleted (``prune``). Returns a list of actions:
    ``action`` (create, patch, take_over, replace, delete, unchanged, conflict,
    stale, kept_bound), ``name``, ``node``, ``volume`` and what it needs.
    """
    actions, claimed, seen, absent = [], set(), {}, []
    for volume in volumes:
        hostname = hostnames[volume["node"]][0]
        base = {"name": volume["pv_name"], "node": volume["node"], "volume": volume["name"], "wanted": volume,
                "hostname": hostname, "capacity_known": volume["capacity"] is not None}
        key = (hostname, _path_key(volume["path"]))
        if key in seen:
            actions.append(dict(base, action="conflict", reason="volumes %s and %s/%s are the same disk: path %s "
                                "on hostname %s" % (seen[key], volume["node"], volume["name"], key[1], hostname)))
            continue
        seen[key] = "%s/%s" % (volume["node"], volume["name"])
        there = index.at(*key)
        if len(there) == 1 and there[0].wanted is volume:
            # Settled when listed: the PV there is the one this volume wants, to the
            # last managed field, under this hostname. Nothing to decode or compare.
            claimed.add(there[0].name)
            # the most common action of a big run, so the smallest: what the result reads
            actions.append({"action": "unchanged", "name": there[0].name, "node": volume["node"],
                            "volume": volume["name"], "claim": there[0].claim})
            continue
        pv, reason = _match(volume, hostname, index, take_over)
        if reason:
            # the PVs of a conflict are the user's to sort out: none is pruned meanwhile
            claimed.update(listed.name for listed in there)
            actions.append(dict(base, action="conflict", reason=reason))
        elif pv is not None:
            claimed.add(pv["metadata"]["name"])
            actions.append(_settled(plan_existing(base, pv, replace_unbound, take_over=not owned(pv))))
        else:
            actions.append(base)
            absent.append((base, volume))
    # second pass: a PV claimed by its identity above is not taken again as a moved one
    owned_by_volume = index.owned_by_volume() if absent else {}
    for base, volume in absent:
        base.update(_plan_absent(base, volume, owned_by_volume, index, claimed, replace_unbound))
        _settled(base)
    return actions + _plan_unwanted(index, scope_nodes, claimed, prune)


def manifest_of(action):
    """The PV manifest an action wants, built when needed: a run over 100,000
    volumes does not keep 100,000 manifests."""
    return vol.pv_manifest(action["wanted"], action["hostname"])


def _settled(action):
    """An action that writes nothing keeps no PV and no volume: the run's memory is
    the writes it makes, not the PVs it looked at."""
    if action["action"] not in WRITE_ACTIONS:
        action.pop("existing", None)
        action.pop("wanted", None)
    return action


def _plan_absent(base, volume, owned_by_volume, index, claimed, replace_unbound):
    moved = _moved(volume, owned_by_volume, claimed)
    if moved is not None:
        claimed.add(moved["metadata"]["name"])
        return plan_existing(base, moved, replace_unbound)
    if base["name"] in index.names:
        return {"action": "conflict", "reason": "a PV named %s exists at another path or node, or is not managed "
                "by localpv.rollout; it is left alone: rename the volume, or remove that PV" % base["name"]}
    return {"action": "create"}


def _plan_unwanted(index, scope_nodes, claimed, prune):
    scope = dict((naming.label_value(n), n) for n in scope_nodes)
    actions = []
    for name, listed in sorted(index.owned.items()):
        if name in claimed or listed.deleting:
            continue
        base = {"name": name, "node": scope[listed.owner[0]], "volume": listed.owner[1], "claim": listed.claim}
        if not prune:
            actions.append(dict(base, action="stale"))
        elif base["claim"]:
            actions.append(dict(base, action="kept_bound", reason="PV %s is no longer wanted but bound to claim %s; "
                                "it is kept" % (name, base["claim"])))
        else:
            actions.append(dict(base, action="delete", existing=listed.pv()))
    return actions


# --- Validation: everything the API server would refuse, before the first write --

def validate_plan(actions, hostnames, storage_classes, dry_run=False):
    """Reasons the writes of ``actions`` would be refused, found before any is
    sent, so that a run writes all or nothing of what can be checked here:
    hostname values that are no label value (no Node can carry them),
    StorageClasses that do not exist (``storage_classes``: the names that do),
    capacities still unknown outside check mode. Returns ``(errors, warnings)``;
    a missing class is only a warning in check mode, where the class that the
    same play ensures first is not made either."""
    errors, warnings = [], []
    for node, (value, source) in sorted(hostnames.items()):
        if naming.label_value(value) != value:
            errors.append("node %s: its kubernetes.io/hostname value %r (from %s) is not a valid label value "
                          "(at most 63 characters: letters, digits, '-', '_', '.'); no Node can carry it, set "
                          "hostname_labels for it" % (node, value, source))
    missing = {}
    for action in actions:
        if action["action"] not in WRITE_ACTIONS or "wanted" not in action:
            continue
        cls = action["wanted"]["storage_class"]
        if storage_classes is not None and cls not in storage_classes:
            missing.setdefault(cls, []).append(action["name"])
        if not action.get("capacity_known", True) and not dry_run:
            errors.append("volume %s of node %s has no capacity; give it one (a bind volume needs capacity:)"
                          % (action["volume"], action["node"]))
    for cls, names in sorted(missing.items()):
        msg = "StorageClass %s does not exist; PVs %s name it. Create it first (local_storage_class, or " \
              "pv_register_storage_classes)" % (cls, ", ".join(sorted(names)[:5]) + (" ..." if len(names) > 5 else ""))
        (warnings if dry_run else errors).append(msg)
    return errors, warnings


# --- The writes ---------------------------------------------------------------------

def _lost_answer_reread(kube, name, exc):
    """After a write with no HTTP answer (the API server went away mid-request),
    the PV as it is now: the write may have been done. The error when the
    server still does not answer, saying so."""
    try:
        return kube.get_pv(name)
    except KubeError:
        raise KubeError("%s; the answer to that write was lost and PV %s could not be read again: it may have been "
                        "written. Run again once the API server answers" % (exc.msg, name), verb=exc.verb,
                        resource=exc.resource, name=name, reason=exc.reason)


def _create(kube, action):
    manifest = manifest_of(action)
    try:
        kube.create_pv(manifest)
        return
    except KubeError as exc:
        # no answer at all (the API server went away): the create may have been done; a PV that
        # is there is judged below like one found by a 409, one that is not there was not made
        if exc.status is None:
            if _lost_answer_reread(kube, action["name"], exc) is None:
                raise
        elif exc.status != 409:
            raise
    # Created by an earlier try whose answer was lost, or by a concurrent run,
    # or someone else's: look before deciding.
    pv = kube.get_pv(action["name"])
    if pv is not None and owned(pv) and identity(pv) == identity(manifest):
        immutable, patch = vol.compare_pv(manifest, pv)
        if not immutable and not patch:
            return
    raise KubeError("PV %s appeared while this run was creating it and differs from what is wanted; run again"
                    % action["name"] if pv is not None and owned(pv) else
                    "PV %s already exists and is not managed by localpv.rollout" % action["name"],
                    status=409, verb="create", resource="persistentvolumes", name=action["name"])


def _patch(kube, action, tries=3):
    """Patch with a resourceVersion precondition. Controllers update a PV's status
    often, so a 409 is looked at again: the fresh PV is planned anew (it may be
    bound now, which narrows what may change) and patched at its new version."""
    existing, patch = action["existing"], action.get("patch")
    uid = existing["metadata"].get("uid")
    for attempt in range(tries):
        if not patch:
            return
        body = dict(patch, metadata=dict(patch.get("metadata") or {},
                                         resourceVersion=existing["metadata"].get("resourceVersion")))
        try:
            kube.patch_pv(action["name"], body)
            return
        except KubeError as exc:
            if exc.status != 409 or attempt == tries - 1:
                raise
        existing = kube.get_pv(action["name"])
        if existing is None or existing["metadata"].get("uid") != uid:
            raise KubeError("PV %s was deleted or made again since it was listed; it is left alone" % action["name"],
                            status=409, verb="patch", resource="persistentvolumes", name=action["name"])
        again = plan_existing(dict(action), _slim(existing), take_over=action["action"] == "take_over")
        if again["action"] == "conflict":
            raise KubeError(again["reason"], status=409, verb="patch", resource="persistentvolumes",
                            name=action["name"])
        patch, action["held"] = again.get("patch"), again.get("held", [])


def _delete_unbound(kube, action, tries=3):
    """Delete the PV we listed, only while it is still that PV and still unbound
    (uid and resourceVersion preconditions; a 409 is looked at again). True when
    the API confirmed it. A retried delete whose first answer was lost finds the
    PV gone (404) or, while the pv-protection finalizer still holds it, being
    deleted (409 on the resourceVersion, deletionTimestamp set): both are done."""
    name, meta = action["name"], action["existing"]["metadata"]
    uid, version = meta.get("uid"), meta.get("resourceVersion")
    for attempt in range(tries):
        try:
            kube.delete_pv(name, uid, version)
            return True
        except KubeError as exc:
            if exc.status != 409 or attempt == tries - 1:
                raise
        pv = kube.get_pv(name)
        if pv is None:
            return True
        if pv["metadata"].get("uid") != uid:
            raise KubeError("PV %s was deleted and made again since it was listed; it is left alone" % name,
                            status=409, verb="delete", resource="persistentvolumes", name=name)
        if pv["metadata"].get("deletionTimestamp"):
            return True
        if vol.claim_of(pv):
            raise KubeError("PV %s was bound to claim %s since it was listed; it is kept" % (
                name, vol.claim_of(pv)), status=409, verb="delete", resource="persistentvolumes", name=name)
        version = pv["metadata"].get("resourceVersion")


def _replace(kube, action):
    _delete_unbound(kube, action)
    action["confirmed_delete"] = True
    if kube.dry_run:
        return None
    # the PV deleted was unbound: its protection finalizer goes shortly after the delete
    workloads.wait_pvs_gone(kube, [{"name": action["name"], "uid": action["existing"]["metadata"].get("uid")}],
                            timeout=60.0, interval=0.2)
    return _create(kube, action)


_WRITERS = {"create": _create, "patch": _patch, "take_over": _patch, "delete": _delete_unbound, "replace": _replace}


def apply_plan(kube, actions):
    """Send the writes of ``actions`` concurrently. Each action that the API
    server confirmed gets ``confirmed``; a failed one gets ``error``. A volume
    whose capacity is not known yet (check mode) is not sent."""
    todo = [a for a in actions if a["action"] in _WRITERS and a.get("capacity_known", True)]
    if not todo:
        return actions

    def job(action):
        return lambda: _WRITERS[action["action"]](kube, action)
    for action, (_res, err) in zip(todo, kube.run([job(a) for a in todo])):
        if err is None:
            action["confirmed"] = True
        else:
            action["error"] = err.msg
    return actions


def classes_named(actions):
    """The StorageClasses the writes of ``actions`` name."""
    return sorted(set(a["wanted"]["storage_class"] for a in actions if a["action"] in WRITE_ACTIONS and "wanted" in a))


def reconcile_local_pvs(kube, volumes, nodes=(), prune=False, replace_unbound=False, hostname_overrides=None,
                        take_over=False, known_classes=None, report=False):
    """Make the PVs of the nodes in scope match ``volumes`` (normalized, see
    ``volumes.normalize_volumes``). The whole of ``local_pv``.

    One LIST of Nodes, one streamed LIST of every PV; a plan; a validation, for
    which the StorageClasses the writes name are read (one GET each), unless
    ``known_classes`` (``{name: object or None}``, what the run read or made
    already) tells. Any conflict or invalid write stops the run before the
    first write. Then the writes, concurrently (``dryRun=All`` in dry-run).

    Returns a dict: ``actions`` (the plan; ``confirmed`` or ``error`` on the
    writes), ``hostnames``, ``invalid``, ``warnings``, ``failed``, and with
    ``report`` the owned PVs of the nodes in scope (:func:`report_pvs`) once the
    writes are done.
    """
    scope = list(dict.fromkeys(list(nodes or ()) + [v["node"] for v in volumes]))
    cluster_nodes, index = read_cluster(kube, volumes, scope)
    hostnames = vol.resolve_hostnames(scope, cluster_nodes, index.owned_hostnames, hostname_overrides)
    actions = plan_pvs(volumes, hostnames, index, scope, prune=prune, replace_unbound=replace_unbound,
                       take_over=take_over)
    classes = None
    named = classes_named(actions)
    if named:
        classes = set(named) - set(sc.missing_storage_classes(kube, named, known=known_classes))
    invalid, warnings = validate_plan(actions, hostnames, classes, dry_run=kube.dry_run)
    result = {"actions": actions, "hostnames": hostnames, "invalid": invalid, "warnings": warnings,
              "failed": bool(invalid) or any(a["action"] == "conflict" for a in actions), "listed": index.count}
    if not result["failed"]:
        apply_plan(kube, actions)
        result["failed"] = any(a.get("error") for a in actions)
        if report:
            result["report"] = report_pvs(kube, index, scope, cluster_nodes, actions)
    return result


def register(kube, classes, volumes, replace_classes=False, **options):
    """The StorageClasses ``classes`` (normalized) ensured, then the PVs of
    ``volumes`` reconciled (:func:`reconcile_local_pvs`, ``options``), in one run:
    each class is read once (one GET), and that read, with the class's write,
    tells the PVs' check which classes exist. A class that is in conflict, or
    whose write failed, stops the run before the PVs are listed.

    Returns the outcome of :func:`reconcile_local_pvs` with ``classes`` (the items
    of :func:`storage_classes.ensure_storage_classes`); only ``classes`` when the
    classes stopped the run."""
    results = sc.ensure_storage_classes(kube, classes, replace=replace_classes) if classes else []
    if sc.ensure_outcome(results)[2]:
        return {"classes": results}
    outcome = reconcile_local_pvs(kube, volumes, known_classes=sc.known_after(results, kube.dry_run), **options)
    outcome["classes"] = results
    return outcome


# --- The PVs as they are after the run, for the report ---------------------------------

# How long the report waits for the PV controller to give the PVs this run created
# their phase (it does so within a fraction of a second on a cluster at work).
PHASE_WAIT = 10.0


def _written(actions):
    return [a for a in actions if a["action"] in WRITE_ACTIONS and (a.get("confirmed") or a.get("confirmed_delete"))]


def report_pvs(kube, index, scope_nodes, cluster_nodes, actions, phase_wait=PHASE_WAIT, interval=0.2):
    """The owned PVs of ``scope_nodes`` as the API server has them after the run's
    writes, sorted by name, each as :func:`workloads.pv_entry` makes it.

    A run that wrote nothing (a no-op, or any run in dry-run, whose writes are
    persisted nowhere) reports what its own LIST found: nothing changed since,
    by this run. A run whose writes the API server confirmed reads the PVs of
    ours once more (one LIST by label), so the report shows what the server
    holds after them, not what the run meant to write; a PV this run created
    is read again, for at most ``phase_wait`` seconds, until the PV controller
    has given it its phase (Available)."""
    presence = workloads.node_presence(cluster_nodes)
    written = [] if kube.dry_run else _written(actions)
    if not written:
        pvs = [listed.pv() for listed in index.owned.values()]
    else:
        created = set(a["name"] for a in written if a["action"] in ("create", "replace"))
        waiter = Waiter(phase_wait, interval, getattr(kube, "_sleep", time.sleep),
                        getattr(kube, "_clock", time.monotonic))
        read = {}

        def pending():
            read["pvs"] = workloads.owned_pvs(kube, scope_nodes)
            return [pv["metadata"]["name"] for pv in read["pvs"] if pv["metadata"]["name"] in created
                    and (pv.get("status") or {}).get("phase") in (None, "", "Pending")]
        try:
            waiter.until_done(pending, "the phase of the PVs created")
        except WaitTimeout:
            pass   # reported as the API server has them: without a phase yet
        pvs = read["pvs"]
    return [workloads.pv_entry(pv, *presence) for pv in sorted(pvs, key=lambda p: p["metadata"]["name"])]


# --- What a run says ------------------------------------------------------------------

ACTION_COUNTS = ("created", "updated", "taken_over", "replaced", "unchanged", "deleted", "conflicts", "stale",
                 "kept_bound")
_ACTION_KEY = {"create": "created", "patch": "updated", "take_over": "taken_over", "replace": "replaced",
               "unchanged": "unchanged", "delete": "deleted", "conflict": "conflicts", "stale": "stale",
               "kept_bound": "kept_bound"}


def _outcome(action):
    """The key a done action counts under, or None when nothing happened: a write
    counts only once the API server confirmed it (a replace whose create failed
    after its delete counts as deleted)."""
    kind = action["action"]
    if kind in WRITE_ACTIONS and not action.get("confirmed"):
        return "deleted" if kind == "replace" and action.get("confirmed_delete") else None
    return _ACTION_KEY[kind]


def summarize(actions, nodes=()):
    """Per-node counts and the names per kind of action, as the module returns them."""
    per_node = dict((n, dict((k, 0) for k in ACTION_COUNTS)) for n in nodes)
    names = dict((k, []) for k in ACTION_COUNTS if k != "unchanged")
    for action in actions:
        key = _outcome(action)
        if key is None:
            continue
        per_node.setdefault(action["node"], dict((k, 0) for k in ACTION_COUNTS))[key] += 1
        if key != "unchanged":
            names[key].append(action["name"])
    return per_node, names


def action_diff(action):
    """An Ansible diff entry for one action (before/after of the managed view)."""
    before = vol.pv_view(action["existing"]) if action.get("existing") else {}
    after = {}
    if action["action"] in ("create", "replace"):
        after = vol.pv_view(manifest_of(action))
    elif action["action"] in ("patch", "take_over"):
        after = vol.pv_view(manifest_of(action))
        # Labels and annotations of others stay; show them on both sides.
        after["labels"] = dict(before["labels"], **after["labels"])
        for key, value in ((action.get("patch") or {}).get("metadata", {}).get("labels") or {}).items():
            if value is None:
                after["labels"].pop(key, None)
        for field in action.get("held") or ():   # left as they are under a claim
            key = field.split(".", 1)[1]
            after[key] = before.get(key)
    for view in (before, after):
        view.pop("name", None)
    done = {"delete": "deleted", "replace": "replaced", "take_over": "taken over"}.get(action["action"], "wanted")
    return {
        "before_header": "PV %s (%s)" % (action["name"], "absent" if not before else "on the server"),
        "after_header": "PV %s (%s)" % (action["name"], done),
        "before": before,
        "after": after,
    }


def run_result(outcome, nodes):
    """What ``local_pv`` returns for ``outcome`` of :func:`reconcile_local_pvs`:
    names per kind of confirmed action, counts per node, conflicts, errors, and
    ``changed`` (true only if the API server confirmed a write)."""
    actions = outcome["actions"]
    per_node, names = summarize(actions, nodes=nodes)
    result = dict(names, nodes=per_node, invalid=outcome["invalid"])
    result["hostnames"] = dict((n, {"value": val, "source": src}) for n, (val, src) in outcome["hostnames"].items())
    result["conflicts"] = [dict((key, a.get(key)) for key in ("name", "node", "volume", "claim", "reason", "changes"))
                           for a in actions if a["action"] == "conflict"]
    result["kept_bound"] = [{"name": a["name"], "node": a["node"], "claim": a["claim"]}
                            for a in actions if a["action"] == "kept_bound"]
    result["held"] = [{"name": a["name"], "node": a["node"], "claim": a["claim"], "fields": a["held"]}
                      for a in actions if a.get("held")]
    result["capacity_unknown"] = [{"name": a["name"], "node": a["node"], "volume": a["volume"],
                                   "capacity": "known after apply"}
                                  for a in actions if not a.get("capacity_known", True)]
    result["errors"] = [{"name": a["name"], "action": a["action"], "msg": a["error"]} for a in actions if a.get("error")]
    result["changed"] = any(_outcome(a) in ("created", "updated", "taken_over", "replaced", "deleted")
                            for a in actions)
    return result
