# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each molecule scenario makes the state it needs on every run (no lab needed)."""

import glob
import os

import pytest
import yaml

from conftest import REPO

SCENARIOS = sorted(glob.glob(os.path.join(REPO, "molecule", "*", "molecule.yml")))


def test_there_are_scenarios_to_check():
    assert SCENARIOS


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: os.path.basename(os.path.dirname(p)))
def test_molecule_forgets_the_last_run_before_prepare(path):
    # molecule skips prepare while its saved state says "prepared", and only destroy
    # resets that state: without destroy first, a second `make molecule` converged on
    # whatever `make site` or a test had left on the node.
    sequence = yaml.safe_load(open(path))["scenario"]["test_sequence"]
    if "prepare" in sequence:
        assert "destroy" in sequence[:sequence.index("prepare")], sequence
    assert sequence[-1] == "destroy", sequence


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: os.path.basename(os.path.dirname(p)))
def test_scenarios_blank_the_lab_disks_the_labs_one_way(path):
    scenario = os.path.dirname(path)
    wipe = open(os.path.join(scenario, "tasks", "wipe.yml")).read()
    assert "lab/lab.py" in wipe and "wipe-disks" in wipe
    for step in ("prepare.yml", "cleanup.yml"):
        text = open(os.path.join(scenario, step)).read()
        assert "include_tasks: tasks/wipe.yml" in text, step
        assert "wipefs" not in text + wipe and "blkdiscard" not in text + wipe, step
