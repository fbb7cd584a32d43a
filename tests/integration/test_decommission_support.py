# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared by the decommission and reclaim tests: a scenario of our own on one lab
node (volumes prepared with disk_prep, PVs registered with local_pv, a namespace
and a StorageClass of its own), playbook runs read through the JSON callback, and
a cleanup that leaves the node, its disks and the cluster as they were.

Volumes are named after a random tag and their PVs carry the label
``localpv-test=<tag>``; the playbooks are run with
``decommission_label_selector``/``reclaim_label_selector`` set to it, so that
other tests' PVs on the same node are never in scope.
"""

import base64
import json
import os
import subprocess
import sys
import tempfile

import yaml
from kubernetes import client

from pv_helpers import local_pv, module, unique, wait_until

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming

HOST = os.environ.get("LOCALPV_TEST_DECOMMISSION_NODE", "node2")
ROOT = "/mnt/disks"
TEST_LABEL = "localpv-test"

CONTROL_DIR = tempfile.mkdtemp(prefix="lpvd-cm-")
SSH_ARGS = ("-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ControlMaster=auto "
            "-o ControlPersist=60s -o ControlPath=%s/%%C" % CONTROL_DIR)

PREPARE = """\
- name: Prepare the test's volumes
  hosts: {host}
  gather_facts: false
  roles:
    - role: localpv.rollout.disk_prep
  post_tasks:
    - name: Hand the published volumes to the test
      ansible.builtin.copy:
        content: "{{{{ localpv_volumes | to_json }}}}"
        dest: "{out}"
        mode: "0644"
      delegate_to: localhost
      changed_when: false
"""

# Runs on the node: forget the test's mounts, fstab lines, links and directories,
# and blank the disks it used (only those).
RESET = r'''
import os, subprocess, sys
tag, disks = sys.argv[1], sys.argv[2:]
def run(*argv):
    return subprocess.call(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
prefix = "/mnt/disks/" + tag
for line in reversed(open("/proc/self/mountinfo").read().splitlines()):
    point = line.split()[4]
    if point.startswith(prefix):
        run("umount", "-l", point)
lines = open("/etc/fstab").read().splitlines(True)
kept = [l for l in lines if not (len(l.split()) > 1 and l.split()[1].startswith(prefix))]
if kept != lines:
    open("/etc/fstab", "w").write("".join(kept))
for entry in os.listdir("/mnt/disks") if os.path.isdir("/mnt/disks") else []:
    path = os.path.join("/mnt/disks", entry)
    if entry.startswith(tag):
        if os.path.islink(path):
            os.unlink(path)
        elif os.path.isdir(path) and not os.path.ismount(path):
            subprocess.call(["rm", "-rf", "--one-file-system", path])
subprocess.call(["rm", "-rf", "/data/" + tag])
for disk in disks:
    name = os.path.basename(disk)
    run("partx", "-u", disk)
    for part in sorted(os.listdir("/sys/block/" + name)):
        if part.startswith(name) and os.path.exists("/sys/block/%s/%s/partition" % (name, part)):
            run("wipefs", "-a", "/dev/" + part)
    run("partx", "-d", disk)
    run("wipefs", "-a", disk)
    with open(disk, "r+b") as handle:
        handle.write(b"\0" * (1 << 20))
    # zero throughout (disk_prep samples content): discard punches holes in the image
    run("blkdiscard", "-f", disk)
'''


def node_python(lab, host, script, *args):
    payload = base64.b64encode(script.encode()).decode()
    res = lab.ssh(host, "echo %s | base64 -d > /tmp/lpvd.py && python3 /tmp/lpvd.py %s" % (
        payload, " ".join("'%s'" % a for a in args)))
    assert res.returncode == 0, res.stderr
    return res.stdout


class Run:
    """One ansible-playbook run read through the JSON callback."""

    def __init__(self, proc):
        self.returncode = proc.returncode
        self.stderr = proc.stderr
        try:
            self.data = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError("no JSON from ansible-playbook:\n%s\n%s" % (proc.stdout[-3000:], proc.stderr[-3000:]))
        self.stats = self.data.get("stats") or {}
        self.text = proc.stdout

    def tasks(self, name, host=None):
        """(task, result) of every task named ``name`` that ran on ``host``."""
        out = []
        for play in self.data["plays"]:
            for task in play["tasks"]:
                if task["task"]["name"] == name or task["task"]["name"].endswith(" : " + name):
                    for h, res in task["hosts"].items():
                        if host is None or h == host:
                            out.append((task, res))
        return out

    def result(self, name, host):
        found = self.tasks(name, host)
        assert found, "task %r did not run on %s:\n%s" % (name, host, self.text[-3000:])
        return found[-1][1]

    def times(self, name, host):
        """(start, end) of a task on a host: RFC 3339 UTC, comparable with audit stageTimestamps."""
        task = self.tasks(name, host)[-1][0]
        return task["task"]["duration"]["start"], task["task"]["duration"]["end"]

    def failed_msg(self, host=None):
        """The message of the task that failed on ``host`` (on any host when None; an
        unreachable result that the play ignores does not count), or None."""
        for play in self.data["plays"]:
            for task in play["tasks"]:
                for name, res in task["hosts"].items():
                    if host in (None, name) and res.get("failed") and not res.get("ignore_errors"):
                        return res.get("msg") or ""
        return None

    def ran_on(self, host):
        """Names of the tasks that executed on ``host`` (not skipped)."""
        return [task["task"]["name"].split(" : ")[-1] for play in self.data["plays"] for task in play["tasks"]
                if host in task["hosts"] and not task["hosts"][host].get("skipped")]


def playbook(lab, path, *args, extra_vars=None, timeout=900, env=None):
    env = dict(lab.env(), **(env or {}))
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    env["ANSIBLE_CALLBACK_RESULT_FORMAT"] = "json"
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", lab.inventory]
    ev = {"ansible_ssh_common_args": SSH_ARGS}
    ev.update(extra_vars or {})
    cmd += ["-e", json.dumps(ev)] + list(args)
    cmd.append(path if os.path.isabs(path) else os.path.join(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))), path))
    return Run(subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False))


class Scenario:
    """Volumes, PVs and workloads of one test on node HOST, and their cleanup."""

    def __init__(self, lab, kube, tmp_path):
        self.lab, self.kube, self.tmp = lab, kube, tmp_path
        self.core, self.apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
        self.policy = client.PolicyV1Api(kube)
        self.tag = unique("lpvd")
        self.ns = self.sc = self.tag
        self.host = HOST
        self.info = lab.node(HOST)
        self.node_name = self.info["node_name"]
        self.disks_used = []
        self.volumes = []
        self.runs = 0

    # --- on the node -------------------------------------------------------------
    def sh(self, command, check=True, host=None):
        res = self.lab.ssh(host or self.host, command)
        if check:
            assert res.returncode == 0, "%s: %s %s" % (command, res.stdout, res.stderr)
        return res

    def blank_disk(self):
        """The smallest lab disk of this test's node, made blank by the lab's wipe
        (whatever a site run or another test left on it), and blanked again at cleanup."""
        disk = sorted(self.info["disks"], key=lambda d: d["size"])[0]["path"]
        self.lab.wipe_disks(self.host, only=[disk])
        self.disks_used.append(disk)
        return disk

    def path(self, name):
        return "%s/%s" % (ROOT, name)

    def mounted(self, name):
        return self.sh("findmnt -rn --mountpoint %s" % self.path(name), check=False).returncode == 0

    def fstab_has(self, name):
        return any(len(line.split()) > 1 and line.split()[1] == self.path(name)
                   for line in self.sh("cat /etc/fstab").stdout.splitlines())

    def reset(self):
        node_python(self.lab, self.host, RESET, self.tag, *self.disks_used)

    # --- volumes and PVs ----------------------------------------------------------
    def prepare(self, disks):
        """disk_prep on the node for ``disks`` (localpv_disks entries); returns localpv_volumes."""
        self.runs += 1
        out = str(self.tmp / ("volumes-%d.json" % self.runs))
        play = self.tmp / ("prepare-%d.yml" % self.runs)
        play.write_text(PREPARE.format(host=self.host, out=out))
        res = playbook(self.lab, str(play), "--limit", self.host, extra_vars={"localpv_disks": disks})
        assert res.returncode == 0, res.text[-4000:]
        with open(out) as handle:
            return json.load(handle)

    def register(self, volumes):
        items = []
        keys = ("name", "path", "mode", "fstype", "capacity", "stable_id", "uuid")
        for volume in volumes:
            item = dict((key, volume[key]) for key in keys if volume.get(key) is not None)
            item["node"] = self.node_name
            item["storage_class"] = self.sc
            items.append(item)
        res = local_pv(self.lab, self.tmp, volumes=items, labels={TEST_LABEL: self.tag}, prune=False,
                       storage_class=self.sc)
        assert res["rc"] == 0, res.get("msg")
        self.volumes += items
        return [naming.pv_name(self.node_name, i["name"]) for i in items]

    def setup(self, disks):
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=self.ns)))
        wait_until("default ServiceAccount", lambda: self.core.list_namespaced_service_account(
            self.ns, field_selector="metadata.name=default").items)
        res = module(self.lab, self.tmp, "localpv.rollout.local_storage_class", storage_classes=[{"name": self.sc}])
        assert res.get("failed") is not True, res.get("msg")
        return self.register(self.prepare(disks))

    def pvs(self):
        return self.core.list_persistent_volume(label_selector="%s=%s" % (TEST_LABEL, self.tag)).items

    # --- workloads ----------------------------------------------------------------
    def pod_spec(self, claim=None, tolerate_all=False):
        return client.V1PodSpec(
            node_selector={"kubernetes.io/hostname": self.info["hostname_label"]},
            tolerations=[client.V1Toleration(operator="Exists")] if tolerate_all else None,
            termination_grace_period_seconds=0,
            containers=[client.V1Container(name="app", image="registry.invalid/app:1",
                                           volume_mounts=[client.V1VolumeMount(name="data", mount_path="/data")])],
            volumes=[client.V1Volume(name="data", persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                claim_name=claim))] if claim else None)

    def claim_spec(self):
        return client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"], storage_class_name=self.sc,
            resources=client.V1VolumeResourceRequirements(requests={"storage": "1Mi"}))

    def claim(self, name):
        self.core.create_namespaced_persistent_volume_claim(self.ns, client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name=name), spec=self.claim_spec()))

    def statefulset(self, name, tolerate_all=False):
        labels = {"app": name}
        self.apps.create_namespaced_stateful_set(self.ns, client.V1StatefulSet(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1StatefulSetSpec(
                replicas=1, service_name=name, selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels),
                                                  spec=self.pod_spec(None, tolerate_all)),
                volume_claim_templates=[client.V1PersistentVolumeClaim(
                    metadata=client.V1ObjectMeta(name="data"), spec=self.claim_spec())])))

    def deployment(self, name, claim, tolerate_all=False):
        self.claim(claim)
        labels = {"app": name}
        self.apps.create_namespaced_deployment(self.ns, client.V1Deployment(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1DeploymentSpec(
                replicas=1, selector=client.V1LabelSelector(match_labels=labels),
                strategy=client.V1DeploymentStrategy(type="Recreate"),
                template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels),
                                                  spec=self.pod_spec(claim, tolerate_all)))))

    def pdb(self, app, max_unavailable):
        self.policy.create_namespaced_pod_disruption_budget(self.ns, client.V1PodDisruptionBudget(
            metadata=client.V1ObjectMeta(name=app),
            spec=client.V1PodDisruptionBudgetSpec(max_unavailable=max_unavailable,
                                                  selector=client.V1LabelSelector(match_labels={"app": app}))))

    def bound_claims(self, count):
        """Wait until ``count`` claims of the namespace are Bound and their pods Running; {claim: PV}."""
        def check():
            claims = self.core.list_namespaced_persistent_volume_claim(self.ns).items
            pods = self.core.list_namespaced_pod(self.ns).items
            if len(claims) == count and all(c.status.phase == "Bound" for c in claims) \
                    and pods and all(p.status.phase == "Running" for p in pods):
                return dict((c.metadata.name, c.spec.volume_name) for c in claims)
            return None
        # generous: the lab's controllers are shared with benchmarks that make thousands of PVs
        return wait_until("%d claims bound and their pods running" % count, check, timeout=600)

    # --- playbooks ----------------------------------------------------------------
    def decommission(self, *args, **extra):
        ev = {"decommission_nodes": [self.host], "decommission_label_selector": "%s=%s" % (TEST_LABEL, self.tag),
              "decommission_pod_timeout": 120, "decommission_delete_timeout": 600}
        ev.update(extra)
        return playbook(self.lab, "playbooks/decommission.yml", *args, extra_vars=ev)

    def reclaim(self, *args, env=None, **extra):
        ev = {"reclaim_nodes": [self.host], "reclaim_label_selector": "%s=%s" % (TEST_LABEL, self.tag),
              "localpv_allow_wipe": True}
        ev.update(extra)
        return playbook(self.lab, "playbooks/reclaim.yml", *args, extra_vars=ev, env=env)

    # --- cleanup ------------------------------------------------------------------
    def cleanup(self):
        core, apps = self.core, self.apps
        try:
            for sts in apps.list_namespaced_stateful_set(self.ns).items:
                apps.delete_namespaced_stateful_set(sts.metadata.name, self.ns)
            for dep in apps.list_namespaced_deployment(self.ns).items:
                apps.delete_namespaced_deployment(dep.metadata.name, self.ns)
            for pdb in self.policy.list_namespaced_pod_disruption_budget(self.ns).items:
                self.policy.delete_namespaced_pod_disruption_budget(pdb.metadata.name, self.ns)
            wait_until("workloads gone", lambda: not apps.list_namespaced_stateful_set(self.ns).items
                       and not apps.list_namespaced_replica_set(self.ns).items)
            for pod in core.list_namespaced_pod(self.ns).items:
                core.delete_namespaced_pod(pod.metadata.name, self.ns, grace_period_seconds=0)
            wait_until("pods gone", lambda: not core.list_namespaced_pod(self.ns).items)
            for pvc in core.list_namespaced_persistent_volume_claim(self.ns).items:
                core.delete_namespaced_persistent_volume_claim(pvc.metadata.name, self.ns)
            core.delete_namespace(self.ns)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        self.reset()
        for pv in self.pvs():
            core.delete_persistent_volume(pv.metadata.name)
        try:
            client.StorageV1Api(self.kube).delete_storage_class(self.sc)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        # uncordon: the node is shared with the other tests
        core.patch_node(self.node_name, {"spec": {"unschedulable": None}})


# Reviews are POSTed (verb create) but persist nothing: questions, not writes.
REVIEWS = ("selfsubjectaccessreviews", "selfsubjectreviews")


def audit_writes(lab, since, until=None):
    """Audit events (ResponseComplete) of writes since ``since``, in time order."""
    out = []
    for ev in lab.audit_events(since=since):
        if ev.get("stage") not in (None, "ResponseComplete"):
            continue
        if ev.get("verb") not in ("create", "update", "patch", "delete"):
            continue
        if (ev.get("objectRef") or {}).get("resource") in REVIEWS:
            continue
        if until and ev.get("stageTimestamp", "") > until:
            continue
        out.append(ev)
    return sorted(out, key=lambda e: e.get("stageTimestamp", ""))


def yaml_dump(data):
    return yaml.safe_dump(data, sort_keys=False)
