# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The capacity a volume's PV declares: the filesystem's size, or the device's."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


from plan_recordings import GIB

from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import capacity as plan_capacity


def test_capacity_rule():
    vol = {"mode": "filesystem", "capacity_from": "filesystem", "size": 10 * GIB}

    class Stat:
        f_blocks, f_frsize = 1000, 4096
    assert plan_capacity.capacity(vol, Stat) == 4096000
    assert plan_capacity.capacity(vol, None) is None
    assert plan_capacity.capacity(dict(vol, capacity_from="device"), Stat) == 10 * GIB
    assert plan_capacity.capacity(dict(vol, mode="block"), None) == 10 * GIB
