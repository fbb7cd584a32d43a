# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mount a host's volumes and link its block volumes, all in one pass.

What a loop of ``ansible.posix.mount state=mounted`` and one of
``ansible.builtin.file state=link force=true`` do item by item, done for all the
volumes of a host at once: one look at fstab, the mount table and the paths, every
refusal before the first change, /etc/fstab written once (atomically, and only when
its text changes), then ``mount <path>`` for what is not mounted (mount(8) takes the
line from fstab, as ansible.posix.mount does) and the links.

The fstab lines are the ones ansible.posix.mount writes: six fields, dump and passno
0, and space, backslash and ampersand as octal escapes. So ``ansible.posix.mount
state=absent`` (decommission) finds and removes them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices

FSTAB = "/etc/fstab"
ROOT_MODE = 0o755
# mount(8) processes at a time: most of a mount is the kernel reading the filesystem's log
MOUNT_WORKERS = 4
# What ansible.posix.mount escapes (backslash first), and the whitespace that would split a field.
_ESCAPES = (("\\", "\\134"), (" ", "\\040"), ("&", "\\046"), ("\t", "\\011"), ("\n", "\\012"))
# How many of the names in a mount point with files in it its refusal shows
SHOWN_NAMES = 3
# fstab source tags and the blkid -p names of the same values
_TAGS = {"UUID": "UUID", "LABEL": "LABEL", "PARTUUID": "PART_ENTRY_UUID", "PARTLABEL": "PART_ENTRY_NAME"}


class MountError(Exception):
    """Refusals (nothing changed) or failures midway; ``done`` says what did happen."""

    def __init__(self, reasons, done=None):
        super(MountError, self).__init__("; ".join(reasons))
        self.reasons = list(reasons)
        self.done = done


# --------------------------------------------------------------------------------------
# fstab lines
# --------------------------------------------------------------------------------------

def escape_field(value):
    for char, code in _ESCAPES:
        value = value.replace(char, code)
    return value


def uuid_src(uuid):
    """The fstab source of a filesystem we made: ``UUID=<uuid>``, or None before it
    has one (not made yet)."""
    return "UUID=%s" % uuid if uuid else None


def uuid_of_src(src):
    """The UUID of an fstab source ``UUID=<uuid>`` (any case of ``UUID``), else None:
    the reading of :func:`uuid_src`."""
    return src[len("UUID="):] if src[:len("UUID=")].upper() == "UUID=" else None


def link_target(path):
    """Where the symlink at ``path`` points; None when there is no symlink there."""
    try:
        return os.readlink(path)
    except OSError:
        return None


def fstab_line(item):
    """The line of a mount item, as ansible.posix.mount writes it."""
    return " ".join(escape_field(item[key]) for key in ("src", "path", "fstype", "opts")) + " 0 0"


def _line_is(entry, src, fstype, opts):
    return (entry["src"], entry["fstype"], entry["opts"], entry["dump"], entry["passno"]) == (
        src, fstype, opts, "0", "0")


def _lines_of(entries, path):
    return [entry for entry in entries if entry["path"] == path]


def fstab_right(entries, path, src, fstype, opts):
    """Whether the parsed fstab ``entries`` hold the line wanted at ``path``: exactly
    one line there, with this source, type and options, dump and passno 0. The one
    rule of a right fstab line, for disk_prepare's plan and for volume_mounts: a line
    they judge differently (``... 0 2``) would never be fixed."""
    own = _lines_of(entries, path)
    return len(own) == 1 and src is not None and _line_is(own[0], src, fstype, opts)


def render_fstab(text, mounts):
    """``text`` with exactly one line, as wanted, per mount item: a line that differs is
    replaced where it stands, further lines for the same mount point are dropped, a
    missing one is appended. Every other line stays as it is; an fstab that needs
    nothing is returned unchanged."""
    lines = text.splitlines()
    entries = devices.parse_fstab(text)
    drop, tail, edited = set(), [], False
    for item in mounts:
        own = _lines_of(entries, item["path"])
        if not own:
            tail.append(fstab_line(item))
            continue
        if not _line_is(own[0], item["src"], item["fstype"], item["opts"]):
            lines[own[0]["line"]] = fstab_line(item)
            edited = True
        drop.update(entry["line"] for entry in own[1:])
    if not (drop or tail or edited):
        return text
    kept = [line for index, line in enumerate(lines) if index not in drop] + tail
    return "\n".join(kept) + "\n" if kept else ""


def write_file_atomic(path, text, move=None):
    """Replace the file at ``path`` (a symlink's target) with ``text``: a temporary file
    in the same directory with the old file's mode and owner, then one rename (or
    ``move(tmp, dest)``, which may keep more, such as the SELinux context)."""
    real = os.path.realpath(path)
    old = os.stat(real) if os.path.exists(real) else None
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(real), dir=os.path.dirname(real))
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, stat.S_IMODE(old.st_mode) if old else 0o644)
        if old:
            os.chown(tmp, old.st_uid, old.st_gid)
        (move or os.rename)(tmp, real)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


# --------------------------------------------------------------------------------------
# Looking before changing anything
# --------------------------------------------------------------------------------------

def kind_at(path):
    """What is at ``path`` (not following a symlink): None, or a word for a message."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    for test, word in ((stat.S_ISLNK, "symlink"), (stat.S_ISDIR, "directory"), (stat.S_ISREG, "file"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return word
    return "special file"


def is_bind(item):
    return bool(set(("bind", "rbind")) & set(item["opts"].split(",")))


def input_errors(root, mounts, links):
    """What is wrong with the items themselves, before looking at the host."""
    errors = []
    seen = {}
    for kind, item in [("mount point", m) for m in mounts] + [("link", link) for link in links]:
        path = item["path"]
        if not path.startswith("/") or os.path.normpath(path) != path:
            errors.append("%s %s is not a plain absolute path (no trailing slash, no . or ..)" % (kind, path))
        elif not path.startswith(root.rstrip("/") + "/"):
            errors.append("%s %s is not under %s, the directory this run owns; give a path under it" % (
                kind, path, root))
        if path in seen:
            errors.append("%s is given twice (as %s and as %s); one path holds one volume" % (path, seen[path], kind))
        seen[path] = kind
    for path in sorted(seen):
        inner = [other for other in sorted(seen) if other.startswith(path + "/")]
        if inner:
            errors.append("%s is inside %s %s; volumes are never nested" % (", ".join(inner), seen[path], path))
    for item in mounts:
        for key in ("src", "fstype", "opts"):
            if not item.get(key):
                errors.append("mount point %s: %s is empty" % (item["path"], key))
    for item in links:
        if not item.get("target", "").startswith("/"):
            errors.append("link %s: target %r is not an absolute path" % (item["path"], item.get("target")))
    return errors


def probe_dev(dev, run, sys_root="/sys", dev_root="/dev"):
    """The blkid tags of the block device with number ``dev`` (``maj:min``), read from
    the device itself (``blkid -p``); empty when it is no block device (tmpfs, btrfs)."""
    name = os.path.basename(os.path.realpath(os.path.join(sys_root, "dev", "block", dev)))
    if name == dev or not name:
        return {}
    rc, out, _err = run(["blkid", "-p", "-o", "export", os.path.join(dev_root, name)])
    return devices.parse_export(out) if rc == 0 else {}


def shows_source(item, mount, mounts, probe):
    """Whether ``mount`` (at the item's path) is the item's ``src``: the same directory
    for a bind mount, the filesystem with that tag, the same device node, or else the
    same source string."""
    src = item["src"]
    if is_bind(item):
        return devices.is_bind_of(mount, src, mounts)
    tag = src.split("=", 1)[0]
    if "=" in src and tag in _TAGS:
        return probe(mount["dev"]).get(_TAGS[tag]) == src.split("=", 1)[1]
    if src.startswith("/dev/"):
        try:
            rdev = os.stat(src).st_rdev
        except OSError:
            return False
        return "%d:%d" % (os.major(rdev), os.minor(rdev)) == mount["dev"]
    return mount["source"] == src


def directory_entries(path):
    """The names in the directory at ``path``, sorted; None when no directory is there
    (nothing, a file, or a symlink, which is not followed)."""
    if kind_at(path) != "directory":
        return None
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):  # gone since kind_at looked
            return None
        raise


def hidden_files_refusal(path, names):
    """The rule for a volume's mount point that is a directory but no mount point and
    holds ``names`` (from :func:`directory_entries`): mounting there would hide them.

    In local-PV use that is data: a pod that ran while the volume was not mounted (a
    reboot whose mount failed) wrote into the bare directory, on the filesystem below.
    ``lost+found`` is no exception: mkfs and fsck make it at the root of a filesystem,
    never in a subdirectory such as a mount point that is not mounted, so one there was
    copied or made by hand. Returns ``[]`` (nothing there) or ``[reason]``."""
    if not names:
        return []
    shown = ", ".join("'%s'" % name for name in names[:SHOWN_NAMES])
    if len(names) > SHOWN_NAMES:
        shown += " and %d more" % (len(names) - SHOWN_NAMES)
    return ["%s is not mounted but holds %d %s (%s), on the filesystem below it; mounting the volume there would "
            "hide them. Files there are most likely what a pod wrote while the volume was not mounted (after a reboot "
            "whose mount failed, say): data the volume does not have. Move them away, leaving the directory empty, "
            "run again, and put them into the mounted volume if they belong there" % (
                path, len(names), "entry" if len(names) == 1 else "entries", shown)]


def taken_refusal(path, mount, instead):
    """The rule for a volume's mount point that ``mount`` (from the mount table) already
    holds and that is not the volume: ``instead`` says what belongs there. Returns
    ``[reason]``."""
    return ["%s is mounted from %s (%s), %s; unmount it (and drop its fstab line) if it is not in use, or give "
            "this volume another name" % (path, mount["source"], mount["fstype"], instead)]


def _root_refusal(root):
    kind = kind_at(root)
    if kind in (None, "directory") or (kind == "symlink" and os.path.isdir(root)):
        return []
    return ["%s is a %s, not the directory that holds the volumes; move it away (or set another mount root)" % (
        root, kind)]


# Per-mount flags the kernel shows in mountinfo's mount options, and the fstab options
# that set each (or, for the atime flags, set one of them). Filesystem options (xfs's
# inode64, ext4's data=) live in the super block options and are not compared.
_FLAG_PAIRS = (("ro", "rw"), ("nosuid", "suid"), ("nodev", "dev"), ("noexec", "exec"))
_ATIME = ("noatime", "relatime", "strictatime")


def option_drift(fstab_opts, live_opts):
    """The per-mount flags in which the live mount (``live_opts``, mountinfo's
    fifth field) differs from its fstab options: ``["ro (fstab: rw)"]``, or []."""
    wanted = [o.strip() for o in (fstab_opts or "").split(",") if o.strip()]
    live = set(o.strip() for o in (live_opts or "").split(",") if o.strip())
    drift = []
    for flag, opposite in _FLAG_PAIRS:
        # the last of a pair named wins, as mount(8) reads them; unnamed: the kernel default (the opposite)
        last_is_flag = flag in wanted and (opposite not in wanted
                                           or wanted[::-1].index(flag) < wanted[::-1].index(opposite))
        want = flag if last_is_flag else opposite
        have = flag if flag in live else opposite
        if want != have:
            drift.append("%s (fstab: %s)" % (have, want))
    asked = [o for o in wanted if o in _ATIME]
    if asked:
        want = asked[-1]
        have = next((o for o in _ATIME[:2] if o in live), "strictatime")
        if want != have:
            drift.append("%s (fstab: %s)" % (have, want))
    return drift


def _plan_mount(item, entries, mounts, probe, work):
    path = item["path"]
    kind = kind_at(path)
    if kind is None:
        work["mkdir"].append(path)
    elif kind != "directory":
        return ["%s is a %s, not a directory to mount on; move it away and run again" % (path, kind)]
    mount = devices.mount_at(mounts, path)
    line_ok = fstab_right(entries, path, item["src"], item["fstype"], item["opts"])
    if mount is None:
        hidden = hidden_files_refusal(path, directory_entries(path))
        if hidden:
            return hidden
        work["mount"].append(path)
    elif not shows_source(item, mount, mounts, probe):
        return taken_refusal(path, mount, "not from %s" % item["src"])
    elif not line_ok:
        # ansible.posix.mount remounts a mounted path whose fstab line it changed
        work["remount"].append(path)
    else:
        drift = option_drift(item["opts"], mount.get("options"))
        if drift:
            # mounted by hand with other options (remount,ro after an error, say): the fstab line is
            # right, the mount is not; a remount takes the line's options again
            work["remount"].append(path)
            work.setdefault("drift", {})[path] = drift
    return []


def _plan_link(item, work):
    path, target = item["path"], item["target"]
    kind = kind_at(path)
    if kind not in (None, "symlink"):
        return ["%s is a %s where the link to %s belongs; move it away and run again" % (path, kind, target)]
    before = os.readlink(path) if kind == "symlink" else None
    if before != target:
        work["link"].append({"path": path, "target": target, "before": before})
    return []


def plan(root, mounts, links, fstab_text, mounts_now, probe):
    """What this run has to do: ``{root, mkdir, mount, remount, link, fstab_before,
    fstab_after}``. Raises MountError with every refusal when any item may not be done.

    ``mounts_now`` is the parsed mount table, ``probe(dev)`` the blkid tags of a
    mounted device (see :func:`probe_dev`)."""
    refusals = input_errors(root, mounts, links) + _root_refusal(root)
    work = {"mkdir": [], "mount": [], "remount": [], "link": [], "fstab_before": fstab_text, "items": {}}
    if not refusals:
        entries = devices.parse_fstab(fstab_text)
        for item in mounts:
            refusals += _plan_mount(item, entries, mounts_now, probe, work)
            work["items"][item["path"]] = item
        for item in links:
            refusals += _plan_link(item, work)
    if refusals:
        raise MountError(refusals)
    work["fstab_after"] = render_fstab(fstab_text, mounts)
    exists = os.path.isdir(root)
    # as ansible.builtin.file state=directory mode=0755 did for the directory of the links
    work["root"] = {"create": not exists and bool(mounts or links),
                    "chmod": exists and bool(links) and stat.S_IMODE(os.stat(root).st_mode) != ROOT_MODE}
    return work


def pending(work):
    """Whether the run changes anything."""
    return bool(work["root"]["create"] or work["root"]["chmod"] or work["mkdir"] or work["mount"]
                or work["remount"] or work["link"] or work["fstab_after"] != work["fstab_before"])


def summary(work):
    """What the run sets out to do, for the result (also in check mode)."""
    return {"mkdir": list(work["mkdir"]), "mount": list(work["mount"]), "remount": list(work["remount"]),
            "link": ["%s -> %s" % (link["path"], link["target"]) for link in work["link"]],
            "fstab": work["fstab_after"] != work["fstab_before"],
            "option_drift": dict(work.get("drift") or {})}


def diff(work, fstab_path=FSTAB):
    """--diff: the fstab before and after, and a line per mount and link that changes."""
    out = []
    if work["fstab_after"] != work["fstab_before"]:
        out.append({"before_header": fstab_path, "after_header": fstab_path,
                    "before": work["fstab_before"], "after": work["fstab_after"]})
    before, after = [], []
    for path in work["mount"]:
        before.append("%s: not mounted" % path)
        after.append("%s: mounted from %s" % (path, work["items"][path]["src"]))
    for path in work["remount"]:
        drift = (work.get("drift") or {}).get(path)
        how = "with " + ", ".join(drift) if drift else "with another fstab line"
        before.append("%s: mounted %s" % (path, how))
        after.append("%s: remounted with its fstab line" % path)
    for link in work["link"]:
        before.append("%s -> %s" % (link["path"], link["before"] or "(no link)"))
        after.append("%s -> %s" % (link["path"], link["target"]))
    if before:
        out.append({"before_header": "mounts and links", "after_header": "mounts and links",
                    "before": "\n".join(before) + "\n", "after": "\n".join(after) + "\n"})
    return out


# --------------------------------------------------------------------------------------
# Doing it
# --------------------------------------------------------------------------------------

def _make_dirs(root, work, done):
    if work["root"]["create"]:
        os.makedirs(root)
        done["created"].append(root)
    if work["root"]["create"] or work["root"]["chmod"]:
        os.chmod(root, ROOT_MODE)
    for path in work["mkdir"]:
        os.makedirs(path)
        done["created"].append(path)


def _mount_all(work, run, fstab_path, done):
    """mount(8) per path, a few at a time: the mount points are never nested (see
    :func:`input_errors`), so the order does not matter."""
    tab = [] if fstab_path == FSTAB else ["-T", fstab_path]
    paths = work["mount"] + work["remount"]

    def mount(path):
        remount = path in work["remount"]
        return path, remount, run(["mount"] + tab + (["-o", "remount"] if remount else []) + [path])

    if not paths:
        return
    with ThreadPoolExecutor(max_workers=min(MOUNT_WORKERS, len(paths))) as pool:
        results = list(pool.map(mount, paths))
    for path, remount, (rc, out, err) in results:
        if rc == 0:
            done["remounted" if remount else "mounted"].append(path)
        else:
            done["failed"].append({"path": path, "error": "mount%s %s: %s" % (
                " -o remount" if remount else "", path, (err or out).strip())})


def _undo_failed_mounts(work, fstab_path, move, done):
    """As ansible.posix.mount does after a failed mount: the fstab lines of the failed
    paths go back to what they were (a broken line can stop a boot), and the mount
    points made for them are removed."""
    failed = set(f["path"] for f in done["failed"])
    kept = [item for path, item in work["items"].items() if path not in failed]
    text = render_fstab(work["fstab_before"], kept)
    if done["fstab_changed"] and text != work["fstab_after"]:
        write_file_atomic(fstab_path, text, move)
        done["fstab_changed"] = text != work["fstab_before"]
    for path in [p for p in done["created"] if p in failed]:
        try:
            os.rmdir(path)
            done["created"].remove(path)
        except OSError:
            pass


def _link_all(work, done):
    for link in work["link"]:
        path = link["path"]
        tmp = os.path.join(os.path.dirname(path), ".%s.localpv-link" % os.path.basename(path))
        try:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(link["target"], tmp)
            os.rename(tmp, path)  # replaces a wrong link in one step
            done["linked"].append(path)
        except OSError as exc:
            done["failed"].append({"path": path, "error": "link %s -> %s: %s" % (path, link["target"], exc)})


def changed_any(done):
    """Whether a run that stopped on a failure changed the host (``done`` as
    :func:`apply` returns it): one that failed before the first change, or whose
    fstab line was put back with nothing else done, changed nothing."""
    return bool(done["fstab_changed"] or any(done[key] for key in ("created", "mounted", "remounted", "linked")))


def apply(root, work, run, fstab_path=FSTAB, move=None):
    """Do ``work`` (from :func:`plan`): directories, fstab once, mounts, links.

    Returns what really happened: ``{created, fstab_changed, mounted, remounted,
    linked, failed}``; raises MountError carrying it when something failed, so that a
    re-run, which finds the done part in place, finishes the job."""
    done = {"created": [], "fstab_changed": False, "mounted": [], "remounted": [], "linked": [], "failed": []}
    try:
        _make_dirs(root, work, done)
        if work["fstab_after"] != work["fstab_before"]:
            write_file_atomic(fstab_path, work["fstab_after"], move)
            done["fstab_changed"] = True
    except (IOError, OSError) as exc:
        raise MountError(["%s; nothing was mounted or linked" % exc], done=done)
    _mount_all(work, run, fstab_path, done)
    if done["failed"]:
        _undo_failed_mounts(work, fstab_path, move, done)
    _link_all(work, done)
    if done["failed"]:
        raise MountError([f["error"] for f in done["failed"]], done=done)
    return done
