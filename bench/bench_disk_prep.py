# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How much disk_prep costs, first run and no-op re-run, against gathering facts.

    python bench/bench_disk_prep.py [--rounds 5] [--hosts nodes] [--per-disk] [--keep]

On the lab's nodes, in the same run: the wall time of a playbook that only gathers
facts (the baseline every user pays anyway), and of a disk_prep re-run with nothing
to change; prints the median of each, their ratio (target: within 1.5x) and the
number of module invocations per host that the re-run made (tasks that ran on the
host, loop items counted, skipped ones not).

It runs disk_prep with the layout ``make site`` uses on the lab (the inventory's
lab_site_disks: whole-disk xfs, a disk split into two ext4 volumes, a raw block
volume, a bind mount), preparing it first if needed and leaving it in place. On a
lab without that hostvar it uses the same layout under bench-* names and wipes
those disks afterwards unless --keep.

With --per-disk it lays out one whole-disk xfs volume per lab disk of each node
(bench-d00, bench-d01, ...; a lab of many disks, say ``lab.py up --nodes 1 --disks``
with 24 sizes of 320M, xfs's minimum being 300 MB). Each round then wipes those
disks (the lab's wipe, not timed), gathers facts, runs disk_prep on the blank disks
(the first run) and again (the no-op); it prints the medians, both ratios (targets:
first within 2.5x, no-op within 1.5x), the module invocations per host of each run
and the slowest tasks of the last first run. It wipes the disks afterwards unless
--keep. Timing is reported, never asserted.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
import conftest  # noqa: E402  (the lab of LOCALPV_LAB_INSTANCE, the collection link)

FACTS = """\
- name: Gather facts only
  hosts: {hosts}
  gather_facts: true
"""

PREP = """\
- name: Prepare disks
  hosts: {hosts}
  gather_facts: false
  vars:
    # the layout `make site` prepares when the lab names one (then the bench leaves it
    # in place), else (or with --per-disk) the bench's layout under bench-* names
    localpv_disks: "{{{{ bench_layouts[inventory_hostname] if bench_per_disk or lab_site_disks is not defined
                       else lab_site_disks }}}}"
    # the lab has no udev: its block volume links to a kernel name, which must be opted in to
    localpv_allow_kernel_names: true
  roles:
    - role: localpv.rollout.disk_prep
"""

# One SSH master per host (%C expands per host), the same for both playbooks.
CLEANUP = """\
- name: Put the lab disks the bench formatted back to blank
  hosts: {hosts}
  gather_facts: false
  tasks:
    - name: Unmount the bench volumes and drop their fstab lines
      ansible.posix.mount:
        path: "/mnt/disks/{{{{ item }}}}"
        state: absent
      loop: [bench-ssd, bench-data-1, bench-data-2, bench-bind]
      when: lab_site_disks is not defined

    - name: Remove the block volume link
      ansible.builtin.file:
        path: /mnt/disks/bench-raw
        state: absent
      when: lab_site_disks is not defined

    - name: Wipe the lab disks of this node
      ansible.builtin.shell: |
        set -e
        for disk in {{{{ lab_disks | map('quote') | join(' ') }}}}; do
          for part in "$disk"p*; do [ -b "$part" ] && wipefs -a -q "$part"; done
          partx -d "$disk" 2>/dev/null || true
          wipefs -a -q "$disk"
        done
        rm -rf /data/bench
      changed_when: true
      when: lab_site_disks is not defined
"""

CONTROL_DIR = tempfile.mkdtemp(prefix="bench-cm-")
SSH_ARGS = ("-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ControlMaster=auto "
            "-o ControlPersist=60s -o ControlPath=%s/%%C" % CONTROL_DIR)


def env():
    e = dict(os.environ, **conftest.tool_env())
    e.update({
        "ANSIBLE_COLLECTIONS_PATH": conftest.COLLECTIONS,
        "ANSIBLE_CONFIG": os.path.join(REPO, "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_NOCOLOR": "1",
    })
    return e


def lab_nodes():
    with open(os.path.join(conftest.STATE, "lab.json")) as handle:
        return json.load(handle)["nodes"]


def layouts(per_disk):
    """Per node, the layout `make site` uses, under bench-* names: a whole-disk xfs
    volume, a disk split into two ext4 volumes, a raw block volume, a bind mount.
    With ``per_disk``: one whole-disk xfs volume per lab disk, bench-d00, bench-d01..."""
    out = {}
    for node in lab_nodes():
        disks = [d["path"] for d in node["disks"]]
        if per_disk:
            out[node["host"]] = [{"name": "bench-d%02d" % i, "device": disk} for i, disk in enumerate(disks)]
            continue
        wanted = [{"name": "bench-ssd", "device": disks[0]},
                  {"name": "bench-data", "device": disks[1], "partitions": 2, "fstype": "ext4"},
                  {"name": "bench-raw", "device": disks[2], "mode": "block"}]
        out[node["host"]] = wanted[:len(disks)] + [{"name": "bench-bind", "bind": "/data/bench/vol"}]
    return out


def wipe(hosts_arg):
    """Blank every lab disk of the hosts of --hosts (the lab's own wipe: unmounted,
    out of fstab, links removed)."""
    for node in lab_nodes():
        if hosts_arg == "nodes" or node["host"] in hosts_arg.split(","):
            conftest.LAB.wipe_disks(node)


EXTRA = {}


def playbook(path, inventory):
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory,
           "-e", json.dumps(EXTRA), path]
    start = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=REPO, check=False)
    elapsed = time.monotonic() - start
    if res.returncode != 0:
        sys.exit("%s failed:\n%s\n%s" % (path, res.stdout[-3000:], res.stderr[-3000:]))
    return elapsed, json.loads(res.stdout)


def invocations(report):
    """Module runs per host: results that carry an ``invocation`` (a module ran on the
    host; set_fact and debug run on the controller and carry none), loop items counted."""
    counts, changed = {}, {}
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                counts.setdefault(host, 0)
                changed.setdefault(host, 0)
                if result.get("changed"):
                    changed[host] += 1
                items = result.get("results") if isinstance(result.get("results"), list) else [result]
                counts[host] += sum(1 for item in items if isinstance(item, dict) and "invocation" in item)
    return counts, changed


def slowest(report, limit=6):
    """The ``limit`` slowest tasks of a run: (name, seconds), from the json callback."""
    def seconds(duration):
        stamps = [datetime.datetime.fromisoformat(duration[k].replace("Z", "+00:00")) for k in ("start", "end")]
        return (stamps[1] - stamps[0]).total_seconds()
    tasks = [(t["task"]["name"], seconds(t["task"]["duration"])) for p in report["plays"] for t in p["tasks"]]
    return sorted(tasks, key=lambda task: -task[1])[:limit]


def median_line(what, times):
    print("%-26s median %.2f s  (runs: %s)" % (what, statistics.median(times), " ".join("%.2f" % t for t in times)))
    return statistics.median(times)


def per_host(what, counts):
    print("%s: %s" % (what, ", ".join("%s=%d" % (h, counts[h]) for h in sorted(counts))))


def no_op_rounds(args, facts, prep):
    """The default measure: the layout prepared once (if needed), then rounds of facts
    and the no-op re-run. Returns (facts times, no-op times, last no-op report)."""
    first, _report = playbook(prep, args.inventory)
    print("first run (prepares the disks if needed): %.2f s" % first)
    playbook(facts, args.inventory)  # warm the SSH control sockets the same way for both
    t_facts, t_prep, report = [], [], None
    for _round in range(args.rounds):
        t_facts.append(playbook(facts, args.inventory)[0])
        elapsed, report = playbook(prep, args.inventory)
        t_prep.append(elapsed)
    return t_facts, t_prep, report


def first_and_no_op_rounds(args, facts, prep):
    """--per-disk: rounds of wipe (not timed), facts, first run, no-op re-run.
    Returns (facts times, first times, no-op times, last first report, last no-op report)."""
    playbook(facts, args.inventory)  # warm the SSH control sockets
    t_facts, t_first, t_prep = [], [], []
    for _round in range(args.rounds):
        wipe(args.hosts)
        t_facts.append(playbook(facts, args.inventory)[0])
        elapsed, first_report = playbook(prep, args.inventory)
        t_first.append(elapsed)
        elapsed, report = playbook(prep, args.inventory)
        t_prep.append(elapsed)
    return t_facts, t_first, t_prep, first_report, report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hosts", default="nodes", help="nodes, or comma-separated hosts")
    parser.add_argument("--inventory", default=os.path.join(conftest.STATE, "inventory.yml"))
    parser.add_argument("--per-disk", action="store_true",
                        help="one whole-disk xfs volume per lab disk; time the first run too")
    parser.add_argument("--keep", action="store_true", help="leave the bench volumes (default: wipe them after)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench-disk-prep-")
    EXTRA.update({"ansible_ssh_common_args": SSH_ARGS, "bench_layouts": layouts(args.per_disk),
                  "bench_per_disk": args.per_disk})
    facts, prep = os.path.join(work, "facts.yml"), os.path.join(work, "prep.yml")
    cleanup = os.path.join(work, "cleanup.yml")
    for path, text in ((facts, FACTS), (prep, PREP), (cleanup, CLEANUP)):
        with open(path, "w") as f:
            f.write(text.format(hosts=args.hosts))
    print("load average before: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
    if args.per_disk:
        t_facts, t_first, t_prep, first_report, report = first_and_no_op_rounds(args, facts, prep)
    else:
        t_facts, t_prep, report = no_op_rounds(args, facts, prep)
    counts, changed = invocations(report)
    print("hosts: %s, rounds: %d" % (", ".join(sorted(counts)), args.rounds))
    m_facts = median_line("gather facts only", t_facts)
    if args.per_disk:
        m_first = median_line("disk_prep first run", t_first)
    m_prep = median_line("disk_prep no-op re-run", t_prep)
    if args.per_disk:
        print("ratio first disk_prep / gather facts: %.2fx (target <= 2.5x)" % (m_first / m_facts))
    print("ratio no-op disk_prep / gather facts: %.2fx (target <= 1.5x)" % (m_prep / m_facts))
    if args.per_disk:
        first_counts, first_changed = invocations(first_report)
        per_host("module invocations per host in the first run", first_counts)
        per_host("changed tasks per host in the first run", first_changed)
        print("slowest tasks of the last first run: %s" % "; ".join(
            "%s %.2fs" % task for task in slowest(first_report)))
    per_host("module invocations per host in the re-run", counts)
    per_host("changed tasks per host in the re-run", changed)
    print("load average after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
    if args.keep:
        return
    if args.per_disk:
        wipe(args.hosts)
    else:
        playbook(cleanup, args.inventory)


if __name__ == "__main__":
    main()
