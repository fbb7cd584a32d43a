# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sequences of operator moves that the model-based search (test_operator_moves.py)
found to break an invariant, shrunk and written out as plain tests on the lab.
Each checks the same invariants the search checks (operator_moves.Moves.check), so
it fails with the same finding while the bug is there."""

import os
import tempfile
import time

import pytest

import operator_moves as om


@pytest.fixture
def moves(lab, kube, tmp_path):
    m = om.Moves(lab, kube, str(tmp_path))
    m.start()
    yield m
    m.close()


def slot(m, i):
    return sorted(m.slots)[i]


def step(m, name, action):
    """One move, then the invariants, as the search does."""
    before = m.snapshot()
    runs = action() or []
    m.check(before, {"name": name, "runs": runs})
    return runs


def ok(res):
    assert not res.failed, res.text()[-3000:]
    return res


def volume_with_tenant(m, name="a", **entry):
    m.entries.append(dict({"name": m.tag + name, "device": slot(m, 0)}, **entry))
    ok(m.run("site.yml"))
    pv = m.core.read_persistent_volume(m.pv_name(m.tag + name))
    claim = m.bind_claim(pv)
    m.write_payload(m.core.read_persistent_volume(pv.metadata.name), claim)
    return pv


def test_a_stable_path_repointed_to_a_blank_disk_while_bound(moves):
    """Found by the rule repoint_slot (the first entry, bind, re-point with the old mount lost: 3 steps)."""
    m = moves
    pv = volume_with_tenant(m, fstype="xfs")
    path = pv.spec.local.path

    def repoint():
        m.slots[slot(m, 0)] = m.disks[1]
        m.sh("ln -sfn %s %s" % (m.disks[1], slot(m, 0)))
        m.unmount_disk(m.disks[0])   # the old disk came back late: its mount is gone, fstab stays
        return [m.run("site.yml")]
    (refused,) = step(m, "re-point slot0 to a blank disk while the PV is Bound", repoint)
    # the run refuses the moved path and mounts nothing; it says how to get the data back
    assert refused.failed and "nothing was written" in refused.text()
    assert "`mount %s`" % path in refused.text()
    assert m.sh("findmnt -rn %s" % path, check=False).stdout == ""

    def as_told():
        m.sh("mount %s" % path)
    # the invariants then see the tenant's data through the PV's path again
    step(m, "the operator runs the mount command the refusal gave", as_told)


def test_a_rebind_between_the_reclaim_reread_and_the_wipe(moves):
    """Found by the rule reclaim (the first entry, bind, delete the claim, reclaim with
    a re-bind at the wipe: 4 steps). Reclaim now reserves the PV before the wipe; the
    other actor does what a real one can at that moment: a new claim asks for the PV by
    volumeName, and an administrator would clear the claimRef of a Released PV, but not
    of one that shows a reclaim's reservation. The claim waits, and binds the PV only
    once it is wiped and released."""
    m = moves
    pv = volume_with_tenant(m, fstype="xfs")
    old_files = [p["file"] for p in m.payloads.values()]
    for claim in list(m.claims):
        m.core.delete_namespaced_persistent_volume_claim(claim, m.ns)
        m.claims.pop(claim)
    deadline = time.time() + 90
    while m.core.read_persistent_volume(pv.metadata.name).status.phase != "Released" and time.time() < deadline:
        time.sleep(0.5)
    for payload in m.payloads.values():
        payload["protected"] = False   # running reclaim confirms the Released volume's wipe
    asked = []

    def reclaim_with_rebind():
        pause = tempfile.mkdtemp(dir=m.workdir)
        env = {"ANSIBLE_CALLBACK_PLUGINS": om.HOOKS, "ANSIBLE_CALLBACKS_ENABLED": "lpvt_pause",
               "LPVT_PAUSE_AT": "Wipe the volumes' data on the host", "LPVT_PAUSE_DIR": pause}
        proc = m.start_run("reclaim.yml", env=env)
        while not os.path.exists(os.path.join(pause, "reached")) and proc.poll() is None:
            time.sleep(0.2)
        try:
            asked.append(m.claim_released_pv(pv.metadata.name))
        finally:
            open(os.path.join(pause, "go"), "w").close()
        res = m.finish_run(proc)
        m.settle_claim(asked[0][0], pv.metadata.name)
        return [res]
    (res,) = step(m, "reclaim, the PV asked for again between the re-read and the wipe", reclaim_with_rebind)
    (name, bound_at_pause) = asked[0]
    # the reservation kept the claim waiting through the wipe; it bound the wiped PV after
    assert not bound_at_pause and not res.failed, res.text()[-3000:]
    assert m.claims.get(name) == pv.metadata.name
    # nothing leaks: the new tenant sees its own file, none of the old tenant's
    seen = m.sh("ls -A %s" % pv.spec.local.path).stdout.split()
    assert not set(old_files) & set(seen) and len(seen) == 1, seen
