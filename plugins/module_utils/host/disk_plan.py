# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan of one host's disks, and carrying it out.

``make_plan()`` is pure: from the judged disks of a host (``devices.build``), what
the inventory asks for (``localpv_disks``), /etc/fstab and the mount table, it
computes for every disk what will be done, for every volume where it will be
mounted, and every reason to refuse. A plan with any refusal is never applied:
the host fails naming host, disk and reason, and no disk is touched.

A disk or partition is formatted only when the plan can prove that its bytes
are nobody's data: it is made in this run, or it is ours by GPT identity (name
and partition type) and the content sampler finds only zeros there, as a run
interrupted before mkfs leaves it. Anything else is data. Erasing data needs
``localpv_allow_wipe`` for the run AND, on the disk's entry, ``wipe:`` set to the
fingerprint of the disk as it is now (:func:`fingerprint`), which the refusal
prints; a confirmation given for another disk or an earlier state never matches.

``apply_plan()`` does the writes. Each disk is locked (a BSD flock on the whole
disk, which udev and util-linux honour) from a last re-check through
partitioning and mkfs, and every destructive command is preceded by a re-probe.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import fnmatch
import hashlib
import json
import os
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.localpv.rollout.plugins.module_utils.common import sizes
from ansible_collections.localpv.rollout.plugins.module_utils.common.naming import canonical_path, duplicate_names, \
    volume_name_reasons
from ansible_collections.localpv.rollout.plugins.module_utils.host import devices
from ansible_collections.localpv.rollout.plugins.module_utils.host import host_lock
from ansible_collections.localpv.rollout.plugins.module_utils.host import host_volumes as hv
from ansible_collections.localpv.rollout.plugins.module_utils.host import mounts as mount_rules
from ansible_collections.localpv.rollout.plugins.module_utils.host import openers
from ansible_collections.localpv.rollout.plugins.module_utils.host.host_volumes import partition_label

MIB = 1024 * 1024
# The filesystems disk_prepare makes (its argument spec takes them from here).
FSTYPES = ("xfs", "ext4")
# Below these a mkfs fails or makes a toy: refuse in the plan, not halfway through.
MIN_FS_SIZE = {"xfs": 300 * MIB, "ext4": 16 * MIB}
MODES = ("filesystem", "block")
CAPACITY_FROM = ("filesystem", "device")
DEFAULT_MOUNT_OPTIONS = "defaults,nofail"
# The schema of one localpv_disks entry, in argument-spec form and in order (messages
# list the keys in it): disk_prepare's argument spec and the keys normalize_spec takes
# both come from here, and a unit test holds disk_prepare's DOCUMENTATION to it. No
# entry key has a default here: normalize_spec fills them (ENTRY_DEFAULTS), once.
MATCH_OPTIONS = (("rotational", {"type": "bool"}), ("min_size", {"type": "raw"}), ("max_size", {"type": "raw"}),
                 ("model", {"type": "str"}), ("count", {"type": "int"}))
EXPECT_OPTIONS = (("size", {"type": "raw"}), ("model", {"type": "str"}), ("serial", {"type": "str"}),
                  ("wwn", {"type": "str"}), ("fs_uuid", {"type": "str"}), ("fs_label", {"type": "str"}))
ENTRY_OPTIONS = (
    ("name", {"type": "str"}),
    ("device", {"type": "str"}),
    ("match", {"type": "dict", "options": MATCH_OPTIONS}),
    ("name_prefix", {"type": "str"}),
    ("bind", {"type": "str"}),
    ("mode", {"type": "str", "choices": MODES}),
    ("fstype", {"type": "str", "choices": FSTYPES}),
    ("mkfs_options", {"type": "str"}),
    ("mount_options", {"type": "str"}),
    ("partitions", {"type": "int"}),
    ("storage_class", {"type": "str"}),
    ("wipe", {"type": "raw"}),
    ("adopt", {"type": "bool"}),
    ("expect", {"type": "dict", "options": EXPECT_OPTIONS}),
    ("capacity_from", {"type": "str", "choices": CAPACITY_FROM}),
    ("labels", {"type": "dict"}),
    ("capacity", {"type": "raw"}),
    ("replace", {"type": "str"}),
    ("blank_proof", {"type": "str", "choices": hv.PROOFS}),
)
SPEC_KEYS = tuple(key for key, _spec in ENTRY_OPTIONS)
MATCH_KEYS = tuple(key for key, _spec in MATCH_OPTIONS)
EXPECT_KEYS = tuple(key for key, _spec in EXPECT_OPTIONS)
# What an entry key left out means.
ENTRY_DEFAULTS = {"mode": "filesystem", "partitions": 1, "wipe": False, "adopt": False}
# The host-wide defaults of the entries' keys (disk_prepare's options of the same names).
HOST_DEFAULTS = {"fstype": "xfs", "mkfs_options": {}, "mount_options": DEFAULT_MOUNT_OPTIONS,
                 "storage_class": None, "capacity_from": "filesystem", "blank_proof": "spread"}
# GPT partition types: a filesystem volume is "Linux filesystem data"; a raw block
# volume gets a type of its own, so that a change of mode is seen on the disk.
LINUX_FS_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
BLOCK_VOLUME_TYPE = "8DE9B02D-19EC-4838-891C-56E433AD9169"
PART_TYPES = {"filesystem": LINUX_FS_TYPE, "block": BLOCK_VOLUME_TYPE}
FINGERPRINT_LENGTH = 16


class PrepareError(Exception):
    """Applying the plan failed; ``written`` says whether any byte was written."""

    def __init__(self, message, written=False, commands=None):
        super(PrepareError, self).__init__(message)
        self.written = written
        self.commands = commands or []


# --------------------------------------------------------------------------------------
# Inventory entries
# --------------------------------------------------------------------------------------

def entry_argument_spec(options=ENTRY_OPTIONS):
    """``options`` (:data:`ENTRY_OPTIONS` by default) as an AnsibleModule argument spec."""
    spec = {}
    for key, schema in options:
        item = dict(schema)
        if "choices" in item:
            item["choices"] = list(item["choices"])
        if "options" in item:
            item["options"] = entry_argument_spec(item["options"])
        spec[key] = item
    return spec


def _given(entry):
    """The keys an entry gives: None is how an argument spec says a key was left out."""
    given = dict((key, value) for key, value in entry.items() if value is not None)
    for key in ("match", "expect"):
        if isinstance(given.get(key), dict):
            given[key] = dict((k, v) for k, v in given[key].items() if v is not None)
    return given


def _host_default(defaults, key):
    return defaults.get(key) or HOST_DEFAULTS[key]


def _spec_values(entry, index, defaults, kinds):
    keys = ("name", "device", "bind", "name_prefix", "mkfs_options")
    spec = dict((key, entry.get(key)) for key in keys)
    spec.update({
        "index": index,
        "kind": kinds[0] if len(kinds) == 1 else None,
        "mode": entry.get("mode") or ENTRY_DEFAULTS["mode"],
        "fstype": entry.get("fstype") or _host_default(defaults, "fstype"),
        "mount_options": entry.get("mount_options") or _host_default(defaults, "mount_options"),
        "partitions": entry.get("partitions", ENTRY_DEFAULTS["partitions"]),
        "storage_class": entry.get("storage_class") or _host_default(defaults, "storage_class"),
        "wipe": _wipe_value(entry.get("wipe", ENTRY_DEFAULTS["wipe"])),
        "adopt": bool(entry.get("adopt", ENTRY_DEFAULTS["adopt"])),
        "expect": entry.get("expect") or {},
        "capacity_from": entry.get("capacity_from") or _host_default(defaults, "capacity_from"),
        "labels": entry.get("labels") or {},
        "match": entry.get("match") or {},
        "replace": entry.get("replace"),
        "blank_proof": entry.get("blank_proof") or _host_default(defaults, "blank_proof"),
    })
    if spec["mkfs_options"] is None:
        spec["mkfs_options"] = _host_default(defaults, "mkfs_options").get(spec["fstype"], "")
    return spec


def _wipe_value(value):
    """``wipe:`` is a fingerprint (a string); true/false are kept to say what they mean now."""
    if isinstance(value, bool) or value is None:
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "yes", "on"):
        return True
    if text in ("false", "no", "off", ""):
        return False
    return text


def _value_errors(spec):
    errors = []
    for key, allowed in (("mode", MODES), ("fstype", FSTYPES), ("capacity_from", CAPACITY_FROM),
                         ("blank_proof", hv.PROOFS)):
        if spec[key] not in allowed:
            errors.append("%s %r is not one of %s" % (key, spec[key], ", ".join(allowed)))
    parts = spec["partitions"]
    if isinstance(parts, bool) or not isinstance(parts, int) or not 1 <= parts <= 128:
        errors.append("partitions %r is not a number from 1 to 128" % (parts,))
        spec["partitions"] = 1
    if not isinstance(spec["expect"], dict) or set(spec["expect"]) - set(EXPECT_KEYS):
        errors.append("expect may only hold %s" % ", ".join(EXPECT_KEYS))
        spec["expect"] = {}
    if spec["expect"].get("size") is not None:
        try:
            # kept as written: a size with a unit matches within a tolerance, bytes exactly
            sizes.parse_size(spec["expect"]["size"])
        except ValueError as exc:
            errors.append("expect.size: %s" % exc)
    if spec["adopt"] and spec["wipe"]:
        errors.append("adopt keeps the data and wipe destroys it: choose one")
    if spec["replace"] is not None and not isinstance(spec["replace"], str):
        errors.append("replace is the fingerprint of the new disk that a refusal prints, not %r" % (spec["replace"],))
    return errors


def _match_errors(spec):
    errors = []
    if not isinstance(spec["match"], dict):
        spec["match"] = {}
        return ["match is not a mapping"]
    if set(spec["match"]) - set(MATCH_KEYS):
        errors.append("match may only hold %s" % ", ".join(MATCH_KEYS))
    for key in ("min_size", "max_size"):
        if spec["match"].get(key) is not None:
            try:
                spec["match"][key] = sizes.parse_size(spec["match"][key])
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
    if isinstance(spec["wipe"], str):
        errors.append("a wipe confirmation belongs to one disk: give it on an entry with device")
    if spec["replace"]:
        errors.append("a replace confirmation belongs to one disk: give it on an entry with device")
    return errors


def _bind_errors(spec):
    errors = []
    if canonical_path(spec["bind"]) in (None, "/"):
        errors.append("bind %r is not an absolute directory path" % (spec["bind"],))
    if spec["mode"] != "filesystem":
        errors.append("a bind mount is always mode filesystem")
    for key in ("wipe", "adopt", "replace"):
        if spec[key]:
            errors.append("%s makes no sense for a bind mount" % key)
    return errors


def normalize_spec(entry, index, defaults):
    """Check one ``localpv_disks`` entry and fill in defaults. Returns (spec, errors)."""
    if not isinstance(entry, dict):
        return None, ["entry %d is not a mapping" % index]
    entry = _given(entry)
    errors = []
    unknown = sorted(set(entry) - set(SPEC_KEYS))
    if unknown:
        errors.append("unknown key(s) %s" % ", ".join(unknown))
    kinds = [key for key in ("device", "match", "bind") if entry.get(key) is not None and entry.get(key) != ""]
    if len(kinds) != 1:
        errors.append("give exactly one of device, match or bind (got %s)" % (", ".join(kinds) or "none"))
    spec = _spec_values(entry, index, defaults, kinds)
    errors += _value_errors(spec)
    if spec["kind"] == "match":
        errors += _match_errors(spec)
    elif not spec["name"]:
        errors.append("name is required")
    if spec["kind"] == "bind":
        errors += _bind_errors(spec)
    errors += _capacity_errors(spec, entry.get("capacity"))
    return spec, errors


def _capacity_errors(spec, given):
    """An explicit capacity is for bind volumes (disks are measured); parsed in place."""
    spec["capacity"] = None
    if given is None:
        return []
    if spec["kind"] != "bind":
        return ["capacity is only given for bind volumes; a disk's capacity is measured"]
    try:
        spec["capacity"] = sizes.parse_size(given)
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


def match_misses(disk, match):
    """Why a disk does not fit a selector's ``match`` (eligibility is checked apart); [] = fits."""
    misses = []
    if match.get("rotational") is not None and disk["rotational"] != bool(match["rotational"]):
        misses.append("rotational is %s" % disk["rotational"])
    if match.get("min_size") is not None and disk["size"] < match["min_size"]:
        misses.append("%d bytes, below min_size %d" % (disk["size"], match["min_size"]))
    if match.get("max_size") is not None and disk["size"] > match["max_size"]:
        misses.append("%d bytes, above max_size %d" % (disk["size"], match["max_size"]))
    if match.get("model") and not fnmatch.fnmatch((disk.get("model") or "").strip(), match["model"]):
        misses.append("model %r does not match %r" % (disk.get("model"), match["model"]))
    return misses


def _sort_key(disk):
    return (disk["stable_id"] or "~", disk["path"])


# --------------------------------------------------------------------------------------
# Recognising what is on a disk
# --------------------------------------------------------------------------------------

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


def _hard_reasons(disk, skip=()):
    """Reasons no wipe clears (mounted, held, opened, system...), by code."""
    return [msg for code, msg in zip(disk["reason_codes"], disk["reasons"])
            if code not in devices.DATA_REASONS and code not in skip]


def _data_reasons(disk):
    return [msg for code, msg in zip(disk["reason_codes"], disk["reasons"]) if code in devices.DATA_REASONS]


def _ours_reasons(disk, names, mount_paths):
    """Why a disk that carries our layout may not be used as it is (mounted elsewhere...).
    Our own mounts and a pod that has a block volume open are its normal life."""
    reasons = _hard_reasons(disk, skip=("mounted", "exclusive", "opened"))
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


def _expect_reasons(disk, expect):
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
                    (ids.get("stable_id") and ids["stable_id"] in [disk["stable_id"]] + list(disk["by_id"]))):
                found.append(_describe_disk(disk))
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
    _mark_mount_state(planner, dir_entries or mount_rules.directory_entries, kind_at or mount_rules.kind_at)
    for volume, reason in shared_bind_sources(plan["volumes"], planner.mounts):
        planner.refuse(volume["source"], [reason], volume["name"])
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


def _already_ours(spec, candidates, limit):
    """(number, disk) of the candidates that carry this selector's volumes already."""
    taken = []
    for disk in sorted(candidates, key=_sort_key):
        if not carries_ours(disk):
            continue
        for number in range(limit):
            if ours_for(disk, volume_names("%s%d" % (spec["name_prefix"], number), spec["partitions"])):
                taken.append((number, disk))
                break
    return taken


def _selectable(planner, spec, disk):
    """Why a selector does not take ``disk``; [] = it may."""
    why = match_misses(disk, spec["match"]) + ([] if disk["eligible"] else list(disk["reasons"]))
    if not why and not planner.sample(disk["path"], disk["size"], spec["blank_proof"])["zero"]:
        why = ["holds unrecognised data (%s)" % planner.blank_words(disk["path"], disk["size"], spec["blank_proof"])]
    return why


def _plan_selector(planner, spec, disks, claimed):
    """Disks already ours for the selector first (names stay stable), then eligible blank ones.
    Every disk not taken is named with the reason, one line per disk."""
    prefix, count = spec["name_prefix"], spec["match"].get("count")
    candidates = [d for d in disks if d["kind"] in devices.SELECTABLE_KINDS and d["path"] not in claimed]
    taken = _already_ours(spec, candidates, (count or 0) + len(disks))
    taken_paths = set(disk["path"] for _n, disk in taken)
    fresh, skipped = [], []
    for disk in sorted(candidates, key=_sort_key):
        if disk["path"] in taken_paths:
            continue
        why = _selectable(planner, spec, disk)
        (skipped.append((disk, why)) if why else fresh.append(disk))
    wanted = (count - len(taken)) if count else len(fresh)
    if count and len(taken) > count:
        planner.refuse("match %s" % prefix, ["%d disks already carry volumes %s*, more than count %d" % (
            len(taken), prefix, count)], prefix)
        return
    if wanted > len(fresh):
        planner.refuse("match %s" % prefix, ["wants %d disk(s), found %d already prepared and only %d eligible that "
                                             "match %s" % (count, len(taken), len(fresh),
                                                           _describe_match(spec["match"]))], prefix)
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
        "explicit_capacity": spec.get("capacity"),
        "expect": spec["expect"],
        "needs_mount": False,
        "needs_link": False,
    }


# --------------------------------------------------------------------------------------
# One disk
# --------------------------------------------------------------------------------------

def _plan_disk(planner, spec, disk, names):
    """Decide what happens to one disk: new, ours (resume/keep), adopt or wipe."""
    subject = disk["path"]
    if disk["kind"] not in devices.SELECTABLE_KINDS:
        # dm and md partitions are separate devices (kpartx), not <dev>p1: not handled
        planner.refuse(subject, ["is a %s device; only whole disks (and loop devices) are prepared" % disk["kind"]],
                       names[0])
        return
    reasons = _expect_reasons(disk, spec["expect"])
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


# --------------------------------------------------------------------------------------
# A volume's disk is proven
# --------------------------------------------------------------------------------------
# What a volume lives on is recorded where the next run looks: on the host, the
# filesystem UUID in its fstab line (and a block volume's by-partuuid link), on the
# cluster, its PV's annotations (stable id, partition UUID, filesystem UUID), handed
# to the host as ``recorded``. The disk an entry's device leads to now must carry
# those ids; a path that now leads to another disk is never taken for the volume.

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
            record["stable_id"] not in [disk["stable_id"]] + list(disk["by_id"]):
        misses.append("disk %s" % record["stable_id"])
    return misses


def _describe_disk(disk):
    return "%s (%s, %s)" % (disk["path"], disk["stable_id"] or "no stable id", hv.human_bytes(disk["size"]))


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
        ids = dict(fs_uuid=record["fs_uuid"], partuuid=record["partuuid"], stable_id=record["stable_id"])
        found = planner.locate(ids)
        if found:
            old = "The disk with those ids is still on this host: %s%s" % (
                ", ".join(found), _remount_hint(planner, record, path))
        elif found is not None:
            old = "No disk of this host carries those ids now (the old disk is gone, or not readable here)"
        else:
            old = "Whether the old disk is still on this host was not looked for"
        content = ("blank" if disk["eligible"] and planner.sample(disk["path"], disk["size"])["zero"]
                   else "not blank")
        # a selector's volume has no path of its own: say which disk the selector took for it
        via = ("the entry's device %s now leads to" % spec["device"] if spec["kind"] == "device" else
               "the entry's selector (match, name_prefix %s) now takes for it" % spec["name_prefix"])
        head = ("volume %s was made on a disk with %s (recorded in %s); %s %s, %s, which does not carry %s. %s" % (
            name, ", ".join(misses), " and ".join(record["where"]) or "the inventory", via,
            _describe_disk(disk), content, "them" if len(misses) > 1 else "it", old))
        own = [partition_label(n) for n in names]
        if any(planner.wants(label) and label not in own for label in labels_on(disk)):
            # another volume this host still wants: say so, and never offer to make ours again over it
            planner.refuse(disk["path"], [head + ". %s; it is not made again while an entry of this host still "
                                          "wants it: point the entry for %s back at its own disk" % (
                                              _ours_words(planner, spec, disk, names).capitalize(), name)], name)
            return False
        if record["claim"]:
            planner.refuse(disk["path"], [head + ". Its PV %s is bound to claim %s: the volume of a bound PV is "
                                          "never made again on another disk; point device back at the old disk, "
                                          "or free the claim first (see decommission)" % (record["pv"],
                                                                                          record["claim"])], name)
            return False
        if spec["replace"] == fp:
            entry["replaces"] = "volume %s is made again on this disk, replacing the disk with %s" % (
                name, ", ".join(misses))
            continue
        if spec["kind"] != "device":
            # replace belongs to one disk, so a selector takes none (normalize_spec)
            planner.refuse(disk["path"], [head + ". If the old disk is to come back, attach it again; if it failed "
                                          "and volume %s is to be made again, empty, on another disk, retire it "
                                          "first (decommission.yml with decommission_volumes: [%s])" % (name, name)],
                           name)
            return False
        stale = ("the confirmation replace: '%s' does not match this disk as it is now. " % spec["replace"]
                 if spec["replace"] else "")
        planner.refuse(disk["path"], [head + ". %sIf the entry should follow the old disk, point device at it; "
                                      "if the disk was replaced on purpose and volume %s is to be made again, empty, "
                                      "on this one, set replace: '%s' on this entry (the fingerprint of this disk "
                                      "now)" % (stale, name, fp)], name, fingerprint=fp)
        return False
    return True


# --- volumes retired by decommission ------------------------------------------------

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
    reasons = _ours_reasons(disk, names, [os.path.join(planner.plan["mount_root"], n) for n in names])
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
    hard = _hard_reasons(disk, skip=("mounted", "exclusive"))
    hard += ["%s is mounted at %s" % (m["device"], m["mount_point"]) for m in disk["mounts"]
             if m["mount_point"] not in ours]
    if hard:
        planner.refuse(disk["path"], hard, names[0])
        return
    found = _adoptable(disk, len(names), spec)
    if isinstance(found, str):
        planner.refuse(disk["path"], [found], names[0])
        return
    entry["state"] = "adopt"
    volumes = []
    for name, fs in zip(names, found):
        reasons = _fs_expect_reasons(fs, spec["expect"])
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
    data = _data_reasons(disk)
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
        hard = _hard_reasons(disk)
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


def _volumes_of(disk):
    """Our volume names on a disk, from its partition names (hashed long names stay labels)."""
    return [label[len(hv.PARTITION_LABEL_PREFIX):] if label.startswith(hv.PARTITION_LABEL_PREFIX) else label
            for label in labels_on(disk)]


def _ours_words(planner, spec, disk, names):
    """What a disk that carries volumes of ours is, said before any offer to erase it; "" when it carries none.
    A change of partition count or of names is named as such."""
    if not carries_ours(disk):
        return ""
    have = _volumes_of(disk)
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


def _mark_mount_state(planner, dir_entries, kind_at):
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


# --------------------------------------------------------------------------------------
# Showing the plan
# --------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------
# Doing it
# --------------------------------------------------------------------------------------

def _run_ok(run, argv, log, what):
    rc, out, err = run(argv)
    log.append(" ".join(argv))
    if rc != 0:
        raise PrepareError("%s failed (%s): %s" % (what, " ".join(argv), (err or out).strip()), written=True)
    return out


def _probe_now(path, run, log):
    try:
        return hv.probe(path, run)
    except hv.VolumeError as exc:
        raise PrepareError("right before writing: %s" % exc, written=bool(log))


def _in_use_now(path):
    """Why ``path`` is in use right now: an exclusive holder (mount, swap, dm, md)
    or any process that has it open or mapped. Our own lock fd is not counted."""
    why = []
    err = devices.exclusive_open_error(path)
    if err:
        why.append("cannot be opened exclusively: %s" % err)
    try:
        rdev = os.stat(path).st_rdev
    except OSError as exc:
        return why + ["cannot be read: %s" % exc]
    found = openers.device_openers([rdev])
    if found:
        why.append("in use: %s" % devices.describe_openers(found))
    return why


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
            part["start"] // MIB, part["size"] // MIB, part.get("type") or LINUX_FS_TYPE, part["partuuid"],
            part["label"]))
    return "\n".join(lines) + "\n"


def run_sfdisk(disk, script):
    """Write a partition table without asking the kernel to re-read it: a kernel
    without partition-table parsers would drop every partition, so ``partx -u``
    follows. ``--no-reread`` also switches off sfdisk's own in-use check;
    :func:`apply_plan` makes that check itself, under the disk's lock, right before.
    Signatures left inside the new partitions by an earlier life of the disk are
    wiped, so a new volume never resurrects an old filesystem."""
    tool = devices.find_tool("sfdisk")
    if tool is None:
        return 127, "", "sfdisk: command not found (install util-linux/fdisk)"
    # the script goes to sfdisk's stdin, and there is no AnsibleModule here (see devices.run_command);
    # the host lock goes with the tool: one left running by a killed run keeps it
    argv = [tool, "--no-reread", "--no-tell-kernel", "--quiet", "--wipe-partitions", "always", disk]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                            universal_newlines=True, env=dict(os.environ, LC_ALL="C", LANG="C"),
                            pass_fds=host_lock.inherited_fds())
    out, err = proc.communicate(script)
    return proc.returncode, out, err


def lock_disk(disk, timeout=30.0):
    """A BSD lock on the whole disk (udev and util-linux's convention): udevd
    leaves a locked disk alone, and a second run of this collection waits."""
    fd = os.open(disk, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    deadline = time.time() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except (IOError, OSError):
            if time.time() > deadline:
                os.close(fd)
                raise PrepareError("%s stays locked by another program (flock) for %ds: %s." % (
                    disk, timeout, openers.describe_lock_holders(disk)))
            time.sleep(0.1)


def recheck_disk(disk):
    """The disk's record read again now (its own probe, partitions and openers: its
    partitions are read with it), or None when it is gone."""
    return devices.find_disk(devices.host_disks(names={os.path.basename(disk)}, list_all=False), disk)


def _verify_unchanged(entry, fresh, sampler, log):
    """Under the lock, right before the first write: the disk is still what the
    plan judged. A stale plan writes nothing."""
    disk = entry["disk"]
    if fresh is None:
        raise PrepareError("%s is gone since the plan was made." % disk, written=bool(log))
    if "wipe" in entry["actions"]:
        now = fingerprint(fresh, sampler(disk, fresh["size"])["digest"])
        if now != entry["fingerprint"]:
            raise PrepareError("%s changed since the plan was made (fingerprint %s, confirmed %s); not erased." % (
                disk, now, entry["fingerprint"]), written=bool(log))
        hard = _hard_reasons(fresh)
    elif entry["state"] == "new":
        hard = list(fresh["reasons"])
        if not hard and not sampler(disk, fresh["size"])["zero"]:
            hard = ["holds unrecognised data (not zero where sampled)"]
    else:
        hard = _hard_reasons(fresh, skip=("mounted", "exclusive", "opened"))
        if labels_on(fresh) != [partition_label(n) for n in entry["volumes"]]:
            hard.append("its partition names are now %s" % ", ".join(labels_on(fresh)))
        if entry.get("erase"):
            parts = dict((p["path"], p) for p in fresh["partitions"])
            contents = dict((parts[p]["number"], sampler(p, parts[p]["size"])["digest"])
                            for p in entry["erase"] if p in parts)
            now = partition_fingerprint(fresh, contents.keys(), contents) if len(contents) == len(entry["erase"]) \
                else "gone"
            if now != entry["partition_fingerprint"]:
                hard.append("%s changed since the plan was made (fingerprint %s, confirmed %s); not erased" % (
                    ", ".join(entry["erase"]), now, entry["partition_fingerprint"]))
    if hard:
        raise PrepareError("%s right before writing: %s." % (disk, "; ".join(hard)),
                           written=bool(log))


# Disks prepared at once. Each disk's own steps stay in order under its lock; mkfs
# (with an SSD's discard) and the kernel's partition scan wait on the device, so a few
# disks side by side shorten a many-disk host's first run without crowding a small one.
DISK_WORKERS = 4


def _apply_disk(plan, entry, tools, stop_after, stop):
    """One disk of the plan, under its lock. Returns its log; a PrepareError
    carries the log so far as ``commands``. ``stop`` (a threading.Event) is set
    once any disk fails: a disk not yet started is then left alone."""
    run, sfdisk, recheck, sampler, lock = tools
    log = []
    if stop.is_set():
        return log
    try:
        fd = lock(entry["disk"])
        try:
            fresh = recheck(entry["disk"])
            _verify_unchanged(entry, fresh, sampler, log)
            if "wipe" in entry["actions"]:
                _wipe_disk(fresh, run, log)
            for path in entry.get("erase") or ():
                why = _in_use_now(path)
                if why:
                    raise PrepareError("%s right before erasing: %s" % (path, "; ".join(why)), written=bool(log))
                log += hv.erase(path, run)
            _write_table(plan, entry, run, sfdisk, log)
            if stop_after != "partition":
                _make_filesystems(plan, entry["disk"], run, sampler, log)
        finally:
            if fd is not None:
                os.close(fd)
    except Exception as exc:  # any failure stops the disks not yet started
        stop.set()
        if isinstance(exc, PrepareError):
            exc.commands = log
        raise
    return log


def apply_plan(plan, run=None, stop_after=None, sfdisk=None, recheck=None, sampler=None, lock=None):
    """Carry out a plan that has no refusals. Returns the log of commands run.

    Per disk, under its lock: re-read it and check it is what the plan judged,
    erase (confirmed wipes only), partition, tell the kernel, mkfs. Up to
    :data:`DISK_WORKERS` disks at once; once one fails no other disk is started,
    the ones under way finish, and the PrepareError raised (the first failed disk's,
    in plan order) carries every command run as ``commands``. ``stop_after=
    "partition"`` stops once the partition tables exist (to test that an
    interrupted run resumes). ``sfdisk``, ``recheck(disk)``, ``sampler(path, size)``
    and ``lock(disk)`` are the real ones unless a test gives its own.
    """
    if plan["refusals"]:
        raise PrepareError(refusal_message(plan))
    tools = (run or devices.run_command, sfdisk or run_sfdisk, recheck or recheck_disk, sampler or hv.sample,
             lock or lock_disk)
    entries = [entry for entry in plan["disks"] if entry["actions"]]
    stop = threading.Event()
    log, failures = [], []
    if entries:
        with ThreadPoolExecutor(max_workers=min(DISK_WORKERS, len(entries))) as pool:
            futures = [pool.submit(_apply_disk, plan, entry, tools, stop_after, stop) for entry in entries]
            for future in futures:
                try:
                    log += future.result()
                except PrepareError as exc:
                    log += exc.commands
                    failures.append(exc)
    if failures:
        message = " ".join([str(failures[0])] + ["Also: %s" % exc for exc in failures[1:]])
        raise PrepareError(message, written=bool(log) or any(exc.written for exc in failures), commands=log)
    if stop_after == "partition":
        return log
    for volume in plan["volumes"]:
        if volume["state"] == "bind" and not os.path.isdir(volume["source"]):
            os.makedirs(volume["source"], 0o755)
            log.append("mkdir -p %s" % volume["source"])
    return log


def _wipe_disk(fresh, run, log):
    """Erase every partition the kernel knows, then the disk (the one erase of host_volumes)."""
    for part in fresh["partitions"]:
        why = _in_use_now(part["path"])
        if why:
            raise PrepareError("%s right before erasing: %s" % (part["path"], "; ".join(why)), written=bool(log))
        log += hv.erase(part["path"], run)
    log += hv.erase(fresh["path"], run)
    run(["partx", "-d", fresh["path"]])  # fails when no partition node is left: fine
    log.append("partx -d %s" % fresh["path"])


def _write_table(plan, entry, run, sfdisk, log):
    """Write the GPT of a new disk and/or make the kernel know its partitions."""
    disk = entry["disk"]
    if "partition" in entry["actions"]:
        why = _in_use_now(disk)
        if _probe_now(disk, run, log):
            why.append("a signature appeared since the plan was made")
        if why:
            raise PrepareError("%s right before partitioning: %s; not partitioned." % (disk, "; ".join(why)),
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


def _make_filesystems(plan, disk, run, sampler, log):
    for volume in plan["volumes"]:
        if volume["disk"] != disk or volume["mode"] != "filesystem" or volume["state"] not in ("create", "format"):
            continue
        device = volume["device"]
        sigs = _probe_now(device, run, log)
        types = [s["type"] for s in sigs]
        if volume["state"] == "format" and types == [volume["fstype"]]:
            volume["state"] = "existing"  # formatted by an earlier, interrupted run
        elif sigs:
            raise PrepareError("%s (volume %s) carries %s right before mkfs; not formatting it" % (
                device, volume["name"], ", ".join(types)), written=bool(log))
        else:
            why = _in_use_now(device)
            # made in this run: blank by construction; left by an earlier run: prove it
            if volume["state"] == "format" and not volume.get("erase") and not sampler(device, volume["size"])["zero"]:
                why.append("holds unrecognised data (no signature, but not zero where sampled)")
            if why:
                raise PrepareError("%s (volume %s) right before mkfs: %s; not formatted." % (
                    device, volume["name"], "; ".join(why)), written=bool(log))
            _run_ok(run, hv.mkfs_argv(volume["fstype"], device, volume["mkfs_options"]), log, "mkfs")
            volume["state"] = "formatted"
        rc, out, err = run(["blkid", "-p", "-o", "export", device])
        values = devices.parse_export(out)
        if not values.get("UUID"):
            raise PrepareError("no filesystem UUID on %s after mkfs: %s" % (device, err.strip()), written=True)
        volume["uuid"] = values["UUID"]
        volume["fstab_src"] = mount_rules.uuid_src(volume["uuid"])


def capacity(volume, statvfs=None, filesystem_bytes=None):
    """Bytes a volume offers, by the documented rule.

    Filesystem volumes: the size of the filesystem as statvfs reports it once
    mounted (f_blocks * f_frsize), which is what a pod can use. Before it is
    mounted, ``filesystem_bytes``: the same number read from the superblock, or
    predicted from the plan in check mode (``host_volumes.filesystem_bytes``).
    ``capacity_from: device`` and block volumes: the partition size. A bind
    volume's explicit ``capacity`` wins over all of these.
    """
    if volume.get("explicit_capacity"):
        return volume["explicit_capacity"]
    if volume["mode"] == "block" or volume.get("capacity_from") == "device":
        return volume.get("size")
    if statvfs is not None:
        return statvfs.f_blocks * statvfs.f_frsize
    return filesystem_bytes
