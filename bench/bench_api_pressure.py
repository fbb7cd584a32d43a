# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""local_pv under API limits, against the same run without them.

In one run, against the lab's API server:

  free      N PVs created through ansible-playbook running local_pv as the lab's
            admin (system:masters: API Priority and Fairness exempts it).
  limited   the same N PVs (another set) with the token of a ServiceAccount bound to
            the shipped ClusterRole, whose requests all go to a priority level with
            the smallest share there is and Reject as its limit response (429 with
            Retry-After when its few seats are taken), while K kubectl loops of the
            same identity list PVs beside it.

Prints the time of each, their ratio, the failed writes and how often the API
server said "wait" (local_pv's ``throttled``). Everything made is deleted at the
end. Not a test: nothing here asserts a time.

    python bench/bench_api_pressure.py [--n 2000] [--loops 20] [--workers 16]

With LOCALPV_LAB_INSTANCE set, the lab of that instance is used. For the server's own
inflight limits as well, start the lab with them:
``lab.py up --apiserver-arg=--max-requests-inflight=20 --apiserver-arg=--max-mutating-requests-inflight=10``.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_local_pv as base  # noqa: E402  (one way to reach the lab and run local_pv)


def _identity(core, rbac, auth_api, tag):
    """A ServiceAccount bound to the shipped ClusterRole; its token."""
    import yaml
    from kubernetes import client
    with open(os.path.join(base.REPO, "deploy", "rbac", "localpv-rollout-clusterrole.yaml")) as f:
        role = yaml.safe_load(f)
    role["metadata"] = {"name": tag}
    rbac.create_cluster_role(role)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=tag)))
    core.create_namespaced_service_account(tag, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=tag)))
    rbac.create_cluster_role_binding(client.V1ClusterRoleBinding(
        metadata=client.V1ObjectMeta(name=tag),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=tag),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name=tag, namespace=tag)]))
    token = core.create_namespaced_service_account_token(tag, tag, client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=7200))).status.token
    for _try in range(60):
        review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
            user="system:serviceaccount:%s:%s" % (tag, tag), groups=["system:serviceaccounts"],
            resource_attributes=client.V1ResourceAttributes(verb="create", resource="persistentvolumes")))
        if auth_api.create_subject_access_review(review).status.allowed:
            break
        time.sleep(1)
    return token


def _tiny_level(flow, tag):
    flow.create_priority_level_configuration({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
        "metadata": {"name": tag},
        "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 1, "lendablePercent": 0,
                                                "borrowingLimitPercent": 0, "limitResponse": {"type": "Reject"}}}})
    flow.create_flow_schema({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema", "metadata": {"name": tag},
        "spec": {"priorityLevelConfiguration": {"name": tag}, "matchingPrecedence": 100,
                 "distinguisherMethod": {"type": "ByUser"},
                 "rules": [{"subjects": [{"kind": "ServiceAccount", "serviceAccount": {"name": tag, "namespace": tag}}],
                            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                               "clusterScope": True, "namespaces": ["*"]}]}]}})


def _run(run, vols, nodes, workers, auth=None):
    args = {"volumes": vols, "nodes": nodes, "workers": workers, "storage_class": "local-storage",
            "labels": {base.BENCH_LABEL: run}, "hostname_labels": dict((n, n) for n in nodes)}
    args.update(auth or {"kubeconfig": base.kubeconfig()})
    wall, results = base._playbook([{"localpv.rollout.local_pv": args, "ignore_errors": True}])
    res = results[0]
    return wall, res


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--loops", type=int, default=20)
    p.add_argument("--workers", type=int, default=16)
    args = p.parse_args()
    from kubernetes import client, config
    api = config.new_client_from_config(config_file=base.kubeconfig())
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    flow, auth_api = client.FlowcontrolApiserverV1Api(api), client.AuthorizationV1Api(api)
    tag = "lpvb-" + uuid.uuid4().hex[:6]
    free_run, limited_run = tag + "-free", tag + "-limited"
    base.ensure_class()
    loops = []
    try:
        token = _identity(core, rbac, auth_api, tag)
        _tiny_level(flow, tag)
        vols, nodes = base.volumes(free_run, args.n, "f")
        free, free_res = _run(free_run, vols, nodes, args.workers)
        conf = api.configuration
        auth = {"host": conf.host, "api_key": token, "ca_cert": conf.ssl_ca_cert}
        kubectl = [base.kubectl_binary(), "--server", conf.host, "--certificate-authority", conf.ssl_ca_cert,
                   "--token", token, "get", "pv", "--chunk-size=100", "-o", "name"]
        # each loop in a process group of its own, so that stopping it stops the kubectl it runs too
        loops = [subprocess.Popen(["bash", "-c", 'while :; do "$@" >/dev/null 2>&1; done', "loop"] + kubectl,
                                  start_new_session=True)
                 for _n in range(args.loops)]
        vols, nodes = base.volumes(limited_run, args.n, "l")
        limited, limited_res = _run(limited_run, vols, nodes, args.workers, auth)
    finally:
        for loop in loops:
            try:
                os.killpg(loop.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            loop.wait()
        for run in (free_run, limited_run):
            base.cleanup(run)
        for delete in (lambda: flow.delete_flow_schema(tag), lambda: flow.delete_priority_level_configuration(tag),
                       lambda: rbac.delete_cluster_role_binding(tag), lambda: rbac.delete_cluster_role(tag),
                       lambda: core.delete_namespace(tag)):
            try:
                delete()
            except client.ApiException:
                pass
        api.close()
    for name, wall, res in (("free", free, free_res), ("limited", limited, limited_res)):
        made = base._created(res)
        print("%-8s %6d PVs  %7.1f s  created %d  failed writes %d  throttled %d  requests %s" % (
            name, args.n, wall, made, len(res.get("errors") or []), res.get("throttled", 0), res.get("requests")))
    print("limited / free: %.2fx (%d kubectl loops of the same identity beside it)" % (limited / free, args.loops))


if __name__ == "__main__":
    main()
