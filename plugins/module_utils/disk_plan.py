# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan of one host's disks, and carrying it out.

``make_plan()`` is pure: from the judged disks of a host (``devices.build``), what
the inventory asks for (``localpv_disks``), /etc/fstab and the mount table, it
computes for every disk what will be done, for every volume where it will be
mounted, and every reason to refuse. A plan with any refusal is never applied:
the host fails naming host, disk and reason, and no disk is touched.

``apply_plan()`` does the writes, re-checking each disk right before it writes
(the plan may be seconds old). It is resumable: a disk that already carries our
GPT layout is recognised by its partition names (``volumes.partition_label``),
a partition that is still blank is formatted, one that carries the expected
filesystem is kept.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import fnmatch
import os
import subprocess
import time
import uuid

from ansible_collections.localpv.rollout.plugins.module_utils import devices
from ansible_collections.localpv.rollout.plugins.module_utils.volumes import (
    duplicate_names,
    partition_label,
    volume_name_reasons,
)

MIB = 1024 * 1024
FSTYPES = ("xfs", "ext4")
# Below these a mkfs fails or makes a toy: refuse in the plan, not halfway through.
MIN_FS_SIZE = {"xfs": 300 * MIB, "ext4": 16 * MIB}
MODES = ("filesystem", "block")
CAPACITY_FROM = ("filesystem", "device")
EXPECT_KEYS = ("size", "model", "serial", "wwn", "fs_uuid", "fs_label")
MATCH_KEYS = ("rotational", "min_size", "max_size", "model", "count")
SPEC_KEYS = ("name", "device", "match", "name_prefix", "bind", "mode", "fstype", "mkfs_options",
             "mount_options", "partitions", "storage_class", "wipe", "adopt", "expect", "capacity_from",
             "labels", "reclaim_policy", "capacity")
DEFAULT_MOUNT_OPTIONS = "defaults,nofail"
LINUX_FS_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


class PrepareError(Exception):
    """Applying the plan failed; ``written`` says whether any byte was written."""

    def __init__(self, message, written=False):
        super(PrepareError, self).__init__(message)
        self.written = written


# --------------------------------------------------------------------------------------
# Inventory entries
# --------------------------------------------------------------------------------------

def normalize_spec(entry, index, defaults):
    """Check one ``localpv_disks`` entry and fill in defaults. Returns (spec, errors)."""
    errors = []
    if not isinstance(entry, dict):
        return None, ["entry %d is not a mapping" % index]
    unknown = sorted(set(entry) - set(SPEC_KEYS))
    if unknown:
        errors.append("unknown key(s) %s" % ", ".join(unknown))
    kinds = [key for key in ("device", "match", "bind") if entry.get(key) is not None and entry.get(key) != ""]
    if len(kinds) != 1:
        errors.append("give exactly one of device, match or bind (got %s)" % (", ".join(kinds) or "none"))
    spec = {
        "index": index,
        "kind": kinds[0] if len(kinds) == 1 else None,
        "name": entry.get("name"),
        "device": entry.get("device"),
        "bind": entry.get("bind"),
        "name_prefix": entry.get("name_prefix"),
        "mode": entry.get("mode") or "filesystem",
        "fstype": entry.get("fstype") or defaults.get("fstype") or "xfs",
        "mkfs_options": entry.get("mkfs_options"),
        "mount_options": entry.get("mount_options") or defaults.get("mount_options") or DEFAULT_MOUNT_OPTIONS,
        "partitions": entry.get("partitions", 1),
        "storage_class": entry.get("storage_class") or defaults.get("storage_class"),
        "wipe": bool(entry.get("wipe", False)),
        "adopt": bool(entry.get("adopt", False)),
        "expect": entry.get("expect") or {},
        "capacity_from": entry.get("capacity_from") or defaults.get("capacity_from") or "filesystem",
        "labels": entry.get("labels") or {},
        "reclaim_policy": entry.get("reclaim_policy"),
        "match": entry.get("match") or {},
    }
    if spec["mkfs_options"] is None:
        spec["mkfs_options"] = (defaults.get("mkfs_options") or {}).get(spec["fstype"], "")
    if spec["mode"] not in MODES:
        errors.append("mode %r is not one of %s" % (spec["mode"], ", ".join(MODES)))
    if spec["fstype"] not in FSTYPES:
        errors.append("fstype %r is not one of %s" % (spec["fstype"], ", ".join(FSTYPES)))
    if spec["capacity_from"] not in CAPACITY_FROM:
        errors.append("capacity_from %r is not one of %s" % (spec["capacity_from"], ", ".join(CAPACITY_FROM)))
    parts = spec["partitions"]
    if isinstance(parts, bool) or not isinstance(parts, int) or not 1 <= parts <= 128:
        errors.append("partitions %r is not a number from 1 to 128" % (parts,))
        spec["partitions"] = 1
    if not isinstance(spec["expect"], dict) or set(spec["expect"]) - set(EXPECT_KEYS):
        errors.append("expect may only hold %s" % ", ".join(EXPECT_KEYS))
        spec["expect"] = {}
    if spec["kind"] == "match":
        if not isinstance(spec["match"], dict):
            errors.append("match is not a mapping")
            spec["match"] = {}
        elif set(spec["match"]) - set(MATCH_KEYS):
            errors.append("match may only hold %s" % ", ".join(MATCH_KEYS))
        for key in ("min_size", "max_size"):
            if spec["match"].get(key) is not None:
                try:
                    spec["match"][key] = devices.parse_size(spec["match"][key])
                except ValueError as exc:
                    errors.append("match.%s: %s" % (key, exc))
        count = spec["match"].get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            errors.append("match.count %r is not a positive number" % (count,))
        if not spec["name_prefix"]:
            errors.append("a match entry needs name_prefix")
        if spec["name"]:
            errors.append("a match entry takes name_prefix, not name")
        if spec["adopt"]:
            errors.append("adopt needs an explicit device, not a match")
    elif not spec["name"]:
        errors.append("name is required")
    if spec["kind"] == "bind":
        if not isinstance(spec["bind"], str) or not spec["bind"].startswith("/") or spec["bind"].rstrip("/") == "":
            errors.append("bind %r is not an absolute directory path" % (spec["bind"],))
        if spec["mode"] != "filesystem":
            errors.append("a bind mount is always mode filesystem")
        for key in ("wipe", "adopt"):
            if spec[key]:
                errors.append("%s makes no sense for a bind mount" % key)
    errors += _capacity_errors(spec, entry.get("capacity"))
    if spec["expect"].get("size") is not None:
        try:
            spec["expect"]["size"] = devices.parse_size(spec["expect"]["size"])
        except ValueError as exc:
            errors.append("expect.size: %s" % exc)
    if spec["adopt"] and spec["wipe"]:
        errors.append("adopt keeps the data and wipe destroys it: choose one")
    return spec, errors


def _capacity_errors(spec, given):
    """An explicit capacity is for bind volumes (disks are measured); parsed in place."""
    spec["capacity"] = None
    if given is None:
        return []
    if spec["kind"] != "bind":
        return ["capacity is only given for bind volumes; a disk's capacity is measured"]
    try:
        spec["capacity"] = devices.parse_size(given)
    except ValueError as exc:
        return ["capacity: %s" % exc]
    return [] if spec["capacity"] > 0 else ["capacity must be more than 0"]


def volume_names(base, partitions):
    """Names of the volumes one disk becomes: ``base``, or ``base-1``..``base-N``."""
    if partitions == 1:
        return [base]
    return ["%s-%d" % (base, number) for number in range(1, partitions + 1)]


def partition_path(disk_path, number):
    """The kernel name of partition ``number`` of ``disk_path`` (sda1, nvme0n1p1, loop0p1)."""
    return "%s%s%d" % (disk_path, "p" if disk_path[-1:].isdigit() else "", number)


def layout(size, count):
    """Equal GPT partitions: 1 MiB aligned, 1 MiB kept at each end for the GPT."""
    usable = size // MIB - 2
    each = usable // count if count else 0
    return [{"number": n + 1, "start": (1 + n * each) * MIB, "size": each * MIB} for n in range(count)]


def matches(disk, match):
    """Whether a disk fits a selector's ``match`` (eligibility is checked apart)."""
    if match.get("rotational") is not None and disk["rotational"] != bool(match["rotational"]):
        return False
    if match.get("min_size") is not None and disk["size"] < match["min_size"]:
        return False
    if match.get("max_size") is not None and disk["size"] > match["max_size"]:
        return False
    if match.get("model") and not fnmatch.fnmatch((disk.get("model") or "").strip(), match["model"]):
        return False
    return True


def _sort_key(disk):
    return (disk["stable_id"] or "~", disk["path"])


# --------------------------------------------------------------------------------------
# Recognising what is on a disk
# --------------------------------------------------------------------------------------

def labels_on(disk):
    """GPT partition names on the disk, in partition order."""
    return [entry.get("name") or "" for entry in sorted(disk["partition_table"], key=lambda e: e["number"])]


def ours_for(disk, names):
    """Whether the disk carries exactly our partitions for the volumes ``names``."""
    table = disk["partition_table"]
    return bool(table) and disk["pttype"] == "gpt" and labels_on(disk) == [partition_label(n) for n in names]


def carries_ours(disk):
    """Whether any partition of the disk has one of our partition names."""
    return any(label.startswith("localpv-") for label in labels_on(disk))


def _hard_reasons(disk):
    return [msg for code, msg in zip(disk["reason_codes"], disk["reasons"]) if code not in devices.DATA_REASONS]


def _ours_reasons(disk, names, mount_paths):
    """Why a disk that carries our layout may not be used as it is (mounted elsewhere...)."""
    reasons = []
    for code, message in zip(disk["reason_codes"], disk["reasons"]):
        if code in devices.DATA_REASONS or code in ("mounted", "exclusive"):
            continue
        reasons.append(message)
    wanted = set(mount_paths)
    for mount in disk["mounts"]:
        if mount["mount_point"] not in wanted:
            reasons.append("%s is mounted at %s, not under the mount root" % (mount["device"], mount["mount_point"]))
    for part in disk["partitions"]:
        if part["holders"]:
            reasons.append("partition %s is held by %s" % (part["name"], ", ".join(part["holders"])))
    return reasons


def _expect_reasons(disk, expect):
    reasons = []
    if expect.get("size") is not None and disk["size"] != expect["size"]:
        reasons.append("expected size %d bytes, the disk has %d" % (expect["size"], disk["size"]))
    for key, have in (("model", disk.get("model")), ("serial", disk.get("serial"))):
        if expect.get(key) is not None and (have or "").strip() != str(expect[key]).strip():
            reasons.append("expected %s %r, the disk says %r" % (key, expect[key], have))
    if expect.get("wwn") is not None:
        wwn = str(expect["wwn"]).lower().replace("wwn-", "")
        ids = [(disk.get("wwid") or "").lower(), (disk.get("stable_id") or "").lower()] + disk["by_id"]
        if not any(wwn in candidate for candidate in ids if candidate):
            reasons.append("expected WWN %s, the disk has %s" % (expect["wwn"], disk.get("wwid") or "none"))
    return reasons


def _fs_expect_reasons(fs, expect):
    reasons = []
    if expect.get("fs_uuid") and (fs.get("uuid") or "").lower() != str(expect["fs_uuid"]).lower():
        reasons.append("expected filesystem UUID %s, found %s" % (expect["fs_uuid"], fs.get("uuid")))
    if expect.get("fs_label") and fs.get("label") != expect["fs_label"]:
        reasons.append("expected filesystem label %r, found %r" % (expect["fs_label"], fs.get("label")))
    return reasons


# --------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------

def make_plan(host, disks, entries, options, fstab_text="", mountinfo_text="", links=None, isdir=None):
    """The whole plan of one host. Returns a dict with ``refusals`` (empty = go).

    ``links`` maps block-volume paths to where their symlink points now;
    ``isdir`` tells whether a bind source exists (default: ``os.path.isdir``).
    """
    mount_root = (options.get("mount_root") or "/mnt/disks").rstrip("/") or "/"
    allow_wipe = bool(options.get("allow_wipe"))
    defaults = options.get("defaults") or {}
    links = links or {}
    plan = {"host": host, "mount_root": mount_root, "disks": [], "volumes": [], "refusals": [],
            "binds": []}

    def refuse(subject, reasons, volume=None):
        plan["refusals"].append({"disk": subject, "volume": volume, "reasons": list(reasons)})

    specs = []
    for index, entry in enumerate(entries or []):
        spec, errors = normalize_spec(entry, index, defaults)
        label = (entry.get("name") or entry.get("name_prefix") or entry.get("device")
                 or "entry %d" % index) if isinstance(entry, dict) else "entry %d" % index
        if errors:
            refuse("localpv_disks[%d]" % index, errors, volume=label)
        else:
            specs.append(spec)

    claimed = {}  # disk path -> volume names
    # 1. Explicit devices.
    for spec in [s for s in specs if s["kind"] == "device"]:
        names = volume_names(spec["name"], spec["partitions"])
        disk = devices.find_disk(disks, spec["device"])
        if disk is None:
            pdisk, part = devices.find_partition(disks, spec["device"])
            if part is not None:
                refuse(spec["device"], ["is a partition of %s; give the whole disk" % pdisk["path"]], spec["name"])
            else:
                refuse(spec["device"], ["does not exist on this host"], spec["name"])
            continue
        if disk["path"] in claimed:
            refuse(disk["path"], ["is asked for twice (volumes %s and %s)" % (
                ", ".join(claimed[disk["path"]]), ", ".join(names))], spec["name"])
            continue
        claimed[disk["path"]] = names
        _plan_disk(plan, spec, disk, names, allow_wipe, refuse)

    # 2. Selectors: disks already ours for the selector first, then eligible ones.
    for spec in [s for s in specs if s["kind"] == "match"]:
        count = spec["match"].get("count")
        taken = []  # (index, disk)
        candidates = [d for d in disks if d["kind"] in devices.SELECTABLE_KINDS and d["path"] not in claimed]
        limit = (count or 0) + len(disks)
        for disk in sorted(candidates, key=_sort_key):
            if not carries_ours(disk):
                continue
            for number in range(limit):
                base = "%s%d" % (spec["name_prefix"], number)
                if ours_for(disk, volume_names(base, spec["partitions"])):
                    taken.append((number, disk))
                    break
        used = set(number for number, _disk in taken)
        taken_paths = set(disk["path"] for _n, disk in taken)
        fresh = [d for d in sorted(candidates, key=_sort_key)
                 if d["eligible"] and d["path"] not in taken_paths and matches(d, spec["match"])]
        wanted = (count - len(taken)) if count else len(fresh)
        if count and len(taken) > count:
            refuse("match %s" % spec["name_prefix"], [
                "%d disks already carry volumes %s*, more than count %d" % (len(taken), spec["name_prefix"], count)],
                spec["name_prefix"])
            continue
        if wanted > len(fresh):
            refuse("match %s" % spec["name_prefix"], [
                "wants %d disk(s), found %d already prepared and only %d eligible that match %s" % (
                    count, len(taken), len(fresh), _describe_match(spec["match"]))], spec["name_prefix"])
            continue
        number = 0
        for disk in fresh[:max(wanted, 0)]:
            while number in used:
                number += 1
            used.add(number)
            taken.append((number, disk))
        for number, disk in sorted(taken, key=lambda item: item[0]):
            names = volume_names("%s%d" % (spec["name_prefix"], number), spec["partitions"])
            claimed[disk["path"]] = names
            _plan_disk(plan, spec, disk, names, allow_wipe, refuse)

    # 3. Bind mounts of directories.
    for spec in [s for s in specs if s["kind"] == "bind"]:
        source = spec["bind"].rstrip("/")
        volume = _volume(spec, spec["name"], mode="filesystem", state="bind", source=source, fstype=None)
        volume["needs_source"] = not (isdir or os.path.isdir)(source)
        plan["volumes"].append(volume)

    # Names, paths and sizes, across the whole host.
    names = [v["name"] for v in plan["volumes"]]
    for name in sorted(set(names)):
        reasons = volume_name_reasons(name)
        if reasons:
            refuse(_subject_of(plan, name), ["volume name %r: %s" % (name, "; ".join(reasons))], name)
    for dup in duplicate_names(names):
        refuse(", ".join(v["disk"] or v["source"] for v in plan["volumes"] if v["name"] == dup),
               ["volume name %r is used more than once on this host" % dup], dup)
    for volume in plan["volumes"]:
        volume["path"] = os.path.join(mount_root, volume["name"])
        if volume["state"] == "bind":
            src = volume["source"]
            if src == mount_root or src.startswith(mount_root + "/") or mount_root.startswith(src + "/"):
                refuse(src, ["a bind source may not be inside or above the mount root %s" % mount_root],
                       volume["name"])
        if volume["mode"] == "filesystem" and volume["state"] in ("create", "format") and volume["size"]:
            minimum = MIN_FS_SIZE[volume["fstype"]]
            if volume["size"] < minimum:
                refuse(volume["disk"], ["%s needs at least %d MiB, volume %s would have %d MiB" % (
                    volume["fstype"], minimum // MIB, volume["name"], volume["size"] // MIB)], volume["name"])

    _mark_mount_state(plan, fstab_text, mountinfo_text, links)
    for volume, reason in shared_bind_sources(plan["volumes"], devices.parse_mountinfo(mountinfo_text or "")):
        refuse(volume["source"], [reason], volume["name"])
    plan["changed"] = bool(any(d["actions"] for d in plan["disks"])
                           or any(v["needs_mount"] or v["needs_link"] or v.get("needs_source")
                                  for v in plan["volumes"]))
    return plan


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


def _describe_match(match):
    return ", ".join("%s=%s" % (k, match[k]) for k in sorted(match) if k != "count") or "anything"


def _subject_of(plan, name):
    for volume in plan["volumes"]:
        if volume["name"] == name:
            return volume["disk"] or volume["source"]
    return name


def _volume(spec, name, mode, state, disk=None, number=None, size=None, fstype=None, uuid=None,
            source=None, device=None, label=None, dev=None):
    return {
        "dev": dev,
        "udev": bool(disk and disk.get("udev")),
        "partuuid": None,
        "name": name,
        "mode": mode,
        "state": state,
        "disk": disk["path"] if disk else None,
        "stable_id": disk["stable_id"] if disk else None,
        "stable_id_source": disk["stable_id_source"] if disk else None,
        "partition": number,
        "device": device,
        "partlabel": label,
        "size": size,
        "fstype": fstype if mode == "filesystem" else None,
        "mkfs_options": spec["mkfs_options"] if mode == "filesystem" else None,
        "uuid": uuid,
        "source": source,
        "mount_options": "bind" if state == "bind" else spec["mount_options"],
        "storage_class": spec["storage_class"],
        "capacity_from": spec["capacity_from"],
        "labels": spec["labels"],
        "reclaim_policy": spec["reclaim_policy"],
        "explicit_capacity": spec.get("capacity"),
        "expect": spec["expect"],
        "needs_mount": False,
        "needs_link": False,
    }


def _plan_disk(plan, spec, disk, names, allow_wipe, refuse):
    """Decide what happens to one disk: new, ours (resume/keep), adopt or wipe."""
    mode = spec["mode"]
    subject = disk["path"]
    if disk["kind"] not in devices.SELECTABLE_KINDS:
        # dm and md partitions are separate devices (kpartx), not <dev>p1: not handled
        refuse(subject, ["is a %s device; only whole disks (and loop devices) are prepared" % disk["kind"]],
               names[0])
        return
    reasons = _expect_reasons(disk, spec["expect"])
    if reasons:
        refuse(subject, reasons, names[0])
        return
    entry = {"disk": disk["path"], "stable_id": disk["stable_id"], "size": disk["size"], "volumes": names,
             "state": None, "actions": [], "layout": []}
    if ours_for(disk, names):
        reasons = _ours_reasons(disk, names, [os.path.join(plan["mount_root"], n) for n in names])
        if reasons:
            refuse(subject, reasons, names[0])
            return
        entry["state"] = "ours"
        table = sorted(disk["partition_table"], key=lambda e: e["number"])
        nodes = dict((p["number"], p) for p in disk["partitions"])
        if any(e["number"] not in nodes for e in table):
            entry["actions"].append("register")
        for name, tentry in zip(names, table):
            part = nodes.get(tentry["number"])
            path = part["path"] if part else partition_path(disk["path"], tentry["number"])
            fstype = part["fstype"] if part else None
            state = "existing"
            if mode == "filesystem":
                if part is None or part["signatures"] is None:
                    state = "format"  # decided again, after the kernel knows the partition
                elif fstype == spec["fstype"]:
                    state = "existing"
                elif not part["signatures"]:
                    state = "format"
                else:
                    refuse(subject, ["partition %s of volume %s carries %s, expected %s" % (
                        path, name, fstype or "a signature", spec["fstype"])], name)
                    return
                if state == "format":
                    entry["actions"].append("mkfs %s" % path)
            plan["volumes"].append(_volume(spec, name, mode, state, disk=disk, number=tentry["number"],
                                           size=tentry["size"], fstype=spec["fstype"],
                                           uuid=part["uuid"] if part and state == "existing" else None,
                                           device=path, label=tentry.get("name"), dev=part["dev"] if part else None))
            plan["volumes"][-1]["partuuid"] = (tentry.get("uuid") or "").lower() or None
        plan["disks"].append(entry)
        return

    if spec["adopt"]:
        # Mounted is fine only where this volume goes (a re-run); anywhere else it is
        # in use by someone.
        hard = _hard_reasons(disk)
        hard = [r for r in hard if not r.startswith("mounted at") and not r.startswith("cannot be opened excl")]
        ours = set(os.path.join(plan["mount_root"], n) for n in names)
        hard += ["%s is mounted at %s" % (m["device"], m["mount_point"]) for m in disk["mounts"]
                 if m["mount_point"] not in ours]
        if hard:
            refuse(subject, hard, names[0])
            return
        found = _adoptable(disk, len(names), spec)
        if isinstance(found, str):
            refuse(subject, [found], names[0])
            return
        entry["state"] = "adopt"
        for name, fs in zip(names, found):
            reasons = _fs_expect_reasons(fs, spec["expect"])
            if reasons:
                refuse(subject, reasons, name)
                return
            plan["volumes"].append(_volume(spec, name, "filesystem", "adopted", disk=disk, number=fs.get("number"),
                                           size=fs["size"], fstype=fs["fstype"], uuid=fs["uuid"],
                                           device=fs["path"], label=fs.get("partlabel"), dev=fs.get("dev")))
        plan["disks"].append(entry)
        return

    if not disk["eligible"]:
        hard = _hard_reasons(disk)
        data = [m for c, m in zip(disk["reason_codes"], disk["reasons"]) if c in devices.DATA_REASONS]
        if hard:
            refuse(subject, hard + data, names[0])
            return
        if carries_ours(disk):
            data.append("it carries partitions of localpv.rollout volumes %s, not %s" % (
                ", ".join(labels_on(disk)), ", ".join(names)))
        if not (spec["wipe"] and allow_wipe):
            missing = []
            if not spec["wipe"]:
                missing.append("wipe: true on this disk")
            if not allow_wipe:
                missing.append("localpv_allow_wipe: true for the run")
            refuse(subject, data + ["it holds data; erasing it needs %s" % " and ".join(missing)], names[0])
            return
        entry["actions"].append("wipe")
        # Wiping with a mounted partition or a holder was refused above (hard reasons).
    entry["state"] = "wipe" if entry["actions"] else "new"
    entry["layout"] = layout(disk["size"], len(names))
    entry["actions"].append("partition")
    for name, part in zip(names, entry["layout"]):
        label = partition_label(name)
        part["label"] = label
        part["volume"] = name
        # chosen here, so that the plan can name /dev/disk/by-partuuid/<uuid> before it exists
        part["partuuid"] = str(uuid.uuid4())
        path = partition_path(disk["path"], part["number"])
        if mode == "filesystem":
            entry["actions"].append("mkfs %s" % path)
        plan["volumes"].append(_volume(spec, name, mode, "create", disk=disk, number=part["number"],
                                       size=part["size"], fstype=spec["fstype"], device=path, label=label))
        plan["volumes"][-1]["partuuid"] = part["partuuid"]
    plan["disks"].append(entry)


def _adoptable(disk, count, spec):
    """The filesystems an ``adopt: true`` disk brings, or why there is none to adopt."""
    if disk["fstype"] and not disk["partitions"] and not disk["partition_table"]:
        if count != 1:
            return "carries one filesystem on the whole disk, but %d partitions are asked for" % count
        return [{"path": disk["path"], "fstype": disk["fstype"], "uuid": disk["fs_uuid"], "label": disk["fs_label"],
                 "size": disk["size"], "number": None, "partlabel": None, "dev": disk["dev"]}]
    with_fs = [p for p in disk["partitions"] if p["fstype"] in FSTYPES]
    if not disk["partitions"]:
        if disk["partition_table"]:
            return "its partitions are not known to the kernel yet (run partx -a %s)" % disk["path"]
        return "carries no filesystem to adopt"
    if len(with_fs) != count or len(disk["partitions"]) != count:
        return "has %d partition(s), %d with an xfs/ext4 filesystem; %d asked for" % (
            len(disk["partitions"]), len(with_fs), count)
    return [{"path": p["path"], "fstype": p["fstype"], "uuid": p["uuid"], "label": p["label"], "size": p["size"],
             "number": p["number"], "partlabel": p["partlabel"], "dev": p["dev"]} for p in with_fs]


def _mark_mount_state(plan, fstab_text, mountinfo_text, links):
    """Which volumes need their fstab line/mount (or block symlink) made."""
    fstab = devices.parse_fstab(fstab_text or "")
    mounts = devices.parse_mountinfo(mountinfo_text or "")
    by_point = {}
    for mount in mounts:
        by_point[mount["mount_point"]] = mount  # the last one is the one visible
    for volume in plan["volumes"]:
        path = volume["path"]
        if volume["mode"] == "block":
            # A kernel name (sdb1) may belong to another disk after a reboot; with udev
            # the link goes to the partition's UUID, which never moves. Without udev the
            # kernel name is all there is, and each run puts the link right.
            if volume["udev"] and volume["partuuid"]:
                volume["link_target"] = "/dev/disk/by-partuuid/" + volume["partuuid"]
            else:
                volume["link_target"] = volume["device"]
            volume["needs_link"] = links.get(path) != volume["link_target"]
            continue
        if volume["state"] == "bind":
            volume["fstab_src"], volume["fstab_fstype"] = volume["source"], "none"
        else:
            volume["fstab_src"] = "UUID=%s" % volume["uuid"] if volume["uuid"] else None
            volume["fstab_fstype"] = volume["fstype"]
        lines = [e for e in fstab if e["path"] == path]
        fstab_ok = (len(lines) == 1 and volume["fstab_src"] is not None and lines[0]["src"] == volume["fstab_src"]
                    and lines[0]["fstype"] == volume["fstab_fstype"] and lines[0]["opts"] == volume["mount_options"])
        mount = by_point.get(path)
        if volume["state"] == "bind":
            mounted = mount is not None and _is_bind_of(mount, volume["source"], mounts)
        else:
            # by device number when known (the kernel name in mountinfo is the one at
            # mount time), else by name
            mounted = mount is not None and (
                mount["dev"] == volume["dev"] if volume.get("dev") else
                volume["device"] is not None and os.path.basename(mount["source"]) == os.path.basename(volume["device"]))
        volume["mounted"] = mounted
        volume["needs_mount"] = not (fstab_ok and mounted)


def _is_bind_of(mount, source, mounts):
    """Whether ``mount`` shows directory ``source`` (a bind mount of it)."""
    best = None
    for other in mounts:
        point = other["mount_point"]
        if other is mount:
            continue
        if source == point or source.startswith(point.rstrip("/") + "/"):
            if best is None or len(point) >= len(best["mount_point"]):
                best = other
    if best is None or best["dev"] != mount["dev"]:
        return False
    rel = os.path.relpath(source, best["mount_point"])
    expected = os.path.normpath(os.path.join(best["root"], rel)) if rel != "." else best["root"]
    return mount["root"] == expected


# --------------------------------------------------------------------------------------
# Showing the plan
# --------------------------------------------------------------------------------------

def refusal_message(plan):
    lines = ["host %s: refusing to prepare disks; nothing was written to any disk of this host." % plan["host"]]
    for refusal in plan["refusals"]:
        lines.append("%s%s: %s" % (refusal["disk"], " (volume %s)" % refusal["volume"] if refusal["volume"] else "",
                                   "; ".join(refusal["reasons"])))
    return " ".join(lines)


def render(plan, after=True):
    """A text picture of the host's disks before (``after=False``) or after the plan."""
    lines = []
    for entry in plan["disks"]:
        vols = [v for v in plan["volumes"] if v["disk"] == entry["disk"]]
        head = "%s (%s, %d bytes)" % (entry["disk"], entry["stable_id"] or "no stable id", entry["size"])
        if not after and entry["state"] in ("new", "wipe"):
            lines.append("%s: %s" % (head, "blank" if entry["state"] == "new" else "holds data (to be wiped)"))
            continue
        lines.append("%s: gpt" % head if entry["state"] != "adopt" or vols[0]["partition"] else head)
        for volume in vols:
            what = volume["fstype"] if volume["mode"] == "filesystem" else "raw block"
            if not after and volume["state"] == "format":
                what = "blank"
            lines.append("  %s %s %s -> %s%s" % (
                volume["device"], "[%s]" % volume["partlabel"] if volume["partlabel"] else "", what,
                volume["path"], "" if not volume["uuid"] else " UUID=%s" % volume["uuid"]))
    for volume in plan["volumes"]:
        if volume["state"] == "bind" and (after or not volume["needs_mount"]):
            lines.append("%s -> %s (bind)" % (volume["source"], volume["path"]))
    for volume in plan["volumes"]:
        if volume["mode"] == "filesystem" and (after or not volume["needs_mount"]):
            lines.append("fstab: %s %s %s %s" % (volume.get("fstab_src") or "UUID=<new>", volume["path"],
                                                 volume.get("fstab_fstype"), volume["mount_options"]))
        elif volume["mode"] == "block" and (after or not volume["needs_link"]):
            lines.append("link: %s -> %s" % (volume["path"], volume["link_target"]))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# Doing it
# --------------------------------------------------------------------------------------

def _run_ok(run, argv, log, what):
    rc, out, err = run(argv)
    log.append(" ".join(argv))
    if rc != 0:
        raise PrepareError("%s failed (%s): %s" % (what, " ".join(argv), (err or out).strip()), written=True)
    return out


def _probe_now(path, run):
    rc, out, err = run(["wipefs", "--json", path])
    if rc != 0:
        raise PrepareError("cannot probe %s right before writing: %s" % (path, (err or out).strip()))
    return devices.parse_wipefs_json(out)


def _wait_for_node(path, timeout=10.0):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > deadline:
            return False
        time.sleep(0.05)
    return True


def sfdisk_script(entry):
    lines = ["label: gpt"]
    for part in entry["layout"]:
        lines.append('start=%dMiB, size=%dMiB, type=%s, uuid=%s, name="%s"' % (
            part["start"] // MIB, part["size"] // MIB, LINUX_FS_TYPE, part["partuuid"], part["label"]))
    return "\n".join(lines) + "\n"


def run_sfdisk(disk, script):
    """Write a partition table without asking the kernel to re-read it (a kernel
    without parsers would drop every partition); ``partx -u`` follows. Signatures
    left inside the new partitions by an earlier life of the disk are wiped, so a
    new volume never resurrects an old filesystem."""
    tool = devices.find_tool("sfdisk")
    if tool is None:
        return 127, "", "sfdisk: command not found (install util-linux/fdisk)"
    proc = subprocess.Popen([tool, "--no-reread", "--no-tell-kernel", "--quiet", "--wipe-partitions", "always",
                             disk], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, env=dict(os.environ, LC_ALL="C", LANG="C"))
    out, err = proc.communicate(script)
    return proc.returncode, out, err


def apply_plan(plan, run=None, stop_after=None, sfdisk=None, dev_root="/dev"):
    """Carry out a plan that has no refusals. Returns the log of commands run.

    ``stop_after="partition"`` stops once the partition tables exist (to test that
    an interrupted run resumes). ``sfdisk`` runs sfdisk with a script on stdin.
    """
    if plan["refusals"]:
        raise PrepareError(refusal_message(plan))
    run = run or devices.run_command
    sfdisk = sfdisk or run_sfdisk
    log = []
    for entry in plan["disks"]:
        disk = entry["disk"]
        if "wipe" in entry["actions"] or "partition" in entry["actions"]:
            # Right before the first write: the disk must still be ours to write.
            err = devices.exclusive_open_error(disk)
            if err:
                raise PrepareError("%s: cannot be opened exclusively right before writing: %s" % (disk, err),
                                   written=bool(log))
        if "wipe" in entry["actions"]:
            name = os.path.basename(disk)
            for part in sorted(os.listdir(os.path.join("/sys/block", name))):
                if part.startswith(name) and os.path.exists(os.path.join("/sys/block", name, part, "partition")):
                    _run_ok(run, ["wipefs", "--all", "--quiet", os.path.join(dev_root, part)], log, "wipe")
            _run_ok(run, ["wipefs", "--all", "--quiet", disk], log, "wipe")
            run(["partx", "-d", disk])  # fails when no partition node is left: fine
            log.append("partx -d %s" % disk)
        lock = _lock_disk(disk) if ("partition" in entry["actions"] or "register" in entry["actions"]) else None
        try:
            _write_table(plan, entry, disk, run, sfdisk, log)
        finally:
            if lock is not None:
                os.close(lock)
    if stop_after == "partition":
        return log
    _make_filesystems(plan, run, log)
    return log


def _lock_disk(disk):
    """A BSD lock on the whole disk while its table changes: systemd-udevd leaves a
    locked disk alone, so it does not re-read the table under our feet."""
    fd = os.open(disk, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _write_table(plan, entry, disk, run, sfdisk, log):
    """Write the GPT of a new disk and/or make the kernel know its partitions."""
    if "partition" in entry["actions"]:
        if _probe_now(disk, run):
            raise PrepareError("%s: a signature appeared since the plan was made; nothing written to it" % disk,
                               written=bool(log))
        rc, out, err = sfdisk(disk, sfdisk_script(entry))
        log.append("sfdisk %s" % disk)
        if rc != 0:
            raise PrepareError("partitioning %s failed: %s" % (disk, (err or out).strip()), written=True)
    if "partition" in entry["actions"] or "register" in entry["actions"]:
        # Tell the kernel explicitly: a kernel without partition-table parsers
        # never learns of them otherwise; on one with parsers this is a no-op.
        _run_ok(run, ["partx", "-u", disk], log, "telling the kernel about the partitions of %s" % disk)
        for volume in plan["volumes"]:
            if volume["disk"] == disk and not _wait_for_node(volume["device"]):
                raise PrepareError("%s did not appear after partx -u %s" % (volume["device"], disk), written=True)


def _make_filesystems(plan, run, log):
    for volume in plan["volumes"]:
        if volume["mode"] != "filesystem" or volume["state"] not in ("create", "format"):
            continue
        sigs = _probe_now(volume["device"], run)
        types = [s["type"] for s in sigs]
        if volume["state"] == "format" and types == [volume["fstype"]]:
            volume["state"] = "existing"  # formatted by an earlier, interrupted run
        elif sigs:
            raise PrepareError("%s (volume %s) carries %s right before mkfs; not formatting it" % (
                volume["device"], volume["name"], ", ".join(types)), written=bool(log))
        else:
            err = devices.exclusive_open_error(volume["device"])
            if err:
                raise PrepareError("%s: cannot be opened exclusively right before mkfs: %s" % (volume["device"], err),
                                   written=bool(log))
            argv = ["mkfs.%s" % volume["fstype"], "-q"] + (volume["mkfs_options"] or "").split() + [volume["device"]]
            _run_ok(run, argv, log, "mkfs")
            volume["state"] = "formatted"
        rc, out, err = run(["blkid", "-p", "-o", "export", volume["device"]])
        values = devices.parse_export(out)
        if not values.get("UUID"):
            raise PrepareError("no filesystem UUID on %s after mkfs: %s" % (volume["device"], err.strip()),
                               written=True)
        volume["uuid"] = values["UUID"]
        volume["fstab_src"] = "UUID=%s" % volume["uuid"]
    for volume in plan["volumes"]:
        if volume["state"] == "bind" and not os.path.isdir(volume["source"]):
            os.makedirs(volume["source"], 0o755)
            log.append("mkdir -p %s" % volume["source"])
    return log


def capacity(volume, statvfs=None):
    """Bytes a volume offers, by the documented rule.

    A bind volume's explicit ``capacity``, when given. Filesystem volumes: the
    size of the mounted filesystem (statvfs f_blocks * f_frsize), which is what
    a pod can use; ``capacity_from: device`` takes the
    partition size instead. Block volumes: the partition size. None when the
    filesystem is not mounted yet.
    """
    if volume.get("explicit_capacity"):
        return volume["explicit_capacity"]
    if volume["mode"] == "block" or volume.get("capacity_from") == "device":
        return volume.get("size")
    if statvfs is None:
        return None
    return statvfs.f_blocks * statvfs.f_frsize
