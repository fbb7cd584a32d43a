# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mount state of the plan's volumes: which fstab lines, mounts and block links are
still to make, and the mount points refused before any disk is written."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices
from ansible_collections.localpv.rollout.plugins.module_utils.host import mounts as mount_rules


def _filesystem_of(path, mounts):
    """The mount (of ``mounts``, parsed mountinfo) whose filesystem holds ``path``."""
    best = None
    for mount in mounts:
        point = mount["mount_point"]
        if path == point or path.startswith(point.rstrip("/") + "/"):
            if best is None or len(point) >= len(best["mount_point"]):
                best = mount
    return best


def shared_bind_sources(volumes, mounts):
    """Bind volumes without an explicit capacity whose source sits on a filesystem
    that also holds the root filesystem or another volume: their PV would offer
    the whole filesystem's size, which every volume on it claims at once.
    Returns ``[(volume, reason)]``."""
    out = []
    binds = [v for v in volumes if v["state"] == "bind"]
    for volume in binds:
        if volume.get("explicit_capacity"):
            continue
        fs = _filesystem_of(volume["source"], mounts)
        if fs is None:
            continue
        others = [o["name"] for o in binds if o is not volume and (_filesystem_of(o["source"], mounts) or {}).get(
            "dev") == fs["dev"]]
        if fs["mount_point"] == "/":
            where = "the root filesystem (%s)" % fs["source"]
        elif others:
            where = "the filesystem mounted at %s (%s), which also holds volume(s) %s" % (
                fs["mount_point"], fs["source"], ", ".join(others))
        else:
            continue
        out.append((volume, "bind volume %s: its source %s is on %s; its PV would offer that whole filesystem. "
                    "Give it capacity: the size set aside for it (for example capacity: 10G)" % (
                        volume["name"], volume["source"], where)))
    return out


def _link_target(planner, volume):
    """Where a block volume's link points: the partition's UUID link where udev
    makes one (it never moves), else the kernel name only on explicit opt-in,
    because after a reboot ``sdb1`` may be another disk and a pod writes to it."""
    if volume["udev"] and volume["partuuid"]:
        return "/dev/disk/by-partuuid/" + volume["partuuid"]
    if planner.allow_kernel_names:
        return volume["device"]
    planner.refuse(volume["disk"], [
        "block volume %s: this host has no /dev/disk/by-partuuid links (no udev), and a link to the kernel name %s "
        "may lead to another disk after a reboot; set localpv_allow_kernel_names: true to accept kernel names "
        "(each run puts the link right again)" % (volume["name"], volume["device"])], volume["name"])
    return None


def mark_mount_state(planner, dir_entries, kind_at):
    """Which volumes need their fstab line/mount (or block symlink) made. A mount point
    that is not mounted and holds files, one a new volume would find mounted from
    something else, and a mount point or link path that is something else (a symlink
    where a directory belongs, a file) are refused here already, before any disk is
    written, in check mode too (volume_mounts applies the same rules again right
    before it mounts)."""
    fstab, mounts = planner.fstab, planner.mounts
    for volume in planner.plan["volumes"]:
        path = volume["path"]
        kind = kind_at(path)
        if volume["mode"] == "block" and kind not in (None, "symlink"):
            planner.refuse(path, ["%s is a %s where the link of block volume %s belongs; move it away and run "
                                  "again" % (path, kind, volume["name"])], volume["name"])
        elif volume["mode"] != "block" and kind not in (None, "directory"):
            planner.refuse(path, ["%s is a %s, not a directory to mount volume %s on; move it away and run again" % (
                path, kind, volume["name"])], volume["name"])
        if volume["mode"] == "block":
            volume["link_target"] = _link_target(planner, volume)
            volume["needs_link"] = planner.link_at(path) != volume["link_target"]
            continue
        if volume["state"] == "bind":
            volume["fstab_src"], volume["fstab_fstype"] = volume["source"], "none"
        else:
            volume["fstab_src"] = mount_rules.uuid_src(volume["uuid"])
            volume["fstab_fstype"] = volume["fstype"]
        fstab_ok = mount_rules.fstab_right(fstab, path, volume["fstab_src"], volume["fstab_fstype"],
                                           volume["mount_options"])
        mount = devices.mount_at(mounts, path)
        if volume["state"] == "bind":
            mounted = mount is not None and devices.is_bind_of(mount, volume["source"], mounts)
        else:
            mounted = devices.mount_is_of(mount, volume.get("dev"), volume["device"])
        volume["mounted"] = mounted
        # a mount whose live flags drifted from its right fstab line (remount,ro by hand) is remounted
        drift = mount_rules.option_drift(volume["mount_options"], mount["options"]) if fstab_ok and mounted else []
        volume["needs_mount"] = not (fstab_ok and mounted) or bool(drift)
        if mount is None:
            hidden = mount_rules.hidden_files_refusal(path, dir_entries(path))
            if hidden:
                planner.refuse(path, hidden, volume["name"])
        elif volume["state"] in ("create", "format"):
            # a volume still to be made cannot be what is mounted there: refused before its
            # disk is written, not by volume_mounts after it
            planner.refuse(path, mount_rules.taken_refusal(path, mount, "where the new volume %s belongs" % volume["name"]),
                           volume["name"])
