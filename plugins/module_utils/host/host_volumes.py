# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host side of a volume's life: its partition name, what is on it, who
holds it, making its filesystem and erasing it.

Everything here runs on the node and needs only /proc, /sys and the usual
tools (util-linux, xfsprogs, e2fsprogs); nothing here talks to Kubernetes.
disk_prep, decommission and reclaim all erase through :func:`erase` and format
through :func:`mkfs_argv`, so the three of them destroy and make data the same way.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import shutil
import stat

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices
from ansible_collections.localpv.rollout.plugins.module_utils.host import openers

MIB = 1 << 20
PARTITION_LABEL_PREFIX = "localpv-"
# GPT partition names hold 36 UTF-16 code units.
PARTITION_LABEL_MAX = 36
_HASH_LEN = 8
# The content sampler ("blank" proof). ``spread`` reads both ends (where partition
# tables, superblocks and md/LUKS headers live) and evenly spread regions no farther
# apart than 1/SPREAD_REGIONS of the device, so data of more than that length
# anywhere is seen; ``full`` reads every byte. bench/bench_blank_proof.py chose the
# region size: 64 KiB costs about what 4 KiB does (a read is one seek either way)
# and a fingerprint's digest covers more of the disk.
PROOFS = ("spread", "full")
END_LENGTH = 8 * MIB
SPREAD_REGIONS = 256
SAMPLE_LENGTH = 64 * 1024
FULL_CHUNK = 4 * MIB
# The filesystems mkfs_argv can make (again, for reclaim); plan/entries.py's FSTYPES, what
# disk_prepare makes, is a part of them.
MKFS_TYPES = ("xfs", "ext4", "ext3")


class VolumeError(Exception):
    """A host step that must not go on, said for a human; ``code`` says what kind."""

    def __init__(self, msg, code="error"):
        super(VolumeError, self).__init__(msg)
        self.msg = msg
        self.code = code


# --------------------------------------------------------------------------------------
# Names on disk
# --------------------------------------------------------------------------------------

def partition_label(volume):
    """The GPT partition name that marks a partition as volume ``volume`` of ours.

    ``localpv-<volume>`` when it fits in 36 characters; otherwise a prefix of it
    and a hash of the whole name, so that a re-run recognises its own partitions
    and two long names never share a label.
    """
    label = PARTITION_LABEL_PREFIX + volume
    if len(label) <= PARTITION_LABEL_MAX:
        return label
    head = label[: PARTITION_LABEL_MAX - _HASH_LEN - 1].rstrip("-")
    return "%s-%s" % (head, hashlib.sha256(volume.encode("utf-8")).hexdigest()[:_HASH_LEN])


# A retired volume (decommission) keeps its data but loses its name: its GPT
# partition is renamed localpv-retired-<YYYYMMDD>-<hash of the volume's name>, so
# that no run takes it for the volume again, after a reboot or on another host
# too. A bind volume has no partition: a marker file in its source directory says it.
RETIRED_LABEL_PREFIX = PARTITION_LABEL_PREFIX + "retired-"
RETIRED_MARKER = ".localpv-retired"


def _name_hash(volume):
    return hashlib.sha256(volume.encode("utf-8")).hexdigest()[:_HASH_LEN]


def retired_label(volume, day):
    """The GPT partition name of volume ``volume`` retired on ``day`` (``YYYY-MM-DD``)."""
    return "%s%s-%s" % (RETIRED_LABEL_PREFIX, day.replace("-", ""), _name_hash(volume))


def retired_day(label, volume=None):
    """``YYYY-MM-DD`` when ``label`` marks a retired volume (``volume``, when given), else None."""
    if not (label or "").startswith(RETIRED_LABEL_PREFIX):
        return None
    day, _sep, digest = label[len(RETIRED_LABEL_PREFIX):].partition("-")
    if len(day) != 8 or not day.isdigit() or (volume is not None and digest != _name_hash(volume)):
        return None
    return "%s-%s-%s" % (day[:4], day[4:6], day[6:])


def read_retired_marker(directory):
    """What the retirement marker in ``directory`` says (``{volume, day}``), or None."""
    try:
        with open(os.path.join(directory, RETIRED_MARKER)) as handle:
            fields = dict(line.split("=", 1) for line in handle.read().splitlines() if "=" in line)
    except (IOError, OSError):
        return None
    return {"volume": fields.get("volume"), "day": fields.get("retired") or "an unknown day"}


def write_retired_marker(directory, volume, day):
    """Write the retirement marker of bind volume ``volume`` into ``directory``."""
    path = os.path.join(directory, RETIRED_MARKER)
    with open(path + ".tmp", "w") as handle:
        handle.write("volume=%s\nretired=%s\nby=decommission\n" % (volume, day))
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(path + ".tmp", path)
    return path


# --------------------------------------------------------------------------------------
# What is on a device
# --------------------------------------------------------------------------------------

def sample_offsets(size, regions=SPREAD_REGIONS, length=SAMPLE_LENGTH, ends=END_LENGTH):
    """(offset, length) of the regions the ``spread`` proof reads: the first and
    last ``ends`` bytes and ``regions`` regions of ``length`` spread evenly between
    them, so that no two reads are farther apart than ``size / regions``. A device
    too small for that is read whole."""
    if size <= 2 * ends + regions * length:
        return [(0, size)] if size else []
    out = [(0, ends)]
    inner = size - 2 * ends
    for index in range(1, regions + 1):
        offset = ends + inner * index // (regions + 1)
        offset -= offset % 4096
        out.append((offset, min(length, size - ends - offset)))
    out.append((size - ends, ends))
    return [(o, n) for o, n in out if n > 0]


def full_offsets(size, chunk=FULL_CHUNK):
    """(offset, length) of every chunk of a device: the ``full`` proof."""
    return [(offset, min(chunk, size - offset)) for offset in range(0, size, chunk)]


def human_bytes(value):
    """1.5 GiB, 64 KiB, 512 B: the sizes the plan says it read."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if value >= 1 << shift:
            text = ("%.1f" % (float(value) / (1 << shift))).rstrip("0").rstrip(".")
            return "%s %s" % (text, unit)
    return "%d B" % value


def describe_proof(result, size):
    """What the sampler read and found, in the words of the plan and its refusals:
    ``256 spread regions and both 8 MiB ends (24 MiB of 2 GiB) read, all zero``."""
    if result.get("error"):
        return "could not be read (%s)" % result["error"]
    if "read" not in result:
        return "zero where sampled" if result.get("zero") else "not zero where sampled"
    if result.get("proof") == "full":
        what = "the whole device (%s) read" % human_bytes(result["read"])
    elif result["read"] >= size:
        what = "the whole device (%s) read" % human_bytes(result["read"])
    else:
        what = "%d spread regions and both %s ends (%s of %s) read" % (
            result.get("regions", 0), human_bytes(END_LENGTH), human_bytes(result["read"]), human_bytes(size))
    if result.get("zero"):
        return what + ", all zero"
    return what + ", data at offset %d (%s)" % (result.get("data_at") or 0, human_bytes(result.get("data_at") or 0))


def sample(path, size=None, proof="spread", progress=None):
    """Read ``path`` as the ``proof`` says: ``spread`` (:func:`sample_offsets`) or
    ``full`` (every byte, with ``progress(done, total)`` called about every 5%).

    Returns ``{zero, digest, error, proof, read, regions, data_at}``: ``zero`` when
    every byte read is zero (what a never-used disk, or a partition a run made and
    was interrupted before mkfs, looks like; raw data a pod wrote has no signature
    and fails here), ``digest`` a sha256 of the bytes read, for the disk's
    fingerprint, ``read`` how many bytes were read and ``data_at`` the first
    offset that is not zero. A device that cannot be read is not zero."""
    digest = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return {"zero": False, "digest": "", "error": str(exc), "proof": proof, "read": 0}
    zero, done, data_at = True, 0, None
    try:
        if size is None:
            size = os.lseek(fd, 0, os.SEEK_END)
        plan = full_offsets(size) if proof == "full" else sample_offsets(size)
        step, next_report = max(size // 20, 1), 0
        for offset, length in plan:
            os.lseek(fd, offset, os.SEEK_SET)
            data = os.read(fd, length)
            digest.update(data)
            done += len(data)
            if zero and (len(data) != length or data.count(b"\0") != length):
                zero = False
                data_at = offset + len(data) - len(data.lstrip(b"\0")) if data else offset
            if progress is not None and done >= next_report:
                progress(done, size)
                next_report = done + step
            if proof == "full" and hasattr(os, "posix_fadvise"):
                # a whole-disk read must not push the host's working set out of the page cache
                os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    except OSError as exc:
        return {"zero": False, "digest": "", "error": str(exc), "proof": proof, "read": done}
    finally:
        os.close(fd)
    regions = max(len(plan) - 2, 0) if proof != "full" and done < size else 0
    return {"zero": zero, "digest": digest.hexdigest()[:16], "error": None, "proof": proof, "read": done,
            "regions": regions, "data_at": data_at}


def probe(path, run):
    """The signatures on ``path`` right now, or raise VolumeError."""
    found = devices.probe_signatures(path, run)
    if found["signatures"] is None:
        raise VolumeError("cannot probe %s: %s" % (path, found["error"]), code="probe")
    return found["signatures"]


# --------------------------------------------------------------------------------------
# Making and erasing
# --------------------------------------------------------------------------------------

def mkfs_argv(fstype, device, options="", uuid=None, force=False):
    """The one mkfs command line: ``fstype`` on ``device`` with the user's
    ``options``; ``uuid`` to make a filesystem again under the same UUID;
    ``force`` only where an old filesystem of ours is made again (reclaim) or the
    target is a scratch file (capacity prediction)."""
    argv = ["mkfs.%s" % fstype, "-q"]
    if fstype == "xfs":
        argv += (["-f"] if force else []) + (["-m", "uuid=%s" % uuid] if uuid else [])
    else:
        argv += (["-F"] if force else []) + (["-U", uuid] if uuid else [])
    return argv + (options or "").split() + [device]


def zero_ends(device, length=MIB):
    """Zero the first and the last ``length`` bytes of ``device``: a GPT's
    primary header and entries and most superblocks live at the start; the
    backup GPT header and its entry array (the partition names, in UTF-16) live
    in the last 33 sectors, and wipefs clears the backup header's magic only."""
    fd = os.open(device, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        todo = min(length, size)
        for start in sorted(set((0, max(0, size - todo)))):
            os.lseek(fd, start, os.SEEK_SET)
            left = todo
            chunk = b"\0" * min(left, MIB)
            while left > 0:
                left -= os.write(fd, chunk[:left])
        os.fsync(fd)
    finally:
        os.close(fd)


def ends_are_zero(device, length=MIB):
    """Whether the first and the last ``length`` bytes of ``device`` are zeros
    (what :func:`erase` leaves); False when it cannot be read."""
    try:
        with open(device, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            for start in (0, max(0, size - length)):
                handle.seek(start)
                if handle.read(min(length, size)).strip(b"\0"):
                    return False
    except (IOError, OSError):
        return False
    return True


def erase(device, run, length=MIB):
    """The one wipe of decommission, reclaim and disk_prep: every signature
    wipefs knows, then the first and the last ``length`` bytes (the backup GPT
    and its entries too), so that what it leaves is blank to disk_prep.
    Returns the commands run."""
    rc, out, err = run(["wipefs", "--all", "--quiet", device])
    if rc != 0:
        raise VolumeError("wipefs --all %s failed: %s" % (device, (err or out).strip()), code="wipe")
    zero_ends(device, length)
    return ["wipefs --all --quiet %s" % device, "zero the first and the last %d bytes of %s" % (length, device)]


# A block volume is handed to the next tenant as a raw device: every byte it can read
# must be zero. "full" overwrites the device here; "quick" asks the kernel to zero it
# (BLKZEROOUT: offloaded where the device can, else the kernel writes the zeros), which
# always reads back as zeros, unlike a plain discard.
BLOCK_WIPES = ("full", "quick")
PROGRESS_PATH = "/run/localpv-rollout-wipe.progress"


def zero_device(device, progress_path=PROGRESS_PATH, chunk=4 * MIB, every=5.0, clock=None):
    """Overwrite every byte of ``device`` with zeros; a progress line goes to
    ``progress_path`` every ``every`` seconds. Returns the bytes written."""
    import time
    clock = clock or time.time
    fd = os.open(device, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        os.lseek(fd, 0, os.SEEK_SET)
        zeros, done, said = b"\0" * chunk, 0, clock()
        while done < size:
            done += os.write(fd, zeros[:min(chunk, size - done)])
            if progress_path and clock() - said >= every:
                _progress(progress_path, "zeroing %s: %d of %d MiB (%d%%)\n" % (
                    device, done // MIB, size // MIB, 100 * done // size))
                said = clock()
        os.fsync(fd)
    finally:
        os.close(fd)
    if progress_path:
        _progress(progress_path, "zeroed %s: all %d MiB\n" % (device, size // MIB))
    return size


def _progress(path, line):
    try:
        with open(path, "w") as handle:
            handle.write(line)
    except (IOError, OSError):
        pass  # the progress line is a courtesy; the wipe goes on


def sanitize_block(device, how, run, progress_path=None):
    """Make every byte of block device ``device`` read as zero, ``how`` = full or
    quick (see :data:`BLOCK_WIPES`). Returns one line saying which ran."""
    if how == "quick":
        rc, out, err = run(["blkdiscard", "--zeroout", device])
        if rc != 0:
            raise VolumeError("blkdiscard --zeroout %s failed: %s; nothing more was erased" % (
                device, (err or out).strip()), code="wipe")
        return "every byte zeroed by the kernel (quick: blkdiscard --zeroout)"
    size = zero_device(device, progress_path or PROGRESS_PATH)
    return "every byte overwritten with zeros (full: %d bytes)" % size


# --------------------------------------------------------------------------------------
# How big a filesystem is, before it is mounted
# --------------------------------------------------------------------------------------
# statvfs reports f_blocks = the filesystem's blocks less what the kernel counts as
# its own overhead: for xfs the internal log (xfs_fs_statfs), for ext4 the
# superblock's "Overhead clusters" (written by mke2fs 1.46.5 and later). Read from
# the superblock, the same number is known right after mkfs, before any mount, so
# a PV's capacity is the same before and after its volume is mounted.

def _fields(text, sep):
    values = {}
    for line in text.splitlines():
        if sep in line:
            key, value = line.split(sep, 1)
            values[key.strip().lower()] = value.strip()
    return values


def _int(values, key):
    try:
        return int(values[key].split()[0])
    except (KeyError, ValueError, IndexError):
        return None


def filesystem_bytes(device, fstype, run):
    """The bytes statvfs will report for the filesystem on ``device`` once
    mounted, read from its superblock; None when that cannot be known."""
    if fstype == "xfs":
        rc, out, _err = run(["xfs_db", "-r", "-c", "sb 0", "-c", "p dblocks logblocks logstart blocksize", device])
        values = _fields(out, "=") if rc == 0 else {}
        keys = ("dblocks", "logblocks", "logstart", "blocksize")
        dblocks, logblocks, logstart, bsize = [_int(values, k) for k in keys]
        if None in (dblocks, logblocks, logstart, bsize):
            return None
        return (dblocks - (logblocks if logstart else 0)) * bsize
    if fstype in ("ext4", "ext3"):
        rc, out, _err = run(["dumpe2fs", "-h", device])
        values = _fields(out, ":") if rc == 0 else {}
        blocks, overhead, bsize = [_int(values, k) for k in ("block count", "overhead clusters", "block size")]
        cluster = _int(values, "cluster size") or bsize
        if None in (blocks, overhead, bsize):
            return None
        return (blocks - overhead * (cluster // bsize)) * bsize
    return None


def predict_filesystem_bytes(fstype, size, options, run, scratch_dir=None):
    """What :func:`filesystem_bytes` will say after ``mkfs.<fstype> <options>`` on
    a partition of ``size`` bytes: the same mkfs, run on a sparse scratch file of
    that size (xfs only computes its geometry, ``-N``; ext4 writes its metadata,
    a few MiB per TiB). None when the tools cannot tell."""
    import tempfile
    workdir = tempfile.mkdtemp(prefix="localpv-predict-", dir=scratch_dir)
    scratch = os.path.join(workdir, "fs")
    try:
        with open(scratch, "wb") as handle:
            handle.truncate(size)
        if fstype == "xfs":
            rc, out, _err = run(["mkfs.xfs", "-N", "-f"] + (options or "").split() + [scratch])
            return _xfs_bytes_from_geometry(out) if rc == 0 else None
        argv = mkfs_argv(fstype, scratch, "-E lazy_itable_init=1,lazy_journal_init=1,nodiscard " + (options or ""),
                         force=True)
        rc, _out, _err = run(argv)
        return filesystem_bytes(scratch, fstype, run) if rc == 0 else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _xfs_bytes_from_geometry(text):
    data = log = None
    for line in text.splitlines():
        fields = dict(f.split("=", 1) for f in line.replace(",", " ").split() if "=" in f and not f.endswith("="))
        if line.startswith("data") and "blocks" in fields:
            data = (int(fields["bsize"]), int(fields["blocks"]))
        elif line.startswith("log") and "internal" in line and "blocks" in fields:
            log = int(fields["blocks"])
    if data is None:
        return None
    return (data[1] - (log or 0)) * data[0]


# --------------------------------------------------------------------------------------
# A volume on the host: its mount, fstab lines, link and holders
# --------------------------------------------------------------------------------------

def read_mountinfo(proc_root="/proc"):
    """The mounts of this host now (:func:`devices.parse_mountinfo`)."""
    with open(os.path.join(proc_root, "self", "mountinfo")) as handle:
        return devices.parse_mountinfo(handle.read())


def read_fstab_text(path="/etc/fstab"):
    """The text of the fstab at ``path``; empty when there is none."""
    try:
        with open(path) as handle:
            return handle.read()
    except IOError:
        return ""


def _fstab(path="/etc/fstab"):
    return devices.parse_fstab(read_fstab_text(path))


def volume_state(path, proc_root="/proc", fstab_path="/etc/fstab", mounts=None, fstab=None):
    """What is on the host at a volume's ``path``: the mount (and where else the
    same filesystem is mounted), the fstab lines, a block-volume link, and the
    processes that hold it."""
    mounts = read_mountinfo(proc_root) if mounts is None else mounts
    fstab = _fstab(fstab_path) if fstab is None else fstab
    mount = devices.mount_at(mounts, path)
    state = {
        "path": path,
        "exists": os.path.lexists(path),
        "is_link": os.path.islink(path),
        "link_target": os.path.realpath(path) if os.path.islink(path) else None,
        "mounted": mount is not None,
        "mount": dict((key, mount[key]) for key in ("source", "fstype", "root", "dev")) if mount else None,
        "fstab": [dict((key, e[key]) for key in ("src", "path", "fstype", "opts")) for e in fstab if e["path"] == path],
        "other_mounts": [],
    }
    if mount:
        state["other_mounts"] = sorted(set(
            m["mount_point"] for m in mounts
            if m["dev"] == mount["dev"] and m["mount_point"] != path and openers.under(m["root"], mount["root"])
            and not openers.under(m["mount_point"], path)))
    devs = ()
    if state["is_link"]:
        try:
            st = os.stat(path)
            if stat.S_ISBLK(st.st_mode):
                devs = (st.st_rdev,)
                state["device"] = state["link_target"]
                state["dev"] = "%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
        except OSError:
            pass
    roots = [path] + state["other_mounts"]
    state["holders"] = openers.holders(roots, devs, proc_root=proc_root) if (state["exists"] or mount) else []
    return state


def partition_identity(dev, run, sys_root="/sys", dev_root="/dev"):
    """What the partition with device number ``dev`` (``maj:min``) is on its disk:
    ``{disk, number, partlabel, partuuid, parttype}``, read from the table on the
    disk; None when ``dev`` is not a partition."""
    real = os.path.realpath(os.path.join(sys_root, "dev", "block", dev or "-"))
    try:
        with open(os.path.join(real, "partition")) as handle:
            number = int(handle.read().strip())
    except (IOError, OSError, ValueError):
        return None
    disk = os.path.join(dev_root, os.path.basename(os.path.dirname(real)))
    rc, out, _err = run(["partx", "-g", "-o", devices.PARTX_COLUMNS, disk])
    entry = dict((e["number"], e) for e in (devices.parse_partx(out) if rc == 0 else [])).get(number) or {}
    return {"disk": disk, "number": number, "partlabel": entry.get("name"), "partuuid": entry.get("uuid"),
            "parttype": entry.get("type")}


def describe_holders(state):
    return openers.describe(state["holders"])


def remove_contents(path, keep=("lost+found",)):
    """Remove every entry under the mount point ``path`` (not the mount point
    itself), never crossing into another filesystem mounted below it.
    Returns the number of top-level entries removed."""
    dev = os.lstat(path).st_dev
    removed = 0
    for entry in sorted(os.listdir(path)):
        if entry in keep:
            continue
        full = os.path.join(path, entry)
        st = os.lstat(full)
        if st.st_dev != dev or os.path.ismount(full):
            raise VolumeError("%s is another filesystem mounted inside the volume; refusing to wipe %s" % (
                full, path), code="nested_mount")
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(full)
        else:
            os.unlink(full)
        removed += 1
    return removed
