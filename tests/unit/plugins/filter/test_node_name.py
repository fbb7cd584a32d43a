# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node name rule: localpv_node_name, else the inventory name, in one place."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.localpv.rollout.plugins.filter.node_name import FilterModule
from ansible_collections.localpv.rollout.plugins.module_utils.common import naming

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))


def test_the_node_is_localpv_node_name_else_the_inventory_name_and_empty_counts_as_unset():
    node_name = FilterModule().filters()["node_name"]
    hostvars = {"rack1-a": {"localpv_node_name": "node-a.example"}, "rack1-b": {}, "rack1-c": {"localpv_node_name": ""},
                "rack1-d": {"localpv_node_name": None}}
    assert [node_name(h, hostvars) for h in sorted(hostvars)] == ["node-a.example", "rack1-b", "rack1-c", "rack1-d"]
    # a host of no hostvars (add_host later, say) is its inventory name too
    assert node_name("rack9-z", hostvars) == "rack9-z"
    assert naming.node_of("rack1-a", hostvars["rack1-a"]) == "node-a.example"


def test_no_role_template_or_plugin_spells_the_default_on_its_own():
    # the filter, or naming.node_of from Python: nothing else reads localpv_node_name for a value
    spelled = re.compile(r"localpv_node_name\s*(\|\s*default|or\b)|get\(\s*[\"']localpv_node_name")
    found = []
    for top in ("roles", "playbooks", "plugins"):
        for root, _dirs, files in os.walk(os.path.join(REPO, top)):
            for name in files:
                path = os.path.join(root, name)
                if path.endswith((".yml", ".j2", ".py")) and not path.endswith(os.path.join("common", "naming.py")):
                    with open(path) as f:
                        found += ["%s:%d" % (os.path.relpath(path, REPO), i + 1)
                                  for i, line in enumerate(f) if spelled.search(line)]
    assert found == []
