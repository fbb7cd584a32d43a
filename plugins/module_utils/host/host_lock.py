# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One run at a time on a host, and no host tool that outlives its run.

:class:`HostLock` is a BSD lock on a file under /run, held by the modules that
change a host's disks and mounts from their plan to their last command. A second
run waits for it, then plans again and finds the work done. The lock's file
descriptor is inherited by the tools those modules start (mkfs, sfdisk, wipefs):
a tool that a killed module left running still holds the lock, and the waiting
run names it instead of formatting under it.

:func:`tether` makes a module and its tools one process group that dies when the
run that started it is gone (its standard output closed by a killed playbook
or a dropped SSH connection), so a killed run leaves no mkfs behind.

A run's host work may take two modules (disk_prepare, then volume_mounts for
what it left to mount). :meth:`HostLock.reserve` hands the lock from the first
to the second: a reservation with a token, written under the lock, that makes
every other run's :class:`HostLock` let go of the lock and keep waiting until
the module that presents the token has taken it, or the reservation expires
(:data:`HANDOFF_TTL`; a run killed between its two modules). Without it a
second run could take the lock between them and mount the first run's volumes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import json
import os
import select
import signal
import threading
import time
import uuid

from ansible_collections.localpv.rollout.plugins.module_utils.host import openers

LOCK_PATH = "/run/localpv-rollout.lock"
DEFAULT_TIMEOUT = 600
# Seconds a hand-off reservation keeps other runs out. The gap between one run's two
# modules on a host is about a second; where it is longer (a play whose other hosts are
# still at the first module) the reservation lapses, and a second run may mount what the
# first made (safe: volume_mounts plans under the lock, it only reports the change). It
# is also the most a run killed between its two modules makes the next run wait.
HANDOFF_TTL = 30
# Tools whose leftover process is named as such: a run killed while they ran.
DISK_TOOLS = ("mkfs", "mkfs.xfs", "mkfs.ext4", "mkfs.ext3", "mke2fs", "sfdisk", "wipefs", "partx", "blkdiscard")

_inherited = []


class LockTimeout(Exception):
    def __init__(self, msg, holders):
        super(LockTimeout, self).__init__(msg)
        self.msg = msg
        self.holders = holders


def inherited_fds():
    """File descriptors that every host tool of this module gets (the host lock)."""
    return tuple(_inherited)


def _comm(pid, proc_root):
    try:
        with open(os.path.join(proc_root, str(pid), "comm")) as handle:
            return handle.read().strip()
    except (IOError, OSError):
        return "?"


def lock_holders(path=LOCK_PATH, proc_root="/proc", own_pid=None):
    """Processes that have the lock file ``path`` open: ``[{pid, comm, command, tool}]``,
    ``tool`` true for a disk tool (:data:`DISK_TOOLS`)."""
    own_pid = os.getpid() if own_pid is None else own_pid
    try:
        target = os.stat(path)
    except OSError:
        return []
    found = []
    for pid in sorted(int(p) for p in os.listdir(proc_root) if p.isdigit()):
        if pid == own_pid:
            continue
        fd_dir = os.path.join(proc_root, str(pid), "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                comm = _comm(pid, proc_root)
                found.append({"pid": pid, "comm": comm, "command": openers._command(os.path.join(proc_root, str(pid))),
                              "tool": comm in DISK_TOOLS or comm.startswith("mkfs")})
                break
    return found


def describe_holders(holders):
    """One phrase per holder: a disk tool is said to be one."""
    parts = []
    for h in holders:
        if h["tool"]:
            parts.append("pid %d is %s, still running (%s): a run killed while it ran left it; it ends by itself, "
                         "or stop it" % (h["pid"], h["comm"], h["command"]))
        else:
            parts.append("pid %d (%s)" % (h["pid"], h["command"]))
    return "; ".join(parts) or "a process that let it go meanwhile"


class HostLock(object):
    """``with HostLock(host, timeout=...)``: wait for the host's lock, up to
    ``timeout`` seconds, then hold it to the end of the block. A timeout raises
    :class:`LockTimeout` naming the holders. ``handoff``: the token of the
    reservation (:meth:`reserve`) that the previous module of this run made."""

    def __init__(self, host, timeout=DEFAULT_TIMEOUT, path=LOCK_PATH, proc_root="/proc", sleep=time.sleep,
                 clock=time.time, handoff=None):
        self.host, self.timeout, self.path, self.proc_root = host, timeout, path, proc_root
        self._sleep, self._clock = sleep, clock
        # the token of a reservation made for this module by the previous module of its run
        self.handoff = handoff
        self.handoff_path = path + ".handoff"
        self.fd = None
        self.waited = 0.0

    def _reservation(self):
        """Under the flock: the live reservation that keeps this module out, or None.
        A reservation for this module (its token) or an expired one is removed."""
        try:
            with open(self.handoff_path) as handle:
                held = json.load(handle)
            token, until = held["token"], float(held["until"])
        except (IOError, OSError, ValueError, KeyError, TypeError):
            return None
        if token == self.handoff or until <= self._clock():
            try:
                os.unlink(self.handoff_path)
            except OSError:
                pass
            return None
        return held

    def reserve(self, ttl=HANDOFF_TTL):
        """While holding the lock: reserve it for the next module of this run, which
        presents the returned token as ``handoff``. Returns None where it cannot be written."""
        token = uuid.uuid4().hex
        record = {"token": token, "until": self._clock() + ttl, "pid": os.getpid()}
        tmp = "%s.%d" % (self.handoff_path, os.getpid())
        try:
            with open(tmp, "w") as handle:
                json.dump(record, handle)
            os.rename(tmp, self.handoff_path)
        except (IOError, OSError):
            return None
        return token

    def __enter__(self):
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            os.makedirs(directory)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        start = self._clock()
        while True:
            reserved = None
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                reserved = self._reservation()
                if reserved is None:
                    break
                # another run's next module is on its way: let go, and wait for it
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            except (IOError, OSError) as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if self._clock() - start >= self.timeout:
                os.close(self.fd)
                self.fd = None
                if reserved is not None:
                    raise LockTimeout(
                        "host %s: another run (pid %s) handed %s on to its next step, which has not taken it; "
                        "it is reserved for %d s more, longer than the lock timeout of %d s. Nothing was changed; "
                        "run again when it is done" % (
                            self.host, reserved.get("pid", "?"), self.path,
                            max(0, float(reserved["until"]) - self._clock()), self.timeout), [])
                holders = lock_holders(self.path, self.proc_root)
                raise LockTimeout(
                    "host %s: another run has held %s for %d s, longer than the lock timeout: %s. Nothing was "
                    "changed; run again when it is done" % (self.host, self.path, self.timeout,
                                                            describe_holders(holders)), holders)
            self._sleep(0.5)
        self.waited = self._clock() - start
        os.ftruncate(self.fd, 0)
        os.write(self.fd, ("%d\n" % os.getpid()).encode("ascii"))
        _inherited.append(self.fd)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            if self.fd in _inherited:
                _inherited.remove(self.fd)
            os.close(self.fd)
            self.fd = None
        return False


def controller_gone(fd=1):
    """Whether the reader of ``fd`` (the module's standard output, the way back
    to the controller) has gone away: a pipe or socket whose other end closed."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    for _fd, events in poller.poll(0):
        if events & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
            return True
    return False


def tether(interval=1.0, fd=1):
    """Make this module the leader of its own process group (its tools are born
    into it) and kill the whole group as soon as the run that started it is gone.
    Returns the watching thread (a daemon), or None where that cannot be done."""
    try:
        os.setpgid(0, 0)
    except OSError:
        return None
    try:
        if controller_gone(fd):
            return None
    except (OSError, ValueError):
        return None

    def watch():
        while True:
            time.sleep(interval)
            if controller_gone(fd):
                os.killpg(os.getpgrp(), signal.SIGKILL)

    thread = threading.Thread(target=watch, name="localpv-tether")
    thread.daemon = True
    thread.start()
    return thread
