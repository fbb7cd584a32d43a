# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shape of local_pv's volumes option: checked by the module, not by Ansible's nested options."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import json

from ansible_collections.localpv.rollout.plugins.module_utils.kube import volume_input as vi


def _volume(**extra):
    item = {"node": "node1", "name": "ssd0", "path": "/mnt/disks/ssd0", "capacity": 10 ** 9}
    item.update(extra)
    return item


def test_a_list_of_volumes_is_taken_as_given():
    items = [_volume()]
    assert vi.load_volume_items(items) == (items, [])


def test_json_text_of_volumes_is_the_same_list():
    items = [_volume(), _volume(name="ssd1", labels={"tier": "fast"})]
    assert vi.load_volume_items(json.dumps(items)) == (items, [])


def test_text_that_is_not_json_is_refused_with_the_fix():
    items, errors = vi.load_volume_items("node1,ssd0")
    assert items == [] and "not JSON" in errors[0] and "list of volumes" in errors[0]


def test_json_of_something_else_than_a_list_is_refused():
    _items, errors = vi.load_volume_items(json.dumps(_volume()))
    assert errors == ["volumes: expected a list of volumes (or its JSON text), got dict"]


def test_a_well_formed_volume_has_no_errors():
    assert vi.check_volume_items([_volume(mode="block", stable_id="wwn-0x5", uuid=None, labels={})]) == []


def test_unknown_key_names_the_item_and_the_known_keys():
    errors = vi.check_volume_items([_volume(), _volume(name="ssd1", size=1)])
    assert len(errors) == 1
    assert errors[0].startswith("volume ssd1 of node node1 (item 1): unknown key(s) size; known keys: capacity,")


def test_missing_required_keys_are_each_named():
    errors = vi.check_volume_items([{"node": "node1"}])
    assert "name is required" in errors[0] and "path is required" in errors[0]


def test_wrong_types_are_refused():
    errors = vi.check_volume_items([_volume(path=["/mnt"], labels="a=b", capacity=True)])
    assert "path must be a string" in errors[0]
    assert "labels must be a dict" in errors[0]
    assert "capacity must be an integer or a string" in errors[0]


def test_an_item_that_is_not_a_dict_is_named_by_position():
    assert vi.check_volume_items(["ssd0"]) == ["item 0: is str, not a dict of volume keys"]


def test_numbers_as_node_or_volume_names_become_strings_as_ansible_would():
    items = [_volume(node=7, name=1)]
    assert vi.check_volume_items(items) == [] and items[0]["node"] == "7" and items[0]["name"] == "1"


def test_invocation_echoes_the_count_not_the_volumes():
    params = {"volumes": [_volume()] * 3, "nodes": ["node1"]}
    args = vi.invocation_args(params, 3)
    assert args == {"volumes": "3 volume(s), not echoed", "nodes": ["node1"]}
    assert len(params["volumes"]) == 3
