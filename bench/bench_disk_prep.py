# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How much a no-op re-run of disk_prep costs, against gathering facts.

    python bench/bench_disk_prep.py [--rounds 5] [--hosts nodes]

On the lab's nodes, in the same run: the wall time of a playbook that only gathers
facts (the baseline every user pays anyway), and of a disk_prep re-run with nothing
to change; prints the median of each, their ratio (target: within 1.5x) and the
number of module invocations per host that the re-run made (tasks that ran on the
host, loop items counted, skipped ones not).

It runs disk_prep with the layout ``make site`` uses on the lab (the inventory's
lab_site_disks: whole-disk xfs, a disk split into two ext4 volumes, a raw block
volume, a bind mount), preparing it first if needed and leaving it in place. On a
lab without that hostvar it uses the same layout under bench-* names and wipes
those disks afterwards unless --keep. Timing is reported, never asserted.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("LOCALPV_LAB_CACHE") or os.path.expanduser("~/.cache/localpv-lab")
STATE = os.environ.get("LOCALPV_LAB_STATE") or os.path.join(CACHE, "state")

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
    # in place), else the same layout under bench-* names (wiped afterwards)
    localpv_disks: "{{{{ lab_site_disks if lab_site_disks is defined else bench_layouts[inventory_hostname] }}}}"
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


def collections_path():
    sys.path.insert(0, os.path.join(REPO, "tests"))
    import conftest  # noqa: F401  (links this checkout as ansible_collections.localpv.rollout)
    return conftest.COLLECTIONS


def env():
    e = dict(os.environ)
    e.update({
        "ANSIBLE_COLLECTIONS_PATH": collections_path(),
        "ANSIBLE_CONFIG": os.path.join(REPO, "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_NOCOLOR": "1",
    })
    return e


def layouts():
    """Per node, the layout `make site` uses, under bench-* names: a whole-disk xfs
    volume, a disk split into two ext4 volumes, a raw block volume, a bind mount."""
    with open(os.path.join(STATE, "lab.json")) as handle:
        nodes = json.load(handle)["nodes"]
    out = {}
    for node in nodes:
        disks = [d["path"] for d in node["disks"]]
        wanted = [{"name": "bench-ssd", "device": disks[0]},
                  {"name": "bench-data", "device": disks[1], "partitions": 2, "fstype": "ext4"},
                  {"name": "bench-raw", "device": disks[2], "mode": "block"}]
        out[node["host"]] = wanted[:len(disks)] + [{"name": "bench-bind", "bind": "/data/bench/vol"}]
    return out


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hosts", default="nodes")
    parser.add_argument("--inventory", default=os.path.join(STATE, "inventory.yml"))
    parser.add_argument("--keep", action="store_true", help="leave the bench volumes (default: wipe them after)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench-disk-prep-")
    EXTRA.update({"ansible_ssh_common_args": SSH_ARGS, "bench_layouts": layouts()})
    facts, prep = os.path.join(work, "facts.yml"), os.path.join(work, "prep.yml")
    cleanup = os.path.join(work, "cleanup.yml")
    with open(cleanup, "w") as f:
        f.write(CLEANUP.format(hosts=args.hosts))
    with open(facts, "w") as f:
        f.write(FACTS.format(hosts=args.hosts))
    with open(prep, "w") as f:
        f.write(PREP.format(hosts=args.hosts))

    first, _report = playbook(prep, args.inventory)
    print("first run (prepares the disks if needed): %.2f s" % first)
    playbook(facts, args.inventory)  # warm the SSH control sockets the same way for both
    t_facts, t_prep = [], []
    report = None
    for _round in range(args.rounds):
        elapsed, _r = playbook(facts, args.inventory)
        t_facts.append(elapsed)
        elapsed, report = playbook(prep, args.inventory)
        t_prep.append(elapsed)
    counts, changed = invocations(report)
    m_facts, m_prep = statistics.median(t_facts), statistics.median(t_prep)
    print("hosts: %s, rounds: %d" % (", ".join(sorted(counts)), args.rounds))
    print("gather facts only        median %.2f s  (runs: %s)" % (m_facts, " ".join("%.2f" % t for t in t_facts)))
    print("disk_prep no-op re-run   median %.2f s  (runs: %s)" % (m_prep, " ".join("%.2f" % t for t in t_prep)))
    print("ratio no-op disk_prep / gather facts: %.2fx (target <= 1.5x)" % (m_prep / m_facts))
    print("module invocations per host in the re-run: %s" % ", ".join(
        "%s=%d" % (h, counts[h]) for h in sorted(counts)))
    print("changed tasks per host in the re-run: %s" % ", ".join("%s=%d" % (h, changed[h]) for h in sorted(changed)))
    if not args.keep:
        playbook(cleanup, args.inventory)


if __name__ == "__main__":
    main()
