# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading the host for the plan, each fact once: the block devices, /etc/fstab, and (for
a refusal) the disks that may hold a volume's old disk; then the plan."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan.planner import make_plan
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan.recognise import (
    describe_disk, carries_stable_id, ids_on, stale_partitions,
)


def disks_to_probe(disks, entries):
    """Kernel names of the disks the entries name, whose content the plan must read;
    None when a selector (``match``) may take any disk. ``disks`` need only be
    listed (``devices.collect(probe=False)``). A host's other block devices (the
    system disk, dozens of loop devices of snaps) are then never probed."""
    names = set()
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("match") is not None:
            return None
        device = entry.get("device")
        if device:
            disk = devices.find_disk(disks, device) or devices.find_partition(disks, device)[0]
            if disk is not None:
                names.add(disk["name"])
    return names


def refresh_stale(disks, names, run):
    """``partx -u`` (``-d`` without a table) on the disks of ``names`` (None: all)
    whose kernel partitions differ from their partition table: stale entries after a
    re-attach are not taken for data. Changes only the kernel's view. Returns the
    commands run."""
    done = []
    for disk in disks:
        if (names is not None and disk["name"] not in names) or disk["signatures"] is None:
            continue
        if stale_partitions(disk):
            argv = ["partx", "-u" if disk["partition_table"] else "-d", disk["path"]]
            run(argv)
            done.append(" ".join(argv))
    return done


def read_host(entries, collect=None, add_probes=None, run=None):
    """The host's block devices as the plan sees them, each read once: every device
    listed (sysfs, by-id, the mount table, swaps), then only the disks the entries
    name probed (every disk when a selector may take any). Only when the kernel's
    view had to be put right (:func:`refresh_stale`) is the host read again, as it
    changed. Returns ``(raw, disks)``: ``raw["mountinfo"]`` is the mount table the
    disks were judged on, the one :func:`make_plan` must be given."""
    collect = collect or devices.collect
    add_probes = add_probes or devices.add_probes
    raw = collect(probe=False)
    names = disks_to_probe(devices.build(raw), entries)
    add_probes(raw, names)
    disks = devices.build(raw)
    if refresh_stale(disks, names, run or devices.run_command):
        raw = collect(probe=False)
        add_probes(raw, names)
        disks = devices.build(raw)
    return raw, disks


def locator(raw, add_probes=None):
    """``locate(ids)`` for :func:`make_plan`: the disks of this host that carry the ids.
    Asked only for a refusal: the devices ``raw`` (:func:`read_host`) has not probed are
    probed then, once, into a copy; the rest is what the plan read."""
    state = {}

    def locate(ids):
        if "disks" not in state:
            more = dict(raw, probes=dict(raw["probes"]), tables=dict(raw["tables"]),
                        exclusive=dict(raw["exclusive"]), table_probes=dict(raw.get("table_probes") or {}))
            unprobed = set(name for name, attrs in raw["devices"].items()
                           if attrs["size"] and name not in raw["probes"])
            if unprobed:
                (add_probes or devices.add_probes)(more, unprobed)
            state["disks"] = devices.build(more)
        found = []
        for disk in state["disks"]:
            fs_uuids, partuuids = ids_on(disk)
            if (ids.get("fs_uuid") in fs_uuids or ids.get("partuuid") in partuuids or
                    carries_stable_id(disk, ids.get("stable_id"))):
                found.append(describe_disk(disk))
        return found
    return locate


def plan_host(host, entries, options, read=None, collect=None, add_probes=None, run=None, **kwargs):
    """Read this host once and plan it: :func:`read_host`, /etc/fstab through
    ``read(path)`` (a missing file reads as ""), then :func:`make_plan` (``kwargs``
    are its readers: ``sampler``, ``readlink``...)."""
    raw, disks = read_host(entries, collect, add_probes, run)
    fstab_text = (read or _read_text)("/etc/fstab")
    kwargs.setdefault("locate", locator(raw, add_probes))
    return make_plan(host, disks, entries, options, fstab_text, raw["mountinfo"], **kwargs)


def _read_text(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return ""
