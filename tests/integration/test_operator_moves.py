# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A machine searches the operator's moves: a model-based test (Hypothesis's
RuleBasedStateMachine) that drives the real playbooks (site.yml, decommission.yml,
reclaim.yml) against one lab node's real loop disks and the lab's API server, and
checks after every step the invariants that keep data safe (see operator_moves.py
and docs/testing.md).

After each move, a plain site.yml run must converge and the run after it must give
changed=0; the invariants are checked after the move and after each of those runs.

Bounded for `make test`: a fixed seed and one fresh seed (printed), each a few
steps; shrinking is on (Hypothesis stops shrinking after five minutes). `make soak
SOAK_MINUTES=N` runs fresh seeds until the time is up and prints what it found.

Settings through the environment: LOCALPV_MOVES_STEPS (steps per example),
LOCALPV_MOVES_EXAMPLES (examples per seed), LOCALPV_MOVES_SEED (the fresh seed, to
replay one), LOCALPV_MOVES_RULES / LOCALPV_MOVES_SKIP (comma-separated rule names to
use only / to leave out), LOCALPV_MOVES_HOST (the node, default node1).
"""

import os
import random
import signal
import tempfile
import time

import pytest
from hypothesis import HealthCheck, Phase, assume, seed, settings, strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.stateful import (RuleBasedStateMachine, initialize, precondition, rule,
                                 run_state_machine_as_test)
from kubernetes import client

import operator_moves as om
from conftest import STATE

FIXED_SEED = 20261202
STEPS = int(os.environ.get("LOCALPV_MOVES_STEPS", "3"))
EXAMPLES = int(os.environ.get("LOCALPV_MOVES_EXAMPLES", "1"))
ONLY = set(filter(None, os.environ.get("LOCALPV_MOVES_RULES", "").split(",")))
SKIP = set(filter(None, os.environ.get("LOCALPV_MOVES_SKIP", "").split(",")))
# one Hypothesis database per lab instance, in the lab's state (never the checkout or ~)
DATABASE = os.path.join(STATE, "hypothesis")

MODES = st.sampled_from(["filesystem", "block"])
FSTYPES = st.sampled_from(["xfs", "ext4"])
PARTITIONS = st.sampled_from([1, 2])
NAMES = st.sampled_from(["a", "b", "c"])
PICK = st.integers(min_value=0, max_value=7)


def enabled(name):
    return (not ONLY or name in ONLY) and name not in SKIP


def move(name):
    """A rule that Hypothesis may pick only when the environment lets it."""
    def wrap(func):
        func = precondition(lambda self: enabled(name) and self.ready())(func)
        return func
    return wrap


class OperatorMoves(RuleBasedStateMachine):
    # set by the test before a run: the lab, the API client and a work directory
    lab = kube = workdir = None
    # what a search did, over all its examples (shrinking included)
    tally = {"examples": 0, "steps": 0, "runs": 0, "first_violation": None}

    def __init__(self):
        super().__init__()
        self.m = om.Moves(self.lab, self.kube, tempfile.mkdtemp(dir=self.workdir))
        self.started = False
        self.steps = 0
        self.broken = False
        self.tally["examples"] += 1

    def ready(self):
        return not self.broken

    def teardown(self):
        self.tally["runs"] += len(self.m.runs)
        if self.started:
            self.m.close()

    # ---------------------------------------------------------------- the step frame
    def step(self, name, action):
        """Run one move, then the plain runs; check the invariants after each."""
        self.steps += 1
        self.tally["steps"] += 1
        self.m.note("step %d: %s" % (self.steps, name))
        try:
            self._step(name, action)
        except om.Violation as exc:
            self.m.note("VIOLATION at step %d (%s): %s" % (self.steps, name, exc))
            if self.tally["first_violation"] is None:
                self.tally["first_violation"] = (self.tally["steps"], self.steps, name, str(exc))
            raise

    def _step(self, name, action):
        before = self.m.snapshot()
        runs = action() or []
        self.m.check(before, {"name": name, "runs": runs})
        # a plain run converges, the next one changes nothing
        before = self.m.snapshot()
        first = self.m.run("site.yml")
        self.m.check(before, {"name": name + ", then a plain site.yml run", "runs": [first]})
        before = self.m.snapshot()
        second = self.m.run("site.yml")
        self.m.check(before, {"name": name + ", then a second plain run", "runs": [second]})
        if second.changed or second.failed != first.failed:
            raise om.Violation("after %s: the plain run did not converge: the next run gave %s (the first %s)" % (
                name, second.summary(), first.summary()))

    def entry(self, name):
        return next((e for e in self.m.entries if e["name"] == self.m.tag + name), None)

    # ---------------------------------------------------------------- moves
    @initialize(salt=st.integers(min_value=0, max_value=2 ** 16), mode=MODES, fstype=FSTYPES, partitions=PARTITIONS)
    def first_volume(self, salt, mode, fstype, partitions):
        # Hypothesis tries the simplest sequence (every choice its first) before any
        # random one, whatever the seed; ruling it out makes each seed's first example
        # its own, which matters with the one or two examples a bounded run affords.
        assume(salt != 0)
        self.m.start()
        self.started = True
        self.step("the first entry", lambda: self._add("a", 0, mode, fstype, partitions))

    def _add(self, name, slot, mode, fstype, partitions):
        entry = {"name": self.m.tag + name, "device": sorted(self.m.slots)[slot % len(self.m.slots)]}
        if mode == "block":
            entry["mode"] = "block"
        else:
            entry["fstype"] = fstype
        if partitions > 1:
            entry["partitions"] = partitions
        self.m.entries.append(entry)
        self.m.note("entry added: %s" % entry)

    @move("add_entry")
    @rule(name=NAMES, slot=PICK, mode=MODES, fstype=FSTYPES, partitions=PARTITIONS)
    def add_entry(self, name, slot, mode, fstype, partitions):
        if self.entry(name):
            return
        self.step("add entry %s" % name, lambda: self._add(name, slot, mode, fstype, partitions))

    @move("remove_entry")
    @rule(name=NAMES)
    def remove_entry(self, name):
        entry = self.entry(name)
        if not entry:
            return
        self.step("remove entry %s" % name, lambda: self.m.entries.remove(entry))

    @move("edit_entry")
    @rule(name=NAMES, field=st.sampled_from(["mode", "fstype", "partitions", "device spelling"]), value=PICK)
    def edit_entry(self, name, field, value):
        entry = self.entry(name)
        if not entry:
            return

        def edit():
            if field == "mode":
                if entry.get("mode") == "block":
                    entry.pop("mode")
                else:
                    entry["mode"] = "block"
                    entry.pop("fstype", None)
            elif field == "fstype":
                entry["fstype"] = "ext4" if entry.get("fstype", "xfs") == "xfs" else "xfs"
                entry.pop("mode", None)
            elif field == "partitions":
                entry["partitions"] = 1 + value % 2 if entry.get("partitions", 1) == 1 else 1
                if entry["partitions"] == 1:
                    entry.pop("partitions")
            else:
                slot = om.canonical(entry["device"])
                head, tail = os.path.split(slot)
                entry["device"] = ["%s/./%s" % (head, tail), "%s//%s" % (head, tail), slot][value % 3]
            self.m.note("entry %s now %s" % (name, entry))
        self.step("edit entry %s: %s" % (name, field), edit)

    @move("confirm_wipe")
    @rule(name=NAMES)
    def confirm_wipe(self, name):
        """Put the wipe confirmation a refusal printed for this volume into its entry."""
        entry = self.entry(name)
        if not entry or not self.m.fingerprints.get(entry["name"]) or entry.get("wipe"):
            return

        def confirm():
            entry["wipe"] = self.m.fingerprints[entry["name"]]
            disk = os.path.realpath(self.m.slots.get(om.canonical(entry["device"]), ""))
            self._confirmed_on(self.m.slots.get(om.canonical(entry["device"])) or disk)
            self.m.retired.discard(entry["name"])
            for i in (1, 2):
                self.m.retired.discard("%s-%d" % (entry["name"], i))
            self.m.note("entry %s confirms wipe: %s" % (name, entry["wipe"]))
        self.step("confirm the wipe of %s" % name, confirm)

    def _confirmed_on(self, disk):
        """Tenant data on ``disk`` is no longer protected, unless its PV is Bound."""
        if not disk:
            return
        there = self.m.block_digests([disk])
        bound = dict((pv.metadata.name, pv) for pv in self.m.our_pvs() if pv.status.phase == "Bound")
        for data_id, payload in self.m.payloads.items():
            if payload["protected"] and any(there.get(b) for b in payload["blocks"]) and payload["pv"] not in bound:
                payload["protected"] = False
                self.m.note("tenant data %s confirmed for wiping" % data_id)

    @move("repoint_slot")
    @rule(slot=PICK, disk=PICK, old_mounts_lost=st.booleans())
    def repoint_slot(self, slot, disk, old_mounts_lost):
        """A stable path now leads to another disk (a re-attach, a slot or controller
        change); with ``old_mounts_lost`` the old disk's mounts are gone too, as after a
        reboot in which it came back late (its fstab lines stay)."""
        path = sorted(self.m.slots)[slot % len(self.m.slots)]
        target = self.m.disks[disk % len(self.m.disks)]
        if self.m.slots[path] == target:
            return

        def repoint():
            old = self.m.slots[path]
            self.m.slots[path] = target
            self.m.sh("ln -sfn %s %s" % (target, path))
            if old_mounts_lost:
                self.m.unmount_disk(old)
            self.m.note("%s -> %s%s" % (path, target, " (the mounts of %s lost)" % old if old_mounts_lost else ""))
        self.step("re-point %s%s" % (os.path.basename(path), ", old mounts lost" if old_mounts_lost else ""), repoint)

    @move("swap_slots")
    @rule()
    def swap_slots(self):
        a, b = sorted(self.m.slots)[:2]

        def swap():
            self.m.slots[a], self.m.slots[b] = self.m.slots[b], self.m.slots[a]
            for path in (a, b):
                self.m.sh("ln -sfn %s %s" % (self.m.slots[path], path))
            self.m.note("swapped: %s -> %s, %s -> %s" % (a, self.m.slots[a], b, self.m.slots[b]))
        self.step("swap two disks' paths", swap)

    @move("kill_run")
    @rule(fraction=st.floats(min_value=0.05, max_value=0.95), sig=st.sampled_from(["KILL", "INT"]))
    def kill_run(self, fraction, sig):
        typical = sorted(r.seconds for r in self.m.runs if not r.killed and r.argv[-1].endswith("site.yml"))
        delay = fraction * (typical[len(typical) // 2] if typical else 20)

        def kill():
            proc = self.m.start_run("site.yml")
            time.sleep(delay)
            if proc.poll() is None:
                os.killpg(proc.pid, getattr(signal, "SIG" + sig))
                killed = "SIG%s after %.1fs" % (sig, delay)
            else:
                killed = None
            res = self.m.finish_run(proc, killed=killed)
            self.m.note("site.yml killed: %s -> %s" % (killed, res.summary()))
            return [] if killed else [res]
        self.step("kill a run (SIG%s at %.0f%%)" % (sig, fraction * 100), kill)

    @move("two_runs")
    @rule()
    def two_runs(self):
        def both():
            procs = [self.m.start_run("site.yml"), self.m.start_run("site.yml")]
            runs = [self.m.finish_run(p) for p in procs]
            self.m.note("two runs at once: %s" % " / ".join(r.summary() for r in runs))
            return runs
        self.step("two runs at once", both)

    @move("bind")
    @rule(pick=PICK)
    def bind(self, pick):
        available = sorted((pv for pv in self.m.our_pvs() if pv.status.phase == "Available"),
                           key=lambda pv: pv.metadata.name)
        if not available:
            return
        pv = available[pick % len(available)]

        def bind_and_write():
            claim = self.m.bind_claim(pv)
            self.m.write_payload(self.m.core.read_persistent_volume(pv.metadata.name), claim)
        self.step("bind %s and write tenant data" % pv.metadata.name, bind_and_write)

    @move("delete_claim")
    @rule(pick=PICK)
    def delete_claim(self, pick):
        claims = sorted(self.m.claims)
        if not claims:
            return
        name = claims[pick % len(claims)]

        def delete():
            try:
                self.m.core.delete_namespaced_persistent_volume_claim(name, self.m.ns)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
            self.m.claims.pop(name)
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    self.m.core.read_namespaced_persistent_volume_claim(name, self.m.ns)
                except client.ApiException:
                    break
                time.sleep(0.5)
        self.step("delete claim %s" % name, delete)

    @move("foreign_pv")
    @rule(at=st.sampled_from(["name", "path"]), spelling=st.sampled_from(["", "/./", "//", "/"]), name=NAMES)
    def foreign_pv(self, at, spelling, name):
        volume = self.m.tag + name
        pv_name = self.m.pv_name(volume) if at == "name" else "lpvm-foreign-%s-%s" % (self.m.tag, name)
        if pv_name in self.m.foreign or any(pv.metadata.name == pv_name for pv in self.m.pvs()):
            return
        path = "/mnt/lpvm-foreign/%s" % name
        if at == "path":
            path = {"": "%s/%s" % (om.ROOT, volume), "/./": "%s/./%s" % (om.ROOT, volume),
                    "//": "%s//%s" % (om.ROOT, volume), "/": "%s/%s/" % (om.ROOT, volume)}[spelling]
            taken = self.m.snapshot().get((self.m.hostname_label, om.canonical(path)))
            if taken:
                return   # two PVs at one path by hand is the operator's own conflict, not a move

        def add():
            labels = {om.FOREIGN_LABEL: self.m.tag}
            pv = self.m.core.create_persistent_volume(client.V1PersistentVolume(
                metadata=client.V1ObjectMeta(name=pv_name, labels=labels),
                spec=client.V1PersistentVolumeSpec(
                    capacity={"storage": "100Mi"}, access_modes=["ReadWriteOnce"], volume_mode="Filesystem",
                    persistent_volume_reclaim_policy="Retain", storage_class_name=self.m.storage_class,
                    local=client.V1LocalVolumeSource(path=path),
                    node_affinity=client.V1VolumeNodeAffinity(required=client.V1NodeSelector(node_selector_terms=[
                        client.V1NodeSelectorTerm(match_expressions=[client.V1NodeSelectorRequirement(
                            key="kubernetes.io/hostname", operator="In", values=[self.m.hostname_label])])])))))
            self.m.foreign[pv_name] = (pv.metadata.uid, path, labels)
            self.m.made_by_model.add(pv.metadata.uid)
            self.m.note("hand-made PV %s at %s" % (pv_name, path))
        self.step("a hand-made PV at our %s" % at, add)

    @move("decommission")
    @rule(whole_node=st.booleans(), wipe=st.booleans(), name=NAMES)
    def decommission(self, whole_node, wipe, name):
        volumes = [e["name"] for e in self.m.entries]
        target = self.m.tag + name
        if not whole_node and target not in volumes:
            return

        def retire():
            names = [pv.metadata.labels.get("localpv.rollout/volume") or pv.metadata.name
                     for pv in self.m.our_pvs()]
            in_scope = [n for n in names if whole_node or n == target or n.startswith(target + "-")]
            extra = {"decommission_nodes": om.HOST, "decommission_cordon": False, "decommission_pod_action": "delete"}
            if not whole_node:
                extra["decommission_volumes"] = list(in_scope) or [target]
            if wipe:
                extra.update({"decommission_wipe": True, "localpv_allow_wipe": True})
                scope_pvs = set(self.m.pv_name(n) for n in in_scope)
                for payload in self.m.payloads.values():
                    if payload["pv"] in scope_pvs:
                        payload["protected"] = False
            res = self.m.run("decommission.yml", extra=extra)
            if not res.failed and not wipe:
                self.m.retired.update(in_scope)
            for claim, pv in list(self.m.claims.items()):
                try:
                    self.m.core.read_namespaced_persistent_volume_claim(claim, self.m.ns)
                except client.ApiException:
                    self.m.claims.pop(claim)
            return [res]
        self.step("decommission %s%s" % ("the node" if whole_node else target, " with wipe" if wipe else ""), retire)

    @move("reclaim")
    @rule(rebind_at=st.one_of(st.none(), st.sampled_from(om.RECLAIM_POINTS)))
    def reclaim(self, rebind_at):
        def run():
            released = [pv for pv in self.m.our_pvs() if pv.status.phase == "Released"]
            for payload in self.m.payloads.values():
                if payload["pv"] in set(pv.metadata.name for pv in released):
                    payload["protected"] = False   # reclaim is the operator's confirmation
            if rebind_at is None or not released:
                return [self.m.run("reclaim.yml")]
            pause = tempfile.mkdtemp(dir=self.m.workdir)
            env = {"ANSIBLE_CALLBACK_PLUGINS": om.HOOKS, "ANSIBLE_CALLBACKS_ENABLED": "lpvt_pause",
                   "LPVT_PAUSE_AT": rebind_at, "LPVT_PAUSE_DIR": pause}
            proc = self.m.start_run("reclaim.yml", env=env)
            deadline = time.time() + 300
            while not os.path.exists(os.path.join(pause, "reached")) and proc.poll() is None \
                    and time.time() < deadline:
                time.sleep(0.2)
            asked = None
            if os.path.exists(os.path.join(pause, "reached")):
                pv = released[0]
                self.m.note("reclaim paused at %r: %s is asked for again" % (rebind_at, pv.metadata.name))
                try:
                    asked = self.m.claim_released_pv(pv.metadata.name)
                finally:
                    open(os.path.join(pause, "go"), "w").close()
            res = self.m.finish_run(proc)
            self.m.note("reclaim.yml -> %s" % res.summary())
            if asked:
                self.m.settle_claim(asked[0], released[0].metadata.name)
            return [res]
        self.step("reclaim%s" % (", a re-bind at %r" % rebind_at if rebind_at else ""), run)

    @move("relabel_node")
    @rule()
    def relabel_node(self):
        """The Node's kubernetes.io/hostname label changes (a re-join under another name)."""
        if self.m.relabelled:
            return

        def relabel():
            self.m.relabel("%s-relabelled" % self.m.hostname_label)
        self.step("relabel the node", relabel)

    @move("check_run")
    @rule(playbook=st.sampled_from(["site.yml", "decommission.yml", "reclaim.yml"]))
    def check_run(self, playbook):
        def check():
            extra = {"decommission_nodes": om.HOST} if playbook == "decommission.yml" else None
            quiet = self.m.unmounted_disks()
            digests = dict((d, self.m.whole_digest(d)) for d in quiet)
            node = self.m.node_state()
            since = om.now_rfc3339()
            res = self.m.run(playbook, "--check", "--diff", extra=extra)
            problems = []
            writes = self.m.audit_writes_since(since)
            if writes:
                problems.append("writes that were not dry runs: %s" % "; ".join(writes[:5]))
            for disk in quiet:
                if self.m.whole_digest(disk) != digests[disk]:
                    problems.append("disk %s changed" % disk)
            if self.m.node_state() != node:
                problems.append("mounts or fstab changed")
            if problems:
                raise om.Violation("a --check run of %s wrote: %s" % (playbook, "; ".join(problems)))
            return [res]
        self.step("%s --check --diff" % playbook, check)


@pytest.fixture
def machine(lab, kube, tmp_path):
    OperatorMoves.lab, OperatorMoves.kube, OperatorMoves.workdir = lab, kube, str(tmp_path)
    yield OperatorMoves


def search(machine, seed_value, steps=STEPS, examples=EXAMPLES, reuse=True):
    """One Hypothesis search from ``seed_value``; prints what it did, raises what it found."""
    print("\noperator moves: seed %d, %d example(s) of up to %d steps (replay: LOCALPV_MOVES_SEED=%d)"
          % (seed_value, examples, steps, seed_value), flush=True)
    machine.tally = {"examples": 0, "steps": 0, "runs": 0, "first_violation": None}
    t0 = time.time()
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink]
    if not reuse:
        phases.remove(Phase.reuse)
    if os.environ.get("LOCALPV_MOVES_SHRINK", "1") == "0":   # a soak short of time reports unshrunk
        phases.remove(Phase.shrink)
    try:
        run_state_machine_as_test(seed(seed_value)(type("Moves", (machine,), {})), settings=settings(
            max_examples=examples, stateful_step_count=steps, deadline=None,
            database=DirectoryBasedExampleDatabase(DATABASE), phases=phases,
            suppress_health_check=list(HealthCheck), print_blob=True))
    finally:
        tally = machine.tally
        found = tally["first_violation"]
        print("operator moves: seed %d: %d example(s), %d steps, %d playbook runs in %.0fs%s" % (
            seed_value, tally["examples"], tally["steps"], tally["runs"], time.time() - t0,
            "; first violation after %d steps (step %d of its example, %s)" % found[:3] if found else ""),
            flush=True)
    return machine.tally


def test_operator_moves_fixed_seed(machine):
    search(machine, FIXED_SEED)


def test_operator_moves_fresh_seed(machine):
    search(machine, int(os.environ.get("LOCALPV_MOVES_SEED") or random.SystemRandom().randrange(2 ** 32)))


SOAK_MINUTES = float(os.environ.get("LOCALPV_MOVES_SOAK_MINUTES") or 0)


@pytest.mark.skipif(not SOAK_MINUTES, reason="the soak runs only when asked: make soak SOAK_MINUTES=N")
def test_operator_moves_soak(machine):
    """Fresh seeds until the time is up; every failure is printed (shrunk) and the
    search goes on with the next seed. Fails at the end when anything was found."""
    deadline = time.time() + 60 * SOAK_MINUTES
    found, seeds, totals = [], [], {"examples": 0, "steps": 0, "runs": 0}
    while time.time() < deadline:
        value = random.SystemRandom().randrange(2 ** 32)
        seeds.append(value)
        try:
            tally = search(machine, value, steps=int(os.environ.get("LOCALPV_MOVES_STEPS", "8")),
                           examples=int(os.environ.get("LOCALPV_MOVES_EXAMPLES", "2")), reuse=False)
        except Exception as exc:   # a finding: keep it, go on with the next seed
            tally = machine.tally
            found.append((value, tally["first_violation"], "%s: %s" % (type(exc).__name__, exc)))
        for key in totals:
            totals[key] += tally[key]
    print("\nsoak: %d seed(s) %s; %d examples, %d steps, %d playbook runs; %d failure(s)" % (
        len(seeds), seeds, totals["examples"], totals["steps"], totals["runs"], len(found)))
    for value, first, text in found:
        print("soak: seed %d: %s\n%s" % (value, first[:3] if first else "-", text[-3000:]))
    assert not found, "the soak found %d failing sequence(s); see above" % len(found)
