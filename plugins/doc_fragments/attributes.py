# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The attributes every module of the collection documents (check_mode, diff_mode,
platform), said once; each module states its own support."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: Can run in check mode and return the changes it would make, without making them.
  diff_mode:
    description: Returns what changed (or would change in check mode) when run with C(--diff).
"""

    # Modules that run on the managed node and read or change its disks.
    NODE = r"""
attributes:
  platform:
    description: Runs on Linux nodes; it reads C(/sys), C(/proc) and the disks' tools.
    support: full
    platforms: posix
"""

    # Modules that run on the controller (delegate_to localhost) and talk to the API server.
    CONTROLLER = r"""
attributes:
  platform:
    description:
      - Runs wherever the API server can be reached, usually the controller (C(delegate_to) C(localhost)),
        with the Python library C(kubernetes).
    support: full
    platforms: posix
"""

    # Modules of the action group k8s (meta/runtime.yml).
    K8S_GROUP = r"""
attributes:
  action_group:
    description: Use C(group/localpv.rollout.k8s) in C(module_defaults) to set the connection options once.
    support: full
    membership:
      - localpv.rollout.k8s
"""

    # Modules that only read: check mode gives the same result, and there is nothing to diff.
    READ_ONLY = r"""
attributes:
  check_mode:
    support: full
    details: Reads only; the result is the same.
  diff_mode:
    support: none
"""
