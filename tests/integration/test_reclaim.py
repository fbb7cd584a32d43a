# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""reclaim.yml on the lab: a Released PV of ours is wiped on its host and made
Available, and a new claim binds it; nothing is wiped while a process holds it."""

import os
import threading

import pytest
from kubernetes import client

from pv_helpers import now_rfc3339, wait_until
from test_decommission_support import ROOT, Scenario, audit_writes


@pytest.fixture
def scenario(lab, kube, tmp_path):
    s = Scenario(lab, kube, tmp_path)
    yield s
    s.cleanup()


def bind(s, name):
    return {"name": name, "bind": "/data/%s/%s" % (s.tag, name), "capacity": "1G"}


def ok(res, host):
    assert res.returncode == 0, (res.failed_msg(host), res.text[-3000:], res.stderr[-2000:])
    return res


def release(s, claim):
    """Bind ``claim`` with a pod, then delete pod and claim: the PV goes Released (Retain)."""
    s.claim(claim)
    s.core.create_namespaced_pod(s.ns, client.V1Pod(metadata=client.V1ObjectMeta(name=claim),
                                                    spec=s.pod_spec(claim)))
    pv = s.bound_claims(1)[claim]
    s.core.delete_namespaced_pod(claim, s.ns, grace_period_seconds=0)
    wait_until("pod gone", lambda: not s.core.list_namespaced_pod(s.ns).items)
    s.core.delete_namespaced_persistent_volume_claim(claim, s.ns)
    wait_until("PV Released", lambda: s.core.read_persistent_volume(pv).status.phase == "Released")
    return pv


def rebind(s, claim):
    s.claim(claim)
    s.core.create_namespaced_pod(s.ns, client.V1Pod(metadata=client.V1ObjectMeta(name=claim),
                                                    spec=s.pod_spec(claim)))
    return s.bound_claims(1)[claim]


def test_a_released_pv_is_wiped_and_bound_again(lab, scenario):
    s = scenario
    a = s.tag + "-a"
    (pv,) = s.setup([bind(s, a)])
    pv = release(s, "first")
    s.sh("mkdir -p %s/%s/dir && echo secret > %s/%s/dir/file && echo x > %s/%s/top" % ((ROOT, a) * 3))

    since = now_rfc3339()
    check = ok(s.reclaim("--check"), s.host)
    assert pv in "\n".join(check.result("Show what is wiped and made Available", s.host)["msg"])
    # the plan only: the audit log shows no write of ours
    assert [e for e in audit_writes(lab, since) if (e.get("userAgent") or "").startswith("localpv.rollout")] == []
    assert s.core.read_persistent_volume(pv).status.phase == "Released"
    assert s.sh("cat %s/%s/dir/file" % (ROOT, a)).stdout.strip() == "secret"

    res = ok(s.reclaim(), s.host)
    assert s.sh("ls -A %s/%s" % (ROOT, a)).stdout.strip() == ""
    assert s.mounted(a)
    # the data is gone from the bind source too: it is the same directory
    assert s.sh("ls -A /data/%s/%s" % (s.tag, a)).stdout.strip() == ""
    assert res.result("Remove the reservations so that the PVs are Available again", s.host)["released"] == [pv]
    wait_until("PV Available", lambda: s.core.read_persistent_volume(pv).status.phase == "Available")
    assert s.core.read_persistent_volume(pv).spec.claim_ref is None
    assert rebind(s, "second") == pv

    # bound again: nothing to reclaim, nothing changed
    again = ok(s.reclaim(), s.host)
    assert again.stats[s.host]["changed"] == 0


def test_nothing_is_wiped_while_a_process_holds_the_volume(lab, scenario):
    s = scenario
    a = s.tag + "-a"
    s.setup([bind(s, a)])
    pv = release(s, "first")
    s.sh("echo keep > %s/%s/file && cd %s/%s && (nohup sleep 601 >/dev/null 2>&1 &)" % ((ROOT, a) * 2))
    try:
        res = s.reclaim()
        assert res.returncode != 0
        assert "sleep 601" in res.failed_msg(s.host)
        assert s.sh("cat %s/%s/file" % (ROOT, a)).stdout.strip() == "keep"
        assert s.core.read_persistent_volume(pv).status.phase == "Released"
    finally:
        s.sh("pkill -f '^sleep 601$' || true")


def test_mkfs_makes_the_filesystem_again_with_its_uuid(lab, scenario):
    s = scenario
    disk = s.blank_disk()
    a = s.tag + "-a"
    (vol_pv,) = s.setup([{"name": a, "device": disk, "fstype": "ext4"}])
    uuid = s.sh("findmnt -rn -o UUID --mountpoint %s/%s" % (ROOT, a)).stdout.strip()
    pv = release(s, "first")
    assert pv == vol_pv
    s.sh("echo secret > %s/%s/file" % (ROOT, a))
    ok(s.reclaim(reclaim_wipe_method="mkfs"), s.host)
    assert s.mounted(a) and s.sh("ls -A %s/%s" % (ROOT, a)).stdout.split() == ["lost+found"]
    assert s.sh("findmnt -rn -o UUID --mountpoint %s/%s" % (ROOT, a)).stdout.strip() == uuid
    assert s.fstab_has(a)
    wait_until("PV Available", lambda: s.core.read_persistent_volume(pv).status.phase == "Available")


HOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hooks")


def test_a_pv_bound_again_between_the_listing_and_the_wipe_is_not_wiped(lab, scenario, tmp_path):
    """Another actor releases the PV and a new claim binds it while reclaim runs,
    after the listing and before the wipe: the new tenant's file survives."""
    s = scenario
    a = s.tag + "-a"
    s.setup([bind(s, a)])
    pv = release(s, "first")
    pause = tmp_path / "pause"
    pause.mkdir()
    env = {"ANSIBLE_CALLBACK_PLUGINS": HOOKS, "ANSIBLE_CALLBACKS_ENABLED": "lpvt_pause",
           "LPVT_PAUSE_AT": "Look for processes that still hold the volumes", "LPVT_PAUSE_DIR": str(pause)}
    result = {}
    run = threading.Thread(target=lambda: result.update(res=s.reclaim(env=env)))
    run.start()
    try:
        wait_until("reclaim between its listing and the wipe", (pause / "reached").exists)
        s.core.patch_persistent_volume(pv, {"spec": {"claimRef": None}})
        assert rebind(s, "tenant") == pv
        s.sh("echo mine > %s/%s/tenant-file" % (ROOT, a))
    finally:
        (pause / "go").touch()
        run.join(600)
    res = result["res"]
    assert res.returncode != 0
    assert "%s changed since the listing" % pv in res.failed_msg(s.host)
    assert s.sh("cat %s/%s/tenant-file" % (ROOT, a)).stdout.strip() == "mine"
    assert s.core.read_persistent_volume(pv).status.phase == "Bound"
