# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How much does a PV cost with local_pv, against the floor and against what users do today?

In one run, against the lab's API server (or any cluster in $KUBECONFIG where you
may create and delete PVs labelled ``localpv.rollout/bench``):

  floor     N PVs created by a minimal concurrent raw-HTTP client (urllib3, same
            number of connections, bodies prepared in advance): the least any
            client can cost.
  local_pv  the same N PVs through ``ansible-playbook`` running local_pv, as users
            run it; the fixed cost of a run (Ansible start, module start, LISTs)
            is measured with an empty set and subtracted for the per-PV cost.
  noop      the same local_pv run again: nothing to change.
  k8s loop  M PVs (default 200) with ``kubernetes.core.k8s`` in a loop over items,
            what a playbook does today; per-PV cost from M and 1 item, extrapolated.

Prints per-PV cost, ratios, API requests by verb and peak memory (max RSS of each
phase's processes). Each phase runs in its own process. Everything it made is
deleted at the end. Not a test: nothing here asserts a time.

``--foreign F`` first makes F local PVs that are not ours (as another tool would),
on other paths of the same nodes, and keeps them for the whole run: local_pv
reads every PV of the cluster to find the PVs at its paths, so they are in every
LIST it makes.

    python bench/bench_local_pv.py [--n 1000] [--foreign 0] [--loop-n 200] [--workers 16]
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BENCH_LABEL = "localpv.rollout/bench"
GIB = 2 ** 30


def lab_paths():
    cache = os.environ.get("LOCALPV_LAB_CACHE") or os.path.expanduser("~/.cache/localpv-lab")
    state = os.environ.get("LOCALPV_LAB_STATE") or os.path.join(cache, "state")
    return cache, state


def kubeconfig():
    if os.environ.get("KUBECONFIG"):
        return os.environ["KUBECONFIG"]
    _cache, state = lab_paths()
    return os.path.join(state, "kubeconfig")


def collections_path():
    sys.path.insert(0, os.path.join(REPO, "tests"))
    import conftest  # noqa: F401  (makes ansible_collections.localpv.rollout importable)
    return conftest.COLLECTIONS


def volumes(run, n, prefix):
    """N volumes spread over 50 nodes that have not joined (as in provisioning)."""
    nodes = ["%s-%s-n%02d" % (prefix, run, i) for i in range(min(50, n) or 1)]
    return [{"node": nodes[i % len(nodes)], "name": "d%05d" % i, "path": "/mnt/disks/d%05d" % i,
             "fstype": "xfs", "capacity": 100 * GIB} for i in range(n)], nodes


def peak_rss_mib():
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(me / 1024.0, 1), round(kids / 1024.0, 1)


# --- phases, each run in a child process --------------------------------------

def phase_floor(args):
    """Raw HTTP: urllib3 pool, W threads, JSON bodies built before the clock starts."""
    import urllib3
    from concurrent.futures import ThreadPoolExecutor
    from kubernetes import client, config

    conf = client.Configuration()
    config.load_kube_config(config_file=kubeconfig(), client_configuration=conf)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if conf.api_key.get("authorization") or conf.api_key.get("BearerToken"):
        headers["Authorization"] = conf.api_key.get("authorization") or conf.api_key.get("BearerToken")
    pool = urllib3.PoolManager(num_pools=2, maxsize=args.workers, cert_reqs="CERT_REQUIRED" if conf.verify_ssl
                               else "CERT_NONE", ca_certs=conf.ssl_ca_cert, cert_file=conf.cert_file,
                               key_file=conf.key_file)
    sys.path.insert(0, collections_path())
    from ansible_collections.localpv.rollout.plugins.module_utils import volumes as v
    items, _nodes = volumes(args.run, args.n, "raw")
    bodies = []
    for item in items:
        vol = v.normalize_volume(item)[0]
        manifest = v.pv_manifest(vol, item["node"])
        manifest["metadata"]["labels"][BENCH_LABEL] = args.run
        manifest["metadata"]["labels"][v.MANAGED_BY_LABEL] = "bench-raw"   # not ours: local_pv must not see them
        bodies.append(json.dumps(manifest).encode())
    url = conf.host + "/api/v1/persistentvolumes"

    def post(body):
        r = pool.request("POST", url, body=body, headers=headers, retries=False)
        if r.status != 201:
            raise RuntimeError("create failed: %s %s" % (r.status, r.data[:300]))
        return r.status
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.workers) as ex:
        list(ex.map(post, bodies))
    wall = time.perf_counter() - start
    return {"wall": wall, "requests": {"create": len(bodies)}}


def phase_foreign(args):
    """F local PVs of another tool on the nodes of every phase, other paths."""
    import urllib3
    from concurrent.futures import ThreadPoolExecutor
    from kubernetes import client, config
    conf = client.Configuration()
    config.load_kube_config(config_file=kubeconfig(), client_configuration=conf)
    pool = urllib3.PoolManager(maxsize=args.workers, ca_certs=conf.ssl_ca_cert, cert_file=conf.cert_file,
                               key_file=conf.key_file, cert_reqs="CERT_REQUIRED" if conf.verify_ssl else "CERT_NONE")
    headers = {"Content-Type": "application/json"}
    if conf.api_key.get("authorization"):
        headers["Authorization"] = conf.api_key["authorization"]
    hosts = ["%s-%s-n%02d" % (prefix, args.run, i) for prefix in ("raw", "lpv", "lib") for i in range(50)]
    bodies = [json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "local-pv-%s-%06d" % (args.run, i), "labels": {BENCH_LABEL: args.run + "-foreign"},
                     "annotations": {"pv.kubernetes.io/provisioned-by": "local-volume-provisioner-bench"}},
        "spec": {"capacity": {"storage": "100Gi"}, "accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
                 "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "local-storage",
                 "local": {"path": "/mnt/fast-disks/f%06d" % i},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{
                     "key": "kubernetes.io/hostname", "operator": "In", "values": [hosts[i % len(hosts)]]}]}]}}},
    }).encode() for i in range(args.foreign)]

    def post(body):
        r = pool.request("POST", conf.host + "/api/v1/persistentvolumes", body=body, headers=headers, retries=3)
        if r.status != 201:
            raise RuntimeError("create failed: %s %s" % (r.status, r.data[:300]))
    with ThreadPoolExecutor(max_workers=args.workers) as ex:
        list(ex.map(post, bodies))
    return {"made": len(bodies)}


def _playbook(tasks, extra_vars=None, env_extra=None):
    play = [{"name": "bench", "hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks,
             "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}}]
    fd, path = tempfile.mkstemp(suffix=".yml", prefix="bench-")
    with os.fdopen(fd, "w") as f:
        json.dump(play, f)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               KUBECONFIG=kubeconfig(), ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))
    env.update(env_extra or {})
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", path]
    if extra_vars:
        vf = path + ".vars.json"
        with open(vf, "w") as f:
            json.dump(extra_vars, f)
        cmd += ["-e", "@" + vf]
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise RuntimeError("ansible-playbook failed:\n%s\n%s" % (res.stdout[-4000:], res.stderr[-2000:]))
    data = json.loads(res.stdout)
    results = [t["hosts"]["localhost"] for t in data["plays"][0]["tasks"]]
    return wall, results


def phase_local_pv(args):
    items, nodes = volumes(args.run, args.n, "lpv")
    task = {"localpv.rollout.local_pv": {"volumes": "{{ bench_volumes }}", "nodes": "{{ bench_nodes }}",
                                         "labels": {BENCH_LABEL: args.run}, "workers": args.workers,
                                         "prune": True}}
    # the fixed cost: the same run with an empty set (LISTs, Ansible and module start)
    empty_wall = _playbook([task], {"bench_volumes": [], "bench_nodes": ["lpv-%s-empty" % args.run]})[0]
    wall, results = _playbook([task], {"bench_volumes": items, "bench_nodes": nodes})
    res = results[0]
    assert len(res["created"]) == args.n, res.get("msg")
    out = {"wall": wall, "fixed": empty_wall, "requests": res["requests"]}
    noop_wall, results = _playbook([task], {"bench_volumes": items, "bench_nodes": nodes})
    res = results[0]
    assert res["changed"] is False and not res["created"], res
    out.update(noop_wall=noop_wall, noop_requests=res["requests"])
    return out


def _reconcile():
    from ansible_collections.localpv.rollout.plugins.module_utils import kube as k
    try:
        from ansible_collections.localpv.rollout.plugins.module_utils.persistent_volumes import reconcile_local_pvs
    except ImportError:   # releases before the PV work had a file of its own
        reconcile_local_pvs = k.reconcile_local_pvs
    return k, reconcile_local_pvs


def phase_inprocess(args):
    """local_pv's library code without Ansible around it (the module's own cost)."""
    sys.path.insert(0, collections_path())
    from ansible_collections.localpv.rollout.plugins.module_utils import volumes as v
    k, reconcile_local_pvs = _reconcile()
    items, nodes = volumes(args.run, args.n, "lib")
    wanted, errors = v.normalize_volumes(items, {"labels": {BENCH_LABEL: args.run}})
    assert not errors, errors
    kube = k.Kube.from_params({"kubeconfig": kubeconfig(), "workers": args.workers})
    start = time.perf_counter()
    outcome = reconcile_local_pvs(kube, wanted, nodes=nodes)
    wall = time.perf_counter() - start
    assert not outcome["failed"] and sum(a["action"] == "create" for a in outcome["actions"]) == args.n
    requests = dict(kube.requests)
    kube2 = k.Kube.from_params({"kubeconfig": kubeconfig(), "workers": args.workers})
    start = time.perf_counter()
    outcome = reconcile_local_pvs(kube2, wanted, nodes=nodes)
    noop = time.perf_counter() - start
    assert all(a["action"] == "unchanged" for a in outcome["actions"])
    return {"wall": wall, "requests": requests, "noop_wall": noop, "noop_requests": kube2.requests}


def phase_k8s_loop(args):
    def run(m, tag):
        items, _nodes = volumes(args.run + tag, m, "k8s")
        sys.path.insert(0, collections_path())
        from ansible_collections.localpv.rollout.plugins.module_utils import volumes as v
        defs = []
        for item in items:
            vol = v.normalize_volume(item)[0]
            manifest = v.pv_manifest(vol, item["node"])
            manifest["metadata"]["labels"][BENCH_LABEL] = args.run
            manifest["metadata"]["labels"][v.MANAGED_BY_LABEL] = "bench-k8s"
            defs.append(manifest)
        task = {"kubernetes.core.k8s": {"state": "present", "definition": "{{ item }}"},
                "loop": "{{ bench_defs }}", "loop_control": {"label": "{{ item.metadata.name }}"}}
        wall = _playbook([task], {"bench_defs": defs})[0]
        return wall
    one = run(1, "a")
    wall = run(args.loop_n, "b")
    return {"wall": wall, "one": one, "m": args.loop_n}


def apiserver_requests():
    """apiserver_request_total for persistentvolumes and for discovery, by verb
    (None when /metrics cannot be read)."""
    from kubernetes import config
    api = config.new_client_from_config(config_file=kubeconfig())
    conf = api.configuration
    headers = {}
    token = conf.api_key.get("BearerToken") or conf.api_key.get("authorization")
    if token:
        headers["Authorization"] = token
    try:
        r = api.rest_client.pool_manager.request("GET", conf.host + "/metrics", headers=headers)
        if r.status != 200:
            return None
        text = r.data
    finally:
        api.close()
    counts = {}
    for line in text.decode().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(kv.split("=", 1) for kv in line[line.index("{") + 1:line.index("}")].split(",") if "=" in kv)
        labels = dict((key, val.strip('"')) for key, val in labels.items())
        res = labels.get("resource") or ""
        key = None
        if res == "persistentvolumes" and not labels.get("subresource"):
            key = "%s persistentvolumes" % labels.get("verb")
        elif res == "" and labels.get("verb") == "GET":
            key = "GET discovery/version"
        if key:
            counts[key] = counts.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def ensure_class():
    """The StorageClass the bench PVs name: local_pv refuses PVs of a class that does not exist."""
    from kubernetes import client, config
    api = config.new_client_from_config(config_file=kubeconfig())
    try:
        client.StorageV1Api(api).create_storage_class(client.V1StorageClass(
            metadata=client.V1ObjectMeta(name="local-storage", labels={"app.kubernetes.io/managed-by": "localpv.rollout"}),
            provisioner="kubernetes.io/no-provisioner", reclaim_policy="Retain", volume_binding_mode="WaitForFirstConsumer"))
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    finally:
        api.close()


def cleanup(run):
    """Delete every PV of this bench run. The pv-protection controller removes the
    finalizer of each deleted PV one update at a time (slow for 10,000 PVs at the
    controller manager's QPS), so the finalizer of bench PVs that are not bound is
    removed here, concurrently; nothing ever binds bench PVs."""
    from concurrent.futures import ThreadPoolExecutor
    from kubernetes import client, config
    api = config.new_client_from_config(config_file=kubeconfig())
    api.configuration.connection_pool_maxsize = 16
    core = client.CoreV1Api(api)
    selector = "%s=%s" % (BENCH_LABEL, run)
    core.delete_collection_persistent_volume(label_selector=selector)

    def unblock(pv):
        if pv.spec.claim_ref is None and pv.metadata.finalizers:
            try:
                core.patch_persistent_volume(pv.metadata.name, {"metadata": {"finalizers": None}})
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
    deadline = time.time() + 600
    while True:
        left = core.list_persistent_volume(label_selector=selector).items
        if not left:
            break
        if time.time() > deadline:
            print("warning: %d bench PVs labelled %s still there" % (len(left), selector))
            break
        with ThreadPoolExecutor(max_workers=16) as ex:
            list(ex.map(unblock, left))
        time.sleep(1)
    api.close()
    time.sleep(3)   # let the controllers finish with the deleted PVs


PHASES = {"foreign": phase_foreign, "floor": phase_floor, "local_pv": phase_local_pv, "inprocess": phase_inprocess, "k8s_loop": phase_k8s_loop}


def child(args):
    out = PHASES[args.phase](args)
    out["rss_self_mib"], out["rss_children_mib"] = peak_rss_mib()
    print(json.dumps(out))


def run_phase(args, phase, metrics=True):
    before = apiserver_requests() if metrics else None
    cmd = [sys.executable, os.path.abspath(__file__), "--phase", phase, "--run", args.run, "--n", str(args.n),
           "--loop-n", str(args.loop_n), "--workers", str(args.workers), "--foreign", str(args.foreign)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit("phase %s failed:\n%s\n%s" % (phase, res.stdout[-3000:], res.stderr[-3000:]))
    out = json.loads(res.stdout.strip().splitlines()[-1])
    after = apiserver_requests() if metrics else None
    if before is not None and after is not None:
        out["apiserver"] = dict((key, int(after.get(key, 0) - before.get(key, 0)))
                                for key in sorted(set(after) | set(before)) if after.get(key, 0) != before.get(key, 0))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--n", type=int, default=1000, help="PVs created by local_pv and by the raw client")
    parser.add_argument("--foreign", type=int, default=0, help="local PVs of another tool present during the run")
    parser.add_argument("--loop-n", type=int, default=200, help="PVs created by the kubernetes.core.k8s loop")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="repeat the floor and local_pv phases, keep the best")
    parser.add_argument("--skip-loop", action="store_true", help="leave out the kubernetes.core.k8s loop")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--run", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        return child(args)
    args.run = "b" + uuid.uuid4().hex[:6]
    print("bench %s: N=%d, foreign PVs=%d, loop M=%d, workers=%d, best of %d rounds, API server from %s" % (
        args.run, args.n, args.foreign, args.loop_n, args.workers, args.rounds,
        "$KUBECONFIG" if os.environ.get("KUBECONFIG") else "the lab"))
    # Each phase starts from a cluster without bench PVs and with the controllers
    # done with the last deletions, so LISTs are the same size and the API server
    # is equally busy. The machine is shared with the API server, so phases are
    # repeated (--rounds) and the best round of each counts.

    def best(phase, key="wall"):
        runs = []
        for _round in range(args.rounds):
            runs.append(run_phase(args, phase))
            cleanup(args.run)
        return min(runs, key=lambda r: r[key])
    try:
        ensure_class()
        cleanup(args.run)
        if args.foreign:
            run_phase(args, "foreign", metrics=False)
        floor = best("floor")
        lib = best("inprocess")
        lpv = best("local_pv")
        loop = None if args.skip_loop else run_phase(args, "k8s_loop")
    finally:
        cleanup(args.run)
        if args.foreign:
            cleanup(args.run + "-foreign")

    n = args.n
    floor_pv = floor["wall"] / n
    lib_pv = lib["wall"] / n
    lpv_pv = max(lpv["wall"] - lpv["fixed"], 1e-9) / n
    rows = [
        ("raw HTTP client (floor)", floor["wall"], floor_pv, floor["requests"], floor.get("apiserver"),
         floor["rss_self_mib"]),
        ("local_pv library, in-process", lib["wall"], lib_pv, lib["requests"], None, lib["rss_self_mib"]),
        ("local_pv via ansible-playbook", lpv["wall"], lpv_pv, lpv["requests"], lpv.get("apiserver"),
         lpv["rss_children_mib"]),
    ]
    if loop:
        loop_pv = (loop["wall"] - loop["one"]) / max(loop["m"] - 1, 1)
        rows.append(("kubernetes.core.k8s loop (M=%d)" % loop["m"], loop["wall"], loop_pv, None,
                     loop.get("apiserver"), loop["rss_children_mib"]))
    print()
    print("%-34s %10s %12s %9s  %s" % ("create", "wall s", "per PV ms", "peak MiB", "requests"))
    for name, wall, per, reqs, apis, rss in rows:
        print("%-34s %10.2f %12.3f %9.1f  %s%s" % (name, wall, per * 1000, rss, json.dumps(reqs) if reqs else "",
                                                   ("  apiserver: " + json.dumps(apis)) if apis else ""))
    print()
    print("local_pv run fixed cost (empty set, ansible-playbook): %.2f s" % lpv["fixed"])
    print("ratio local_pv library / floor, per PV:            %.2fx" % (lib_pv / floor_pv))
    print("ratio local_pv ansible-playbook / floor, per PV:   %.2fx  (wall incl. fixed cost: %.2fx)" % (
        lpv_pv / floor_pv, lpv["wall"] / floor["wall"]))
    if loop:
        print("ratio k8s loop / local_pv ansible-playbook, per PV: %.1fx  (extrapolated to N=%d: %.0f s vs %.1f s)" % (
            loop_pv / lpv_pv, n, loop["one"] + loop_pv * (n - 1), lpv["wall"]))
    print()
    print("no-op re-run of %d PVs with %d foreign PVs present: ansible-playbook %.2f s, library %.3f s; requests %s "
          "(LIST pages of 1000 of every PV: %d, Nodes: 1)" % (
              n, args.foreign, lpv["noop_wall"], lib["noop_wall"], json.dumps(lpv["noop_requests"]),
              int(math.ceil((n + args.foreign) / 1000.0))))
    print("peak RSS: library %.1f MiB, ansible-playbook run (module process included) %.1f MiB" % (
        lib["rss_self_mib"], lpv["rss_children_mib"]))


if __name__ == "__main__":
    main()
