# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""site.yml over the whole lab fleet, against gathering facts, at several fork counts.

    python bench/bench_fleet.py [--forks 5,25,50]

Per fork count, in one run against the lab's nodes (bring up a big lab first, say
``LOCALPV_LAB_NODES=50 LOCALPV_LAB_DISKS=320M,96M,32M make lab-up``):

  facts   a playbook that only gathers facts on every node: the baseline every
          user pays anyway;
  first   site.yml on blank disks with none of the fleet's PVs registered
          (the disks are wiped and the site PVs deleted before);
  no-op   site.yml again, nothing to change.

Prints wall times, the ratios first/facts and no-op/facts (targets: 2.5x and 1.5x),
the controller's CPU time (ansible-playbook, its workers and the ssh clients) per
host, and the slowest tasks of the first and the no-op run (ansible.posix.profile_tasks). It
leaves the disks wiped and the site PVs deleted. Not a test: nothing here asserts a time.
"""

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
import conftest  # noqa: E402  (the lab of LOCALPV_LAB_INSTANCE, the collection link)

FACTS = """\
- name: Gather facts only
  hosts: nodes
  gather_facts: true
"""

# what `make site` passes: the lab's site layout and the opt-in to kernel names
# (the lab's nodes have no udev)
SITE_ARGS = ("-e", "@" + os.path.join(conftest.STATE, "site-vars.yml"))
_TASK_LINE = re.compile(r"^(.*?) -+ (\d+\.\d+)s$")


def lab():
    with open(os.path.join(conftest.STATE, "lab.json")) as f:
        return conftest.Lab(json.load(f))


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def playbook(the_lab, path, forks, args=(), profile=False):
    """(wall seconds, controller CPU seconds, slowest tasks) of one ansible-playbook run."""
    env = {"ANSIBLE_FORKS": str(forks)}
    if profile:
        env.update(ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks", PROFILE_TASKS_TASK_OUTPUT_LIMIT="8")
    cpu = children_cpu()
    start = time.perf_counter()
    res = the_lab.playbook(path, *args, env=env, timeout=3600)
    wall = time.perf_counter() - start
    cpu = children_cpu() - cpu
    if res.returncode != 0:
        raise SystemExit("%s failed:\n%s\n%s" % (path, res.stdout[-5000:], res.stderr[-3000:]))
    failed = [h for h, r in res.recap.items() if r["failed"] or r["unreachable"]]
    if failed:
        raise SystemExit("%s failed on %s" % (path, ", ".join(failed)))
    slowest = []
    if profile:
        tail = res.stdout[res.stdout.rfind("=" * 20):]
        slowest = [(m.group(1).strip(), float(m.group(2))) for m in map(_TASK_LINE.match, tail.splitlines()) if m]
    return wall, cpu, slowest, res.recap


def reset(the_lab, kube):
    """Blank disks and none of the fleet's site PVs: what a first run meets."""
    from kubernetes import client
    from kubernetes.client.exceptions import NotFoundException
    from pv_helpers import MANAGED   # noqa: E402
    nodes = set(n["node_name"] for n in the_lab.nodes)
    core = client.CoreV1Api(kube)
    for pv in core.list_persistent_volume(label_selector=MANAGED).items:
        if (pv.metadata.labels or {}).get("localpv.rollout/node") in nodes and not pv.spec.claim_ref:
            core.delete_persistent_volume(pv.metadata.name)
            try:
                if pv.metadata.finalizers:
                    core.patch_persistent_volume(pv.metadata.name, {"metadata": {"finalizers": None}})
            except NotFoundException:
                pass  # the protection controller let it go already: an unbound PV is not held
    the_lab.wipe_disks()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--forks", default="5,25,50", help="comma-separated fork counts")
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
    from kubernetes import config
    the_lab = lab()
    kube = config.new_client_from_config(config_file=the_lab.kubeconfig)
    hosts = len(the_lab.nodes)
    fd, facts = tempfile.mkstemp(suffix=".yml", prefix="bench-facts-")
    with os.fdopen(fd, "w") as f:
        f.write(FACTS)
    site = os.path.join(REPO, "playbooks", "site.yml")
    print("fleet of %d lab nodes; load average %s" % (hosts, " ".join("%.2f" % x for x in os.getloadavg())))
    header = ("forks", "facts s", "first s", "no-op s", "first/f", "no-op/f",
              "controller CPU per host: facts / first / no-op (ms)")
    print("%5s %9s %9s %9s %8s %8s   %s" % header)
    rows = []
    try:
        for forks in [int(x) for x in args.forks.split(",")]:
            reset(the_lab, kube)
            f_wall, f_cpu, _s, _r = playbook(the_lab, facts, forks)
            s_wall, s_cpu, s_slowest, _r = playbook(the_lab, site, forks, SITE_ARGS, profile=True)
            n_wall, n_cpu, n_slowest, recap = playbook(the_lab, site, forks, SITE_ARGS, profile=True)
            changed = sum(r["changed"] for r in recap.values())
            rows.append((forks, "first", s_slowest))
            rows.append((forks, "no-op", n_slowest))
            print("%5d %9.1f %9.1f %9.1f %7.2fx %7.2fx   %.0f / %.0f / %.0f%s" % (
                forks, f_wall, s_wall, n_wall, s_wall / f_wall, n_wall / f_wall, f_cpu / hosts * 1000,
                s_cpu / hosts * 1000, n_cpu / hosts * 1000, "  (no-op changed=%d!)" % changed if changed else ""))
    finally:
        reset(the_lab, kube)
        kube.close()
        os.unlink(facts)
    for forks, run, slowest in rows:
        print("slowest tasks of the %s run at forks %d: %s" % (
            run, forks, "; ".join("%s %.1fs" % (name, secs) for name, secs in slowest[:8])))
    print("load average after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))


if __name__ == "__main__":
    main()
