# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running the PV modules the way users do (ansible-playbook) and reading what they did."""

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
import yaml
from kubernetes import client

WAIT = 90
MANAGED = "app.kubernetes.io/managed-by=localpv.rollout"


def wait_until(what, check, timeout=WAIT):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))


def unique(prefix="t"):
    return "%s%s" % (prefix, uuid.uuid4().hex[:6])


def run_tasks(lab, tmp_path, tasks, check=False, diff=False, extra_env=None):
    """Run ``tasks`` on localhost with ansible-playbook; return (rc, [task results], output).

    Each task is registered and its result read back from the JSON callback, so
    tests look at exactly what a user's playbook gets.
    """
    play = [{"name": "test", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
             "tasks": tasks}]
    path = tmp_path / ("play-%s.yml" % uuid.uuid4().hex[:6])
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    env = lab.env()
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    env["ANSIBLE_CALLBACK_RESULT_FORMAT"] = "json"
    env.update(extra_env or {})
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", str(path)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    try:
        data = json.loads(res.stdout)
    except ValueError:
        raise AssertionError("ansible-playbook printed no JSON:\n%s\n%s" % (res.stdout[-3000:], res.stderr[-3000:]))
    results = [t["hosts"]["localhost"] for t in data["plays"][0]["tasks"]]
    return res.returncode, results, res.stdout + res.stderr


DEFAULT_CLASS = "local-storage"


def ensure_default_class(lab):
    """The StorageClass local_pv's volumes name when they name none. local_pv refuses
    PVs of a class that does not exist, as site.yml ensures it first; tests that
    call local_pv directly get it here (made as local_storage_class makes it)."""
    from kubernetes import config
    api = config.new_client_from_config(config_file=lab.kubeconfig)
    try:
        client.StorageV1Api(api).create_storage_class(client.V1StorageClass(
            metadata=client.V1ObjectMeta(name=DEFAULT_CLASS, labels={"app.kubernetes.io/managed-by": "localpv.rollout"}),
            provisioner="kubernetes.io/no-provisioner", reclaim_policy="Retain",
            volume_binding_mode="WaitForFirstConsumer"))
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    finally:
        api.close()


def local_pv(lab, tmp_path, check=False, diff=False, extra_env=None, **args):
    """Run local_pv once; returns its result (dict) with ``rc`` of the playbook.
    The result names the PVs per action unless ``return_names=False`` is given."""
    ensure_default_class(lab)
    args.setdefault("kubeconfig", lab.kubeconfig)
    args.setdefault("return_names", True)
    rc, results, out = run_tasks(lab, tmp_path, [{"localpv.rollout.local_pv": args, "ignore_errors": True}],
                                 check=check, diff=diff, extra_env=extra_env)
    result = results[0]
    result["rc"] = 2 if result.get("failed") else rc   # ignore_errors keeps the playbook at 0
    return result


def module(lab, tmp_path, name, check=False, **args):
    args.setdefault("kubeconfig", lab.kubeconfig)
    rc, results, out = run_tasks(lab, tmp_path, [{name: args, "ignore_errors": True}], check=check)
    return results[0]


def volume(node, name, size=2 ** 30, **kw):
    item = {"node": node, "name": name, "path": "/mnt/disks/%s" % name, "fstype": "xfs", "capacity": size}
    item.update(kw)
    return item


def claim_pv(core, ns, name, pv, storage_class, size):
    """A claim that asks for ``pv`` by name (``volumeName``), of ``size``."""
    core.create_namespaced_persistent_volume_claim(ns, client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"], storage_class_name=storage_class, volume_name=pv,
            resources=client.V1VolumeResourceRequirements(requests={"storage": size}))))


def pvs_of(kube, names):
    core = client.CoreV1Api(kube)
    found = {}
    for pv in core.list_persistent_volume(label_selector=MANAGED).items:
        if pv.metadata.name in names:
            found[pv.metadata.name] = pv
    return found


def pvs_with_label(kube, key, value):
    return client.CoreV1Api(kube).list_persistent_volume(label_selector="%s=%s" % (key, value)).items


def delete_pvs(kube, names):
    core = client.CoreV1Api(kube)
    for name in names:
        try:
            core.delete_persistent_volume(name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise


def forget_unbound_pvs(kube, names):
    """Delete the PVs among ``names`` that no claim holds. Tests that start from blank
    disks call it first: a PV left by `make site` or an earlier test records the ids of
    disks the wipe took away, and site.yml rightly refuses to make those volumes again."""
    core = client.CoreV1Api(kube)
    for pv in core.list_persistent_volume(label_selector=MANAGED).items:
        if pv.metadata.name in names and not pv.spec.claim_ref:
            core.delete_persistent_volume(pv.metadata.name)


def remove_test_space(kube, tag, pvs):
    """Take down a test's namespace and StorageClass ``tag`` and its PVs ``pvs`` in
    the safe order: workloads and pods, then claims, then PVs."""
    core, storage, apps = client.CoreV1Api(kube), client.StorageV1Api(kube), client.AppsV1Api(kube)
    for sts in apps.list_namespaced_stateful_set(tag).items:
        apps.delete_namespaced_stateful_set(sts.metadata.name, tag)
    for pod in core.list_namespaced_pod(tag).items:
        core.delete_namespaced_pod(pod.metadata.name, tag, grace_period_seconds=0)
    wait_until("pods of %s gone" % tag, lambda: not core.list_namespaced_pod(tag).items)
    for pvc in core.list_namespaced_persistent_volume_claim(tag).items:
        core.delete_namespaced_persistent_volume_claim(pvc.metadata.name, tag)
    core.delete_namespace(tag)
    delete_pvs(kube, pvs)
    storage.delete_storage_class(tag)


def now_rfc3339():
    """A timestamp comparable with audit events' stageTimestamp (UTC, microseconds)."""
    import datetime
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def writes_by_us(lab, since, resource="persistentvolumes", names=None):
    """Audit events of writes (create/update/patch/delete) on ``resource`` sent by
    localpv.rollout (its User-Agent) since ``since``, optionally only on ``names``."""
    out = []
    for ev in lab.audit_events(since=since):
        ref = ev.get("objectRef") or {}
        if ref.get("resource") == resource and ev.get("verb") in ("create", "update", "patch", "delete") \
                and (ev.get("userAgent") or "").startswith("localpv.rollout") \
                and (names is None or ref.get("name") in names) \
                and ev.get("stage") in (None, "ResponseComplete"):
            out.append(ev)
    return out
