# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Writes under API limits: a ServiceAccount bound to the shipped ClusterRole (not
system:masters, which API Priority and Fairness exempts) whose priority level has
a seat or two and rejects the rest with 429, as a busy cluster does. local_pv must
lose no write, and say how often it was told to wait."""

import threading

import pytest
from kubernetes import client

import test_rbac
from pv_helpers import delete_pvs, local_pv, pvs_with_label, unique, volume

identity = test_rbac.identity
COUNT = 300


@pytest.fixture
def throttled_identity(kube, identity):
    """Connection options of a ServiceAccount whose requests all go to a priority
    level with the smallest share there is and Reject as its limit response."""
    auth = identity(test_rbac.shipped_role()["rules"])
    namespace, name = _username(auth).split(":")[2:4]
    flow = client.FlowcontrolApiserverV1Api(kube)
    level = unique("lpvt-tiny-")
    flow.create_priority_level_configuration({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
        "metadata": {"name": level},
        "spec": {"type": "Limited", "limited": {
            "nominalConcurrencyShares": 1, "lendablePercent": 0, "borrowingLimitPercent": 0,
            "limitResponse": {"type": "Reject"}}}})
    flow.create_flow_schema({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema", "metadata": {"name": level},
        "spec": {"priorityLevelConfiguration": {"name": level}, "matchingPrecedence": 100,
                 "distinguisherMethod": {"type": "ByUser"},
                 "rules": [{"subjects": [{"kind": "ServiceAccount",
                                          "serviceAccount": {"name": name, "namespace": namespace}}],
                            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                               "clusterScope": True, "namespaces": ["*"]}],
                            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]}]}})
    yield auth
    flow.delete_flow_schema(level)
    flow.delete_priority_level_configuration(level)


def _client(auth):
    configuration = client.Configuration()
    configuration.host, configuration.ssl_ca_cert = auth["host"], auth["ca_cert"]
    configuration.api_key = {"authorization": "Bearer " + auth["api_key"]}
    return client.ApiClient(configuration)


def _username(auth):
    """system:serviceaccount:<namespace>:<name> of a token, as the API server sees it."""
    api = _client(auth)
    try:
        review = client.AuthenticationV1Api(api).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        return review.status.user_info.username
    finally:
        api.close()


def _busy_neighbours(kube_auth, stop):
    """Other clients of the same identity reading PVs while local_pv writes: they
    take the same few seats."""
    api = _client(kube_auth)

    def loop():
        core = client.CoreV1Api(api)
        while not stop.is_set():
            try:
                core.list_persistent_volume(limit=50)
            except client.ApiException:
                pass
    threads = [threading.Thread(target=loop, daemon=True) for _n in range(4)]
    for thread in threads:
        thread.start()
    return threads, api


def test_a_full_priority_level_loses_no_write(lab, kube, tmp_path, throttled_identity):
    auth = throttled_identity
    node = unique("n")
    names = ["p%04d" % n for n in range(COUNT)]
    stop = threading.Event()
    threads, api = _busy_neighbours(auth, stop)
    try:
        result = local_pv(lab, tmp_path, nodes=[node], volumes=[volume(node, name) for name in names],
                          kubeconfig=None, host=auth["host"], api_key=auth["api_key"], ca_cert=auth["ca_cert"],
                          hostname_labels={node: node}, workers=16, retry_deadline=300)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        api.close()
    try:
        assert result["rc"] == 0, result.get("msg")
        assert result["errors"] == [] and len(result["created"]) == COUNT
        # the limit was real: the server said "wait" and local_pv waited
        assert result["throttled"] > 0
        assert len(pvs_with_label(kube, "localpv.rollout/node", node)) == COUNT
    finally:
        delete_pvs(kube, [pv.metadata.name for pv in pvs_with_label(kube, "localpv.rollout/node", node)])
