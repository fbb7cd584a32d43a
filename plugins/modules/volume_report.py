#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: volume_report
short_description: The report of a run, per node and volume, as data, a table that fits a width, and Markdown
version_added: 0.1.0
description:
  - Puts together what a run made (or, in check mode, would make) per node and volume - the device by its
    stable id, its size, the filesystem, the mount, the PV with its capacity, phase and claim, and what the
    run did to the PV - from the facts the roles already have. It talks to no host and no API server.
  - The roles M(localpv.rollout.pv_register), M(localpv.rollout.decommission) and M(localpv.rollout.reclaim)
    print RV(table) once at the end of a run and can write RV(report) as JSON and RV(markdown) to files.
author:
  - localpv.rollout contributors (@localpv)
extends_documentation_fragment:
  - localpv.rollout.attributes
attributes:
  check_mode:
    support: full
    details: In check mode the report is the plan (O(planned) defaults to true).
  diff_mode:
    support: none
  action:
    support: full
    description: Runs on the controller (an action plugin), in the process of the play; nothing is sent to a host.
  platform:
    description: The controller.
    support: full
    platforms: posix
options:
  kind:
    description: Which run the report is of.
    type: str
    choices: [site, decommission, reclaim]
    default: site
  hosts:
    description:
      - For O(kind=site), per node the volumes C(localpv.rollout.disk_prep) published (C(localpv_volumes)).
    type: list
    elements: dict
    default: []
    suboptions:
      node:
        description: The Kubernetes node name.
        type: str
        required: true
      volumes:
        description: The node's published volumes.
        type: list
        elements: dict
        default: []
      status:
        description:
          - V(unreachable) for a host of the run that was not reached over SSH, V(failed) for one that failed before
            its volumes were known. The table lists it with that status instead of leaving it out.
        type: str
        choices: [failed, unreachable]
  pvs:
    description:
      - The PVs as M(localpv.rollout.local_pv_info) returns them (each names its C(node)).
      - For O(kind=site), the PVs of the nodes in O(hosts); for the other kinds, the PVs the run retires or
        recycles.
    type: list
    elements: dict
    default: []
  nodes:
    description: For O(kind=decommission) and O(kind=reclaim), the nodes to list, also when none of O(pvs) is on them.
    type: list
    elements: str
    default: []
  changes:
    description:
      - For O(kind=site), the result of M(localpv.rollout.local_pv) with C(return_names=true) (its C(created),
        C(updated), C(taken_over), C(replaced), C(deleted) lists and C(kept_bound)). Each PV named there gets its
        action in its row; the PVs pruned, taken over, replaced or kept bound are also named in C(report.writes).
    type: dict
    default: {}
  action:
    description: For O(kind=decommission) and O(kind=reclaim), what the run does to each PV, shown per row.
    type: str
    default: none
  planned:
    description: Whether the report is a plan (nothing was changed). Defaults to true in check mode.
    type: bool
  width:
    description: Longest line of RV(table), in characters. Long cells are cut and the cut is marked with C(~).
    type: int
    default: 100
notes:
  - The table groups rows under a C([node]) line, names the mounts' common directory once in its title, sets
    the columns one space apart when two do not fit, and shows an C(ACTION) column only when the rows differ
    in what the run does (or would do) to their PV; the summary line counts the actions.
seealso:
  - module: localpv.rollout.local_pv_info
"""

EXAMPLES = r"""
- name: Put together the report of the PVs of node1
  localpv.rollout.volume_report:
    kind: site
    hosts: [{node: node1, volumes: "{{ hostvars['node1'].localpv_volumes }}"}]
    pvs: "{{ node1_pvs.pvs }}"
    width: 92
  register: report

- name: Show it
  ansible.builtin.debug:
    msg: "{{ report.table }}"
"""

RETURN = r"""
report:
  description: The report as data (what the roles write as JSON).
  returned: always
  type: dict
  sample:
    kind: site
    planned: false
    nodes:
      - node: node1
        volumes:
          - volume: xfs0
            device: nvme-eui.0025385b71b0a1c2
            size: 1073741824
            fstype: xfs
            mount: /mnt/disks/xfs0
            pv: local-node1-xfs0
            capacity: 1063256064
            phase: Available
            claim: null
            action: create
    totals: {nodes: 1, volumes: 1, phases: {Available: 1}, actions: {create: 1}}
    writes:
      - {write: pruned, pv: local-node1-old, node: null, claim: null,
         why: "no volume of the inventory wants it and it was unbound; deleted"}
lines:
  description:
    - The table as lines, none longer than O(width); then one line per PV pruned, taken over, replaced or kept
      bound (C(report.writes)), never cut, so each PV written can be found in the output.
  returned: always
  type: list
  elements: str
  sample:
    - Local volumes per node, mounts under /mnt/disks/
    - "VOLUME  DEVICE                     SIZE  FS   MOUNT  PV                CAPACITY  PHASE      CLAIM  ACTION"
    - "[node1]"
    - "xfs0    nvme-eui.0025385b71b0a1c2  1Gi   xfs  xfs0   local-node1-xfs0  1014Mi    Available  -      create"
    - "1 node(s), 1 volume(s): 1 Available; create 1"
table:
  description: RV(lines) joined with newlines.
  returned: always
  type: str
  sample: "Local volumes per node, mounts under /mnt/disks/\nVOLUME  DEVICE ..."
markdown:
  description: The report as Markdown, a table per node, no cell cut.
  returned: always
  type: str
  sample: "# Local volumes per node\n\n## node1\n\n| Volume | Device | ..."
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localpv.rollout.plugins.module_utils.common import report as rep


def main():
    module = AnsibleModule(argument_spec=rep.ARGUMENT_SPEC, supports_check_mode=True)
    module.exit_json(**rep.report_result(module.params, module.check_mode))


if __name__ == "__main__":
    main()
