# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PV plan rules that mutation testing found unguarded (`make mutants`): prune must
look at every PV of ours, not stop at the first one still wanted, and a missing
StorageClass names the PVs that need it, a few of them when there are many."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


from ansible_collections.localpv.rollout.plugins.module_utils.kube import persistent_volumes as pvs
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v

from pv_builders import hostnames, plan, server_copy, vol


def test_prune_looks_past_the_pvs_still_wanted():
    # PVs are visited by name: a wanted one ("a...") comes before the unwanted ("z...")
    wanted = vol(name="aaa")
    cluster = [server_copy(v.pv_manifest(wanted, "node1"), uid="u-a"),
               server_copy(v.pv_manifest(vol(name="zzz"), "node1"), uid="u-z")]
    got = sorted((a["action"], a["name"]) for a in plan([wanted], cluster, prune=True))
    assert got == [("delete", "local-node1-zzz"), ("unchanged", "local-node1-aaa")]


def missing_class_message(count):
    volumes = [vol(name="d%d" % n, storage_class="gone") for n in range(count)]
    errors, _warnings = pvs.validate_plan(plan(volumes, []), hostnames("node1"), {"local-storage"})
    return errors[0]


def test_a_missing_class_names_up_to_five_pvs_and_says_when_there_are_more():
    five = missing_class_message(5)
    assert "PVs local-node1-d0, local-node1-d1, local-node1-d2, local-node1-d3, local-node1-d4 name it" in five
    assert " ..." not in five
    six = missing_class_message(6)
    assert "local-node1-d4 ... name it" in six and "local-node1-d5" not in six
