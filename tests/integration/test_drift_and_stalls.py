# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drift that a re-run must notice and stalls that must end, on the lab's nodes:
a volume remounted read-only by hand, an sshd that stops answering mid-task, and a
host that cannot be reached listed in the end table."""

import os
import threading

import pytest
import yaml

from conftest import LAB
from pv_helpers import wait_until
from test_decommission_support import Scenario, playbook


@pytest.fixture
def scenario(lab, kube, tmp_path):
    s = Scenario(lab, kube, tmp_path)
    yield s
    s.cleanup()


def live_options(s, name):
    return s.sh("findmnt -rn -o OPTIONS --mountpoint %s" % s.path(name)).stdout.strip().split(",")


def test_a_volume_remounted_read_only_by_hand_is_remounted_by_the_next_run(lab, scenario):
    s = scenario
    name = s.tag + "-a"
    disks = [{"name": name, "bind": "/data/%s/%s" % (s.tag, name), "capacity": "1G"}]
    s.prepare(disks)
    assert "rw" in live_options(s, name)
    # an admin (or the kernel after an error) makes it read-only; the fstab line stays right
    s.sh("mount -o remount,bind,ro %s" % s.path(name))
    assert "ro" in live_options(s, name)

    s.prepare(disks)
    assert "rw" in live_options(s, name), live_options(s, name)
    s.sh("touch %s/written-after-the-run" % s.path(name))


STALL = """\
- name: A task that outlives its host's sshd
  hosts: node2
  gather_facts: false
  tasks:
    - name: Mark the start, then stay quiet for a long time
      ansible.builtin.shell: "touch /tmp/{tag}-started && sleep 600"
      changed_when: false
"""


def test_an_sshd_that_stops_answering_ends_the_run_as_unreachable_within_the_keep_alive_bound(lab, tmp_path):
    node = lab.node("node2")
    tag = os.path.basename(str(tmp_path))
    play = tmp_path / "stall.yml"
    play.write_text(STALL.format(tag=tag))
    done = {}
    runner = threading.Thread(target=lambda: done.setdefault("run", playbook(lab, str(play), timeout=400)))
    runner.start()
    try:
        wait_until("the task to start on node2", lambda: LAB.podman(
            "exec", node["container"], "test", "-e", "/tmp/%s-started" % tag, check=False).returncode == 0,
            timeout=120)
        # every sshd of the node, its sessions included, stops answering (a frozen host)
        LAB.podman("exec", node["container"], "pkill", "-STOP", "sshd")
        runner.join(300)
        assert not runner.is_alive(), "the run is still waiting on a host that does not answer"
    finally:
        LAB.podman("exec", node["container"], "pkill", "-CONT", "sshd", check=False)
        LAB.podman("exec", node["container"], "pkill", "-f", "sleep 600", check=False)
        runner.join(400)
    res = done["run"]
    assert res.returncode != 0 and res.stats["node2"]["unreachable"] == 1, res.text[-2000:]


def pvs_only_check_run(lab, tmp_path, **node2_vars):
    """site.yml --check --tags localpv_pvs on node1 and node2, with ``node2_vars`` set
    on node2 in a copy of the lab's inventory. node1 and node2 only: node2's status in
    the table is the point, and node3's disks belong to the disk tests before these."""
    with open(lab.inventory) as handle:
        inventory = yaml.safe_load(handle)
    inventory["all"]["children"]["nodes"]["hosts"]["node2"].update(node2_vars)
    edited = tmp_path / "inventory.yml"
    edited.write_text(yaml.safe_dump(inventory))
    with open(os.path.join(os.path.dirname(lab.inventory), "site-vars.yml")) as f:
        site_vars = dict(yaml.safe_load(f), pv_register_prune=False)
    return lab.playbook("playbooks/site.yml", "--check", "--tags", "localpv_pvs", "--limit", "node1,node2",
                        extra_vars=site_vars, inventory=str(edited))


def test_an_unreachable_host_is_listed_in_the_end_table_as_unreachable(lab, tmp_path):
    res = pvs_only_check_run(lab, tmp_path, ansible_port=1)
    assert res.recap["node2"]["unreachable"] == 1, res.stdout[-3000:]
    assert "[node2] UNREACHABLE: not reached over SSH" in res.stdout, res.stdout[-4000:]
    assert "1 unreachable" in res.stdout


def test_a_host_that_answered_and_then_failed_is_listed_as_failed_not_unreachable(lab, tmp_path):
    # node2 answers (it proves it is its Node), then its read-only step of --tags
    # localpv_pvs refuses its ssd0: the PV record handed to it names a disk no disk
    # of node2 is, as after a disk swap the PV still remembers
    res = pvs_only_check_run(lab, tmp_path, disk_prep_recorded={
        "ssd0": {"pv": "local-node2-ssd0", "stable_id": "lab-no-such-disk",
                 "partuuid": "00000000-0000-4000-8000-000000000001",
                 "fs_uuid": "00000000-0000-4000-8000-000000000002", "claim": None}})
    assert res.recap["node2"]["unreachable"] == 0 and res.recap["node2"]["failed"] == 1, res.stdout[-3000:]
    assert "[node2] FAILED before its volumes were known" in res.stdout, res.stdout[-4000:]
    assert "[node2] UNREACHABLE" not in res.stdout and "1 unreachable" not in res.stdout, res.stdout[-4000:]
    assert "1 failed" in res.stdout, res.stdout[-4000:]
