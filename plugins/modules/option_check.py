#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: option_check
short_description: Stop a run on an unknown localpv.rollout variable or node name, before any change
version_added: 0.1.0
description:
  - Looks at every variable of the host whose name starts with C(localpv_), C(disk_prep_), C(pv_register_),
    C(decommission_) or C(reclaim_) and fails, with the closest known name ("did you mean ..."), on any that is not an
    option of the collection. The known names are the options of the roles' C(meta/argument_specs.yml), the
    C(localpv_*) inventory variables they name and the variables the roles set themselves.
  - A misspelled variable is otherwise ignored by Ansible; for C(decommission_volume) instead of
    C(decommission_volumes) that widens a retirement from one disk to every volume of the node.
  - Checks every host of the play in one run (the variables of the host that runs it, and those of the others
    through C(hostvars)), so the roles run it once with C(run_once); the message names the hosts of each finding.
  - With O(nodes), also fails on each name that is neither a host of the play nor the C(localpv_node_name) of one.
  - Runs on the controller (an action plugin); it reads variables only.
author:
  - localpv.rollout contributors (@localpv)
attributes:
  check_mode:
    support: full
    description: Runs the same in check mode; it changes nothing in either mode.
  action:
    support: full
    description: Runs on the controller.
options:
  nodes:
    description: Node names the run is limited to (a list, or a comma-separated string).
    type: raw
  nodes_option:
    description: The variable O(nodes) came from, for the message.
    type: str
    default: nodes
"""

EXAMPLES = r"""
- name: Refuse unknown options and unknown node names, before any change
  localpv.rollout.option_check:
    nodes: "{{ decommission_nodes }}"
    nodes_option: decommission_nodes
"""

RETURN = r"""
unknown_variables:
  description: Variables with a prefix of the collection that are not its options.
  returned: always
  type: list
  elements: str
unknown_nodes:
  description: Names of O(nodes) that match no host of the play.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec=dict(nodes=dict(type="raw"), nodes_option=dict(type="str", default="nodes")),
                           supports_check_mode=True)
    module.fail_json(msg="localpv.rollout.option_check runs on the controller as an action plugin; it needs the "
                         "host's variables, which a module on the host does not see")


if __name__ == "__main__":
    main()
