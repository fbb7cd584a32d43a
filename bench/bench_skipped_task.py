# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a task that is skipped on every host costs a fleet, against saying the same once.

    python bench/bench_skipped_task.py [--hosts 50] [--rounds 7]

The roles used to say the disks a selector skipped, and the hosts that are not yet
Nodes, with a debug task on every host that was skipped on almost every run; now
one task per batch says them, keyed by host. This times, with ``--hosts`` inventory
hosts on the local connection and forks equal to the hosts (as a fleet run at
forks 50), three playbooks, alternated round by round:

  empty     a play with no task (ansible-playbook's start and the inventory);
  per-host  one debug task whose ``when`` is false on every host;
  once      the same message built from every host's facts, ``run_once``, also false.

Prints the median wall time of each, and (per-host - empty) / (once - empty): what
one skipped per-host task costs against its once-per-batch form. Nothing asserts a time.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
import conftest  # noqa: E402  (the tool homes of this checkout)

PLAYS = {
    "empty": "- hosts: all\n  gather_facts: false\n  tasks: []\n",
    "per-host": """\
- hosts: all
  gather_facts: false
  tasks:
    - name: Say what was skipped, on every host
      ansible.builtin.debug:
        msg: "{{ plan_notes }}"
      when: plan_notes | default([]) | length > 0
""",
    "once": """\
- hosts: all
  gather_facts: false
  tasks:
    - name: Say what was skipped, once, keyed by host
      ansible.builtin.debug:
        msg: "{{ notes }}"
      vars:
        notes: >-
          {{ dict(ansible_play_batch | zip(ansible_play_batch | map('extract', hostvars)
                                           | map(attribute='plan_notes', default=[])))
             | dict2items | selectattr('value') | items2dict }}
      run_once: true
      when: notes | length > 0
""",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    env = dict(os.environ, ANSIBLE_FORKS=str(args.hosts), **conftest.tool_env())
    with tempfile.TemporaryDirectory(prefix="bench-skipped-") as tmp:
        inventory = os.path.join(tmp, "inventory.ini")
        with open(inventory, "w") as f:
            f.write("".join("h%d\n" % i for i in range(args.hosts)))
            f.write("[all:vars]\nansible_connection=local\nansible_python_interpreter=%s\n" % sys.executable)
        paths = {}
        for name, text in PLAYS.items():
            paths[name] = os.path.join(tmp, name + ".yml")
            with open(paths[name], "w") as f:
                f.write(text)
        times = dict((name, []) for name in PLAYS)
        for _round in range(args.rounds):
            for name, path in paths.items():
                t0 = time.time()
                subprocess.run([playbook, "-i", inventory, path], env=env, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times[name].append(time.time() - t0)
    median = dict((name, statistics.median(values)) for name, values in times.items())
    print("%d hosts, forks %d, %d rounds; load average %.2f"
          % (args.hosts, args.hosts, args.rounds, os.getloadavg()[0]))
    for name in PLAYS:
        print("%-9s median %.2f s   runs %s" % (name, median[name], " ".join("%.2f" % t for t in times[name])))
    per_host, once = median["per-host"] - median["empty"], median["once"] - median["empty"]
    print("a skipped per-host task: %.2f s; said once: %.2f s; ratio %.1fx" % (
        per_host, once, per_host / once if once > 0 else float("inf")))


if __name__ == "__main__":
    main()
