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

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices
from ansible_collections.localpv.rollout.plugins.module_utils.host import host_volumes as hv
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan.recognise import BLOCK_VOLUME_TYPE
from ansible_collections.localpv.rollout.plugins.module_utils.host.host_volumes import VolumeError


def head_is_zero(device, length=hv.MIB):
    """Whether the first and last ``length`` bytes of ``device`` are zeros (erased
    already by :func:`host_volumes.erase`)."""
    return hv.ends_are_zero(device, length)


def plan_partition_wipe(disks, names):
    """Which partitions (and partition tables) erasing the retired volumes
    ``names`` means, on ``disks`` (``devices.host_disks()``).

    A volume's partition is found by its GPT name (``host_volumes.partition_label``),
    so this works after its PV is gone. A partition in use (``devices.judge_partition``:
    mounted, swap, held, opened by a process) is refused. A disk's partition table is erased too when every
    partition on it is one of these volumes. Returns ``(items, refused)``."""
    labels = dict((hv.partition_label(n), n) for n in names)
    for disk in disks:
        # a volume retired by this decommission (or an earlier one) carries its retired name
        for part in disk["partitions"]:
            for name in names:
                if hv.retired_day(part.get("partlabel"), name):
                    labels[part["partlabel"]] = name
    items, refused = [], []
    for disk in disks:
        parts = [p for p in disk["partitions"] if p.get("partlabel") in labels]
        if not parts:
            continue
        for part in parts:
            why = [message for _code, message in devices.judge_partition(part)]
            entry = {"volume": labels[part["partlabel"]], "device": part["path"], "disk": disk["path"],
                     "signatures": [s.get("type") for s in part.get("signatures") or []],
                     "block": (part.get("parttype") or "").upper() == BLOCK_VOLUME_TYPE}
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


def run_wipe(items, run, check_mode=False, length=1 << 20, block_wipe="full"):
    """Erase what :func:`plan_partition_wipe` listed: each partition's signatures
    (``wipefs -a``) and both ends, then whole partition tables. A block volume's
    partition (its GPT type says so) is sanitized whole first, ``block_wipe``
    full or quick (:func:`host_volumes.sanitize_block`): a tenant's raw data has
    no signature and may lie anywhere. ``run(argv)`` returns ``(rc, out, err)``.
    Returns the devices changed."""
    changed = []
    for item in [i for i in items if not i.get("table")] + [i for i in items if i.get("table")]:
        if item.get("block"):
            changed.append(item["device"])
            if not check_mode:
                item["erased"] = hv.sanitize_block(item["device"], block_wipe, run)
                hv.erase(item["device"], run, length)
            continue
        if not item.get("table") and not item["signatures"] and head_is_zero(item["device"], length):
            continue
        if item.get("table") and not item["signatures"] and head_is_zero(item["device"], length):
            continue
        changed.append(item["device"])
        if check_mode:
            continue
        hv.erase(item["device"], run, length)
        if item.get("table"):
            run(["partx", "-d", item["device"]])
    return changed


def wipe_contents(volume, how, run, check_mode=False, length=1 << 20, state=None, block_wipe="full"):
    """Erase the data of one volume still in place, for reuse (reclaim).

    ``volume``: ``{path, mode}``, and ``volume`` (its name) to check that what
    ``path`` leads to is that volume's partition (:func:`check_identity`).
    Filesystem volumes must be mounted at
    ``path`` (never a directory of the root filesystem): ``how=files`` removes
    everything under it, ``how=mkfs`` unmounts, makes the same filesystem again
    with the same UUID (so the fstab line and the PV stay right) and mounts it.
    Block volumes (a link to a device) are sanitized: every byte of the device
    is made zero, ``block_wipe`` = ``full`` (overwritten here) or ``quick`` (by
    the kernel, :func:`host_volumes.sanitize_block`). Refuses while a process
    holds the volume. Returns a dict with ``path``, ``action`` and ``changed``."""
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
        # a tenant's raw data has no signature and may lie anywhere: the whole device, every time
        out.update(action="block-%s" % block_wipe, device=device, changed=True,
                   erased="every byte (%s)" % block_wipe)
        if not check_mode:
            out["erased"] = hv.sanitize_block(device, block_wipe, run)
        return out
    if not state["mounted"]:
        raise VolumeError("%s is not a mount point: refusing to wipe what may be the host's own directory. Mount "
                          "it again (`mount %s`: its fstab line) and run again, or, if the volume is gone, retire "
                          "its PV with decommission" % (path, path), code="not_mounted")
    if how == "mkfs":
        source, fstype = state["mount"]["source"], state["mount"]["fstype"]
        if not source.startswith("/dev/") or state["mount"]["root"] != "/" or fstype not in hv.MKFS_TYPES:
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


def describe_wipe(result, check_mode=False):
    """One line that says exactly what :func:`wipe_contents` erased (or would)."""
    verb = "would be" if check_mode else "was"
    if not result.get("changed"):
        return "%s: nothing to erase, left as it was" % result["path"]
    if result.get("action") == "files":
        return "%s: %d entries %s removed (files)" % (result["path"], result.get("removed", 0),
                                                      "would be" if check_mode else "were")
    if result.get("action") == "mkfs":
        return "%s: %s %s made again on %s with UUID %s (mkfs)" % (
            result["path"], result.get("fstype"), verb, result.get("device"), result.get("uuid"))
    if check_mode:
        return "%s: every byte of %s would be made zero (%s)" % (result["path"], result.get("device"),
                                                                 result.get("action"))
    return "%s: %s on %s" % (result["path"], result.get("erased"), result.get("device"))


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


def _rename_partition(ident, label, run):
    """Give partition ``ident`` (:func:`host_volumes.partition_identity`) the GPT name
    ``label``, without asking the kernel to re-read the table (a kernel without
    partition-table parsers would drop the partitions)."""
    argv = ["sfdisk", "--no-reread", "--no-tell-kernel", "--part-label", ident["disk"], str(ident["number"]), label]
    rc, out, err = run(argv)
    if rc != 0:
        raise VolumeError("%s failed: %s; the volume is not marked retired" % (" ".join(argv), (err or out).strip()),
                          code="retire")


def _find_partition(disks, volume):
    """(disk, partition) of ``volume``'s partition by its GPT name, live or retired."""
    for disk in disks:
        for part in disk["partitions"]:
            label = part.get("partlabel")
            if label == hv.partition_label(volume) or hv.retired_day(label, volume):
                return disk, part
    return None, None


def retire_volume(volume, path, day, run, disks=None, check_mode=False, state=None):
    """Mark volume ``volume`` (at ``path``) retired on its host, on ``day`` (YYYY-MM-DD).

    A volume on a partition of ours (filesystem or block, found through its
    mount or link, or by its GPT name once unmounted) gets the GPT name
    :func:`host_volumes.retired_label`; a bind volume gets the marker file in its
    source directory (written through the mount point). Its data stays. Returns
    ``{volume, path, how, mark, changed, said}``."""
    state = state or hv.volume_state(path.rstrip("/"))
    out = {"volume": volume, "path": path, "changed": False}
    ident = None
    if state.get("is_link") and state.get("dev"):
        ident = hv.partition_identity(state["dev"], run)
    elif state.get("mounted") and state["mount"]["root"] == "/":
        ident = hv.partition_identity(state["mount"]["dev"], run)
    elif state.get("mounted"):
        marker = hv.read_retired_marker(path)
        out.update(how="marker", mark=os.path.join(state["mount"]["root"], hv.RETIRED_MARKER))
        if marker:
            out["said"] = "%s: bind volume %s already marked retired (%s)" % (path, volume, marker["day"])
            return out
        out["changed"] = True
        if not check_mode:
            hv.write_retired_marker(path, volume, day)
        out["said"] = "%s: bind volume %s marked retired in its source directory (%s)" % (path, volume, out["mark"])
        return out
    else:
        disk, part = _find_partition(disks if disks is not None else devices.host_disks(), volume)
        if part:
            ident = {"disk": disk["path"], "number": part["number"], "partlabel": part.get("partlabel")}
    if not ident and not state.get("mounted") and not state.get("is_link"):
        # a run that marked and unmounted it already, or a volume whose disk is gone
        out.update(how="none", mark=None, said="%s: volume %s is not mounted, linked or found by its partition "
                   "name on this host; nothing to mark" % (path, volume))
        return out
    if not ident or not ident.get("partlabel"):
        what = ("a link to %s" % state.get("link_target") if state.get("is_link")
                else "mounted from %s" % state["mount"]["source"])
        raise VolumeError("%s: volume %s is %s, not a partition of ours; it cannot be marked retired, and nothing "
                          "was deleted" % (path, volume, what), code="not_ours")
    label = ident["partlabel"]
    out.update(how="partition name", device="partition %d of %s" % (ident["number"], ident["disk"]))
    if hv.retired_day(label, volume):
        out.update(mark=label, said="%s: volume %s already marked retired (%s is named %s)" % (
            path, volume, out["device"], label))
        return out
    if label != hv.partition_label(volume):
        raise VolumeError("%s leads to %s, named %r, not volume %s's partition %s; it is not marked retired, and "
                          "nothing was deleted" % (path, out["device"], label, volume, hv.partition_label(volume)),
                          code="not_this_volume")
    out.update(mark=hv.retired_label(volume, day), changed=True)
    if not check_mode:
        _rename_partition(ident, out["mark"], run)
    out["said"] = "%s: volume %s marked retired (%s renamed %s to %s)" % (
        path, volume, out["device"], label, out["mark"])
    return out
