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

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming
from ansible_collections.localpv.rollout.plugins.module_utils.kube import client as k
from ansible_collections.localpv.rollout.plugins.module_utils.kube import storage_classes as sc
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as vol

PV_ROLE = k.PV_ROLE
RETIRE_ROLE = k.RETIRE_ROLE


def right(verb, resource, role_file, group="", why=""):
    """One right: ``verb`` on ``resource`` (``pods/eviction`` names a subresource)."""
    return {"verb": verb, "resource": resource, "group": group, "role_file": role_file, "why": why}


def rights_for(run, prune=True, replace_unbound=False, report=True, cordon=True, pod_action="evict",
               delete_node=False):
    """The rights ``run`` (site, decommission, reclaim) needs with these options."""
    pv = [right(verb, "persistentvolumes", PV_ROLE) for verb in ("list", "get")]
    base = pv + [right("list", "nodes", PV_ROLE, why="the kubernetes.io/hostname label of each node")]
    if run == "site":
        needs = base + [right("create", "persistentvolumes", PV_ROLE), right("patch", "persistentvolumes", PV_ROLE)]
        if prune or replace_unbound:
            needs.append(right("delete", "persistentvolumes", PV_ROLE, why="prune or replace unbound PVs"))
        needs += [right(verb, "storageclasses", PV_ROLE, "storage.k8s.io") for verb in ("get", "create", "patch")]
        # the table of PVs (report) is made from local_pv's own LIST of PVs: no right of its own
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
    return [name for name in names if name not in known and naming.label_value(name) not in known]


def storage_class_problems(kube, classes):
    """Why the StorageClasses ``classes`` (normalized) cannot be ensured as they
    are: the conflicts :func:`storage_classes.plan_storage_class` finds (a class
    of another owner that differs, or immutable fields that differ; site.yml
    never replaces a class)."""
    existing = sc.read_storage_classes(kube, [wanted["name"] for wanted in classes])
    plans = [sc.plan_storage_class(wanted, existing[wanted["name"]], False) for wanted in classes]
    return [item["reason"] for item in plans if item["action"] == "conflict"]


def preflight(kube, needs, nodes=(), storage_classes=()):
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
        result["storage_class_problems"] = storage_class_problems(kube, storage_classes)
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


# --- The inventory against the cluster, before any host step -----------------------------

def planned_volumes(disks, mount_root="/mnt/disks"):
    """``[(volume name, canonical path)]`` a host's ``localpv_disks`` will make, as far
    as the inventory tells before any disk is read: entries with a name (a device or
    a bind, split into ``<name>-1``..``<name>-N``). Selectors (``match``) are named
    only once their disks are found, so they are left to the host steps."""
    root = naming.canonical_path(mount_root) or "/mnt/disks"
    out = []
    for entry in disks or ():
        if not isinstance(entry, dict) or entry.get("match") or not isinstance(entry.get("name"), str):
            continue
        partitions = entry.get("partitions", 1)
        count = partitions if isinstance(partitions, int) and not isinstance(partitions, bool) and partitions > 0 else 1
        names = [entry["name"]] if count == 1 else ["%s-%d" % (entry["name"], n) for n in range(1, count + 1)]
        out += [(name, naming.canonical_path(root + "/" + name)) for name in names]
    return out


def duplicate_node_names(hosts):
    """Messages for inventory hosts (``[{"host", "node"}]``: every host of the
    inventory, not only the play) that name one Kubernetes node: each host must be
    its own Node, or the PVs of one are planned, pruned and pinned for the other."""
    by_node = {}
    for item in hosts:
        by_node.setdefault(item["node"], []).append(item["host"])
    return ["inventory hosts %s all name Kubernetes node %s (localpv_node_name, else the inventory name): one "
            "host is one Node; fix localpv_node_name of all but one of them. Nothing was changed."
            % (" and ".join(sorted(names)), node) for node, names in sorted(by_node.items()) if len(names) > 1]


def _cluster_node(cluster_nodes, node):
    for obj in cluster_nodes:
        if (obj.get("metadata") or {}).get("name") == node:
            return obj
    return None


def node_facts(cluster_nodes, node):
    """What the cluster says about Node ``node``: ``{"exists", "machine_id",
    "system_uuid", "hostname"}`` (ids empty when the kubelet reported none)."""
    obj = _cluster_node(cluster_nodes, node)
    if obj is None:
        return {"exists": False, "machine_id": "", "system_uuid": "", "hostname": None}
    info = (obj.get("status") or {}).get("nodeInfo") or {}
    return {"exists": True, "machine_id": info.get("machineID") or "", "system_uuid": info.get("systemUUID") or "",
            "hostname": ((obj.get("metadata") or {}).get("labels") or {}).get(vol.HOSTNAME_LABEL)}


def relabelled_nodes(nodes, hostnames, owned_hostnames, overrides=None):
    """Messages for nodes whose ``kubernetes.io/hostname`` label no longer is the
    value their PVs of localpv.rollout are pinned to: those PVs would match no
    volume and stop pv_register after the disk steps."""
    overrides = overrides or {}
    problems = []
    for node in nodes:
        value, source = hostnames[node]
        pinned = sorted(set(owned_hostnames.get(naming.label_value(node), ())) - {value})
        if source != "node-label" or node in overrides or not pinned:
            continue
        problems.append("node %s now has the kubernetes.io/hostname label %s, but PVs of localpv.rollout of that "
                        "node are pinned to %s (a PV's nodeAffinity cannot change): if the node was relabelled on "
                        "purpose, set pv_register_hostname_labels {%s: %s} to keep those PVs, or retire them "
                        "first (decommission.yml). Nothing was changed."
                        % (node, value, ", ".join(pinned), node, pinned[0]))
    return problems


def inventory_volumes(hosts):
    """The normalized volumes (capacity unknown) the in-play hosts of ``hosts`` will
    publish, as far as the inventory tells: names and canonical paths."""
    items = []
    for item in hosts:
        if item.get("in_play"):
            for name, path in planned_volumes(item.get("disks"), item.get("mount_root") or "/mnt/disks"):
                items.append({"node": item["node"], "name": name, "path": path})
    volumes = []
    for item in items:
        volume, reasons = vol.normalize_volume(item, {"capacity_unknown_ok": True})
        if not reasons:   # a bad name is the host plan's to refuse, with the disk it names
            volumes.append(volume)
    return volumes


def pv_conflicts(volumes, hostnames, index, take_over=False):
    """Messages for what pv_register would refuse about ``volumes`` and that is known
    now: a PV not ours (without take-over), of another node, or more than one at a
    volume's node and canonical path; our PV name held by a PV at another place."""
    from ansible_collections.localpv.rollout.plugins.module_utils.kube import persistent_volumes as pvs

    problems = []
    for volume in volumes:
        hostname = hostnames[volume["node"]][0]
        pv, reason = pvs._match(volume, hostname, index, take_over)   # pylint: disable=protected-access
        if reason:
            problems.append(reason + ". Nothing was changed.")
            continue
        if pv is not None or volume["pv_name"] not in index.names:
            continue
        mine = index.owned.get(volume["pv_name"])
        if mine is not None and mine.owner == (naming.label_value(volume["node"]), naming.label_value(volume["name"])):
            continue   # our PV of this volume at its old path: pv_register says what it needs
        problems.append("volume %s of node %s would be PV %s, but a PV of that name already exists at another "
                        "path or node, or is not managed by localpv.rollout; rename the volume, or remove that "
                        "PV. Nothing was changed." % (volume["name"], volume["node"], volume["pv_name"]))
    return problems


def empty_hosts_with_pvs(hosts, index, prune=True, prune_empty=False):
    """Messages for in-play hosts with no ``localpv_disks`` that have PVs of ours: a
    group_vars mistake would prune them all. ``prune_empty`` says it is meant."""
    if not prune or prune_empty:
        return []
    owned_by_label = {}
    for name, listed in index.owned.items():
        owned_by_label.setdefault(listed.owner[0], []).append(name)
    problems = []
    for item in hosts:
        names = sorted(owned_by_label.get(naming.label_value(item["node"]), ()))
        if item.get("in_play") and not item.get("disks") and names:
            problems.append("host %s (node %s) has no localpv_disks, but %d PV(s) of localpv.rollout: %s%s; this "
                            "run would delete the unbound ones. If that is meant, set localpv_prune_empty: true; "
                            "else give the host its localpv_disks (check its group_vars). Nothing was changed."
                            % (item["host"], item["node"], len(names), ", ".join(names[:5]),
                               " ..." if len(names) > 5 else ""))
    return problems


class _Scan:
    """One LIST of every PV fed into a PvIndex, also keeping the PVs that are not
    ours pinned to ``hostnames`` at other paths (a symlink on the host may make one
    of them our directory: the host resolves them), and what the PVs of ours of the
    nodes ``scope`` record about their disks (each host proves its volumes' disks
    against them: what local_pv_records reads, from the same LIST)."""

    def __init__(self, index, hostnames, scope=()):
        self.index, self.hostnames = index, set(hostnames)
        self.node_of = dict((naming.label_value(node), node) for node in scope)
        self.reset()

    def reset(self):
        self.index.reset()
        self.others = []
        self.records = dict((node, {}) for node in self.node_of.values())

    def add(self, pv):
        self.index.add(pv)
        found = vol.recorded_identity(pv)
        if found is not None and found[0] in self.node_of:
            self.records[self.node_of[found[0]]][found[1]] = found[2]
        path = ((pv.get("spec") or {}).get("local") or {}).get("path")
        if vol.is_owned(pv) or not isinstance(path, str) or naming.canonical_path(path) in self.index.paths:
            return
        hostname = vol.affinity_hostname(pv)
        if hostname in self.hostnames:
            self.others.append({"name": pv["metadata"].get("name"), "path": path, "hostname": hostname})


def inventory_preflight(kube, hosts, take_over=False, prune=True, prune_empty=False, hostname_overrides=None):
    """Everything about the inventory's hosts that the cluster can tell before any host
    step, from one LIST of Nodes and one streamed LIST of PVs. ``hosts``: every
    inventory host that is a node of this collection, ``{"host", "node", "in_play",
    "disks", "mount_root"}``.

    Returns ``{"problems", "nodes", "other_paths", "records"}``: ``nodes`` per node
    of the play what its Node says (for the host's machine id check), ``other_paths``
    per node the PVs not ours pinned to it at other paths (for the host's symlink
    check), ``records`` per node what its PVs of ours record about their disks
    (:func:`volumes.recorded_identities`, for disk_prep's proof of each volume's disk)."""
    from ansible_collections.localpv.rollout.plugins.module_utils.kube import persistent_volumes as pvs

    problems = duplicate_node_names(hosts)
    play = [h for h in hosts if h.get("in_play")]
    scope = list(dict.fromkeys(h["node"] for h in play))
    volumes = inventory_volumes(hosts)
    cluster_nodes = kube.list_nodes()
    overrides = hostname_overrides or {}
    guesses = set(scope) | set(overrides.values())
    guesses |= set(node_facts(cluster_nodes, n)["hostname"] for n in scope) - {None}
    scan = _Scan(pvs.PvIndex(volumes, [naming.label_value(n) for n in scope]), guesses, scope)
    kube.scan_pvs(scan.add, start=scan.reset, limit=pvs.PV_PAGE_SIZE)
    hostnames = vol.resolve_hostnames(scope, cluster_nodes, scan.index.owned_hostnames, overrides)
    problems += relabelled_nodes(scope, hostnames, scan.index.owned_hostnames, overrides)
    problems += pv_conflicts(volumes, hostnames, scan.index, take_over)
    problems += empty_hosts_with_pvs(play, scan.index, prune, prune_empty)
    nodes = dict((n, dict(node_facts(cluster_nodes, n), hostname=hostnames[n][0])) for n in scope)
    other_paths = dict((n, [o for o in scan.others if o["hostname"] == hostnames[n][0]]) for n in scope)
    for node, facts in nodes.items():
        facts["volume_paths"] = [v["path"] for v in volumes if v["node"] == node]
    return {"problems": problems, "nodes": nodes, "other_paths": other_paths, "records": scan.records,
            "listed": scan.index.count}


# --- On the host: the host is its Node, and no other PV names our directory --------------

def _id_key(value):
    return (value or "").strip().lower().replace("-", "")


def host_identity_problems(host, node, cluster, machine_id, product_uuid):
    """``(problems, notes)`` of proving that ``host`` is Node ``node``: its machine id
    (``/etc/machine-id``) against the Node's ``status.nodeInfo.machineID``, else its
    DMI product UUID against ``systemUUID``. ``cluster`` is :func:`node_facts`."""
    if not cluster.get("exists"):
        return [], ["node %s is not a Node of the cluster yet (provisioning before it joins): host %s is taken "
                    "to be it, unproven" % (node, host)]
    pairs = (("machine id", machine_id, "status.nodeInfo.machineID", cluster.get("machine_id")),
             ("DMI product UUID", product_uuid, "status.nodeInfo.systemUUID", cluster.get("system_uuid")))
    for what, mine, field, theirs in pairs:
        if _id_key(mine) and _id_key(theirs):
            if _id_key(mine) == _id_key(theirs):
                return [], []
            return ["host %s is not Node %s: its %s is %s, the Node's %s is %s. Check localpv_node_name of host %s "
                    "(and ansible_host: the inventory may reach another machine). Nothing was changed."
                    % (host, node, what, mine.strip(), field, theirs.strip(), host)], []
    return [], ["host %s cannot be proven to be Node %s: the Node reports no machineID or systemUUID that the "
                "host's ids can be compared with" % (host, node)]


def same_directory_problems(node, volume_paths, other_pvs, realpath):
    """Messages for PVs that are not ours (``other_pvs``: ``{"name", "path"}``) whose
    path is, on this host (``realpath``), the directory of one of our volumes: a
    second PV for one directory would let two claims share it."""
    ours = {}
    for path in volume_paths:
        ours.setdefault(realpath(path), path)
    problems = []
    for pv in other_pvs:
        real = realpath(pv["path"])
        if real in ours:
            problems.append("PV %s (not managed by localpv.rollout) on node %s names %s, which on this host is %s, "
                            "the directory of our volume at %s: a second PV for it would let two claims share one "
                            "directory. A PV's path cannot change, so it cannot be taken over from that path: move "
                            "its claim's data and delete it (docs/pv_register.md, moving from the provisioner), or "
                            "take the volume out of localpv_disks. Nothing was changed."
                            % (pv["name"], node, pv["path"], real, ours[real]))
    return problems


def _first_line(path):
    try:
        with open(path) as handle:
            return (handle.readline() or "").strip()
    except (IOError, OSError):
        return ""


def read_host_ids(machine_id_files=("/etc/machine-id", "/var/lib/dbus/machine-id"),
                  product_uuid_file="/sys/class/dmi/id/product_uuid"):
    """``(machine id, DMI product UUID)`` of this host, empty when unreadable: the
    ids a kubelet reports as the Node's machineID and systemUUID."""
    machine_id = next((text for text in (_first_line(p) for p in machine_id_files) if text), "")
    return machine_id, _first_line(product_uuid_file)
