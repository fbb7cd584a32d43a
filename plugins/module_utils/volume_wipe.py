# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Erasing retired volumes (decommission) and Released ones (reclaim) on their host.

Both erase through ``host_volumes.erase``, the same wipe disk_prep uses. Nothing
here talks to Kubernetes: the controller decides which volumes, this side checks
that what it is about to erase is that volume and that nobody uses it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.localpv.rollout.plugins.module_utils import devices
from ansible_collections.localpv.rollout.plugins.module_utils import host_volumes as hv
from ansible_collections.localpv.rollout.plugins.module_utils.host_volumes import VolumeError


def head_is_zero(device, length=hv.MIB):
    """Whether the first ``length`` bytes of ``device`` are zeros (erased already)."""
    try:
        with open(device, "rb") as handle:
            data = handle.read(length)
    except (IOError, OSError):
        return False
    return not data.strip(b"\0")


def plan_partition_wipe(disks, names):
    """Which partitions (and partition tables) erasing the retired volumes
    ``names`` means, on ``disks`` (``devices.host_disks()``).

    A volume's partition is found by its GPT name (``host_volumes.partition_label``),
    so this works after its PV is gone. A partition in use (``devices.judge_partition``:
    mounted, swap, held, opened by a process) is refused. A disk's partition table is erased too when every
    partition on it is one of these volumes. Returns ``(items, refused)``."""
    labels = dict((hv.partition_label(n), n) for n in names)
    items, refused = [], []
    for disk in disks:
        parts = [p for p in disk["partitions"] if p.get("partlabel") in labels]
        if not parts:
            continue
        for part in parts:
            why = [message for _code, message in devices.judge_partition(part)]
            entry = {"volume": labels[part["partlabel"]], "device": part["path"], "disk": disk["path"],
                     "signatures": [s.get("type") for s in part.get("signatures") or []]}
            if why:
                entry["reason"] = "partition %s of volume %s is %s" % (part["path"], entry["volume"], "; ".join(why))
                refused.append(entry)
            else:
                items.append(entry)
        whole = len(parts) == len(disk["partitions"]) == len(disk["partition_table"] or disk["partitions"])
        if whole and not any(r["disk"] == disk["path"] for r in refused) and not disk["system_mounts"]:
            items.append({"volume": None, "device": disk["path"], "disk": disk["path"], "table": True,
                          "signatures": [s.get("type") for s in disk.get("signatures") or []]})
    return items, refused


def run_wipe(items, run, check_mode=False, length=1 << 20):
    """Erase what :func:`plan_partition_wipe` listed: each partition's signatures
    (``wipefs -a``) and start, then whole partition tables. ``run(argv)``
    returns ``(rc, out, err)``. Returns the devices changed."""
    changed = []
    for item in [i for i in items if not i.get("table")] + [i for i in items if i.get("table")]:
        if not item.get("table") and not item["signatures"] and head_is_zero(item["device"], length):
            continue
        if item.get("table") and not item["signatures"]:
            continue
        changed.append(item["device"])
        if check_mode:
            continue
        hv.erase(item["device"], run, length)
        if item.get("table"):
            run(["partx", "-d", item["device"]])
    return changed


MKFS_TYPES = ("xfs", "ext4", "ext3")


def wipe_contents(volume, how, run, check_mode=False, length=1 << 20, state=None):
    """Erase the data of one volume still in place, for reuse (reclaim).

    ``volume``: ``{path, mode}``, and ``volume`` (its name) to check that what
    ``path`` leads to is that volume's partition (:func:`check_identity`).
    Filesystem volumes must be mounted at
    ``path`` (never a directory of the root filesystem): ``how=files`` removes
    everything under it, ``how=mkfs`` unmounts, makes the same filesystem again
    with the same UUID (so the fstab line and the PV stay right) and mounts it.
    Block volumes (a link to a device): the device's signatures and start are
    erased. Refuses while a process holds the volume. Returns a dict with
    ``path``, ``action`` and ``changed``."""
    path = volume["path"].rstrip("/")
    state = state or hv.volume_state(path)
    out = {"path": path, "changed": False}
    if state["holders"] or state["other_mounts"]:
        raise VolumeError("%s is still in use: %s%s" % (
            path, hv.describe_holders(state), "; also mounted at %s" % ", ".join(state["other_mounts"])
            if state["other_mounts"] else ""), code="held")
    if volume.get("volume"):
        check_identity(volume, state, run)
    if (volume.get("mode") or "").lower() == "block" or state["is_link"]:
        device = state.get("device")
        if not device:
            raise VolumeError("%s is not a link to a block device; refusing to wipe" % path, code="not_a_volume")
        rc, text, err = run(["wipefs", "--noheadings", device])
        dirty = bool(text.strip()) or not head_is_zero(device, length)
        out.update(action="device-start", device=device, changed=dirty)
        if dirty and not check_mode:
            hv.erase(device, run, length)
        return out
    if not state["mounted"]:
        raise VolumeError("%s is not a mount point: refusing to wipe what may be the host's own directory. Mount "
                          "it again (`mount %s`: its fstab line) and run again, or, if the volume is gone, retire "
                          "its PV with decommission" % (path, path), code="not_mounted")
    if how == "mkfs":
        source, fstype = state["mount"]["source"], state["mount"]["fstype"]
        if not source.startswith("/dev/") or state["mount"]["root"] != "/" or fstype not in MKFS_TYPES:
            raise VolumeError("%s is %s on %s (root %s): only a whole xfs/ext filesystem on a device can be made "
                              "again; use how=files" % (path, fstype, source, state["mount"]["root"]),
                              code="not_mkfs")
        rc, text, err = run(["blkid", "-p", "-o", "value", "-s", "UUID", source])
        uuid = text.strip() or None
        out.update(action="mkfs", device=source, fstype=fstype, uuid=uuid, changed=True)
        if check_mode:
            return out
        for argv in (["umount", path], hv.mkfs_argv(fstype, source, uuid=uuid, force=True),
                     ["mount", path] if state["fstab"] else ["mount", "-t", fstype, source, path]):
            rc, text, err = run(argv)
            if rc != 0:
                raise VolumeError("%s failed: %s" % (" ".join(argv), (err or text).strip()), code="mkfs")
        return out
    keep = ("lost+found",) if state["mount"]["fstype"].startswith("ext") and state["mount"]["root"] == "/" else ()
    entries = [e for e in os.listdir(path) if e not in keep]
    out.update(action="files", removed=len(entries), changed=bool(entries))
    if entries and not check_mode:
        hv.remove_contents(path, keep)
    return out


def check_identity(volume, state, run, sys_root="/sys"):
    """Refuse unless ``path`` leads to volume ``volume``'s own partition.

    A block volume's link must resolve to a partition whose GPT name is the
    volume's (``host_volumes.partition_label``): a link to a kernel name may lead
    to another disk after a reboot, and zeroing it would destroy that disk's
    data. A filesystem volume mounted from one of our partitions must be mounted
    from its own; a bind mount or an adopted filesystem has no GPT name to check,
    and the mount at the PV's path is its identity."""
    label = hv.partition_label(volume["volume"])
    if state.get("is_link"):
        ident = hv.partition_identity(state.get("dev"), run, sys_root=sys_root)
        if not ident or ident["partlabel"] != label:
            raise VolumeError("%s leads to %s, which is %s, not the partition %s of volume %s; nothing wiped" % (
                state["path"], state.get("link_target"), "partition %d of %s named %r" % (
                    ident["number"], ident["disk"], ident["partlabel"]) if ident else "not a partition",
                label, volume["volume"]), code="not_this_volume")
        return ident
    mount = state.get("mount") or {}
    ident = hv.partition_identity(mount.get("dev"), run, sys_root=sys_root) if mount.get("root") == "/" else None
    if ident and (ident["partlabel"] or "").startswith(hv.PARTITION_LABEL_PREFIX) and ident["partlabel"] != label:
        raise VolumeError("%s is mounted from partition %d of %s named %r, not from volume %s's partition %s; "
                          "nothing wiped" % (state["path"], ident["number"], ident["disk"], ident["partlabel"],
                                             volume["volume"], label), code="not_this_volume")
    return ident
