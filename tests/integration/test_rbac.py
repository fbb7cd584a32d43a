# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shipped ClusterRole is enough, and a missing right is named.

A ServiceAccount gets a token from the TokenRequest API and is bound only to the
ClusterRole of deploy/rbac (or to a copy with one right removed); the modules
then run with that token and nothing else.
"""

import copy
import os

import pytest
import yaml
from kubernetes import client

from pv_helpers import local_pv, module, pvs_of, unique, volume, wait_until, delete_pvs

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming

ROLE_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "rbac", "localpv-rollout-clusterrole.yaml")


def shipped_role():
    with open(ROLE_FILE) as f:
        return yaml.safe_load(f)


@pytest.fixture
def identity(kube):
    """Make a ServiceAccount bound to a ClusterRole built from ``rules``; yields
    a function returning connection options for its token."""
    core, rbac = client.CoreV1Api(kube), client.RbacAuthorizationV1Api(kube)
    tag = unique("rbac-")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=tag)))
    wait_until("default ServiceAccount in %s" % tag, lambda: core.list_namespaced_service_account(
        tag, field_selector="metadata.name=default").items)
    made = []

    def make(rules):
        name = "%s-%d" % (tag, len(made))
        made.append(name)
        role = shipped_role()
        role["metadata"] = {"name": name}
        role["rules"] = rules
        rbac.create_cluster_role(role)
        core.create_namespaced_service_account(tag, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name)))
        rbac.create_cluster_role_binding(client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name=name),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=name),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=name, namespace=tag)]))
        token = core.create_namespaced_service_account_token(name, tag, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))).status.token
        user = "system:serviceaccount:%s:%s" % (tag, name)
        # the authorizer learns about new bindings from a watch: wait until it knows
        auth = client.AuthorizationV1Api(kube)
        wait_until("binding of %s effective" % name, lambda: auth.create_subject_access_review(
            client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
                user=user, groups=["system:serviceaccounts"], resource_attributes=client.V1ResourceAttributes(
                    verb="get", resource="persistentvolumes")))).status.allowed)
        conf = kube.configuration
        return {"kubeconfig": None, "host": conf.host, "api_key": token, "ca_cert": conf.ssl_ca_cert}

    yield make
    for name in made:
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)
    core.delete_namespace(tag)


@pytest.fixture
def made(kube):
    names = []
    yield names
    delete_pvs(kube, names)


def test_a_token_bound_only_to_the_shipped_role_does_the_whole_job(lab, kube, tmp_path, identity, made):
    auth = identity(shipped_role()["rules"])
    node, sc = unique("n"), unique("sc-")
    made += [naming.pv_name(node, "d0"), naming.pv_name(node, "d1")]
    try:
        res = module(lab, tmp_path, "localpv.rollout.local_storage_class", storage_classes=[{"name": sc}], **auth)
        assert res["changed"] is True, res.get("msg")
        res = local_pv(lab, tmp_path, volumes=[volume(node, "d0"), volume(node, "d1")], **auth)
        assert res["rc"] == 0 and len(res["created"]) == 2, res.get("msg")
        res = local_pv(lab, tmp_path, volumes=[volume(node, "d0", 2 * 2 ** 30)], prune=True,
                       replace_unbound=True, **auth)
        # a capacity change is a patch in place, the unwanted PV a delete
        assert res["rc"] == 0 and res["updated"] == made[:1] and res["deleted"] == made[1:], res.get("msg")
        res = module(lab, tmp_path, "localpv.rollout.local_pv_info", nodes=[node], **auth)
        assert [p["name"] for p in res["pvs"]] == made[:1], res.get("msg")
    finally:
        try:
            client.StorageV1Api(kube).delete_storage_class(sc)
        except client.ApiException:
            pass


@pytest.mark.parametrize("resource,verb", [("persistentvolumes", "create"), ("nodes", "list"),
                                           ("persistentvolumes", "delete")])
def test_with_a_right_removed_the_error_names_the_verb_and_the_resource(lab, kube, tmp_path, identity, made,
                                                                        resource, verb):
    rules = copy.deepcopy(shipped_role()["rules"])
    for rule in rules:
        if resource in rule["resources"] and verb in rule["verbs"]:
            rule["verbs"].remove(verb)
    rules = [r for r in rules if r["verbs"]]
    auth = identity(rules)
    node = unique("n")
    made += [naming.pv_name(node, "d0")]
    if verb == "delete":
        assert local_pv(lab, tmp_path, volumes=[volume(node, "d0")])["rc"] == 0   # as admin
        res = local_pv(lab, tmp_path, volumes=[], nodes=[node], prune=True, **auth)
    else:
        res = local_pv(lab, tmp_path, volumes=[volume(node, "d0")], **auth)
    assert res["rc"] != 0
    assert "not allowed to %s %s (403 Forbidden)" % (verb, resource) in res["msg"], res["msg"]
    if verb == "create":
        assert pvs_of(kube, made) == {}
