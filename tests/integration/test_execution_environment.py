# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What users install: bindep.txt names the managed nodes' tools (profile node), the
role docs list them and the lab's node image is built from the same list; an
execution environment (the controller) gets the Python packages and none of the
node tools. Checked with ansible-builder and bindep, in a venv of their own
(lab/ee.py pins them). And the EE itself: built with ansible-builder (`make ee`), and
site.yml run through it with ansible-runner against the lab, twice."""

import importlib.util
import os
import subprocess
import sys
import time

import pytest
import yaml
from kubernetes import client

from conftest import REPO, recap
from pv_helpers import forget_unbound_pvs

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming

BIN = os.path.dirname(sys.executable)


def _ee_module():
    spec = importlib.util.spec_from_file_location("localpv_ee", os.path.join(REPO, "lab", "ee.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EE = _ee_module()


@pytest.fixture(scope="module")
def tools():
    """The venv of ansible-builder, bindep and ansible-runner (not the project's: they pin
    their own needs)."""
    return EE.tools()


def run(*cmd, cwd=REPO):
    res = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, check=False)
    assert res.returncode == 0, " ".join(cmd) + "\n" + res.stdout + res.stderr
    return res.stdout


def bindep_list(tools, path, *profiles):
    out = run(os.path.join(tools, "bindep"), "-f", path, "-l", "newline", *profiles)
    return [line for line in out.split() if line]


def test_node_tools_are_a_bindep_profile_the_docs_and_the_lab_image_share(tools):
    bindep = os.path.join(REPO, "bindep.txt")
    node = bindep_list(tools, bindep, "node")
    # what the host modules run: blkid, wipefs, partx (util-linux), sfdisk (fdisk), mkfs.*
    assert set(node) >= {"util-linux", "fdisk", "mount", "xfsprogs", "e2fsprogs", "python3"}
    assert "parted" not in node  # never called
    # the controller (an execution environment) gets none of them
    assert bindep_list(tools, bindep) == []
    image = run("bash", os.path.join(REPO, "lab", "build-node-image.sh"), "--packages").strip().split(",")
    assert set(node) <= set(image)
    with open(os.path.join(REPO, "roles", "disk_prep", "README.md")) as f:
        readme = f.read()
    for package in node:
        assert "`%s`" % package in readme, package


def test_lab_nodes_have_every_node_tool(lab, tools):
    node = bindep_list(tools, os.path.join(REPO, "bindep.txt"), "node")
    res = lab.ssh("node1", "dpkg-query -W -f '${Package} ${Status}\\n' " + " ".join(node))
    installed = [line.split()[0] for line in res.stdout.splitlines() if line.endswith("installed")]
    assert sorted(installed) == sorted(node), res.stdout + res.stderr


def test_ansible_builder_gives_an_ee_the_python_packages_and_no_node_tool(tools, tmp_path):
    run(os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path))
    (tarball,) = [p for p in tmp_path.iterdir() if p.name.endswith(".tar.gz")]
    installed = tmp_path / "collections"
    run(os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--force", "--no-deps", "-p",
        str(installed), str(tarball))
    found = yaml.safe_load(run(os.path.join(tools, "ansible-builder"), "introspect", "--sanitize", str(installed)))
    assert any(line.startswith("kubernetes") for line in found["python"]), found
    system = tmp_path / "ee-bindep.txt"
    system.write_text("\n".join(line.split("  #")[0] for line in found["system"]) + "\n")
    # an EE build runs bindep with its default profile: our node tools stay out of it
    assert bindep_list(tools, str(system)) == []

    definition = tmp_path / "execution-environment.yml"
    definition.write_text(yaml.safe_dump({
        "version": 3,
        "images": {"base_image": {"name": "quay.io/ansible/awx-ee:latest"}},
        "dependencies": {"galaxy": {"collections": [{"name": str(tarball), "type": "file"}]},
                         "ansible_core": {"package_pip": "ansible-core"},
                         "ansible_runner": {"package_pip": "ansible-runner"}},
    }))
    context = tmp_path / "context"
    run(os.path.join(tools, "ansible-builder"), "create", "-f", str(definition), "-c", str(context),
        cwd=str(tmp_path))
    containerfile = (context / "Containerfile").read_text()
    assert "ansible-galaxy collection install" in containerfile or "install-from-bindep" in containerfile
    with open(context / "_build" / "requirements.yml") as f:
        assert yaml.safe_load(f)["collections"][0]["name"].endswith(tarball.name)


def site_volumes(lab):
    """{pv name: volume mode} of what the lab's site-vars.yml prepares on every node."""
    with open(lab.inventory) as f:
        hosts = yaml.safe_load(f)["all"]["children"]["nodes"]["hosts"]
    wanted = {}
    for host, hv in hosts.items():
        for disk in hv["lab_site_disks"]:
            names = ["%s-%d" % (disk["name"], i) for i in range(1, disk["partitions"] + 1)] \
                if disk.get("partitions") else [disk["name"]]
            for name in names:
                wanted[naming.pv_name(hv.get("localpv_node_name") or host, name)] = \
                    "Block" if disk.get("mode") == "block" else "Filesystem"
    return wanted


@pytest.fixture
def blank_site(lab, kube):
    """Blank disks and none of the site's PVs, as before a first `make site`; the PVs
    are deleted and the disks blanked again afterwards."""
    names = site_volumes(lab)

    def clean():
        forget_unbound_pvs(kube, names)
        lab.wipe_disks()

    clean()
    yield names
    clean()


def test_site_runs_through_the_built_ee_and_a_second_run_changes_nothing(lab, kube, blank_site):
    """What AWX does: the EE image (built here, or this checkout's build found by its
    inputs' hash), ansible-runner with container isolation, site.yml of the collection
    the EE holds, the lab's inventory and the vars `make site` uses."""
    t0 = time.time()
    image = EE.build()
    built = time.time() - t0
    first = EE.run_site(image, ident="test-first", quiet=True)
    assert first.returncode == 0, first.stdout[-6000:]
    counts = recap(first.stdout)
    hosts = [n["host"] for n in lab.nodes]
    assert sorted(counts) == sorted(hosts), first.stdout[-4000:]
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in counts.values()), counts
    # the first run prepared the blank disks and made the PVs
    assert all(counts[h]["changed"] > 0 for h in hosts), counts
    core = client.CoreV1Api(kube)
    pvs = {pv.metadata.name: pv for pv in core.list_persistent_volume().items}
    for name, mode in blank_site.items():
        assert name in pvs, (name, first.stdout[-3000:])
        assert pvs[name].spec.volume_mode == mode
        assert pvs[name].spec.storage_class_name == "local-storage"
        assert pvs[name].status.phase == "Available"

    again = EE.run_site(image, ident="test-again", quiet=True)
    assert again.returncode == 0, again.stdout[-6000:]
    counts = recap(again.stdout)
    assert sorted(counts) == sorted(hosts), again.stdout[-4000:]
    assert all(c["changed"] == 0 and c["failed"] == 0 for c in counts.values()), again.stdout[-4000:]
    # (seen with -s: the numbers docs/execution-environment.md records)
    print("EE %s: build or reuse %.0fs" % (image, built))
