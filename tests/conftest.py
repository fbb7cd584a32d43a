# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared pytest set-up.

Unit tests import the collection as ``ansible_collections.localpv.rollout`` the way
Ansible does; integration tests get the lab (a real API server and real nodes with
loop disks) through the ``lab`` fixture, brought up once per session.
"""

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lab_module():
    spec = importlib.util.spec_from_file_location("localpv_lab", os.path.join(REPO, "lab", "lab.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# where the lab keeps its cache and state: lab.py decides, in one place
LAB = _lab_module()
CACHE, STATE = LAB.CACHE, LAB.STATE


CHECKOUT_ID = hashlib.sha256(os.path.realpath(REPO).encode()).hexdigest()[:12]


def tool_env():
    """Where Ansible and the tools keep their files, as the Makefile sets them: the lab
    cache, one home per checkout. A bench or test started without make writes nothing
    under ~/.ansible or ~/.cache either. Variables already set are kept."""
    home = os.path.join(CACHE, "home", CHECKOUT_ID)
    wanted = {"ANSIBLE_HOME": os.path.join(home, "ansible"),
              "ANSIBLE_LOCAL_TEMP": os.path.join(home, "ansible", "tmp"),
              "XDG_CACHE_HOME": os.path.join(home, "cache"),
              "XDG_CONFIG_HOME": os.path.join(home, "config"),
              "KUBECACHEDIR": os.path.join(home, "kube-cache")}
    return {key: os.environ.get(key) or value for key, value in wanted.items()}


def _collections_root():
    """A directory holding ansible_collections/localpv/rollout -> this checkout."""
    root = os.environ.get("LOCALPV_COLLECTIONS") or os.path.join(CACHE, "collections", CHECKOUT_ID)
    link = os.path.join(root, "ansible_collections", "localpv", "rollout")
    if os.path.realpath(link) != os.path.realpath(REPO):
        root = tempfile.mkdtemp(prefix="localpv-collections-")
        link = os.path.join(root, "ansible_collections", "localpv", "rollout")
        os.makedirs(os.path.dirname(link))
        os.symlink(REPO, link)
    return root


COLLECTIONS = _collections_root()
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"
                    r"\s+skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)", re.M)


def recap(output):
    """PLAY RECAP counts per host, from ansible-playbook's default output."""
    keys = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")
    return {m.group(1): dict(zip(keys, map(int, m.groups()[1:]))) for m in _RECAP.finditer(output)}


class Lab:
    """The running lab, as lab/lab.py wrote it down in lab.json."""

    def __init__(self, info):
        self.info = info
        self.kubeconfig = info["kubeconfig"]
        self.inventory = info["inventory"]
        self.audit_log = info["audit_log"]
        self.nodes = info["nodes"]
        self.ssh_key = info["ssh_key"]
        self.bin_dir = info["bin_dir"]

    def node(self, host):
        return next(n for n in self.nodes if n["host"] == host)

    def env(self):
        env = dict(os.environ, **tool_env())
        env.update({
            "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS,
            "ANSIBLE_CONFIG": os.path.join(REPO, "ansible.cfg"),
            "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1",
            "KUBECONFIG": self.kubeconfig,
            "PATH": os.pathsep.join([os.path.dirname(sys.executable), self.bin_dir, env.get("PATH", "")]),
        })
        return env

    def ssh(self, host, command, check=False, timeout=120):
        """Run a shell command on a lab node as root, over SSH like Ansible does."""
        node = self.node(host)
        args = ["ssh", "-i", self.ssh_key, "-p", str(node["ssh_port"]),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "root@127.0.0.1", command]
        return subprocess.run(args, capture_output=True, text=True, check=check, timeout=timeout)

    def playbook(self, playbook, *args, extra_vars=None, inventory=None, env=None, timeout=900):
        """Run ansible-playbook against the lab; the result carries ``.recap`` per host.
        ``env`` adds to (or overrides) the lab's environment."""
        cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
               "-i", inventory or self.inventory]
        if extra_vars:
            cmd += ["-e", json.dumps(extra_vars)]
        cmd += list(args) + [playbook if os.path.isabs(playbook) else os.path.join(REPO, playbook)]
        res = subprocess.run(cmd, capture_output=True, text=True, env=dict(self.env(), **(env or {})), cwd=REPO,
                             timeout=timeout, check=False)
        res.recap = recap(res.stdout)
        return res

    def wipe_disks(self, *hosts, only=None):
        """Blank lab disks on ``hosts`` (all nodes when none given; only the disk paths of
        ``only`` when given): unmounted, out of fstab, no partitions, no signatures. The
        one way tests start from blank disks."""
        for node in self.nodes:
            if not hosts or node["host"] in hosts:
                LAB.wipe_disks(node, only)

    def kubectl(self, *args, check=True, stdin=None):
        return subprocess.run([os.path.join(self.bin_dir, "kubectl"), "--kubeconfig", self.kubeconfig]
                              + list(args), capture_output=True, text=True, check=check, input=stdin)

    def audit_events(self, since=None):
        """Audit events (dicts) of the API server, optionally only those at or after
        ``since`` (an RFC 3339 string as in the events' stageTimestamp)."""
        events = []
        with open(self.audit_log) as f:
            for line in f:
                ev = json.loads(line)
                if since is None or ev.get("stageTimestamp", "") >= since:
                    events.append(ev)
        return events


@pytest.fixture(scope="session")
def lab():
    """The lab, brought up once per session (a no-op when it already runs)."""
    up = subprocess.run([sys.executable, os.path.join(REPO, "lab", "lab.py"), "up"],
                        capture_output=True, text=True, check=False)
    if up.returncode != 0:
        pytest.fail("the lab did not come up:\n%s\n%s" % (up.stdout, up.stderr[-4000:]))
    with open(os.path.join(STATE, "lab.json")) as f:
        return Lab(json.load(f))


@pytest.fixture(scope="session")
def kube(lab):
    """A kubernetes.client.ApiClient authenticated as the lab's admin."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=lab.kubeconfig)
    yield api
    api.close()


def pytest_collection_modifyitems(config, items):
    # the integration tests share one lab; mark them so `-m "not integration"` works
    for item in items:
        if os.sep + "integration" + os.sep in str(item.fspath):
            item.add_marker(pytest.mark.integration)


# Fixtures shared by unit tests of more than one folder live here: a conftest.py below
# tests/ would take the name ``conftest`` from this one, which test modules import
# (``from conftest import REPO``).

_HOLD_FLOCK = ("import fcntl, sys, time; f = open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX); "
               "print('held', flush=True); time.sleep(60)")


@pytest.fixture
def held_flock(tmp_path):
    """A file with an flock held by a real process of its own: (path, the process);
    the process's command line carries ``localpv-lock-holder``."""
    path = tmp_path / "disk.img"
    path.write_bytes(b"\0" * 4096)
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_FLOCK, str(path), "localpv-lock-holder"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield str(path), proc
    proc.kill()
    proc.wait()


@pytest.fixture
def local_run():
    """A ``run`` for module_utils that runs the command on this machine: (rc, stdout, stderr)."""
    def run(argv):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr
    return run
