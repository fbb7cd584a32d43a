#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: preflight
short_description: Check with the API server, before any change, that a run can finish
version_added: 0.1.0
description:
  - Asks the API server, with one SelfSubjectAccessReview per right, whether the identity of the connection may do
    everything the run O(run) will do with these options; a missing right is named with its verb, its resource and
    the shipped ClusterRole file under C(deploy/rbac/) that grants it.
  - Checks that each node of O(nodes) is a Node of the cluster (by name or C(kubernetes.io/hostname) label) or the
    node of a PV of C(localpv.rollout), and that each StorageClass of O(storage_classes) either does not exist yet or
    exists with the same immutable fields.
  - With O(hosts), checks the inventory against the cluster (see O(hosts)), so that every conflict the cluster can
    tell before a disk is touched stops the run there, and returns from the same LIST of PVs what the PVs record
    about their volumes' disks (RV(records)).
  - The SelfSubjectAccessReviews are sent concurrently, on the worker pool of the collection's one client.
  - Reads only. The playbooks run it before any step on a host, so that a wrong kubeconfig, a missing right or a
    typo in a node name stops the run before a disk is formatted or a pod evicted.
author:
  - localpv.rollout contributors (@localpv)
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - localpv.rollout.client
attributes:
  check_mode:
    support: full
    description: Runs the same in check mode; it writes nothing in either mode.
options:
  run:
    description: The run whose rights are checked.
    type: str
    choices: [site, decommission, reclaim]
    required: true
  nodes:
    description: Kubernetes node names (or hostname labels) the run works on, which must be known to the cluster.
    type: list
    elements: str
    default: []
  storage_classes:
    description: StorageClasses the run ensures, with the keys of M(localpv.rollout.local_storage_class).
    type: list
    elements: dict
    default: []
  prune:
    description: V(site) deletes PVs that are no longer wanted (needs delete on PVs).
    type: bool
    default: true
  replace_unbound:
    description: V(site) replaces unbound PVs (needs delete on PVs).
    type: bool
    default: false
  report:
    description: V(site) prints a table of its PVs. The table is made from what M(localpv.rollout.local_pv) reads
      and writes, so it needs no right of its own (claims and pods are not read).
    type: bool
    default: true
  cordon:
    description: V(decommission) cordons the Node (needs get and patch on nodes).
    type: bool
    default: true
  pod_action:
    description: V(decommission) evicts (pods/eviction) or deletes (pods) the pods that use the volumes.
    type: str
    choices: [evict, delete]
    default: evict
  delete_node:
    description: V(decommission) deletes the Node object (needs delete on nodes).
    type: bool
    default: false
  hosts:
    description:
      - V(site) checks the inventory against the cluster before any host step, from one LIST of Nodes and one of
        PVs. Every inventory host that is a node of this collection (the whole inventory, not only the play),
        each with C(host), C(node) (its Kubernetes node name), C(in_play), C(disks) (its C(localpv_disks)) and
        C(mount_root).
      - Refused are two hosts that name one node; a node whose C(kubernetes.io/hostname) label is no longer the
        one its PVs are pinned to; a PV that is not ours (unless O(take_over)), of another node, or more than
        one, at the node and canonical path of a volume named in C(disks); a PV of another place holding the
        name of such a volume's PV; and a host of the play with no C(disks) that has PVs of ours while O(prune)
        is on, unless O(prune_empty).
    type: list
    elements: dict
    default: []
  take_over:
    description: PVs that are not ours at a volume's node and path will be taken over (not refused).
    type: bool
    default: false
  prune_empty:
    description: A host of the play with no volumes may lose all of its unbound PVs (it is meant).
    type: bool
    default: false
  hostname_labels:
    description: C(kubernetes.io/hostname) value per node name, as M(localpv.rollout.local_pv) takes it.
    type: dict
    default: {}
seealso:
  - module: localpv.rollout.local_pv
  - module: localpv.rollout.decommission_plan
"""

EXAMPLES = r"""
- name: Check the rights of a decommission before any host step
  localpv.rollout.preflight:
    run: decommission
    nodes: [node3]
    kubeconfig: ~/.kube/retire.conf
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
rights:
  description: The rights checked, each with C(verb), C(resource), C(group) and the C(role_file) that grants it.
  returned: success
  type: list
  elements: dict
missing_rights:
  description: The rights of RV(rights) the identity does not have, each with C(msg).
  returned: always
  type: list
  elements: dict
identity:
  description: The user the API server knows the connection as (SelfSubjectReview), when a right is missing.
  returned: when a right is missing and the server answers
  type: str
  sample: system:serviceaccount:kube-system:localpv-rollout
nodes:
  description:
    - Per node of the play (with O(hosts)), what its Node says, for M(localpv.rollout.node_identity)
      C(exists), C(machine_id), C(system_uuid), C(hostname) (the value its PVs are pinned to) and
      C(volume_paths) (the canonical paths of its volumes named in the inventory).
  returned: always
  type: dict
other_paths:
  description: Per node of the play (with O(hosts)), the PVs not ours pinned to it at paths that are not a volume's,
    each with C(name) and C(path), for the host to resolve.
  returned: always
  type: dict
records:
  description:
    - Per node of the play (with O(hosts)), per volume, what its PV of C(localpv.rollout) records about the disk
      of the volume, as M(localpv.rollout.local_pv_records) returns it, from the same LIST of PVs. The input of
      M(localpv.rollout.disk_prepare)'s O(localpv.rollout.disk_prepare#module:recorded).
  returned: always
  type: dict
  version_added: 0.1.0
  sample: {"node1": {"ssd0": {"pv": "local-node1-ssd0", "stable_id": "nvme-eui.0025385b71b0a1c2",
           "partuuid": null, "fs_uuid": null, "claim": null}}}
unknown_nodes:
  description: Names of O(nodes) the cluster does not know.
  returned: always
  type: list
  elements: str
problems:
  description: Every reason the run would not finish, as messages.
  returned: always
  type: list
  elements: str
api_server:
  description: The API server that answered.
  returned: success
  type: str
requests:
  description: HTTP requests made to the API server, by verb.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localpv.rollout.plugins.module_utils.kube import client as k
from ansible_collections.localpv.rollout.plugins.module_utils.kube import preflight as pf
from ansible_collections.localpv.rollout.plugins.module_utils.kube import storage_classes as sc


def main():
    module = AnsibleModule(
        argument_spec=k.module_arg_spec(
            # Unlike kubernetes.core, a kubeconfig path is shown: the message must name it. An inline
            # kubeconfig (a dict) is hidden below.
            kubeconfig=dict(type="raw", no_log=False),
            run=dict(type="str", choices=["site", "decommission", "reclaim"], required=True),
            nodes=dict(type="list", elements="str", default=[]),
            storage_classes=dict(type="list", elements="dict", default=[]),
            prune=dict(type="bool", default=True),
            replace_unbound=dict(type="bool", default=False),
            report=dict(type="bool", default=True),
            cordon=dict(type="bool", default=True),
            pod_action=dict(type="str", choices=["evict", "delete"], default="evict"),
            delete_node=dict(type="bool", default=False),
            hosts=dict(type="list", elements="dict", default=[]),
            take_over=dict(type="bool", default=False),
            prune_empty=dict(type="bool", default=False),
            hostname_labels=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if isinstance(p["kubeconfig"], dict):
        module.no_log_values.update(pf.leaf_strings(p["kubeconfig"]))
    needs = pf.rights_for(p["run"], prune=p["prune"], replace_unbound=p["replace_unbound"], report=p["report"],
                          cordon=p["cordon"], pod_action=p["pod_action"], delete_node=p["delete_node"])
    classes = [sc.normalize_storage_class(item)[0] for item in p["storage_classes"]]
    where = k.connection_source(p)
    result = dict(changed=False, missing_rights=[], unknown_nodes=[], problems=[], nodes={}, other_paths={},
                  records={})
    with k.api_session(module, result, suffix=" (%s). Nothing was changed." % where) as kube:
        found = pf.preflight(kube, needs, nodes=p["nodes"], storage_classes=classes)
        if p["hosts"] and not found["missing_rights"]:
            planned = pf.inventory_preflight(kube, p["hosts"], take_over=p["take_over"], prune=p["prune"],
                                             prune_empty=p["prune_empty"], hostname_overrides=p["hostname_labels"])
            found["problems"] = found["problems"] + planned.pop("problems")
            found.update(planned)
    result.update(found, api_server=kube.host, requests=kube.requests)
    if found["problems"]:
        module.fail_json(msg="preflight of %s against %s (%s) found %d problem(s) before any change; nothing was "
                             "changed: %s" % (p["run"], kube.host, where, len(found["problems"]),
                                              " | ".join(found["problems"])), **result)
    module.exit_json(rights=needs, **result)


if __name__ == "__main__":
    main()
