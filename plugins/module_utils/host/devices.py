# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading a host's block devices and judging whether a disk may be formatted.

Two halves that meet in a plain dict:

* ``collect()`` does all the reading: sysfs, /dev/disk/by-id (when udev made it),
  /proc/self/mountinfo, /proc/swaps, a low-level probe of every device
  (``wipefs``, which reads the device itself rather than the blkid cache),
  the partition table as written on the disk (``partx --show``, which works even
  on a kernel without partition-table parsers) and an exclusive open attempt.
  Its result is JSON-serialisable, so a host can be recorded and replayed.
* ``build()`` turns that dict into one record per disk with ``eligible`` and the
  ``reasons`` against it. It is pure: the unit tests run it on recorded hosts.

The rules (docs/design.md, "Safety"): a disk may be formatted only if
it has no signature, no partitions, no holders, is not mounted, not swap, not
read-only, not removable, not the disk of / or /boot, an exclusive open
succeeds, and no process has it or a partition open or mapped (/proc/*/fd, maps).
Whether its bytes are blank is disk_prepare's question (``host_volumes.sample``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import re
import shutil
import subprocess

from ansible_collections.localpv.rollout.plugins.module_utils.host import host_lock
from ansible_collections.localpv.rollout.plugins.module_utils.host import openers as _openers

SECTOR = 512

# Reason codes. "Data" reasons can be cleared by wiping the disk (two keys needed);
# every other reason is a hard stop, wipe or not.
DATA_REASONS = frozenset(["signatures", "partitions", "partition_table"])

PARTITION_TABLE_TYPES = frozenset(["gpt", "PMBR", "dos", "sun", "sgi", "bsd", "mac", "atari", "aix"])

# Mount points whose disk is "the system disk": never a candidate, whatever else.
SYSTEM_MOUNTS = ("/", "/boot", "/boot/efi", "/usr", "/var")

# by-id link prefixes, most stable first. Links ending in -partN are partitions.
_BY_ID_PREFERENCE = ("wwn-", "nvme-eui.", "nvme-uuid.", "nvme-", "scsi-3", "scsi-", "ata-",
                     "virtio-", "usb-", "mmc-", "md-uuid-", "dm-uuid-", "lvm-pv-uuid-")

# Kinds a selector may pick. dm/md/zram and friends are listed but never selected.
SELECTABLE_KINDS = ("disk", "loop")

_TOOL_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


class DeviceError(Exception):
    """Reading the host's devices failed in a way that makes any verdict unsafe."""


# --------------------------------------------------------------------------------------
# Small parsers (pure)
# --------------------------------------------------------------------------------------

def _unescape_mount(field):
    """mountinfo escapes space, tab, newline and backslash as octal (\\040...)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text):
    """Mounts from /proc/self/mountinfo: dicts with dev (maj:min), root, mount_point,
    fstype, source, options."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10 or "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        mounts.append({
            "dev": fields[2],
            "root": _unescape_mount(fields[3]),
            "mount_point": _unescape_mount(fields[4]),
            "options": fields[5],
            "fstype": fields[sep + 1],
            "source": _unescape_mount(fields[sep + 2]) if len(fields) > sep + 2 else "",
        })
    return mounts


def mount_at(mounts, path):
    """The mount visible at ``path`` (the last one mounted there), or None."""
    found = None
    for mount in mounts:
        if mount["mount_point"] == path:
            found = mount
    return found


def mount_is_of(mount, dev=None, device=None):
    """Whether ``mount`` shows the device with number ``dev`` (``maj:min``) or,
    when the number is not known, the kernel name ``device``. The number wins:
    mountinfo keeps the kernel name of mount time, which a re-attach changes."""
    if mount is None:
        return False
    if dev:
        return mount["dev"] == dev
    return device is not None and os.path.basename(mount["source"]) == os.path.basename(device)


def is_bind_of(mount, source, mounts):
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


def parse_swaps(text):
    """Swap areas from /proc/swaps: dicts with path and type."""
    swaps = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2:
            swaps.append({"path": _unescape_mount(fields[0]), "type": fields[1]})
    return swaps


def parse_fstab(text):
    """Entries of an fstab: dicts with src, path, fstype, opts, dump, passno and line
    (0-based index in ``text.splitlines()``); the fields unescaped, the optional ones
    filled in as mount(8) reads them."""
    entries = []
    for index, line in enumerate(text.splitlines()):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split()
        if len(fields) < 2:
            continue
        entries.append({
            "src": _unescape_mount(fields[0]),
            "path": _unescape_mount(fields[1]),
            "fstype": fields[2] if len(fields) > 2 else "",
            "opts": fields[3] if len(fields) > 3 else "defaults",
            "dump": fields[4] if len(fields) > 4 else "0",
            "passno": fields[5] if len(fields) > 5 else "0",
            "line": index,
        })
    return entries


def parse_export(text):
    """KEY=value lines (``blkid -o export``) into a dict."""
    values = {}
    for line in text.splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def parse_wipefs_json(text):
    """Signatures from ``wipefs --json``: list of dicts type, offset, uuid, label."""
    if not text.strip():
        return []
    data = json.loads(text)
    return [{"type": sig.get("type"), "offset": sig.get("offset"),
             "uuid": sig.get("uuid"), "label": sig.get("label")}
            for sig in data.get("signatures", [])]


PARTX_COLUMNS = "NR,START,SECTORS,TYPE,UUID,NAME"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def parse_partx(text):
    """Partition table entries from ``partx -g -o NR,START,SECTORS,TYPE,UUID,NAME``.

    TYPE and UUID are GUIDs on a GPT (0xNN and a short id on a DOS table); NAME
    comes last because it may be empty or contain spaces.
    """
    table = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or not fields[0].isdigit():
            continue
        number, start, sectors = int(fields[0]), int(fields[1]), int(fields[2])
        ptype, uuid = fields[3], fields[4]
        table.append({"number": number, "start": start, "sectors": sectors, "size": sectors * SECTOR,
                      "type": ptype.upper() if _GUID.match(ptype) else ptype,
                      "uuid": uuid.lower() if _GUID.match(uuid) else uuid,
                      "name": " ".join(fields[5:])})
    return table


def stable_id_from_sysfs(attrs):
    """A stable id for a disk from what sysfs says, when udev made no by-id link.

    Returns ``(stable_id, source)``; the id is spelled like the by-id link udev would
    make where that is possible (``wwn-0x...``, ``nvme-eui....``), so an inventory
    written on a host with udev matches on a host without it.
    """
    wwid = (attrs.get("wwid") or "").strip()
    if wwid:
        lowered = wwid.lower()
        if lowered.startswith("naa."):
            return "wwn-0x" + lowered[4:], "wwid"
        if lowered.startswith("eui."):
            return "nvme-eui." + lowered[4:], "wwid"
        if lowered.startswith("uuid."):
            return "nvme-uuid." + lowered[5:], "wwid"
        return "wwid-" + re.sub(r"[^A-Za-z0-9._-]+", "_", wwid.strip()), "wwid"
    if attrs.get("wwn"):
        wwn = attrs["wwn"].strip().lower()
        return ("wwn-" + wwn if wwn.startswith("0x") else "wwn-0x" + wwn), "wwid"
    serial = (attrs.get("serial") or "").strip()
    if serial:
        return "serial-" + re.sub(r"[^A-Za-z0-9._-]+", "_", serial), "serial"
    if attrs.get("backing_file"):
        return "loop:" + attrs["backing_file"], "loop-backing-file"
    if attrs.get("dm_uuid"):
        return "dm-uuid-" + attrs["dm_uuid"], "dm-uuid"
    if attrs.get("md_uuid"):
        return "md-uuid-" + attrs["md_uuid"], "md-uuid"
    return None, "none"


# udev's by-id names, made again from sysfs on hosts where udev does not run
# (60-persistent-storage.rules and its helpers ata_id and scsi_id). Characters udev
# keeps in a name as they are; any other is replaced with "_".
_UDEV_PLAIN = re.compile(r"[^0-9A-Za-z#+\-.:=@_]")
# ATA IDENTIFY data starts at byte 60 of the ATA Information VPD page (0x89)
_IDENTIFY_OFFSET = 60


def udev_string(text):
    """A sysfs string as udev writes it into a by-id name: trimmed, each run of
    white space one "_", characters outside udev's plain set "_"."""
    return _UDEV_PLAIN.sub("_", re.sub(r"\s+", "_", (text or "").strip()))


def _ata_string(identify, first_word, words):
    """A string of ATA IDENTIFY data: bytes swapped in each 16-bit word, trimmed."""
    raw = identify[first_word * 2:(first_word + words) * 2]
    swapped = bytearray()
    for index in range(0, len(raw) - 1, 2):
        swapped += raw[index + 1:index + 2] + raw[index:index + 1]
    return swapped.decode("ascii", "replace").strip()


def ata_identity(vpd_pg89_hex):
    """(model, serial) from the ATA Information VPD page as sysfs shows it
    (``vpd_pg89``, kept as hex), or (None, None) when there is no such page."""
    try:
        page = bytes(bytearray.fromhex(vpd_pg89_hex or ""))
    except ValueError:
        return None, None
    identify = page[_IDENTIFY_OFFSET:_IDENTIFY_OFFSET + 512]
    if len(identify) < 94:
        return None, None
    return _ata_string(identify, 27, 20) or None, _ata_string(identify, 10, 10) or None


def udev_by_id_names(attrs):
    """The /dev/disk/by-id names udev would give this disk, made from its sysfs
    attributes; for a host without udev, so that an inventory written on a host
    with udev finds the same disk.

    Made: ``wwn-0x<WWN>`` (an NAA WWID), ``nvme-<WWID>`` (``nvme-eui....``,
    ``nvme-uuid....``, ``nvme-nvme....``), ``nvme-<model>_<serial>`` and
    ``nvme-<model>_<serial>_<nsid>``, ``ata-<model>_<serial>`` (from the ATA
    Information VPD page, ``vpd_pg89``, where the kernel shows it; sysfs's
    own model of an ATA disk is cut to 16 characters) and ``scsi-3<NAA>`` for a
    SCSI disk that is not ATA. Not made: ``scsi-0...``, ``scsi-1...``, ``scsi-S...`` (sg3_utils' rules), ``usb-...``,
    ``virtio-...``, ``mmc-...`` and the names of partitions.
    """
    names = []
    name = attrs.get("name") or ""
    wwid = (attrs.get("wwid") or "").strip()
    lowered = wwid.lower()
    model, serial = attrs.get("model"), attrs.get("serial")
    if lowered.startswith("naa."):
        names.append("wwn-0x" + lowered[4:])
    if name.startswith("nvme"):
        if wwid:
            names.append("nvme-" + udev_string(wwid))
        if (model or "").strip() and (serial or "").strip():
            base = "nvme-%s_%s" % (udev_string(model), udev_string(serial))
            names.append(base)
            if attrs.get("nsid"):
                names.append("%s_%s" % (base, attrs["nsid"]))
    elif (attrs.get("vendor") or "").strip() == "ATA":
        # sysfs's model of an ATA disk is cut to 16 characters, padded: only the
        # IDENTIFY data says the whole model, so no page, no name
        ata_model, ata_serial = ata_identity(attrs.get("vpd_pg89"))
        if ata_model and ata_serial:
            names.append("ata-%s_%s" % (udev_string(ata_model), udev_string(ata_serial)))
    elif name.startswith("sd") and lowered.startswith("naa."):
        names.append("scsi-3" + lowered[4:])
    unique = []
    for link in names:
        if link not in unique:
            unique.append(link)
    return unique


def _udev_id_attrs(base):
    """What udev_by_id_names needs beyond the common attributes of a disk."""
    extra = {"nsid": _read(os.path.join(base, "nsid"))}
    try:
        with open(os.path.join(base, "device", "vpd_pg89"), "rb") as handle:
            extra["vpd_pg89"] = handle.read(4096).hex()
    except (IOError, OSError):
        extra["vpd_pg89"] = None
    return extra


def _by_id_rank(link):
    for index, prefix in enumerate(_BY_ID_PREFERENCE):
        if link.startswith(prefix):
            return (index, link)
    return (len(_BY_ID_PREFERENCE), link)


def kind_of(name):
    """What sort of block device a kernel name is."""
    for prefix, kind in (("loop", "loop"), ("dm-", "dm"), ("md", "md"), ("zram", "zram"),
                         ("ram", "ram"), ("sr", "rom"), ("nbd", "nbd"), ("fd", "floppy")):
        if name.startswith(prefix):
            return kind
    return "disk"


# --------------------------------------------------------------------------------------
# Reading (I/O)
# --------------------------------------------------------------------------------------

def _read(path, default=None):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except (IOError, OSError):
        return default


def _read_int(path, default=None):
    value = _read(path)
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def find_tool(name):
    """Absolute path of a system tool, also when PATH lacks the sbin directories."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _TOOL_DIRS:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def run_command(argv):
    """Run a command without a shell, in the C locale. Returns (rc, stdout, stderr)."""
    tool = find_tool(argv[0]) if not os.path.isabs(argv[0]) else argv[0]
    if tool is None:
        return 127, "", "%s: command not found" % argv[0]
    env = dict(os.environ, LC_ALL="C", LANG="C")
    # module_utils here are plain functions with no AnsibleModule to call run_command on
    # (ansible-core 2.21's sanity flags Popen); the host lock goes with the tool: one
    # left running by a killed run keeps it
    proc = subprocess.Popen([tool] + list(argv[1:]), stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                            env=env, universal_newlines=True, pass_fds=host_lock.inherited_fds())
    out, err = proc.communicate()
    return proc.returncode, out, err


def exclusive_open_error(path):
    """None when ``path`` can be opened exclusively (O_EXCL) right now, else why not.

    On Linux an O_EXCL open of a block device fails with EBUSY while anything holds
    it: a mount, swap, device-mapper, md, or another exclusive opener.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_EXCL | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return "%s (%s)" % (os.strerror(exc.errno), errno.errorcode.get(exc.errno, exc.errno))
    os.close(fd)
    return None


def _read_block_attrs(sys_block, name):
    base = os.path.join(sys_block, name)
    attrs = {
        "name": name,
        "dev": _read(os.path.join(base, "dev")),
        "size": (_read_int(os.path.join(base, "size"), 0) or 0) * SECTOR,
        "ro": _read_int(os.path.join(base, "ro"), 0),
        "removable": _read_int(os.path.join(base, "removable"), 0),
        "rotational": _read_int(os.path.join(base, "queue", "rotational"), None),
        "model": _read(os.path.join(base, "device", "model")),
        "vendor": _read(os.path.join(base, "device", "vendor")),
        "serial": _read(os.path.join(base, "device", "serial")) or _read(os.path.join(base, "serial")),
        "wwid": _read(os.path.join(base, "device", "wwid")) or _read(os.path.join(base, "wwid")),
        "wwn": _read(os.path.join(base, "device", "wwn")),
        "backing_file": _read(os.path.join(base, "loop", "backing_file")),
        "dm_name": _read(os.path.join(base, "dm", "name")),
        "dm_uuid": _read(os.path.join(base, "dm", "uuid")),
        "md_uuid": _read(os.path.join(base, "md", "uuid")),
        "holders": sorted(_listdir(os.path.join(base, "holders"))),
        "partitions": {},
    }
    attrs.update(_udev_id_attrs(base))
    for entry in sorted(_listdir(base)):
        part_base = os.path.join(base, entry)
        if entry.startswith(name) and os.path.exists(os.path.join(part_base, "partition")):
            attrs["partitions"][entry] = {
                "name": entry,
                "dev": _read(os.path.join(part_base, "dev")),
                "number": _read_int(os.path.join(part_base, "partition")),
                "start": _read_int(os.path.join(part_base, "start"), 0) * SECTOR,
                "size": (_read_int(os.path.join(part_base, "size"), 0) or 0) * SECTOR,
                "ro": _read_int(os.path.join(part_base, "ro"), 0),
                "holders": sorted(_listdir(os.path.join(part_base, "holders"))),
            }
    return attrs


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def probe_signatures(dev_path, run):
    """Low-level signatures of one device: wipefs reads the device, not a cache.
    ``{"signatures": [...] or None, "error": None or why it could not be read}``;
    the one wipefs probe, for the facts and right before a write."""
    rc, out, err = run(["wipefs", "--json", dev_path])
    if rc != 0:
        return {"signatures": None, "error": (err or out).strip() or "wipefs exited %d" % rc}
    try:
        return {"signatures": parse_wipefs_json(out), "error": None}
    except ValueError as exc:
        return {"signatures": None, "error": "cannot parse wipefs output: %s" % exc}


def _partition_table(dev_path, run):
    rc, out, err = run(["partx", "-g", "-o", PARTX_COLUMNS, dev_path])
    if rc != 0:
        # partx exits 1 with "failed to read partition table" when there is none.
        return []
    return parse_partx(out)


def probe_table_entry(dev_path, entry, run):
    """The filesystem inside a partition table entry that the kernel has no
    partition for (a disk attached again without a partition scan), read from
    the whole disk at the entry's place (``blkid -p`` at an offset, read-only).
    ``{"fstype", "uuid", "label"}`` (all None when nothing is there), or
    ``{"error": why}`` when it could not be read."""
    argv = ["blkid", "-p", "-o", "export", "-O", str(entry["start"] * SECTOR), "-S", str(entry["size"]), dev_path]
    rc, out, err = run(argv)
    if rc == 2:  # blkid: nothing found
        return {"fstype": None, "uuid": None, "label": None}
    if rc != 0:
        return {"error": (err or out).strip() or "blkid exited %d" % rc}
    values = parse_export(out)
    if values.get("PTTYPE") and not values.get("TYPE"):
        return {"fstype": None, "uuid": None, "label": None}
    return {"fstype": values.get("TYPE"), "uuid": (values.get("UUID") or "").lower() or None,
            "label": values.get("LABEL")}


def collect(sys_root="/sys", dev_root="/dev", proc_root="/proc", run=None, probe=True, names=None, list_all=True):
    """Read everything ``build()`` needs about this host's block devices.

    ``names`` limits the expensive part (probing, exclusive open) to some kernel
    names; every device is still listed from sysfs unless ``list_all`` is false
    (a disk's record needs only its own sysfs entries and the host's tables, and
    reading every device's attributes again per disk made a 24-disk host's first
    run quadratic).
    """
    sys_block = os.path.join(sys_root, "block")
    if not os.path.isdir(sys_block):
        raise DeviceError("%s does not exist: is sysfs mounted?" % sys_block)
    raw = {"devices": {}, "by_id": None, "mountinfo": "", "swaps": [], "probes": {}, "tables": {},
           "exclusive": {}, "swap_devs": {}}
    for name in sorted(_listdir(sys_block)):
        if list_all or names is None or name in names:
            raw["devices"][name] = _read_block_attrs(sys_block, name)

    by_id_dir = os.path.join(dev_root, "disk", "by-id")
    if os.path.isdir(by_id_dir):
        raw["by_id"] = {}
        for link in sorted(_listdir(by_id_dir)):
            target = os.path.realpath(os.path.join(by_id_dir, link))
            raw["by_id"][link] = os.path.basename(target)

    raw["mountinfo"] = _read(os.path.join(proc_root, "self", "mountinfo"), "") or ""
    raw["swaps"] = parse_swaps(_read(os.path.join(proc_root, "swaps"), "") or "")
    for swap in raw["swaps"]:
        try:
            st = os.stat(swap["path"])
        except OSError:
            continue
        if swap["type"] == "partition" and (st.st_mode & 0o170000) == 0o060000:
            raw["swap_devs"][swap["path"]] = "%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))

    if probe:
        add_probes(raw, names, dev_root=dev_root, proc_root=proc_root, run=run)
    return raw


def add_probes(raw, names=None, dev_root="/dev", proc_root="/proc", run=None):
    """Add to ``raw`` (from ``collect(probe=False)``) what only reading the devices
    tells: signatures, partition table, exclusive open, openers; of the kernel
    names ``names`` (None: every device)."""
    run = run or run_command
    raw["openers"] = _openers_by_dev(raw["devices"], names, proc_root)
    for name, attrs in raw["devices"].items():
        if names is not None and name not in names:
            continue
        if not attrs["size"]:
            continue
        dev_path = os.path.join(dev_root, name)
        raw["exclusive"][name] = exclusive_open_error(dev_path)
        result = probe_signatures(dev_path, run)
        raw["probes"][name] = result
        sigs = result["signatures"] or []
        if any(sig["type"] in PARTITION_TABLE_TYPES for sig in sigs):
            raw["tables"][name] = _partition_table(dev_path, run)
            # what the table lists and the kernel does not know: the filesystem read in place,
            # so that a volume's recorded filesystem UUID is proven before the kernel is told
            known = set(part["number"] for part in attrs["partitions"].values())
            unknown = [entry for entry in raw["tables"][name] if entry["number"] not in known]
            if unknown:
                raw.setdefault("table_probes", {})[name] = dict(
                    (str(entry["number"]), probe_table_entry(dev_path, entry, run)) for entry in unknown)
        for part in attrs["partitions"]:
            raw["probes"][part] = probe_signatures(os.path.join(dev_root, part), run)


def _openers_by_dev(attrs_by_name, names, proc_root):
    """``maj:min`` -> the processes that have that disk or partition open or
    mapped; one pass over /proc for all devices of interest."""
    devs = {}
    for name, attrs in attrs_by_name.items():
        if names is not None and name not in names:
            continue
        for dev in [attrs["dev"]] + [p["dev"] for p in attrs["partitions"].values()]:
            if dev and ":" in dev:
                major, minor = dev.split(":")
                devs[os.makedev(int(major), int(minor))] = dev
    found = {}
    if not devs:
        return found
    for hit in _openers.device_openers(devs, proc_root=proc_root):
        found.setdefault(devs[hit["rdev"]], []).append(dict((k, hit[k]) for k in ("pid", "command", "how", "path")))
    return found


# --------------------------------------------------------------------------------------
# Judging (pure)
# --------------------------------------------------------------------------------------

def _mounts_by_dev(mounts):
    by_dev = {}
    for mount in mounts:
        by_dev.setdefault(mount["dev"], []).append(mount)
        source = mount.get("source") or ""
        if source.startswith("/dev/"):
            by_dev.setdefault("name:" + os.path.basename(source), []).append(mount)
    return by_dev


def _fs_from_signatures(sigs):
    """(fstype, uuid, label, pttype) from a signature list."""
    fstype = uuid = label = pttype = None
    for sig in sigs or []:
        if sig["type"] in PARTITION_TABLE_TYPES:
            if pttype is None and sig["type"] != "PMBR":
                pttype = sig["type"]
            continue
        if fstype is None:
            fstype, uuid, label = sig["type"], sig.get("uuid"), sig.get("label")
    if pttype is None and any(sig["type"] == "PMBR" for sig in sigs or []):
        pttype = "gpt"
    return fstype, uuid, label, pttype


def _describe_sig(sig):
    text = sig["type"]
    if sig.get("uuid"):
        text += " (UUID %s)" % sig["uuid"]
    return text


def build(raw, dev_root="/dev"):
    """One record per block device of the host, each judged ``eligible`` or not.

    Partitions are listed inside their disk. Returns a list sorted by kernel name.
    """
    mounts = parse_mountinfo(raw.get("mountinfo") or "")
    mounts_by_dev = _mounts_by_dev(mounts)
    system_devs = {}
    for mount in mounts:
        if mount["mount_point"] in SYSTEM_MOUNTS:
            system_devs.setdefault(mount["dev"], []).append(mount["mount_point"])
            source = mount.get("source") or ""
            if source.startswith("/dev/"):
                system_devs.setdefault("name:" + os.path.basename(source), []).append(mount["mount_point"])
    swap_paths = set(os.path.basename(s["path"]) for s in raw.get("swaps") or [] if s.get("type") == "partition")
    swap_devs = set((raw.get("swap_devs") or {}).values())
    by_id = raw.get("by_id")
    links_of = {}
    for link, target in (by_id or {}).items():
        links_of.setdefault(target, []).append(link)

    disks = []
    for name in sorted(raw["devices"]):
        attrs = raw["devices"][name]
        disks.append(_build_disk(name, attrs, raw, dev_root, mounts_by_dev, system_devs,
                                 swap_paths, swap_devs, by_id, links_of))
    return disks


def _usage_of(name, dev, mounts_by_dev, system_devs, swap_paths, swap_devs):
    """Mount points, system mount points and swap use of one device node."""
    found = {}
    for mount in mounts_by_dev.get(dev, []) + mounts_by_dev.get("name:" + name, []):
        found[mount["mount_point"]] = mount
    mounts = [{"mount_point": m["mount_point"], "fstype": m["fstype"], "device": name}
              for m in sorted(found.values(), key=lambda m: m["mount_point"])]
    system = sorted(set(system_devs.get(dev, []) + system_devs.get("name:" + name, [])))
    swap = name in swap_paths or dev in swap_devs
    return mounts, system, swap


def _stable_identity(name, attrs, links_of, dev_root):
    """(stable_id, source, stable_path, by-id links) of one disk."""
    links = sorted(links_of.get(name, []), key=_by_id_rank)
    disk_links = [link for link in links if not re.search(r"-part[0-9]+$", link)]
    if disk_links:
        return disk_links[0], "by-id", os.path.join(dev_root, "disk", "by-id", disk_links[0]), links
    stable_id, source = stable_id_from_sysfs(attrs)
    return stable_id, source, None, links


def _build_partition(part_name, part, raw, dev_root, usage, table_entry):
    pprobe = (raw.get("probes") or {}).get(part_name)
    psigs = pprobe["signatures"] if pprobe else None
    pfstype, puuid, plabel, _ppttype = _fs_from_signatures(psigs)
    pmounts, psystem, pswap = usage(part_name, part["dev"])
    return {
        "name": part_name,
        "path": os.path.join(dev_root, part_name),
        "dev": part["dev"],
        "number": part["number"],
        "start": part["start"],
        "size": part["size"],
        "holders": part["holders"],
        "signatures": psigs,
        "probe_error": pprobe["error"] if pprobe else None,
        "fstype": pfstype,
        "uuid": puuid,
        "label": plabel,
        "partlabel": table_entry.get("name"),
        "partuuid": table_entry.get("uuid"),
        "parttype": table_entry.get("type"),
        "mounts": pmounts,
        "system_mounts": psystem,
        "swap": pswap,
        "openers": (raw.get("openers") or {}).get(part["dev"], []),
    }


def _with_fs_in_place(entry, found):
    """A table entry the kernel has no partition for, with the filesystem read at its place
    (:func:`probe_table_entry`): ``fstype``, ``fs_uuid``, ``fs_label`` (None when unread)."""
    found = found or {}
    return dict(entry, fstype=found.get("fstype"), fs_uuid=found.get("uuid"), fs_label=found.get("label"),
                fs_probe_error=found.get("error"))


def _build_disk(name, attrs, raw, dev_root, mounts_by_dev, system_devs, swap_paths, swap_devs,
                by_id, links_of):
    def usage(dev_name, dev):
        return _usage_of(dev_name, dev, mounts_by_dev, system_devs, swap_paths, swap_devs)

    stable_id, source, stable_path, links = _stable_identity(name, attrs, links_of, dev_root)
    probe = (raw.get("probes") or {}).get(name)
    sigs = probe["signatures"] if probe else None
    fstype, fs_uuid, fs_label, pttype = _fs_from_signatures(sigs)
    mounts, system, swap = usage(name, attrs["dev"])
    table = (raw.get("tables") or {}).get(name) or []
    in_place = (raw.get("table_probes") or {}).get(name) or {}
    if in_place:
        table = [_with_fs_in_place(entry, in_place.get(str(entry["number"]))) for entry in table]
    table_by_number = dict((entry["number"], entry) for entry in table)
    partitions = [_build_partition(n, attrs["partitions"][n], raw, dev_root, usage,
                                   table_by_number.get(attrs["partitions"][n]["number"]) or {})
                  for n in sorted(attrs["partitions"], key=lambda n: attrs["partitions"][n]["number"] or 0)]
    holders = list(attrs["holders"])
    opened = list((raw.get("openers") or {}).get(attrs["dev"], []))
    for part in partitions:
        holders.extend(h for h in part["holders"] if h not in holders)
        opened.extend(part["openers"])
        mounts = mounts + part["mounts"]
        system = sorted(set(system + part["system_mounts"]))
        swap = swap or part["swap"]
    disk = {
        "name": name, "path": os.path.join(dev_root, name), "kind": kind_of(name), "dev": attrs["dev"],
        "size": attrs["size"],
        "rotational": None if attrs.get("rotational") is None else bool(attrs["rotational"]),
        "removable": bool(attrs.get("removable")), "read_only": bool(attrs.get("ro")),
        "model": attrs.get("model"), "vendor": attrs.get("vendor"), "serial": attrs.get("serial"),
        "wwid": attrs.get("wwid"), "backing_file": attrs.get("backing_file"),
        "stable_id": stable_id, "stable_id_source": source, "stable_path": stable_path, "by_id": links,
        "udev": by_id is not None,
        # the names udev would have made, so that find_disk knows them without udev
        "by_id_synthesized": [] if by_id is not None else udev_by_id_names(dict(attrs, name=name)),
        "signatures": sigs, "probe_error": probe["error"] if probe else None,
        "fstype": fstype, "fs_uuid": fs_uuid, "fs_label": fs_label, "pttype": pttype,
        "partition_table": table, "partitions": partitions,
        "holders": holders, "openers": opened, "mounts": mounts, "system_mounts": system, "swap": swap,
        "exclusive_open_error": (raw.get("exclusive") or {}).get(name),
    }
    codes = judge(disk)
    disk["reason_codes"] = [code for code, _message in codes]
    disk["reasons"] = [message for _code, message in codes]
    disk["eligible"] = not codes
    return disk


def describe_openers(found):
    return ", ".join("pid %d (%s) has %s open%s" % (o["pid"], o["command"][:60], o["path"],
                                                    " (mapped)" if o["how"] == "maps" else "") for o in found)


def judge_partition(part):
    """Why a partition may not be erased or formatted now: a list of (code, message)."""
    reasons = []
    if part.get("system_mounts"):
        reasons.append(("system", "holds the system (%s)" % ", ".join(part["system_mounts"])))
    if part["mounts"]:
        reasons.append(("mounted", "mounted at %s" % ", ".join(m["mount_point"] for m in part["mounts"])))
    if part["swap"]:
        reasons.append(("swap", "in use as swap"))
    if part["holders"]:
        reasons.append(("holders", "held by %s" % ", ".join(part["holders"])))
    if part.get("openers"):
        reasons.append(("opened", "in use: %s" % describe_openers(part["openers"])))
    return reasons


def judge(disk):
    """Why ``disk`` may not be formatted: a list of (code, message); empty = eligible.

    Every rule is checked (not just the first that fails) so that the user sees the
    whole story of a disk at once.
    """
    reasons = []
    if disk["kind"] in ("zram", "ram"):
        reasons.append(("virtual", "a %s device (memory, not a disk)" % disk["kind"]))
    if disk["kind"] in ("rom", "floppy"):
        reasons.append(("removable", "an optical or floppy drive"))
    if not disk["size"]:
        reasons.append(("empty", "size is 0 (no medium, or a loop device with no file)"))
    if disk["read_only"]:
        reasons.append(("read_only", "read-only"))
    if disk["removable"]:
        reasons.append(("removable", "removable medium"))
    if disk["system_mounts"]:
        reasons.append(("system", "holds the system (%s)" % ", ".join(disk["system_mounts"])))
    if disk["mounts"]:
        reasons.append(("mounted", "mounted at %s" % ", ".join(
            "%s (%s)" % (m["mount_point"], m["device"]) for m in disk["mounts"])))
    if disk["swap"]:
        reasons.append(("swap", "used as swap"))
    if disk["holders"]:
        reasons.append(("holders", "held by %s (device-mapper, LVM, md or similar)"
                        % ", ".join(disk["holders"])))
    if disk.get("openers"):
        reasons.append(("opened", "in use: %s" % describe_openers(disk["openers"])))
    if disk["partitions"]:
        reasons.append(("partitions", "has partitions: %s" % ", ".join(p["name"] for p in disk["partitions"])))
    elif disk["partition_table"]:
        reasons.append(("partitions", "its partition table lists %d partition(s)" % len(disk["partition_table"])))
    if disk["size"]:
        if disk["signatures"] is None:
            reasons.append(("probe", "cannot be probed: %s" % (disk["probe_error"] or "not probed")))
        elif disk["signatures"]:
            non_pt = [s for s in disk["signatures"] if s["type"] not in PARTITION_TABLE_TYPES]
            if non_pt:
                reasons.append(("signatures", "carries %s" % ", ".join(_describe_sig(s) for s in non_pt)))
            if disk["pttype"]:
                reasons.append(("partition_table", "has a %s partition table" % disk["pttype"]))
        for part in disk["partitions"]:
            if part["signatures"]:
                reasons.append(("signatures", "partition %s carries %s" % (
                    part["name"], ", ".join(_describe_sig(s) for s in part["signatures"]))))
        if disk["exclusive_open_error"]:
            reasons.append(("exclusive", "cannot be opened exclusively: %s" % disk["exclusive_open_error"]))
    return reasons


def host_disks(**kwargs):
    """``build(collect())``: the judged disks of this host."""
    dev_root = kwargs.get("dev_root", "/dev")
    return build(collect(**kwargs), dev_root=dev_root)


def find_disk(disks, device):
    """The disk record a user's ``device`` string means, or None.

    ``device`` may be a kernel path (/dev/sdb), any /dev/disk/by-id/ path or link
    name, or a stable id as ``block_devices`` reports it (also on a host without
    udev, where /dev/disk/by-id does not exist). Symlinks that exist are resolved.
    """
    if not device:
        return None
    wanted = [device]
    if os.path.islink(device):
        wanted.append(os.path.realpath(device))
    base = device.rsplit("/disk/by-id/", 1)[1] if "/disk/by-id/" in device else device
    for disk in disks:
        if disk["path"] in wanted or disk["name"] == device:
            return disk
        if base == disk["stable_id"] or base in disk["by_id"] or base in disk.get("by_id_synthesized", ()):
            return disk
    return None


def find_partition(disks, device):
    """(disk, partition) when ``device`` names a partition, else (None, None)."""
    real = os.path.realpath(device) if os.path.islink(device) else device
    for disk in disks:
        for part in disk["partitions"]:
            if part["path"] in (device, real):
                return disk, part
    return None, None
