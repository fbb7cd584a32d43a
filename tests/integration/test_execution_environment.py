# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What users install: bindep.txt names the managed nodes' tools (profile node), the
role docs list them and the lab's node image is built from the same list; an
execution environment (the controller) gets the Python packages and none of the
node tools. Checked with ansible-builder and bindep, in a venv of their own."""

import os
import subprocess
import sys

import pytest
import yaml

from conftest import CACHE, REPO

TOOLS = ("ansible-builder==3.2.0", "bindep==2.14.0")
BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def tools():
    """A venv with ansible-builder and bindep (not the project's: they pin their own needs)."""
    venv = os.path.join(CACHE, "builder-venv")
    stamp = os.path.join(venv, ".tools")
    want = "\n".join(TOOLS)
    if not os.path.exists(stamp) or open(stamp).read() != want:
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q"] + list(TOOLS), check=True)
        with open(stamp, "w") as f:
            f.write(want)
    return os.path.join(venv, "bin")


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
