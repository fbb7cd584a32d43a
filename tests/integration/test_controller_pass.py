# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The API requests of a site.yml run with nothing to change, counted by the API
server itself: its audit log records every read and review of the lab's admin, with
the User-Agent that says which of them localpv.rollout sent (lab/lab.py, AUDIT_POLICY)."""

import json

from kubernetes import client

from pv_helpers import MANAGED, forget_unbound_pvs, now_rfc3339

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming
from ansible_collections.localpv.rollout.plugins.module_utils.kube import preflight as pf

# as test_local_pv_site: prune off, other tests keep PVs of their own on the lab nodes
SITE_VARS = {"localpv_disks": "{{ lab_site_disks }}", "pv_register_prune": False, "localpv_allow_kernel_names": True}


def site_pv_names(lab):
    """The names of the PVs site.yml makes of the lab nodes' site disks."""
    import yaml
    with open(lab.inventory) as f:
        hosts = yaml.safe_load(f)["all"]["children"]["nodes"]["hosts"]
    names = set()
    for host, hv in hosts.items():
        for disk in hv.get("lab_site_disks") or []:
            parts = disk.get("partitions")
            for name in (["%s-%d" % (disk["name"], i) for i in range(1, parts + 1)] if parts else [disk["name"]]):
                names.add(naming.pv_name(hv.get("localpv_node_name") or host, name))
    return names


def requests_by_us(lab, since, until):
    """``{(verb, resource): count}`` of the requests localpv.rollout sent between
    ``since`` and ``until``, as the API server logged them (once each, when answered)."""
    counts = {}
    for ev in lab.audit_events(since=since):
        if ev.get("stageTimestamp", "") > until or ev.get("stage") not in (None, "ResponseComplete"):
            continue
        if not (ev.get("userAgent") or "").startswith("localpv.rollout"):
            continue
        key = (ev.get("verb"), (ev.get("objectRef") or {}).get("resource"))
        counts[key] = counts.get(key, 0) + 1
    return counts


def forget_site(lab, core):
    """Blank disks and none of the site's unbound PVs: a PV left by `make site` would
    record disks the wipe took away, and the hosts would rightly refuse them."""
    forget_unbound_pvs(core.api_client, site_pv_names(lab))
    lab.wipe_disks()


def test_a_site_run_with_nothing_to_change_sends_one_pass_of_requests(lab, kube, tmp_path):
    core = client.CoreV1Api(kube)
    forget_site(lab, core)
    try:
        first = lab.playbook("playbooks/site.yml", extra_vars=SITE_VARS)
        assert first.returncode == 0, first.stdout[-5000:] + first.stderr[-3000:]
        report_dir = tmp_path / "report"
        since = now_rfc3339()
        again = lab.playbook("playbooks/site.yml", extra_vars=dict(SITE_VARS, localpv_report_dir=str(report_dir)))
        until = now_rfc3339()
        assert again.returncode == 0, again.stdout[-5000:] + again.stderr[-3000:]
        assert all(r["changed"] == 0 for r in again.recap.values()), again.recap
        rights = len(pf.rights_for("site", prune=False))
        assert rights == 8
        # The preflight: one review per right (sent at once), the StorageClass, one LIST of
        # Nodes and one of PVs (which also gives the hosts what the PVs record). local_pv:
        # the StorageClass (ensured, and known to exist for the PVs), one LIST of Nodes,
        # one of PVs, and the report from that LIST. The lab holds fewer than 1,000 PVs:
        # one page each. Before, the same run also sent two reviews for the report's
        # claims and pods, a LIST of PVs for the records, one more for the read-back and
        # one more LIST of Nodes (19 requests).
        assert requests_by_us(lab, since, until) == {
            ("create", "selfsubjectaccessreviews"): rights,
            ("get", "storageclasses"): 2,
            ("list", "nodes"): 2,
            ("list", "persistentvolumes"): 2,
        }
        # the report still shows what the API server holds: every site PV, as listed
        done = json.loads((report_dir / "site.json").read_text())
        listed = dict((pv.metadata.name, pv.status.phase) for pv in core.list_persistent_volume(
            label_selector=MANAGED).items)
        rows = [r for n in done["nodes"] for r in n["volumes"]]
        assert rows and all(r["phase"] == listed[r["pv"]] for r in rows), rows
    finally:
        forget_site(lab, core)
