# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An entry of localpv_disks: its schema (the module's argument spec and
documentation), the filesystem types it may ask for, and the paths of its partitions."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import ast
import os

import yaml

from conftest import REPO

from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import entries as plan_entries
from ansible_collections.localpv.rollout.plugins.module_utils.host import host_volumes as hv
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as vol


def test_partition_paths():
    assert plan_entries.partition_path("/dev/sda", 1) == "/dev/sda1"
    assert plan_entries.partition_path("/dev/nvme0n1", 2) == "/dev/nvme0n1p2"
    assert plan_entries.partition_path("/dev/loop3", 1) == "/dev/loop3p1"


def test_the_fstype_lists_agree():
    """Three lists by purpose: what disk_prepare makes (disk_plan.FSTYPES, also the
    module's and the role's choices), what mkfs_argv can make again (reclaim) and
    what a PV may declare. What disk_prepare makes must be in the other two."""
    assert set(plan_entries.FSTYPES) <= set(hv.MKFS_TYPES) <= set(vol.FSTYPES)
    spec = os.path.join(REPO, "roles", "disk_prep", "meta", "argument_specs.yml")
    with open(spec) as handle:
        options = yaml.safe_load(handle)["argument_specs"]["main"]["options"]
    assert options["disk_prep_fstype"]["choices"] == list(plan_entries.FSTYPES)


def module_documentation(name):
    with open(os.path.join(REPO, "plugins", "modules", name + ".py")) as handle:
        tree = ast.parse(handle.read())
    (doc,) = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
              and getattr(node.targets[0], "id", None) == "DOCUMENTATION"]
    return yaml.safe_load(doc)


def documented_spec(options):
    """What documented options state of an argument spec: type, choices, default, suboptions."""
    out = {}
    for key, doc in options.items():
        out[key] = dict((k, doc[k]) for k in ("type", "choices", "default") if k in doc)
        if "suboptions" in doc:
            out[key]["options"] = documented_spec(doc["suboptions"])
    return out


def test_disk_prepare_documents_the_entry_schema_the_plan_takes():
    """One schema (disk_plan.ENTRY_OPTIONS) is the module's argument spec and the keys
    normalize_spec takes; the module's documentation states the same keys, types and
    choices, no default (normalize_spec fills them), and the host-wide defaults."""
    options = module_documentation("disk_prepare")["options"]
    assert documented_spec(options["disks"]["suboptions"]) == plan_entries.entry_argument_spec()
    assert sorted(plan_entries.SPEC_KEYS) == sorted(options["disks"]["suboptions"])
    assert plan_entries.MATCH_KEYS == tuple(key for key, _spec in plan_entries.MATCH_OPTIONS)
    for key, value in plan_entries.HOST_DEFAULTS.items():
        assert options[key].get("default") == value, key
    # what an entry leaves out is said in its option's description
    for key, value in plan_entries.ENTRY_DEFAULTS.items():
        text = " ".join(options["disks"]["suboptions"][key]["description"]
                        if isinstance(options["disks"]["suboptions"][key]["description"], list)
                        else [options["disks"]["suboptions"][key]["description"]])
        assert "Default V(%s)." % str(value).lower() in text, key
