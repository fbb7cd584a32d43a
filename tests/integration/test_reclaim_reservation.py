# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""reclaim.yml reserves a PV (one conditional write) before its host erases
anything, and releases it only after the wipe. A new tenant that binds the PV at
any step boundary keeps its bytes; every message says what was wiped.

The new tenant is made the way a cluster makes one: its claim binds the PV, and
the kubelet's bind mount of the volume into the pod's directory is made on the
node (kwok runs no kubelet), through which the tenant writes its file."""

import os
import threading

import pytest
import yaml
from kubernetes import client

import test_rbac
from pv_helpers import now_rfc3339, wait_until
from test_decommission_support import ROOT, Scenario, audit_writes
from test_reclaim import bind, ok, rebind, release

from ansible_collections.localpv.rollout.plugins.module_utils.kube import workloads

HOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hooks")
identity = test_rbac.identity
RETIRE_ROLE_FILE = test_rbac.ROLE_FILE.replace("clusterrole.yaml", "retire-clusterrole.yaml")


def retire_rules():
    with open(RETIRE_ROLE_FILE) as f:
        return yaml.safe_load(f)["rules"]


LISTING = "Find the Released PVs of this node"
RESERVATION = "Reserve the PVs for the wipe, only if each is still Released by the claim seen at the listing"
REREAD = "Check that the reservations are still ours, right before the wipe"
WIPE = "Wipe the volumes' data on the host"
RELEASE = "Remove the reservations so that the PVs are Available again"


@pytest.fixture
def scenario(lab, kube, tmp_path):
    s = Scenario(lab, kube, tmp_path)
    yield s
    s.sh("for m in $(findmnt -rn -o TARGET | grep '^/var/lib/kubelet/pods/%s'); do umount $m; done; "
         "rm -rf /var/lib/kubelet/pods/%s" % (s.tag, s.tag), check=False)
    s.cleanup()


def ours(events):
    return [e for e in events if (e.get("userAgent") or "").startswith("localpv.rollout")]


def tenant_moves_in(s, pv, a):
    """A new claim binds ``pv`` (its claimRef taken off first, as an admin would),
    the kubelet mounts the volume into the tenant's pod directory, and the tenant
    writes 1 MiB through it. Returns the sha256 of what it wrote."""
    s.core.patch_persistent_volume(pv, {"spec": {"claimRef": None}})
    assert rebind(s, "tenant") == pv
    pod = s.core.read_namespaced_pod("tenant", s.ns)
    target = "/var/lib/kubelet/pods/%s-%s/volumes/kubernetes.io~local-volume/%s" % (s.tag, pod.metadata.uid, pv)
    s.sh("mkdir -p %s && mount --bind %s/%s %s" % (target, ROOT, a, target))
    s.sh("head -c 1048576 /dev/urandom > %s/tenant.bin && sync" % target)
    return s.sh("sha256sum < %s/%s/tenant.bin" % (ROOT, a)).stdout.split()[0]


@pytest.mark.parametrize("boundary", [LISTING, RESERVATION, REREAD, WIPE, RELEASE],
                         ids=["listing", "reservation", "re-read", "wipe", "release"])
def test_a_tenant_bound_at_any_step_of_reclaim_keeps_its_bytes(lab, scenario, tmp_path, boundary):
    s = scenario
    a = s.tag + "-a"
    s.setup([bind(s, a)])
    pv = release(s, "first")
    s.sh("echo old > %s/%s/old-tenant-file" % (ROOT, a))
    pause = tmp_path / "pause"
    pause.mkdir()
    env = {"ANSIBLE_CALLBACK_PLUGINS": HOOKS, "ANSIBLE_CALLBACKS_ENABLED": "lpvt_pause",
           "LPVT_PAUSE_AT": boundary, "LPVT_PAUSE_DIR": str(pause)}
    result, since = {}, now_rfc3339()
    run = threading.Thread(target=lambda: result.update(res=s.reclaim(env=env)))
    run.start()
    try:
        wait_until("reclaim paused before %r" % boundary, (pause / "reached").exists, timeout=600)
        written = tenant_moves_in(s, pv, a)
    finally:
        (pause / "go").touch()
        run.join(900)
    res = result["res"]
    # the tenant's bytes, read on the host, are what it wrote
    assert s.sh("sha256sum < %s/%s/tenant.bin" % (ROOT, a)).stdout.split()[0] == written
    after = s.core.read_persistent_volume(pv)
    assert after.status.phase == "Bound" and after.spec.claim_ref.name == "tenant"
    writes = [e for e in ours(audit_writes(lab, since)) if (e.get("objectRef") or {}).get("name") == pv]
    msg = res.failed_msg(s.host) or ""
    if boundary == LISTING:
        ok(res, s.host)
        assert "nothing to reclaim" in res.text and writes == []
        # the old tenant's file was never wiped either: the PV was not Released any more at the listing
        assert s.sh("cat %s/%s/old-tenant-file" % (ROOT, a)).stdout.strip() == "old"
        return
    assert res.returncode != 0
    if boundary == RESERVATION:
        assert "PV %s changed since the listing" % pv in msg and "nothing is wiped" in msg, msg
        assert [e["responseStatus"]["code"] for e in writes] == [422]
    elif boundary == REREAD:
        assert "the reservation of %s (claim %s/tenant) was taken away" % (pv, s.ns) in msg
        assert "nothing was wiped" in msg
    elif boundary == WIPE:
        assert "is still in use" in msg and "/var/lib/kubelet/pods/" in msg, msg
        assert "Nothing was wiped by this call" in msg
    if boundary != RELEASE:
        # nothing was wiped: the old tenant's file is still there
        assert s.sh("cat %s/%s/old-tenant-file" % (ROOT, a)).stdout.strip() == "old"
        return
    # the release found the tenant's claim and says what the run had wiped before it moved in
    assert "PV %s is still bound: its claim %s/tenant exists" % (pv, s.ns) in msg, msg
    assert "Its volume was already wiped by this run (%s/%s: 1 entries were removed (files))" % (ROOT, a) in msg, msg
    assert s.sh("ls %s/%s" % (ROOT, a)).stdout.split() == ["tenant.bin"]


def test_the_pv_is_reserved_before_the_wipe_and_released_after_it(lab, scenario):
    """The audit log's order: one reservation write, the host wipe, one release write."""
    s = scenario
    a = s.tag + "-a"
    s.setup([bind(s, a)])
    pv = release(s, "first")
    s.sh("echo secret > %s/%s/file" % (ROOT, a))
    since = now_rfc3339()
    res = ok(s.reclaim(), s.host)
    writes = [e for e in ours(audit_writes(lab, since)) if (e.get("objectRef") or {}).get("name") == pv]
    assert [(e["verb"], e["responseStatus"]["code"]) for e in writes] == [("patch", 200), ("patch", 200)]
    start, end = res.times(WIPE, s.host)
    assert writes[0]["stageTimestamp"] < start and end < writes[1]["stageTimestamp"]
    wiped = res.result(WIPE, s.host)["volumes"]
    assert [w["said"] for w in wiped] == ["%s/%s: 1 entries were removed (files)" % (ROOT, a)]
    wait_until("PV Available", lambda: s.core.read_persistent_volume(pv).status.phase == "Available")


def test_a_reservation_left_by_a_killed_run_is_taken_over_by_the_next_run(lab, scenario):
    s = scenario
    a = s.tag + "-a"
    s.setup([bind(s, a)])
    pv = release(s, "first")
    seen = s.core.read_persistent_volume(pv)
    s.core.patch_persistent_volume(pv, {"spec": {"claimRef": workloads.reservation_ref(pv, "left-by-a-killed-run")}})
    wait_until("PV still Released", lambda: s.core.read_persistent_volume(pv).status.phase == "Released")
    assert seen.spec.claim_ref.uid != "left-by-a-killed-run"
    ok(s.reclaim(), s.host)
    wait_until("PV Available", lambda: s.core.read_persistent_volume(pv).status.phase == "Available")


def test_reclaim_runs_with_a_token_and_no_kubeconfig(lab, scenario, identity, tmp_path):
    """Every API step of reclaim takes localpv_k8s_auth, the one right before the wipe too."""
    s = scenario
    auth = identity(test_rbac.shipped_role()["rules"] + retire_rules())
    a = s.tag + "-a"
    s.setup([bind(s, a)])
    pv = release(s, "first")
    s.sh("echo secret > %s/%s/file" % (ROOT, a))
    res = s.reclaim(env={"KUBECONFIG": str(tmp_path / "no-such-kubeconfig")},
                    localpv_k8s_auth={"host": auth["host"], "api_key": auth["api_key"], "ca_cert": auth["ca_cert"]})
    ok(res, s.host)
    assert auth["api_key"] not in res.text + res.stderr
    assert s.sh("ls -A %s/%s" % (ROOT, a)).stdout.strip() == ""
    wait_until("PV Available", lambda: s.core.read_persistent_volume(pv).status.phase == "Available")
    assert client.CoreV1Api(s.kube).read_persistent_volume(pv).spec.claim_ref is None


@pytest.mark.parametrize("extra, words", [
    ({"reclaim_nodes": [], "localpv_allow_wipe": True}, "Name the scope: -e reclaim_nodes=node3"),
    ({"localpv_allow_wipe": False}, "Give the run's key: -e localpv_allow_wipe=true."),
], ids=["no-scope", "no-key"])
def test_reclaim_wipes_only_with_a_named_scope_and_the_runs_key(lab, scenario, extra, words):
    s = scenario
    a = s.tag + "-a"
    s.setup([bind(s, a)])
    pv = release(s, "first")
    s.sh("echo secret > %s/%s/file" % (ROOT, a))
    since = now_rfc3339()
    res = s.reclaim(**extra)
    assert res.returncode != 0
    msg = " ".join((res.failed_msg() or "").split())
    assert words in msg and "Nothing was changed" in msg, msg
    assert s.sh("cat %s/%s/file" % (ROOT, a)).stdout.strip() == "secret"
    assert ours(audit_writes(lab, since)) == []
    assert s.core.read_persistent_volume(pv).status.phase == "Released"
    # --check needs no key: it shows what would be wiped
    check = ok(s.reclaim("--check", localpv_allow_wipe=False), s.host)
    assert pv in "\n".join(check.result("Show what is wiped and made Available", s.host)["msg"])
