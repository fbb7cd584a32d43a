#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: local_pv_records
short_description: What the local PVs record about the disks of their volumes, per node
version_added: 0.1.0
description:
  - One LIST of the PersistentVolumes owned by C(localpv.rollout). For each, by its node and volume labels, the disk
    identity its annotations record (C(localpv.rollout/stable-id), C(localpv.rollout/partuuid),
    C(localpv.rollout/fs-uuid)) and the claim it is bound to.
  - The input of M(localpv.rollout.disk_prepare)'s O(localpv.rollout.disk_prepare#module:recorded), so that a host
    proves each volume's disk against what the cluster recorded, and never makes a bound PV's volume again on
    another disk. The pv_register role's preflight runs it once per run.
  - Reads only; check mode is the same.
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
    description:
      - Kubernetes node names whose records to return, keyed by these names (their PVs carry the label value of
        the name). Empty returns every node's, keyed by the label value.
    type: list
    elements: str
    default: []
seealso:
  - module: localpv.rollout.disk_prepare
  - module: localpv.rollout.local_pv_info
"""

EXAMPLES = r"""
- name: Read what the PVs record about the volumes' disks, once
  localpv.rollout.local_pv_records:
    nodes: [node1, node2]
  register: records
  run_once: true
  delegate_to: localhost

- name: Prepare the disks, proving each volume's disk against its PV
  localpv.rollout.disk_prepare:
    disks: "{{ localpv_disks }}"
    recorded: "{{ records.nodes[inventory_hostname] | default({}) }}"
"""

RETURN = r"""
nodes:
  description: Per node, per volume, what its PV records.
  returned: always
  type: dict
  sample:
    node1:
      ssd0: {pv: local-node1-ssd0, stable_id: nvme-eui.0025385b71b0a1c2, partuuid: 5d8b7e3a-1c2f-4b6a-9e0d-3f4a5b6c7d8e,
             fs_uuid: 0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0, claim: default/data-web-0}
requests:
  description: HTTP requests made to the API server, by verb.
  returned: always
  type: dict
  sample: {list: 1}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localpv.rollout.plugins.module_utils.kube import client as k
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as vol


def main():
    module = AnsibleModule(
        argument_spec=k.module_arg_spec(nodes=dict(type="list", elements="str", default=[])),
        supports_check_mode=True,
    )
    nodes = module.params["nodes"]
    with k.api_session(module, {"nodes": {}}) as kube:
        pvs = kube.list_pvs(label_selector="%s=%s" % (vol.MANAGED_BY_LABEL, vol.MANAGED_BY_VALUE))
    records = vol.recorded_identities(pvs, nodes)
    if nodes:
        records = dict((node, records.get(node, {})) for node in nodes)
    module.exit_json(changed=False, nodes=records, requests=kube.requests)


if __name__ == "__main__":
    main()
