# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which processes use a path or a block device, read from /proc (like ``fuser``).

An exclusive open (O_EXCL) only fails while a mount, swap, device-mapper, md or
another *exclusive* opener holds a device. A process that opened a disk plainly
(``dd of=/dev/sdb``, a database on a raw device, an mmap of it) leaves no trace
there; it shows only in its /proc/<pid>/fd and /proc/<pid>/maps. This file finds
both kinds of use: files under a directory, and block devices by device number.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat


def readlink(path):
    try:
        return os.readlink(path)
    except OSError:
        return None


def under(path, root):
    """Whether ``path`` is ``root`` or below it."""
    return path is not None and (path == root or path.startswith(root.rstrip("/") + "/"))


def _block_rdev(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_rdev if stat.S_ISBLK(st.st_mode) else None


def _command(base):
    try:
        with open(os.path.join(base, "cmdline"), "rb") as handle:
            command = handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except (IOError, OSError):
        command = ""
    return command or "?"


def _links(base):
    links = [(how, readlink(os.path.join(base, how)), None) for how in ("cwd", "root", "exe")]
    try:
        fds = os.listdir(os.path.join(base, "fd"))
    except OSError:
        fds = []
    for fd in fds:
        fd_path = os.path.join(base, "fd", fd)
        links.append(("fd", readlink(fd_path), fd_path))
    return links


def _hit_link(how, target, fd_path, paths, devs):
    # by the device number, not the name: a node made anywhere (mknod) is the same disk
    if how == "fd" and devs and target and target.startswith("/") and _block_rdev(fd_path) in devs:
        return (how, target)
    if how == "root":
        # every process has a root; only a chroot into the volume counts
        return (how, target) if target not in (None, "/") and any(under(target, p) for p in paths) else None
    if any(under(target, p) for p in paths):
        return (how, target)
    return None


def _hit_maps(base, paths, devs, rdevs):
    try:
        with open(os.path.join(base, "maps")) as handle:
            for line in handle:
                fields = line.split(None, 5)
                if len(fields) != 6:
                    continue
                target = fields[5].strip()
                if any(under(target, p) for p in paths):
                    return ("maps", target)
                if devs and target.startswith("/"):
                    if target not in rdevs:  # the same libraries are mapped by every process
                        rdevs[target] = _block_rdev(target)
                    if rdevs[target] in devs:
                        return ("maps", target)
    except (IOError, OSError):
        pass
    return None


def _processes(proc_root, self_pid):
    """(pid, /proc/<pid>) of every process but this one."""
    self_pid = self_pid or os.getpid()
    try:
        pids = sorted(int(p) for p in os.listdir(proc_root) if p.isdigit())
    except OSError:
        return
    for pid in pids:
        if pid != self_pid:
            yield pid, os.path.join(proc_root, str(pid))


def holders(paths=(), devs=(), proc_root="/proc", self_pid=None):
    """Processes that hold files under any of ``paths`` (their cwd, root,
    executable, an open file or a mapped file), or have open or mapped a block
    device whose ``st_rdev`` is in ``devs``. A list of ``{pid, command, how, path}``,
    one per process (its first hit)."""
    paths, devs = list(paths), set(devs)
    found, rdevs = [], {}
    for pid, base in _processes(proc_root, self_pid):
        hit = None
        for how, target, fd_path in _links(base):
            hit = _hit_link(how, target, fd_path, paths, devs)
            if hit:
                break
        hit = hit or _hit_maps(base, paths, devs, rdevs)
        if hit:
            found.append({"pid": pid, "command": _command(base), "how": hit[0], "path": hit[1]})
    return found


def describe(found):
    """``pid 42 (dd of=/dev/sdb) fd /dev/sdb; ...``"""
    return "; ".join("pid %d (%s) %s %s" % (h["pid"], h["command"][:60], h["how"], h["path"]) for h in found)


def device_openers(devs, proc_root="/proc", self_pid=None):
    """Every (process, block device) pair where the process has a device whose
    ``st_rdev`` is in ``devs`` open (an fd) or mapped. A list of
    ``{pid, command, how, path, rdev}``."""
    devs, found, rdevs = set(devs), [], {}
    for pid, base in _processes(proc_root, self_pid):
        hits = {}
        for how, target, fd_path in _links(base):
            if how == "fd" and target and target.startswith("/"):
                rdev = _block_rdev(fd_path)
                if rdev in devs:
                    hits.setdefault(rdev, (how, target))
        try:
            with open(os.path.join(base, "maps")) as handle:
                targets = set(line.split(None, 5)[5].strip() for line in handle if len(line.split(None, 5)) == 6)
        except (IOError, OSError):
            targets = set()
        for target in sorted(t for t in targets if t.startswith("/")):
            if target not in rdevs:
                rdevs[target] = _block_rdev(target)
            if rdevs[target] in devs:
                hits.setdefault(rdevs[target], ("maps", target))
        if hits:
            command = _command(base)
            for rdev, (how, target) in sorted(hits.items()):
                found.append({"pid": pid, "command": command, "how": how, "path": target, "rdev": rdev})
    return found


def lock_holders(path, proc_root="/proc"):
    """The processes holding a BSD or POSIX lock on the file ``path`` (waiters
    excluded), from ``/proc/locks``: a list of ``{pid, command, kind}``."""
    try:
        st = os.stat(path)
        with open(os.path.join(proc_root, "locks")) as handle:
            lines = handle.read().splitlines()
    except (IOError, OSError):
        return []
    # /proc/locks names the file as MAJOR:MINOR:INODE, the device numbers in hex
    wanted = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    found = []
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->":
            continue
        try:
            major, minor, inode = fields[5].split(":")
            where = (int(major, 16), int(minor, 16), int(inode))
            pid = int(fields[4])
        except ValueError:
            continue
        if where == wanted and pid > 0:
            found.append({"pid": pid, "command": _command(os.path.join(proc_root, str(pid))), "kind": fields[1]})
    return found


def describe_lock_holders(path, proc_root="/proc"):
    """``held by pid 42 (mkfs.xfs -f /dev/sdb), FLOCK`` or a sentence saying no holder is known."""
    found = lock_holders(path, proc_root)
    if not found:
        return "no holder is listed in /proc/locks (it may be in another PID namespace, or gone already)"
    return "held by " + "; ".join("pid %d (%s), %s" % (h["pid"], h["command"][:60] or "?", h["kind"])
                                  for h in found)
