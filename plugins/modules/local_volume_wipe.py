#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: local_volume_wipe
short_description: Erase the data of local volumes on their host
version_added: 0.1.0
description:
  - Runs on the node. Two uses.
  - O(how=files) or O(how=mkfs), with O(volumes) as C({path, mode}) (reclaim a Released PV for reuse). A filesystem
    volume must be mounted at its path, never a plain directory of the root filesystem; V(files) removes everything
    under the mount point (C(lost+found) of ext filesystems stays), V(mkfs) unmounts, makes the same filesystem again
    with the same UUID (so the fstab line and the PV stay right) and mounts it again. A block volume (a link to a
    device) is sanitized, every byte of the device made zero, as O(block_wipe) says.
  - O(how=partition), with O(volumes) as volume names (decommission, after the PVs are gone). Each volume's GPT
    partition is found by its name C(localpv-<volume>); its signatures and its first O(length) bytes are erased. When
    every partition of a disk is one of these volumes, the disk's partition table is erased too, and the disk is
    blank again. A block volume's partition (by its GPT type) is sanitized whole first, as O(block_wipe) says. A
    volume retired by decommission is found by its retired name C(localpv-retired-<date>-<hash>) too. A partition
    that is mounted, held or swap is refused.
  - Refuses, changing nothing, while a process holds one of the volumes.
  - Holds the host lock C(/run/localpv-rollout.lock) of M(localpv.rollout.disk_prepare) while it erases, waiting
    up to O(lock_timeout) seconds for another run; its tools are killed with it when the run that started it is
    gone.
  - Check mode reports what would be erased and erases nothing; diff mode lists it.
author:
  - localpv.rollout contributors (@localpv)
extends_documentation_fragment:
  - localpv.rollout.attributes
  - localpv.rollout.attributes.node
attributes:
  check_mode:
    support: full
    details: Reports what would be erased and erases nothing.
  diff_mode:
    support: full
    details: Lists what is (or would be) erased.
options:
  volumes:
    description:
      - For V(files) and V(mkfs), a list of C({path, mode}) (C(mode) is V(filesystem) or V(block)); for
        V(partition), a list of volume names.
      - With C(volume) (the volume's name) in an item, what C(path) leads to must be that volume's own partition,
        found by its GPT name C(localpv-<volume>). A block volume's link must resolve to it, a filesystem mounted
        from one of our partitions must be mounted from it. Otherwise nothing is wiped.
      - An item may be a PV entry of M(localpv.rollout.local_pv_info) as it is (C(path), C(volume_mode), C(volume),
        C(name), C(uid), C(claim_uid)); the PV's C(name), C(uid) and C(claim_uid) are returned with its result, so
        that the controller's re-check and the wipe name the same PV.
    type: list
    elements: raw
    required: true
  how:
    description: What to erase, see the description.
    type: str
    choices: [files, mkfs, partition]
    default: files
  length:
    description: Bytes zeroed at the start and at the end of a device.
    type: int
    default: 1048576
  block_wipe:
    description:
      - How a block volume is sanitized (any O(how)); the result's C(said) names the one that ran.
      - V(full) overwrites every byte of the device with zeros, writing a progress line to
        C(/run/localpv-rollout-wipe.progress) every 5 seconds.
      - V(quick) asks the kernel to zero the device (C(blkdiscard --zeroout), BLKZEROOUT). The device does it itself
        where it can (write-zeroes offload); otherwise the kernel writes the zeros. Either way every byte then reads
        as zero, which a plain discard does not promise.
    type: str
    choices: [full, quick]
    default: full
  lock_timeout:
    description: Seconds to wait for the host lock held by another run.
    type: int
    default: 600
"""

EXAMPLES = r"""
- name: Remove the files of a Released volume
  localpv.rollout.local_volume_wipe:
    volumes: [{path: /mnt/disks/ssd0, mode: filesystem}]

- name: Erase the partitions of retired volumes
  localpv.rollout.local_volume_wipe:
    how: partition
    volumes: [ssd0, ssd1]
"""

RETURN = r"""
lock_holders:
  description: On a lock timeout, the processes that have the host lock open, with C(pid), C(comm), C(command), and
    C(tool) true for a disk tool (mkfs, sfdisk, wipefs) left running.
  returned: failure
  type: list
  elements: dict
  sample: [{pid: 4242, comm: mkfs.xfs, command: mkfs.xfs -q /dev/sdb1, tool: true}]
volumes:
  description:
    - Per volume (V(files), V(mkfs)) what was done, with C(path), C(action), C(changed), and C(said), one line that
      says exactly what was erased.
    - On a failure, the volumes done before it.
  returned: always
  type: list
  elements: dict
  sample: [{path: /mnt/disks/ssd0, action: files, changed: true, said: "/mnt/disks/ssd0: 3 entries were removed (files)"}]
wiped:
  description: Devices erased (V(partition)).
  returned: always
  type: list
  elements: str
  sample: [/dev/nvme0n1p1]
said:
  description: Per block volume's partition (V(partition)), one line that says how it was sanitized.
  returned: success
  type: list
  elements: str
  sample: ["/dev/sdb1 (volume raw0): every byte overwritten with zeros (full: 1073741824 bytes)"]
not_found:
  description: Volume names without a partition of that name (V(partition)); erased by an earlier run, or never made.
  returned: always
  type: list
  elements: str
  sample: [ssd1]
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices
from ansible_collections.localpv.rollout.plugins.module_utils.host import host_lock
from ansible_collections.localpv.rollout.plugins.module_utils.host import volume_wipe


def main():
    module = AnsibleModule(
        argument_spec=dict(
            volumes=dict(type="list", elements="raw", required=True),
            how=dict(type="str", choices=["files", "mkfs", "partition"], default="files"),
            length=dict(type="int", default=1 << 20),
            block_wipe=dict(type="str", choices=["full", "quick"], default="full"),
            lock_timeout=dict(type="int", default=host_lock.DEFAULT_TIMEOUT),
        ),
        supports_check_mode=True,
    )
    host_lock.tether()
    try:
        with host_lock.HostLock(os.uname()[1], timeout=module.params["lock_timeout"]):
            _wipe(module)
    except host_lock.LockTimeout as exc:
        module.fail_json(msg=exc.msg, lock_holders=exc.holders, wiped=[], volumes=[], not_found=[])


def _wipe(module):
    p = module.params

    def run(argv):
        # the host tools get the host lock, as disk_prepare's do
        return devices.run_command(argv)

    done = []
    try:
        if p["how"] == "partition":
            names = [str(v) for v in p["volumes"]]
            items, refused = volume_wipe.plan_partition_wipe(devices.host_disks(), names)
            if refused:
                module.fail_json(msg="refusing to wipe: %s" % "; ".join(r["reason"] for r in refused),
                                 refused=refused, wiped=[], volumes=[], not_found=[])
            wiped = volume_wipe.run_wipe(items, run, check_mode=module.check_mode, length=p["length"],
                                         block_wipe=p["block_wipe"])
            found = set(i["volume"] for i in items)
            said = ["%s (volume %s): %s" % (i["device"], i["volume"], i["erased"]) for i in items if i.get("erased")]
            module.exit_json(changed=bool(wiped), wiped=wiped, volumes=[], not_found=[n for n in names if n not in found],
                             said=said,
                             diff={"before": "".join("%s: data\n" % d for d in wiped),
                                   "after": "".join("%s: erased\n" % d for d in wiped)})
        for volume in p["volumes"]:
            if not isinstance(volume, dict) or not volume.get("path"):
                module.fail_json(msg="each volume needs a path: %r" % (volume,))
            volume = dict(volume, mode=volume.get("mode") or volume.get("volume_mode"))
            result = volume_wipe.wipe_contents(volume, p["how"], run, check_mode=module.check_mode, length=p["length"],
                                               block_wipe=p["block_wipe"])
            result.update(("pv" if k == "name" else k, volume[k]) for k in ("volume", "name", "uid", "claim_uid")
                          if k in volume)
            result["said"] = volume_wipe.describe_wipe(result, module.check_mode)
            done.append(result)
    except volume_wipe.VolumeError as exc:
        erased = [d["said"] for d in done if d["changed"]]
        module.fail_json(msg="%s. %s" % (exc.msg, "Already wiped by this call: %s" % "; ".join(erased) if erased
                                         else "Nothing was wiped by this call"),
                         reason=exc.code, wiped=[], volumes=done, not_found=[])
    changed = [d for d in done if d["changed"]]
    module.exit_json(changed=bool(changed), volumes=done, wiped=[], not_found=[],
                     diff={"before": "".join("%s: data\n" % d["path"] for d in changed),
                           "after": "".join("%s: erased (%s)\n" % (d["path"], d["action"]) for d in changed)})


if __name__ == "__main__":
    main()
