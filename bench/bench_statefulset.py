# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Do our PVs cost the scheduler and the PV binder anything extra?

In one run, against the lab's API server, scheduler, controller manager and kwok:

  nodes       N kwok Nodes (default 50) labelled for this run; kwok keeps them
              Ready and runs their pods (Node objects only, no containers).
  register    V PVs per node (default 10) through ``ansible-playbook`` running
              local_storage_class and local_pv, as pv_register does; timed.
  hand-made   the same number of PVs as a user writes them by hand (path,
              capacity, nodeAffinity, class), made with ``kubectl create``; timed.
  sts         a StatefulSet of N*V replicas with volumeClaimTemplates on each
              StorageClass (WaitForFirstConsumer), podManagementPolicy Parallel:
              time from its creation until every claim is Bound and every pod
              Running. Each set gets its own StatefulSet; they run one after the
              other (--first says which; the claims' PVs are Released afterwards,
              so each set serves one StatefulSet per run).

Prints both times and their ratio. Everything it made (StatefulSets, claims, PVs,
StorageClasses, Nodes) is deleted at the end. Not a test: nothing here asserts a time.

    python bench/bench_statefulset.py [--nodes 50] [--per-node 10] [--first ours|hand]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_local_pv as blp  # noqa: E402  (the lab's kubeconfig, kubectl and playbook runner)

BENCH_LABEL = blp.BENCH_LABEL
GIB = 2 ** 30


def clients():
    from kubernetes import client, config
    api = config.new_client_from_config(config_file=blp.kubeconfig())
    api.configuration.connection_pool_maxsize = 16
    return api, client.CoreV1Api(api), client.AppsV1Api(api), client.StorageV1Api(api)


def make_nodes(core, run, count):
    from kubernetes import client
    names = ["sts-%s-n%02d" % (run, i) for i in range(count)]
    for name in names:
        core.create_node(client.V1Node(
            metadata=client.V1ObjectMeta(
                name=name, annotations={"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                labels={"kubernetes.io/hostname": name, "type": "kwok", BENCH_LABEL: run}),
            status=client.V1NodeStatus(allocatable={"cpu": "32", "memory": "256Gi", "pods": "110"},
                                       capacity={"cpu": "32", "memory": "256Gi", "pods": "110"})))
    deadline = time.time() + 120
    while time.time() < deadline:
        nodes = core.list_node(label_selector="%s=%s" % (BENCH_LABEL, run)).items
        ready = [n for n in nodes if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])]
        if len(ready) == count:
            return names
        time.sleep(1)
    raise SystemExit("kwok did not make the %d bench Nodes Ready" % count)


def register_ours(run, nodes, per_node, storage_class):
    """Through ansible-playbook, as pv_register does: the class, then all PVs in one call."""
    volumes = [{"node": node, "name": "v%02d" % i, "path": "/mnt/disks/v%02d" % i, "fstype": "xfs",
                "capacity": GIB} for node in nodes for i in range(per_node)]
    tasks = [{"localpv.rollout.local_storage_class": {"storage_classes": [{"name": storage_class}]}},
             {"localpv.rollout.local_pv": {"volumes": "{{ bench_volumes | to_json }}", "nodes": nodes,
                                           "storage_class": storage_class, "labels": {BENCH_LABEL: run}}}]
    wall, results = blp._playbook(tasks, {"bench_volumes": volumes})
    created = sum(c["created"] for c in results[1]["nodes"].values())
    assert created == len(volumes), results[1]
    return wall


def register_by_hand(run, nodes, per_node, storage_class):
    """What a user writes by hand, in one kubectl create of a List."""
    sc = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
          "metadata": {"name": storage_class, "labels": {BENCH_LABEL: run}},
          "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer"}
    pvs = [{"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "hand-%s-%s-v%02d" % (run, node[-3:], i), "labels": {BENCH_LABEL: run}},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": storage_class,
                     "local": {"path": "/mnt/disks/v%02d" % i},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}}
           for node in nodes for i in range(per_node)]
    fd, path = tempfile.mkstemp(suffix=".json", prefix="bench-sts-")
    with os.fdopen(fd, "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": [sc] + pvs}, f)
    start = time.perf_counter()
    subprocess.run([blp.kubectl_binary(), "--kubeconfig", blp.kubeconfig(), "create", "-f", path, "-o", "name"],
                   check=True, capture_output=True)
    wall = time.perf_counter() - start
    os.unlink(path)
    return wall


def statefulset(run, name, storage_class, replicas):
    labels = {"app": name, BENCH_LABEL: run}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "serviceName": name, "replicas": replicas, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": labels}, "spec": {
                "nodeSelector": {BENCH_LABEL: run},
                "containers": [{"name": "app", "image": "fake-image",
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": labels}, "spec": {
                "accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                "resources": {"requests": {"storage": "1Gi"}}}}],
        },
    }


def time_statefulset(core, apps, run, name, storage_class, replicas, timeout):
    """Seconds from the StatefulSet's creation until all claims Bound and all pods Running."""
    apps.create_namespaced_stateful_set("default", statefulset(run, name, storage_class, replicas))
    start = time.perf_counter()
    selector = "app=%s" % name
    while True:
        claims = core.list_namespaced_persistent_volume_claim("default", label_selector=selector).items
        pods = core.list_namespaced_pod("default", label_selector=selector).items
        bound = sum(c.status.phase == "Bound" for c in claims)
        running = sum(p.status.phase == "Running" for p in pods)
        elapsed = time.perf_counter() - start
        if bound == replicas and running == replicas:
            return elapsed
        if elapsed > timeout:
            raise SystemExit("%s: after %.0f s, %d/%d claims Bound, %d/%d pods Running" % (
                name, elapsed, bound, replicas, running, replicas))
        time.sleep(0.5)


def delete_statefulset(core, apps, name):
    """The StatefulSet, its pods (at once: kwok runs them) and its claims, and wait until gone."""
    from kubernetes import client
    apps.delete_namespaced_stateful_set(name, "default", propagation_policy="Orphan")
    selector = "app=%s" % name
    core.delete_collection_namespaced_pod("default", label_selector=selector, grace_period_seconds=0)
    core.delete_collection_namespaced_persistent_volume_claim("default", label_selector=selector)
    deadline = time.time() + 300
    while time.time() < deadline:
        claims = core.list_namespaced_persistent_volume_claim("default", label_selector=selector).items
        pods = core.list_namespaced_pod("default", label_selector=selector).items
        if not claims and not pods:
            return
        for obj, patch in [(c, core.patch_namespaced_persistent_volume_claim) for c in claims] + \
                          [(p, core.patch_namespaced_pod) for p in pods]:
            if obj.metadata.finalizers:
                try:
                    patch(obj.metadata.name, "default", {"metadata": {"finalizers": None}})
                except client.ApiException as exc:
                    if exc.status != 404:
                        raise
        time.sleep(1)
    print("warning: claims or pods of %s still there" % name)


def cleanup(core, storage, run):
    """Every PV, StorageClass and Node of this run (PVs' finalizers dropped: nothing uses them)."""
    from kubernetes import client
    selector = "%s=%s" % (BENCH_LABEL, run)
    core.delete_collection_persistent_volume(label_selector=selector)

    def unblock(pv):
        try:
            core.patch_persistent_volume(pv.metadata.name, {"metadata": {"finalizers": None}})
        except client.ApiException as exc:
            if exc.status != 404:
                raise
    deadline = time.time() + 300
    while time.time() < deadline:
        left = core.list_persistent_volume(label_selector=selector).items
        if not left:
            break
        with ThreadPoolExecutor(max_workers=16) as ex:
            list(ex.map(unblock, [pv for pv in left if pv.metadata.finalizers]))
        time.sleep(1)
    for sc in storage.list_storage_class(label_selector=selector).items:
        storage.delete_storage_class(sc.metadata.name)
    for name in ("sts-ours-%s" % run,):
        try:
            storage.delete_storage_class(name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
    core.delete_collection_node(label_selector=selector)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--per-node", type=int, default=10)
    parser.add_argument("--first", choices=["ours", "hand"], default="ours", help="which StatefulSet runs first")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    run = "s" + uuid.uuid4().hex[:5]
    replicas = args.nodes * args.per_node
    api, core, apps, storage = clients()
    ours, hand = "sts-ours-%s" % run, "sts-hand-%s" % run
    print("bench %s: %d kwok nodes x %d PVs, StatefulSets of %d replicas; load average %s" % (
        run, args.nodes, args.per_node, replicas, " ".join("%.2f" % x for x in os.getloadavg())))
    times = {ours: [], hand: []}
    try:
        nodes = make_nodes(core, run, args.nodes)
        reg_ours = register_ours(run, nodes, args.per_node, ours)
        reg_hand = register_by_hand(run, nodes, args.per_node, hand)
        print("register %d PVs: local_pv via ansible-playbook %.2f s, kubectl create (hand-made) %.2f s" % (
            replicas, reg_ours, reg_hand))
        for sc in ([ours, hand] if args.first == "ours" else [hand, ours]):
            took = time_statefulset(core, apps, run, sc, sc, replicas, args.timeout)
            times[sc].append(took)
            print("StatefulSet on %s PVs: all %d claims Bound and pods Running in %.1f s" % (
                "our" if sc == ours else "hand-made", replicas, took))
            delete_statefulset(core, apps, sc)
    finally:
        cleanup(core, storage, run)
        api.close()
    if times[ours] and times[hand]:
        print("StatefulSet of %d: our PVs %.1f s, hand-made PVs %.1f s: ratio %.2fx (%s first); load average %s" % (
            replicas, times[ours][0], times[hand][0], times[ours][0] / times[hand][0], args.first,
            " ".join("%.2f" % x for x in os.getloadavg())))


if __name__ == "__main__":
    main()
