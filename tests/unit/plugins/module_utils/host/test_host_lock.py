# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One run at a time on a host, and no host tool that outlives its run: real
processes on this machine, a lock file in a temporary directory."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices
from ansible_collections.localpv.rollout.plugins.module_utils.host import host_lock


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except IOError:
        return False


def wait_for(what, check, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def test_a_second_holder_waits_and_is_told_who_holds_the_lock(tmp_path):
    path = str(tmp_path / "run" / "localpv-rollout.lock")
    with host_lock.HostLock("node1", path=path) as first:
        assert open(path).read().strip() == str(os.getpid())
        # a tool started under the lock inherits it
        sleeper = subprocess.Popen(["sleep", "30"], pass_fds=host_lock.inherited_fds())
    try:
        # the module that took it is done, the tool still runs: the lock is still held
        with pytest.raises(host_lock.LockTimeout) as stop:
            with host_lock.HostLock("node1", path=path, timeout=1):
                pass
        assert first.fd is None
        assert "host node1: another run has held %s for 1 s" % path in stop.value.msg
        assert "pid %d (sleep 30)" % sleeper.pid in stop.value.msg
        assert "Nothing was changed" in stop.value.msg
        assert [h["pid"] for h in stop.value.holders] == [sleeper.pid]
    finally:
        sleeper.kill()
        sleeper.wait()
    with host_lock.HostLock("node1", path=path, timeout=1) as again:
        assert again.waited < 1


def test_a_disk_tool_left_running_is_named_as_such(tmp_path):
    path = str(tmp_path / "localpv-rollout.lock")
    tool = str(tmp_path / "mkfs.xfs")
    shutil.copy(shutil.which("sleep"), tool)
    with host_lock.HostLock("node2", path=path):
        proc = subprocess.Popen([tool, "30"], pass_fds=host_lock.inherited_fds())
    try:
        with pytest.raises(host_lock.LockTimeout) as stop:
            with host_lock.HostLock("node2", path=path, timeout=0.5):
                pass
        assert "pid %d is mkfs.xfs, still running (%s 30)" % (proc.pid, tool) in stop.value.msg
        assert stop.value.holders[0]["tool"] is True
    finally:
        proc.kill()
        proc.wait()


def test_the_tools_of_the_collection_get_the_lock_and_nothing_else(tmp_path):
    path = str(tmp_path / "localpv-rollout.lock")
    with host_lock.HostLock("node1", path=path) as lock:
        rc, out, _err = devices.run_command(["sh", "-c", "ls -l /proc/self/fd/%d" % lock.fd])
        assert rc == 0 and out.strip().endswith(path)
    assert host_lock.inherited_fds() == ()


CHILD = textwrap.dedent("""
    import subprocess, sys, time
    from ansible_collections.localpv.rollout.plugins.module_utils.host import host_lock
    assert host_lock.tether(interval=0.2) is not None
    tool = subprocess.Popen(["sleep", "300"])
    sys.stderr.write("%d\\n" % tool.pid)
    sys.stderr.flush()
    tool.wait()
""")


def test_a_module_whose_run_is_gone_takes_its_tools_with_it():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    module = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    tool_pid = int(module.stderr.readline())
    assert alive(tool_pid) and os.getpgid(tool_pid) == module.pid
    time.sleep(0.5)
    assert module.poll() is None and alive(tool_pid)
    # the controller goes away: the way back (the module's stdout) closes
    module.stdout.close()
    wait_for("the module to die", lambda: module.poll() is not None)
    assert module.returncode == -signal.SIGKILL
    wait_for("its tool to die", lambda: not alive(tool_pid))


def test_a_lock_handed_to_the_next_step_of_a_run_keeps_other_runs_waiting(tmp_path):
    """disk_prepare reserves the lock for its run's volume_mounts: another run that
    comes between them waits, the token's holder takes it at once and ends the
    reservation, and the waiting run then gets it."""
    import threading
    path = str(tmp_path / "localpv-rollout.lock")
    with host_lock.HostLock("node1", path=path) as first:
        token = first.reserve()
    assert token and os.path.exists(path + ".handoff")

    with pytest.raises(host_lock.LockTimeout) as stop:
        with host_lock.HostLock("node1", path=path, timeout=1):
            pass
    assert "host node1: another run (pid %d) handed %s on to its next step" % (os.getpid(), path) in stop.value.msg
    assert "Nothing was changed" in stop.value.msg and stop.value.holders == []
    # a wrong token is another run too
    with pytest.raises(host_lock.LockTimeout):
        with host_lock.HostLock("node1", path=path, timeout=0.5, handoff="0" * 32):
            pass

    order = []

    def other_run():
        with host_lock.HostLock("node1", path=path, timeout=20):
            order.append("other")
    waiter = threading.Thread(target=other_run)
    waiter.start()
    time.sleep(1.2)
    assert order == []          # the flock is free, the reservation holds the other run back
    with host_lock.HostLock("node1", path=path, timeout=1, handoff=token) as second:
        assert second.waited < 1
        assert not os.path.exists(path + ".handoff")
        order.append("next step")
        time.sleep(0.6)
    waiter.join(20)
    assert order == ["next step", "other"]


def test_a_reservation_left_by_a_killed_run_expires(tmp_path):
    path = str(tmp_path / "localpv-rollout.lock")
    with host_lock.HostLock("node1", path=path) as first:
        assert first.reserve(ttl=1)
    start = time.time()
    with host_lock.HostLock("node1", path=path, timeout=10):
        assert 0.5 <= time.time() - start < 5
    assert not os.path.exists(path + ".handoff")
    # and an unreadable one holds nobody back
    with open(path + ".handoff", "w") as handle:
        handle.write("{not json")
    with host_lock.HostLock("node1", path=path, timeout=1) as again:
        assert again.waited < 1
