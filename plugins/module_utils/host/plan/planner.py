# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan of one host's disks. ``make_plan()`` is pure: from the judged disks of a host
(``devices.build``), what the inventory asks for (``localpv_disks``), /etc/fstab and
the mount table, it computes for every disk what will be done, for every volume
where it will be mounted, and every reason to refuse. A plan with any refusal is
never applied: the host fails naming host, disk and reason, and no disk is touched.

A disk or partition is formatted only when the plan can prove that its bytes
are nobody's data: it is made in this run, or it is ours by GPT identity (name
and partition type) and the content sampler finds only zeros there, as a run
interrupted before mkfs leaves it. Anything else is data. Erasing data needs
``localpv_allow_wipe`` for the run AND, on the disk's entry, ``wipe:`` set to the
fingerprint of the disk as it is now (:func:`recognise.fingerprint`), which the
refusal prints; a confirmation given for another disk or an earlier state never
matches."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import uuid

from ansible_collections.localpv.rollout.plugins.module_utils.common.naming import (
    canonical_path, duplicate_names, volume_name_reasons,
)
from ansible_collections.localpv.rollout.plugins.module_utils.host import devices
from ansible_collections.localpv.rollout.plugins.module_utils.host import host_volumes as hv
from ansible_collections.localpv.rollout.plugins.module_utils.host import mounts as mount_rules
from ansible_collections.localpv.rollout.plugins.module_utils.host.host_volumes import partition_label
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan.entries import (
    layout, MIB, MIN_FS_SIZE, normalize_spec, partition_path, volume_names,
)
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan.mount_state import (
    mark_mount_state, shared_bind_sources,
)
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan.recognise import (
    adoptable_filesystems, BLOCK_VOLUME_TYPE, carries_ours, carries_stable_id, data_reasons, describe_disk,
    expect_reasons, fingerprint, fs_expect_reasons, hard_reasons, identity_misses, ids_on, labels_on, ours_for,
    ours_reasons, PART_TYPES, partition_fingerprint, recorded_identity, volumes_on,
)
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan.selectors import (
    already_ours, describe_match, reasons_not_taken, selection_order,
)


def _unproven(_path, _size, **_kwargs):
    return {"zero": False, "digest": "", "error": "not sampled"}


class _Planner:
    """The plan being made, and what deciding it needs: the run's keys and the
    content sampler (read once per device)."""

    def __init__(self, plan, options, sampler, fstab=(), readlink=None, locate=None, mounts=()):
        self.plan = plan
        self.allow_wipe = bool(options.get("allow_wipe"))
        self.allow_kernel_names = bool(options.get("allow_kernel_names"))
        self.recorded = options.get("recorded") or {}
        self.fstab = fstab     # parsed /etc/fstab of the host
        self.mounts = mounts   # parsed mountinfo of the host
        self._readlink = readlink or mount_rules.link_target
        self._links = {}
        self.locate = locate or (lambda ids: None)
        self.wanted = set()   # partition labels of every volume an entry of this host names
        self.prefixes = []    # partition label prefixes of the selectors
        self._sampler = sampler or _unproven
        self._samples = {}

    def refuse(self, subject, reasons, volume=None, fingerprint=None):
        refusal = {"disk": subject, "volume": volume, "reasons": list(reasons)}
        if fingerprint:
            refusal["fingerprint"] = fingerprint
        self.plan["refusals"].append(refusal)

    def sample(self, path, size, proof="spread"):
        """The content read of ``path``, once per run; a full read stands for a spread one."""
        have = self._samples.get(path)
        if have is None or (proof == "full" and have.get("proof") != "full"):
            have = self._sampler(path, size) if proof == "spread" else self._sampler(path, size, proof=proof)
            self._samples[path] = have
        return have

    def link_at(self, path):
        """Where the symlink at ``path`` points (None: no symlink), read once per run: the
        identity proof and the link's state are judged on the same reading."""
        if path not in self._links:
            self._links[path] = self._readlink(path)
        return self._links[path]

    def blank_words(self, path, size, proof="spread"):
        """How blank was (or was not) proven: "no signature; 256 spread regions ... read, all zero"."""
        return "no signature; %s" % hv.describe_proof(self.sample(path, size, proof), size)

    def wants(self, label):
        """Whether an entry of this host names the volume whose partition is ``label``."""
        return label in self.wanted or any(
            label.startswith(prefix) and label[len(prefix):].split("-")[0].isdigit() for prefix in self.prefixes)

    def fingerprint(self, disk):
        return fingerprint(disk, self.sample(disk["path"], disk["size"])["digest"])

    def confirmed(self, spec, disk):
        return self.allow_wipe and isinstance(spec["wipe"], str) and spec["wipe"] == self.fingerprint(disk)

    def confirmation_needed(self, spec, disk):
        """What the user must set to erase ``disk``, said with its fingerprint now."""
        fp = self.fingerprint(disk)
        keys = "wipe: '%s' on this entry%s" % (fp, "" if self.allow_wipe else " and localpv_allow_wipe: true for the run")
        if spec["wipe"] is True:
            return ("wipe: true alone no longer erases a disk; to erase this disk as it is now, set %s "
                    "(the fingerprint of its identity and content)" % keys)
        if isinstance(spec["wipe"], str) and spec["wipe"] != fp:
            return ("the confirmation wipe: '%s' does not match this disk as it is now (fingerprint %s): it was "
                    "given for another disk or an earlier state of this one; look at the disk again, then set %s"
                    % (spec["wipe"], fp, keys))
        return "erasing it needs %s (the fingerprint of its identity and content now)" % keys


def make_plan(host, disks, entries, options, fstab_text="", mountinfo_text="", readlink=None, isdir=None,
              sampler=None, dir_entries=None, locate=None, kind_at=None, read_marker=None):
    """The whole plan of one host. Returns a dict with ``refusals`` (empty = go).

    ``mountinfo_text`` is the mount table the ``disks`` were judged on (``raw["mountinfo"]``
    of :func:`devices.collect`), so that both agree;
    ``readlink(path)`` says where a symlink points, None when there is none (default:
    ``mounts.link_target``);
    ``isdir`` tells whether a bind source exists (default: ``os.path.isdir``);
    ``dir_entries(path)`` lists a directory (default: ``mounts.directory_entries``);
    ``kind_at(path)`` says what is at a path without following a symlink (default:
    ``mounts.kind_at``);
    ``sampler(path, size, proof=)`` reads a device's content (``host_volumes.sample``);
    without it no device counts as blank. ``options["recorded"]`` maps volume names
    to the ids their PVs recorded (:func:`recorded_identity`); ``locate(ids)`` names
    the devices of this host that carry those ids (where an old disk went).
    ``read_marker(dir)`` reads a bind source's retirement marker (``host_volumes.read_retired_marker``).
    """
    given_root = options.get("mount_root") or "/mnt/disks"
    mount_root = canonical_path(given_root)
    plan = {"host": host, "mount_root": mount_root or given_root, "disks": [], "volumes": [], "refusals": [],
            "binds": [], "skipped": []}
    # each parsed once, here: every rule of the plan reads the same tables
    planner = _Planner(plan, options, sampler, devices.parse_fstab(fstab_text or ""), readlink, locate,
                       devices.parse_mountinfo(mountinfo_text or ""))
    if mount_root is None:
        planner.refuse(given_root, ["mount_root %r is not an absolute path: set localpv_mount_root to one, "
                                    "such as /mnt/disks" % (given_root,)])
        mount_root = plan["mount_root"]
    specs = _specs(planner, entries, options.get("defaults") or {})
    for spec in specs:
        if spec["kind"] == "device":
            planner.wanted.update(partition_label(n) for n in volume_names(spec["name"], spec["partitions"]))
        elif spec["kind"] == "match":
            planner.prefixes.append(partition_label(spec["name_prefix"]))
    claimed = {}  # disk path -> volume names
    for spec in [s for s in specs if s["kind"] == "device"]:
        _plan_device_entry(planner, spec, disks, claimed)
    for spec in [s for s in specs if s["kind"] == "match"]:
        _plan_selector(planner, spec, disks, claimed)
    for spec in [s for s in specs if s["kind"] == "bind"]:
        source = canonical_path(spec["bind"])
        volume = _volume(spec, spec["name"], mode="filesystem", state="bind", source=source, fstype=None)
        volume["needs_source"] = not (isdir or os.path.isdir)(source)
        if volume["needs_source"] or not _refuse_retired_bind(planner, volume, read_marker or hv.read_retired_marker):
            plan["volumes"].append(volume)
    _check_names_and_sizes(planner, mount_root)
    mark_mount_state(planner, dir_entries or mount_rules.directory_entries, kind_at or mount_rules.kind_at)
    for volume, reason in shared_bind_sources(plan["volumes"], planner.mounts):
        planner.refuse(volume["source"], [reason], volume["name"])
    return plan


def _specs(planner, entries, defaults):
    specs = []
    for index, entry in enumerate(entries or []):
        spec, errors = normalize_spec(entry, index, defaults)
        label = (entry.get("name") or entry.get("name_prefix") or entry.get("device")
                 or "entry %d" % index) if isinstance(entry, dict) else "entry %d" % index
        if errors:
            planner.refuse("localpv_disks[%d]" % index, errors, volume=label)
        else:
            specs.append(spec)
    return specs


def _plan_device_entry(planner, spec, disks, claimed):
    names = volume_names(spec["name"], spec["partitions"])
    disk = devices.find_disk(disks, spec["device"])
    if disk is None:
        pdisk, part = devices.find_partition(disks, spec["device"])
        if part is not None:
            planner.refuse(spec["device"], ["is a partition of %s; give the whole disk" % pdisk["path"]], spec["name"])
        else:
            planner.refuse(spec["device"], ["does not exist on this host: check the path against "
                                            "`ls -l /dev/disk/by-id` on the host (block_devices lists its disks), "
                                            "or take the entry out of localpv_disks"], spec["name"])
        return
    if disk["path"] in claimed:
        planner.refuse(disk["path"], ["is asked for twice (volumes %s and %s)" % (
            ", ".join(claimed[disk["path"]]), ", ".join(names))], spec["name"])
        return
    claimed[disk["path"]] = names
    _plan_disk(planner, spec, disk, names)


def _plan_selector(planner, spec, disks, claimed):
    """Disks already ours for the selector first (names stay stable), then eligible blank ones.
    Every disk not taken is named with the reason, one line per disk."""
    prefix, count = spec["name_prefix"], spec["match"].get("count")
    candidates = [d for d in disks if d["kind"] in devices.SELECTABLE_KINDS and d["path"] not in claimed]
    taken = already_ours(spec, candidates, (count or 0) + len(disks))
    taken_paths = set(disk["path"] for _n, disk in taken)
    fresh, skipped = [], []
    for disk in sorted(candidates, key=selection_order):
        if disk["path"] in taken_paths:
            continue
        why = reasons_not_taken(planner, spec, disk)
        (skipped.append((disk, why)) if why else fresh.append(disk))
    wanted = (count - len(taken)) if count else len(fresh)
    if count and len(taken) > count:
        planner.refuse("match %s" % prefix, ["%d disks already carry volumes %s*, more than count %d" % (
            len(taken), prefix, count)], prefix)
        return
    if wanted > len(fresh):
        planner.refuse("match %s" % prefix, ["wants %d disk(s), found %d already prepared and only %d eligible that "
                                             "match %s" % (count, len(taken), len(fresh),
                                                           describe_match(spec["match"]))], prefix)
    skipped += [(disk, ["not needed: count %d is reached" % count]) for disk in fresh[max(wanted, 0):]]
    planner.plan["skipped"] += ["match %s: skipped %s: %s" % (prefix, d["path"], "; ".join(why)) for d, why in skipped]
    if wanted > len(fresh):
        return
    used, number = set(n for n, _disk in taken), 0
    for disk in fresh[:max(wanted, 0)]:
        while number in used:
            number += 1
        used.add(number)
        taken.append((number, disk))
    for number, disk in sorted(taken, key=lambda item: item[0]):
        names = volume_names("%s%d" % (prefix, number), spec["partitions"])
        claimed[disk["path"]] = names
        _plan_disk(planner, spec, disk, names)


def _check_names_and_sizes(planner, mount_root):
    plan = planner.plan
    names = [v["name"] for v in plan["volumes"]]
    for name in sorted(set(names)):
        reasons = volume_name_reasons(name)
        if reasons:
            planner.refuse(_subject_of(plan, name), ["volume name %r: %s" % (name, "; ".join(reasons))], name)
    for dup in duplicate_names(names):
        planner.refuse(", ".join(v["disk"] or v["source"] for v in plan["volumes"] if v["name"] == dup),
                       ["volume name %r is used more than once on this host" % dup], dup)
    for volume in plan["volumes"]:
        volume["path"] = os.path.join(mount_root, volume["name"])
        if volume["state"] == "bind":
            src = volume["source"]
            if src == mount_root or src.startswith(mount_root + "/") or mount_root.startswith(src + "/"):
                planner.refuse(src, ["a bind source may not be inside or above the mount root %s" % mount_root],
                               volume["name"])
        if volume["mode"] == "filesystem" and volume["state"] in ("create", "format") and volume["size"]:
            minimum = MIN_FS_SIZE[volume["fstype"]]
            if volume["size"] < minimum:
                planner.refuse(volume["disk"], ["%s needs at least %d MiB, volume %s would have %d MiB" % (
                    volume["fstype"], minimum // MIB, volume["name"], volume["size"] // MIB)], volume["name"])


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
        "explicit_capacity": spec.get("capacity"),
        "expect": spec["expect"],
        "needs_mount": False,
        "needs_link": False,
    }


def _plan_disk(planner, spec, disk, names):
    """Decide what happens to one disk: new, ours (resume/keep), adopt or wipe."""
    subject = disk["path"]
    if disk["kind"] not in devices.SELECTABLE_KINDS:
        # dm and md partitions are separate devices (kpartx), not <dev>p1: not handled
        planner.refuse(subject, ["is a %s device; only whole disks (and loop devices) are prepared" % disk["kind"]],
                       names[0])
        return
    reasons = expect_reasons(disk, spec["expect"])
    if reasons:
        planner.refuse(subject, reasons, names[0])
        return
    entry = {"disk": disk["path"], "stable_id": disk["stable_id"], "size": disk["size"], "volumes": names,
             "state": None, "actions": [], "layout": [], "mode": spec["mode"]}
    if not _identity_proven(planner, spec, disk, names, entry):
        return
    confirmed = not disk["eligible"] and planner.confirmed(spec, disk)
    if not confirmed and _refuse_retired(planner, spec, disk, names):
        return
    if ours_for(disk, names):
        _plan_ours(planner, spec, disk, names, entry, confirmed)
    elif spec["adopt"]:
        _plan_adopt(planner, spec, disk, names, entry)
    else:
        _plan_new(planner, spec, disk, names, entry, confirmed)


def _remount_hint(planner, record, path):
    """What gives ``path`` its old filesystem back when nothing is mounted there (a
    reboot in which the old disk came back late): the fstab line names the
    filesystem by UUID, and exactly one disk of this host carries that UUID, so
    ``mount <path>`` mounts it. The refusal itself mounts nothing: it leaves the
    host as it found it. "" when that is not so."""
    if not record["fs_uuid"] or "/etc/fstab" not in record["where"] or devices.mount_at(planner.mounts, path):
        return ""
    found = planner.locate({"fs_uuid": record["fs_uuid"]})
    if not found or len(found) != 1:
        return ""
    return ("; nothing is mounted at %s now: run `mount %s` to mount that disk's filesystem (%s, by its fstab "
            "line) there again, with its data" % (path, path, mount_rules.uuid_src(record["fs_uuid"])))


def _identity_proven(planner, spec, disk, names, entry):
    """Refuse the disk when it does not carry what a volume of this entry recorded,
    unless ``replace`` confirms this very disk (never while the PV is bound)."""
    for name in names:
        path = os.path.join(planner.plan["mount_root"], name)
        record = recorded_identity(name, spec["mode"], path, planner.fstab, planner.link_at(path), planner.recorded)
        misses = identity_misses(record, disk, spec["mode"])
        if not misses:
            continue
        fp = planner.fingerprint(disk)
        old, wiped_here = _where_the_old_disk_is(planner, name, record, disk, path, misses)
        content = ("blank" if disk["eligible"] and planner.sample(disk["path"], disk["size"])["zero"]
                   else "not blank")
        # a selector's volume has no path of its own: say which disk the selector took for it
        via = ("the entry's device %s now leads to" % spec["device"] if spec["kind"] == "device" else
               "the entry's selector (match, name_prefix %s) now takes for it" % spec["name_prefix"])
        head = ("volume %s was made on a disk with %s (recorded in %s); %s %s, %s, which does not carry %s. %s" % (
            name, ", ".join(misses), " and ".join(record["where"]) or "the inventory", via,
            describe_disk(disk), content, "them" if len(misses) > 1 else "it", old))
        own = [partition_label(n) for n in names]
        if any(planner.wants(label) and label not in own for label in labels_on(disk)):
            # another volume this host still wants: say so, and never offer to make ours again over it
            planner.refuse(disk["path"], [head + ". %s; it is not made again while an entry of this host still "
                                          "wants it: point the entry for %s back at its own disk" % (
                                              _ours_words(planner, spec, disk, names).capitalize(), name)], name)
            return False
        if record["claim"] and wiped_here:
            planner.refuse(disk["path"], [head + ". Its PV %s is bound to claim %s: the claim's data is no longer "
                                          "on this disk, and the volume of a bound PV is never made again; free the "
                                          "claim first (see decommission)" % (record["pv"], record["claim"])], name)
            return False
        if record["claim"]:
            planner.refuse(disk["path"], [head + ". Its PV %s is bound to claim %s: the volume of a bound PV is "
                                          "never made again on another disk; point device back at the old disk, "
                                          "or free the claim first (see decommission)" % (record["pv"],
                                                                                          record["claim"])], name)
            return False
        if spec["replace"] == fp:
            entry["replaces"] = "volume %s is made again on this disk, %s %s" % (
                name, "which no longer carries" if wiped_here else "replacing the disk with", ", ".join(misses))
            continue
        if spec["kind"] != "device" and wiped_here:
            planner.refuse(disk["path"], [head + ". If volume %s is to be made again, empty, on this disk, retire "
                                          "it first (decommission.yml with decommission_volumes: [%s])" % (name, name)],
                           name)
            return False
        if spec["kind"] != "device":
            # replace belongs to one disk, so a selector takes none (normalize_spec)
            planner.refuse(disk["path"], [head + ". If the old disk is to come back, attach it again; if it failed "
                                          "and volume %s is to be made again, empty, on another disk, retire it "
                                          "first (decommission.yml with decommission_volumes: [%s])" % (name, name)],
                           name)
            return False
        stale = ("the confirmation replace: '%s' does not match this disk as it is now. " % spec["replace"]
                 if spec["replace"] else "")
        if wiped_here:
            advice = ("If that was meant and volume %s is to be made again, empty, on this disk, set replace: '%s' on "
                      "this entry (the fingerprint of this disk now; fstab and the PV then record the new ids); if it "
                      "was not, find what wrote to the disk before the volume is made again" % (name, fp))
        else:
            advice = ("If the entry should follow the old disk, point device at it; if the disk was replaced on "
                      "purpose and volume %s is to be made again, empty, on this one, set replace: '%s' on this "
                      "entry (the fingerprint of this disk now)" % (name, fp))
        planner.refuse(disk["path"], [head + ". " + stale + advice], name, fingerprint=fp)
        return False
    return True


def _where_the_old_disk_is(planner, name, record, disk, path, misses):
    """The refusal's words on where the ids ``disk`` misses are now, and whether ``disk``
    is itself the volume's disk, wiped or re-partitioned since: ``(words, wiped_here)``.
    Only the ids ``disk`` lacks are looked for, so it is never named as where they went."""
    fs_uuids, partuuids = ids_on(disk)
    kept = []
    if carries_stable_id(disk, record["stable_id"]):
        kept.append("stable id %s" % record["stable_id"])
    if record["partuuid"] and record["partuuid"] in partuuids:
        kept.append("partition UUID %s" % record["partuuid"])
    found = planner.locate(dict(
        fs_uuid=record["fs_uuid"] if record["fs_uuid"] not in fs_uuids else None,
        partuuid=record["partuuid"] if record["partuuid"] not in partuuids else None,
        stable_id=None if kept else record["stable_id"]))
    if found:
        return "The disk with those ids is still on this host: %s%s" % (
            ", ".join(found), _remount_hint(planner, record, path)), False
    if kept:
        # the partition kept: only its filesystem went
        how = ("its filesystem was wiped or made again since" if record["partuuid"] in partuuids
               else "it was wiped or re-partitioned since")
        return ("%s is the very disk volume %s was made on (it carries the %s recorded for it), and the recorded "
                "%s %s gone from it: %s" % (disk["path"], name, " and ".join(kept), ", ".join(misses),
                                            "are" if len(misses) > 1 else "is", how)), True
    if found is not None:
        return "No disk of this host carries those ids now (the old disk is gone, or not readable here)", False
    return "Whether the old disk is still on this host was not looked for", False


def _refuse_retired(planner, spec, disk, names):
    """Refuse ``disk`` when one of its partitions is a volume retired by
    decommission (its data kept, its GPT name ``localpv-retired-...``): it is
    never mounted or published again without a confirmation. True when refused."""
    retired = [(e, hv.retired_day(e.get("name"))) for e in sorted(disk["partition_table"], key=lambda e: e["number"])]
    retired = [(e, day) for e, day in retired if day]
    if not retired:
        return False
    reasons = []
    for tentry, day in retired:
        whose = [n for n in names if hv.retired_day(tentry.get("name"), n)]
        reasons.append("%s was retired by decommission on %s (partition %d of %s is named %s); it is not mounted or "
                       "published again" % ("volume %s" % whose[0] if whose else "a volume of another entry", day,
                                            tentry["number"], disk["path"], tentry.get("name")))
    live = [n for n in names if partition_label(n) in [e.get("name") for e in disk["partition_table"]]]
    if live:
        # the whole-disk confirmation would erase them too: never offered (as for a damaged sibling)
        reasons.append("volume(s) %s on the same disk are not retired, so the whole disk is never erased: retire "
                       "them too with decommission before making the disk new, or take the entry out of "
                       "localpv_disks" % ", ".join(live))
        planner.refuse(disk["path"], reasons, names[0])
        return True
    fp = planner.fingerprint(disk)
    reasons.append("two ways on: take the entry out of localpv_disks, or make %s new and empty with wipe: '%s' on "
                   "this entry%s (it erases the whole disk %s, every partition on it)" % (
                       ", ".join(names), fp, "" if planner.allow_wipe else " and localpv_allow_wipe: true for the run",
                       disk["path"]))
    planner.refuse(disk["path"], reasons, names[0], fingerprint=fp)
    return True


def _refuse_retired_bind(planner, volume, read_marker):
    """Refuse a bind volume whose source carries decommission's retirement marker."""
    marker = read_marker(volume["source"])
    if not marker:
        return False
    planner.refuse(volume["source"], [
        "bind volume %s was retired by decommission on %s (marker %s/%s); it is not mounted or published again"
        % (volume["name"], marker["day"], volume["source"], hv.RETIRED_MARKER),
        "two ways on: take the entry out of localpv_disks, or empty the directory (its files are the old tenant's) "
        "and remove the marker"], volume["name"])
    return True


def _ours_partition_state(planner, spec, name, tentry, part):
    """``existing`` or ``format`` for one of our partitions, or the reason that
    using it as asked would destroy data."""
    ptype = (tentry.get("type") or "").upper()
    # a partition the kernel does not know yet: its filesystem as read in place (devices.probe_table_entry)
    fstype = part["fstype"] if part else tentry.get("fstype")
    if spec["mode"] == "filesystem":
        if ptype == BLOCK_VOLUME_TYPE:
            return None, ("volume %s was made mode block (a raw device a pod writes to); making it a filesystem "
                          "destroys what is on it" % name)
        if fstype == spec["fstype"]:
            return "existing", None
        if part is None and fstype:
            return None, ("volume %s carries %s, the entry asks for %s: changing a volume's filesystem destroys its "
                          "data" % (name, fstype, spec["fstype"]))
        if part is None or part["signatures"] is None:
            return "format", None  # decided again under the lock, once the kernel knows the partition
        if part["signatures"]:
            return None, ("volume %s carries %s, the entry asks for %s: changing a volume's filesystem destroys its "
                          "data" % (name, fstype or "a signature", spec["fstype"]))
        if planner.sample(part["path"], part["size"])["zero"]:
            return "format", None  # made by a run that stopped before mkfs
        return None, ("partition %s of volume %s holds unrecognised data (no signature, but not zero where sampled; "
                      "a block volume's data looks like this)" % (part["path"], name))
    if fstype:
        return None, ("volume %s is a filesystem volume (%s); making it mode block hands its bytes to a pod as a raw "
                      "device" % (name, fstype))
    return "existing", None


def _erasable_alone(spec, tentry, part):
    """Whether one partition of ours may be erased and formatted again without its disk:
    a filesystem volume's partition the kernel knows, that nothing uses."""
    return (spec["mode"] == "filesystem" and (tentry.get("type") or "").upper() != BLOCK_VOLUME_TYPE
            and part is not None and part["signatures"] is not None and not part["mounts"]
            and not part["holders"] and not part.get("openers") and not part["swap"])


def _plan_ours(planner, spec, disk, names, entry, confirmed=False):
    reasons = ours_reasons(disk, names, [os.path.join(planner.plan["mount_root"], n) for n in names])
    if reasons:
        if confirmed:   # the whole disk is confirmed: its own checks refuse what is in use
            _plan_new(planner, spec, disk, names, entry, confirmed)
        else:
            planner.refuse(disk["path"], reasons, names[0])
        return
    entry["state"] = "ours"
    table = sorted(disk["partition_table"], key=lambda e: e["number"])
    nodes = dict((p["number"], p) for p in disk["partitions"])
    if any(e["number"] not in nodes for e in table):
        entry["actions"].append("register")
    volumes, problems, damaged, healthy = [], [], [], []
    for name, tentry in zip(names, table):
        part = nodes.get(tentry["number"])
        path = part["path"] if part else partition_path(disk["path"], tentry["number"])
        state, problem = _ours_partition_state(planner, spec, name, tentry, part)
        if problem:
            problems.append(problem)
            damaged.append((name, tentry, part, path))
            continue
        if state == "existing":
            healthy.append(name)
        if state == "format":
            entry["actions"].append("mkfs %s" % path)
            if part and part.get("openers"):
                problems.append("partition %s is in use: %s" % (path, devices.describe_openers(part["openers"])))
        uuid_now = (part["uuid"] if part else tentry.get("fs_uuid")) if state == "existing" else None
        volume = _volume(spec, name, spec["mode"], state, disk=disk, number=tentry["number"], size=tentry["size"],
                         fstype=spec["fstype"], uuid=uuid_now, device=path, label=tentry.get("name"),
                         dev=part["dev"] if part else None)
        volume["partuuid"] = (tentry.get("uuid") or "").lower() or None
        volumes.append(volume)
    if problems and healthy:
        # A sibling volume of ours on this disk is intact and wanted: only the damaged
        # partitions may be erased, never the whole disk.
        volumes += _erase_alone(planner, spec, disk, entry, damaged, problems, healthy)
        if entry.get("refused"):
            return
    elif problems:
        if confirmed:
            # every volume of the disk is to go: the whole-disk confirmation applies
            entry.update(state=None, actions=[])
            _plan_new(planner, spec, disk, names, entry, confirmed)
            return
        planner.refuse(disk["path"], problems + [planner.confirmation_needed(spec, disk)], names[0],
                       fingerprint=planner.fingerprint(disk))
        return
    planner.plan["volumes"] += sorted(volumes, key=lambda v: v["partition"])
    planner.plan["disks"].append(entry)


def _erase_alone(planner, spec, disk, entry, damaged, problems, healthy):
    """The damaged partitions of a disk whose other volumes are intact: erased and made
    again when ``wipe:`` confirms exactly them (their fingerprint), else refused with
    that confirmation. Returns their volumes; sets ``entry["refused"]`` on refusal."""
    subject = disk["path"]
    kept = "volume(s) %s on the same disk are intact and kept" % ", ".join(healthy)
    if not all(_erasable_alone(spec, tentry, part) for _n, tentry, part, _p in damaged):
        entry["refused"] = True
        planner.refuse(subject, problems + ["%s, so the whole disk is never erased; a partition is erased alone only "
                                            "when it is a filesystem volume the kernel knows and nothing uses" % kept],
                       damaged[0][0])
        return []
    contents = dict((part["number"], planner.sample(path, part["size"])["digest"]) for _n, _t, part, path in damaged)
    pfp = partition_fingerprint(disk, contents.keys(), contents)
    if not (planner.allow_wipe and spec["wipe"] == pfp):
        run_key = "" if planner.allow_wipe else " and localpv_allow_wipe: true for the run"
        keys = "wipe: '%s' on this entry%s" % (pfp, run_key)
        entry["refused"] = True
        planner.refuse(subject, problems + ["erasing only %s (volume(s) %s) and making %s again needs %s (the "
                                            "fingerprint of those partitions now); %s" % (
                                                ", ".join(p for _n, _t, _part, p in damaged),
                                                ", ".join(n for n, _t, _part, _p in damaged),
                                                "it" if len(damaged) == 1 else "them", keys, kept)],
                       damaged[0][0], fingerprint=pfp)
        return []
    entry["partition_fingerprint"] = pfp
    entry["erase"] = [p for _n, _t, _part, p in damaged]
    entry["actions"].append("wipe %s" % ", ".join(entry["erase"]))
    out = []
    for name, tentry, part, path in damaged:
        entry["actions"].append("mkfs %s" % path)
        volume = _volume(spec, name, spec["mode"], "format", disk=disk, number=tentry["number"], size=tentry["size"],
                         fstype=spec["fstype"], device=path, label=tentry.get("name"), dev=part["dev"])
        volume["partuuid"] = (tentry.get("uuid") or "").lower() or None
        volume["erase"] = True
        out.append(volume)
    return out


def _plan_adopt(planner, spec, disk, names, entry):
    # Mounted is fine only where this volume goes (a re-run); anywhere else it is in use.
    ours = set(os.path.join(planner.plan["mount_root"], n) for n in names)
    hard = hard_reasons(disk, skip=("mounted", "exclusive"))
    hard += ["%s is mounted at %s" % (m["device"], m["mount_point"]) for m in disk["mounts"]
             if m["mount_point"] not in ours]
    if hard:
        planner.refuse(disk["path"], hard, names[0])
        return
    found = adoptable_filesystems(disk, len(names), spec)
    if isinstance(found, str):
        planner.refuse(disk["path"], [found], names[0])
        return
    entry["state"] = "adopt"
    volumes = []
    for name, fs in zip(names, found):
        reasons = fs_expect_reasons(fs, spec["expect"])
        if reasons:
            planner.refuse(disk["path"], reasons, name)
            return
        volumes.append(_volume(spec, name, "filesystem", "adopted", disk=disk, number=fs.get("number"),
                               size=fs["size"], fstype=fs["fstype"], uuid=fs["uuid"], device=fs["path"],
                               label=fs.get("partlabel"), dev=fs.get("dev")))
    planner.plan["volumes"] += volumes
    planner.plan["disks"].append(entry)


def _plan_new(planner, spec, disk, names, entry, confirmed):
    """A disk that is blank (no signature, no use, zero where sampled) or is to be wiped."""
    data = data_reasons(disk)
    if disk["eligible"]:
        proof = spec["blank_proof"]
        if planner.sample(disk["path"], disk["size"], proof)["zero"]:
            entry["blank_proof"] = planner.blank_words(disk["path"], disk["size"], proof)
        else:
            data.append("holds unrecognised data (%s)" % planner.blank_words(disk["path"], disk["size"], proof))
    if data or not disk["eligible"]:
        ours = _ours_words(planner, spec, disk, names)
        if ours and not confirmed and not ours_for(disk, names):
            own = [partition_label(n) for n in names]
            others = [label for label in labels_on(disk) if planner.wants(label) and label not in own]
            if others:
                # the disk is another wanted volume of ours: naming it is the answer, a wipe offer never is
                planner.refuse(disk["path"], [ours, "it is not erased while an entry of this host still wants it; "
                                              "point the entry for %s at its own disk" % names[0]], names[0])
                return
        if ours:
            data.insert(0, ours)
        hard = hard_reasons(disk)
        if hard:
            planner.refuse(disk["path"], hard + data, names[0])
            return
        if not (confirmed or (disk["eligible"] and planner.confirmed(spec, disk))):
            planner.refuse(disk["path"], data + [planner.confirmation_needed(spec, disk)], names[0],
                           fingerprint=planner.fingerprint(disk))
            return
        entry["actions"].append("wipe")
        entry["fingerprint"] = planner.fingerprint(disk)
    entry["state"] = "wipe" if entry["actions"] else "new"
    entry["layout"] = layout(disk["size"], len(names))
    entry["actions"].append("partition")
    for name, part in zip(names, entry["layout"]):
        part["label"] = partition_label(name)
        part["volume"] = name
        part["type"] = PART_TYPES[spec["mode"]]
        # chosen here, so that the plan can name /dev/disk/by-partuuid/<uuid> before it exists
        part["partuuid"] = str(uuid.uuid4())
        path = partition_path(disk["path"], part["number"])
        if spec["mode"] == "filesystem":
            entry["actions"].append("mkfs %s" % path)
        volume = _volume(spec, name, spec["mode"], "create", disk=disk, number=part["number"], size=part["size"],
                         fstype=spec["fstype"], device=path, label=part["label"])
        volume["partuuid"] = part["partuuid"]
        planner.plan["volumes"].append(volume)
    planner.plan["disks"].append(entry)


def _ours_words(planner, spec, disk, names):
    """What a disk that carries volumes of ours is, said before any offer to erase it; "" when it carries none.
    A change of partition count or of names is named as such."""
    if not carries_ours(disk):
        return ""
    have = volumes_on(disk)
    wanted_elsewhere = [v for v, label in zip(have, labels_on(disk)) if planner.wants(label)
                        and label not in [partition_label(n) for n in names]]
    if ours_for(disk, names):
        return "it carries volume(s) %s of this entry" % ", ".join(have)
    if wanted_elsewhere:
        return "this is volume %s of this host; the entry for %s now points at it" % (
            ", ".join(wanted_elsewhere), ", ".join(names))
    base = spec.get("name") or spec.get("name_prefix") or names[0]
    if len(have) != len(names) and all(v == base or v.startswith(base + "-") for v in have):
        return ("it carries volume(s) %s (%d partition(s)); the entry asks for %d partition(s) (%s): changing a "
                "disk's partition count destroys every volume on it" % (", ".join(have), len(have), len(names),
                                                                        ", ".join(names)))
    return "it carries localpv.rollout volume(s) %s, which no entry of this host names (the entry wants %s)" % (
        ", ".join(have), ", ".join(names))
