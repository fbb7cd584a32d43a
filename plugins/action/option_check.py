# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs on the controller: it needs every variable of the host (the module side
would only see its arguments), and nothing on the host."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import yaml

from ansible.plugins.action import ActionBase

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming
from ansible_collections.localpv.rollout.plugins.plugin_utils import options

_KNOWN = {}


def known_names():
    if "names" not in _KNOWN:
        _KNOWN["names"] = options.known_names(yaml.safe_load)
    return _KNOWN["names"]


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("nodes", "nodes_option"))

    def _node_names(self, task_vars, hosts):
        hostvars = task_vars.get("hostvars") or {}
        names = {}
        for host in hosts:
            try:
                names[host] = naming.node_of(host, hostvars[host])
            except Exception:  # an undefined or broken template: the inventory name is what is left
                names[host] = host
        return names

    def _variable_names(self, task_vars):
        """``{host: names of its variables}`` for every host of the play: one task
        run checks the whole play (a task per host costs the controller more than
        the check). The host that runs the task is read with its play and role
        variables; the others through hostvars (inventory, extra vars, facts)."""
        host = task_vars.get("inventory_hostname", "?")
        found = {host: list(task_vars.keys())}
        hostvars = task_vars.get("hostvars") or {}
        for other in task_vars.get("ansible_play_hosts_all") or ():
            if other not in found:
                try:
                    found[other] = list(hostvars[other].keys())
                except Exception:  # a host whose variables cannot be read is left to its own tasks
                    continue
        return found

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        by_problem = {}
        for host, variables in self._variable_names(task_vars).items():
            unknown = tuple(options.unknown_variables(variables, known_names()))
            if unknown:
                by_problem.setdefault(unknown, []).append(host)
        unknown_names = sorted(set(name for unknown in by_problem for name, _hint in unknown))
        result.update(changed=False, unknown_variables=unknown_names, unknown_nodes=[])
        problems = [options.describe_unknown(list(unknown), ", ".join(hosts)) for unknown, hosts in by_problem.items()]

        option = self._task.args.get("nodes_option") or "nodes"
        names = options.split_names(self._task.args.get("nodes"))
        if names:
            play_hosts = list(task_vars.get("ansible_play_hosts_all") or [])
            inventory = list((task_vars.get("groups") or {}).get("all") or [])
            bad = options.unknown_nodes(names, play_hosts, self._node_names(task_vars, play_hosts), inventory)
            result["unknown_nodes"] = [name for name, _why in bad]
            if bad:
                problems.append("%s names %s: %s. Nothing was changed." % (
                    option, ", ".join(result["unknown_nodes"]),
                    "; ".join("%s is %s" % (name, why) for name, why in bad)))
        if problems:
            result.update(failed=True, msg=" ".join(problems))
        return result
