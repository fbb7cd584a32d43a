#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: block_devices
short_description: Facts about every block device of a host, and whether it may be formatted
version_added: 0.1.0
description:
  - Lists every block device of the host (from sysfs) with its stable id, size, rotational,
    removable and read-only flags, model, serial, partitions, holders (device-mapper, LVM, md),
    signatures, mount points and swap use.
  - Signatures come from a low-level probe of the device itself (C(wipefs)), never from the blkid
    cache. Partition tables are read from the disk with C(partx --show), so a table is seen even
    when the kernel has not created partition devices for it.
  - Each disk gets RV(disks[].eligible) true or false and the list of RV(disks[].reasons) against it. A disk is
    eligible only if it has no signature, no partitions, no holders, is not mounted, not swap,
    not read-only, not removable, does not hold C(/) or C(/boot), an exclusive open (C(O_EXCL))
    succeeds, and no process has the disk or one of its partitions open or mapped (read from C(/proc)).
  - Eligible is not yet blank. M(localpv.rollout.disk_prepare) also samples a disk's content before it writes
    to it (raw data has no signature); these facts do not read content.
  - Works on hosts without udev. The stable id is the best C(/dev/disk/by-id) link when udev made
    one, else a WWN or serial read from sysfs (spelled like the by-id link udev would make), else,
    for a loop device, its backing file. RV(disks[].stable_id_source) says which.
  - Read-only; safe in check mode.
author:
  - localpv.rollout contributors (@localpv)
requirements:
  - util-linux (wipefs, partx) on the managed host
extends_documentation_fragment:
  - localpv.rollout.attributes
  - localpv.rollout.attributes.node
options:
  devices:
    description:
      - Kernel names or paths (C(sdb), C(/dev/sdb)) whose contents are probed. Other devices are
        still listed from sysfs, not eligible, with the reason C(not probed).
      - By default every device is probed.
    type: list
    elements: str
attributes:
  check_mode:
    support: full
    details: The module only reads.
  diff_mode:
    support: none
    details: Nothing to show.
notes:
  - On a host that sees block devices it may not open (a container), those devices are listed with
    the reason C(cannot be probed) and are never eligible.
seealso:
  - module: localpv.rollout.disk_prepare
"""

EXAMPLES = r"""
- name: Read the disks of the node
  localpv.rollout.block_devices:
  register: blk

- name: Show the disks that may be formatted
  ansible.builtin.debug:
    msg: "{{ blk.disks | selectattr('eligible') | map(attribute='stable_id') | list }}"

- name: Show why the others may not
  ansible.builtin.debug:
    msg: "{{ item.path }}: {{ item.reasons | join('; ') }}"
  loop: "{{ blk.disks | rejectattr('eligible') | selectattr('size') | list }}"
  loop_control:
    label: "{{ item.path }}"
"""

RETURN = r"""
disks:
  description: Every block device of the host, sorted by kernel name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Kernel name.
      type: str
      sample: sdb
    path:
      description: Device path.
      type: str
      sample: /dev/sdb
    kind:
      description: C(disk), C(loop), C(dm), C(md), C(zram), C(ram), C(rom), C(nbd) or C(floppy).
      type: str
      sample: disk
    size:
      description: Size in bytes.
      type: int
      sample: 1073741824
    rotational:
      description: Whether the kernel says the disk spins.
      type: bool
    removable:
      description: Removable medium.
      type: bool
    read_only:
      description: Read-only.
      type: bool
    model:
      description: Model from sysfs.
      type: str
      sample: Samsung SSD 980 PRO 1TB
    serial:
      description: Serial number from sysfs.
      type: str
      sample: S5GXNF0R123456A
    wwid:
      description: WWID from sysfs.
      type: str
      sample: eui.0025385b71b0a1c2
    backing_file:
      description: For a loop device, its backing file.
      type: str
      sample: /var/lib/images/disk0.img
    stable_id:
      description: Stable id of the disk (see RV(disks[].stable_id_source)); use it in C(localpv_disks[].device).
      type: str
      sample: wwn-0x5000c500a1b2c3d4
    stable_id_source:
      description:
        - Where the stable id comes from, C(by-id), C(wwid), C(serial), C(loop-backing-file), C(dm-uuid),
          C(md-uuid) or C(none).
      type: str
      sample: by-id
    stable_path:
      description: The C(/dev/disk/by-id) path when udev made one, else null.
      type: str
      sample: /dev/disk/by-id/nvme-eui.0025385b71b0a1c2
    by_id:
      description: All by-id link names of the disk.
      type: list
      elements: str
      sample: [/dev/disk/by-id/nvme-eui.0025385b71b0a1c2, /dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456A]
    by_id_synthesized:
      description:
        - On a host without udev, the by-id names udev would give the disk, made from sysfs
          (C(wwn-), C(nvme-<wwid>), C(nvme-<model>_<serial>[_<nsid>]), C(ata-<model>_<serial>), C(scsi-3<naa>));
          C(localpv_disks[].device) may name the disk by any of them. Empty when udev runs.
      type: list
      elements: str
      sample: [wwn-0x5002538e40a1b2c3, ata-Samsung_SSD_860_EVO_500GB_S3Z1NB0K123456A]
    udev:
      description: Whether C(/dev/disk/by-id) exists on the host.
      type: bool
    signatures:
      description: Signatures found by wipefs (type, offset, uuid, label); null when the device could not be probed.
      type: list
      elements: dict
      sample: [{offset: '0x200', type: gpt, uuid: null, label: null}]
    fstype:
      description: Filesystem (or RAID or LVM member) type on the whole disk.
      type: str
      sample: xfs
    fs_uuid:
      description: UUID of that filesystem.
      type: str
      sample: 0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0
    fs_label:
      description: Label of that filesystem.
      type: str
      sample: data
    pttype:
      description: Partition table type, C(gpt) or C(dos).
      type: str
      sample: gpt
    partition_table:
      description:
        - Partitions as written in the table on disk (number, start, size, name, uuid).
        - An entry the kernel has no partition for (a disk attached without a partition scan) also carries
          fstype, fs_uuid and fs_label of the filesystem read at its place on the disk (C(blkid -p) at an offset).
      type: list
      elements: dict
      sample: [{number: 1, start: 2048, sectors: 2095104, name: localpv-ssd0, uuid: 5d8b7e3a-1c2f-4b6a-9e0d-3f4a5b6c7d8e}]
    partitions:
      description: Partitions the kernel knows, with their signatures, fstype, uuid, label, partlabel, mounts and holders.
      type: list
      elements: dict
      sample: [{name: nvme0n1p1, path: /dev/nvme0n1p1, number: 1, size: 1000202043392, fstype: xfs,
          uuid: 0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0, partlabel: localpv-ssd0, holders: [], swap: false}]
    holders:
      description: Holders of the disk or of its partitions (C(dm-0), C(md0) and so on).
      type: list
      elements: str
      sample: []
    mounts:
      description: Mount points of the disk and its partitions (mount_point, fstype, device).
      type: list
      elements: dict
      sample: [{mount_point: /mnt/disks/ssd0, fstype: xfs, device: nvme0n1p1}]
    system_mounts:
      description: Which of C(/), C(/boot), C(/boot/efi), C(/usr), C(/var) live on this disk.
      type: list
      elements: str
      sample: []
    swap:
      description: Whether the disk or one of its partitions is active swap.
      type: bool
    exclusive_open_error:
      description: Why an C(O_EXCL) open failed; null if it succeeded.
      type: str
      sample: Device or resource busy
    eligible:
      description: Whether the disk may be formatted.
      type: bool
    reasons:
      description: Why it may not (empty when eligible).
      type: list
      elements: str
      sample: [has partitions (nvme0n1p1), mounted at /mnt/disks/ssd0]
    reason_codes:
      description:
        - Machine-readable reasons, C(virtual), C(empty), C(read_only), C(removable), C(system), C(mounted), C(swap),
          C(holders), C(opened), C(partitions), C(partition_table), C(signatures), C(probe), C(exclusive).
      type: list
      elements: str
      sample: [partitions, mounted]
eligible:
  description: Paths of the eligible disks.
  returned: always
  type: list
  elements: str
  sample: [/dev/sdb, /dev/sdc]
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices


def main():
    module = AnsibleModule(
        argument_spec=dict(devices=dict(type="list", elements="str")),
        supports_check_mode=True,
    )
    names = None
    if module.params["devices"] is not None:
        names = set(os.path.basename(d) for d in module.params["devices"])
    try:
        disks = devices.host_disks(names=names)
    except devices.DeviceError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, disks=disks, eligible=[d["path"] for d in disks if d["eligible"]])


if __name__ == "__main__":
    main()
