# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mounting and linking a host's volumes in one pass: the fstab lines, the plan and its
refusals, and doing it against a directory of this machine (mount itself is a
recorded command here; the lab tests mount for real)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import os
import stat

import pytest

from conftest import REPO

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices
from ansible_collections.localpv.rollout.plugins.module_utils.host import mounts

UUID_A = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
UUID_B = "11111111-2222-3333-4444-555555555555"
FSTAB = """\
# /etc/fstab: static file system information.
UUID=root-uuid / ext4 errors=remount-ro 0 1
/swapfile none swap sw 0 0
"""


def item(path, uuid=UUID_A, opts="defaults,nofail"):
    return {"path": str(path), "src": "UUID=%s" % uuid, "fstype": "xfs", "opts": opts}


def mounted(path, dev="259:1", source="/dev/loop9p1", root="/"):
    return {"dev": dev, "root": root, "mount_point": str(path), "options": "rw", "fstype": "xfs", "source": source}


def probe_of(tags_by_dev):
    return lambda dev: tags_by_dev.get(dev, {})


class Recorder(object):
    """The ``run`` of the module: records each command, fails the paths it is told to."""

    def __init__(self, fail=()):
        self.argv, self.fail = [], set(fail)

    def __call__(self, argv):
        self.argv.append(argv)
        if argv[-1] in self.fail:
            return 32, "", "mount: %s: wrong fs type, bad option, bad superblock" % argv[-1]
        return 0, "", ""


# --------------------------------------------------------------------------------------
# fstab lines
# --------------------------------------------------------------------------------------

def test_fstab_fields_are_unescaped_comments_skipped_and_dump_passno_filled_in():
    text = "# comment\n\n/data/my\\040dir /mnt/disks/a\\040b none bind\nUUID=x /srv xfs rw 1 2\n"
    entries = devices.parse_fstab(text)
    assert [(e["src"], e["path"], e["opts"], e["dump"], e["passno"], e["line"]) for e in entries] == [
        ("/data/my dir", "/mnt/disks/a b", "bind", "0", "0", 2), ("UUID=x", "/srv", "rw", "1", "2", 3)]


def test_a_line_is_written_as_ansible_posix_mount_writes_it_so_its_state_absent_finds_it():
    line = mounts.fstab_line({"path": "/mnt/disks/a b&c", "src": "/data/x\\y", "fstype": "none", "opts": "bind"})
    assert line == "/data/x\\134y /mnt/disks/a\\040b\\046c none bind 0 0"
    entry = devices.parse_fstab(line)[0]
    assert (entry["src"], entry["path"]) == ("/data/x\\y", "/mnt/disks/a b&c")


def test_missing_lines_are_appended_and_everything_else_stays_byte_for_byte():
    after = mounts.render_fstab(FSTAB, [item("/mnt/disks/a"), item("/mnt/disks/b", UUID_B)])
    assert after == FSTAB + "".join("UUID=%s /mnt/disks/%s xfs defaults,nofail 0 0\n" % pair
                                    for pair in ((UUID_A, "a"), (UUID_B, "b")))


def test_a_different_line_is_replaced_where_it_stands_and_a_second_line_for_the_mount_point_dropped():
    text = "UUID=old /mnt/disks/a xfs defaults 0 0\n# keep me\nUUID=%s /mnt/disks/a xfs defaults,nofail 0 0\n" % UUID_A
    after = mounts.render_fstab(text, [item("/mnt/disks/a")])
    assert after == "UUID=%s /mnt/disks/a xfs defaults,nofail 0 0\n# keep me\n" % UUID_A


def test_an_fstab_that_needs_nothing_is_returned_as_it_is_even_without_a_last_newline():
    text = "UUID=%s /mnt/disks/a xfs defaults,nofail 0 0" % UUID_A
    assert mounts.render_fstab(text, [item("/mnt/disks/a")]) is text


def test_dump_or_passno_other_than_zero_is_a_different_line():
    text = "UUID=%s /mnt/disks/a xfs defaults,nofail 0 2\n" % UUID_A
    assert mounts.render_fstab(text, [item("/mnt/disks/a")]).endswith("nofail 0 0\n")


# --------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------

def test_a_first_run_makes_the_mount_points_writes_fstab_once_and_mounts_and_links_everything(tmp_path):
    root = str(tmp_path / "disks")
    work = mounts.plan(root, [item(root + "/a"), item(root + "/b", UUID_B)],
                       [{"path": root + "/raw", "target": "/dev/loop9p1"}], FSTAB, [], probe_of({}))
    assert work["root"] == {"create": True, "chmod": False}
    assert work["mkdir"] == work["mount"] == [root + "/a", root + "/b"] and work["remount"] == []
    assert mounts.summary(work) == {"mkdir": [root + "/a", root + "/b"], "mount": [root + "/a", root + "/b"],
                                    "remount": [], "link": [root + "/raw -> /dev/loop9p1"], "fstab": True,
                                    "option_drift": {}}
    assert work["fstab_after"].count("\n") == FSTAB.count("\n") + 2 and mounts.pending(work)


def test_a_re_run_finds_nothing_to_do(tmp_path):
    root = str(tmp_path)
    (tmp_path / "a").mkdir()
    os.symlink("/dev/loop9p1", root + "/raw")
    os.chmod(root, 0o755)
    text = FSTAB + mounts.fstab_line(item(root + "/a")) + "\n"
    work = mounts.plan(root, [item(root + "/a")], [{"path": root + "/raw", "target": "/dev/loop9p1"}], text,
                       [mounted(root + "/a")], probe_of({"259:1": {"UUID": UUID_A}}))
    assert not mounts.pending(work) and mounts.diff(work) == []


def test_a_mounted_volume_whose_line_is_missing_gets_the_line_and_a_remount(tmp_path):
    (tmp_path / "a").mkdir()
    path = str(tmp_path / "a")
    work = mounts.plan(str(tmp_path), [item(path)], [], FSTAB, [mounted(path)], probe_of({"259:1": {"UUID": UUID_A}}))
    assert (work["mount"], work["remount"]) == ([], [path])


def test_a_bind_mount_is_recognised_by_its_source_directory(tmp_path):
    (tmp_path / "vol1").mkdir()
    path = str(tmp_path / "vol1")
    bind = {"path": path, "src": "/data/k8s/vol1", "fstype": "none", "opts": "bind"}
    now = [mounted("/", dev="8:1", source="/dev/sda1"),
           mounted(path, dev="8:1", source="/dev/sda1", root="/data/k8s/vol1")]
    work = mounts.plan(str(tmp_path), [bind], [], mounts.fstab_line(bind) + "\n", now, probe_of({}))
    assert not mounts.pending(work)
    now[1]["root"] = "/data/k8s/other"
    with pytest.raises(mounts.MountError) as refused:
        mounts.plan(str(tmp_path), [bind], [], "", now, probe_of({}))
    assert "%s is mounted from /dev/sda1 (xfs), not from /data/k8s/vol1" % path in str(refused.value)


# --------------------------------------------------------------------------------------
# Refusals: every one found before anything is changed
# --------------------------------------------------------------------------------------

def refusals(root, mount_items, links=(), mounts_now=(), tags=None):
    with pytest.raises(mounts.MountError) as refused:
        mounts.plan(str(root), mount_items, list(links), FSTAB, list(mounts_now), probe_of(tags or {}))
    return refused.value.reasons


def test_a_mount_point_mounted_from_another_filesystem_is_refused_naming_what_is_there(tmp_path):
    (tmp_path / "a").mkdir()
    path = str(tmp_path / "a")
    reasons = refusals(tmp_path, [item(path)], mounts_now=[mounted(path, source="/dev/loop7")],
                       tags={"259:1": {"UUID": UUID_B}})
    assert reasons == ["%s is mounted from /dev/loop7 (xfs), not from UUID=%s; unmount it (and drop its fstab line) "
                       "if it is not in use, or give this volume another name" % (path, UUID_A)]


def test_a_directory_or_file_where_a_link_belongs_is_refused_and_so_is_a_file_at_a_mount_point(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "a").write_text("x")
    reasons = refusals(tmp_path, [item(tmp_path / "a")], [{"path": str(tmp_path / "raw"), "target": "/dev/loop9p1"}])
    assert reasons == [
        "%s is a file, not a directory to mount on; move it away and run again" % (tmp_path / "a"),
        "%s is a directory where the link to /dev/loop9p1 belongs; move it away and run again" % (tmp_path / "raw")]


def test_shared_paths_paths_outside_the_root_and_odd_paths_are_refused_all_at_once(tmp_path):
    root = str(tmp_path)
    reasons = refusals(tmp_path, [item(root + "/a"), item("/etc/a"), item(root + "/b/")],
                       [{"path": root + "/a", "target": "/dev/loop9p1"}, {"path": root + "/c", "target": "loop9p1"}])
    assert reasons == [
        "mount point /etc/a is not under %s, the directory this run owns; give a path under it" % root,
        "mount point %s/b/ is not a plain absolute path (no trailing slash, no . or ..)" % root,
        "%s/a is given twice (as mount point and as link); one path holds one volume" % root,
        "link %s/c: target 'loop9p1' is not an absolute path" % root]
    assert os.listdir(root) == []


def test_nested_paths_are_refused(tmp_path):
    root = str(tmp_path)
    assert refusals(tmp_path, [item(root + "/a"), item(root + "/a/b")]) == [
        "%s/a/b is inside mount point %s/a; volumes are never nested" % (root, root)]


def test_a_root_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "disks").write_text("")
    assert "is a file, not the directory that holds the volumes" in refusals(
        tmp_path / "disks", [item(tmp_path / "disks" / "a")])[0]


def hidden_files_reason(path, count, shown):
    return ("%s is not mounted but holds %d %s (%s), on the filesystem below it; mounting the volume there would "
            "hide them. Files there are most likely what a pod wrote while the volume was not mounted (after a "
            "reboot whose mount failed, say): data the volume does not have. Move them away, leaving the directory "
            "empty, run again, and put them into the mounted volume if they belong there" % (
                path, count, "entry" if count == 1 else "entries", shown))


def test_a_bare_mount_point_holding_files_is_refused_naming_a_few_and_counting_all(tmp_path):
    root = str(tmp_path)
    (tmp_path / "a" / "pod-data").mkdir(parents=True)
    for name in ("app.log", ".hidden", "z"):
        (tmp_path / "a" / name).write_text("written while the volume was not mounted")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "only").write_text("x")
    reasons = refusals(tmp_path, [item(root + "/a"), item(root + "/b", UUID_B), item(root + "/c")])
    assert reasons == [hidden_files_reason(root + "/a", 4, "'.hidden', 'app.log', 'pod-data' and 1 more"),
                       hidden_files_reason(root + "/b", 1, "'only'")]
    assert sorted(os.listdir(root)) == ["a", "b"] and len(os.listdir(root + "/a")) == 4


def test_a_lost_and_found_alone_is_refused_too_as_mkfs_never_puts_one_in_a_bare_directory(tmp_path):
    (tmp_path / "a" / "lost+found").mkdir(parents=True)
    assert refusals(tmp_path, [item(tmp_path / "a")]) == [hidden_files_reason(str(tmp_path / "a"), 1, "'lost+found'")]


def test_a_mounted_volume_holding_files_is_its_own_content_and_an_empty_bare_directory_is_mounted_on(tmp_path):
    root = str(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "lost+found").mkdir()
    (tmp_path / "a" / "data").write_text("the volume's")
    (tmp_path / "b").mkdir()
    text = FSTAB + mounts.fstab_line(item(root + "/a")) + "\n"
    work = mounts.plan(root, [item(root + "/a"), item(root + "/b", UUID_B)], [], text, [mounted(root + "/a")],
                       probe_of({"259:1": {"UUID": UUID_A}}))
    assert (work["mkdir"], work["mount"], work["remount"]) == ([], [root + "/b"], [])


def test_a_bind_volume_refuses_files_at_its_mount_point_never_in_its_source(tmp_path):
    source, path = tmp_path / "data" / "vol1", tmp_path / "disks" / "vol1"
    source.mkdir(parents=True)
    (source / "db").write_text("the volume's data, where it belongs")
    path.mkdir(parents=True)
    bind = {"path": str(path), "src": str(source), "fstype": "none", "opts": "bind"}
    work = mounts.plan(str(tmp_path / "disks"), [bind], [], FSTAB, [], probe_of({}))
    assert work["mount"] == [str(path)]
    (path / "db").write_text("written into the bare mount point")
    with pytest.raises(mounts.MountError) as refused:
        mounts.plan(str(tmp_path / "disks"), [bind], [], FSTAB, [], probe_of({}))
    assert refused.value.reasons == [hidden_files_reason(str(path), 1, "'db'")]


def test_directory_entries_lists_a_directory_only(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_text("")
    (tmp_path / "d" / "a").mkdir()
    (tmp_path / "f").write_text("")
    os.symlink(str(tmp_path / "d"), str(tmp_path / "link"))
    assert mounts.directory_entries(str(tmp_path / "d")) == ["a", "b"]
    assert [mounts.directory_entries(str(tmp_path / name)) for name in ("f", "link", "none")] == [None] * 3
    assert mounts.hidden_files_refusal("/x", None) == mounts.hidden_files_refusal("/x", []) == []


# --------------------------------------------------------------------------------------
# Doing it
# --------------------------------------------------------------------------------------

def test_apply_writes_fstab_once_keeping_its_mode_mounts_and_links(tmp_path):
    root, fstab = str(tmp_path / "disks"), tmp_path / "fstab"
    fstab.write_text(FSTAB)
    os.chmod(str(fstab), 0o640)
    os.makedirs(root)
    os.symlink("/dev/old", root + "/raw")
    work = mounts.plan(root, [item(root + "/a"), item(root + "/b", UUID_B)],
                       [{"path": root + "/raw", "target": "/dev/loop9p1"}], FSTAB, [], probe_of({}))
    run = Recorder()
    done = mounts.apply(root, work, run, fstab_path=str(fstab))
    assert sorted(run.argv) == [["mount", "-T", str(fstab), root + "/a"], ["mount", "-T", str(fstab), root + "/b"]]
    assert done == {"created": [root + "/a", root + "/b"], "fstab_changed": True, "mounted": [root + "/a", root + "/b"],
                    "remounted": [], "linked": [root + "/raw"], "failed": []}
    assert fstab.read_text() == work["fstab_after"] and stat.S_IMODE(fstab.stat().st_mode) == 0o640
    assert os.readlink(root + "/raw") == "/dev/loop9p1" and stat.S_IMODE(os.stat(root).st_mode) == 0o755
    assert sorted(os.listdir(str(tmp_path))) == ["disks", "fstab"]  # no temporary file left


def test_a_failed_mount_gets_its_old_line_back_and_the_rest_is_done_and_reported(tmp_path):
    root, fstab = str(tmp_path), tmp_path / "fstab"
    old = FSTAB + "UUID=old %s/b xfs defaults 0 0\n" % root
    fstab.write_text(old)
    work = mounts.plan(root, [item(root + "/a"), item(root + "/b", UUID_B)],
                       [{"path": root + "/raw", "target": "/dev/loop9p1"}], old, [], probe_of({}))
    with pytest.raises(mounts.MountError) as failed:
        mounts.apply(root, work, Recorder(fail=[root + "/b"]), fstab_path=str(fstab))
    done = failed.value.done
    assert (done["mounted"], done["linked"], done["created"]) == ([root + "/a"], [root + "/raw"], [root + "/a"])
    assert [f["path"] for f in done["failed"]] == [root + "/b"] and "wrong fs type" in failed.value.reasons[0]
    assert fstab.read_text() == old + mounts.fstab_line(item(root + "/a")) + "\n"
    assert not os.path.exists(root + "/b")


def test_a_run_whose_only_mount_failed_and_was_put_back_reports_no_change(tmp_path):
    root, fstab = str(tmp_path / "disks"), tmp_path / "fstab"
    fstab.write_text(FSTAB)
    os.makedirs(root + "/a")
    work = mounts.plan(root, [item(root + "/a")], [], FSTAB, [], probe_of({}))
    with pytest.raises(mounts.MountError) as failed:
        mounts.apply(root, work, Recorder(fail=[root + "/a"]), fstab_path=str(fstab))
    assert fstab.read_text() == FSTAB and mounts.changed_any(failed.value.done) is False
    work = mounts.plan(root, [item(root + "/a"), item(root + "/b", UUID_B)], [], FSTAB, [], probe_of({}))
    with pytest.raises(mounts.MountError) as failed:
        mounts.apply(root, work, Recorder(fail=[root + "/a"]), fstab_path=str(fstab))
    assert mounts.changed_any(failed.value.done) is True and failed.value.done["mounted"] == [root + "/b"]


def test_the_diff_shows_fstab_and_a_line_per_mount_and_link(tmp_path):
    root = str(tmp_path)
    work = mounts.plan(root, [item(root + "/a")], [{"path": root + "/raw", "target": "/dev/loop9p1"}], FSTAB, [],
                       probe_of({}))
    fstab_diff, lines = mounts.diff(work, "/etc/fstab")
    assert fstab_diff["before"] == FSTAB and fstab_diff["after"].endswith("/a xfs defaults,nofail 0 0\n")
    assert lines["before"] == "%s/a: not mounted\n%s/raw -> (no link)\n" % (root, root)
    assert lines["after"] == "%s/a: mounted from UUID=%s\n%s/raw -> /dev/loop9p1\n" % (root, UUID_A, root)


def test_probe_dev_reads_the_mounted_device_itself(tmp_path):
    sys_block = tmp_path / "sys" / "dev" / "block"
    (tmp_path / "sys" / "devices" / "loop9p1").mkdir(parents=True)
    sys_block.mkdir(parents=True)
    os.symlink(str(tmp_path / "sys" / "devices" / "loop9p1"), str(sys_block / "259:1"))
    seen = []

    def run(argv):
        seen.append(argv)
        return 0, "DEVNAME=/dev/loop9p1\nUUID=%s\nTYPE=xfs\n" % UUID_A, ""

    assert mounts.probe_dev("259:1", run, sys_root=str(tmp_path / "sys"))["UUID"] == UUID_A
    assert seen == [["blkid", "-p", "-o", "export", "/dev/loop9p1"]]
    assert mounts.probe_dev("0:52", run, sys_root=str(tmp_path / "sys")) == {}


# --------------------------------------------------------------------------------------
# live options that drifted from the fstab line
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fstab_opts, live, drift", [
    ("defaults,nofail", "rw,relatime", []),
    ("defaults,nofail", "ro,relatime", ["ro (fstab: rw)"]),
    ("defaults,noatime", "rw,relatime", ["relatime (fstab: noatime)"]),
    ("defaults,noatime", "rw,noatime", []),
    ("ro,nosuid", "rw,nosuid,relatime", ["rw (fstab: ro)"]),
    ("defaults", "rw,nosuid,nodev,noexec,relatime", ["nosuid (fstab: suid)", "nodev (fstab: dev)",
                                                     "noexec (fstab: exec)"]),
    ("nosuid,suid", "rw", []),
    ("strictatime", "rw,relatime", ["relatime (fstab: strictatime)"]),
])
def test_live_flags_are_compared_with_the_fstab_line(fstab_opts, live, drift):
    assert mounts.option_drift(fstab_opts, live) == drift


def test_a_volume_remounted_read_only_by_hand_is_remounted_and_said_so(tmp_path):
    root = str(tmp_path)
    (tmp_path / "a").mkdir()
    text = FSTAB + mounts.fstab_line(item(root + "/a")) + "\n"
    live = dict(mounted(root + "/a"), options="ro,relatime")
    work = mounts.plan(root, [item(root + "/a")], [], text, [live], probe_of({"259:1": {"UUID": UUID_A}}))
    assert mounts.pending(work) and work["remount"] == [root + "/a"]
    assert mounts.summary(work)["option_drift"] == {root + "/a": ["ro (fstab: rw)"]}
    assert "mounted with ro (fstab: rw)" in mounts.diff(work)[0]["before"]
    run = Recorder()
    done = mounts.apply(root, work, run, fstab_path=str(tmp_path / "fstab"))
    assert done["remounted"] == [root + "/a"] and run.argv[0][:3] == ["mount", "-T", str(tmp_path / "fstab")]
    assert "remount" in run.argv[0]


def test_a_filesystem_we_made_is_found_by_its_uuid_and_one_not_made_yet_has_no_source():
    assert mounts.uuid_src("1b2c-3d") == "UUID=1b2c-3d"
    assert mounts.uuid_src(None) is None and mounts.uuid_src("") is None


def test_the_fstab_source_of_a_filesystem_is_spelled_and_read_in_one_place():
    assert mounts.uuid_src("0b1c2d3e") == "UUID=0b1c2d3e" and mounts.uuid_src(None) is None
    assert mounts.uuid_of_src(mounts.uuid_src("0b1c2d3e")) == "0b1c2d3e"
    assert mounts.uuid_of_src("uuid=0B1C") == "0B1C"
    assert [mounts.uuid_of_src(src) for src in ("LABEL=data", "/dev/sdb1", "PARTUUID=0b1c")] == [None] * 3
    # nothing else of the host side spells it
    root = os.path.join(REPO, "plugins", "module_utils", "host")
    spelled = []
    for name in sorted(os.listdir(root)):
        if name.endswith(".py") and name != "mounts.py":
            with open(os.path.join(root, name)) as handle:
                spelled += [name for line in handle if '"UUID=' in line or "'UUID=" in line]
    assert spelled == []
