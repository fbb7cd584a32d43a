#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: local_pv
short_description: Reconcile the whole set of local PersistentVolumes in one call
version_added: 0.1.0
description:
  - Takes the whole desired set of local volumes (node, volume name, path, mode, filesystem type,
    capacity, StorageClass) and makes the PersistentVolumes that C(localpv.rollout) owns match it.
  - One paginated LIST of the owned PVs (label C(app.kubernetes.io/managed-by=localpv.rollout)),
    one LIST of Nodes, a diff, then concurrent create, patch and delete of only what differs,
    with a bounded worker pool and retries with backoff on 429, 5xx and timeouts.
    A run with nothing to change makes LIST requests only.
  - PV names are C(local-<node>-<volume>), shortened with a hash suffix when longer than 63 characters.
  - The nodeAffinity of a PV uses the C(kubernetes.io/hostname) label value of its Node, which is not
    always the node name. For a node that has not joined the cluster (yet), the value is taken, in
    order, from O(hostname_labels), from the node's existing PVs, else the node name itself.
  - A PV that is not owned (no managed-by label) is never modified or deleted; a wanted name that is
    taken by such a PV is an error.
  - Conflicts are found before the first write; when there is any, nothing is changed.
  - C(spec.local), C(volumeMode), C(capacity), C(nodeAffinity) and C(storageClassName) cannot be changed
    in place. Such a change deletes and creates the PV, only when it is not bound and
    O(replace_unbound=true); on a bound PV it is an error naming the PV and its claim.
author:
  - localpv.rollout contributors (@localpv)
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - localpv.rollout.client
options:
  volumes:
    description:
      - The whole desired set of volumes, typically the C(localpv_volumes) facts of all nodes of a play,
        each with its O(volumes[].node).
      - A list of dicts, or the JSON text of such a list. JSON text is the compact form in which the
        pv_register role hands the volumes over, so that Ansible carries one string rather than
        templating, serializing and copying every volume.
      - The keys and their types are checked by the module (not by Ansible's nested options, which cost
        more than making the PVs at tens of thousands of volumes); an unknown key, a missing required key
        or a value of the wrong type fails the run before any change, naming the item.
    type: raw
    required: true
    suboptions:
      node:
        description: Kubernetes node name of the node that holds the volume.
        type: str
        required: true
      name:
        description: Volume name, an RFC 1123 label (the directory under the mount root and part of the PV name).
        type: str
        required: true
      path:
        description: Absolute path of the mount point (filesystem mode) or of the device link (block mode) on the node.
        type: str
        required: true
      mode:
        description: V(filesystem) makes a PV with C(volumeMode=Filesystem), V(block) one with C(volumeMode=Block).
        type: str
        choices: [filesystem, block]
        default: filesystem
      fstype:
        description: Filesystem type recorded in C(spec.local.fsType). Ignored for block volumes.
        type: str
      capacity:
        description: Capacity in bytes (an integer), or a Kubernetes quantity such as V(100Gi).
        type: raw
        required: true
      storage_class:
        description: StorageClass of the PV. Defaults to O(storage_class).
        type: str
      reclaim_policy:
        description: Reclaim policy of the PV. Defaults to O(reclaim_policy).
        type: str
        choices: [Retain, Delete]
      labels:
        description: Extra labels of this PV, on top of O(labels).
        type: dict
      stable_id:
        description: Stable id of the disk (C(/dev/disk/by-id) name, WWN or serial), kept as annotation C(localpv.rollout/stable-id).
        type: str
      uuid:
        description: Filesystem UUID, kept as annotation C(localpv.rollout/fs-uuid).
        type: str
  nodes:
    description:
      - The nodes this run is responsible for, in addition to the nodes named in O(volumes).
      - Owned PVs of other nodes are never pruned, so a run limited to some nodes leaves the others alone.
        Name a node here with no volume in O(volumes) to prune all of its PVs.
    type: list
    elements: str
    default: []
  storage_class:
    description: StorageClass of volumes that do not name one.
    type: str
    default: local-storage
  reclaim_policy:
    description:
      - Reclaim policy of volumes that do not name one.
      - V(Delete) on a static PV makes it C(Failed) when its claim goes away; keep V(Retain) and recycle with the reclaim playbook.
    type: str
    choices: [Retain, Delete]
    default: Retain
  labels:
    description:
      - Extra labels of every PV. Labels set by others on a PV are left alone; an extra label that an earlier run
        set and that is no longer wanted is removed.
    type: dict
    default: {}
  prune:
    description:
      - Delete owned PVs of the nodes in scope that are no longer wanted, when they are not bound.
        Bound ones are kept and reported in RV(kept_bound).
    type: bool
    default: false
  replace_unbound:
    description: Allow deleting and creating an unbound PV whose immutable fields must change.
    type: bool
    default: false
  hostname_labels:
    description:
      - C(kubernetes.io/hostname) label value per node name, for nodes whose value is known but that have not joined yet.
        Overrides the value of the Node object.
    type: dict
    default: {}
  return_names:
    description:
      - Also return the name of every PV per action (RV(created), RV(updated), RV(replaced), RV(deleted),
        RV(stale)). Without it, the result counts them per node and per action (RV(nodes)), which stays small
        at any number of PVs; conflicts, errors and bound PVs kept are always named.
      - The module arguments echoed back in C(invocation) carry the number of volumes, not the volumes.
    type: bool
    default: false
    version_added: 0.2.0
notes:
  - Check mode sends the same writes with server-side dry-run (C(dryRun=All)), so the API server validates
    and admits them and nothing is persisted. A replacement shows as its delete.
  - Diff mode returns one before/after entry per PV that changes.
  - Needs the verbs of the ClusterRole in C(deploy/rbac/localpv-rollout-clusterrole.yaml).
seealso:
  - module: localpv.rollout.local_storage_class
  - module: localpv.rollout.local_pv_info
"""

EXAMPLES = r"""
- name: Register the local PVs of all nodes of the play
  localpv.rollout.local_pv:
    kubeconfig: ~/.kube/config
    volumes:
      - node: node1
        name: ssd0
        path: /mnt/disks/ssd0
        fstype: xfs
        capacity: 107374182400
        storage_class: local-storage
      - node: node2
        name: raw0
        path: /dev/disk/by-id/wwn-0x5000c500a1b2c3d4
        mode: block
        capacity: 4000787030016
    nodes: [node1, node2]
    prune: true

- name: Same, but say exactly what would change, naming every PV
  localpv.rollout.local_pv:
    volumes: "{{ wanted_volumes }}"
    return_names: true
  check_mode: true
  diff: true

- name: Hand over many volumes as JSON text (one string for Ansible to carry)
  localpv.rollout.local_pv:
    volumes: "{{ wanted_volumes | to_json }}"
    nodes: "{{ wanted_nodes }}"
"""

RETURN = r"""
nodes:
  description: Counts per node of what was done (or, in check mode, would be done).
  returned: always
  type: dict
  sample: {"node1": {"created": 2, "updated": 0, "replaced": 0, "unchanged": 5, "deleted": 0,
           "conflicts": 0, "stale": 0, "kept_bound": 0}}
created:
  description: Names of the PVs created.
  returned: when O(return_names=true)
  type: list
  elements: str
updated:
  description: Names of the PVs patched in place (labels, annotations, reclaim policy, access modes).
  returned: when O(return_names=true)
  type: list
  elements: str
replaced:
  description: Names of the unbound PVs deleted and created again (O(replace_unbound=true)).
  returned: when O(return_names=true)
  type: list
  elements: str
deleted:
  description: Names of the unbound PVs deleted by O(prune).
  returned: when O(return_names=true)
  type: list
  elements: str
stale:
  description: Owned PVs of nodes in scope that are no longer wanted and were left because O(prune=false).
  returned: when O(return_names=true)
  type: list
  elements: str
kept_bound:
  description: Owned PVs no longer wanted that were kept because they are bound.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "local-node1-ssd3", "node": "node1", "claim": "db/data-db-0"}]
conflicts:
  description: Why wanted PVs could not be made; when not empty, nothing was changed.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "local-node1-ssd0", "node": "node1", "claim": "db/data-db-0",
            "reason": "PV local-node1-ssd0 is bound to claim db/data-db-0 and spec.capacity cannot change in place"}]
errors:
  description: Writes that failed, with the API server's reason.
  returned: always
  type: list
  elements: dict
hostnames:
  description: The C(kubernetes.io/hostname) value used per node and where it came from
    (V(node-label), V(override), V(existing-pv), V(node-name)).
  returned: always
  type: dict
  sample: {"node3": {"value": "node3-host", "source": "node-label"}}
requests:
  description: HTTP requests made to the API server, by verb (retries included).
  returned: always
  type: dict
  sample: {"list": 2}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localpv.rollout.plugins.module_utils import kube as k
from ansible_collections.localpv.rollout.plugins.module_utils import volume_input as vi
from ansible_collections.localpv.rollout.plugins.module_utils import volumes as v

NAME_KEYS = ("created", "updated", "replaced", "deleted", "stale")


def wanted_volumes(module):
    """The volumes option checked and normalized, or the module fails naming every bad item."""
    p = module.params
    items, errors = vi.load_volume_items(p["volumes"])
    invocation = {"module_args": vi.invocation_args(p, len(items))}
    errors = errors or vi.check_volume_items(items)
    volumes = []
    if not errors:
        volumes, errors = v.normalize_volumes(
            items, defaults={"storage_class": p["storage_class"], "reclaim_policy": p["reclaim_policy"],
                             "labels": p["labels"]})
    errors += ["nodes: %s: %s" % (n, "; ".join(v.node_name_reasons(n))) for n in p["nodes"] if v.node_name_reasons(n)]
    if errors:
        module.fail_json(msg="invalid volumes, nothing was changed: " + " | ".join(errors), invalid=errors,
                         changed=False, invocation=invocation)
    return volumes, invocation


def outcome_result(module, volumes, outcome, requests):
    """The module result of a reconcile: counts per node, names only when asked."""
    p = module.params
    actions = outcome["actions"]
    done = [a for a in actions if not a.get("error")]
    per_node, names = v.summarize(done, nodes=list(dict.fromkeys(p["nodes"] + [x["node"] for x in volumes])))
    result = dict(nodes=per_node, requests=requests)
    if p["return_names"]:
        result.update((key, names[key]) for key in NAME_KEYS)
    result["hostnames"] = dict((n, {"value": val, "source": src}) for n, (val, src) in outcome["hostnames"].items())
    result["conflicts"] = [dict((key, a.get(key)) for key in ("name", "node", "volume", "claim", "reason", "changes"))
                           for a in actions if a["action"] == "conflict"]
    result["kept_bound"] = [{"name": a["name"], "node": a["node"], "claim": a["claim"]}
                            for a in actions if a["action"] == "kept_bound"]
    result["errors"] = [{"name": a["name"], "action": a["action"], "msg": a["error"]} for a in actions if a.get("error")]
    result["changed"] = any(a["action"] in ("create", "patch", "replace", "delete") for a in done)
    if module._diff:
        result["diff"] = [v.action_diff(a) for a in actions if a["action"] in ("create", "patch", "replace", "delete")]
    return result


def main():
    module = AnsibleModule(
        argument_spec=k.module_arg_spec(
            volumes=dict(type="raw", required=True),
            nodes=dict(type="list", elements="str", default=[]),
            storage_class=dict(type="str", default=v.DEFAULT_STORAGE_CLASS),
            reclaim_policy=dict(type="str", choices=["Retain", "Delete"], default=v.DEFAULT_RECLAIM_POLICY),
            labels=dict(type="dict", default={}),
            prune=dict(type="bool", default=False),
            replace_unbound=dict(type="bool", default=False),
            hostname_labels=dict(type="dict", default={}),
            return_names=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    volumes, invocation = wanted_volumes(module)
    result = dict(changed=False, nodes={}, conflicts=[], errors=[], kept_bound=[], hostnames={}, requests={},
                  invocation=invocation)
    with k.api_session(module, result, dry_run=module.check_mode, suffix="; nothing was changed") as kube:
        outcome = k.reconcile_local_pvs(kube, volumes, nodes=p["nodes"], prune=p["prune"],
                                        replace_unbound=p["replace_unbound"],
                                        hostname_overrides=p["hostname_labels"])
    result.update(outcome_result(module, volumes, outcome, kube.requests))
    if result["conflicts"]:
        module.fail_json(msg="%d conflict(s), nothing was changed: %s" % (
            len(result["conflicts"]), " | ".join(c["reason"] for c in result["conflicts"])), **result)
    if result["errors"]:
        module.fail_json(msg="%d of %d changes failed: %s" % (
            len(result["errors"]), len([a for a in outcome["actions"]
                                        if a["action"] in ("create", "patch", "replace", "delete")]),
            " | ".join("%s %s: %s" % (e["action"], e["name"], e["msg"]) for e in result["errors"])), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
