# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Taking local volumes away on their host: what holds a volume, and wiping it.

The host half of decommission and reclaim; it runs on the node and needs
nothing but /proc and the usual tools. The API half (plan, pods, claims, PVs,
claimRef) is ``workloads``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import stat

from ansible_collections.localpv.rollout.plugins.module_utils import volumes as vol

try:
    from ansible_collections.localpv.rollout.plugins.module_utils import kube as k
    KubeError = k.KubeError
except ImportError:  # pragma: no cover - the host half does not need it
    k = None
    KubeError = Exception


class RetireError(KubeError):
    """A step that must not go on, said for a human. ``state`` tells what was
    done already (for the module's result), ``code`` what kind of stop it is.
    A KubeError, so that modules report it like any failure of the API work."""

    def __init__(self, msg, code="error", state=None):
        super(RetireError, self).__init__(msg)
        self.msg = msg
        self.code = code
        self.state = state or {}


# --------------------------------------------------------------------------------------
# The host half: what holds a volume, and wiping it
# --------------------------------------------------------------------------------------

def _readlink(path):
    try:
        return os.readlink(path)
    except OSError:
        return None


def _under(path, root):
    return path is not None and (path == root or path.startswith(root.rstrip("/") + "/"))


def _mountinfo(proc_root="/proc"):
    from ansible_collections.localpv.rollout.plugins.module_utils import devices
    with open(os.path.join(proc_root, "self", "mountinfo")) as handle:
        return devices.parse_mountinfo(handle.read())


def _fstab(path="/etc/fstab"):
    from ansible_collections.localpv.rollout.plugins.module_utils import devices
    try:
        with open(path) as handle:
            return devices.parse_fstab(handle.read())
    except IOError:
        return []


def holders(paths, devs=(), proc_root="/proc", self_pid=None):
    """Processes that hold files under any of ``paths`` (their cwd, root,
    executable, an open file or a mapped file), or have open a block device
    whose ``st_rdev`` is in ``devs``. A list of ``{pid, command, path, how}``."""
    self_pid = self_pid or os.getpid()
    found = []
    try:
        pids = [int(p) for p in os.listdir(proc_root) if p.isdigit()]
    except OSError:
        return found
    for pid in sorted(pids):
        if pid == self_pid:
            continue
        base = os.path.join(proc_root, str(pid))
        links = [(how, _readlink(os.path.join(base, how))) for how in ("cwd", "root", "exe")]
        try:
            links += [("fd", os.path.join(base, "fd", fd)) for fd in os.listdir(os.path.join(base, "fd"))]
        except OSError:
            pass
        hit = None
        for how, target in links:
            if how == "fd":
                fd_path = target
                target = _readlink(fd_path)
                if devs and target and target.startswith("/dev/"):
                    try:
                        st = os.stat(fd_path)
                        if stat.S_ISBLK(st.st_mode) and st.st_rdev in devs:
                            hit = (how, target)
                    except OSError:
                        pass
            if hit is None and how != "root" and any(_under(target, p) for p in paths):
                hit = (how, target)
            if how == "root" and target not in (None, "/") and any(_under(target, p) for p in paths):
                hit = (how, target)
            if hit:
                break
        if hit is None:
            try:
                with open(os.path.join(base, "maps")) as handle:
                    for line in handle:
                        fields = line.split(None, 5)
                        if len(fields) == 6 and any(_under(fields[5].strip(), p) for p in paths):
                            hit = ("maps", fields[5].strip())
                            break
            except (IOError, OSError):
                pass
        if hit:
            try:
                with open(os.path.join(base, "cmdline"), "rb") as handle:
                    command = handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            except (IOError, OSError):
                command = ""
            found.append({"pid": pid, "command": command or "?", "how": hit[0], "path": hit[1]})
    return found


def volume_state(path, proc_root="/proc", fstab_path="/etc/fstab", mounts=None, fstab=None):
    """What is on the host at a volume's ``path``: the mount (and where else the
    same filesystem is mounted), the fstab lines, a block-volume link, and the
    processes that hold it."""
    mounts = _mountinfo(proc_root) if mounts is None else mounts
    fstab = _fstab(fstab_path) if fstab is None else fstab
    here = [m for m in mounts if m["mount_point"] == path]
    mount = here[-1] if here else None
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
            if m["dev"] == mount["dev"] and m["mount_point"] != path and _under(m["root"], mount["root"])
            and not _under(m["mount_point"], path)))
    devs = ()
    if state["is_link"]:
        try:
            st = os.stat(path)
            if stat.S_ISBLK(st.st_mode):
                devs = (st.st_rdev,)
                state["device"] = state["link_target"]
        except OSError:
            pass
    roots = [path] + state["other_mounts"]
    state["holders"] = holders(roots, devs, proc_root=proc_root) if (state["exists"] or mount) else []
    return state


def describe_holders(state):
    return "; ".join("pid %d (%s) %s %s" % (h["pid"], h["command"][:60], h["how"], h["path"]) for h in state["holders"])


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
            raise RetireError("%s is another filesystem mounted inside the volume; refusing to wipe %s" % (
                full, path), code="nested_mount")
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(full)
        else:
            os.unlink(full)
        removed += 1
    return removed


def wipe_device_start(device, length=1 << 20):
    """Zero the first ``length`` bytes of ``device`` (a block volume's partition)."""
    fd = os.open(device, os.O_WRONLY | getattr(os, "O_EXCL", 0))
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        os.lseek(fd, 0, os.SEEK_SET)
        todo = min(length, size)
        chunk = b"\0" * min(todo, 1 << 20)
        while todo > 0:
            todo -= os.write(fd, chunk[:todo])
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_zero(device, length=1 << 20):
    try:
        with open(device, "rb") as handle:
            data = handle.read(length)
    except (IOError, OSError):
        return False
    return not data.strip(b"\0")


def plan_partition_wipe(disks, names):
    """Which partitions (and partition tables) erasing the retired volumes
    ``names`` means, on ``disks`` (``devices.host_disks()``).

    A volume's partition is found by its GPT name (``volumes.partition_label``),
    so this works after its PV is gone. A partition that is mounted, held or
    swap is refused. A disk's partition table is erased too when every
    partition on it is one of these volumes. Returns ``(items, refused)``."""
    labels = dict((vol.partition_label(n), n) for n in names)
    items, refused = [], []
    for disk in disks:
        parts = [p for p in disk["partitions"] if p.get("partlabel") in labels]
        if not parts:
            continue
        for part in parts:
            why = []
            if part["mounts"]:
                why.append("mounted at %s" % ", ".join(m["mount_point"] for m in part["mounts"]))
            if part["holders"]:
                why.append("held by %s" % ", ".join(part["holders"]))
            if part["swap"]:
                why.append("in use as swap")
            entry = {"volume": labels[part["partlabel"]], "device": part["path"], "disk": disk["path"],
                     "signatures": [s.get("type") for s in part.get("signatures") or []]}
            if why:
                entry["reason"] = "partition %s of volume %s is %s" % (part["path"], entry["volume"], "; ".join(why))
                refused.append(entry)
            else:
                items.append(entry)
        whole = len(parts) == len(disk["partitions"]) == len(disk["partition_table"] or disk["partitions"])
        if whole and not any(r["disk"] == disk["path"] for r in refused) and not disk["system_mounts"]:
            items.append({"volume": None, "device": disk["path"], "disk": disk["path"], "table": True,
                          "signatures": [s.get("type") for s in disk.get("signatures") or []]})
    return items, refused


def run_wipe(items, run, check_mode=False, length=1 << 20):
    """Erase what :func:`plan_partition_wipe` listed: each partition's signatures
    (``wipefs -a``) and start, then whole partition tables. ``run(argv)``
    returns ``(rc, out, err)``. Returns the devices changed."""
    changed = []
    for item in [i for i in items if not i.get("table")] + [i for i in items if i.get("table")]:
        if not item.get("table") and not item["signatures"] and _is_zero(item["device"], length):
            continue
        if item.get("table") and not item["signatures"]:
            continue
        changed.append(item["device"])
        if check_mode:
            continue
        rc, out, err = run(["wipefs", "-a", item["device"]])
        if rc != 0:
            raise RetireError("wipefs -a %s failed: %s" % (item["device"], err or out), code="wipe")
        # the start too: wipefs leaves the GPT entries behind its erased header
        wipe_device_start(item["device"], length)
        if item.get("table"):
            run(["partx", "-d", item["device"]])
    return changed


MKFS = {
    "xfs": lambda dev, uuid: ["mkfs.xfs", "-f", "-q"] + (["-m", "uuid=%s" % uuid] if uuid else []) + [dev],
    "ext4": lambda dev, uuid: ["mkfs.ext4", "-F", "-q"] + (["-U", uuid] if uuid else []) + [dev],
    "ext3": lambda dev, uuid: ["mkfs.ext3", "-F", "-q"] + (["-U", uuid] if uuid else []) + [dev],
}


def wipe_contents(volume, how, run, check_mode=False, length=1 << 20, state=None):
    """Erase the data of one volume still in place, for reuse (reclaim).

    ``volume``: ``{path, mode}``. Filesystem volumes must be mounted at
    ``path`` (never a directory of the root filesystem): ``how=files`` removes
    everything under it, ``how=mkfs`` unmounts, makes the same filesystem again
    with the same UUID (so the fstab line and the PV stay right) and mounts it.
    Block volumes (a link to a device): the device's signatures and start are
    erased. Refuses while a process holds the volume. Returns a dict with
    ``path``, ``action`` and ``changed``."""
    path = volume["path"].rstrip("/")
    state = state or volume_state(path)
    out = {"path": path, "changed": False}
    if state["holders"] or state["other_mounts"]:
        raise RetireError("%s is still in use: %s%s" % (
            path, describe_holders(state), "; also mounted at %s" % ", ".join(state["other_mounts"])
            if state["other_mounts"] else ""), code="held")
    if (volume.get("mode") or "").lower() == "block" or state["is_link"]:
        device = state.get("device")
        if not device:
            raise RetireError("%s is not a link to a block device; refusing to wipe" % path, code="not_a_volume")
        rc, text, err = run(["wipefs", "--noheadings", device])
        dirty = bool(text.strip()) or not _is_zero(device, length)
        out.update(action="device-start", device=device, changed=dirty)
        if dirty and not check_mode:
            run(["wipefs", "-a", device])
            wipe_device_start(device, length)
        return out
    if not state["mounted"]:
        raise RetireError("%s is not a mount point: refusing to wipe what may be the host's own directory" % path,
                          code="not_mounted")
    if how == "mkfs":
        source, fstype = state["mount"]["source"], state["mount"]["fstype"]
        if not source.startswith("/dev/") or state["mount"]["root"] != "/" or fstype not in MKFS:
            raise RetireError("%s is %s on %s (root %s): only a whole xfs/ext filesystem on a device can be made "
                              "again; use how=files" % (path, fstype, source, state["mount"]["root"]),
                              code="not_mkfs")
        rc, text, err = run(["blkid", "-p", "-o", "value", "-s", "UUID", source])
        uuid = text.strip() or None
        out.update(action="mkfs", device=source, fstype=fstype, uuid=uuid, changed=True)
        if check_mode:
            return out
        for argv in (["umount", path], MKFS[fstype](source, uuid),
                     ["mount", path] if state["fstab"] else ["mount", "-t", fstype, source, path]):
            rc, text, err = run(argv)
            if rc != 0:
                raise RetireError("%s failed: %s" % (" ".join(argv), (err or text).strip()), code="mkfs")
        return out
    keep = ("lost+found",) if state["mount"]["fstype"].startswith("ext") and state["mount"]["root"] == "/" else ()
    entries = [e for e in os.listdir(path) if e not in keep]
    out.update(action="files", removed=len(entries), changed=bool(entries))
    if entries and not check_mode:
        remove_contents(path, keep)
    return out
