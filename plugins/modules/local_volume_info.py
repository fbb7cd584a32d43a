#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: local_volume_info
short_description: What a host has at given local volume paths, and which processes hold them
version_added: 0.1.0
description:
  - Runs on the node. For each path in O(paths) (the C(spec.local.path) of a PV), reports whether it exists, the
    mount at it (source, filesystem type, bind root), the C(/etc/fstab) lines for it, a block volume's symlink
    and device, where else the same filesystem is mounted (a kubelet's pod mount, for example), and the processes
    that hold files on it.
  - A process holds a volume when its working directory, root, executable, an open file or a mapped file is under
    the path (or under one of the other mount points of the same filesystem), or, for a block volume, when it has
    the device open. Found by reading C(/proc), like C(fuser -m).
  - Reads only; check mode is the same.
author:
  - localpv.rollout contributors (@localpv)
extends_documentation_fragment:
  - localpv.rollout.attributes
  - localpv.rollout.attributes.node
  - localpv.rollout.attributes.read_only
options:
  paths:
    description: Absolute paths of the volumes.
    type: list
    elements: path
    required: true
"""

EXAMPLES = r"""
- name: Look at the volumes before unmounting them
  localpv.rollout.local_volume_info:
    paths: [/mnt/disks/ssd0, /mnt/disks/raw0]
  register: state

- name: Refuse while a process holds one of them
  ansible.builtin.assert:
    that: state.held | length == 0
    fail_msg: "{{ state.held }}"
"""

RETURN = r"""
volumes:
  description: One entry per path.
  returned: always
  type: list
  elements: dict
  sample:
    - path: /mnt/disks/ssd0
      exists: true
      is_link: false
      link_target: null
      mounted: true
      mount: {source: /dev/sdb1, fstype: xfs, root: /, dev: "259:3"}
      fstab: [{src: "UUID=0b1c...", path: /mnt/disks/ssd0, fstype: xfs, opts: "defaults,nofail"}]
      other_mounts: []
      holders: [{pid: 4242, command: "sleep 600", how: cwd, path: /mnt/disks/ssd0/data}]
held:
  description: The paths that a process holds or that are mounted elsewhere too, each with a sentence saying why.
  returned: always
  type: list
  elements: dict
  sample: [{path: /mnt/disks/ssd0, reason: "pid 4242 (sleep 600) cwd /mnt/disks/ssd0/data"}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localpv.rollout.plugins.module_utils.host import host_volumes


def main():
    module = AnsibleModule(argument_spec=dict(paths=dict(type="list", elements="path", required=True)),
                           supports_check_mode=True)
    states, held = [], []
    for path in module.params["paths"]:
        state = host_volumes.volume_state(path.rstrip("/") or "/")
        states.append(state)
        reasons = []
        if state["holders"]:
            reasons.append(host_volumes.describe_holders(state))
        if state["other_mounts"]:
            reasons.append("the same filesystem is also mounted at %s" % ", ".join(state["other_mounts"]))
        if reasons:
            held.append({"path": path, "reason": "; ".join(reasons)})
    module.exit_json(changed=False, volumes=states, held=held)


if __name__ == "__main__":
    main()
