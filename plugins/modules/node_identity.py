#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: node_identity
short_description: Prove, on the host, that it is the Kubernetes Node the inventory names, before any change
version_added: 0.1.0
description:
  - Reads the host's machine id (C(/etc/machine-id), else C(/var/lib/dbus/machine-id)) and DMI product UUID and
    compares them with what the Node reports (O(cluster), from M(localpv.rollout.preflight)), the machine id with
    C(status.nodeInfo.machineID) first, else the product UUID with C(status.nodeInfo.systemUUID). A mismatch
    fails, naming both values.
  - A Node that does not exist yet (a host provisioned before it joins) is allowed, and said in RV(notes).
  - Resolves on the host the paths of PVs that are not managed by C(localpv.rollout) and are pinned to this
    node (O(other_pvs)); one that is, through a symlink, the directory of one of O(volume_paths) fails, as a second
    PV for one directory would let two claims share it.
  - Reads only; the playbooks run it before any step that changes a host.
author:
  - localpv.rollout contributors (@localpv)
attributes:
  check_mode:
    support: full
    description: Runs the same in check mode; it changes nothing in either mode.
options:
  host:
    description: The inventory name of this host, for the messages.
    type: str
    required: true
  node:
    description: The Kubernetes node name of this host.
    type: str
    required: true
  cluster:
    description:
      - What the cluster says about the Node, as RV(localpv.rollout.preflight#module:nodes) returns it per node.
      - C(exists), C(machine_id), C(system_uuid).
    type: dict
    required: true
  volume_paths:
    description: Canonical paths of this host's volumes (C(<mount_root>/<name>)).
    type: list
    elements: str
    default: []
  other_pvs:
    description: PVs not managed by C(localpv.rollout) pinned to this node at other paths, each with C(name) and C(path).
    type: list
    elements: dict
    default: []
seealso:
  - module: localpv.rollout.preflight
"""

EXAMPLES = r"""
- name: Check with the API server what each Node says, once
  localpv.rollout.preflight:
    run: site
    hosts: [{host: node7, node: node7.dc1.example, in_play: true, disks: [], mount_root: /mnt/disks}]
  run_once: true
  delegate_to: localhost
  register: checked

- name: Prove that each host is its Node
  localpv.rollout.node_identity:
    host: "{{ inventory_hostname }}"
    node: node7.dc1.example
    cluster: "{{ checked.nodes['node7.dc1.example'] }}"
"""

RETURN = r"""
machine_id:
  description: The host's machine id, empty when unreadable.
  returned: always
  type: str
product_uuid:
  description: The host's DMI product UUID, empty when unreadable (it needs root).
  returned: always
  type: str
notes:
  description: What could not be proven, and why that is allowed (a Node that has not joined yet).
  returned: always
  type: list
  elements: str
problems:
  description: Why this host is refused, as messages.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localpv.rollout.plugins.module_utils.kube import preflight as pf


def main():
    module = AnsibleModule(
        argument_spec=dict(
            host=dict(type="str", required=True),
            node=dict(type="str", required=True),
            cluster=dict(type="dict", required=True),
            volume_paths=dict(type="list", elements="str", default=[]),
            other_pvs=dict(type="list", elements="dict", default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    machine_id, product_uuid = pf.read_host_ids()
    problems, notes = pf.host_identity_problems(p["host"], p["node"], p["cluster"], machine_id, product_uuid)
    problems += pf.same_directory_problems(p["node"], p["volume_paths"], p["other_pvs"], os.path.realpath)
    result = dict(changed=False, machine_id=machine_id, product_uuid=product_uuid, notes=notes, problems=problems)
    if problems:
        module.fail_json(msg=" | ".join(problems), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
