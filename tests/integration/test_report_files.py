# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report files (localpv_report_dir) are output, not changes: a run whose PVs
only moved phase or claim, and a --check run, report changed=0 while the files
are written with what is true now."""

import json

import yaml

from test_decommission_support import playbook


def report_play(tmp_path, phase, claim):
    play = [{"name": "report", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
             "tasks": [{"name": "Report", "ansible.builtin.include_role": {"name": "localpv.rollout.report"},
                        "vars": {"report_kind": "decommission", "report_nodes": ["node2"], "report_action": "retire",
                                 "report_pvs": [{"name": "local-node2-ssd0", "node": "node2", "volume": "ssd0",
                                                 "path": "/mnt/disks/ssd0", "phase": phase, "claim": claim}]}}]}]
    path = tmp_path / ("report-%s.yml" % phase)
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    return str(path)


def test_report_files_do_not_make_a_run_changed_in_check_mode_or_when_only_phases_moved(lab, tmp_path):
    out = tmp_path / "reports"
    for args, phase, claim in [((), "Available", None), (("--check",), "Bound", "app/data-web-0"),
                               ((), "Bound", "app/data-web-0"), ((), "Released", "app/data-web-0")]:
        res = playbook(lab, report_play(tmp_path, phase, claim), *args,
                       extra_vars={"localpv_report_dir": str(out)})
        assert res.returncode == 0, res.text[-3000:]
        assert res.stats["localhost"]["changed"] == 0, (args, phase, res.stats)
        name = "decommission-plan.json" if args else "decommission.json"
        written = json.loads((out / name).read_text())
        assert written["nodes"][0]["volumes"][0]["phase"] == phase
