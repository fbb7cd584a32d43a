# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How much does a PV cost with local_pv, against the floor and against what users do today?

In one run, against the lab's API server (or any cluster in $KUBECONFIG where you
may create and delete PVs labelled ``localpv.rollout/bench``):

  floor     N PVs created by a minimal concurrent raw-HTTP client (urllib3, same
            number of connections, bodies prepared in advance): the least any
            client can cost.
  local_pv  the same N PVs through ``ansible-playbook`` running local_pv, as users
            run it, with the volumes as a list of dicts and as JSON text (one
            string, as the pv_register role hands them over; --hand-over); the
            fixed cost of a run (Ansible start, module start, LISTs) is measured
            with an empty set and subtracted for the per-PV cost.
  noop      the same local_pv run again: nothing to change (with --settle, once the
            controller manager has set the phase of every new PV).
  k8s loop  M PVs (default 200) with ``kubernetes.core.k8s`` in a loop over items,
            what a playbook does today; per-PV cost from M and 1 item, extrapolated.
  kubectl   K PVs (default min(N, 2000)) with ``kubectl create``, ``kubectl apply``
            and ``kubectl apply --server-side`` of one List file, then the two
            applies again with nothing to change (the lab's kubectl, else PATH's).

Prints per-PV cost, ratios, API requests by verb and peak memory (max RSS of each
phase's processes; for local_pv, of the module process alone). Each phase runs in
its own process. Everything it made is deleted at the end. Not a test: nothing
here asserts a time.

    python bench/bench_local_pv.py [--n 1000] [--nodes 50] [--loop-n 200] [--kubectl-n 2000] [--workers 16]
    python bench/bench_local_pv.py --n 100000 --nodes 5000 --only local_pv_text --rounds 1

With LOCALPV_LAB_INSTANCE set, the lab of that instance is used.

``--foreign F`` first makes F local PVs that are not ours (as another tool would),
on other paths of the same nodes, and keeps them for the whole run: local_pv
reads every PV of the cluster to find the PVs at its paths, so they are in every
LIST it makes.
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


def _conftest():
    sys.path.insert(0, os.path.join(REPO, "tests"))
    import conftest  # noqa: F401  (makes ansible_collections.localpv.rollout importable, knows the lab)
    return conftest


def kubeconfig():
    if os.environ.get("KUBECONFIG"):
        return os.environ["KUBECONFIG"]
    return os.path.join(_conftest().STATE, "kubeconfig")


def kubectl_binary():
    lab_kubectl = _conftest().LAB.binary("kubectl")
    return lab_kubectl if os.path.exists(lab_kubectl) else "kubectl"


def collections_path():
    return _conftest().COLLECTIONS


def volumes(run, n, prefix, node_count=50):
    """N volumes spread over node_count nodes that have not joined (as in provisioning),
    with the same volume names and paths on every node, as in a fleet."""
    nodes = ["%s-%s-n%04d" % (prefix, run, i) for i in range(min(node_count, n) or 1)]
    return [{"node": nodes[i % len(nodes)], "name": "d%04d" % (i // len(nodes)),
             "path": "/mnt/disks/d%04d" % (i // len(nodes)),
             "fstype": "xfs", "capacity": 100 * GIB} for i in range(n)], nodes


# Runs the module in place of the Python interpreter and appends the peak RSS (KiB)
# of that process to $BENCH_MODULE_RSS_FILE: the module's own memory, without
# ansible-playbook's.
RSS_WRAPPER = """#!%s
import os, resource, runpy, sys
try:
    if len(sys.argv) > 1:
        sys.argv = sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")
    else:
        exec(compile(sys.stdin.read(), "<stdin>", "exec"), {"__name__": "__main__"})
finally:
    with open(os.environ["BENCH_MODULE_RSS_FILE"], "a") as f:
        f.write("%%d\\n" %% resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def rss_interpreter():
    """A Python interpreter for modules that records their peak RSS; returns (path, rss file)."""
    fd, wrapper = tempfile.mkstemp(suffix=".py", prefix="bench-python-")
    with os.fdopen(fd, "w") as f:
        f.write(RSS_WRAPPER % sys.executable)
    os.chmod(wrapper, 0o755)
    fd, rss_file = tempfile.mkstemp(suffix=".rss", prefix="bench-")
    os.close(fd)
    return wrapper, rss_file


def module_peak_rss_mib(rss_file):
    with open(rss_file) as f:
        values = [int(line) for line in f if line.strip()]
    return round(max(values) / 1024.0, 1) if values else None


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
    from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v
    items, _nodes = volumes(args.run, args.n, "raw", args.nodes)
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
    # the floor of any no-op: read every PV once (pages of 1000, each decoded)
    start, token, pages = time.perf_counter(), None, 0
    while True:
        r = pool.request("GET", url + "?limit=1000" + ("&continue=" + token if token else ""), headers=headers)
        token, pages = json.loads(r.data)["metadata"].get("continue"), pages + 1
        if not token:
            break
    return {"wall": wall, "requests": {"create": len(bodies)}, "list_wall": time.perf_counter() - start,
            "list_pages": pages}


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
    hosts = [node for prefix in ("raw", "lpv", "lib") for node in volumes(args.run, args.n, prefix, args.nodes)[1]]
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


def _playbook(tasks, extra_vars=None, env_extra=None, interpreter="{{ ansible_playbook_python }}", collections=None):
    play = [{"name": "bench", "hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks,
             "vars": {"ansible_python_interpreter": interpreter}}]
    fd, path = tempfile.mkstemp(suffix=".yml", prefix="bench-")
    with os.fdopen(fd, "w") as f:
        json.dump(play, f)
    env = dict(os.environ, **_conftest().tool_env())
    env.update(ANSIBLE_COLLECTIONS_PATH=collections or collections_path(),
               ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
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


def _created(res):
    """PVs created, from the per-node counts (the name lists may be left out)."""
    return sum(counts.get("created", 0) for counts in res["nodes"].values())


def phase_local_pv(args):
    """Through ansible-playbook; local_pv_text hands the volumes over as JSON text,
    as pv_register does (the extra variable is one string)."""
    items, nodes = volumes(args.run, args.n, "lpv", args.nodes)
    as_text = args.phase == "local_pv_text" or (args.phase == "local_pv_other" and args.other_hand_over == "text")
    # local_pv_other: another version of the collection (--other-collections), volumes as a list
    other = args.other_collections if args.phase == "local_pv_other" else None
    if as_text:
        items = json.dumps(items)
    task = {"localpv.rollout.local_pv": {"volumes": "{{ bench_volumes }}", "nodes": "{{ bench_nodes }}",
                                         "labels": {BENCH_LABEL: args.run}, "workers": args.workers,
                                         "prune": True}}
    wrapper, rss_file = rss_interpreter()
    env = {"BENCH_MODULE_RSS_FILE": rss_file}
    # the fixed cost: the same run with an empty set (LISTs, Ansible and module start)
    empty_wall = _playbook([task], {"bench_volumes": "[]" if as_text else [],
                                    "bench_nodes": ["lpv-%s-empty" % args.run]}, env, wrapper, other)[0]
    os.truncate(rss_file, 0)
    wall, results = _playbook([task], {"bench_volumes": items, "bench_nodes": nodes}, env, wrapper, other)
    res = results[0]
    assert _created(res) == args.n, res.get("msg")
    out = {"wall": wall, "fixed": empty_wall, "requests": res["requests"], "module_rss_mib": module_peak_rss_mib(rss_file)}
    if args.settle:
        out["settle_wall"] = settle(args.run)
    os.truncate(rss_file, 0)
    noop_wall, results = _playbook([task], {"bench_volumes": items, "bench_nodes": nodes}, env, wrapper, other)
    res = results[0]
    assert res["changed"] is False and not _created(res), res
    out.update(noop_wall=noop_wall, noop_requests=res["requests"], noop_module_rss_mib=module_peak_rss_mib(rss_file))
    os.unlink(wrapper)
    os.unlink(rss_file)
    return out


def settle(run, timeout=1800):
    """Wait until no PV of this bench run is Pending any more (the controller
    manager sets each new PV's phase, one write at a time); returns the wait."""
    from kubernetes import client, config
    api = config.new_client_from_config(config_file=kubeconfig())
    core = client.CoreV1Api(api)
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < timeout:
            pvs = core.list_persistent_volume(label_selector="%s=%s" % (BENCH_LABEL, run), _request_timeout=120).items
            if not any((pv.status.phase or "Pending") == "Pending" for pv in pvs):
                return time.perf_counter() - start
            time.sleep(5)
        raise RuntimeError("bench PVs still Pending after %d s" % timeout)
    finally:
        api.close()


def _reconcile():
    from ansible_collections.localpv.rollout.plugins.module_utils.kube import client as k
    try:
        from ansible_collections.localpv.rollout.plugins.module_utils.kube.persistent_volumes import reconcile_local_pvs
    except ImportError:   # releases before the PV work had a file of its own
        reconcile_local_pvs = k.reconcile_local_pvs
    return k, reconcile_local_pvs


def phase_inprocess(args):
    """local_pv's library code without Ansible around it (the module's own cost)."""
    sys.path.insert(0, collections_path())
    from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v
    k, reconcile_local_pvs = _reconcile()
    items, nodes = volumes(args.run, args.n, "lib", args.nodes)
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
        defs = _bench_manifests(args.run, m, "k8s", args.nodes, "bench-k8s", names_run=args.run + tag)
        task = {"kubernetes.core.k8s": {"state": "present", "definition": "{{ item }}"},
                "loop": "{{ bench_defs }}", "loop_control": {"label": "{{ item.metadata.name }}"}}
        wall = _playbook([task], {"bench_defs": defs})[0]
        return wall
    one = run(1, "a")
    wall = run(args.loop_n, "b")
    return {"wall": wall, "one": one, "m": args.loop_n}


def _bench_manifests(run, m, prefix, node_count, managed_by, names_run=None):
    """The PV manifests local_pv would make for M volumes, owned by another manager
    (so local_pv never sees them), labelled for the bench's cleanup."""
    sys.path.insert(0, collections_path())
    from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v
    items, _nodes = volumes(names_run or run, m, prefix, node_count)
    defs = []
    for item in items:
        manifest = v.pv_manifest(v.normalize_volume(item)[0], item["node"])
        manifest["metadata"]["labels"][BENCH_LABEL] = run
        manifest["metadata"]["labels"][v.MANAGED_BY_LABEL] = managed_by
        defs.append(manifest)
    return defs


KUBECTL_VERBS = {"kubectl_create": ["create"], "kubectl_apply": ["apply"],
                 "kubectl_apply_ss": ["apply", "--server-side"]}


def phase_kubectl(args):
    """K PVs in one List file, as a user would write them; the applies run twice."""
    verb = KUBECTL_VERBS[args.phase]
    defs = _bench_manifests(args.run, args.kubectl_n, args.phase.replace("_", "-"), args.nodes, "bench-kubectl")
    fd, path = tempfile.mkstemp(suffix=".json", prefix="bench-kubectl-")
    with os.fdopen(fd, "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": defs}, f)
    cmd = [kubectl_binary(), "--kubeconfig", kubeconfig()] + verb + ["-f", path, "-o", "name"]

    def timed():
        start = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        if res.returncode != 0:
            raise RuntimeError("%s failed: %s" % (" ".join(cmd[3:]), res.stderr[-2000:]))
        return wall
    out = {"wall": timed(), "m": args.kubectl_n}
    if verb[0] == "apply":
        out["noop_wall"] = timed()
    os.unlink(path)
    return out


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
    removed here, concurrently; nothing ever binds bench PVs. A DELETE of the whole
    collection can outlast the API server's request timeout on a busy machine:
    what it left is deleted one by one."""
    from concurrent.futures import ThreadPoolExecutor
    from kubernetes import client, config
    api = config.new_client_from_config(config_file=kubeconfig())
    api.configuration.connection_pool_maxsize = 16
    core = client.CoreV1Api(api)
    selector = "%s=%s" % (BENCH_LABEL, run)
    try:
        core.delete_collection_persistent_volume(label_selector=selector, _request_timeout=120)
    except Exception as exc:  # timeouts, dropped connections: the loop below finishes the job
        print("note: DELETE of the bench PVs as a collection did not finish (%s); deleting one by one"
              % type(exc).__name__)

    def finish(pv):
        try:
            if pv.metadata.deletion_timestamp is None:
                core.delete_persistent_volume(pv.metadata.name)
            if pv.spec.claim_ref is None and pv.metadata.finalizers:
                core.patch_persistent_volume(pv.metadata.name, {"metadata": {"finalizers": None}})
        except client.ApiException as exc:
            if exc.status != 404:
                raise
    deadline = time.time() + 900
    while True:
        left = core.list_persistent_volume(label_selector=selector, _request_timeout=120).items
        if not left:
            break
        if time.time() > deadline:
            print("warning: %d bench PVs labelled %s still there" % (len(left), selector))
            break
        with ThreadPoolExecutor(max_workers=16) as ex:
            list(ex.map(finish, left))
        time.sleep(1)
    api.close()
    time.sleep(3)   # let the controllers finish with the deleted PVs


PHASES = {"foreign": phase_foreign, "floor": phase_floor, "local_pv": phase_local_pv, "local_pv_text": phase_local_pv,
          "local_pv_other": phase_local_pv,
          "inprocess": phase_inprocess, "k8s_loop": phase_k8s_loop,
          "kubectl_create": phase_kubectl, "kubectl_apply": phase_kubectl, "kubectl_apply_ss": phase_kubectl}


def child(args):
    out = PHASES[args.phase](args)
    out["rss_self_mib"], out["rss_children_mib"] = peak_rss_mib()
    print(json.dumps(out))


def run_phase(args, phase, metrics=True):
    before = apiserver_requests() if metrics else None
    cmd = [sys.executable, os.path.abspath(__file__), "--phase", phase, "--run", args.run, "--n", str(args.n),
           "--loop-n", str(args.loop_n), "--workers", str(args.workers), "--nodes", str(args.nodes),
           "--kubectl-n", str(args.kubectl_n), "--foreign", str(args.foreign)]
    if args.settle:
        cmd.append("--settle")
    if args.other_collections:
        cmd += ["--other-collections", args.other_collections, "--other-hand-over", args.other_hand_over]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit("phase %s failed:\n%s\n%s" % (phase, res.stdout[-3000:], res.stderr[-3000:]))
    out = json.loads(res.stdout.strip().splitlines()[-1])
    after = apiserver_requests() if metrics else None
    if before is not None and after is not None:
        out["apiserver"] = dict((key, int(after.get(key, 0) - before.get(key, 0)))
                                for key in sorted(set(after) | set(before)) if after.get(key, 0) != before.get(key, 0))
    return out


def _parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--n", type=int, default=1000, help="PVs created by local_pv and by the raw client")
    parser.add_argument("--nodes", type=int, default=50, help="node names the PVs are spread over")
    parser.add_argument("--foreign", type=int, default=0, help="local PVs of another tool present during the run")
    parser.add_argument("--loop-n", type=int, default=200, help="PVs created by the kubernetes.core.k8s loop")
    parser.add_argument("--kubectl-n", type=int, default=None,
                        help="PVs created by each kubectl command (default min(N, 2000); 0 leaves kubectl out)")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="repeat the floor and local_pv phases, keep the best")
    parser.add_argument("--skip-loop", action="store_true", help="leave out the kubernetes.core.k8s loop")
    parser.add_argument("--only", choices=["local_pv", "local_pv_text"],
                        help="run only this phase (the 100,000 PV scale run)")
    parser.add_argument("--other-collections", default=None,
                        help="a directory with ansible_collections/localpv/rollout of another version (say, the last "
                             "release): its local_pv runs too, volumes as a list, for a before/after in one run")
    parser.add_argument("--other-hand-over", choices=["list", "text"], default="list",
                        help="how the volumes go to the other version's local_pv (text: that version takes JSON text)")
    parser.add_argument("--skip-library", action="store_true", help="leave out local_pv's library, in-process")
    parser.add_argument("--hand-over", default="list,text",
                        help="how local_pv gets the volumes: list (of dicts), text (JSON, as pv_register hands them)")
    parser.add_argument("--settle", action="store_true",
                        help="before local_pv's no-op re-run through ansible-playbook, wait until the controller "
                             "manager has set the phase of "
                             "every new PV (at its default 20 writes a second: about 8 minutes for 10,000 PVs), "
                             "so the re-run meets a cluster at rest, as a re-run on another day does")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--run", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kubectl_n is None:
        args.kubectl_n = min(args.n, 2000)
    return args


def _measure(args):
    """Every phase in turn, each from a cluster without bench PVs and with the
    controllers done with the last deletions, so LISTs are the same size and the
    API server is equally busy. The machine is shared with the API server, so
    phases are repeated (--rounds) and the best round of each counts."""
    def best(phase, key="wall"):
        runs = []
        for _round in range(args.rounds):
            runs.append(run_phase(args, phase))
            cleanup(args.run)
        return min(runs, key=lambda r: r[key])
    out = {}
    try:
        ensure_class()
        cleanup(args.run)
        if args.foreign:
            run_phase(args, "foreign", metrics=False)
        if args.only:
            out[args.only] = best(args.only)
            return out
        out["floor"] = best("floor")
        if not args.skip_library:
            out["inprocess"] = best("inprocess")
        if args.other_collections:
            out["local_pv_other"] = best("local_pv_other")
        for form in args.hand_over.split(","):
            out[HAND_OVER[form]] = best(HAND_OVER[form])
        for phase in sorted(KUBECTL_VERBS) if args.kubectl_n else ():
            out[phase] = run_phase(args, phase)
            cleanup(args.run)
        if not args.skip_loop:
            out["k8s_loop"] = run_phase(args, "k8s_loop")
    finally:
        cleanup(args.run)
        if args.foreign:
            cleanup(args.run + "-foreign")
    return out


HAND_OVER = {"list": "local_pv", "text": "local_pv_text"}
LPV_ROWS = (("local_pv_other", "other version"), ("local_pv", "volumes as list"),
            ("local_pv_text", "volumes as JSON text"))


def _print_local_pv_only(args, lpv):
    print("local_pv via ansible-playbook (%s), %d PVs over %d nodes:" % (dict(LPV_ROWS)[args.only], args.n, args.nodes))
    print("  create   %.1f s (fixed cost %.2f s), module peak RSS %s MiB, requests %s%s" % (
        lpv["wall"], lpv["fixed"], lpv["module_rss_mib"], json.dumps(lpv["requests"]),
        ("  apiserver: " + json.dumps(lpv["apiserver"])) if lpv.get("apiserver") else ""))
    print("  no-op    %.1f s, module peak RSS %s MiB, requests %s" % (
        lpv["noop_wall"], lpv["noop_module_rss_mib"], json.dumps(lpv["noop_requests"])))
    print("  ansible-playbook and module processes, peak RSS of the largest: %s MiB" % lpv["rss_children_mib"])


def _print_create(args, res):
    n = args.n
    floor, lib, loop = res["floor"], res.get("inprocess"), res.get("k8s_loop")
    lpvs = [(key, label, res[key]) for key, label in LPV_ROWS if key in res]
    floor_pv = floor["wall"] / n
    lib_pv = lib["wall"] / n if lib else None

    def per_pv(lpv):
        return max(lpv["wall"] - lpv["fixed"], 1e-9) / n
    rows = [
        ("raw HTTP client (floor)", floor["wall"], floor_pv, floor["requests"], floor.get("apiserver"),
         floor["rss_self_mib"]),
    ]
    if lib:
        rows.append(("local_pv library, in-process", lib["wall"], lib_pv, lib["requests"], None, lib["rss_self_mib"]))
    rows += [("local_pv playbook, %s" % label, lpv["wall"], per_pv(lpv), lpv["requests"], lpv.get("apiserver"),
              lpv["module_rss_mib"]) for _key, label, lpv in lpvs]
    for phase in sorted(KUBECTL_VERBS):
        if phase in res:
            kc = res[phase]
            rows.append(("%s (K=%d)" % (" ".join(["kubectl"] + KUBECTL_VERBS[phase]), kc["m"]), kc["wall"],
                         kc["wall"] / kc["m"], None, kc.get("apiserver"), kc["rss_children_mib"]))
    if loop:
        loop_pv = (loop["wall"] - loop["one"]) / max(loop["m"] - 1, 1)
        rows.append(("kubernetes.core.k8s loop (M=%d)" % loop["m"], loop["wall"], loop_pv, None,
                     loop.get("apiserver"), loop["rss_children_mib"]))
    print()
    print("%-42s %9s %10s %9s  %s" % ("create", "wall s", "per PV ms", "peak MiB", "requests"))
    for name, wall, per, reqs, apis, rss in rows:
        print("%-42s %9.2f %10.3f %9.1f  %s%s" % (name, wall, per * 1000, rss, json.dumps(reqs) if reqs else "",
                                                  ("  apiserver: " + json.dumps(apis)) if apis else ""))
    print("(peak MiB: of the phase's process; for local_pv through a playbook, of the module process)")
    print()
    if lib:
        print("ratio local_pv library / floor, per PV: %.2fx" % (lib_pv / floor_pv))
    for _key, label, lpv in lpvs:
        print("local_pv playbook, %s: fixed cost (empty set) %.2f s; per PV / floor %.2fx (wall incl. fixed cost: "
              "%.2fx)" % (label, lpv["fixed"], per_pv(lpv) / floor_pv, lpv["wall"] / floor["wall"]))
        for phase in sorted(KUBECTL_VERBS):
            if phase in res:
                kc_pv = res[phase]["wall"] / res[phase]["m"]
                print("    / %-28s per PV: %.2fx  (wall per PV incl. fixed cost: %.2fx)" % (
                    " ".join(["kubectl"] + KUBECTL_VERBS[phase]) + ",", per_pv(lpv) / kc_pv, lpv["wall"] / n / kc_pv))
        if loop:
            print("    k8s loop / this, per PV: %.1fx  (extrapolated to N=%d: %.0f s vs %.1f s)" % (
                loop_pv / per_pv(lpv), n, loop["one"] + loop_pv * (n - 1), lpv["wall"]))


def _print_noop(args, res):
    n = args.n
    lib = res.get("inprocess")
    pages = int(math.ceil((n + args.foreign) / 1000.0))
    print()
    print("no-op re-run of %d PVs with %d foreign PVs present: library %s s (LIST pages of 1000 of every PV: %d, "
          "Nodes: 1)" % (n, args.foreign, "%.3f" % lib["noop_wall"] if lib else "-", pages))
    floor = res.get("floor") or {}
    if "list_wall" in floor:
        print("  floor: one raw LIST of every PV, decoded: %.2f s (%d pages)" % (floor["list_wall"], floor["list_pages"]))
    for key, label in LPV_ROWS:
        if key in res:
            lpv = res[key]
            print("  local_pv playbook, %s: %.2f s, %.3f ms per PV; requests %s; module peak RSS %s MiB" % (
                label, lpv["noop_wall"], lpv["noop_wall"] / n * 1000, json.dumps(lpv["noop_requests"]),
                lpv["noop_module_rss_mib"]))
            if "settle_wall" in lpv:
                print("    after waiting %.0f s for the controller manager to set the phase of every new PV"
                      % lpv["settle_wall"])
            if "list_wall" in floor:
                print("    / (fixed cost %.2f s + raw LIST): %.2fx" % (
                    lpv["fixed"], lpv["noop_wall"] / (lpv["fixed"] + floor["list_wall"])))
            for phase in ("kubectl_apply", "kubectl_apply_ss"):
                if phase in res:
                    kc = res[phase]
                    kc_pv = kc["noop_wall"] / kc["m"]
                    print("    / no-op %-28s %.2f s for K=%d, %.3f ms per PV: ratio %.3fx" % (
                        " ".join(["kubectl"] + KUBECTL_VERBS[phase]) + ":", kc["noop_wall"], kc["m"], kc_pv * 1000,
                        (lpv["noop_wall"] / n) / kc_pv))
    if lib:
        print("peak RSS: library %.1f MiB" % lib["rss_self_mib"])


def main():
    args = _parse_args()
    if args.phase:
        return child(args)
    args.run = "b" + uuid.uuid4().hex[:6]
    print("bench %s: N=%d over %d nodes, foreign PVs=%d, loop M=%d, kubectl K=%d, workers=%d, best of %d rounds, "
          "API server from %s" % (
              args.run, args.n, args.nodes, args.foreign, args.loop_n, args.kubectl_n, args.workers, args.rounds,
              "$KUBECONFIG" if os.environ.get("KUBECONFIG") else "the lab"))
    print("load average before: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
    res = _measure(args)
    print("load average after:  %s" % " ".join("%.2f" % x for x in os.getloadavg()))
    if args.only:
        return _print_local_pv_only(args, res[args.only])
    _print_create(args, res)
    _print_noop(args, res)


if __name__ == "__main__":
    main()
