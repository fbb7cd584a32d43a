# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A lock that does not come free names who holds it: a real flock held by a real
process, read back from /proc/locks."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


from ansible_collections.localpv.rollout.plugins.module_utils.host import openers


def test_the_holder_of_a_flock_is_found_by_pid_and_command(held_flock):
    path, proc = held_flock
    (holder,) = openers.lock_holders(path)
    assert holder["pid"] == proc.pid and holder["kind"] == "FLOCK"
    assert "localpv-lock-holder" in holder["command"]


def test_a_file_nobody_locks_has_no_holder(tmp_path):
    path = tmp_path / "free"
    path.write_text("x")
    assert openers.lock_holders(str(path)) == []
    assert "no holder" in openers.describe_lock_holders(str(path))
