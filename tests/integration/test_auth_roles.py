# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The roles that talk to the API server take kubernetes.core's connection options as
one dict (localpv_k8s_auth): a ServiceAccount token and the server's address, no
kubeconfig anywhere, and the token never shows in the output."""

import json

import yaml
from kubernetes import client

import test_rbac
from pv_helpers import delete_pvs, unique

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming

# a ServiceAccount with a token, bound to the given rules (test_rbac's fixture)
identity = test_rbac.identity
RETIRE_ROLE_FILE = test_rbac.ROLE_FILE.replace("clusterrole.yaml", "retire-clusterrole.yaml")


def retire_rules():
    with open(RETIRE_ROLE_FILE) as f:
        return yaml.safe_load(f)["rules"]


def test_pv_register_decommission_and_reclaim_run_with_a_token_and_no_kubeconfig(lab, kube, tmp_path, identity):
    auth = identity(test_rbac.shipped_role()["rules"] + retire_rules())
    token = auth["api_key"]
    node, sc = unique("n"), unique("sc-")
    made = [naming.pv_name(node, "vol1")]
    inventory = tmp_path / "inventory.yml"
    # a host whose disks disk_prep prepared earlier: only its published volumes are needed here
    inventory.write_text(yaml.safe_dump({"all": {"children": {"nodes": {"hosts": {node: {
        "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "localpv_volumes": [{"name": "vol1", "path": "/mnt/disks/vol1", "mode": "filesystem", "fstype": "xfs",
                             "capacity": 2 ** 30, "size": 2 ** 30, "stable_id": "wwn-0x5000c500a1b2c3d4"}],
    }}}}}}))
    extra = {"localpv_k8s_auth": {"host": auth["host"], "api_key": token, "ca_cert": auth["ca_cert"]},
             "localpv_storage_classes": [{"name": sc}], "localpv_report_dir": str(tmp_path / "report")}
    no_kubeconfig = {"KUBECONFIG": str(tmp_path / "no-such-kubeconfig")}
    try:
        register = tmp_path / "register.yml"
        register.write_text(yaml.safe_dump([{"name": "Register the PVs", "hosts": "nodes", "gather_facts": False,
                                             "roles": ["localpv.rollout.pv_register"]}]))
        site = lab.playbook(str(register), inventory=str(inventory), extra_vars=extra, env=no_kubeconfig)
        assert site.returncode == 0, site.stdout[-4000:] + site.stderr[-2000:]
        pv = client.CoreV1Api(kube).read_persistent_volume(made[0])
        assert pv.spec.local.path == "/mnt/disks/vol1"
        report = json.loads((tmp_path / "report" / "site.json").read_text())
        assert report["nodes"][0]["volumes"][0]["pv"] == made[0]
        assert report["nodes"][0]["volumes"][0]["device"] == "wwn-0x5000c500a1b2c3d4"

        plan = lab.playbook("playbooks/decommission.yml", inventory=str(inventory), env=no_kubeconfig,
                            extra_vars=dict(extra, decommission_nodes=node, decommission_stop_after="plan"))
        assert plan.returncode == 0, plan.stdout[-4000:] + plan.stderr[-2000:]
        retire = json.loads((tmp_path / "report" / "decommission-plan.json").read_text())
        assert [r["pv"] for r in retire["nodes"][0]["volumes"]] == made

        reclaim = lab.playbook("playbooks/reclaim.yml", inventory=str(inventory), env=no_kubeconfig,
                               extra_vars=dict(extra, reclaim_nodes=node, localpv_allow_wipe=True))
        assert reclaim.returncode == 0, reclaim.stdout[-4000:] + reclaim.stderr[-2000:]
        assert "nothing to reclaim" in reclaim.stdout
        for res in (site, plan, reclaim):
            assert token not in res.stdout + res.stderr
    finally:
        delete_pvs(kube, made)
        try:
            client.StorageV1Api(kube).delete_storage_class(sc)
        except client.ApiException:
            pass
