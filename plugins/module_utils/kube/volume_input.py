# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``volumes`` option of local_pv: its shape (keys and types), checked here.

Ansible's nested ``argument_spec`` options would do the same checks, but they
copy and walk every one of tens of thousands of volume dicts several times
(measured: most of a run's own cost at 10,000 volumes). The values themselves
(names, paths, capacities, choices) are judged by ``volumes.normalize_volume``;
this file only makes sure each item is a dict with known keys of the right
types, and accepts the whole list as JSON text too, the compact form in which
the pv_register role hands it over (one string instead of many dicts for Ansible
to template, serialize and copy).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

# key: (accepted Python types, required). Numbers are accepted where Ansible's
# type "str" would convert them (a node named 1 in an inventory, say).
_TEXT = (str,)
_NAME = (str, int)
VOLUME_KEYS = {
    "node": (_NAME, True),
    "name": (_NAME, True),
    "path": (_TEXT, True),
    "mode": (_TEXT, False),
    "fstype": (_TEXT, False),
    # no capacity: judged by the volume model (allowed in check mode, before mounts)
    "capacity": ((int, str), False),
    "storage_class": (_TEXT, False),
    "reclaim_policy": (_TEXT, False),
    "labels": ((dict,), False),
    "stable_id": (_TEXT, False),
    "uuid": (_TEXT, False),
    "partuuid": (_TEXT, False),
}
_TYPE_NAMES = {str: "a string", int: "an integer", dict: "a dict"}
_REQUIRED = tuple(key for key, (_types, required) in VOLUME_KEYS.items() if required)


def load_volume_items(value):
    """The ``volumes`` option as a list: given as a list, or as JSON text of one.

    Returns ``(items, errors)``; ``errors`` is a list of sentences (empty when
    the value is a list)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            return [], ["volumes: the text is not JSON (%s); give a list of volumes or its JSON text" % exc]
    if not isinstance(value, list):
        return [], ["volumes: expected a list of volumes (or its JSON text), got %s" % type(value).__name__]
    return value, []


def _item_reasons(item):
    if not isinstance(item, dict):
        return ["is %s, not a dict of volume keys" % type(item).__name__]
    reasons = []
    unknown = sorted(str(key) for key in item if key not in VOLUME_KEYS)
    if unknown:
        reasons.append("unknown key(s) %s; known keys: %s" % (", ".join(unknown), ", ".join(sorted(VOLUME_KEYS))))
    reasons += ["%s is required" % key for key in _REQUIRED if item.get(key) is None]
    # only the keys given: a volume names a few of the keys, and a run has thousands
    for key, value in item.items():
        if key not in VOLUME_KEYS or value is None:
            continue
        types = VOLUME_KEYS[key][0]
        if isinstance(value, bool) or not isinstance(value, types):
            reasons.append("%s must be %s, got %r" % (
                key, " or ".join(_TYPE_NAMES[t] for t in types), value))
    return reasons


def check_volume_items(items):
    """Why items of ``volumes`` do not have the shape of a volume, one sentence
    per bad item naming it by node, name and position (empty when all are fine).

    Numbers given for ``node`` or ``name`` are turned into strings in place, as
    Ansible's type conversion would."""
    errors = []
    for index, item in enumerate(items):
        reasons = _item_reasons(item)
        if reasons:
            label = "item %d" % index
            if isinstance(item, dict):
                label = "volume %s of node %s (item %d)" % (item.get("name"), item.get("node"), index)
            errors.append("%s: %s" % (label, "; ".join(reasons)))
            continue
        for key in ("node", "name"):
            if isinstance(item[key], int):
                item[key] = str(item[key])
    return errors


def invocation_args(params, volume_count):
    """The module arguments to echo back in ``invocation``: all of them, but the
    volumes as a count (echoing tens of thousands of volumes back costs Ansible more
    than making their PVs)."""
    args = dict(params)
    args["volumes"] = "%d volume(s), not echoed" % volume_count
    return args
