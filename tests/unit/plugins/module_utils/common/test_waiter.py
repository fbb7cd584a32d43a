# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting with a deadline: decommission and reclaim poll the API with it."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import pytest

from ansible_collections.localpv.rollout.plugins.module_utils.common import waiter


def test_the_waiter_gives_up_at_the_deadline_naming_what_is_left():
    now = [0.0]
    seen = []
    wait = waiter.Waiter(timeout=3, interval=1, sleep=lambda s: now.__setitem__(0, now[0] + s),
                         clock=lambda: now[0], progress=lambda what, left, waited: seen.append(len(left)))
    with pytest.raises(waiter.WaitTimeout) as info:
        wait.until_done(lambda: ["pv-a"], "PVs deleted", lambda x: "PV " + x)
    assert "PVs deleted" in info.value.msg and "PV pv-a" in info.value.msg and info.value.left == ["pv-a"]
    assert wait.polls == 5 and seen == [1] * 5


def test_the_waiter_returns_as_soon_as_nothing_is_left():
    left = [["a", "b"], ["b"], []]
    wait = waiter.Waiter(timeout=60, interval=0, sleep=lambda s: None)
    wait.until_done(lambda: left.pop(0))
    assert wait.polls == 3
