# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The names the collection knows, read from its own files, and the messages for
the ones it does not."""

import os
import re

import yaml

from conftest import REPO

from ansible_collections.localpv.rollout.plugins.plugin_utils import options as o

KNOWN = o.known_names(yaml.safe_load, REPO)


def test_every_role_option_and_every_inventory_variable_the_roles_read_is_known():
    for role, names in o.spec_options(yaml.safe_load, REPO).items():
        # the report role's own options (report_*) are set by the roles that include it, not by users
        assert names and set(n for n in names if n.startswith(o.PREFIXES)) <= KNOWN, role
    read = set()
    for base, _dirs, files in os.walk(os.path.join(REPO, "roles")):
        if os.path.basename(base) in ("meta", "README.md"):
            continue
        for name in files:
            if name.endswith((".yml", ".j2")):
                with open(os.path.join(base, name)) as f:
                    text = "".join(line for line in f if "tags:" not in line and not line.lstrip().startswith("#"))
                read.update(re.findall(r"\b(localpv_[a-z0-9_]*[a-z0-9])\b", text))
    # every localpv_* a role reads is named in an argument spec or a role default
    assert read - KNOWN == set()


def test_a_misspelled_option_gets_the_closest_known_name():
    names = ["decommission_volume", "decommission_volumes", "reclaim_node", "localpv_disk", "localpv_whatever_x",
             "ansible_port", "lab_disks"]
    assert o.unknown_variables(names, KNOWN) == [
        ("decommission_volume", "decommission_volumes"), ("localpv_disk", "localpv_disks"),
        ("localpv_whatever_x", None), ("reclaim_node", "reclaim_nodes")]
    msg = o.describe_unknown([("decommission_volume", "decommission_volumes")], "node2")
    assert msg.startswith("node2: this is not an option of localpv.rollout: decommission_volume (did you mean "
                          "decommission_volumes?)") and "nothing was changed" in msg


def test_variables_the_roles_set_are_not_taken_for_typos():
    assert {"localpv_volumes", "decommission_plan", "disk_prep_plan", "pv_register_wanted", "reclaim_pvs"} <= KNOWN
    assert "localpv_pvs" not in KNOWN   # a tag of site.yml, not a variable


def test_node_names_match_hosts_of_the_play_or_their_node_names():
    play = ["node1", "node2", "node3"]
    names = {"node1": "node1", "node2": "node2", "node3": "node3.lab.example"}
    bad = o.unknown_nodes(["node2", "node3.lab.example", "node9", "node4"], play, names, play + ["node4"])
    assert [name for name, _why in bad] == ["node9", "node4"]
    assert "did you mean node" in bad[0][1]
    assert "--limit" in bad[1][1]
    assert o.split_names(" node1, ,node2 ") == ["node1", "node2"] and o.split_names(None) == []
