# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What stops a run before its first change, proven on the lab: the dry run on a
blank fleet (the API server's audit log shows no write, the disks' checksums do not
change), the preflight with an identity that lacks one right, typos in options and
node names, and the tags that split a site run into its host and API halves.

Each test makes the state it needs: blank disks through the lab's wipe, and PVs,
ServiceAccounts and workloads of its own that it removes afterwards."""

import copy
import hashlib
import os
import subprocess

import pytest
import yaml
from kubernetes import client

from pv_helpers import forget_unbound_pvs, now_rfc3339
from test_decommission_support import ROOT, Scenario, audit_writes
from test_local_pv_site import expected_volumes
# the fixture that makes a ServiceAccount bound to the rules it is given
from test_rbac import identity  # noqa: F401  # pylint: disable=unused-import

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RBAC = os.path.join(REPO, "deploy", "rbac")
PV_ROLE = "deploy/rbac/localpv-rollout-clusterrole.yaml"
RETIRE_ROLE = "deploy/rbac/localpv-rollout-retire-clusterrole.yaml"


@pytest.fixture
def site_vars(lab):
    """What `make site` runs with (the lab's site-vars.yml); prune is left off, as other
    tests make PVs of their own on the same nodes."""
    with open(os.path.join(os.path.dirname(lab.inventory), "site-vars.yml")) as f:
        return dict(yaml.safe_load(f), pv_register_prune=False)


# --- evidence: disks and the audit log -------------------------------------------------

def image_digest(image):
    """sha256 over every data extent (offset and bytes) of a sparse disk image: the
    whole disk, holes read as the zeros they are, without reading gigabytes of them."""
    digest = hashlib.sha256()
    with open(image, "rb") as handle:
        fd, pos = handle.fileno(), 0
        size = os.fstat(fd).st_size
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:    # ENXIO: only a hole is left
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            handle.seek(start)
            digest.update(b"@%d:" % start)
            left = end - start
            while left:
                chunk = handle.read(min(left, 1 << 20))
                digest.update(chunk)
                left -= len(chunk)
            pos = end
    return digest.hexdigest()


def disk_checksums(lab, hosts=None):
    """{disk: digest} of the whole lab disks of ``hosts`` (all nodes by default), after
    the page cache of the loop devices is written to their images."""
    subprocess.run(["sync"], check=True)
    return dict((d["path"], image_digest(d["image"])) for n in lab.nodes if not hosts or n["host"] in hosts
                for d in n["disks"])


def settle(lab, host):
    """Freeze and thaw each filesystem of a lab disk mounted under the mount root of
    ``host``: a freshly mounted xfs covers its log by itself within about a minute of
    going idle, a write of the kernel's own that would change the disk's digest in the
    middle of a test. The freeze writes it now; an idle filesystem writes nothing after."""
    mounts = lab.ssh(host, "findmnt -rn -o TARGET,SOURCE | awk '$1 ~ \"^%s/\" && $2 ~ \"^/dev/loop\" {print $1}'"
                     % ROOT).stdout.split()
    for mount in mounts:
        lab.ssh(host, "fsfreeze -f %s && fsfreeze -u %s" % (mount, mount), check=True)


def host_state(lab, hosts=None):
    """fstab and the mounts under /mnt/disks of each node: what a host step would change."""
    return dict((n["host"], lab.ssh(n["host"], "cat /etc/fstab; findmnt -rn -o TARGET,SOURCE | grep %s || true"
                                    % ROOT).stdout) for n in lab.nodes if not hosts or n["host"] in hosts)


def real_writes_by_us(lab, since):
    """Writes our modules sent since ``since`` that were not server-side dry runs."""
    return [e for e in audit_writes(lab, since) if (e.get("userAgent") or "").startswith("localpv.rollout")
            and "dryRun=All" not in (e.get("requestURI") or "")]


def text(res):
    return " ".join((res.stdout + res.stderr).split())


@pytest.fixture
def blank_fleet(lab, kube):
    """Every lab node with blank disks and no PV of the site layout; the same again afterwards."""
    names = set(naming.pv_name(node, name) for node, name in expected_volumes(lab))

    def clear():
        lab.wipe_disks()
        forget_unbound_pvs(kube, names)
    clear()
    yield names
    clear()


# --- the dry run ------------------------------------------------------------------------

def test_check_mode_on_a_blank_fleet_prints_the_disk_plan_and_the_pvs_and_writes_nothing(
        lab, kube, blank_fleet, site_vars):
    before, hosts_before = disk_checksums(lab), host_state(lab)
    since = now_rfc3339()
    res = lab.playbook("playbooks/site.yml", "--check", "--diff", extra_vars=site_vars)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
    out = res.stdout
    for (node, name), (host, disk) in expected_volumes(lab).items():
        assert "%s/%s" % (ROOT, name) in out, (host, name)                  # the disk plan
        assert naming.pv_name(node, name) in out, (node, name)                   # the PV that would be made
    assert disk_checksums(lab) == before and host_state(lab) == hosts_before
    assert real_writes_by_us(lab, since) == []
    existing = set(pv.metadata.name for pv in client.CoreV1Api(kube).list_persistent_volume().items)
    assert existing & blank_fleet == set()


def test_check_mode_when_a_volume_is_added_to_a_running_node_writes_nothing(lab, kube, blank_fleet):
    host = "node1"
    info = lab.node(host)
    first = [{"name": "ssd0", "device": info["disks"][0]["path"], "fstype": "xfs"}]
    added = first + [{"name": "data", "device": info["disks"][1]["path"], "partitions": 2, "fstype": "ext4"}]
    ev = {"localpv_disks": first, "pv_register_prune": False}
    done = lab.playbook("playbooks/site.yml", "--limit", host, extra_vars=ev)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    settle(lab, host)
    before, hosts_before = disk_checksums(lab, [host]), host_state(lab, [host])
    since = now_rfc3339()
    res = lab.playbook("playbooks/site.yml", "--limit", host, "--check", "--diff",
                       extra_vars={"localpv_disks": added, "pv_register_prune": False})
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
    node = info["node_name"]
    for name in ("data-1", "data-2"):
        assert naming.pv_name(node, name) in res.stdout and "%s/%s" % (ROOT, name) in res.stdout
    assert disk_checksums(lab, [host]) == before and host_state(lab, [host]) == hosts_before
    assert real_writes_by_us(lab, since) == []


# --- the preflight ----------------------------------------------------------------------

def shipped_rules(*files):
    rules = []
    for name in files:
        with open(os.path.join(REPO, name)) as f:
            rules += yaml.safe_load(f)["rules"]
    return rules


def without(rules, verb, resource):
    out = copy.deepcopy(rules)
    for rule in out:
        if resource in rule["resources"] and verb in rule["verbs"]:
            rule["verbs"].remove(verb)
    return [r for r in out if r["verbs"]]


def kubeconfig_for(tmp_path, auth):
    """A kubeconfig file with the token of a test identity, as a user would have one."""
    path = tmp_path / "kubeconfig-sa"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "lab", "cluster": {"server": auth["host"], "certificate-authority": auth["ca_cert"]}}],
        "users": [{"name": "sa", "user": {"token": auth["api_key"]}}],
        "contexts": [{"name": "sa", "context": {"cluster": "lab", "user": "sa"}}]}))
    return str(path)


@pytest.fixture
def scenario(lab, kube, tmp_path):
    s = Scenario(lab, kube, tmp_path)
    yield s
    s.cleanup()


@pytest.mark.parametrize("verb,resource,role_file", [
    ("delete", "persistentvolumes", PV_ROLE),
    ("create", "pods/eviction", RETIRE_ROLE),
    ("patch", "nodes", RETIRE_ROLE),
])
def test_decommission_without_one_right_stops_before_any_pod_volume_or_claim_is_touched(
        lab, kube, tmp_path, identity, scenario, verb, resource, role_file):  # noqa: F811
    s = scenario
    a = s.tag + "-a"
    (pv,) = s.setup([{"name": a, "bind": "/data/%s/%s" % (s.tag, a), "capacity": "1G"}])
    s.deployment("db", "db")
    s.bound_claims(1)
    kubeconfig = kubeconfig_for(tmp_path, identity(without(shipped_rules(PV_ROLE, RETIRE_ROLE), verb, resource)))
    since = now_rfc3339()
    res = s.decommission(decommission_kubeconfig=kubeconfig)
    assert res.returncode != 0
    msg = " ".join((res.failed_msg(s.host) or res.failed_msg("node1") or "").split())
    assert "may not %s %s" % (verb, resource) in msg and role_file in msg, msg
    assert "Nothing was changed" in msg or "nothing was changed" in msg
    # nothing happened: the pod runs, the volume is mounted, the claim and the PV are there
    assert s.mounted(a) and s.fstab_has(a)
    assert [p.metadata.name for p in s.pvs()] == [pv]
    assert s.core.read_namespaced_persistent_volume_claim("db", s.ns).metadata.deletion_timestamp is None
    assert [p.status.phase for p in s.core.list_namespaced_pod(s.ns).items] == ["Running"]
    assert s.core.read_node(s.node_name).spec.unschedulable in (None, False)
    assert [e for e in audit_writes(lab, since) if (e.get("userAgent") or "").startswith("localpv.rollout")
            or e["objectRef"].get("namespace") == s.ns] == []
    ran = res.ran_on(s.host)
    assert "Look for processes that still hold the volumes" not in ran and "Plan what goes away - PVs, claims, " \
        "pods and their controllers" not in ran, ran


def test_reclaim_without_the_right_to_patch_pvs_stops_before_the_host(lab, tmp_path, identity, scenario):  # noqa: F811
    s = scenario
    kubeconfig = kubeconfig_for(tmp_path, identity(without(shipped_rules(PV_ROLE), "patch", "persistentvolumes")))
    res = s.reclaim(reclaim_kubeconfig=kubeconfig)
    assert res.returncode != 0
    msg = " ".join((res.failed_msg(s.host) or res.failed_msg("node1") or "").split())
    assert "may not patch persistentvolumes" in msg and PV_ROLE in msg, msg
    assert "Find the Released PVs of this node" not in res.ran_on(s.host)


def test_site_without_the_right_to_create_pvs_stops_before_any_disk_is_touched(
        lab, tmp_path, identity, blank_fleet, site_vars):  # noqa: F811
    kubeconfig = kubeconfig_for(tmp_path, identity(without(shipped_rules(PV_ROLE), "create", "persistentvolumes")))
    before, hosts_before = disk_checksums(lab), host_state(lab)
    res = lab.playbook("playbooks/site.yml", extra_vars=dict(site_vars, localpv_kubeconfig=kubeconfig))
    assert res.returncode != 0
    said = text(res)
    assert "may not create persistentvolumes" in said and PV_ROLE in said, res.stdout[-4000:]
    assert "kubeconfig %s" % kubeconfig in said
    assert disk_checksums(lab) == before and host_state(lab) == hosts_before
    assert "Plan the disks of this host" not in res.stdout


def test_a_kubeconfig_path_that_does_not_exist_is_named_before_any_disk_is_touched(
        lab, tmp_path, blank_fleet, site_vars):
    missing = str(tmp_path / "no-such-kubeconfig")
    before = disk_checksums(lab)
    res = lab.playbook("playbooks/site.yml", extra_vars=dict(site_vars, localpv_kubeconfig=missing))
    assert res.returncode != 0
    assert "the kubeconfig file %s does not exist" % missing in text(res), res.stdout[-4000:]
    assert disk_checksums(lab) == before and "Plan the disks of this host" not in res.stdout


# --- typos ------------------------------------------------------------------------------

def test_an_unknown_node_in_decommission_nodes_stops_the_run(lab, scenario):
    since = now_rfc3339()
    res = scenario.decommission(decommission_nodes=["node9"])
    assert res.returncode != 0
    msg = " ".join((res.failed_msg() or "").split())
    assert "decommission_nodes names node9" in msg and "did you mean" in msg, res.text[-3000:]
    assert real_writes_by_us(lab, since) == []


def test_a_misspelled_option_stops_a_decommission_before_it_widens_to_the_whole_node(lab, scenario):
    s = scenario
    a, b = s.tag + "-a", s.tag + "-b"
    s.setup([{"name": a, "bind": "/data/%s/%s" % (s.tag, a), "capacity": "1G"},
             {"name": b, "bind": "/data/%s/%s" % (s.tag, b), "capacity": "1G"}])
    since = now_rfc3339()
    res = s.decommission(decommission_volume=a)
    assert res.returncode != 0
    msg = " ".join((res.failed_msg() or "").split())
    assert "decommission_volume (did you mean decommission_volumes?)" in msg, res.text[-3000:]
    assert len(s.pvs()) == 2 and s.mounted(a) and s.mounted(b)
    assert real_writes_by_us(lab, since) == []


def test_unknown_reclaim_nodes_and_misspelled_site_options_stop_the_run(lab, scenario, blank_fleet, site_vars):
    res = scenario.reclaim(reclaim_nodes="node2,nod3")
    assert res.returncode != 0
    assert "reclaim_nodes names nod3" in " ".join((res.failed_msg() or "").split()), res.text[-3000:]
    before = disk_checksums(lab)
    res = lab.playbook("playbooks/site.yml", extra_vars=dict(site_vars, localpv_allow_wype=True))
    assert res.returncode != 0
    assert "localpv_allow_wype (did you mean localpv_allow_wipe?)" in text(res), res.stdout[-3000:]
    assert disk_checksums(lab) == before


# --- tags -------------------------------------------------------------------------------

def test_tags_split_a_site_run_into_the_disks_and_the_pvs(lab, kube, blank_fleet):
    host = "node1"
    info = lab.node(host)
    disks = [{"name": "ssd0", "device": info["disks"][0]["path"], "fstype": "xfs"},
             {"name": "vol1", "bind": "/data/k8s/localpv/vol1", "capacity": "1G"}]
    ev = {"localpv_disks": disks, "pv_register_prune": False}
    names = set(naming.pv_name(info["node_name"], d["name"]) for d in disks)
    since = now_rfc3339()
    res = lab.playbook("playbooks/site.yml", "--limit", host, "--tags", "localpv_disks", extra_vars=ev)
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-3000:]
    assert lab.ssh(host, "findmnt -rn %s/ssd0" % ROOT).returncode == 0
    assert real_writes_by_us(lab, since) == []
    assert not names & set(pv.metadata.name for pv in client.CoreV1Api(kube).list_persistent_volume().items)

    # A mounted xfs writes to its disk by itself (its log is covered some 30 s after the
    # last change): frozen, its disk changes only if something writes to the device.
    mount_point = "%s/ssd0" % ROOT
    assert lab.ssh(host, "fsfreeze --freeze %s" % mount_point).returncode == 0
    try:
        before, hosts_before = disk_checksums(lab, [host]), host_state(lab, [host])
        res = lab.playbook("playbooks/site.yml", "--limit", host, "--tags", "localpv_pvs", extra_vars=ev, timeout=600)
        after = disk_checksums(lab, [host])
    finally:
        lab.ssh(host, "fsfreeze --unfreeze %s" % mount_point)
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-3000:]
    assert "Plan the disks of this host" not in res.stdout and "Mount volumes" not in res.stdout
    assert after == before and host_state(lab, [host]) == hosts_before
    made = dict((pv.metadata.name, pv) for pv in client.CoreV1Api(kube).list_persistent_volume().items
                if pv.metadata.name in names)
    assert set(made) == names
    assert made[naming.pv_name(info["node_name"], "ssd0")].spec.local.path == "%s/ssd0" % ROOT


def test_one_option_check_names_a_typo_set_on_any_host_of_the_play(lab, tmp_path):
    """The check runs once for the play, so it must read the other hosts' variables
    too: a typo in one host's inventory stops the run, naming that host."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {
        "a": {"ansible_connection": "local"},
        "b": {"ansible_connection": "local", "localpv_dsks": []},
        "c": {"ansible_connection": "local"}}}}))
    play = tmp_path / "check.yml"
    play.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": [
        {"name": "Check", "localpv.rollout.option_check": {}, "run_once": True},
        {"name": "After", "ansible.builtin.debug": {"msg": "ran"}}]}]))
    res = lab.playbook(str(play), inventory=str(inventory))
    assert res.returncode != 0
    out = " ".join(text(res).split())
    assert "b: this is not an option of localpv.rollout: localpv_dsks (did you mean localpv_disks?)" in out, out[-3000:]
    assert "TASK [After]" not in res.stdout and "a: this" not in out and "a, b" not in out
