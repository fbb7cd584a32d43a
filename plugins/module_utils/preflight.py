# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a playbook checks with the API server before it changes anything.

The rights each run needs are asked with SelfSubjectAccessReview (allowed to
every authenticated identity), so a missing right is found before the first
host step instead of halfway through a retirement. Each right names the shipped
ClusterRole file of deploy/rbac that grants it. Then the named nodes and the
StorageClasses are resolved. Reads only; nothing is written.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.localpv.rollout.plugins.module_utils import kube as k
from ansible_collections.localpv.rollout.plugins.module_utils import storage_classes as sc
from ansible_collections.localpv.rollout.plugins.module_utils import volumes as vol

PV_ROLE = k.PV_ROLE
RETIRE_ROLE = k.RETIRE_ROLE


def right(verb, resource, role_file, group="", why=""):
    """One right: ``verb`` on ``resource`` (``pods/eviction`` names a subresource)."""
    return {"verb": verb, "resource": resource, "group": group, "role_file": role_file, "why": why}


def rights_for(run, prune=True, replace_unbound=False, replace_storage_classes=False, report=True,
               cordon=True, pod_action="evict", delete_node=False):
    """The rights ``run`` (site, decommission, reclaim) needs with these options."""
    pv = [right(verb, "persistentvolumes", PV_ROLE) for verb in ("list", "get")]
    base = pv + [right("list", "nodes", PV_ROLE, why="the kubernetes.io/hostname label of each node")]
    if run == "site":
        needs = base + [right("create", "persistentvolumes", PV_ROLE), right("patch", "persistentvolumes", PV_ROLE)]
        if prune or replace_unbound:
            needs.append(right("delete", "persistentvolumes", PV_ROLE, why="prune or replace unbound PVs"))
        needs += [right(verb, "storageclasses", PV_ROLE, "storage.k8s.io") for verb in ("get", "create", "patch")]
        if replace_storage_classes:
            needs.append(right("delete", "storageclasses", PV_ROLE, "storage.k8s.io", "replace a StorageClass"))
        if report:
            needs += [right("list", res, PV_ROLE, why="the table of PVs") for res in ("persistentvolumeclaims", "pods")]
        return needs
    claims = [right("list", res, PV_ROLE, why="the claims and pods of the PVs")
              for res in ("persistentvolumeclaims", "pods")]
    if run == "reclaim":
        return base + claims + [right("patch", "persistentvolumes", PV_ROLE, why="remove the claimRef")]
    if run != "decommission":
        raise ValueError("unknown run %r" % (run,))
    needs = base + claims + [right("delete", "persistentvolumes", PV_ROLE),
                             right("get", "persistentvolumeclaims", RETIRE_ROLE),
                             right("delete", "persistentvolumeclaims", RETIRE_ROLE),
                             right("get", "pods", RETIRE_ROLE)]
    if pod_action == "evict":
        needs.append(right("create", "pods/eviction", RETIRE_ROLE, why="evict the pods that use the volumes"))
    # delete: the pods (pod_action=delete), and after its claim the pods of a claim that never start
    needs.append(right("delete", "pods", RETIRE_ROLE, why="delete the pods that use the volumes, or that wait "
                       "for a claim deleted"))
    if cordon:
        needs += [right(verb, "nodes", RETIRE_ROLE, why="cordon the node") for verb in ("get", "patch")]
    if delete_node:
        needs.append(right("delete", "nodes", RETIRE_ROLE, why="decommission_delete_node"))
    return needs


def _attributes(need):
    resource, _sep, subresource = need["resource"].partition("/")
    attributes = {"verb": need["verb"], "group": need["group"], "resource": resource}
    if subresource:
        attributes["subresource"] = subresource
    return attributes


def missing_rights(kube, needs):
    """The rights of ``needs`` the identity does not have, each with ``msg``.
    One SelfSubjectAccessReview per right, on the worker pool."""
    def ask(need):
        return lambda: kube.review_access(need["verb"] + " " + need["resource"], _attributes(need))

    answers = kube.run([ask(need) for need in needs])
    for _answer, err in answers:
        if err is not None:
            raise err
    missing = []
    for need, (answer, _err) in zip(needs, answers):
        if not (answer.get("status") or {}).get("allowed"):
            item = dict(need)
            item["msg"] = "may not %s %s%s: the ClusterRole in %s grants it" % (
                need["verb"], need["resource"], " (%s)" % need["why"] if need["why"] else "", need["role_file"])
            missing.append(item)
    return missing


def identity(kube):
    """The user name the API server knows this connection by (SelfSubjectReview), or
    None when the server does not offer it."""
    try:
        review = kube.review_self()
    except k.KubeError:
        return None
    return ((review.get("status") or {}).get("userInfo") or {}).get("username")


def unknown_nodes(names, cluster_nodes, owned_pvs):
    """Names of ``names`` that are neither a Node of the cluster (by name or
    kubernetes.io/hostname label) nor the node of a PV of localpv.rollout (a node
    whose Node object is gone may still have PVs to retire)."""
    known = set()
    for node in cluster_nodes:
        known.add(node["metadata"]["name"])
        known.add((node["metadata"].get("labels") or {}).get(vol.HOSTNAME_LABEL))
    for pv in owned_pvs:
        known.add((pv["metadata"].get("labels") or {}).get(vol.NODE_LABEL))
    return [name for name in names if name not in known and vol.label_value(name) not in known]


def storage_class_problems(kube, classes, replace=False):
    """Why the StorageClasses ``classes`` (normalized) cannot be ensured as they
    are: the conflicts :func:`storage_classes.plan_storage_class` finds (a class
    of another owner that differs, or immutable fields that differ unless
    ``replace``)."""
    plans = [sc.plan_storage_class(wanted, kube.get_storage_class(wanted["name"]), replace) for wanted in classes]
    return [item["reason"] for item in plans if item["action"] == "conflict"]


def preflight(kube, needs, nodes=(), storage_classes=(), replace_storage_classes=False):
    """Everything the API server can tell before a run: the rights, the nodes and
    the StorageClasses. Returns ``{"missing_rights", "unknown_nodes",
    "storage_class_problems", "problems"}``; ``problems`` are the messages."""
    result = {"missing_rights": missing_rights(kube, needs), "unknown_nodes": [], "storage_class_problems": []}
    if result["missing_rights"]:
        result["identity"] = identity(kube)
    if nodes:
        owned = kube.list_pvs(label_selector="%s=%s" % (vol.MANAGED_BY_LABEL, vol.MANAGED_BY_VALUE))
        result["unknown_nodes"] = unknown_nodes(nodes, kube.list_nodes(), owned)
    if storage_classes:
        result["storage_class_problems"] = storage_class_problems(kube, storage_classes, replace_storage_classes)
    who = "%s " % result["identity"] if result.get("identity") else ""
    problems = [who + m["msg"] for m in result["missing_rights"]]
    problems += ["node %s is not a Node of the cluster and no PV of localpv.rollout names it; check the name "
                 "(a Node name or its kubernetes.io/hostname label)" % name for name in result["unknown_nodes"]]
    problems += result["storage_class_problems"]
    result["problems"] = problems
    return result


def leaf_strings(data):
    """Every string inside ``data`` (an inline kubeconfig), to be hidden from output."""
    if isinstance(data, dict):
        return set().union(*[leaf_strings(value) for value in data.values()]) if data else set()
    if isinstance(data, list):
        return set().union(*[leaf_strings(value) for value in data]) if data else set()
    return {data} if isinstance(data, str) and data else set()
