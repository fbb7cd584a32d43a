# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options set once for every API module, through the action group."""

import yaml


def test_group_module_defaults_reach_the_api_modules(lab, tmp_path):
    play = [{
        "name": "connection options from module_defaults",
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "module_defaults": {"group/localpv.rollout.k8s": {"kubeconfig": lab.kubeconfig}},
        "tasks": [{"name": "List the PVs of node1", "localpv.rollout.local_pv_info": {"nodes": ["node1"]}}],
    }]
    playbook = tmp_path / "defaults.yml"
    playbook.write_text(yaml.safe_dump(play))
    env_without_kubeconfig = {"KUBECONFIG": "/nonexistent"}
    res = lab.playbook(str(playbook), inventory="localhost,", env=env_without_kubeconfig)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert res.recap["localhost"]["failed"] == 0
