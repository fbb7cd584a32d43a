#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: local_pv_reserve
short_description: Reserve Released local PVs for a wipe, so that no claim binds them meanwhile
version_added: 0.1.0
description:
  - With O(state=reserved), replaces the C(spec.claimRef) of each PV in O(pvs) with a reservation of this run - a
    claimRef to the claim C(localpv-rollout-reclaim/<pv>) with the uid O(reservation), which no claim has. The PV
    binder binds a PV only to the claim its claimRef names, so no claim can bind a reserved PV.
  - Each reservation is one JSON patch whose C(test) operations make the API server check, in the same write, that
    the PV is the object listed (uid and resourceVersion) and still carries the claim seen then (claim uid). A PV
    bound again, deleted or changed since the listing is not reserved.
  - All or nothing. When one PV cannot be reserved, the PVs reserved before it get their claim back and the module
    fails; nothing may be wiped then.
  - With O(state=checked), reads the PVs again and fails, naming them, unless each still carries the reservation
    O(reservation). Nothing is written.
  - M(localpv.rollout.local_pv_release) with the reservation as C(claim_uid) makes the PVs Available after the wipe.
  - In check mode the reservations are sent with server-side dry-run.
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
    details: Reservations are sent with server-side dry-run.
  diff_mode:
    support: full
    details: The claim each PV was reserved from.
options:
  pvs:
    description:
      - The PVs as M(localpv.rollout.local_pv_info) listed them, each with C(name), C(uid), C(resource_version),
        C(claim) and C(claim_uid).
    type: list
    elements: dict
    required: true
  reservation:
    description: The uid of this run's reservation; the same value for O(state=checked) and for the release.
    type: str
    required: true
  state:
    description: V(reserved) makes the reservations; V(checked) only verifies that they are still there.
    type: str
    choices: [reserved, checked]
    default: reserved
seealso:
  - module: localpv.rollout.local_pv_info
  - module: localpv.rollout.local_volume_wipe
  - module: localpv.rollout.local_pv_release
"""

EXAMPLES = r"""
- name: Reserve the Released PVs before their volumes are wiped
  localpv.rollout.local_pv_reserve:
    pvs: "{{ info.pvs | selectattr('phase', 'equalto', 'Released') | list }}"
    reservation: "{{ reservation_uid }}"
  delegate_to: localhost

- name: Check, right before the wipe, that nobody took them away
  localpv.rollout.local_pv_reserve:
    pvs: "{{ info.pvs | selectattr('phase', 'equalto', 'Released') | list }}"
    reservation: "{{ reservation_uid }}"
    state: checked
  delegate_to: localhost
"""

RETURN = r"""
reserved:
  description: PVs reserved by this call (V(reserved)) or found reserved (V(checked)).
  returned: always
  type: list
  elements: str
  sample: [local-node2-ssd0]
claim_ref:
  description: The claimRef of a reservation, with the uid O(reservation).
  returned: always
  type: dict
  sample: {namespace: localpv-rollout-reclaim, name: "<pv>", uid: "<reservation>"}
requests:
  description: HTTP requests made to the API server, by verb.
  returned: always
  type: dict
  sample: {patch: 1}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localpv.rollout.plugins.module_utils.kube import client as k
from ansible_collections.localpv.rollout.plugins.module_utils.kube import workloads


def main():
    module = AnsibleModule(
        argument_spec=k.module_arg_spec(
            pvs=dict(type="list", elements="dict", required=True),
            reservation=dict(type="str", required=True),
            state=dict(type="str", choices=["reserved", "checked"], default="reserved"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = {"reserved": [], "claim_ref": workloads.reservation_ref("<pv>", p["reservation"])}
    with k.api_session(module, result, dry_run=module.check_mode) as kube:
        if p["state"] == "checked":
            workloads.check_reserved(kube, p["pvs"], p["reservation"])
            result["reserved"] = [item["name"] for item in p["pvs"]]
            module.exit_json(changed=False, requests=kube.requests, **result)
        result = workloads.reserve_pvs(kube, p["pvs"], p["reservation"], result)
    module.exit_json(changed=bool(result["reserved"]), requests=kube.requests,
                     diff={"before": "".join("%s: claim %s\n" % (i["name"], i.get("claim")) for i in p["pvs"]),
                           "after": "".join("%s: reserved for the wipe\n" % n for n in result["reserved"])},
                     **result)


if __name__ == "__main__":
    main()
