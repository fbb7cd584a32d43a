#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: decommission_plan
short_description: Plan the decommission of local PVs of given nodes, or of some of their volumes
version_added: 0.1.0
description:
  - Reads, and changes nothing. Lists the PersistentVolumes owned by C(localpv.rollout) on the nodes in
    O(nodes) (only the volumes in O(volumes) when given), each with its phase, its claim, the scheduled pods
    that use the claim (any namespace) and the controllers that own them, and returns them as a table a
    user reads.
  - Fails, naming them, when a volume asked for in O(volumes) has a PV of that name that is not owned by
    C(localpv.rollout). PVs of others pinned to these nodes are listed in RV(foreign) and left alone.
  - A volume asked for whose PV is gone is listed in RV(missing), not an error, so that a run interrupted
    after the PV delete can be run again.
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
    details: Reads only; the plan is the same.
  diff_mode:
    support: none
options:
  nodes:
    description: Kubernetes node names whose volumes are retired.
    type: list
    elements: str
    required: true
  volumes:
    description: Only these volume names (the C(localpv.rollout/volume) label); empty means every volume of the nodes.
    type: list
    elements: str
    default: []
  label_selector:
    description: An extra label selector the PVs must match too, for example C(team=storage).
    type: str
seealso:
  - module: localpv.rollout.local_pv_evict
  - module: localpv.rollout.local_pv_delete
"""

EXAMPLES = r"""
- name: Plan the decommission of node2
  localpv.rollout.decommission_plan:
    nodes: [node2]
  register: plan

- name: Show the plan
  ansible.builtin.debug:
    msg: "{{ plan.table }}"

- name: Plan the retirement of one failed disk of node2
  localpv.rollout.decommission_plan:
    nodes: [node2]
    volumes: [ssd1]
"""

RETURN = r"""
volumes:
  description:
    - One entry per owned PV to retire, with the keys of the C(pvs) that M(localpv.rollout.local_pv_info) returns, plus
      C(claim_current) (the claim still exists as the object the PV is bound to), C(using_pods) (the
      scheduled pods that use it) and C(cordon_tolerated) (those of them that a controller makes again and that
      tolerate the taint C(node.kubernetes.io/unschedulable), so a cordon does not keep them off the node).
  returned: always
  type: list
  elements: dict
  sample: [{name: local-node2-ssd0, node: node2, volume: ssd0, path: /mnt/disks/ssd0, phase: Bound, claim: app/data-web-0,
        claim_current: true, using_pods: [{namespace: app, name: web-0, node: node2, controller: StatefulSet/web}]}]
pv_names:
  description: Names of the PVs to retire.
  returned: always
  type: list
  elements: str
  sample: [local-node2-ssd0]
table:
  description: The plan as lines of a table.
  returned: always
  type: list
  elements: str
  sample:
    - "NODE   VOLUME  PV                 PHASE  CLAIM            PODS (controller)                  PATH"
    - "node2  ssd0    local-node2-ssd0   Bound  app/data-web-0   app/web-0 (StatefulSet/web)        /mnt/disks/ssd0"
missing:
  description: Volumes asked for in O(volumes) that have no PV (retired already, or never registered).
  returned: always
  type: list
  elements: dict
  sample: [{node: node2, volume: ssd1, name: local-node2-ssd1}]
foreign:
  description: PVs pinned to these nodes that C(localpv.rollout) does not own; they are never touched.
  returned: always
  type: list
  elements: dict
  sample: [{name: pv-by-hand, claim: null, path: /srv/data}]
nodes:
  description:
    - Per node, whether its Node object exists, its C(kubernetes.io/hostname) label, whether it is cordoned, and
      whether a decommission run cordoned it (the annotation C(localpv.rollout/cordoned-by), so that a run that
      stopped and is run again still uncordons a node that stays).
  returned: always
  type: dict
  sample: {"node2": {"exists": true, "hostname": "node2", "unschedulable": false, "cordoned_by_decommission": false}}
cordon_stop:
  description:
    - Why moving the pods cannot work, naming the pods that tolerate the cordon's taint; empty when none does.
      The decommission role stops with it before any eviction.
  returned: always
  type: str
  sample: ""
requests:
  description: HTTP requests made to the API server, by verb.
  returned: always
  type: dict
  sample: {list: 4}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localpv.rollout.plugins.module_utils.kube import client as k
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as vol
from ansible_collections.localpv.rollout.plugins.module_utils.kube import workloads


def main():
    module = AnsibleModule(
        argument_spec=k.module_arg_spec(
            nodes=dict(type="list", elements="str", required=True),
            volumes=dict(type="list", elements="str", default=[]),
            label_selector=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    nodes = module.params["nodes"]
    with k.api_session(module, {"volumes": []}) as kube:
        report = workloads.local_pv_report(kube, nodes=nodes, label_selector=module.params["label_selector"])
        cluster_nodes = dict((n["metadata"]["name"], n) for n in kube.list_nodes())
        node_info = {}
        for name in nodes:
            obj = cluster_nodes.get(name)
            node_info[name] = {
                "exists": obj is not None,
                "hostname": ((obj or {}).get("metadata", {}).get("labels") or {}).get(vol.HOSTNAME_LABEL),
                "unschedulable": bool(((obj or {}).get("spec") or {}).get("unschedulable")),
                "cordoned_by_decommission": workloads.cordoned_by_decommission(obj),
            }
        hostnames = [i["hostname"] for i in node_info.values() if i["hostname"]]
        plan = workloads.plan_decommission(report, kube.list_pvs(), nodes, hostnames, module.params["volumes"])
    result = dict(changed=False, volumes=plan["volumes"], pv_names=[e["name"] for e in plan["volumes"]],
                  table=workloads.plan_table(plan, nodes), missing=plan["missing"], foreign=plan["foreign"],
                  nodes=node_info, cordon_stop=workloads.tolerated_stop_message(plan, ", ".join(nodes)) or "",
                  requests=kube.requests)
    if plan["errors"]:
        module.fail_json(msg="; ".join(plan["errors"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
