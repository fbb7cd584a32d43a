#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: local_pv_release
short_description: Make Released local PVs Available again by removing their claimRef
version_added: 0.1.0
description:
  - For each PV in O(pvs), owned by C(localpv.rollout), removes C(spec.claimRef) so that the PV binder can bind it
    to a new claim. Call it only after the volume's data is wiped on its host (the reclaim role does that).
  - The write is a JSON patch that first tests C(spec.claimRef.uid), so the API server removes the claimRef only if
    the PV is still reserved for the claim it was released by. A PV whose claim still exists (same uid) is refused.
  - With O(reservation), each PV must carry that reservation of M(localpv.rollout.local_pv_reserve) instead; a PV
    whose reservation was taken away is refused and left alone.
  - A refusal names what was wiped of the PV's volume, when the item says it (C(said) of
    M(localpv.rollout.local_volume_wipe)). A refused PV does not stop the others; the module then fails with one
    message naming every refused PV and the PVs it released.
  - A PV without claimRef is reported in RV(already); running again is safe.
  - In check mode the patches are sent with server-side dry-run.
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
    details: Patches are sent with server-side dry-run.
  diff_mode:
    support: full
    details: The PVs that go from Released to Available.
options:
  pvs:
    description:
      - The PVs, each C({name, claim_uid}) as M(localpv.rollout.local_pv_info) reports them.
      - Or, with O(reservation), the C(volumes) result of M(localpv.rollout.local_volume_wipe) (C(pv), C(said)).
    type: list
    elements: dict
    required: true
  reservation:
    description: The reservation uid of M(localpv.rollout.local_pv_reserve) that each PV must carry; it replaces
      C(claim_uid).
    type: str
seealso:
  - module: localpv.rollout.local_pv_info
  - module: localpv.rollout.local_volume_wipe
"""

EXAMPLES = r"""
- name: Make the wiped PVs Available
  localpv.rollout.local_pv_release:
    pvs: "{{ info.pvs | selectattr('phase', 'equalto', 'Released') | list }}"
"""

RETURN = r"""
released:
  description: PVs whose claimRef was removed.
  returned: always
  type: list
  elements: str
  sample: [local-node2-ssd0]
already:
  description: PVs that had no claimRef any more.
  returned: always
  type: list
  elements: str
  sample: []
requests:
  description: HTTP requests made to the API server, by verb.
  returned: always
  type: dict
  sample: {get: 1, patch: 1}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localpv.rollout.plugins.module_utils.kube import client as k
from ansible_collections.localpv.rollout.plugins.module_utils.kube import workloads


def main():
    module = AnsibleModule(
        argument_spec=k.module_arg_spec(pvs=dict(type="list", elements="dict", required=True),
                                        reservation=dict(type="str")),
        supports_check_mode=True,
    )
    result = {"released": [], "already": []}
    reservation = module.params["reservation"]
    items = [{"name": item.get("name") or item.get("pv"), "claim_uid": reservation or item.get("claim_uid"),
              "wiped": item.get("said")} for item in module.params["pvs"]]
    missing = [item for item in items if not item["name"] or not item["claim_uid"]]
    if missing:
        module.fail_json(msg="each PV needs name and claim_uid: %r" % (missing[0],), **result)
    with k.api_session(module, result, dry_run=module.check_mode) as kube:
        result = workloads.release_pvs(kube, items, result)
    module.exit_json(changed=bool(result["released"]), requests=kube.requests,
                     diff={"before": "".join("%s: Released\n" % n for n in result["released"]),
                           "after": "".join("%s: Available\n" % n for n in result["released"])}, **result)


if __name__ == "__main__":
    main()
