# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan as text: the refusal message and the before/after picture of ``--diff``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.localpv.rollout.plugins.module_utils.host import mounts as mount_rules


def refusal_message(plan):
    lines = ["host %s: refusing to prepare disks; nothing was written to any disk of this host." % plan["host"]]
    for refusal in plan["refusals"]:
        lines.append("%s%s: %s" % (refusal["disk"], " (volume %s)" % refusal["volume"] if refusal["volume"] else "",
                                   "; ".join(refusal["reasons"])))
    return " ".join(lines)


def _render_disk(entry, vols, after):
    head = "%s (%s, %d bytes)" % (entry["disk"], entry["stable_id"] or "no stable id", entry["size"])
    if not after and entry["state"] in ("new", "wipe"):
        return ["%s: %s" % (head, "blank (%s)" % entry.get("blank_proof", "no signature") if entry["state"] == "new" else
                            "holds data (to be wiped, confirmed fingerprint %s)" % entry.get("fingerprint"))]
    lines = ["%s: gpt" % head if entry["state"] != "adopt" or vols[0]["partition"] else head]
    for volume in vols:
        what = volume["fstype"] if volume["mode"] == "filesystem" else "raw block"
        if not after and volume["state"] == "format":
            what = "blank"
        lines.append("  %s %s %s -> %s%s" % (
            volume["device"], "[%s]" % volume["partlabel"] if volume["partlabel"] else "", what,
            volume["path"], "" if not volume["uuid"] else " " + mount_rules.uuid_src(volume["uuid"])))
    return lines


def render(plan, after=True):
    """A text picture of the host's disks before (``after=False``) or after the plan."""
    lines = [] if after else list(plan.get("skipped") or [])
    for entry in plan["disks"]:
        lines += _render_disk(entry, [v for v in plan["volumes"] if v["disk"] == entry["disk"]], after)
    for volume in plan["volumes"]:
        if volume["state"] == "bind" and (after or not volume["needs_mount"]):
            lines.append("%s -> %s (bind)" % (volume["source"], volume["path"]))
    for volume in plan["volumes"]:
        if volume["mode"] == "filesystem" and (after or not volume["needs_mount"]):
            lines.append("fstab: %s %s %s %s" % (volume.get("fstab_src") or mount_rules.uuid_src("<new>"), volume["path"],
                                                 volume.get("fstab_fstype"), volume["mount_options"]))
        elif volume["mode"] == "block" and (after or not volume["needs_link"]):
            lines.append("link: %s -> %s" % (volume["path"], volume["link_target"]))
    return "\n".join(lines) + "\n"
