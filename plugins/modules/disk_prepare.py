#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: disk_prepare
short_description: Plan and make the GPT partitions and filesystems of a host's local volumes
version_added: 0.1.0
description:
  - One call per host. Lists every disk of the host, reads the signatures and partition tables of
    the disks O(disks) names (of every disk when an entry has O(disks[].match)), computes the whole
    plan (which disk gets which partitions, filesystem and mount point), validates it, and only
    then writes.
  - If any disk may not be used (it holds data, is mounted, is swap, is held by device-mapper,
    holds the system, does not exist, does not match O(disks[].expect), two volumes share a name,
    a name is not valid...) the module fails naming the host, the disk and every reason, and
    writes nothing to any disk of the host.
  - So does a volume whose mount point is not mounted but holds files (most likely what a pod wrote
    while the volume was not mounted, which the mount would hide), and a volume still to be made whose
    mount point is mounted from something else. These are rules of M(localpv.rollout.volume_mounts),
    applied here already so that no disk is written first.
  - A new disk gets a GPT table with O(disks[].partitions) equal partitions named
    C(localpv-<volume>), then C(mkfs.xfs) or C(mkfs.ext4) on each. The table is written with
    C(sfdisk --no-reread) and the kernel is told with C(partx -u), so it works on kernels with and
    without partition-table parsers.
  - A disk that already carries our partition names for the same volumes is recognised (re-run,
    interrupted run, disk moved to this node) and never formatted again. A partition of ours is
    formatted only when it carries no signature AND the blank proof finds only zeros there, as a run
    interrupted before mkfs leaves it; anything else holds data. A disk without any signature is taken as
    blank only when the blank proof finds zeros too (O(disks[].blank_proof) - by default both 8 MiB ends and
    256 regions of 64 KiB spread so that no two reads are farther apart than 1/256 of the disk; V(full)
    reads every byte). The plan and every refusal say what was read.
  - A volume's disk is proven on every run. The disk an entry's device leads to must carry the ids recorded
    for its volumes - the filesystem UUID of the volume's fstab line, the partition UUID of a block volume's
    C(/dev/disk/by-partuuid) link, and what O(recorded) hands over from the PVs. A path that now leads to
    another disk (a re-attach, a slot change) is refused before anything is written, in check mode too,
    naming both disks and whether the old one is still on the host; O(disks[].replace) makes the volume again,
    empty, on the new disk, and is refused while the volume's PV is bound.
  - Before the plan, a disk whose partitions the kernel lists differently from its partition table (stale
    entries after a re-attach) is re-read with C(partx -u) (C(partx -d) when it has no table), so that stale
    entries are not taken for data. This changes only the kernel's view, never the disk, also in check mode.
  - A volume's mode is recorded in its GPT partition type; changing an existing volume's mode, fstype
    or partition count is refused, naming the confirmation that erasing it needs.
  - Erasing a disk that holds data needs O(allow_wipe=true) AND O(disks[].wipe) set to the disk's
    fingerprint, which the refusal prints (in the message and in RV(refusals)). It is checked again, under
    the disk's lock, right before the wipe.
  - Each disk is locked (BSD flock on the whole disk) from a last re-check through partitioning and
    mkfs. Up to four disks are prepared at once, each with its own steps in order; once a disk fails
    no further disk is started, the ones under way finish, and the failure lists every command run in
    RV(commands). Every destructive command is preceded by a probe and an in-use check (exclusive open, and
    every process that has the disk or a partition open or mapped, found in C(/proc)).
  - One run at a time per host. The module holds the host lock C(/run/localpv-rollout.lock) (BSD flock) from its
    plan to its last command; a second run waits for it, up to O(lock_timeout) seconds, then plans again and finds
    the work done. A timeout changes nothing and names the pid that holds the lock, and says so when it is a disk
    tool (mkfs, sfdisk, wipefs) still running.
  - The host tools it starts run in its process group; when the run that started the module is gone (a killed
    playbook, a dropped connection), the module and its tools are killed, and no mkfs outlives its run.
  - The module does not mount. It returns RV(volumes) with the fstab source (by filesystem
    UUID), fstype and options of each volume and whether it still needs mounting or linking,
    and in RV(mounts) and RV(links) only what still needs it, the input of
    M(localpv.rollout.volume_mounts), which mounts and links them all in one run.
author:
  - localpv.rollout contributors (@localpv)
requirements:
  - util-linux (wipefs, partx, sfdisk, blkid) on the managed host
  - xfsprogs or e2fsprogs for the filesystems asked for
extends_documentation_fragment:
  - localpv.rollout.attributes
  - localpv.rollout.attributes.node
options:
  disks:
    description: The entries of C(localpv_disks) for this host.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Volume name, for O(disks[].device) and O(disks[].bind) entries. It becomes
            C(<mount_root>/<name>) and part of the PV name, so it must be an RFC 1123 label.
          - With O(disks[].partitions) above 1 the volumes are C(<name>-1) ... C(<name>-N).
        type: str
      device:
        description:
          - The disk, by stable id (C(/dev/disk/by-id/...) path or link name, or a stable id as
            M(localpv.rollout.block_devices) reports it). A C(/dev/sdX) path works but is not stable
            across reboots.
        type: str
      match:
        description: Select eligible disks instead of naming one. Disks prepared earlier by the same
          entry are found again first (by their partition names), so names stay stable.
        type: dict
        suboptions:
          rotational:
            description: Only spinning (V(true)) or only solid-state (V(false)) disks.
            type: bool
          min_size:
            description: Smallest disk size, bytes or a Kubernetes quantity (C(100Gi) = 100 x 2^30, C(100G) = 100 x 10^9).
            type: raw
          max_size:
            description: Largest disk size, bytes or a Kubernetes quantity (C(4Ti), C(4T) or C(4TB)).
            type: raw
          model:
            description: Shell-style pattern the model must match (C(Samsung*)).
            type: str
          count:
            description: Exactly this many disks (the host fails if fewer qualify). Default all that qualify.
            type: int
      name_prefix:
        description: For O(disks[].match) entries, volumes are named C(<name_prefix><index>), index from 0
          in stable-id order.
        type: str
      bind:
        description: A directory to bind-mount at C(<mount_root>/<name>) (created if missing).
        type: str
      mode:
        description: V(filesystem), or V(block) for a raw partition exposed as a symlink at C(<mount_root>/<name>).
          Default V(filesystem).
        type: str
        choices: [filesystem, block]
      fstype:
        description: Filesystem to make. Default O(fstype).
        type: str
        choices: [xfs, ext4]
      mkfs_options:
        description: Extra options for mkfs, split on spaces. Default O(mkfs_options) for the fstype.
        type: str
      mount_options:
        description: fstab options. Default O(mount_options).
        type: str
      partitions:
        description: Split each disk into this many equal GPT partitions, one volume each. Default V(1).
        type: int
      storage_class:
        description: StorageClass of the volumes. Default O(storage_class).
        type: str
      wipe:
        description:
          - The confirmation to erase this disk, the fingerprint of the disk as it is now (its stable id,
            signatures, partition table with names and UUIDs, and a digest of sampled content), as the
            refusal prints it. Only together with O(allow_wipe=true). A disk in use (mounted, swap, held,
            opened by a process) is never wiped.
          - A fingerprint of another disk, or of an earlier state of this one (a confirmation left in the
            inventory after the wipe), does not match and erases nothing.
          - V(true) alone no longer erases anything; the refusal says which fingerprint to set.
          - Default V(false).
        type: raw
      adopt:
        description: Keep and mount the filesystem already on this disk (never format it). Use with
          O(disks[].expect) C(fs_uuid) or C(fs_label) to be sure it is the disk you mean. Default V(false).
        type: bool
      expect:
        description: Facts the disk must have before anything is written; a mismatch fails the host.
        type: dict
        suboptions:
          size:
            description:
              - The disk's size. In bytes (an integer) it must be exact; with a unit it matches within 1%, so the size
                on a vendor's label matches (C(1.92TB) or C(1.92T) for a disk of 1,920,383,410,176 bytes).
              - Units are Kubernetes quantities (C(G) = 10^9, C(Gi) = 2^30) or their vendor forms (C(GB), C(GiB));
                ambiguous spellings (C(K), C(g), C(gb)) are refused.
            type: raw
          model:
            description: Model as sysfs reports it.
            type: str
          serial:
            description: Serial number, compared exactly.
            type: str
          wwn:
            description: WWN (C(0x5000c500a1b2c3d4)); compared exactly (C(wwn-), C(naa.) and C(0x) prefixes
              aside) with the WWID, the stable id and the by-id links.
            type: str
          fs_uuid:
            description: For O(disks[].adopt), the UUID the filesystem must have.
            type: str
          fs_label:
            description: For O(disks[].adopt), the label the filesystem must have.
            type: str
      capacity_from:
        description: Default O(capacity_from).
        type: str
        choices: [filesystem, device]
      labels:
        description: Extra labels for the PVs of these volumes (passed through in RV(volumes)).
        type: dict
      replace:
        description:
          - The confirmation that the disk this entry's device now leads to replaces the disk its volume was made
            on (the refusal prints it, the fingerprint of the new disk as it is now). The volume is made again,
            empty, on the new disk; a new disk that holds data still needs O(disks[].wipe).
          - Refused while the volume's PV is bound to a claim (known from O(recorded)).
        type: str
      blank_proof:
        description:
          - How much of a disk without any signature is read to prove it blank before it is written. V(spread)
            reads the first and last 8 MiB and 256 regions of 64 KiB spread evenly between them (no two reads
            farther apart than 1/256 of the disk). V(full) reads every byte, for disks that may hold data without
            any header (a detached-header dm-crypt volume, raw application data); it takes as long as reading the
            disk (about 1.4 hours per TiB at 200 MiB/s) and logs its progress to the host's journal (syslog).
          - Only disks about to be written are read; a re-run that changes nothing reads no content.
          - Default O(blank_proof).
        type: str
        choices: [spread, full]
      capacity:
        description:
          - Bind volumes only. The capacity of the volume's PV (bytes, or a Kubernetes quantity such as V(10Gi)), instead of the
            size of the filesystem its directory sits on.
          - Required when that filesystem is the root filesystem or also holds another bind volume (the plan
            refuses otherwise), because each PV would offer the whole filesystem.
        type: raw
  mount_root:
    description: Directory under which volumes are mounted.
    type: path
    default: /mnt/disks
  allow_wipe:
    description: The run's key for erasing disks that hold data; each such disk also needs O(disks[].wipe) set to
      its fingerprint.
    type: bool
    default: false
  allow_kernel_names:
    description:
      - Block volumes link to C(/dev/disk/by-partuuid/...), which udev makes. Without udev only the kernel name
        (C(/dev/sdb1)) is there, and after a reboot it may be another disk; such block volumes are refused unless
        this is V(true). Each run puts the link right again.
    type: bool
    default: false
  fstype:
    description: Default filesystem.
    type: str
    choices: [xfs, ext4]
    default: xfs
  mkfs_options:
    description: Default extra mkfs options per fstype.
    type: dict
    default: {}
  mount_options:
    description: Default fstab options for filesystem volumes. C(nofail) keeps a failed disk from
      stopping the boot.
    type: str
    default: defaults,nofail
  storage_class:
    description:
      - Default StorageClass of the volumes. Unset leaves RV(volumes[].storage_class) null, and the
        pv_register role then uses its first class.
    type: str
  capacity_from:
    description:
      - How RV(volumes[].capacity) is measured. V(filesystem) is the size of the filesystem as statvfs
        reports it, what a pod can really use; before the volume is mounted it is read from the superblock
        (the same number), and in check mode it is predicted by running the same mkfs on a sparse scratch
        file of the partition's size. V(device) is the partition size.
      - Block volumes always report the partition size.
    type: str
    choices: [filesystem, device]
    default: filesystem
  blank_proof:
    description: Default O(disks[].blank_proof).
    type: str
    choices: [spread, full]
    default: spread
  recorded:
    description:
      - What the cluster recorded about this host's volumes, by volume name, from their PVs'
        annotations (the pv_register role's preflight hands it over). Each value may hold
        C(stable_id), C(partuuid), C(fs_uuid), C(pv) (the PV's name) and C(claim) (C(namespace/name) when bound).
      - A filesystem volume's fstab line on the host wins over the PV's C(fs_uuid) as the newer record.
    type: dict
    default: {}
  host:
    description: Name of the host in messages (the role passes C(inventory_hostname)).
    type: str
  lock_timeout:
    description: Seconds to wait for the host lock held by another run.
    type: int
    default: 600
  hand_off_lock:
    description:
      - When volumes are left to mount or link (RV(mounts), RV(links)), reserve the host lock for the
        M(localpv.rollout.volume_mounts) call of the same run that follows, which presents RV(lock_handoff) as its
        O(localpv.rollout.volume_mounts#module:lock_handoff). Until then every other run on the host keeps waiting,
        so that a second run does not mount the volumes this one made between its two steps; the
        reservation ends there, or after 30 s (a run killed in between). Not in check mode.
      - The disk_prep role sets it when it calls M(localpv.rollout.volume_mounts) next.
    type: bool
    default: false
  stop_after:
    description:
      - V(partition) stops after the partition tables are written, before any mkfs. Only for
        testing that an interrupted run resumes; leave unset.
    type: str
    choices: [partition]
attributes:
  check_mode:
    support: full
    details: Computes and returns the plan, writes nothing.
  diff_mode:
    support: full
    details: Shows the disks, partitions, filesystems and fstab lines before and after.
notes:
  - There are no partial results on refusal. Refusals are returned in RV(refusals) as well as in the message.
  - M(community.general.filesystem) is not used on purpose; it reformats a whole disk whose partition
    holds a filesystem.
seealso:
  - module: localpv.rollout.block_devices
  - module: localpv.rollout.volume_mounts
"""

EXAMPLES = r"""
- name: Make partitions and filesystems for the local volumes
  localpv.rollout.disk_prepare:
    host: "{{ inventory_hostname }}"
    disks:
      - name: ssd0
        device: /dev/disk/by-id/nvme-eui.0025385b71b0a1c2
        expect:
          size: 1.92TB
      - match: {rotational: false, min_size: 100Gi, count: 4}
        name_prefix: nvme
        partitions: 2
  register: prep

- name: Mount them by filesystem UUID in fstab, and link block volumes
  localpv.rollout.volume_mounts:
    root: /mnt/disks
    mounts: "{{ prep.mounts }}"
    links: "{{ prep.links }}"
  when: prep.mounts or prep.links

- name: Mount a disk moved from a failed node, keeping its data
  localpv.rollout.disk_prepare:
    disks:
      - name: moved0
        device: /dev/disk/by-id/wwn-0x5000c500a1b2c3d4
        adopt: true
        expect:
          fs_uuid: 2f7c0f9e-3d1c-4bb5-9d6e-0b0c8d8e1f11
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
  description: Every volume of the host, in plan order. The input of C(localpv_volumes).
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: Volume name.
      type: str
      sample: ssd0
    path:
      description: Mount point (or symlink for block volumes).
      type: str
      sample: /mnt/disks/ssd0
    mode:
      description: filesystem or block.
      type: str
      sample: filesystem
    state:
      description: "create, format, formatted, existing, adopted or bind: what this run found or did."
      type: str
      sample: new
    disk:
      description: Kernel path of the disk at this run.
      type: str
      sample: /dev/nvme0n1
    partition:
      description: The volume's partition number on its disk; null for a bind volume and for a filesystem adopted
        on the whole disk.
      type: int
      sample: 1
    device:
      description: Kernel path of the partition (or disk for adopted whole-disk filesystems).
      type: str
      sample: /dev/nvme0n1p1
    stable_id:
      description: Stable id of the disk.
      type: str
      sample: nvme-eui.0025385b71b0a1c2
    stable_id_source:
      description: Where the stable id comes from (see block_devices).
      type: str
      sample: by-id
    partlabel:
      description: GPT partition name.
      type: str
      sample: localpv-ssd0
    partuuid:
      description: GPT partition UUID (kept on the PV as annotation C(localpv.rollout/partuuid)); null for adopted
        whole-disk filesystems and bind volumes.
      type: str
      sample: 5d8b7e3a-1c2f-4b6a-9e0d-3f4a5b6c7d8e
    fstype:
      description: Filesystem type; null for block and bind volumes.
      type: str
      sample: xfs
    uuid:
      description: Filesystem UUID; null until the filesystem exists (check mode).
      type: str
      sample: 0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0
    size:
      description: Partition size in bytes.
      type: int
      sample: 1000203091968
    capacity:
      description: Bytes the volume offers (see O(capacity_from)), also in check mode and before the mount;
        null only when the tools cannot tell (an mke2fs that does not record its overhead).
      type: int
      sample: 1000070512640
    storage_class:
      description: StorageClass.
      type: str
      sample: local-storage
    mount:
      description: The fstab fields of a filesystem volume, src (C(UUID=...) or the bind source), fstype, opts.
      type: dict
      sample: {src: UUID=0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0, fstype: xfs, opts: 'defaults,nofail'}
    needs_mount:
      description: Whether the fstab line or the mount is missing or different.
      type: bool
    needs_link:
      description: For block volumes, whether the symlink is missing or different.
      type: bool
    link_target:
      description: For block volumes, the device the symlink points to.
      type: str
      sample: /dev/disk/by-partuuid/5d8b7e3a-1c2f-4b6a-9e0d-3f4a5b6c7d8e
mounts:
  description:
    - The volumes whose fstab line or mount is missing or different (RV(volumes[].needs_mount)) and whose filesystem
      exists, as C({path, src, fstype, opts}); the O(localpv.rollout.volume_mounts#module:mounts) of
      M(localpv.rollout.volume_mounts). In check mode a filesystem still to make has no UUID yet and is left out.
  returned: success
  type: list
  elements: dict
  sample:
    - {path: /mnt/disks/ssd0, src: UUID=0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0, fstype: xfs, opts: 'defaults,nofail'}
links:
  description:
    - The block volumes whose link is missing or different (RV(volumes[].needs_link)), as C({path, target}); the
      O(localpv.rollout.volume_mounts#module:links) of M(localpv.rollout.volume_mounts).
  returned: success
  type: list
  elements: dict
  sample: [{path: /mnt/disks/raw0, target: /dev/disk/by-partuuid/5d8b7e3a-1c2f-4b6a-9e0d-3f4a5b6c7d8e}]
lock_handoff:
  description:
    - With O(hand_off_lock), the token of the host lock's reservation for the M(localpv.rollout.volume_mounts) call
      that follows (its O(localpv.rollout.volume_mounts#module:lock_handoff)); null when nothing is left to mount or
      link, without O(hand_off_lock), and in check mode.
  returned: success
  type: str
  sample: 3f2b9c0e8d7a4c1e9b6f5a4d3c2b1a09
disks:
  description: The plan per disk (state new, wipe, ours or adopt; actions; layout).
  returned: always
  type: list
  elements: dict
  sample: [{disk: /dev/nvme0n1, stable_id: nvme-eui.0025385b71b0a1c2, size: 1000204886016, volumes: [ssd0], state: new,
        actions: ['partition /dev/nvme0n1 (gpt: localpv-ssd0)', mkfs /dev/nvme0n1p1], layout: []}]
commands:
  description: Commands run (empty in check mode). On failure, the commands run before it stopped.
  returned: always
  type: list
  elements: str
  sample: ['sfdisk /dev/nvme0n1', 'partx -u /dev/nvme0n1', 'mkfs.xfs -q /dev/nvme0n1p1']
refusals:
  description: On failure, each refused disk with its reasons, and C(fingerprint) where erasing it would need one.
  returned: failure
  type: list
  elements: dict
  sample: [{disk: /dev/sdb, volume: ssd1, reasons: ['has an ext4 filesystem (UUID 1f2e...)']}]
skipped_disks:
  description:
    - Selector entries only; every disk a selector did not take, with the reason, one line per disk.
    - Earlier versions returned this as C(skipped), a key Ansible reserves for a skipped task (it became a boolean).
  returned: always
  type: list
  elements: str
  sample: ['match nvme: /dev/sdc is rotational']
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import capacity as plan_capacity
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import entries as plan_entries
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import read as plan_read
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import render as plan_render
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import writes as plan_writes
from ansible_collections.localpv.rollout.plugins.module_utils.host import host_lock
from ansible_collections.localpv.rollout.plugins.module_utils.host import host_volumes


def _sampler(module):
    def sampler(path, size, proof="spread"):
        if proof != "full":
            return host_volumes.sample(path, size)

        def progress(done, total):
            module.log("localpv.rollout blank proof of %s: read %s of %s (%d%%)" % (
                path, host_volumes.human_bytes(done), host_volumes.human_bytes(total), done * 100 // max(total, 1)))
        return host_volumes.sample(path, size, proof="full", progress=progress)
    return sampler


def _plan(params, host, module=None):
    options = {
        "mount_root": params["mount_root"],
        "allow_wipe": params["allow_wipe"],
        "allow_kernel_names": params["allow_kernel_names"],
        "defaults": dict((key, params[key]) for key in plan_entries.HOST_DEFAULTS),
        "recorded": params.get("recorded") or {},
    }
    sampler = _sampler(module) if module is not None else host_volumes.sample
    return plan_read.plan_host(host, params["disks"], options, sampler=sampler)


def _statvfs(path):
    try:
        return os.statvfs(path)
    except OSError:
        return None


def _existing_dir(path):
    while path and not os.path.isdir(path):
        path = os.path.dirname(path)
    return path or "/"


def _capacity(volume, run):
    """One pass: statvfs of what is mounted; else the superblock of what is made;
    else (check mode, or a partition still to format) the prediction from the plan."""
    if volume["mode"] == "block" or volume.get("capacity_from") == "device":
        return plan_capacity.capacity(volume)
    if volume["state"] == "bind":
        # the bind mount shows the source's filesystem; before the source exists, its parent's
        return plan_capacity.capacity(volume, _statvfs(_existing_dir(volume["source"])))
    if volume.get("mounted") and not volume["needs_mount"]:
        return plan_capacity.capacity(volume, _statvfs(volume["path"]))
    if volume.get("uuid") and volume["state"] != "create":
        return plan_capacity.capacity(volume, filesystem_bytes=host_volumes.filesystem_bytes(
            volume["device"], volume["fstype"], run))
    return plan_capacity.capacity(volume, filesystem_bytes=host_volumes.predict_filesystem_bytes(
        volume["fstype"], volume["size"], volume["mkfs_options"], run))


def _result_volume(volume, run):
    out = dict((k, volume.get(k)) for k in (
        "name", "path", "mode", "state", "disk", "partition", "device", "stable_id", "stable_id_source", "partlabel",
        "partuuid",
        "fstype", "uuid", "size", "storage_class", "capacity_from", "labels",
        "needs_mount", "needs_link", "link_target", "source"))
    out["capacity"] = _capacity(volume, run)
    if volume["mode"] == "filesystem":
        # the plan made the fstab source (mounts.uuid_src), and made it again from the UUID mkfs gave
        out["mount"] = {"src": volume.get("fstab_src"), "fstype": volume.get("fstab_fstype") or volume["fstype"],
                        "opts": volume["mount_options"]}
    return out


def _still_to_do(volumes):
    """The mounts and links the volumes still need: the input of volume_mounts."""
    return {
        "mounts": [dict(v["mount"], path=v["path"]) for v in volumes if v["needs_mount"] and v["mount"]["src"]],
        "links": [{"path": v["path"], "target": v["link_target"]} for v in volumes if v["needs_link"]],
    }


def main():
    # the entries' schema and the host-wide defaults are stated once, in host/plan/entries.py
    defaults = plan_entries.HOST_DEFAULTS
    module = AnsibleModule(
        argument_spec=dict(
            disks=dict(type="list", elements="dict", required=True, options=plan_entries.entry_argument_spec()),
            mount_root=dict(type="path", default="/mnt/disks"),
            allow_wipe=dict(type="bool", default=False),
            allow_kernel_names=dict(type="bool", default=False),
            fstype=dict(type="str", choices=list(plan_entries.FSTYPES), default=defaults["fstype"]),
            mkfs_options=dict(type="dict", default=dict(defaults["mkfs_options"])),
            mount_options=dict(type="str", default=defaults["mount_options"]),
            storage_class=dict(type="str"),
            capacity_from=dict(type="str", choices=list(plan_entries.CAPACITY_FROM), default=defaults["capacity_from"]),
            blank_proof=dict(type="str", choices=list(host_volumes.PROOFS), default=defaults["blank_proof"]),
            recorded=dict(type="dict", default={}),
            host=dict(type="str"),
            stop_after=dict(type="str", choices=["partition"]),
            lock_timeout=dict(type="int", default=host_lock.DEFAULT_TIMEOUT),
            hand_off_lock=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    host = module.params["host"] or os.uname()[1]
    host_lock.tether()
    try:
        with host_lock.HostLock(host, timeout=module.params["lock_timeout"]) as lock:
            _prepare(module, host, lock)
    except host_lock.LockTimeout as exc:
        module.fail_json(msg=exc.msg, lock_holders=exc.holders, commands=[])


def _prepare(module, host, lock):
    """Plan and apply, under the host lock; hand the lock on to volume_mounts when it has work."""
    try:
        plan = _plan(module.params, host, module)
    except devices.DeviceError as exc:
        module.fail_json(msg="host %s: %s" % (host, exc))
    if plan["refusals"]:
        module.fail_json(msg=plan_render.refusal_message(plan), refusals=plan["refusals"], disks=plan["disks"],
                         skipped_disks=plan["skipped"], commands=[])
    diff = {"before": plan_render.render(plan, after=False), "after": plan_render.render(plan)}
    commands = []
    pending = any(entry["actions"] for entry in plan["disks"]) or any(v.get("needs_source") for v in plan["volumes"])
    if pending and not module.check_mode:
        try:
            commands = plan_writes.apply_plan(plan, stop_after=module.params["stop_after"])
        except plan_writes.PrepareError as exc:
            module.fail_json(msg="host %s: %s%s" % (host, exc, "" if exc.written else " Nothing was written."),
                             commands=exc.commands, disks=plan["disks"])
        diff["after"] = plan_render.render(plan)
    volumes = [_result_volume(v, devices.run_command) for v in plan["volumes"]]
    todo = _still_to_do(volumes)
    handoff = None
    if module.params["hand_off_lock"] and not module.check_mode and (todo["mounts"] or todo["links"]):
        # what this run made, this run mounts: no other run takes the lock before its volume_mounts
        handoff = lock.reserve()
    module.exit_json(changed=pending, volumes=volumes, disks=plan["disks"], skipped_disks=plan["skipped"], commands=commands,
                     diff=diff, lock_handoff=handoff, **todo)


if __name__ == "__main__":
    main()
