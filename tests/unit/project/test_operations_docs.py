# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The CI gate of docs/operations.md, run as the page prints it, on reports made by
the report module the report role uses and on the diff headers local_pv prints."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

from ansible_collections.localpv.rollout.plugins.module_utils.common import report
from ansible_collections.localpv.rollout.plugins.module_utils.kube import persistent_volumes as pvs

MARK = "# localpv-plan-gate"


def gate_source():
    """The fenced Python block of docs/operations.md that starts with MARK."""
    with open(os.path.join(REPO, "docs", "operations.md")) as handle:
        text = handle.read()
    start = text.index("```python\n" + MARK) + len("```python\n")
    return text[start:text.index("```", start)]


HOSTS = [{"node": "node2", "volumes": [{"name": "ssd0", "path": "/mnt/disks/ssd0", "size": 10 ** 12,
                                        "fstype": "xfs", "stable_id": "nvme-eui.0025385b71b0a1c2"},
                                       {"name": "ssd1", "path": "/mnt/disks/ssd1", "size": 10 ** 12,
                                        "fstype": "xfs", "stable_id": "nvme-eui.0025385b71b0a1c3"}]}]
PVS = [{"node": "node2", "volume": "ssd0", "name": "local-node2-ssd0", "phase": "Bound", "claim": "db/data-db-0"},
       {"node": "node2", "volume": "old", "name": "local-node2-old", "phase": "Available", "claim": None}]


def run_gate(tmp_path, document, log=""):
    script = tmp_path / "localpv_gate.py"
    script.write_text(gate_source())
    plan = tmp_path / "site-plan.json"
    plan.write_text(json.dumps(document))
    (tmp_path / "site-plan.log").write_text(log)
    return subprocess.run([sys.executable, str(script), str(plan), str(tmp_path / "site-plan.log")],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)


def diff_lines(action, name):
    """The two header lines Ansible's diff output shows for one local_pv action."""
    existing = {"metadata": {"name": name, "labels": {}}, "spec": {}}
    diff = pvs.action_diff({"action": action, "name": name, "existing": existing})
    return "--- before: %s\n+++ after: %s\n" % (diff["before_header"], diff["after_header"])


def test_the_gate_passes_a_plan_that_only_creates(tmp_path):
    plan = report.site_report(HOSTS, PVS[:1], planned=True)
    result = run_gate(tmp_path, plan)
    assert result.returncode == 0, result.stdout
    assert "plan: create 1, none 1" in result.stdout


@pytest.mark.parametrize("key, action", [("deleted", "delete"), ("replaced", "replace")])
def test_the_gate_fails_a_plan_that_deletes_or_replaces_a_pv_and_names_it(tmp_path, key, action):
    plan = report.site_report(HOSTS, PVS, {key: ["local-node2-old"]}, planned=True)
    result = run_gate(tmp_path, plan)
    assert result.returncode == 1
    assert "the plan would %s PV local-node2-old" % action in result.stdout


def test_the_gate_fails_a_delete_the_diff_names_when_the_report_does_not(tmp_path):
    # what a check run prints today: the report says none, local_pv's diff says deleted
    only_ssd0 = [dict(HOSTS[0], volumes=HOSTS[0]["volumes"][:1])]
    plan = report.site_report(only_ssd0, PVS, planned=True)
    assert plan["totals"]["actions"] == {"none": 2}
    result = run_gate(tmp_path, plan, log="TASK [x] ***\n" + diff_lines("delete", "local-node2-old") + "-    a: 1\n")
    assert result.returncode == 1
    assert "the plan would delete PV local-node2-old" in result.stdout


def test_the_gate_refuses_a_report_of_a_real_run(tmp_path):
    result = run_gate(tmp_path, report.site_report(HOSTS, PVS[:1]))
    assert result.returncode == 1 and "is not a plan: run site.yml with --check" in result.stdout
