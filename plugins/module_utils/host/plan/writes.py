# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Carrying out a plan (``apply_plan()``). Each disk is locked (a BSD flock on the whole
disk, which udev and util-linux honour) from a last re-check through partitioning
and mkfs, and every destructive command is preceded by a re-probe."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices
from ansible_collections.localpv.rollout.plugins.module_utils.host import host_lock
from ansible_collections.localpv.rollout.plugins.module_utils.host import host_volumes as hv
from ansible_collections.localpv.rollout.plugins.module_utils.host import mounts as mount_rules
from ansible_collections.localpv.rollout.plugins.module_utils.host import openers
from ansible_collections.localpv.rollout.plugins.module_utils.host.host_volumes import partition_label
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan.entries import MIB
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan.recognise import (
    fingerprint, hard_reasons, labels_on, LINUX_FS_TYPE, partition_fingerprint,
)
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan.render import refusal_message


class PrepareError(Exception):
    """Applying the plan failed; ``written`` says whether any byte was written."""

    def __init__(self, message, written=False, commands=None):
        super(PrepareError, self).__init__(message)
        self.written = written
        self.commands = commands or []


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
        hard = hard_reasons(fresh)
    elif entry["state"] == "new":
        hard = list(fresh["reasons"])
        if not hard and not sampler(disk, fresh["size"])["zero"]:
            hard = ["holds unrecognised data (not zero where sampled)"]
    else:
        hard = hard_reasons(fresh, skip=("mounted", "exclusive", "opened"))
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
