#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: local_pv_info
short_description: The local PVs of given nodes, with their claims and the pods that use them
version_added: 0.1.0
description:
  - Lists the PersistentVolumes owned by C(localpv.rollout) (of the nodes in O(nodes), or all), each with
    its phase, its claim and the claim's phase, the pods that use the claim and the node they run on,
    and whether the PV's node still exists and is Ready.
  - Reads only; the requests are one LIST of owned PVs, one of Nodes, and for each namespace that has a
    claim on one of them, one LIST of its claims and one of its pods.
author:
  - localpv.rollout contributors (@localpv)
extends_documentation_fragment:
  - localpv.rollout.attributes
  - localpv.rollout.attributes.controller
  - localpv.rollout.attributes.k8s_group
  - localpv.rollout.attributes.read_only
  - kubernetes.core.k8s_auth_options
  - localpv.rollout.client
options:
  nodes:
    description: Kubernetes node names whose PVs to report. Empty reports all owned PVs.
    type: list
    elements: str
    default: []
  label_selector:
    description: An extra label selector the PVs must match too, for example C(team=storage).
    type: str
    version_added: 0.1.0
seealso:
  - module: localpv.rollout.local_pv
"""

EXAMPLES = r"""
- name: What is on node3 before it goes away
  localpv.rollout.local_pv_info:
    nodes: [node3]
  register: node3_pvs

- name: Refuse to go on while a pod still uses one of them
  ansible.builtin.assert:
    that: node3_pvs.pvs | map(attribute='pods') | flatten | length == 0
"""

RETURN = r"""
pvs:
  description: The owned PVs, sorted by name.
  returned: always
  type: list
  elements: dict
  sample:
    - name: local-node2-vol1
      node: node2
      volume: vol1
      hostname: node2
      node_exists: true
      node_ready: true
      path: /mnt/disks/vol1
      fstype: xfs
      stable_id: nvme-eui.0025385b71b0a1c2
      volume_mode: Filesystem
      capacity: 10737418240
      storage_class: local-storage
      reclaim_policy: Retain
      phase: Bound
      claim: default/data-web-0
      claim_phase: Bound
      claim_uid: 0c0e6a4e-1f0a-4d6e-9d38-2f3c1c2b9a11
      claim_current_uid: 0c0e6a4e-1f0a-4d6e-9d38-2f3c1c2b9a11
      uid: 5b1d0c8e-7d7e-4a43-9c0e-3f1b8a6d2e10
      pods: [{"namespace": "default", "name": "web-0", "node": "node2", "phase": "Running",
              "uid": "a3c4...", "controller": "StatefulSet/web", "deleting": false}]
      deleting: false
nodes:
  description: Per node, the number of PVs by phase.
  returned: always
  type: dict
  sample: {"node2": {"Available": 3, "Bound": 1}}
orphaned:
  description: Names of PVs whose node no longer exists in the cluster.
  returned: always
  type: list
  elements: str
  sample: [local-node9-ssd0]
requests:
  description: HTTP requests made to the API server, by verb.
  returned: always
  type: dict
  sample: {list: 4}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localpv.rollout.plugins.module_utils.kube import client as k
from ansible_collections.localpv.rollout.plugins.module_utils.kube import workloads


def main():
    module = AnsibleModule(
        argument_spec=k.module_arg_spec(nodes=dict(type="list", elements="str", default=[]),
                                        label_selector=dict(type="str")),
        supports_check_mode=True,
    )
    with k.api_session(module, {"pvs": []}) as kube:
        pvs = workloads.local_pv_report(kube, nodes=module.params["nodes"], label_selector=module.params["label_selector"])
    nodes = {}
    for pv in pvs:
        phases = nodes.setdefault(pv["node"], {})
        phases[pv["phase"]] = phases.get(pv["phase"], 0) + 1
    module.exit_json(changed=False, pvs=pvs, nodes=nodes, requests=kube.requests,
                     orphaned=[pv["name"] for pv in pvs if not pv["node_exists"]])


if __name__ == "__main__":
    main()
