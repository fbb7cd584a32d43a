#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: local_volume_retire
short_description: Mark local volumes retired on their host, so that no run mounts or publishes them again
version_added: 0.1.0
description:
  - Runs on the node, before the volumes' PVs are deleted (the decommission role does that). The data stays.
  - A volume on a GPT partition of ours (filesystem or block, found through its mount or its link, or by its
    partition name C(localpv-<volume>) once unmounted) gets the partition name
    C(localpv-retired-<YYYYMMDD>-<hash of the volume's name>). The name is on the disk, so it survives a reboot and
    a move of the disk to another host. M(localpv.rollout.disk_prepare) then refuses the disk, saying
    "retired by decommission on <date>", until the entry is taken out of C(localpv_disks) or the disk is made new
    with its wipe confirmation.
  - A bind volume (a directory) gets the marker file C(.localpv-retired) in its source directory, written through
    its mount point; M(localpv.rollout.disk_prepare) refuses a bind source that carries it.
  - A volume marked already is left as it is; running again is safe.
  - Fails, marking nothing more, for a volume whose path leads to another volume's partition or to nothing of
    ours.
author:
  - localpv.rollout contributors (@localpv)
extends_documentation_fragment:
  - localpv.rollout.attributes
  - localpv.rollout.attributes.node
attributes:
  check_mode:
    support: full
    details: Reports what would be marked and marks nothing.
  diff_mode:
    support: full
    details: Each volume's mark before and after.
options:
  volumes:
    description: The volumes, each with C(volume) (its name) and C(path) (its mount point or link), as the PV entries
      of M(localpv.rollout.local_pv_info) give them.
    type: list
    elements: dict
    required: true
  day:
    description: The day recorded, C(YYYY-MM-DD); today (UTC) when not given.
    type: str
"""

EXAMPLES = r"""
- name: Mark the retired volumes on the host, before their PVs go
  localpv.rollout.local_volume_retire:
    volumes: [{volume: ssd0, path: /mnt/disks/ssd0}, {volume: vol1, path: /mnt/disks/vol1}]
"""

RETURN = r"""
volumes:
  description: Per volume, C(volume), C(path), C(how) (V(partition name) or V(marker)), C(mark), C(changed), and
    C(said), one line that says what was marked.
  returned: always
  type: list
  elements: dict
  sample: [{volume: ssd0, path: /mnt/disks/ssd0, how: partition name, mark: localpv-retired-20261202-5e1f0c2a,
            changed: true, said: "/mnt/disks/ssd0: volume ssd0 marked retired (partition 1 of /dev/sdb renamed
            localpv-ssd0 to localpv-retired-20261202-5e1f0c2a)"}]
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices
from ansible_collections.localpv.rollout.plugins.module_utils.host import volume_wipe


def main():
    module = AnsibleModule(
        argument_spec=dict(volumes=dict(type="list", elements="dict", required=True), day=dict(type="str")),
        supports_check_mode=True,
    )
    day = module.params["day"] or time.strftime("%Y-%m-%d", time.gmtime())
    done, disks = [], None
    try:
        for item in module.params["volumes"]:
            if not item.get("volume") or not item.get("path"):
                module.fail_json(msg="each volume needs volume and path: %r" % (item,), volumes=done)
            if disks is None:
                disks = devices.host_disks()
            done.append(volume_wipe.retire_volume(item["volume"], item["path"], day, devices.run_command, disks=disks,
                                                  check_mode=module.check_mode))
    except volume_wipe.VolumeError as exc:
        module.fail_json(msg="%s. Marked before it: %s" % (exc.msg, "; ".join(d["said"] for d in done) or "none"),
                         reason=exc.code, volumes=done)
    changed = [d for d in done if d["changed"]]
    module.exit_json(changed=bool(changed), volumes=done,
                     diff={"before": "".join("%s: volume %s\n" % (d["path"], d["volume"]) for d in changed),
                           "after": "".join("%s: retired (%s)\n" % (d["path"], d["mark"]) for d in changed)})


if __name__ == "__main__":
    main()
