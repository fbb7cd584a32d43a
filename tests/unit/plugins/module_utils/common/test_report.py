# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run report: rows from published volumes and PVs, a table that fits, Markdown."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import json

import pytest

from ansible_collections.localpv.rollout.plugins.module_utils.common import report as r

GI = 1024 ** 3


def volume(name, stable_id="wwn-0x5000c500a1b2c3d4", size=GI, fstype="xfs", **extra):
    item = {"name": name, "stable_id": stable_id, "size": size, "fstype": fstype, "mode": "filesystem",
            "path": "/mnt/disks/" + name}
    item.update(extra)
    return item


def pv(node, name, phase="Available", claim=None, capacity=GI - 10 * 1024 ** 2, **extra):
    item = {"name": "local-%s-%s" % (node, name), "node": node, "volume": name, "phase": phase, "claim": claim,
            "capacity": capacity, "path": "/mnt/disks/" + name, "fstype": "xfs", "volume_mode": "Filesystem"}
    item.update(extra)
    return item


FLEET = [
    {"node": "node1", "volumes": [
        volume("xfs0", stable_id="nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456A"),
        volume("ext4a", partition=1, size=GI // 2, fstype="ext4"),
        volume("raw0", fstype=None, mode="block", size=512 * 1024 ** 2),
        {"name": "vol1", "mode": "filesystem", "source": "/data/k8s/localpv/vol1", "path": "/mnt/disks/vol1"}]},
    {"node": "node3.lab.example", "volumes": [volume("xfs0")]},
]
PVS = [pv("node1", "xfs0", "Bound", "default/data-web-0"), pv("node1", "ext4a"), pv("node1", "raw0"),
       pv("node1", "vol1"), pv("node3.lab.example", "xfs0")]


def test_each_volume_gets_its_device_size_filesystem_mount_and_pv():
    report = r.site_report(FLEET, PVS)
    node1 = {row["volume"]: row for row in report["nodes"][0]["volumes"]}
    assert node1["ext4a"] == {"volume": "ext4a", "device": "wwn-0x5000c500a1b2c3d4-part1", "size": GI // 2,
                              "fstype": "ext4", "mount": "/mnt/disks/ext4a", "pv": "local-node1-ext4a",
                              "capacity": GI - 10 * 1024 ** 2, "phase": "Available", "claim": None, "action": "none"}
    assert node1["raw0"]["fstype"] == "block"
    # what disk_prepare publishes: the partition's number, kept (never parsed back from kernel names)
    published = volume("d1", disk="/dev/nvme0n1", partition=2, device="/dev/nvme0n1p2")
    whole = volume("d2", disk="/dev/sdb", partition=None, device="/dev/sdb")
    rows = r.site_report([{"node": "n", "volumes": [published, whole]}], [])["nodes"][0]["volumes"]
    assert [row["device"] for row in rows] == ["wwn-0x5000c500a1b2c3d4-part2", "wwn-0x5000c500a1b2c3d4"]
    assert node1["vol1"]["device"] == "/data/k8s/localpv/vol1"
    assert node1["xfs0"]["claim"] == "default/data-web-0"
    assert report["totals"] == {"nodes": 2, "volumes": 5, "phases": {"Available": 4, "Bound": 1},
                                "actions": {"none": 5}}
    json.dumps(report)  # what the role writes


def test_the_plan_marks_volumes_without_a_pv_as_to_create():
    report = r.site_report(FLEET, PVS[:1], planned=True)
    rows = [row for node in report["nodes"] for row in node["volumes"]]
    assert [row["action"] for row in rows] == ["create", "create", "create", "none", "create"]
    assert rows[3]["phase"] == "Bound" and rows[0]["phase"] is None
    lines = r.table_lines(report, 100)
    assert lines[0].startswith("Local volumes per node, planned (check mode: nothing was changed)")
    assert "ACTION" in lines[1]
    # the same action on every row: the summary says it, the table has no column for it
    assert "ACTION" not in r.table_lines(r.site_report(FLEET, [], planned=True), 100)[1]
    assert lines[-1] == "2 node(s), 5 volume(s): 1 Bound, 4 no PV; to create 4"


def test_the_run_reports_what_local_pv_did_and_pvs_no_volume_wants():
    changes = {"created": ["local-node1-ext4a"], "deleted": ["local-node1-old"]}
    report = r.site_report(FLEET, PVS + [pv("node1", "old", "Released", "x/y")], changes)
    node1 = {row["pv"]: row for row in report["nodes"][0]["volumes"]}
    assert node1["local-node1-ext4a"]["action"] == "create"
    assert node1["local-node1-old"]["action"] == "delete" and node1["local-node1-old"]["device"] is None


def test_an_unchanged_run_has_no_action_column():
    lines = r.table_lines(r.site_report(FLEET, PVS), 100)
    assert "ACTION" not in lines[1]


@pytest.mark.parametrize("width", [60, 80, 92, 100, 140])
def test_no_line_is_longer_than_the_width(width):
    report = r.site_report(FLEET, PVS, {"created": ["local-node1-raw0"]})
    lines = r.table_lines(report, width)
    assert max(len(line) for line in lines) <= width


def test_a_table_that_fits_is_not_cut_and_columns_line_up():
    lines = r.table_lines(r.site_report([FLEET[1]], PVS[4:]), 106)
    assert lines == [
        "Local volumes per node, mounts under /mnt/disks/",
        "VOLUME  DEVICE                  SIZE  FS   MOUNT  PV                            CAPACITY  PHASE      CLAIM",
        "[node3.lab.example]",
        "xfs0    wwn-0x5000c500a1b2c3d4  1Gi   xfs  xfs0   local-node3.lab.example-xfs0  1014Mi    Available  -",
        "1 node(s), 1 volume(s): 1 Available",
    ]


def test_a_table_too_wide_cuts_devices_first_and_marks_the_cut():
    lines = r.table_lines(r.site_report(FLEET, PVS), 100)
    assert lines[0].endswith("(~ marks a cut)")
    header = lines[1]
    row = next(line for line in lines if line.startswith("xfs0 ") and "Bound" in line)
    device = row[header.index("DEVICE"):header.index("SIZE")].strip()
    # a device keeps the end of its id, where the serial is
    assert device.startswith(r.MARK) and "S5GXNF0R123456A".endswith(device[1:][-8:])
    assert row.endswith("default/data-web-0")  # a narrower gap leaves the claim whole
    assert max(len(line) for line in lines) <= 100


def test_cut_keeps_the_head_or_the_tail():
    assert r.cut("default/data-web-0", 10) == "default/d~"
    assert r.cut("nvme-eui.0025385b71b0a1c2", 10, "tail") == "~b71b0a1c2"
    assert r.cut("short", 10) == "short"


def test_fit_widths_shrinks_the_widest_shrinkable_column_down_to_its_floors():
    keys = ["volume", "device", "phase"]
    assert r.fit_widths([6, 40, 9], ["VOLUME", "DEVICE", "PHASE"], keys, 200) == [6, 40, 9]
    assert r.fit_widths([6, 40, 9], ["VOLUME", "DEVICE", "PHASE"], keys, 40) == [6, 21, 9]
    # below the soft floor only when nothing else can give; never below the header
    assert r.fit_widths([6, 40, 9], ["VOLUME", "DEVICE", "PHASE"], keys, 10) == [6, 6, 9]


def test_human_size_in_binary_units():
    assert [r.human_size(v) for v in (None, 0, 512, 1536, GI, 1.75 * 1024 * GI, 512 * 1024 ** 2)] == [
        None, "0", "512", "1.5Ki", "1Gi", "1.8Ti", "512Mi"]


def test_common_root_is_the_shared_directory():
    assert r.common_root(["/mnt/disks/a", "/mnt/disks/b"]) == "/mnt/disks/"
    assert r.common_root(["/mnt/disks/a", "/srv/b"]) == ""
    assert r.common_root(["-", None]) == ""


def test_decommission_plan_lists_every_node_even_without_pvs():
    pvs = [pv("node2", "ssd0", "Bound", "db/data-0", stable_id="wwn-0x1")]
    report = r.pv_report("decommission", ["node2", "node3"], pvs, "retire", planned=True)
    assert [n["node"] for n in report["nodes"]] == ["node2", "node3"]
    assert report["nodes"][0]["volumes"][0]["device"] == "wwn-0x1"
    assert report["nodes"][0]["volumes"][0]["action"] == "retire"
    lines = r.table_lines(report, 100)
    assert lines[0] == "Volumes to retire (the plan: nothing was changed), mounts under /mnt/disks/"
    assert "[node3] no volume" in lines
    assert lines[-1] == "2 node(s), 1 volume(s): 1 Bound; to retire 1"


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="report kind 'site2'"):
        r.pv_report("site2", [], [], "none")


def test_markdown_has_a_table_per_node_with_nothing_cut():
    text = r.markdown(r.site_report(FLEET, PVS))
    assert text.startswith("# Local volumes per node\n\n## node1\n\n| Volume | Device | Size |")
    assert "| xfs0 | nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456A | 1Gi | xfs | /mnt/disks/xfs0 |" in text
    assert "## node3.lab.example" in text
    assert text.rstrip().endswith("2 node(s), 5 volume(s): 4 Available, 1 Bound.")


def test_markdown_escapes_pipes():
    report = r.pv_report("reclaim", [], [pv("n1", "a", claim="ns/a|b")], "wipe,release")
    assert "ns/a\\|b" in r.markdown(report)


def test_pruned_taken_over_and_kept_bound_pvs_are_named_one_line_each_in_the_table_json_and_markdown():
    changes = {"created": [], "updated": ["local-node1-xfs0"], "deleted": ["local-node1-old"],
               "taken_over": ["local-pv-5a1c2e7b"],
               "kept_bound": [{"name": "local-node1-gone", "node": "node1", "claim": "db/data-db-0"}]}
    pvs = PVS + [pv("node1", "gone", "Bound", "db/data-db-0"),
                 dict(pv("node1", "ssd9"), name="local-pv-5a1c2e7b")]
    report = r.site_report(FLEET, pvs, changes)
    rows = dict((row["pv"], row["action"]) for node in report["nodes"] for row in node["volumes"])
    # a PV patched back (a label an admin removed) shows as such, not as "none"
    assert rows["local-node1-xfs0"] == "update"
    assert rows["local-node1-gone"] == "keep (bound)" and rows["local-pv-5a1c2e7b"] == "take over"
    assert [(w["write"], w["pv"]) for w in report["writes"]] == [
        ("pruned", "local-node1-old"), ("taken over", "local-pv-5a1c2e7b"), ("kept bound", "local-node1-gone")]
    lines = r.table_lines(report, 100)
    assert lines[-3].startswith("pruned: PV local-node1-old (")
    assert lines[-2].startswith("taken over: PV local-pv-5a1c2e7b (")
    assert lines[-1].startswith("kept bound: PV local-node1-gone of node node1, claim db/data-db-0 (")
    assert json.loads(json.dumps(report))["writes"][0]["pv"] == "local-node1-old"
    md = r.markdown(report)
    assert "- pruned: PV local-node1-old" in md and "- kept bound: PV local-node1-gone" in md


def test_a_check_run_names_the_writes_it_would_make():
    report = r.site_report(FLEET, PVS, {"deleted": ["local-node1-old"]}, planned=True)
    assert r.table_lines(report, 100)[-1].startswith("to be pruned: PV local-node1-old")


def test_a_run_that_writes_nothing_names_nothing():
    report = r.site_report(FLEET, PVS, {"created": [], "deleted": [], "kept_bound": []})
    assert report["writes"] == [] and "pruned" not in "\n".join(r.table_lines(report, 100))


def test_an_unreachable_host_is_listed_in_the_table_and_the_files_not_left_out():
    hosts = FLEET + [{"node": "node2", "volumes": [], "status": "unreachable"}]
    report = r.site_report(hosts, PVS)
    assert [e["node"] for e in report["nodes"]] == ["node1", "node2", "node3.lab.example"]
    lines = r.table_lines(report, 100)
    assert "[node2] UNREACHABLE: not reached over SSH, nothing known or done there" in lines
    assert "(1 unreachable)" in lines[-1]
    assert "UNREACHABLE" in r.markdown(report) and report["totals"]["unreachable"] == 1
