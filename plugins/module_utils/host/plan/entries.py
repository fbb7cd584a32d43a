# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One ``localpv_disks`` entry: its schema (disk_prepare's argument spec and the keys the
plan takes come from here), its checks and the one place its defaults are filled
(:func:`normalize_spec`), and the names and layout of the volumes a disk becomes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.localpv.rollout.plugins.module_utils.common import sizes
from ansible_collections.localpv.rollout.plugins.module_utils.common.naming import canonical_path
from ansible_collections.localpv.rollout.plugins.module_utils.host import host_volumes as hv

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
