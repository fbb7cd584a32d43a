#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: local_pv_delete
short_description: Delete the claims of given local PVs and wait until gone, then the PVs and wait until gone
version_added: 0.1.0
description:
  - The last two steps of the safe order. Call it only after the pods that use the claims are gone and the
    volumes are unmounted on their hosts (the decommission role does exactly that).
  - Every PV must be owned by C(localpv.rollout); one that is not stops the module before the first delete.
    A claim that a scheduled pod still uses stops it too.
  - Claims and PVs are deleted with a uid precondition and waited for by uid, so that a claim made again under the
    same name (a StatefulSet does that) is neither deleted nor waited for. The PVs are deleted only once their claims
    are gone; nothing relies on the protection finalizers for the order.
  - Claim, then pod (kubernetes#113139) - once a claim is deleted, its pods that will never start are deleted
    too (grace period 0, by uid), so that a StatefulSet makes the claim and the pod again, bound to another
    volume - the pods a controller made that wait unscheduled, and with O(dead_node) the pods bound to a Node
    that no longer exists. They are listed before the claim's delete, so a claim and pod made fresh for a
    replica (same names, new uids) are never touched.
  - A PV that is gone already is reported in RV(gone), so running the module again after an interruption finishes
    the job.
  - In check mode the deletes are sent with server-side dry-run and nothing is waited for.
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
    details: Deletes are sent with server-side dry-run and nothing is waited for.
  diff_mode:
    support: full
    details: The PVs deleted (or that would be).
options:
  pvs:
    description: Names of the PVs to delete, with their claims.
    type: list
    elements: str
    required: true
  timeout:
    description: Seconds to wait for the claims, then for the PVs, to be gone.
    type: int
    default: 300
  dead_node:
    description:
      - The host of these PVs is dead (declared so by the user). A pod bound to a Node that no longer exists does
        not stop the module; it is deleted after its claim.
    type: bool
    default: false
seealso:
  - module: localpv.rollout.decommission_plan
  - module: localpv.rollout.local_pv_evict
"""

EXAMPLES = r"""
- name: Delete the claims, then the PVs of node2's retired volumes
  localpv.rollout.local_pv_delete:
    pvs: "{{ plan.pv_names }}"
"""

RETURN = r"""
claims_deleted:
  description: Claims (C(namespace/name)) deleted.
  returned: always
  type: list
  elements: str
  sample: [app/data-web-0]
pods_deleted:
  description: Pods (C(namespace/name)) deleted after their claim, because they would never start.
  returned: always
  type: list
  elements: str
  sample: [app/web-0]
pvs_deleted:
  description: PVs deleted.
  returned: always
  type: list
  elements: str
  sample: [local-node2-ssd0]
gone:
  description: PVs that were gone already.
  returned: always
  type: list
  elements: str
  sample: []
reason:
  description: On failure, why it stopped, one of V(foreign), V(in_use), V(stuck).
  returned: failure
  type: str
  sample: in_use
requests:
  description: HTTP requests made to the API server, by verb.
  returned: always
  type: dict
  sample: {delete: 2, get: 6}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localpv.rollout.plugins.module_utils.kube import client as k
from ansible_collections.localpv.rollout.plugins.module_utils.kube import workloads


def main():
    module = AnsibleModule(
        argument_spec=k.module_arg_spec(
            pvs=dict(type="list", elements="str", required=True),
            timeout=dict(type="int", default=workloads.DEFAULT_TIMEOUT),
            dead_node=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = {"claims_deleted": [], "pods_deleted": [], "pvs_deleted": [], "gone": []}
    with k.api_session(module, result, dry_run=module.check_mode) as kube:
        result = workloads.delete_claims_and_pvs(kube, p["pvs"], timeout=p["timeout"], dead_node=p["dead_node"])
    module.exit_json(changed=bool(result["claims_deleted"] or result["pods_deleted"] or result["pvs_deleted"]), requests=kube.requests,
                     diff={"before": "".join("PV %s\n" % n for n in result["pvs_deleted"]), "after": ""},
                     **result)


if __name__ == "__main__":
    main()
