# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A lock that does not come free names who holds it: a real flock held by a real
process, read back from /proc/locks."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import subprocess
import sys

import pytest

from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import writes as plan_writes
from ansible_collections.localpv.rollout.plugins.module_utils.host import openers

HOLD = "import fcntl, sys, time; f = open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); " \
       "time.sleep(60)"


@pytest.fixture
def held(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(b"\0" * 4096)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), "localpv-lock-holder"], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    yield str(path), proc
    proc.kill()
    proc.wait()


def test_the_holder_of_a_flock_is_found_by_pid_and_command(held):
    path, proc = held
    (holder,) = openers.lock_holders(path)
    assert holder["pid"] == proc.pid and holder["kind"] == "FLOCK"
    assert "localpv-lock-holder" in holder["command"]


def test_a_disk_lock_that_times_out_names_the_holder(held):
    path, proc = held
    with pytest.raises(plan_writes.PrepareError) as info:
        plan_writes.lock_disk(path, timeout=0.3)
    # the command line is cut at 60 characters, wherever the interpreter lives
    command = ("%s -c %s" % (sys.executable, HOLD))[:60]
    assert "held by pid %d (%s), FLOCK" % (proc.pid, command) in str(info.value), str(info.value)


def test_a_file_nobody_locks_has_no_holder(tmp_path):
    path = tmp_path / "free"
    path.write_text("x")
    assert openers.lock_holders(str(path)) == []
    assert "no holder" in openers.describe_lock_holders(str(path))
