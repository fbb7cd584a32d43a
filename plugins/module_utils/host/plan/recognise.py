# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What is on a disk: our GPT layout (partition names and types), the fingerprint of
what erasing it would destroy, the reasons a disk may not be used as it is, what
``expect:`` checks, and the ids that prove a volume's disk (what a volume lives on is
recorded where the next run looks: its fstab line and link on the host, its PV's
annotations on the cluster, handed to the host as ``recorded``)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os

from ansible_collections.localpv.rollout.plugins.module_utils.common import sizes
from ansible_collections.localpv.rollout.plugins.module_utils.host import devices
from ansible_collections.localpv.rollout.plugins.module_utils.host import host_volumes as hv
from ansible_collections.localpv.rollout.plugins.module_utils.host import mounts as mount_rules
from ansible_collections.localpv.rollout.plugins.module_utils.host.host_volumes import partition_label
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan.entries import FSTYPES


# GPT partition types: a filesystem volume is "Linux filesystem data"; a raw block
# volume gets a type of its own, so that a change of mode is seen on the disk.
LINUX_FS_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
BLOCK_VOLUME_TYPE = "8DE9B02D-19EC-4838-891C-56E433AD9169"
PART_TYPES = {"filesystem": LINUX_FS_TYPE, "block": BLOCK_VOLUME_TYPE}
FINGERPRINT_LENGTH = 16


def labels_on(disk):
    """GPT partition names on the disk, in partition order."""
    return [entry.get("name") or "" for entry in sorted(disk["partition_table"], key=lambda e: e["number"])]


def stale_partitions(disk):
    """Kernel partitions of ``disk`` that its partition table does not list as they
    are (a table rewritten or a disk re-attached without the kernel told): these
    are stale entries, not data. Returns their names."""
    table = set((e["number"], e.get("start", 0) * devices.SECTOR, e.get("size")) for e in disk["partition_table"])
    return [p["name"] for p in disk["partitions"] if (p["number"], p["start"], p["size"]) not in table]


def ours_for(disk, names):
    """Whether the disk carries exactly our partitions for the volumes ``names``."""
    table = disk["partition_table"]
    return bool(table) and disk["pttype"] == "gpt" and labels_on(disk) == [partition_label(n) for n in names]


def carries_ours(disk):
    """Whether any partition of the disk has one of our partition names."""
    return any(label.startswith(hv.PARTITION_LABEL_PREFIX) for label in labels_on(disk))


def _sig_keys(sigs):
    return sorted("%s|%s|%s|%s" % (s.get("type"), (s.get("uuid") or "").lower(), s.get("label") or "",
                                   s.get("offset")) for s in sigs or [])


def fingerprint(disk, content=""):
    """A short digest of what erasing ``disk`` would destroy: its stable id and
    size, every signature on it and on its partitions, its partition table
    (numbers, places, names, types, UUIDs) and ``content``, a digest of the
    sampled bytes (:func:`host_volumes.sample_digest`). Any change of the disk
    (swapped, reformatted, repartitioned, written to) gives another fingerprint."""
    parts = dict((p["number"], p) for p in disk["partitions"])
    table = sorted(disk["partition_table"], key=lambda e: e["number"])
    identity = {
        "id": disk["stable_id"],
        "size": disk["size"],
        "signatures": _sig_keys(disk["signatures"]),
        "table": [[e["number"], e.get("start"), e.get("sectors"), e.get("name") or "",
                   (e.get("type") or "").upper(), (e.get("uuid") or "").lower()] for e in table],
        "partitions": [[n, _sig_keys(parts[n]["signatures"])] for n in sorted(parts)],
        "content": content or "",
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()
    return digest[:FINGERPRINT_LENGTH]


def partition_fingerprint(disk, numbers, contents):
    """Like :func:`fingerprint`, for erasing only the partitions ``numbers`` of
    ``disk``: the disk's stable id and size, and of each partition its place, name,
    UUID, signatures and ``contents[number]`` (a digest of its sampled bytes)."""
    parts = dict((p["number"], p) for p in disk["partitions"])
    table = dict((e["number"], e) for e in disk["partition_table"])
    identity = {
        "id": disk["stable_id"], "size": disk["size"],
        "partitions": [[n, table[n].get("start"), table[n].get("sectors"), table[n].get("name") or "",
                        (table[n].get("uuid") or "").lower(), _sig_keys(parts[n]["signatures"]),
                        contents.get(n, "")] for n in sorted(numbers)],
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()
    return digest[:FINGERPRINT_LENGTH]


def hard_reasons(disk, skip=()):
    """Reasons no wipe clears (mounted, held, opened, system...), by code."""
    return [msg for code, msg in zip(disk["reason_codes"], disk["reasons"])
            if code not in devices.DATA_REASONS and code not in skip]


def data_reasons(disk):
    return [msg for code, msg in zip(disk["reason_codes"], disk["reasons"]) if code in devices.DATA_REASONS]


def ours_reasons(disk, names, mount_paths):
    """Why a disk that carries our layout may not be used as it is (mounted elsewhere...).
    Our own mounts and a pod that has a block volume open are its normal life."""
    reasons = hard_reasons(disk, skip=("mounted", "exclusive", "opened"))
    wanted = set(mount_paths)
    for mount in disk["mounts"]:
        if mount["mount_point"] not in wanted:
            reasons.append("%s is mounted at %s, not under the mount root" % (mount["device"], mount["mount_point"]))
    for part in disk["partitions"]:
        if part["holders"]:
            reasons.append("partition %s is held by %s" % (part["name"], ", ".join(part["holders"])))
    return reasons


def _vendor_size(size):
    """A disk size as a vendor prints it (``1.92TB``), and in binary units, for messages."""
    decimal = next(((size / 10 ** p, u) for p, u in ((15, "PB"), (12, "TB"), (9, "GB"), (6, "MB"))
                    if size >= 10 ** p), (size, "B"))
    binary = next(((size / 2 ** p, u) for p, u in ((50, "Pi"), (40, "Ti"), (30, "Gi"), (20, "Mi"))
                   if size >= 2 ** p), (size, ""))
    return "%.3g%s, %.3g%s" % (decimal + binary)


def expect_reasons(disk, expect):
    """``expect:`` compared: the size exactly in bytes or within sizes.EXPECT_TOLERANCE with a
    unit; model, serial and WWN exactly as the disk says them."""
    reasons = []
    if expect.get("size") is not None and not sizes.size_matches(expect["size"], disk["size"]):
        reasons.append("expected size %s, the disk has %d bytes (%s)"
                       % (sizes.describe_tolerance(expect["size"]), disk["size"], _vendor_size(disk["size"])))
    for key, have in (("model", disk.get("model")), ("serial", disk.get("serial"))):
        if expect.get(key) is not None and (have or "").strip() != str(expect[key]).strip():
            reasons.append("expected %s %r, the disk says %r" % (key, expect[key], have))
    if expect.get("wwn") is not None:
        wanted = _wwn(expect["wwn"])
        have = set(_wwn(c) for c in [disk.get("wwid"), disk.get("stable_id")] + list(disk["by_id"]) if c)
        if wanted not in have:
            reasons.append("expected WWN %s, the disk has %s" % (expect["wwn"], disk.get("wwid") or "none"))
    return reasons


def _wwn(text):
    """A WWN as one spelling: ``wwn-0x5000c5...``, ``naa.5000c5...``, ``0x5000c5...`` -> ``5000c5...``."""
    text = str(text).strip().lower()
    for prefix in ("wwn-", "naa.", "0x"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text


def fs_expect_reasons(fs, expect):
    reasons = []
    if expect.get("fs_uuid") and (fs.get("uuid") or "").lower() != str(expect["fs_uuid"]).lower():
        reasons.append("expected filesystem UUID %s, found %s" % (expect["fs_uuid"], fs.get("uuid")))
    if expect.get("fs_label") and fs.get("label") != expect["fs_label"]:
        reasons.append("expected filesystem label %r, found %r" % (expect["fs_label"], fs.get("label")))
    return reasons


def recorded_identity(name, mode, path, fstab, link, recorded):
    """The ids recorded for volume ``name`` at ``path``: ``{fs_uuid, partuuid,
    stable_id, where, pv, claim}`` (None where nothing is recorded). The host's
    record (fstab line, ``link``: where the symlink at ``path`` points) is the
    newest evidence and wins."""
    rec = recorded.get(name) if isinstance(recorded, dict) else None
    rec = rec if isinstance(rec, dict) else {}
    out = {"fs_uuid": (rec.get("fs_uuid") or "").lower() or None,
           "partuuid": (rec.get("partuuid") or "").lower() or None,
           "stable_id": rec.get("stable_id") or None, "pv": rec.get("pv"), "claim": rec.get("claim"),
           "where": []}
    if rec.get("pv") and (out["fs_uuid"] or out["partuuid"] or out["stable_id"]):
        out["where"].append("PV %s" % rec["pv"])
    if mode == "filesystem":
        uuids = [mount_rules.uuid_of_src(e["src"]) for e in fstab if e["path"] == path]
        uuids = [u for u in uuids if u is not None]
        if uuids:
            out["fs_uuid"] = uuids[0].lower()
            out["where"].insert(0, "/etc/fstab")
    else:
        target = link or ""
        if target.startswith("/dev/disk/by-partuuid/"):
            out["partuuid"] = os.path.basename(target).lower()
            out["where"].insert(0, "the link %s" % path)
    return out


def ids_on(disk):
    """The on-disk ids a disk carries: ``(fs_uuids, partuuids)``, lower case. A
    partition the kernel does not know yet (a disk attached again without a
    partition scan) counts with the filesystem read at its place on the disk."""
    fs = set([(disk.get("fs_uuid") or "").lower()] + [(p.get("uuid") or "").lower() for p in disk["partitions"]]
             + [(e.get("fs_uuid") or "").lower() for e in disk["partition_table"]])
    parts = set((e.get("uuid") or "").lower() for e in disk["partition_table"])
    return fs - set([""]), parts - set([""])


def carries_stable_id(disk, stable_id):
    """Whether ``disk`` is the disk of ``stable_id``, under any of its names (a disk's
    stable id is spelled differently with and without udev)."""
    return bool(stable_id) and stable_id in [disk["stable_id"]] + list(disk["by_id"])


def identity_misses(record, disk, mode):
    """Which recorded ids the disk does not carry; [] = proven (or nothing recorded).
    The partition and filesystem UUIDs are the proof; the stable id counts only
    when neither was recorded (a disk may be named differently with and without udev)."""
    fs_uuids, partuuids = ids_on(disk)
    misses = []
    if record["partuuid"] and record["partuuid"] not in partuuids:
        misses.append("partition UUID %s" % record["partuuid"])
    if mode == "filesystem" and record["fs_uuid"] and record["fs_uuid"] not in fs_uuids:
        partitioned_unknown = disk["partition_table"] and not disk["partitions"]
        if not (partitioned_unknown and record["partuuid"] and not misses):
            misses.append("filesystem UUID %s" % record["fs_uuid"])
    if not (record["partuuid"] or record["fs_uuid"]) and record["stable_id"] and \
            not carries_stable_id(disk, record["stable_id"]):
        misses.append("disk %s" % record["stable_id"])
    return misses


def describe_disk(disk):
    """A disk as refusals name it: ``/dev/sdb (wwn-0x5000c500a1b2c3d4, 1.7 TiB)``."""
    return "%s (%s, %s)" % (disk["path"], disk["stable_id"] or "no stable id", hv.human_bytes(disk["size"]))


def volumes_on(disk):
    """Our volume names on a disk, from its partition names (hashed long names stay labels)."""
    return [label[len(hv.PARTITION_LABEL_PREFIX):] if label.startswith(hv.PARTITION_LABEL_PREFIX) else label
            for label in labels_on(disk)]


def adoptable_filesystems(disk, count, spec):
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
