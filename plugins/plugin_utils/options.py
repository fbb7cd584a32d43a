# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The variables the collection knows, so that a typo stops a run instead of
silently widening it (``decommission_volume=vol1`` would otherwise retire every
volume of the node).

The known names come from the collection's own files: the options of every
entry point of every role's ``meta/argument_specs.yml``, the ``localpv_*``
inventory variables those specs and the roles' defaults name, the variables the
roles set themselves (``register``, ``set_fact``) and the variables of the
playbooks' play keywords (host patterns, batch size and failure percentage).
Plain functions over a collection directory; no Ansible import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import os
import re

PREFIXES = ("localpv_", "disk_prep_", "pv_register_", "decommission_", "reclaim_")
_NAME = re.compile(r"\b((?:%s)[a-z0-9_]*[a-z0-9])\b" % "|".join(PREFIXES))

# An inventory variable a spec names, as C(localpv_disks).
_DOC_NAME = re.compile(r"C\((localpv_[a-z0-9_]*[a-z0-9])\)")

# The play keywords of the playbooks whose values may name our variables.
PLAY_KEYWORDS = ("hosts:", "- hosts:", "serial:", "max_fail_percentage:")

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read(path):
    with open(path) as handle:
        return handle.read()


def _yaml_files(directory):
    for base, _dirs, files in os.walk(directory):
        for name in sorted(files):
            if name.endswith((".yml", ".yaml")):
                yield os.path.join(base, name)


def spec_options(text_loader, root=COLLECTION_ROOT):
    """{role: set of option names} of every entry point of every role's argument
    specs. ``text_loader`` turns YAML text into data (the caller's YAML library)."""
    out = {}
    roles = os.path.join(root, "roles")
    for role in sorted(os.listdir(roles)) if os.path.isdir(roles) else []:
        spec_file = os.path.join(roles, role, "meta", "argument_specs.yml")
        if not os.path.isfile(spec_file):
            continue
        specs = (text_loader(_read(spec_file)) or {}).get("argument_specs") or {}
        names = set()
        for entry in specs.values():
            names.update((entry or {}).get("options") or {})
        out[role] = names
    return out


def known_names(text_loader, root=COLLECTION_ROOT):
    """Every variable name with one of ``PREFIXES`` that the collection knows."""
    known = set()
    for names in spec_options(text_loader, root).values():
        known.update(names)
    roles = os.path.join(root, "roles")
    for role in sorted(os.listdir(roles)) if os.path.isdir(roles) else []:
        for path in _yaml_files(os.path.join(roles, role, "meta")):
            known.update(_DOC_NAME.findall(_read(path)))
        for path in _yaml_files(os.path.join(roles, role, "defaults")):
            known.update(n for n in _NAME.findall(_read(path)) if n.startswith("localpv_"))
        for path in _yaml_files(os.path.join(roles, role, "tasks")):
            known.update(names_set_by(text_loader(_read(path))))
    for path in _yaml_files(os.path.join(root, "playbooks")):
        for line in _read(path).splitlines():
            if line.strip().startswith(PLAY_KEYWORDS):
                known.update(_NAME.findall(line))
    return set(n for n in known if n.startswith(PREFIXES))


def names_set_by(tasks):
    """Variables a tasks file sets: ``register`` and ``set_fact`` keys, in blocks too."""
    found = set()
    if isinstance(tasks, list):
        for item in tasks:
            found.update(names_set_by(item))
    elif isinstance(tasks, dict):
        if isinstance(tasks.get("register"), str):
            found.add(tasks["register"])
        for key in ("ansible.builtin.set_fact", "set_fact"):
            if isinstance(tasks.get(key), dict):
                found.update(tasks[key])
        for key in ("block", "rescue", "always"):
            found.update(names_set_by(tasks.get(key)))
    return found


def unknown_variables(names, known):
    """``[(name, suggestion or None)]`` for each name of ``names`` with one of our
    prefixes that is not in ``known``, sorted."""
    out = []
    for name in sorted(set(names)):
        if name.startswith(PREFIXES) and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
            out.append((name, close[0] if close else None))
    return out


def describe_unknown(unknown, host):
    """One message for the unknown variables of ``host``."""
    said = []
    for name, suggestion in unknown:
        said.append("%s (did you mean %s?)" % (name, suggestion) if suggestion else "%s (no option is close)" % name)
    return ("%s: %s not an option of localpv.rollout: %s. A misspelled option is ignored by Ansible and can widen a "
            "run (decommission_volume instead of decommission_volumes retires every volume of the node), so the "
            "run stops here; nothing was changed. The options are in each role's meta/argument_specs.yml." % (
                host, "this is" if len(unknown) == 1 else "these are", "; ".join(said)))


def split_names(value):
    """Node names given as a list or a comma-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [str(item).strip() for item in value if str(item).strip()]


def unknown_nodes(names, play_hosts, node_names, inventory_hosts):
    """Why names of ``names`` match no host of the play: ``[(name, reason)]``.
    ``node_names`` maps each host of the play to its Kubernetes node name."""
    known = set(play_hosts) | set(node_names.values())
    out = []
    for name in names:
        if name in known:
            continue
        if name in inventory_hosts:
            out.append((name, "a host of the inventory that is not in this run (left out by --limit or the "
                              "play's host group)"))
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        out.append((name, "neither an inventory host of this run nor the localpv_node_name of one%s" % (
            " (did you mean %s?)" % close[0] if close else "")))
    return out
