# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rights each run asks for, the ClusterRole files they point at, and which
node names count as known (no cluster: the lab test asks a real API server)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import os

import pytest
import yaml

from conftest import REPO

from ansible_collections.localpv.rollout.plugins.module_utils.kube import preflight as pf


def granted(role_file):
    with open(os.path.join(REPO, role_file)) as f:
        rules = yaml.safe_load(f)["rules"]
    return set((verb, group, resource) for rule in rules for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"])


def keys(needs):
    return set((n["verb"], n["resource"]) for n in needs)


@pytest.mark.parametrize("run,options", [
    ("site", {}), ("reclaim", {}),
    ("decommission", {}), ("decommission", {"pod_action": "delete", "delete_node": True})])
def test_every_right_asked_for_is_granted_by_the_role_file_it_names(run, options):
    for need in pf.rights_for(run, **options):
        assert (need["verb"], need["group"], need["resource"]) in granted(need["role_file"]), need


def test_decommission_asks_for_eviction_cordon_claims_and_pv_delete():
    needs = keys(pf.rights_for("decommission"))
    assert {("create", "pods/eviction"), ("patch", "nodes"), ("delete", "persistentvolumeclaims"),
            ("delete", "persistentvolumes")} <= needs
    # pods are deleted after their claim when they would never start (a StatefulSet's replica), even with evict
    assert ("delete", "pods") in needs and ("delete", "nodes") not in needs
    other = keys(pf.rights_for("decommission", pod_action="delete", cordon=False, delete_node=True))
    assert ("delete", "pods") in other and ("create", "pods/eviction") not in other
    assert ("patch", "nodes") not in other and ("delete", "nodes") in other


def test_site_asks_for_pv_delete_only_when_it_may_delete():
    assert ("delete", "persistentvolumes") in keys(pf.rights_for("site"))
    assert ("delete", "persistentvolumes") not in keys(pf.rights_for("site", prune=False))
    assert ("delete", "persistentvolumes") in keys(pf.rights_for("site", prune=False, replace_unbound=True))
    assert ("patch", "persistentvolumes") in keys(pf.rights_for("reclaim"))


def test_a_review_names_the_subresource_apart():
    attributes = pf._attributes(pf.right("create", "pods/eviction", pf.RETIRE_ROLE))
    assert attributes == {"verb": "create", "group": "", "resource": "pods", "subresource": "eviction"}


def test_a_node_is_known_by_name_by_hostname_label_or_by_a_pv_of_ours():
    nodes = [{"metadata": {"name": "node3.lab.example", "labels": {"kubernetes.io/hostname": "node3"}}}]
    pvs = [{"metadata": {"name": "local-gone-ssd0", "labels": {"localpv.rollout/node": "gone"}}}]
    assert pf.unknown_nodes(["node3.lab.example", "node3", "gone", "node9"], nodes, pvs) == ["node9"]
