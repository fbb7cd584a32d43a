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
  - One PV per disk. A PV's identity is its node's C(kubernetes.io/hostname) value and its C(spec.local.path),
    across every PV of the cluster, whoever made it. A wanted volume whose node and path already hold a PV is
    that PV, whatever its name.
  - One LIST of Nodes and one paginated LIST of every PV (streamed, only what the plan needs is kept), a diff,
    then concurrent create, patch and delete of only what differs, with a bounded worker pool and retries with
    backoff on 429, 5xx and timeouts. A run with nothing to change makes LIST requests only.
  - New PVs are named C(local-<node>-<volume>), where each C(-) of the node name is doubled (C(node-1) with
    C(data0) gives C(local-node--1-data0)), so that two node/volume pairs never share a name; shortened with a
    hash suffix when longer than 63 characters.
  - The nodeAffinity of a PV uses the C(kubernetes.io/hostname) label value of its Node, which is not
    always the node name. For a node that has not joined the cluster (yet), the value is taken, in
    order, from O(hostname_labels), from the node's existing PVs, else the node name itself.
  - A PV that is not owned (no managed-by label) is never modified or deleted, unless it sits at a wanted node
    and path and O(take_over=true). Without it, such a PV is a conflict naming both PVs.
  - An owned PV whose C(localpv.rollout/node) label names another node than the volume's is a conflict, never patched.
  - Everything the API server would refuse and that can be known beforehand (hostname values, StorageClasses that
    do not exist, missing capacities) and every conflict is found before the first write; when there is any,
    nothing is changed.
  - C(spec.local), C(volumeMode), C(nodeAffinity) and C(storageClassName) cannot be changed in place. Such a change
    deletes and creates the PV, only when it is not bound and O(replace_unbound=true); on a bound PV it is an error
    naming the PV and its claim. Capacity, access modes, reclaim policy, labels and our annotations are patched in
    place; on a bound PV only labels, annotations and the reclaim policy (the rest is reported in RV(held)).
  - The disk identity a PV records (annotations C(localpv.rollout/stable-id), C(localpv.rollout/partuuid),
    C(localpv.rollout/fs-uuid)) is never changed or removed on a bound PV; such a change is a conflict naming the
    PV, its claim and both identities (its claim keeps the old disk's data). Identities missing on a PV are added.
  - Patches carry the resourceVersion the PV was listed at; deletes carry its uid and resourceVersion.
author:
  - localpv.rollout contributors (@localpv)
extends_documentation_fragment:
  - localpv.rollout.attributes
  - localpv.rollout.attributes.controller
  - localpv.rollout.attributes.k8s_group
  - kubernetes.core.k8s_auth_options
  - localpv.rollout.client
attributes:
  check_mode:
    support: full
    details: Writes are sent with server-side dry-run; the result is what would be done.
  diff_mode:
    support: full
    details: The PVs before and after, per PV created, patched, replaced or deleted.
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
        or a value of the wrong type fails the run before any request, naming the item.
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
        description:
          - Capacity in bytes (an integer), or a Kubernetes quantity such as V(100Gi).
          - Required, except in check mode, where a volume not mounted yet may have none; it is then reported in
            RV(capacity_unknown) ("known after apply") and everything else is still checked.
        type: raw
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
      partuuid:
        description: GPT partition UUID, kept as annotation C(localpv.rollout/partuuid).
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
  take_over:
    description:
      - Make a PV that is not ours and sits at a wanted volume's node and path ours, to move from the local static
        provisioner or from hand-made PVs. It gets our labels and annotations (and the reclaim policy and, when
        unbound, the capacity that are wanted) in one patch; its name, its claim and the data on the disk stay.
        It is never deleted or made again; when its path, fsType, volume mode, node affinity or StorageClass differ
        from what is wanted, that is a conflict.
    type: bool
    default: false
  capacity_round_down:
    description:
      - Round every capacity down to a whole number of this unit, so that a claim for C(N Gi) behaves predictably
        (a 1.8 TiB filesystem offers C(1843Gi) instead of a number of bytes). Unset keeps the bytes measured.
    type: str
    choices: [Mi, Gi, Ti, M, G, T]
  hostname_labels:
    description:
      - C(kubernetes.io/hostname) label value per node name, for nodes whose value is known but that have not joined yet.
        Overrides the value of the Node object.
    type: dict
    default: {}
  return_names:
    description:
      - Also return the name of every PV per action (RV(created), RV(updated), RV(taken_over), RV(replaced),
        RV(deleted), RV(stale)). Without it, the result counts them per node and per action (RV(nodes)), which
        stays small at any number of PVs; a failed run returns the names anyway, and conflicts, errors, held and
        kept bound PVs are always named.
      - The module arguments echoed back in C(invocation) carry the number of volumes, not the volumes.
    type: bool
    default: false
  storage_classes:
    description:
      - StorageClasses to ensure before the PVs, each with the keys of M(localpv.rollout.local_storage_class)'s
        O(localpv.rollout.local_storage_class#module:storage_classes) and by its rules (a class of another owner is
        used when it matches and never changed; a class in conflict stops the run before any PV is listed).
      - Each class is read once (one GET); that read and the class's own write tell the check that the classes the
        PVs name exist, so no class is read again in the run. The pv_register role ensures its classes here, saving
        a module run of its own.
    type: list
    elements: dict
    default: []
    version_added: 0.1.0
  replace_storage_classes:
    description: Delete and create a class of O(storage_classes) of ours whose immutable fields differ from what
      is wanted (M(localpv.rollout.local_storage_class)'s O(localpv.rollout.local_storage_class#module:replace)).
    type: bool
    default: false
    version_added: 0.1.0
  report:
    description:
      - Also return RV(pvs), the PVs of ours of the nodes in scope as the API server has them after this run, for
        the end report of a run, without a second module run to read them back.
      - A run that wrote nothing (nothing to change, or check mode) returns them from its own LIST; a run whose
        writes the API server confirmed reads them once more (one LIST of the PVs of ours), and waits up to ten
        seconds for the PVs it created to get their phase from the PV controller.
    type: bool
    default: false
    version_added: 0.1.0
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

- name: Make the PVs the local static provisioner made for these disks ours (names, claims and data stay)
  localpv.rollout.local_pv:
    volumes: "{{ wanted_volumes }}"
    take_over: true
    capacity_round_down: Gi

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
  sample: {"node1": {"created": 2, "updated": 0, "taken_over": 0, "replaced": 0, "unchanged": 5, "deleted": 0,
           "conflicts": 0, "stale": 0, "kept_bound": 0}}
created:
  description: Names of the PVs created.
  returned: when O(return_names=true) or the run failed
  type: list
  elements: str
  sample: [local-node1-ssd0]
updated:
  description: Names of the PVs patched in place (labels, annotations, reclaim policy, access modes, capacity).
    Like every list of names here, only what the API server confirmed, also when the run failed.
  returned: when O(return_names=true) or the run failed
  type: list
  elements: str
taken_over:
  description: Names of the PVs that were not ours and were made ours in place (O(take_over=true)).
  returned: when O(return_names=true) or the run failed
  type: list
  elements: str
held:
  description: Bound PVs whose other fields differ from what is wanted and are left as they are under the claim.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "local-node1-ssd0", "node": "node1", "claim": "db/data-db-0", "fields": ["spec.capacity"]}]
capacity_unknown:
  description: In check mode, the PVs whose capacity is known only after apply (volumes not mounted yet); they
    were checked in everything else and not sent to the API server.
  returned: always
  type: list
  elements: dict
invalid:
  description: Why writes would be refused by the API server, found before the first write; when not empty,
    nothing was changed.
  returned: always
  type: list
  elements: str
  sample: [local-node1-ssd1]
replaced:
  description: Names of the unbound PVs deleted and created again (O(replace_unbound=true)).
  returned: when O(return_names=true) or the run failed
  type: list
  elements: str
  sample: []
deleted:
  description: Names of the unbound PVs deleted by O(prune), and of PVs whose replacement was deleted and not
    made again because the create failed.
  returned: when O(return_names=true) or the run failed
  type: list
  elements: str
  sample: [local-node1-old]
stale:
  description: Owned PVs of nodes in scope that are no longer wanted and were left because O(prune=false).
  returned: when O(return_names=true) or the run failed
  type: list
  elements: str
  sample: []
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
  sample: [{name: local-node1-ssd2, status: 422, msg: 'PersistentVolume "local-node1-ssd2" is invalid: ...'}]
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
storage_classes:
  description: One entry per class of O(storage_classes) with what was done (V(create), V(patch), V(replace),
    V(unchanged), V(conflict)), as M(localpv.rollout.local_storage_class) returns it.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "local-storage", "action": "unchanged", "changes": []}]
pvs:
  description:
    - With O(report=true), the PVs of ours of the nodes in scope, sorted by name, as the API server has them after
      the run, with the keys of M(localpv.rollout.local_pv_info)'s C(pvs) that the PV itself tells (C(name),
      C(node), C(volume), C(hostname), C(node_exists), C(node_ready), C(path), C(fstype), C(stable_id),
      C(volume_mode), C(capacity), C(storage_class), C(reclaim_policy), C(phase), C(claim), C(claim_uid), C(uid),
      C(resource_version), C(deleting)). The facts of claims and pods (C(claim_phase), C(pods)) are not read.
  returned: when O(report=true) and the run got to its writes
  type: list
  elements: dict
throttled:
  description:
    - Answers of the API server that asked to wait (429, or 503 with C(Retry-After)); each such request was
      tried again, within O(retry_deadline). Not zero means the server was under load or the identity's
      priority level was full.
  returned: always
  type: int
  sample: 0
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming
from ansible_collections.localpv.rollout.plugins.module_utils.kube import client as k
from ansible_collections.localpv.rollout.plugins.module_utils.kube import persistent_volumes as pvs
from ansible_collections.localpv.rollout.plugins.module_utils.kube import storage_classes as sc
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volume_input as vi
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v

NAME_KEYS = ("created", "updated", "taken_over", "replaced", "deleted", "stale")


def _fail_message(result):
    if result["invalid"]:
        return "%d write(s) would be refused, nothing was changed: %s" % (
            len(result["invalid"]), " | ".join(result["invalid"]))
    if result["conflicts"]:
        return "%d conflict(s), nothing was changed: %s" % (
            len(result["conflicts"]), " | ".join(c["reason"] for c in result["conflicts"]))
    done = [n for key in ("created", "updated", "taken_over", "replaced", "deleted") for n in result[key]]
    return "%d change(s) failed, %d were made (see created, updated, taken_over, replaced, deleted): %s" % (
        len(result["errors"]), len(done),
        " | ".join("%s %s: %s" % (e["action"], e["name"], e["msg"]) for e in result["errors"]))


def wanted_volumes(module, result):
    """The volumes option, its shape checked here and its values by the volume model;
    the module fails naming every bad item, before any request."""
    p = module.params
    items, errors = vi.load_volume_items(p["volumes"])
    result["invocation"] = {"module_args": vi.invocation_args(p, len(items))}
    errors = errors or vi.check_volume_items(items)
    volumes = []
    if not errors:
        volumes, errors = v.normalize_volumes(items, defaults={
            "storage_class": p["storage_class"], "reclaim_policy": p["reclaim_policy"], "labels": p["labels"],
            "capacity_round_down": p["capacity_round_down"], "capacity_unknown_ok": module.check_mode})
    errors += ["nodes: %s: %s" % (n, "; ".join(naming.node_name_reasons(n))) for n in p["nodes"] if naming.node_name_reasons(n)]
    if errors:
        module.fail_json(msg="invalid volumes, nothing was changed: " + " | ".join(errors), **dict(result, invalid=errors))
    return volumes


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
            take_over=dict(type="bool", default=False),
            capacity_round_down=dict(type="str", choices=list(v.ROUND_UNITS)),
            hostname_labels=dict(type="dict", default={}),
            return_names=dict(type="bool", default=False),
            storage_classes=dict(type="list", elements="dict", default=[]),
            replace_storage_classes=dict(type="bool", default=False),
            report=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = dict(changed=False, nodes={}, conflicts=[], errors=[], kept_bound=[], held=[], capacity_unknown=[],
                  invalid=[], hostnames={}, requests={}, throttled=0, storage_classes=[])
    for key in NAME_KEYS:
        result[key] = []
    volumes = wanted_volumes(module, result)

    classes, errors = sc.normalize_storage_classes(p["storage_classes"])
    if errors:
        result["invalid"] = errors
        module.fail_json(msg="invalid storage_classes, nothing was changed: " + " | ".join(errors), **result)

    with k.api_session(module, result, dry_run=module.check_mode, suffix="; nothing was changed") as kube:
        outcome = pvs.register(kube, classes, volumes, replace_classes=p["replace_storage_classes"],
                               nodes=p["nodes"], prune=p["prune"], replace_unbound=p["replace_unbound"],
                               take_over=p["take_over"], hostname_overrides=p["hostname_labels"], report=p["report"])
    result["storage_classes"], classes_changed, stop = sc.ensure_outcome(outcome["classes"])
    result["requests"] = kube.requests
    result["throttled"] = kube.throttled
    diff = [sc.class_diff(r) for r in outcome["classes"] if r["action"] in ("create", "patch", "replace")]
    if stop:
        result["changed"] = classes_changed
        if module._diff:
            result["diff"] = diff
        module.fail_json(msg="StorageClasses: " + stop, **result)
    result.update(pvs.run_result(outcome, list(dict.fromkeys(p["nodes"] + [x["node"] for x in volumes]))))
    result["changed"] = result["changed"] or classes_changed
    if "report" in outcome:
        result["pvs"] = outcome["report"]
    for warning in outcome["warnings"]:
        module.warn(warning)
    if module._diff:
        result["diff"] = diff + [pvs.action_diff(a) for a in outcome["actions"] if a["action"] in pvs.WRITE_ACTIONS]
    if outcome["failed"]:
        module.fail_json(msg=_fail_message(result), **result)
    if not p["return_names"]:
        # the counts per node say the same in a size that does not grow with the PVs
        for key in NAME_KEYS:
            del result[key]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
