# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Taking local volumes away, and recycling Released ones.

The one safe order, per volume: the pods that use the PV's claim are gone ->
the volume is unmounted on its host -> the claim is deleted and gone -> the PV
is deleted and gone. Every step here is verified by reading the objects back
(by uid, so an object made again under the same name is never taken for the
one we meant), never by trusting the protection finalizers to hold a delete
that came too early.

This is the API half (plan, pods, claims, PVs, claimRef); it runs on the
controller with :class:`kube.Kube`. The host half (what holds a volume, wiping
it) is ``volume_wipe`` and ``host_volumes``, which run on the node.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.localpv.rollout.plugins.module_utils import volumes as vol

try:
    from ansible_collections.localpv.rollout.plugins.module_utils import kube as k
    KubeError = k.KubeError
except ImportError:  # pragma: no cover - the host half does not need it
    k = None
    KubeError = Exception

DEFAULT_TIMEOUT = 300
POLL_INTERVAL = 1.0


class RetireError(KubeError):
    """A step that must not go on, said for a human. ``state`` tells what was
    done already (for the module's result), ``code`` what kind of stop it is.
    A KubeError, so that modules report it like any failure of the API work."""

    def __init__(self, msg, code="error", state=None):
        super(RetireError, self).__init__(msg)
        self.msg = msg
        self.code = code
        self.state = state or {}


# --------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------

def _owned(pv):
    return (pv.get("metadata", {}).get("labels") or {}).get(vol.MANAGED_BY_LABEL) == vol.MANAGED_BY_VALUE


def _claim_is_current(entry):
    """Whether the PV's claim still exists as the very object the PV is bound to."""
    return bool(entry.get("claim") and entry.get("claim_current_uid")
                and entry.get("claim_current_uid") == entry.get("claim_uid"))


def scheduled_pods(entry):
    """The pods that use the PV's own claim and are bound to a node: those are the
    ones that can have the volume mounted. A pod that waits unscheduled cannot
    (the kubelet starts no pod whose claim is being deleted)."""
    if not _claim_is_current(entry):
        return []
    return [p for p in entry.get("pods") or [] if p.get("node")]


def plan_decommission(report, all_pvs, nodes, hostnames=None, volumes=None):
    """What decommissioning ``nodes`` (Kubernetes node names), or only their
    ``volumes`` (volume names), means for the cluster.

    ``report`` is ``kube.local_pv_report`` of these nodes, ``all_pvs`` every PV
    (to find PVs that are not ours in the way), ``hostnames`` the
    ``kubernetes.io/hostname`` values of the nodes. Returns a dict:
    ``volumes`` (one entry per owned PV to retire, with ``claim_current`` and
    ``using_pods``), ``missing`` (asked-for volumes that have no PV any more:
    done, or never there), ``foreign`` (PVs on these nodes that are not ours),
    ``errors`` (reasons not to start).
    """
    nodes = list(nodes or [])
    wanted = list(volumes or [])
    hostnames = set(hostnames or []) | set(nodes)
    by_name = dict((pv["metadata"]["name"], pv) for pv in all_pvs)
    errors, foreign, missing = [], [], []
    entries = [dict(e) for e in report if e["node"] in [vol.label_value(n) for n in nodes]]
    if wanted:
        entries = [e for e in entries if e["volume"] in wanted]
        for node in nodes:
            for name in wanted:
                pv_name = vol.pv_name(node, name)
                pv = by_name.get(pv_name)
                if pv is not None and not _owned(pv):
                    errors.append("PV %s (volume %s of node %s) is not managed by localpv.rollout (no label %s=%s); "
                                  "it is never touched: take it away by hand" % (
                                      pv_name, name, node, vol.MANAGED_BY_LABEL, vol.MANAGED_BY_VALUE))
                elif not any(e["volume"] == name and e["node"] == vol.label_value(node) for e in entries):
                    missing.append({"node": node, "volume": name, "name": pv_name})
    ours = set(e["name"] for e in entries)
    for pv in all_pvs:
        name = pv["metadata"]["name"]
        if name in ours or _owned(pv):
            continue
        if vol.affinity_hostname(pv) in hostnames and not wanted:
            foreign.append({"name": name, "claim": vol.claim_of(pv),
                            "path": ((pv.get("spec") or {}).get("local") or {}).get("path")})
    for entry in entries:
        entry["claim_current"] = _claim_is_current(entry)
        entry["using_pods"] = scheduled_pods(entry)
        if entry.get("deleting") and entry.get("claim_current"):
            entry["note"] = "PV deletion already requested while its claim exists"
    entries.sort(key=lambda e: (e["node"] or "", e["volume"] or "", e["name"]))
    return {"volumes": entries, "missing": missing, "foreign": foreign, "errors": errors}


def plan_table(plan, nodes=()):
    """The plan as lines of a table a user reads in the output."""
    rows = [("NODE", "VOLUME", "PV", "PHASE", "CLAIM", "PODS (controller)", "PATH")]
    for e in plan["volumes"]:
        pods = ", ".join("%s/%s%s" % (p["namespace"], p["name"], " (%s)" % p["controller"] if p.get("controller")
                                      else "") for p in e["using_pods"]) or "-"
        claim = e.get("claim") or "-"
        if e.get("claim") and not e.get("claim_current"):
            claim += " (gone)"
        rows.append((e["node"] or "-", e["volume"] or "-", e["name"], e.get("phase") or "-", claim, pods,
                     "%s%s" % (e.get("path") or "-", " [block]" if e.get("volume_mode") == "Block" else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    if not plan["volumes"]:
        lines.append("(no PV of localpv.rollout left on %s)" % (", ".join(nodes) or "these nodes"))
    for m in plan.get("missing") or []:
        lines.append("volume %s of node %s: no PV %s (already retired, or never registered)" % (
            m["volume"], m["node"], m["name"]))
    for f in plan.get("foreign") or []:
        lines.append("PV %s on this node is not ours and is left alone%s" % (
            f["name"], " (claim %s)" % f["claim"] if f.get("claim") else ""))
    return lines


# --------------------------------------------------------------------------------------
# Pods: evict (or delete) and wait until gone
# --------------------------------------------------------------------------------------

def _pods_of(kube, entries):
    """Current pods using the claims of ``entries`` (fresh report entries)."""
    pods = []
    for e in entries:
        for pod in scheduled_pods(e):
            pod = dict(pod)
            pod["pv"] = e["name"]
            pod["claim"] = e["claim"]
            pods.append(pod)
    return pods


def _fresh(kube, pv_names, label_selector=None, nodes=None):
    report = k.local_pv_report(kube, nodes=nodes, label_selector=label_selector)
    return [e for e in report if e["name"] in pv_names]


def evict_pod(kube, namespace, name, uid=None, grace_period=None):
    """POST an Eviction for the pod (one try, no retry on 429: the caller
    decides how long to wait for a PodDisruptionBudget). Returns None when the
    pod is evicted or gone, else the reason the API server gave (a PDB)."""
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace},
            "deleteOptions": {"preconditions": {"uid": uid} if uid else None,
                              "gracePeriodSeconds": grace_period}}
    if kube.dry_run:
        body["deleteOptions"]["dryRun"] = [k.DRY_RUN_ALL]
    kube._count("create")
    try:
        kube.core.create_namespaced_pod_eviction(name, namespace, body, _preload_content=False,
                                                 _request_timeout=kube.timeout)
        return None
    except Exception as exc:  # ApiException and connection errors
        err = k.describe_error(exc, "create", "pods/eviction", "%s/%s" % (namespace, name), kube.host)
        if err.status in (404, 409):   # gone, or another pod of that name now: not ours to evict
            return None
        if err.status == 429 or (err.status and err.status >= 500 and "disruption" in err.msg.lower()):
            return err.msg
        raise err


def delete_pod(kube, namespace, name, uid=None, grace_period=None):
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid} if uid else None,
            "gracePeriodSeconds": grace_period}
    if kube.dry_run:
        body["dryRun"] = [k.DRY_RUN_ALL]
    try:
        kube.call("delete", "pods", "%s/%s" % (namespace, name), kube.core.delete_namespaced_pod, name, namespace,
                  body=body)
    except KubeError as exc:
        if exc.status not in (404, 409):
            raise


def clear_pods(kube, pv_names, action="evict", timeout=DEFAULT_TIMEOUT, grace_period=None,
               interval=POLL_INTERVAL, sleep=time.sleep, clock=time.monotonic, label_selector=None, nodes=None):
    """Evict (or delete) every scheduled pod that uses the claim of one of the PVs
    ``pv_names``, and wait until they are gone.

    Stops with :class:`RetireError` when a PodDisruptionBudget still blocks an
    eviction at ``timeout`` (code ``pdb``), when a pod is still there at
    ``timeout`` (``stuck``), or when a pod we did not see at the start is
    scheduled with one of these claims (``recreated``: a controller puts it
    back, and unmounting under it would lose its writes).
    Returns ``{"evicted": [...], "deleted": [...], "pending": [...]}``.
    """
    result = {"evicted": [], "deleted": [], "pending": [], "blocked": {}}
    entries = _fresh(kube, pv_names, label_selector, nodes)
    seen = set(p["uid"] for p in _pods_of(kube, entries))
    acted = set()
    deadline = clock() + timeout
    while True:
        pods = _pods_of(kube, entries)
        new = [p for p in pods if p["uid"] not in seen]
        if new:
            p = new[0]
            raise RetireError(
                "pod %s/%s%s was scheduled onto node %s with claim %s (PV %s) after the pods of that claim were "
                "being removed: a controller puts it back. Scale it down, or keep the node cordoned "
                "(decommission_cordon), then run again" % (
                    p["namespace"], p["name"], " of %s" % p["controller"] if p.get("controller") else "",
                    p["node"], p["claim"], p["pv"]), code="recreated", state=result)
        if not pods:
            break
        blocked = {}
        for p in pods:
            if p.get("deleting") or p["uid"] in acted:
                continue
            key = "%s/%s" % (p["namespace"], p["name"])
            if kube.dry_run:
                acted.add(p["uid"])
                result["evicted" if action == "evict" else "deleted"].append(key)
                continue
            if action == "delete":
                delete_pod(kube, p["namespace"], p["name"], p["uid"], grace_period)
                acted.add(p["uid"])
                result["deleted"].append(key)
            else:
                reason = evict_pod(kube, p["namespace"], p["name"], p["uid"], grace_period)
                if reason:
                    blocked[key] = reason
                else:
                    acted.add(p["uid"])
                    result["evicted"].append(key)
        result["blocked"] = blocked
        if kube.dry_run:
            break
        if clock() > deadline:
            if blocked:
                raise RetireError("eviction still refused after %ds, a PodDisruptionBudget blocks it: %s. Nothing "
                                  "was unmounted or deleted; make room in the budget (or use "
                                  "decommission_pod_action=delete) and run again" % (
                                      timeout, "; ".join("%s: %s" % kv for kv in sorted(blocked.items()))),
                                  code="pdb", state=result)
            raise RetireError("pods did not go away within %ds: %s. Nothing was unmounted or deleted; run again "
                              "when they are gone" % (timeout, ", ".join(
                                  "%s/%s on %s (phase %s%s)" % (p["namespace"], p["name"], p["node"], p["phase"],
                                                                ", terminating" if p.get("deleting") else "")
                                  for p in pods)), code="stuck", state=result)
        sleep(interval)
        entries = _fresh(kube, pv_names, label_selector, nodes)
    result["pending"] = sorted(set("%s/%s" % (p["namespace"], p["name"]) for e in entries
                                   for p in e.get("pods") or [] if not p.get("node") and _claim_is_current(e)))
    return result


# --------------------------------------------------------------------------------------
# Claims, then PVs: delete and wait until gone
# --------------------------------------------------------------------------------------

def _get_pvc(kube, namespace, name):
    try:
        return kube.call("get", "persistentvolumeclaims", "%s/%s" % (namespace, name),
                         kube.core.read_namespaced_persistent_volume_claim, name, namespace)
    except KubeError as exc:
        if exc.status == 404:
            return None
        raise


def _delete_pvc(kube, namespace, name, uid):
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
    if kube.dry_run:
        body["dryRun"] = [k.DRY_RUN_ALL]
    try:
        kube.call("delete", "persistentvolumeclaims", "%s/%s" % (namespace, name),
                  kube.core.delete_namespaced_persistent_volume_claim, name, namespace, body=body)
    except KubeError as exc:
        if exc.status not in (404, 409):   # 409: that uid is gone, a new claim of the name is not ours
            raise


def _wait(what, gone, timeout, interval, sleep, clock, describe):
    deadline = clock() + timeout
    while True:
        left = [x for x in what if not gone(x)]
        if not left:
            return
        if clock() > deadline:
            raise RetireError("still there %ds after the delete: %s" % (timeout, "; ".join(describe(x) for x in left)),
                              code="stuck")
        sleep(interval)


def delete_claims_and_pvs(kube, pv_names, timeout=DEFAULT_TIMEOUT, interval=POLL_INTERVAL, sleep=time.sleep,
                          clock=time.monotonic):
    """Delete the claims of the PVs ``pv_names`` and wait until they are gone,
    then delete the PVs and wait until they are gone.

    Each object is deleted with a uid precondition and waited for by uid: a
    claim made again under the same name (a StatefulSet does that) is neither
    deleted nor waited for. A PV that is not ours, or whose claim a scheduled
    pod still uses, stops everything before the first delete.
    Returns ``{"claims_deleted": [...], "pvs_deleted": [...], "gone": [...]}``.
    """
    result = {"claims_deleted": [], "pvs_deleted": [], "gone": []}
    pvs = []
    for name in pv_names:
        pv = kube.get_pv(name)
        if pv is None:
            result["gone"].append(name)
            continue
        if not _owned(pv):
            raise RetireError("PV %s is not managed by localpv.rollout (no label %s=%s); it is never deleted" % (
                name, vol.MANAGED_BY_LABEL, vol.MANAGED_BY_VALUE), code="foreign", state=result)
        pvs.append(pv)
    claims = []
    for pv in pvs:
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if not ref.get("name"):
            continue
        pvc = _get_pvc(kube, ref.get("namespace"), ref["name"])
        if pvc is None or pvc["metadata"].get("uid") != ref.get("uid"):
            continue
        users = [p for p in kube.list_pods(ref.get("namespace")) if (p.get("spec") or {}).get("nodeName")
                 and any((v.get("persistentVolumeClaim") or {}).get("claimName") == ref["name"]
                         for v in (p.get("spec") or {}).get("volumes") or [])]
        if users:
            raise RetireError("claim %s/%s of PV %s is still used by pod(s) %s; its pods must be gone first" % (
                ref.get("namespace"), ref["name"], pv["metadata"]["name"],
                ", ".join(p["metadata"]["name"] for p in users)), code="in_use", state=result)
        claims.append((ref.get("namespace"), ref["name"], ref.get("uid")))
    for ns, name, uid in claims:
        _delete_pvc(kube, ns, name, uid)
        result["claims_deleted"].append("%s/%s" % (ns, name))
    if kube.dry_run:
        result["pvs_deleted"] = [pv["metadata"]["name"] for pv in pvs]
        return result

    def claim_gone(c):
        pvc = _get_pvc(kube, c[0], c[1])
        return pvc is None or pvc["metadata"].get("uid") != c[2]
    try:
        _wait(claims, claim_gone, timeout, interval, sleep, clock, lambda c: "claim %s/%s" % (c[0], c[1]))
    except RetireError as exc:
        raise RetireError("%s. The PVs were not deleted; run again when the claims are gone" % exc.msg,
                          code="stuck", state=result)
    for pv in pvs:
        meta = pv["metadata"]
        try:
            kube.delete_pv(meta["name"], uid=meta.get("uid"))
        except KubeError as exc:
            if exc.status not in (404, 409):
                raise
        result["pvs_deleted"].append(meta["name"])

    def pv_gone(pv):
        now = kube.get_pv(pv["metadata"]["name"])
        return now is None or now["metadata"].get("uid") != pv["metadata"].get("uid")
    _wait(pvs, pv_gone, timeout, interval, sleep, clock, lambda pv: "PV %s" % pv["metadata"]["name"])
    return result


# --------------------------------------------------------------------------------------
# Reclaim: Released -> Available
# --------------------------------------------------------------------------------------

RECLAIMABLE_PHASES = ("Released", "Failed")


def reclaimable(entry):
    """Whether a report entry is a PV of ours whose claim is gone for good."""
    return (entry.get("phase") in RECLAIMABLE_PHASES and bool(entry.get("claim_uid"))
            and not _claim_is_current(entry) and not entry.get("deleting"))


def release_pvs(kube, items, result):
    """Release each PV of ``items`` ({name, claim_uid}) whose claim is gone; refuse
    (RetireError ``bound``) a PV whose very claim still exists. ``result`` collects
    the names under ``released`` and ``already``; it is the error's state too."""
    for item in items:
        pv = kube.get_pv(item["name"])
        ref = ((pv or {}).get("spec") or {}).get("claimRef") or {}
        if ref.get("name"):
            pvc = _get_pvc(kube, ref.get("namespace"), ref["name"])
            if pvc is not None and pvc["metadata"].get("uid") == ref.get("uid"):
                raise RetireError("PV %s is still bound: its claim %s/%s exists" % (
                    item["name"], ref.get("namespace"), ref["name"]), code="bound", state=result)
        result[release_pv(kube, item["name"], item["claim_uid"])].append(item["name"])
    return result


def release_pv(kube, name, claim_uid):
    """Remove ``spec.claimRef`` of PV ``name``, only if it is still ours and still
    reserved for the claim ``claim_uid`` (a JSON patch ``test`` makes the API
    server check that in the same write). Returns ``released``, ``already``
    (no claimRef any more) or raises :class:`RetireError`."""
    pv = kube.get_pv(name)
    if pv is None:
        raise RetireError("PV %s is gone" % name, code="gone")
    if not _owned(pv):
        raise RetireError("PV %s is not managed by localpv.rollout; its claimRef is left alone" % name, code="foreign")
    ref = (pv.get("spec") or {}).get("claimRef")
    if not ref:
        return "already"
    if ref.get("uid") != claim_uid:
        raise RetireError("PV %s is now reserved for another claim (%s/%s) than the one it was released by; "
                          "it is left alone" % (name, ref.get("namespace"), ref.get("name")), code="changed")
    patch = [{"op": "test", "path": "/spec/claimRef/uid", "value": claim_uid},
             {"op": "remove", "path": "/spec/claimRef"}]
    kwargs = {"field_manager": k.FIELD_MANAGER, "_content_type": "application/json-patch+json"}
    if kube.dry_run:
        kwargs["dry_run"] = k.DRY_RUN_ALL
    kube.call("patch", "persistentvolumes", name, kube.core.patch_persistent_volume, name, patch, **kwargs)
    return "released"
