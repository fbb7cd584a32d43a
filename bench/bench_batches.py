# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""site.yml a batch of nodes at a time (localpv_batch) against the same run unbatched,
on the whole lab fleet, and what a node failing in the second batch leaves behind.

    python bench/bench_batches.py [--batch 10] [--forks 50]

On a big lab (say ``LOCALPV_LAB_NODES=50 LOCALPV_LAB_DISKS=320M,96M,32M make lab-up``),
each run starting from blank disks and none of the fleet's site PVs:

  plain    site.yml without batches (the baseline);
  batched  site.yml with ``localpv_batch``;
  stopped  the batched run with one node of the second batch given a disk that is
           not there: it must stop after that batch, and the later batches must be
           untouched (no PV write of theirs in the API server's audit log, their
           disks' sha256 as before);
  resumed  the same batched command with the node fixed: it finishes the fleet.

Prints wall times and the ratios against the plain run. Not a test: nothing here
asserts a time; the untouched-batches check stops the bench when it does not hold.
It leaves the disks wiped and the site PVs deleted.
"""

import argparse
import hashlib
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
from bench_fleet import lab, reset  # noqa: E402  (the lab of LOCALPV_LAB_INSTANCE, the reset)

SITE_VARS = {"localpv_disks": "{{ lab_site_disks }}", "pv_register_prune": False, "localpv_allow_kernel_names": True}
# a disk that no node has: disk_prep refuses the host that names it
BROKEN = ("{{ lab_site_disks + ([{'name': 'gone0', 'device': '/dev/disk/by-id/wwn-0x5000c500deadbeef'}]"
          " if inventory_hostname == '%s' else []) }}")


def digest(path):
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            sha.update(block)
    return sha.hexdigest()


def run(the_lab, forks, extra_vars, expect_ok=True):
    start = time.perf_counter()
    res = the_lab.playbook("playbooks/site.yml", extra_vars=extra_vars, env={"ANSIBLE_FORKS": str(forks)},
                           timeout=3600)
    wall = time.perf_counter() - start
    if (res.returncode == 0) != expect_ok:
        raise SystemExit("site.yml %s unexpectedly (rc %d):\n%s\n%s" % (
            "failed" if expect_ok else "passed", res.returncode, res.stdout[-5000:], res.stderr[-3000:]))
    return wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--batch", type=int, default=10, help="nodes per batch (localpv_batch)")
    parser.add_argument("--forks", type=int, default=50)
    args = parser.parse_args()
    from kubernetes import config
    from pv_helpers import now_rfc3339, writes_by_us
    the_lab = lab()
    kube = config.new_client_from_config(config_file=the_lab.kubeconfig)
    hosts = [n["host"] for n in the_lab.nodes]
    if len(hosts) < 3 * args.batch:
        raise SystemExit("needs at least three batches: %d nodes, batches of %d" % (len(hosts), args.batch))
    broken = hosts[args.batch + args.batch // 2]
    later = hosts[2 * args.batch:]
    batched = dict(SITE_VARS, localpv_batch=args.batch)
    print("fleet of %d lab nodes, batches of %d, forks %d; load average %s" % (
        len(hosts), args.batch, args.forks, " ".join("%.2f" % x for x in os.getloadavg())))
    try:
        reset(the_lab, kube)
        plain = run(the_lab, args.forks, SITE_VARS)
        reset(the_lab, kube)
        whole = run(the_lab, args.forks, batched)
        reset(the_lab, kube)
        before = dict((d["path"], digest(d["path"])) for h in later for d in the_lab.node(h)["disks"])
        since = now_rfc3339()
        stopped = run(the_lab, args.forks, dict(batched, localpv_disks=BROKEN % broken), expect_ok=False)
        # the PV names of a node's volumes start so (naming.pv_name); lab names are short
        prefixes = tuple("local-%s-" % the_lab.node(h)["node_name"].replace("-", "--") for h in later)
        leaked = [e["objectRef"]["name"] for e in writes_by_us(the_lab, since)
                  if e["objectRef"]["name"].startswith(prefixes)]
        moved = [p for p, sha in before.items() if digest(p) != sha]
        if leaked or moved:
            raise SystemExit("batches after %s's were touched: PV writes %s, disks changed %s" % (
                broken, leaked, moved))
        resumed = run(the_lab, args.forks, batched)
    finally:
        reset(the_lab, kube)
        kube.close()
    print("%-28s %8s %8s" % ("run", "wall s", "/plain"))
    for label, wall in (("plain (no batches)", plain), ("batched", whole),
                        ("stopped in batch 2 (%s)" % broken, stopped), ("resumed, same command", resumed),
                        ("stopped + resumed", stopped + resumed)):
        print("%-28s %8.1f %7.2fx" % (label, wall, wall / plain))
    print("later batches (%d nodes, %d disks): 0 PV writes in the audit log, every disk's sha256 unchanged" % (
        len(later), len(before)))
    print("load average after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))


if __name__ == "__main__":
    main()
