# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What local_pv's own code costs in a no-op re-run, at a scale no lab holds for long.

A model, not a cluster: the LIST pages the API server would send for N owned PVs
(the same shape as a real page: metadata with managedFields, spec, status) are
made in the process and fed to the real scan (``Kube.scan``), index and plan, as
in a no-op re-run where every PV is as wanted. It isolates the module's own time
and peak memory from the API server's, which the lab measures too
(``bench_local_pv.py``) but cannot hold at 100,000 PVs for more than one run.

Each version runs in its own process (peak RSS is per process). With
``--other-collections DIR`` (a directory holding ansible_collections/localpv/rollout
of another version), that version runs too and the ratio is printed. Making the
pages is part of both times alike.

    python bench/bench_noop_model.py [--n 100000] [--nodes 5000] [--other-collections DIR]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)   # bench_local_pv: the same volumes and the same collection lookup
PAGE = 1000


def _managed_fields(labels):
    """managedFields as the API server keeps them for a PV we wrote: about half a PV's JSON."""
    def fields(keys):
        return dict([(".", {})] + [("f:%s" % key, {}) for key in keys])
    return [
        {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
         "time": "2026-11-30T11:58:56Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:phase": {}}},
         "subresource": "status"},
        {"manager": "localpv.rollout", "operation": "Update", "apiVersion": "v1", "time": "2026-11-30T11:58:56Z",
         "fieldsType": "FieldsV1", "fieldsV1": {
             "f:metadata": {"f:annotations": fields(["localpv.rollout/extra-labels"]), "f:labels": fields(labels)},
             "f:spec": {"f:accessModes": {}, "f:capacity": fields(["storage"]), "f:local": fields(["fsType", "path"]),
                        "f:nodeAffinity": fields(["required"]), "f:persistentVolumeReclaimPolicy": {},
                        "f:storageClassName": {}, "f:volumeMode": {}}}}]


def child(args):
    """One version: its volumes check, then the scan of model pages, the index and the plan."""
    sys.path.insert(0, args.collections)
    from ansible_collections.localpv.rollout.plugins.module_utils.common import naming
    from ansible_collections.localpv.rollout.plugins.module_utils.kube import client as k
    from ansible_collections.localpv.rollout.plugins.module_utils.kube import persistent_volumes as pvs
    from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v
    import bench_local_pv

    items, nodes = bench_local_pv.volumes("model", args.n, "lpv", args.nodes)
    labels = {bench_local_pv.BENCH_LABEL: "model"}
    start = time.perf_counter()
    volumes, errors = v.normalize_volumes(items, {"labels": labels})
    assert not errors, errors[:3]
    del items

    def page(number):
        pvs_of_page = []
        for volume in volumes[number * PAGE:(number + 1) * PAGE]:
            pv = v.pv_manifest(volume, volume["node"])
            pv["metadata"].update(uid="u-%d" % number, resourceVersion="1", creationTimestamp="2026-11-30T11:58:56Z",
                                  finalizers=["kubernetes.io/pv-protection"],
                                  managedFields=_managed_fields(sorted(pv["metadata"]["labels"])))
            pv["status"] = {"phase": "Available"}
            pvs_of_page.append(pv)
        meta = {"resourceVersion": "9"}
        if (number + 1) * PAGE < len(volumes):
            meta["continue"] = "page-%d" % (number + 1)
        return json.dumps({"kind": "PersistentVolumeList", "apiVersion": "v1", "metadata": meta,
                           "items": pvs_of_page}, separators=(",", ":")).encode()

    class ModelServer(k.Kube):
        """Answers the LIST of every PV with model pages; nothing else is asked in a no-op."""
        def __init__(self):  # pylint: disable=super-init-not-called
            self.dry_run = False

        def call(self, verb, resource, name, method, path, query=None, body=None, decode=True):
            token = dict(query or ()).get("continue")
            return page(int(token.split("-")[1]) if token else 0)

    scope = list(dict.fromkeys(nodes))
    index = pvs.PvIndex(volumes, [naming.label_value(n) for n in scope])
    ModelServer().scan_pvs(index.add, start=index.reset, limit=PAGE)
    hostnames = v.resolve_hostnames(scope, [], index.owned_hostnames, {})
    actions = pvs.plan_pvs(volumes, hostnames, index, scope, prune=True)
    wall = time.perf_counter() - start
    assert len(actions) == args.n and all(a["action"] == "unchanged" for a in actions)
    print(json.dumps({"wall": wall, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))


def run(args, collections):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--collections", collections,
           "--n", str(args.n), "--nodes", str(args.nodes)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--n", type=int, default=100000, help="volumes, all with their PV as wanted")
    parser.add_argument("--nodes", type=int, default=5000, help="node names the volumes are spread over")
    parser.add_argument("--other-collections", default=None,
                        help="a directory with ansible_collections/localpv/rollout of another version")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--collections", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    print("no-op model: %d volumes over %d nodes, pages of %d, load average %s" % (
        args.n, args.nodes, PAGE, " ".join("%.2f" % x for x in os.getloadavg())))
    import bench_local_pv
    this = run(args, bench_local_pv.collections_path())
    print("  this checkout:     %.2f s, peak RSS %.1f MiB" % (this["wall"], this["peak_mib"]))
    if args.other_collections:
        other = run(args, args.other_collections)
        print("  other version:     %.2f s, peak RSS %.1f MiB" % (other["wall"], other["peak_mib"]))
        print("  this / other:      %.2fx time, %.2fx peak RSS" % (
            this["wall"] / other["wall"], this["peak_mib"] / other["peak_mib"]))
    return None


if __name__ == "__main__":
    main()
