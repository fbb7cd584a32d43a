# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node name rule for templates: roles and playbooks ask the same function the
plugins ask, so that no template spells the default on its own."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: node_name
short_description: The Kubernetes node name of an inventory host
version_added: 0.1.0
author: localpv.rollout contributors
description:
  - The host's C(localpv_node_name), else its inventory name. An empty C(localpv_node_name) counts as unset.
  - Every role and template of this collection names a host's Node through this filter, and its plugins through
    the same rule, so a host is the same Node everywhere.
positional: hostvars
options:
  _input:
    description: The inventory host name.
    type: str
    required: true
  hostvars:
    description: The play's C(hostvars).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Say which Node each host of the play is
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }} is Node {{ inventory_hostname | localpv.rollout.node_name(hostvars) }}"
"""

RETURN = r"""
_value:
  description: The Kubernetes node name.
  type: str
"""

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming


def node_name(host, hostvars):
    """``host``'s Kubernetes node name, read from ``hostvars[host]``."""
    return naming.node_of(host, hostvars[host] if host in hostvars else None)


class FilterModule(object):

    def filters(self):
        return {"node_name": node_name}
