#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: local_pv_evict
short_description: Evict (or delete) the pods that use the claims of given local PVs, and wait until they are gone
version_added: 0.1.0
description:
  - For each PV in O(pvs) (owned by C(localpv.rollout)), finds the pods, in any namespace, that use the claim
    the PV is bound to and are scheduled to a node, and evicts them through the Eviction API, which honours
    PodDisruptionBudgets, or deletes them with O(action=delete). Then waits until they are gone.
  - A pod counts only while the claim it names is the very object (same uid) the PV is bound to, and only
    when it is scheduled; a pod that waits unscheduled cannot have the volume mounted and is reported in
    RV(pending).
  - Fails when an eviction is still refused (a PodDisruptionBudget) at O(timeout), when a pod does not go away
    within O(timeout), or when a pod that was not there at the start is scheduled with one of these claims (a
    controller puts it back onto the node). Nothing else is touched, so a run can be repeated.
  - In check mode the evictions and deletes are sent with server-side dry-run and nothing is waited for.
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
    details: Evictions and deletes are sent with server-side dry-run and nothing is waited for.
  diff_mode:
    support: none
options:
  pvs:
    description: Names of the PVs whose pods must go.
    type: list
    elements: str
    required: true
  nodes:
    description: The nodes of these PVs (Kubernetes node names); narrows the LISTs. Empty means every owned PV.
    type: list
    elements: str
    default: []
  action:
    description: V(evict) uses the Eviction API (PodDisruptionBudgets are honoured); V(delete) deletes the pods.
    type: str
    choices: [evict, delete]
    default: evict
  grace_period:
    description: Grace period of the pods' deletion in seconds; unset uses each pod's own.
    type: int
  timeout:
    description: Seconds to wait for refused evictions and for the pods to be gone.
    type: int
    default: 300
  dead_node:
    description:
      - The host of these PVs is dead (declared so by the user). Pods bound to a Node that no longer exists are
        neither evicted nor waited for (no kubelet will confirm that they stopped); they are listed in RV(stuck)
        and M(localpv.rollout.local_pv_delete) deletes them after their claim.
    type: bool
    default: false
seealso:
  - module: localpv.rollout.decommission_plan
"""

EXAMPLES = r"""
- name: Evict the pods that use node2's volumes, honouring their PodDisruptionBudgets
  localpv.rollout.local_pv_evict:
    pvs: "{{ plan.pv_names }}"
    nodes: [node2]
    timeout: 600
"""

RETURN = r"""
evicted:
  description: Pods (C(namespace/name)) evicted.
  returned: always
  type: list
  elements: str
  sample: [app/web-0]
deleted:
  description: Pods deleted (O(action=delete)).
  returned: always
  type: list
  elements: str
  sample: []
pending:
  description: Pods that use one of the claims and wait unscheduled; they never start once the claim is deleted.
  returned: always
  type: list
  elements: str
  sample: [app/web-1]
stuck:
  description: With O(dead_node), pods bound to a Node that no longer exists, left for M(localpv.rollout.local_pv_delete).
  returned: always
  type: list
  elements: str
  sample: [app/web-0]
blocked:
  description: On failure, the pods whose eviction is refused, with the API server's reason.
  returned: always
  type: dict
  sample: {app/db-0: Cannot evict pod as it would violate the pod's disruption budget.}
reason:
  description: On failure, why it stopped, one of V(pdb), V(stuck), V(recreated).
  returned: failure
  type: str
  sample: pdb
requests:
  description: HTTP requests made to the API server, by verb.
  returned: always
  type: dict
  sample: {create: 1, list: 3}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localpv.rollout.plugins.module_utils.kube import client as k
from ansible_collections.localpv.rollout.plugins.module_utils.kube import workloads


def main():
    module = AnsibleModule(
        argument_spec=k.module_arg_spec(
            pvs=dict(type="list", elements="str", required=True),
            nodes=dict(type="list", elements="str", default=[]),
            action=dict(type="str", choices=["evict", "delete"], default="evict"),
            grace_period=dict(type="int"),
            timeout=dict(type="int", default=workloads.DEFAULT_TIMEOUT),
            dead_node=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = {"evicted": [], "deleted": [], "pending": [], "stuck": [], "blocked": {}}
    with k.api_session(module, result, dry_run=module.check_mode) as kube:
        if p["pvs"]:
            result = workloads.clear_pods(kube, p["pvs"], action=p["action"], timeout=p["timeout"],
                                          grace_period=p["grace_period"], nodes=p["nodes"] or None,
                                          dead_node=p["dead_node"])
    changed = bool(result["evicted"] or result["deleted"])
    module.exit_json(changed=changed, requests=kube.requests, **result)


if __name__ == "__main__":
    main()
