# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The README's example, as a user runs it: the collection built to a directory of its
own (--output-path), installed into an empty collections path, and site.yml of the
installed copy run with docs/examples/inventory against the lab. Only
example_lab_map.yml maps the example's devices and sizes to the lab's loop disks; the
lab adds its connection settings (ports, key, kubeconfig) in an inventory of its own."""

import copy
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml
from kubernetes import client

from conftest import REPO, recap
from pv_helpers import forget_unbound_pvs

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v

BIN = os.path.dirname(sys.executable)
EXAMPLE = os.path.join(REPO, "docs", "examples", "inventory")
MAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "example_lab_map.yml")
WANTED = {"node1": ["ssd0", "data-1", "data-2", "raw0", "vol1"], "node2": ["hdd0", "hdd1"]}


def mapped(value, devices, sizes):
    """``value`` with the example's devices and sizes replaced by the lab's."""
    if isinstance(value, dict):
        return {k: mapped(item, devices, sizes) for k, item in value.items()}
    if isinstance(value, list):
        return [mapped(item, devices, sizes) for item in value]
    if isinstance(value, str) and value in devices:
        return devices[value]
    if isinstance(value, str) and value in sizes:
        return sizes[value]
    return value


def differences(before, after):
    """{(old, new)} of the leaves that differ between two structures of the same shape."""
    if isinstance(before, dict) and isinstance(after, dict) and set(before) == set(after):
        return set().union(*[differences(before[k], after[k]) for k in before])
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return set().union(*[differences(b, a) for b, a in zip(before, after)])
    return set() if before == after else {(before, after)}


@pytest.fixture
def example_inventory(lab, tmp_path):
    """The example inventory with the lab's disks in it, and the lab's connection inventory."""
    with open(MAP) as f:
        lab_map = yaml.safe_load(f)
    with open(lab.inventory) as f:
        lab_inventory = yaml.safe_load(f)["all"]
    lab_hosts = lab_inventory["children"]["nodes"]["hosts"]
    inventory = tmp_path / "inventory"
    shutil.copytree(EXAMPLE, inventory)
    for host in WANTED:
        path = inventory / "host_vars" / ("%s.yml" % host)
        original = yaml.safe_load(path.read_text())
        devices = {dev: lab_hosts[host]["lab_disks"][i] for dev, i in (lab_map["devices"].get(host) or {}).items()}
        changed = mapped(original, devices, lab_map["sizes"])
        # nothing but the mapped values differs from the example
        assert differences(original, changed) <= set(devices.items()) | set(lab_map["sizes"].items())
        path.write_text(yaml.safe_dump(changed, sort_keys=False))
    connection = {"all": {"hosts": {h: {k: lab_hosts[h][k] for k in ("ansible_host", "ansible_port")}
                                    for h in WANTED},
                          "vars": copy.deepcopy(lab_inventory["vars"])}}
    (tmp_path / "lab-connection.yml").write_text(yaml.safe_dump(connection))
    return inventory, tmp_path / "lab-connection.yml"


@pytest.fixture
def blank_nodes(lab, kube):
    names = {naming.pv_name(node, name) for node, volumes in WANTED.items() for name in volumes}
    forget_unbound_pvs(kube, names)
    lab.wipe_disks(*WANTED)
    yield
    forget_unbound_pvs(kube, names)
    lab.wipe_disks(*WANTED)


def installed_collection(tmp_path):
    """The collection built into tmp_path/dist and installed into tmp_path/collections."""
    dist, collections = tmp_path / "dist", tmp_path / "collections"

    # as on a machine where nothing is installed yet: only the empty path, not this
    # checkout's link (with it, install answers "Nothing to do")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections))

    def galaxy(*args):
        res = subprocess.run([os.path.join(BIN, "ansible-galaxy")] + list(args), capture_output=True, text=True,
                             cwd=str(tmp_path), env=env, check=False)
        assert res.returncode == 0, res.stdout + res.stderr
        return res.stdout

    galaxy("collection", "build", "--output-path", str(dist), REPO)
    (tarball,) = dist.glob("localpv-rollout-*.tar.gz")
    said = galaxy("collection", "install", "--no-deps", "-p", str(collections), str(tarball))
    assert "was installed successfully" in said, said
    return collections


def test_the_readme_example_runs_from_the_installed_tarball(lab, kube, tmp_path, example_inventory, blank_nodes):
    collections = installed_collection(tmp_path)
    inventory, connection = example_inventory
    env = dict(lab.env(), ANSIBLE_COLLECTIONS_PATH=str(collections))
    # the installed copy, not this checkout, is what Ansible finds
    listed = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "list", "localpv.rollout",
                             "--format", "json"], capture_output=True, text=True, env=env, check=True).stdout
    assert list(json.loads(listed)) == [str(collections / "ansible_collections")]

    def site(*args):
        return subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", str(inventory), "-i", str(connection),
                               "localpv.rollout.site"] + list(args), capture_output=True, text=True, env=env,
                              cwd=str(tmp_path), check=False, timeout=900)

    first = site()
    assert first.returncode == 0, first.stdout[-30000:] + first.stderr[-3000:]
    # the selector says which disks it passed over and why (node2's 512 MiB disk is too small)
    small = lab.node("node2")["disks"][2]["path"]
    assert "match hdd: skipped %s: %d bytes, below min_size" % (small, 2 ** 29) in first.stdout, first.stdout[-5000:]
    core = client.CoreV1Api(kube)
    ours = {pv.metadata.name: pv for pv in core.list_persistent_volume().items}
    for node, volumes in WANTED.items():
        for name in volumes:
            pv = ours.get(naming.pv_name(node, name))
            assert pv is not None, (node, name, first.stdout[-3000:])
            assert pv.spec.storage_class_name == "local-storage"
    assert ours[naming.pv_name("node1", "raw0")].spec.volume_mode == "Block"
    assert v.parse_quantity(ours[naming.pv_name("node1", "vol1")].spec.capacity["storage"]) == 10 * 2 ** 30

    again = site()
    assert again.returncode == 0, again.stdout[-5000:]
    counts = recap(again.stdout)
    assert set(WANTED) <= set(counts) and all(c["changed"] == 0 for c in counts.values()), again.stdout[-4000:]
