# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PV a volume becomes, and what a run does to the owned PVs (no cluster)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import pytest

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v

from pv_builders import GIB, vol


def test_pv_of_a_filesystem_volume_has_the_fields_a_local_pv_needs():
    pv = v.pv_manifest(vol(), "node1-host")
    assert pv["metadata"]["name"] == "local-node1-ssd0"
    assert pv["metadata"]["labels"] == {v.MANAGED_BY_LABEL: "localpv.rollout", v.NODE_LABEL: "node1",
                                        v.VOLUME_LABEL: "ssd0"}
    spec = pv["spec"]
    assert spec["local"] == {"path": "/mnt/disks/ssd0", "fsType": "xfs"}
    assert spec["volumeMode"] == "Filesystem"
    assert spec["accessModes"] == ["ReadWriteOnce"]
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"
    assert spec["storageClassName"] == "local-storage"
    assert v.parse_quantity(spec["capacity"]["storage"]) == 10 * GIB
    assert v.affinity_hostname(pv) == "node1-host"


@pytest.mark.parametrize("changes", [
    {}, {"mode": "block", "path": "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"}, {"fstype": None},
    {"capacity": "1.5Ti"}, {"labels": {"tier": "fast", "example.com/rack": "r1"}}, {"stable_id": "wwn-0x5000c500a1b2c3d4"},
    {"uuid": "0b9f3c1e-7d2a-4c55-9e0f-3a1b2c3d4e5f"}, {"reclaim_policy": "Delete", "storage_class": "fast"},
])
def test_the_wanted_view_is_the_view_of_the_manifest(changes):
    """The re-run's shortcut (wanted_view) says what reading the whole manifest says."""
    volume = vol(**changes)
    manifest = v.pv_manifest(volume, "node1-host")
    view = v.pv_view(manifest)
    del view["name"]
    assert v.wanted_view(volume, "node1-host") == view
    unknown = dict(volume, capacity=None)   # check mode before mounts: capacity known after apply
    view = v.pv_view(v.pv_manifest(unknown, "node1-host"))
    del view["name"]
    assert v.wanted_view(unknown, "node1-host") == view


def test_block_volume_has_block_mode_and_no_fstype():
    pv = v.pv_manifest(vol(name="raw0", mode="block", path="/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"), "node1")
    assert pv["spec"]["volumeMode"] == "Block"
    assert pv["spec"]["local"] == {"path": "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"}


@pytest.mark.parametrize("text,value", [
    ("10Gi", 10 * GIB), ("10737418240", 10 * GIB), ("1G", 10 ** 9), ("1e3", 1000), ("1.5Ki", 1536),
    ("500m", 0), ("bogus", None), ("", None), ("\u00b2", None), (" 42 ", 42),
])
def test_quantities_are_compared_by_value(text, value):
    assert v.parse_quantity(text) == value


@pytest.mark.parametrize("item,expect", [
    (dict(name="Bad_Name"), "name: not an RFC 1123 label"),
    (dict(node="Node_1"), "node: not a valid Kubernetes node name"),
    (dict(path="relative/path"), "not an absolute path"),
    (dict(mode="raw"), "mode 'raw'"),
    (dict(capacity=0), "not a positive number of bytes"),
    (dict(capacity="lots"), "capacity 'lots' is not a size"),
    (dict(capacity="1g"), "the unit 'g' is ambiguous"),
    (dict(storage_class="Local_Storage"), "not a valid StorageClass name"),
    (dict(reclaim_policy="Recycle"), "reclaim_policy"),
    (dict(labels={v.NODE_LABEL: "x"}), "is set by localpv.rollout"),
    (dict(labels={"team": "a b"}), "no valid Kubernetes label value"),
    # a final newline would end an fstab line inside the name
    (dict(name="ssd0\n"), "name: not an RFC 1123 label"),
    (dict(node="node1\n"), "node: not a valid Kubernetes node name"),
    (dict(labels={"team": "a\n"}), "no valid Kubernetes label value"),
    (dict(labels={"team\n": "a"}), "not a valid Kubernetes label key"),
])
def test_invalid_volumes_are_refused_with_the_reason(item, expect):
    base = dict(node="node1", name="ssd0", path="/mnt/disks/ssd0", capacity=GIB)
    base.update(item)
    volumes, errors = v.normalize_volumes([base])
    assert len(errors) == 1 and expect in errors[0], errors


def test_two_volumes_wanting_one_pv_name_are_refused():
    items = [dict(node="node1", name="ssd0", path="/a", capacity=1), dict(node="node1", name="ssd0", path="/b", capacity=1)]
    errors = v.normalize_volumes(items)[1]
    assert errors == ["PV name local-node1-ssd0 is wanted more than once (node1/ssd0, node1/ssd0)"]


def test_capacity_may_be_a_quantity():
    volume, reasons = v.normalize_volume(dict(node="n", name="a", path="/a", capacity="100Gi"))
    assert reasons == [] and volume["capacity"] == 100 * GIB


def test_hostname_comes_from_the_node_label_not_the_node_name():
    nodes = [{"metadata": {"name": "node3", "labels": {v.HOSTNAME_LABEL: "node3-host"}}}]
    got = v.resolve_hostnames(["node3", "node9"], nodes)
    assert got == {"node3": ("node3-host", "node-label"), "node9": ("node9", "node-name")}


def test_a_node_that_left_the_cluster_keeps_the_hostname_of_its_pvs():
    got = v.resolve_hostnames(["node3"], [], {"node3": {"node3-host"}})
    assert got == {"node3": ("node3-host", "existing-pv")}
    assert v.resolve_hostnames(["node3"], [], {"node3": {"node3-host"}}, {"node3": "x"}) == {"node3": ("x", "override")}
    # two values on the PVs of one node: no guess, the node name
    assert v.resolve_hostnames(["node3"], [], {"node3": {"a", "b"}}) == {"node3": ("node3", "node-name")}


@pytest.mark.parametrize("unit,capacity", [("Gi", 1 * GIB), ("G", 10 ** 9), ("Mi", 1023 * 2 ** 20)])
def test_capacity_is_rounded_down_to_the_unit_asked_for(unit, capacity):
    got, reasons = v.volume_capacity({"capacity": GIB + 2 ** 20 - 1 if unit != "Mi" else GIB - 1},
                                     {"capacity_round_down": unit})
    assert reasons == [] and got == capacity


def test_a_capacity_smaller_than_the_unit_is_refused_and_a_null_one_names_the_fix():
    assert "less than one Gi" in v.volume_capacity({"capacity": GIB - 1}, {"capacity_round_down": "Gi"})[1][0]
    assert "bind volume" in v.volume_capacity({"capacity": None})[1][0]
    assert v.volume_capacity({"capacity": None}, {"capacity_unknown_ok": True}) == (None, [])


def test_a_null_capacity_names_its_volume():
    _volumes, errors = v.normalize_volumes([dict(node="node1", name="vol1", path="/mnt/disks/vol1")])
    assert errors and errors[0].startswith("volume vol1 of node node1") and "capacity" in errors[0]


def test_two_volumes_at_one_path_of_a_node_are_refused():
    items = [dict(node="node1", name=n, path="/mnt/disks/x", capacity=GIB) for n in ("a", "b")]
    _volumes, errors = v.normalize_volumes(items)
    assert errors == ["path node1:/mnt/disks/x is wanted by more than one volume (node1/a, node1/b): one disk, one PV"]


@pytest.mark.parametrize("node,volume,name", [
    ("node1", "ssd0", "local-node1-ssd0"),
    ("node-1", "data0", "local-node--1-data0"),
    ("node", "1-data0", "local-node-1-data0"),
    ("node3.lab.example", "data-2", "local-node3.lab.example-data-2"),
])
def test_pv_names_say_where_the_node_name_ends(node, volume, name):
    assert naming.pv_name(node, volume) == name


def test_pv_names_of_different_node_and_volume_pairs_never_collide():
    parts = ["a", "b", "1", "a-b", "b-1", "a--b", "1-a-b"]
    pairs = [(n, m) for n in parts for m in parts]
    names = [naming.pv_name(n, m) for n, m in pairs]
    assert len(set(names)) == len(pairs)
    long_node = "n" * 40 + "-" + "x" * 20
    long = [naming.pv_name(long_node, "vol%d" % i) for i in range(50)]
    assert len(set(long)) == 50 and all(len(n) <= 63 for n in long)


def test_a_fleet_of_volumes_shares_its_repeated_values_and_each_pv_keeps_its_own():
    items = [{"node": "node%d" % n, "name": "ssd0", "path": "/mnt/disks/ssd0", "capacity": GIB,
              "labels": {"tier": "ssd"}} for n in range(3)]
    volumes, errors = v.normalize_volumes(items)
    assert errors == [] and volumes[0]["labels"] is volumes[2]["labels"] and volumes[0]["path"] is volumes[2]["path"]
    manifest = v.pv_manifest(volumes[0], "node0")
    manifest["metadata"]["labels"]["tier"] = "changed"
    assert volumes[2]["labels"] == {"tier": "ssd"} and v.pv_labels(volumes[1])["tier"] == "ssd"


def test_a_label_value_that_is_no_string_is_refused_not_a_crash():
    volumes, errors = v.normalize_volumes([{"node": "node1", "name": "ssd0", "path": "/mnt/disks/ssd0",
                                            "capacity": GIB, "labels": {"tier": ["ssd"]}}])
    assert len(errors) == 1 and "tier" in errors[0]


@pytest.mark.parametrize("spelling", ["/mnt/disks/x", "/mnt/disks/x/", "/mnt/disks/./x", "/mnt/disks//x",
                                      "//mnt/disks/x", "/mnt/disks/y/../x", "/mnt/./disks//x/."])
def test_every_spelling_of_a_path_has_one_canonical_form(spelling):
    assert naming.canonical_path(spelling) == "/mnt/disks/x"


@pytest.mark.parametrize("given", [None, "", "mnt/disks/x", "./x", 7])
def test_a_path_that_is_not_absolute_has_no_canonical_form(given):
    assert naming.canonical_path(given) is None


def test_a_volume_path_is_written_in_its_canonical_form():
    volume, reasons = v.normalize_volume(dict(node="node1", name="x", path="/mnt/disks/./x/", capacity=GIB))
    assert reasons == [] and volume["path"] == "/mnt/disks/x"
    assert v.pv_manifest(volume, "node1")["spec"]["local"]["path"] == "/mnt/disks/x"


def test_two_spellings_of_one_path_on_a_node_are_one_disk():
    items = [dict(node="node1", name="a", path="/mnt/disks/x", capacity=1),
             dict(node="node1", name="b", path="/mnt/disks//x/", capacity=1)]
    _volumes, errors = v.normalize_volumes(items)
    assert len(errors) == 1 and "path node1:/mnt/disks/x is wanted by more than one volume" in errors[0]


@pytest.mark.parametrize("spelling", ["/mnt/disks/ssd0/", "/mnt/disks/./ssd0", "/mnt/disks//ssd0"])
def test_a_pv_at_another_spelling_of_the_path_differs_in_nothing_immutable(spelling):
    volume = vol()
    have = v.pv_manifest(volume, "node1")
    have["spec"]["local"]["path"] = spelling
    immutable, patch = v.compare_pv(v.pv_manifest(volume, "node1"), have)
    assert immutable == [] and patch is None
