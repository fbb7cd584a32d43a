# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pods, claims and evictions around local PVs: the API half of decommission and reclaim.

The one safe order, per volume: the pods that use the PV's claim are gone ->
the volume is unmounted on its host (the host half, not here) -> the claim is
deleted and gone -> the PV is deleted and gone. Every step is verified by
reading the objects back by uid (an object made again under the same name is
never taken for the one we meant), never by trusting the protection finalizers
to hold a delete that came too early. Every request goes through
:class:`kube.Kube`; every wait is a :class:`waiter.Waiter`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming

from ansible_collections.localpv.rollout.plugins.module_utils.common.errors import KubeError
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as vol
from ansible_collections.localpv.rollout.plugins.module_utils.common.waiter import (
    DEFAULT_TIMEOUT,
    POLL_INTERVAL,
    Waiter,
    WaitTimeout,
)


class RetireStop(KubeError):
    """A step that must not go on, said for a human. ``state`` tells what was
    done already (for the module's result), ``code`` what kind of stop it is."""

    def __init__(self, msg, code="error", state=None):
        super(RetireStop, self).__init__(msg)
        self.msg = msg
        self.code = code
        self.state = state or {}


def _controller_of(obj):
    """``Kind/name`` of the controller that owns ``obj`` (its controller ownerReference), or None."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return "%s/%s" % (ref.get("kind"), ref.get("name"))
    return None


UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


CORDON_ANNOTATION = "localpv.rollout/cordoned-by"
CORDON_BY = "decommission"


def cordoned_by_decommission(node):
    """Whether ``node`` (a Node object, or None) is cordoned by a decommission run
    (our annotation): that run uncordons it when the node stays."""
    meta, spec = (node or {}).get("metadata") or {}, (node or {}).get("spec") or {}
    return bool(spec.get("unschedulable")) and (meta.get("annotations") or {}).get(CORDON_ANNOTATION) == CORDON_BY


def tolerates_cordon(spec):
    """Whether a pod spec tolerates the taint a cordon puts on its node
    (``node.kubernetes.io/unschedulable:NoSchedule``): a toleration of that key,
    or one with ``operator: Exists`` and no key (every taint). A cordon does not
    keep such a pod off the node: its controller puts it back."""
    for tol in (spec or {}).get("tolerations") or []:
        if tol.get("effect") not in (None, "", "NoSchedule"):
            continue
        if not tol.get("key") and tol.get("operator") == "Exists":
            return True
        if tol.get("key") == UNSCHEDULABLE_TAINT and (tol.get("operator") == "Exists" or tol.get("value") in
                                                      (None, "")):
            return True
    return False


def pods_by_claim(pods):
    """``{namespace/claim: [pod summary]}`` of the pods that mount each claim. The
    one place where pods are matched to claims."""
    out = {}
    for pod in pods:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        namespace = meta.get("namespace")
        for volume in spec.get("volumes") or []:
            ref = volume.get("persistentVolumeClaim")
            if ref:
                out.setdefault("%s/%s" % (namespace, ref.get("claimName")), []).append({
                    "namespace": namespace, "name": meta.get("name"), "node": spec.get("nodeName"),
                    "phase": (pod.get("status") or {}).get("phase"), "uid": meta.get("uid"),
                    "controller": _controller_of(pod), "deleting": bool(meta.get("deletionTimestamp")),
                    "tolerates_cordon": tolerates_cordon(spec)})
    return out


# --------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------

def claim_is_current(entry):
    """Whether the PV's claim still exists as the very object the PV is bound to."""
    return bool(entry.get("claim") and entry.get("claim_current_uid")
                and entry.get("claim_current_uid") == entry.get("claim_uid"))


def scheduled_pods(entry):
    """The pods that use the PV's own claim and are bound to a node: those are the
    ones that can have the volume mounted. A pod that waits unscheduled cannot
    (the kubelet starts no pod whose claim is being deleted)."""
    if not claim_is_current(entry):
        return []
    return [p for p in entry.get("pods") or [] if p.get("node")]


def cordon_tolerated(entry):
    """``namespace/name (controller)`` of the scheduled pods of the PV's claim that
    a controller makes again and that tolerate the cordon's taint: after their
    eviction the scheduler puts them back onto the node, on the same volume."""
    return ["%s/%s (%s)" % (p["namespace"], p["name"], p["controller"]) for p in scheduled_pods(entry)
            if p.get("controller") and p.get("tolerates_cordon")]


def tolerated_stop_message(plan, node):
    """The refusal, before any eviction, for pods a cordon does not keep off
    ``node``, or None when there is none."""
    pods = ["%s on PV %s" % (pod, e["name"]) for e in plan["volumes"] for pod in e.get("cordon_tolerated") or []]
    if not pods:
        return None
    return ("%s: pod(s) %s tolerate the taint %s (or every taint), so cordoning node %s does not keep them off it: "
            "after an eviction their controller makes them again and the scheduler puts them back onto the same "
            "volume. Nothing was evicted, unmounted or deleted. Scale the controller down (or remove the "
            "toleration), then run again." % (node, "; ".join(pods), UNSCHEDULABLE_TAINT, node))


def _asked_volumes(entries, nodes, wanted, by_name):
    """Errors for asked-for volumes whose PV name is taken by a PV not ours, and
    the asked-for volumes that have no PV (any more)."""
    errors, missing = [], []
    for node in nodes:
        for name in wanted:
            pv_name = naming.pv_name(node, name)
            pv = by_name.get(pv_name)
            if pv is not None and not vol.is_owned(pv):
                errors.append("PV %s (volume %s of node %s) is not managed by localpv.rollout (no label %s=%s); "
                              "it is never touched: take it away by hand" % (
                                  pv_name, name, node, vol.MANAGED_BY_LABEL, vol.MANAGED_BY_VALUE))
            elif not any(e["volume"] == name and e["node"] == naming.label_value(node) for e in entries):
                missing.append({"node": node, "volume": name, "name": pv_name})
    return errors, missing


def plan_decommission(report, all_pvs, nodes, hostnames=None, volumes=None):
    """What decommissioning ``nodes`` (Kubernetes node names), or only their
    ``volumes`` (volume names), means for the cluster.

    ``report`` is :func:`local_pv_report` of these nodes,
    ``all_pvs`` every PV (to find PVs that are not ours in the way),
    ``hostnames`` the ``kubernetes.io/hostname`` values of the nodes. Returns a
    dict: ``volumes`` (one entry per owned PV to retire, with ``claim_current``
    and ``using_pods``), ``missing`` (asked-for volumes that have no PV any
    more: done, or never there), ``foreign`` (PVs on these nodes that are not
    ours), ``errors`` (reasons not to start).
    """
    nodes, wanted = list(nodes or []), list(volumes or [])
    hostnames = set(hostnames or []) | set(nodes)
    labels = [naming.label_value(n) for n in nodes]
    entries = [dict(e) for e in report if e["node"] in labels]
    errors, missing, foreign = [], [], []
    if wanted:
        entries = [e for e in entries if e["volume"] in wanted]
        errors, missing = _asked_volumes(entries, nodes, wanted, dict((pv["metadata"]["name"], pv) for pv in all_pvs))
    ours = set(e["name"] for e in entries)
    for pv in all_pvs:
        name = pv["metadata"]["name"]
        if name not in ours and not vol.is_owned(pv) and not wanted and vol.affinity_hostname(pv) in hostnames:
            foreign.append({"name": name, "claim": vol.claim_of(pv),
                            "path": ((pv.get("spec") or {}).get("local") or {}).get("path")})
    for entry in entries:
        entry["claim_current"] = claim_is_current(entry)
        entry["using_pods"] = scheduled_pods(entry)
        entry["cordon_tolerated"] = cordon_tolerated(entry)
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

def _pods_of(entries):
    """Current pods using the claims of ``entries`` (fresh report entries)."""
    pods = []
    for e in entries:
        for pod in scheduled_pods(e):
            pods.append(dict(pod, pv=e["name"], claim=e["claim"]))
    return pods


def owned_pvs(kube, nodes=None, label_selector=None):
    """The PVs of localpv.rollout (of ``nodes``, or all), from one LIST by label."""
    selector = "%s=%s" % (vol.MANAGED_BY_LABEL, vol.MANAGED_BY_VALUE)
    if label_selector:
        selector += "," + label_selector
    pvs = kube.list_pvs(label_selector=selector)
    if nodes:
        wanted = set(naming.label_value(n) for n in nodes)
        pvs = [pv for pv in pvs if (pv["metadata"].get("labels") or {}).get(vol.NODE_LABEL) in wanted]
    return pvs


def _ready_names(cluster_nodes):
    """Names and hostname labels of the Nodes whose Ready condition is True."""
    ready = set()
    for node in cluster_nodes:
        conditions = (node.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            ready.add(node["metadata"]["name"])
            ready.add((node["metadata"].get("labels") or {}).get(vol.HOSTNAME_LABEL))
    return ready


def node_presence(cluster_nodes):
    """``(names, hostnames, ready)`` of the Nodes of a LIST: what :func:`pv_entry`
    needs to say whether a PV's node exists and is Ready."""
    names = set(n["metadata"]["name"] for n in cluster_nodes)
    hostnames = set((n["metadata"].get("labels") or {}).get(vol.HOSTNAME_LABEL) for n in cluster_nodes)
    return names, hostnames, _ready_names(cluster_nodes)


def pv_entry(pv, node_names, hostnames, ready=frozenset()):
    """One owned PV as the reports read it, from the PV alone: its node and volume,
    where it lives, its size, class, phase and claim, and whether its node exists
    and is Ready. :func:`local_pv_report` adds the claim's and the pods' facts;
    local_pv's report is this, from its own LIST."""
    view = vol.pv_view(pv)
    labels = view["labels"]
    node = labels.get(vol.NODE_LABEL)
    hostname = vol.affinity_hostname(pv)
    return {
        "name": view["name"],
        "node": node,
        "volume": labels.get(vol.VOLUME_LABEL),
        "hostname": hostname,
        "node_exists": node in node_names or hostname in hostnames,
        "node_ready": node in ready or hostname in ready,
        "path": view["local"].get("path"),
        "fstype": view["local"].get("fsType"),
        "stable_id": view["annotations"].get(vol.STABLE_ID_ANNOTATION),
        "volume_mode": view["volumeMode"],
        "capacity": view["capacity"],
        "storage_class": view["storageClassName"],
        "reclaim_policy": view["persistentVolumeReclaimPolicy"],
        "phase": (pv.get("status") or {}).get("phase"),
        "claim": vol.claim_of(pv),
        # The claim the PV is bound to, by uid; a claim of the same name with
        # another uid (made again, e.g. by a StatefulSet) is not this PV's claim.
        "claim_uid": ((pv.get("spec") or {}).get("claimRef") or {}).get("uid"),
        "uid": pv["metadata"].get("uid"),
        "resource_version": pv["metadata"].get("resourceVersion"),
        "deleting": bool(pv["metadata"].get("deletionTimestamp")),
    }


def _report_entry(pv, claims, users, node_names, hostnames, ready=frozenset()):
    entry = pv_entry(pv, node_names, hostnames, ready)
    claim = entry["claim"]
    pvc = claims.get(claim) if claim else None
    entry.update({
        "claim_phase": ((pvc or {}).get("status") or {}).get("phase") if claim else None,
        "claim_current_uid": ((pvc or {}).get("metadata") or {}).get("uid"),
        "pods": users.get(claim, []) if claim else [],
    })
    return entry


def local_pv_report(kube, nodes=None, label_selector=None):
    """Owned PVs (of ``nodes``, or all; ``label_selector`` narrows further) with
    phase, claim, the pods that use the claim and where they run, and whether
    their node still exists."""
    pvs = owned_pvs(kube, nodes, label_selector)
    node_names, hostnames, ready = node_presence(kube.list_nodes())
    namespaces = sorted(set(pv["spec"]["claimRef"].get("namespace") for pv in pvs
                            if (pv.get("spec") or {}).get("claimRef")))
    claims, users = {}, {}
    for namespace in namespaces:
        for pvc in kube.list_pvcs(namespace):
            claims["%s/%s" % (namespace, pvc["metadata"]["name"])] = pvc
        users.update(pods_by_claim(kube.list_pods(namespace)))
    return [_report_entry(pv, claims, users, node_names, hostnames, ready)
            for pv in sorted(pvs, key=lambda p: p["metadata"]["name"])]


def _fresh(kube, pv_names, label_selector=None, nodes=None):
    return [e for e in local_pv_report(kube, nodes=nodes, label_selector=label_selector) if e["name"] in pv_names]


def evict_pod(kube, namespace, name, uid=None, grace_period=None):
    """Evict the pod. Returns None when the pod is evicted or gone, else the
    reason the API server gave for refusing (a PodDisruptionBudget)."""
    try:
        kube.evict_pod(namespace, name, uid, grace_period)
        return None
    except KubeError as err:
        if err.status in (404, 409):   # gone, or another pod of that name now: not ours to evict
            return None
        if err.status == 429 or (err.status and err.status >= 500 and "disruption" in err.msg.lower()):
            return err.msg
        raise


def delete_pod(kube, namespace, name, uid=None, grace_period=None):
    try:
        kube.delete_pod(namespace, name, uid, grace_period)
    except KubeError as exc:
        if exc.status != 409:   # 409: that uid is gone, a new pod of the name is not ours
            raise


def _recreated_stop(pod, result):
    return RetireStop(
        "pod %s/%s%s was scheduled onto node %s with claim %s (PV %s) after the pods of that claim were being "
        "removed: a controller puts it back. Scale it down, or keep the node cordoned (decommission_cordon), "
        "then run again" % (pod["namespace"], pod["name"], " of %s" % pod["controller"] if pod.get("controller")
                            else "", pod["node"], pod["claim"], pod["pv"]), code="recreated", state=result)


def _act_on(kube, pods, action, grace_period, acted, result):
    """Evict (or delete) each pod not acted on yet; returns the refusals by pod."""
    blocked = {}
    for p in pods:
        if p.get("deleting") or p["uid"] in acted:
            continue
        key = "%s/%s" % (p["namespace"], p["name"])
        reason = None
        if kube.dry_run:
            pass
        elif action == "delete":
            delete_pod(kube, p["namespace"], p["name"], p["uid"], grace_period)
        else:
            reason = evict_pod(kube, p["namespace"], p["name"], p["uid"], grace_period)
        if reason:
            blocked[key] = reason
        else:
            acted.add(p["uid"])
            result["evicted" if action == "evict" else "deleted"].append(key)
    return blocked


def _timeout_stop(timeout, pods, blocked, result):
    if blocked:
        return RetireStop("eviction still refused after %ds, a PodDisruptionBudget blocks it: %s. Nothing was "
                          "unmounted or deleted; make room in the budget (or use decommission_pod_action=delete) "
                          "and run again" % (timeout, "; ".join("%s: %s" % kv for kv in sorted(blocked.items()))),
                          code="pdb", state=result)
    return RetireStop("pods did not go away within %ds: %s. Nothing was unmounted or deleted; run again when they "
                      "are gone" % (timeout, ", ".join("%s/%s on %s (phase %s%s)" % (
                          p["namespace"], p["name"], p["node"], p["phase"], ", terminating" if p.get("deleting")
                          else "") for p in pods)), code="stuck", state=result)


def node_names(kube):
    """Names of the Nodes that exist now."""
    return set(n["metadata"]["name"] for n in kube.list_nodes())


def split_stuck(pods, existing_nodes):
    """``(live, stuck)``: the pods bound to a Node that exists, and those bound to
    one that is gone (no kubelet will ever confirm that they stopped)."""
    live, stuck = [], []
    for pod in pods:
        (live if pod.get("node") in existing_nodes else stuck).append(pod)
    return live, stuck


def clear_pods(kube, pv_names, action="evict", timeout=DEFAULT_TIMEOUT, grace_period=None,
               interval=POLL_INTERVAL, sleep=time.sleep, clock=time.monotonic, label_selector=None, nodes=None,
               dead_node=False):
    """Evict (or delete) every scheduled pod that uses the claim of one of the PVs
    ``pv_names``, and wait until they are gone.

    Stops with :class:`RetireStop` when a PodDisruptionBudget still blocks an
    eviction at ``timeout`` (code ``pdb``), when a pod is still there at
    ``timeout`` (``stuck``), or when a pod we did not see at the start is
    scheduled with one of these claims (``recreated``: a controller puts it
    back, and unmounting under it would lose its writes).
    With ``dead_node`` (the host is declared dead), pods bound to a Node that no
    longer exists are neither evicted nor waited for: they are listed in
    ``stuck`` and deleted after their claim (:func:`delete_claims_and_pvs`).
    Returns ``{"evicted": [...], "deleted": [...], "pending": [...], "stuck": [...], "blocked": {...}}``.
    """
    result = {"evicted": [], "deleted": [], "pending": [], "stuck": [], "blocked": {}}
    existing = node_names(kube) if dead_node else None

    def pods_now(entries):
        pods = _pods_of(entries)
        if existing is None:
            return pods
        pods, stuck = split_stuck(pods, existing)
        result["stuck"] = sorted(set(result["stuck"]) | set("%s/%s" % (p["namespace"], p["name"]) for p in stuck))
        return pods

    state = {"entries": _fresh(kube, pv_names, label_selector, nodes), "pods": [], "polls": 0}
    seen, acted = set(p["uid"] for p in pods_now(state["entries"])), set()

    def left():
        if state["polls"]:
            state["entries"] = _fresh(kube, pv_names, label_selector, nodes)
        state["polls"] += 1
        pods = state["pods"] = pods_now(state["entries"])
        new = [p for p in pods if p["uid"] not in seen]
        if new:
            raise _recreated_stop(new[0], result)
        result["blocked"] = _act_on(kube, pods, action, grace_period, acted, result) if pods else {}
        return [] if kube.dry_run else pods
    try:
        Waiter(timeout, interval, sleep, clock).until_done(left, "pods using the claims")
    except WaitTimeout:
        raise _timeout_stop(timeout, state["pods"], result["blocked"], result)
    result["pending"] = sorted(set("%s/%s" % (p["namespace"], p["name"]) for e in state["entries"]
                                   for p in e.get("pods") or [] if not p.get("node") and claim_is_current(e)))
    return result


# --------------------------------------------------------------------------------------
# Claims, then PVs: delete and wait until gone
# --------------------------------------------------------------------------------------

def wait_pvs_gone(kube, pvs, timeout=DEFAULT_TIMEOUT, interval=POLL_INTERVAL, sleep=None, clock=time.monotonic):
    """Wait until each PV of ``pvs`` (``{"name", "uid"}``) is gone: no PV of that
    name, or one with another uid (made again, not the one deleted). The
    pv-protection finalizer of an unbound PV is removed by the controller shortly
    after the delete; at the deadline :class:`WaitTimeout` names each PV left with
    its finalizers."""
    def left():
        out = []
        for pv in pvs:
            now = kube.get_pv(pv["name"])
            if now is not None and (not pv.get("uid") or now["metadata"].get("uid") == pv["uid"]):
                out.append(dict(pv, finalizers=(now.get("metadata") or {}).get("finalizers") or []))
        return out
    Waiter(timeout, interval, sleep or getattr(kube, "_sleep", time.sleep), clock).until_done(
        left, "PVs deleted", lambda pv: "PV %s (finalizers: %s)" % (pv["name"], ", ".join(pv["finalizers"]) or "none"))


def _owned_pvs_of(kube, pv_names, result):
    pvs = []
    for name in pv_names:
        pv = kube.get_pv(name)
        if pv is None:
            result["gone"].append(name)
        elif not vol.is_owned(pv):
            raise RetireStop("PV %s is not managed by localpv.rollout (no label %s=%s); it is never deleted" % (
                name, vol.MANAGED_BY_LABEL, vol.MANAGED_BY_VALUE), code="foreign", state=result)
        else:
            pvs.append(pv)
    return pvs


def _current_claims(kube, pvs, result, existing=None):
    """``(namespace, name, uid)`` of the claims the PVs are bound to and that
    still exist as that very object; stops when a scheduled pod uses one (with
    ``existing``, the names of the Nodes that exist, a pod bound to a Node that
    is gone does not count: it is stuck, and deleted after its claim)."""
    claims = []
    for pv in pvs:
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if not ref.get("name"):
            continue
        pvc = kube.get_pvc(ref.get("namespace"), ref["name"])
        if pvc is None or pvc["metadata"].get("uid") != ref.get("uid"):
            continue
        claim = "%s/%s" % (ref.get("namespace"), ref["name"])
        users = [p for p in pods_by_claim(kube.list_pods(ref.get("namespace"))).get(claim, []) if p["node"]
                 and (existing is None or p["node"] in existing)]
        if users:
            raise RetireStop("claim %s of PV %s is still used by pod(s) %s; its pods must be gone first" % (
                claim, pv["metadata"]["name"], ", ".join(p["name"] for p in users)), code="in_use", state=result)
        claims.append((ref.get("namespace"), ref["name"], ref.get("uid")))
    return claims


def stuck_pods(pods, existing):
    """The pods of a claim just deleted that will never start with it: made by a
    controller and waiting unscheduled (after the claim is gone a StatefulSet
    does not make it again while the pod exists: kubernetes#113139), or bound to
    a Node that is gone (``existing`` names the Nodes that exist; None: none counts)."""
    out = []
    for pod in pods:
        if not pod.get("node"):
            if pod.get("controller"):
                out.append(pod)
        elif existing is not None and pod["node"] not in existing:
            out.append(pod)
    return out


def delete_claims_and_pvs(kube, pv_names, timeout=DEFAULT_TIMEOUT, interval=POLL_INTERVAL, sleep=time.sleep,
                          clock=time.monotonic, dead_node=False):
    """Delete the claims of the PVs ``pv_names`` and wait until they are gone,
    then delete the PVs and wait until they are gone.

    Each object is deleted with a uid precondition and waited for by uid: a
    claim made again under the same name (a StatefulSet does that) is neither
    deleted nor waited for. A PV that is not ours, or whose claim a scheduled
    pod still uses, stops everything before the first delete.

    Claim, then pod: once a claim is deleted, the pods of it that will never
    start (:func:`stuck_pods`: made by a controller and unscheduled; with
    ``dead_node``, also those bound to a Node that is gone) are deleted, so that
    a StatefulSet makes its claim and pod again, bound to another volume. Only
    pods of the claims bound to these PVs (by uid) are touched: a claim made
    fresh for a new replica is not one of them.
    Returns ``{"claims_deleted": [...], "pods_deleted": [...], "pvs_deleted": [...], "gone": [...]}``.
    """
    result = {"claims_deleted": [], "pods_deleted": [], "pvs_deleted": [], "gone": []}
    pvs = _owned_pvs_of(kube, pv_names, result)
    existing = node_names(kube) if dead_node else None
    claims = _current_claims(kube, pvs, result, existing)
    deleted = []
    for ns, name, uid in claims:
        # listed before the claim's delete: these pods are the old claim's, never a fresh replica's
        stuck = stuck_pods(pods_by_claim(kube.list_pods(ns)).get("%s/%s" % (ns, name), []), existing)
        try:
            kube.delete_pvc(ns, name, uid)
        except KubeError as exc:
            if exc.status != 409:   # 409: that uid is gone, a new claim of the name is not ours
                raise
            continue
        result["claims_deleted"].append("%s/%s" % (ns, name))
        deleted.append((ns, name, uid))
        for pod in stuck:
            delete_pod(kube, ns, pod["name"], pod["uid"], grace_period=0)
            result["pods_deleted"].append("%s/%s" % (ns, pod["name"]))
    claims = deleted
    if kube.dry_run:
        result["pvs_deleted"] = [pv["metadata"]["name"] for pv in pvs]
        return result

    def claims_left():
        return [c for c in claims if ((kube.get_pvc(c[0], c[1]) or {}).get("metadata") or {}).get("uid") == c[2]]
    try:
        Waiter(timeout, interval, sleep, clock).until_done(claims_left, "claims deleted",
                                                           lambda c: "claim %s/%s" % (c[0], c[1]))
    except WaitTimeout as exc:
        raise RetireStop("%s. The PVs were not deleted; run again when the claims are gone" % exc.msg,
                         code="stuck", state=result)
    for pv in pvs:
        try:
            kube.delete_pv(pv["metadata"]["name"], uid=pv["metadata"].get("uid"))
        except KubeError as exc:
            if exc.status != 409:
                raise
        result["pvs_deleted"].append(pv["metadata"]["name"])

    try:
        wait_pvs_gone(kube, [{"name": pv["metadata"]["name"], "uid": pv["metadata"].get("uid")} for pv in pvs],
                      timeout, interval, sleep, clock)
    except WaitTimeout as exc:
        raise RetireStop(exc.msg, code="stuck", state=result)
    return result


# --------------------------------------------------------------------------------------
# Reclaim: Released -> Available
# --------------------------------------------------------------------------------------

def release_pvs(kube, items, result):
    """Release each PV of ``items`` ({name, claim_uid}) whose claim is gone; refuse
    (RetireStop ``bound``) a PV whose very claim still exists. ``result`` collects
    the names under ``released`` and ``already``; it is the error's state too.
    An item's ``wiped`` (what the host erased for it) is said in every refusal,
    so that nobody takes a refused release for an untouched volume. A refusal does
    not stop the others: each release is its own guarded write, and a wiped PV left
    reserved would wait for the next run. One RetireStop then names every refusal
    and the PVs released. An API error (not a refusal) stops the loop, and its message
    says the same, and which PVs were not tried."""
    refused = []
    for at, item in enumerate(items):
        try:
            pv = kube.get_pv(item["name"])
            ref = ((pv or {}).get("spec") or {}).get("claimRef") or {}
            if ref.get("name"):
                pvc = kube.get_pvc(ref.get("namespace"), ref["name"])
                if pvc is not None and pvc["metadata"].get("uid") == ref.get("uid"):
                    raise RetireStop("PV %s is still bound: its claim %s/%s exists" % (
                        item["name"], ref.get("namespace"), ref["name"]), code="bound")
            result[release_pv(kube, item["name"], item["claim_uid"], pv)].append(item["name"])
        except RetireStop as exc:
            if item.get("wiped"):
                exc.msg = "%s. Its volume was already wiped by this run (%s)" % (exc.msg, item["wiped"])
            refused.append(exc)
        except KubeError as exc:
            exc.msg = "%s, while releasing PV %s%s%s" % (exc.msg, item["name"], "".join(
                ". " + stop.msg for stop in refused), _release_summary(items, result, items[at:]))
            raise
    if refused:
        raise RetireStop(" | ".join(stop.msg for stop in refused) + _release_summary(items, result),
                         code=refused[0].code, state=result)
    return result


def _release_summary(items, result, untried=()):
    """What a stopped release says beside its causes: the PVs released (and whether
    this run wiped them), and those not released yet."""
    out = ""
    if result["released"]:
        wiped = set(item["name"] for item in items if item.get("wiped"))
        out += ". %s (Available again): %s" % ("Wiped and released" if wiped.issuperset(result["released"])
                                               else "Released", ", ".join(result["released"]))
    if untried:
        out += ". Not released yet (run the same command again once the API server answers): %s" % ", ".join(
            "%s%s" % (item["name"], " (already wiped)" if item.get("wiped") else "") for item in untried)
    return out


# A reservation is a claimRef to a claim that cannot exist: a namespace of ours and
# a uid made for this run. The PV binder binds a PV only to the claim its claimRef
# names, so nothing binds a reserved PV; it stays Released until we release it.
RESERVATION_NAMESPACE = "localpv-rollout-reclaim"


def reservation_ref(pv_name, reservation_uid):
    """The claimRef that reserves PV ``pv_name`` for the wipe ``reservation_uid``."""
    return {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": RESERVATION_NAMESPACE,
            "name": pv_name, "uid": reservation_uid}


def is_reserved(pv, reservation_uid):
    """Whether ``pv`` (an API object) carries our reservation ``reservation_uid``."""
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    return ref.get("namespace") == RESERVATION_NAMESPACE and ref.get("uid") == reservation_uid


def reserve_patch(item, reservation_uid):
    """The one write that reserves the PV of ``item`` (a local_pv_info entry):
    it holds only while the PV is the very object listed (uid, resourceVersion)
    and still carries the claim seen then (claim uid); the API server tests
    all three in the same write."""
    return [{"op": "test", "path": "/metadata/uid", "value": item["uid"]},
            {"op": "test", "path": "/metadata/resourceVersion", "value": item["resource_version"]},
            {"op": "test", "path": "/spec/claimRef/uid", "value": item["claim_uid"]},
            {"op": "replace", "path": "/spec/claimRef", "value": reservation_ref(item["name"], reservation_uid)}]


def reserve_pvs(kube, items, reservation_uid, result):
    """Reserve every PV of ``items`` (local_pv_info entries with ``uid``,
    ``resource_version``, ``claim_uid``) for the wipe ``reservation_uid``.

    All or nothing: when one PV changed since it was listed, the PVs reserved
    before it get their claim back (again only while they carry our
    reservation) and RetireStop ``changed`` names the PV; nothing may then be
    wiped. ``result['reserved']`` collects the names reserved."""
    missing = [i.get("name") for i in items if not (i.get("uid") and i.get("resource_version") and i.get("claim_uid"))]
    if missing:
        raise RetireStop("PV %s: no uid, resourceVersion or claim uid as listed; nothing reserved" % missing[0],
                         code="input", state=result)
    done = []
    for item in items:
        try:
            kube.patch_pv(item["name"], reserve_patch(item, reservation_uid), json_patch=True)
        except KubeError as exc:
            undone = _unreserve(kube, done, reservation_uid)
            result["reserved"] = []
            if exc.status not in (404, 409, 422):
                raise
            raise RetireStop("PV %s changed since the listing (bound again, deleted, or reserved for another claim): "
                             "not reserved, and nothing is wiped%s" % (
                                 item["name"], "; the reservations of %s were given back" % ", ".join(undone)
                                 if undone else ""), code="changed", state=result)
        done.append(item)
        result["reserved"].append(item["name"])
    return result


def _unreserve(kube, items, reservation_uid):
    """Give the PVs of ``items`` back the claimRef they were listed with."""
    undone = []
    for item in items:
        namespace, _sep, name = (item.get("claim") or "/").partition("/")
        ref = {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": namespace, "name": name,
               "uid": item["claim_uid"]}
        kube.patch_pv(item["name"], [
            {"op": "test", "path": "/spec/claimRef/uid", "value": reservation_uid},
            {"op": "replace", "path": "/spec/claimRef", "value": ref}], json_patch=True)
        undone.append(item["name"])
    return undone


def check_reserved(kube, items, reservation_uid):
    """Read the PVs of ``items`` again and raise RetireStop ``changed`` naming every
    one that no longer carries our reservation ``reservation_uid``."""
    lost = []
    for item in items:
        pv = kube.get_pv(item["name"])
        if pv is None or pv["metadata"].get("uid") != item["uid"] or not is_reserved(pv, reservation_uid):
            ref = ((pv or {}).get("spec") or {}).get("claimRef") or {}
            lost.append("%s (%s)" % (item["name"], "gone" if pv is None else "claim %s/%s" % (
                ref.get("namespace"), ref.get("name")) if ref else "no claimRef"))
    if lost:
        raise RetireStop("the reservation of %s was taken away since it was made; nothing was wiped" % (
            ", ".join(lost)), code="changed")


def release_pv(kube, name, claim_uid, pv=None):
    """Remove ``spec.claimRef`` of PV ``name``, only if it is still ours and still
    reserved for the claim ``claim_uid`` (a JSON patch ``test`` makes the API
    server check that in the same write). Returns ``released``, ``already``
    (no claimRef any more) or raises :class:`RetireStop`."""
    pv = pv if pv is not None else kube.get_pv(name)
    if pv is None:
        raise RetireStop("PV %s is gone" % name, code="gone")
    if not vol.is_owned(pv):
        raise RetireStop("PV %s is not managed by localpv.rollout; its claimRef is left alone" % name, code="foreign")
    ref = (pv.get("spec") or {}).get("claimRef")
    if not ref:
        return "already"
    if ref.get("uid") != claim_uid:
        raise RetireStop("PV %s is now reserved for another claim (%s/%s) than the one it was released by; "
                         "it is left alone" % (name, ref.get("namespace"), ref.get("name")), code="changed")
    kube.patch_pv(name, [{"op": "test", "path": "/spec/claimRef/uid", "value": claim_uid},
                         {"op": "remove", "path": "/spec/claimRef"}], json_patch=True)
    return "released"
