# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The operator's moves on one lab node, and the invariants that must hold after
each: the harness of test_operator_moves.py (the model-based search) and of
test_found_sequences.py (the sequences it found, written out plainly).

One node, its work disks (blanked before and after), an inventory of that node
alone whose ``localpv_disks`` the moves edit, and the real playbooks run with
ansible-playbook. Devices are named through "slots": symlinks on the node
(``/var/lib/lpvm/by-id/slotN``) that stand for the ``/dev/disk/by-id`` links udev
makes on real hosts (the lab has no udev), so that a move can re-point one.

Tenant data is a random payload written into a bound volume (through the mount,
or into the block device); the model keeps the digest of each 4 KiB block of it
and looks for every block in the disks' images after each step, so a format, a
discard or an overwrite of tenant data is seen whatever the filesystem's own
metadata does, and reads the payload back through the PV's path so that a mount
switched to another disk is seen too.
"""

import base64
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import yaml
from kubernetes import client

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hooks")
ROOT = "/mnt/disks"
SLOT_DIR = "/var/lib/lpvm/by-id"
HOST = os.environ.get("LOCALPV_MOVES_HOST", "node1")
MANAGED = "app.kubernetes.io/managed-by"
FS_UUID = "localpv.rollout/fs-uuid"
STABLE_ID = "localpv.rollout/stable-id"
# The claim a PV reserved for reclaim's wipe shows (kubectl get pv, CLAIM column:
# localpv-rollout-reclaim/<pv>), as docs/decommission.md tells administrators.
RESERVED_NAMESPACE = "localpv-rollout-reclaim"
RUN_LABEL = "lpvm-run"
FOREIGN_LABEL = "lpvm-foreign"
# Tenant data is looked for in 1 KiB blocks: ext4 makes 1 KiB blocks on small disks,
# so a file's 4 KiB pieces need not be 4 KiB-aligned on the disk.
BLOCK = 1024
PAYLOAD_BLOCKS = 64
# A failed run says that nothing was changed, or names what was ("... was already wiped by
# this run (<path>: 2 entries were removed (files))" names the wipe and what it removed).
HONEST_FAILURE = re.compile(
    r"nothing (was |is |else |has been )?(changed|written|wiped|touched|deleted|done)"
    r"|nothing was written|(was|were|is|are|has been|have been) (already )?(wiped|erased|deleted|formatted|unmounted|"
    r"created|retired|pruned|changed|mounted)", re.I)
# The tasks of reclaim.yml at which another actor may re-bind the PV.
RECLAIM_POINTS = (
    "Look for processes that still hold the volumes",
    "Reserve the PVs for the wipe, only if each is still Released by the claim seen at the listing",
    "Check that the reservations are still ours, right before the wipe",
    "Wipe the volumes' data on the host",
    "Remove the reservations so that the PVs are Available again",
)


# Runs on the node: kill the processes that hold one of the given disks open (what a
# killed run left behind, such as an mkfs); the node's /proc shows only its own.
KILL_OPENERS = """
import os, sys
disks = sys.argv[1:]
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        targets = [os.readlink("/proc/%s/fd/%s" % (pid, fd)) for fd in os.listdir("/proc/%s/fd" % pid)]
    except OSError:
        continue
    if any(t == d or t.startswith(d + "p") for t in targets for d in disks):
        os.kill(int(pid), 9)
"""


class Violation(AssertionError):
    """An invariant that does not hold: the finding."""


def canonical(path):
    """The canonical form of a local path: no '.', '..', '//' or trailing '/'."""
    return os.path.normpath("/" + (path or "").lstrip("/")) if path else path


def pv_hostname(pv):
    try:
        for term in pv.spec.node_affinity.required.node_selector_terms:
            for expr in term.match_expressions or []:
                if expr.key == "kubernetes.io/hostname" and expr.values:
                    return expr.values[0]
    except AttributeError:
        pass
    return None


class Run:
    """One finished (or killed) ansible-playbook run."""

    def __init__(self, argv, returncode, stdout, stderr, killed=None):
        self.argv, self.returncode, self.stdout, self.stderr, self.killed = argv, returncode, stdout, stderr, killed
        try:
            self.data = json.loads(stdout)
        except ValueError:
            self.data = None
        self.stats = (self.data or {}).get("stats") or {}

    @property
    def changed(self):
        return sum(s.get("changed", 0) for s in self.stats.values())

    @property
    def failed(self):
        return self.returncode != 0

    def messages(self):
        """Messages of the tasks that failed (not ignored), in order."""
        out = []
        for play in (self.data or {}).get("plays", []):
            for task in play["tasks"]:
                for res in task["hosts"].values():
                    if (res.get("failed") or res.get("unreachable")) and not res.get("ignore_errors"):
                        msg = res.get("msg") or res.get("stderr") or ""
                        out.append(msg if isinstance(msg, str) else json.dumps(msg))
        return out

    def text(self):
        return " ".join(" ".join(self.messages() + [self.stdout[-20000:] if self.data is None else ""]).split())

    def results(self, name):
        found = []
        for play in (self.data or {}).get("plays", []):
            for task in play["tasks"]:
                if task["task"]["name"].split(" : ")[-1] == name:
                    found.extend(task["hosts"].values())
        return found

    def summary(self):
        if self.killed:
            return "killed (%s)" % self.killed
        first = (self.messages() or [""])[0]
        return "rc=%d changed=%d%s" % (self.returncode, self.changed, (" msg=" + first[:300]) if self.failed else "")


class Moves:
    """One node of the lab, its work disks, and the operator's moves on them."""

    def __init__(self, lab, kube, workdir, disks=3):
        self.lab, self.kube = lab, kube
        self.core = client.CoreV1Api(kube)
        self.workdir = workdir
        self.info = lab.node(HOST)
        self.node_name = self.info["node_name"]
        self.hostname_label = self.info.get("hostname_label", HOST)
        # the node's largest disks (at least 300 MB each: xfs needs it), at most ``disks``
        fit = [d for d in self.info["disks"] if d["size"] >= 500 * 2 ** 20]
        self.disks = [d["path"] for d in sorted(fit, key=lambda d: -d["size"])][:disks]
        self.images = dict((d["path"], d["image"]) for d in self.info["disks"])
        self.tag = "lpvm" + uuid.uuid4().hex[:4]
        self.ns = self.storage_class = self.tag
        self.control_dir = tempfile.mkdtemp(prefix="lpvm-cm-")
        self.ssh_args = ("-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ControlMaster=auto "
                         "-o ControlPersist=60s -o ControlPath=%s/%%C" % self.control_dir)
        self.runs = []
        self.log = []
        # the model
        self.entries = []          # localpv_disks of the host, as the operator wrote them
        self.slots = dict(("%s/slot%d" % (SLOT_DIR, i), d) for i, d in enumerate(self.disks))
        self.payloads = {}         # id -> {"pv", "blocks": [digest], "sha", "path", "block": bool, "protected"}
        self.bound_identity = {}   # pv name -> (claim uid, fs-uuid, stable-id) at bind time
        self.retired = set()       # volume names decommissioned without a wipe, not confirmed since
        self.foreign = {}          # PV name -> (uid, path, labels) of PVs the operator made by hand
        self.made_by_model = set()  # uids of PVs the model itself created
        self.claims = {}           # claim name -> PV name
        self.fingerprints = {}     # volume/entry name -> last wipe fingerprint a refusal offered
        self.relabelled = False    # the Node's hostname label changed by a move

    # ------------------------------------------------------------------ node
    def sh(self, command, check=True, timeout=120):
        res = self.lab.ssh(HOST, command, timeout=timeout)
        if check and res.returncode != 0:
            raise RuntimeError("%s: %s %s" % (command, res.stdout, res.stderr))
        return res

    def note(self, text):
        self.log.append(text)
        print("  lpvm: %s" % text, flush=True)

    # ------------------------------------------------------------------ set-up and clean-up
    def reset(self):
        """Blank the work disks, drop every claim and PV of this model, put slots back."""
        self._drop_cluster_objects()
        self.sh("umount -l %s/lpvm* 2>/dev/null; sed -i '\\# %s/lpvm#d' /etc/fstab; "
                "rm -rf %s/lpvm* /mnt/lpvm-foreign; rm -rf %s; mkdir -p %s" % (
                    ROOT, ROOT, ROOT, SLOT_DIR, SLOT_DIR), check=False)
        # a kill may leave a host-side tool running on the disks: stop those first
        self.sh("python3 -c %s %s" % (shlex.quote(KILL_OPENERS), " ".join(self.disks)), check=False)
        self.lab.wipe_disks(HOST, only=self.disks)
        for slot, disk in self.slots.items():
            self.sh("ln -sfn %s %s" % (disk, slot))
        try:
            self.core.patch_node(self.node_name, {"spec": {"unschedulable": None}})
        except client.ApiException:
            pass
        if self.relabelled:
            self.relabel(self.hostname_label)

    def relabel(self, value):
        self.core.patch_node(self.node_name, {"metadata": {"labels": {"kubernetes.io/hostname": value}}})
        self.relabelled = value != self.hostname_label
        self.note("node %s: kubernetes.io/hostname=%s" % (self.node_name, value))

    def _drop_cluster_objects(self):
        try:
            for pvc in self.core.list_namespaced_persistent_volume_claim(self.ns).items:
                self.core.delete_namespaced_persistent_volume_claim(pvc.metadata.name, self.ns)
        except client.ApiException:
            pass
        for pv in self.core.list_persistent_volume().items:
            labels = pv.metadata.labels or {}
            # this model's PVs, and those an earlier model on this node left when it was killed
            if labels.get(FOREIGN_LABEL) == self.tag or pv.metadata.name.startswith("local-%s-lpvm" % self.node_name) \
                    or (labels.get(RUN_LABEL) and labels.get("localpv.rollout/node") == self.node_name):
                try:
                    if pv.metadata.finalizers:
                        self.core.patch_persistent_volume(pv.metadata.name, {"metadata": {"finalizers": None}})
                    self.core.delete_persistent_volume(pv.metadata.name)
                except client.ApiException:
                    pass

    def start(self):
        try:
            self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=self.ns)))
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        self.reset()

    def close(self):
        self.reset()
        try:
            self.core.delete_namespace(self.ns)
        except client.ApiException:
            pass
        try:
            client.StorageV1Api(self.kube).delete_storage_class(self.storage_class)
        except client.ApiException:
            pass

    # ------------------------------------------------------------------ inventory and runs
    def inventory(self, extra=None):
        with open(self.lab.inventory) as f:
            lab_inv = yaml.safe_load(f)
        host = dict(lab_inv["all"]["children"]["nodes"]["hosts"][HOST])
        host["localpv_disks"] = [dict(e) for e in self.entries]
        group_vars = dict(lab_inv["all"].get("vars") or {})
        group_vars.update({
            "ansible_ssh_common_args": self.ssh_args,
            "localpv_allow_kernel_names": True,   # block volumes: the lab has no udev
            "localpv_storage_classes": [{"name": self.storage_class, "reclaim_policy": "Retain"}],
            "pv_register_labels": {RUN_LABEL: self.tag},
            "decommission_label_selector": "%s=%s" % (RUN_LABEL, self.tag),
            "reclaim_label_selector": "%s=%s" % (RUN_LABEL, self.tag),
        })
        if any(e.get("wipe") for e in self.entries):
            group_vars["localpv_allow_wipe"] = True
        group_vars.update(extra or {})
        inv = {"all": {"children": {"nodes": {"hosts": {HOST: host}}}, "vars": group_vars}}
        path = os.path.join(self.workdir, "inventory-%d.yml" % len(self.runs))
        with open(path, "w") as f:
            yaml.safe_dump(inv, f)
        return path

    def command(self, playbook, *args, extra=None):
        if playbook == "reclaim.yml":
            # what an operator names for a reclaim: the node, and that this run may wipe
            extra = dict({"reclaim_nodes": [self.node_name], "localpv_allow_wipe": True}, **(extra or {}))
        return [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", self.inventory(extra)] \
            + list(args) + [os.path.join(REPO, "playbooks", playbook)]

    def env(self, extra=None):
        env = self.lab.env()
        env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
        env["ANSIBLE_CALLBACK_RESULT_FORMAT"] = "json"
        env.update(extra or {})
        return env

    def start_run(self, playbook, *args, extra=None, env=None):
        argv = self.command(playbook, *args, extra=extra)
        out = tempfile.TemporaryFile(mode="w+", dir=self.workdir)
        err = tempfile.TemporaryFile(mode="w+", dir=self.workdir)
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True, env=self.env(env), cwd=REPO,
                                start_new_session=True)
        proc.lpvm = (argv, out, err, time.time())
        return proc

    def finish_run(self, proc, killed=None, timeout=900):
        argv, out, err, t0 = proc.lpvm
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed = killed or "timeout"
        out.seek(0)
        err.seek(0)
        res = Run(argv, proc.returncode, out.read(), err.read(), killed)
        res.seconds = time.time() - t0
        self.runs.append(res)
        self._learn(res)
        return res

    def run(self, playbook, *args, extra=None, env=None):
        res = self.finish_run(self.start_run(playbook, *args, extra=extra, env=env))
        self.note("%s %s -> %s (%.0fs)" % (playbook, " ".join(args), res.summary(), res.seconds))
        return res

    def _learn(self, res):
        """Fingerprints offered by a refusal, per volume name, for a later confirmation."""
        text = res.text()
        for name in set(e["name"] for e in self.entries if "name" in e):
            found = re.findall(r"volume %s\b.{0,600}?wipe: '([0-9a-f]{16})'" % re.escape(name), text)
            if found:
                self.fingerprints[name] = found[-1]

    # ------------------------------------------------------------------ cluster reads
    def pvs(self):
        return self.core.list_persistent_volume().items

    def our_pvs(self):
        return [pv for pv in self.pvs() if (pv.metadata.labels or {}).get(RUN_LABEL) == self.tag]

    def pv_name(self, volume):
        return "local-%s-%s" % (self.node_name, volume)

    def bind_claim(self, pv):
        """A claim that asks for ``pv`` by name; returns it once Bound."""
        name = self.ask_for(pv)
        claim = self.wait_bound(name, pv, 90)
        if claim is None:
            raise RuntimeError("claim %s for %s never bound" % (name, pv.metadata.name))
        return claim

    def ask_for(self, pv):
        """Create a claim that asks for ``pv`` by volumeName; returns its name."""
        name = "c" + uuid.uuid4().hex[:6]
        self.core.create_namespaced_persistent_volume_claim(self.ns, client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"], storage_class_name=pv.spec.storage_class_name,
                volume_name=pv.metadata.name, volume_mode=pv.spec.volume_mode,
                resources=client.V1VolumeResourceRequirements(requests={"storage": "1Mi"}))))
        return name

    def wait_bound(self, name, pv, timeout):
        """The claim ``name`` once the binder bound it to ``pv`` (remembered by the
        model), or None after ``timeout`` seconds."""
        deadline = time.time() + timeout
        while True:
            claim = self.core.read_namespaced_persistent_volume_claim(name, self.ns)
            if claim.status.phase == "Bound":
                self.claims[name] = pv.metadata.name
                fresh = self.core.read_persistent_volume(pv.metadata.name)
                ann = fresh.metadata.annotations or {}
                self.bound_identity[pv.metadata.name] = (claim.metadata.uid, ann.get(FS_UUID), ann.get(STABLE_ID))
                return claim
            if time.time() >= deadline:
                return None
            time.sleep(0.5)

    def claim_released_pv(self, pv_name, wait=10):
        """Another actor wants a Released PV while reclaim runs, as a real one can: an
        administrator makes it Available (``kubectl patch pv <pv> -p
        '{"spec":{"claimRef":null}}'``), which is done to a Released PV, not to one whose
        claim is a reclaim's reservation (``localpv-rollout-reclaim/<pv>``: a wipe is
        running, the docs say to leave it alone); and a new claim asks for the PV by
        volumeName. The PV binder binds a PV only to the claim its claimRef names, so
        the claim binds only where the claimRef was cleared. Tenant data is written as
        soon as it binds. Returns ``(claim name, bound)``."""
        pv = self.core.read_persistent_volume(pv_name)
        ref = pv.spec.claim_ref
        if ref is not None and ref.namespace != RESERVED_NAMESPACE:
            self.core.patch_persistent_volume(pv_name, {"spec": {"claimRef": None}})
            self.note("%s: claimRef %s/%s removed by an administrator" % (pv_name, ref.namespace, ref.name))
        elif ref is not None:
            self.note("%s is reserved for a wipe (claim %s/%s): the administrator leaves it alone" % (
                pv_name, ref.namespace, ref.name))
        name = self.ask_for(pv)
        claim = self.wait_bound(name, pv, wait)
        if claim is not None:
            self.write_payload(self.core.read_persistent_volume(pv_name), claim)
        else:
            self.note("claim %s asks for %s and waits (Pending)" % (name, pv_name))
        return name, claim is not None

    def settle_claim(self, name, pv_name, wait=90):
        """After the run: a claim still waiting for ``pv_name`` binds once the PV is
        Available (the tenant then writes its data), or, when it does not within
        ``wait`` seconds, is taken back by its owner. Returns whether it bound."""
        if name in self.claims:
            return True
        pv = self.core.read_persistent_volume(pv_name)
        ref = pv.spec.claim_ref
        claim = self.wait_bound(name, pv, wait if ref is None or ref.name == name else 0)
        if claim is not None:
            self.write_payload(self.core.read_persistent_volume(pv_name), claim)
            return True
        self.core.delete_namespaced_persistent_volume_claim(name, self.ns)
        self.note("claim %s for %s never bound; its owner deleted it" % (name, pv_name))
        return False

    def write_payload(self, pv, claim):
        """Random tenant data into the volume of ``pv`` (bound by ``claim``) on the node;
        remembered by the model."""
        path = pv.spec.local.path
        block = pv.spec.volume_mode == "Block"
        data_id = uuid.uuid4().hex[:8]
        if block:
            cmd = ("head -c %d /dev/urandom > /tmp/%s && dd if=/tmp/%s of=%s bs=1M seek=1 conv=fsync,notrunc "
                   "status=none && sync && sha256sum /tmp/%s && base64 -w0 /tmp/%s && rm /tmp/%s"
                   % ((PAYLOAD_BLOCKS * BLOCK, data_id, data_id, path) + (data_id,) * 3))
        else:
            cmd = ("head -c %d /dev/urandom > %s/lpvm-%s && sync && sha256sum %s/lpvm-%s && base64 -w0 %s/lpvm-%s"
                   % ((PAYLOAD_BLOCKS * BLOCK, path, data_id) + (path, data_id) * 2))
        res = self.sh(cmd)
        lines = res.stdout.splitlines()
        sha = lines[0].split()[0]
        raw = base64.b64decode(lines[1])
        blocks = [hashlib.blake2b(raw[i:i + BLOCK], digest_size=16).hexdigest() for i in range(0, len(raw), BLOCK)]
        self.payloads[data_id] = {"pv": pv.metadata.name, "blocks": blocks, "sha": sha, "block": block,
                                  "file": "lpvm-%s" % data_id, "protected": True,
                                  "claim": claim.metadata.uid}
        self.note("tenant data %s written into %s (%s)" % (data_id, pv.metadata.name, path))
        return data_id

    def payload_sha_through_pv(self, payload, pv):
        path = pv.spec.local.path
        if payload["block"]:
            cmd = "dd if=%s bs=1M skip=1 count=%d iflag=count_bytes status=none | sha256sum" % (
                path, PAYLOAD_BLOCKS * BLOCK)
        else:
            cmd = "sha256sum %s/%s" % (path, payload["file"])
        res = self.sh(cmd, check=False)
        return res.stdout.split()[0] if res.returncode == 0 and res.stdout else None

    # ------------------------------------------------------------------ disks as stored
    def block_digests(self, disks=None):
        """{digest of a non-zero 4 KiB block: count} over the work disks' images."""
        self.sh("sync", check=False)
        found = {}
        for disk in disks or self.disks:
            subprocess.run(["blockdev", "--flushbufs", disk], check=False)
            for part in sorted(os.listdir("/sys/block/%s" % os.path.basename(disk))):
                if part.startswith(os.path.basename(disk) + "p"):
                    subprocess.run(["blockdev", "--flushbufs", "/dev/" + part], check=False)
            with open(self.images[disk], "rb") as handle:
                fd = handle.fileno()
                size = os.fstat(fd).st_size
                offset = 0
                while offset < size:
                    try:
                        start = os.lseek(fd, offset, os.SEEK_DATA)
                    except OSError:
                        break
                    start -= start % BLOCK
                    end = os.lseek(fd, start, os.SEEK_HOLE)
                    handle.seek(start)
                    for _offset in range(start, end, BLOCK):
                        block = handle.read(BLOCK)
                        if block.count(0) != len(block):
                            key = hashlib.blake2b(block, digest_size=16).hexdigest()
                            found[key] = found.get(key, 0) + 1
                    offset = end
        return found

    def whole_digest(self, disk):
        self.sh("sync", check=False)
        subprocess.run(["blockdev", "--flushbufs", disk], check=False)
        digest = hashlib.blake2b(digest_size=16)
        with open(self.images[disk], "rb") as handle:
            fd = handle.fileno()
            size = os.fstat(fd).st_size
            offset = 0
            while offset < size:
                try:
                    start = os.lseek(fd, offset, os.SEEK_DATA)
                except OSError:
                    break
                start -= start % BLOCK
                end = os.lseek(fd, start, os.SEEK_HOLE)
                handle.seek(start)
                for at in range(start, end, BLOCK):
                    block = handle.read(BLOCK)
                    if block.count(0) != len(block):
                        digest.update(b"%d:" % at + block)
                offset = end
        return digest.hexdigest()

    def node_state(self):
        """fstab lines and mounts of the model's volumes: what a check run must not change."""
        res = self.sh("grep -h ' %s/lpvm' /etc/fstab; findmnt -rn -o TARGET,SOURCE,UUID | grep '^%s/%s' ; "
                      "ls -l %s | grep lpvm; true" % (ROOT, ROOT, self.tag, ROOT), check=False)
        return res.stdout

    def unmount_disk(self, disk):
        """Unmount what is mounted from ``disk`` or its partitions (fstab stays)."""
        self.sh('for src in %s %sp*; do [ -b "$src" ] || continue; '
                'for t in $(findmnt -rn -o TARGET -S "$src"); do umount "$t"; done; done' % (disk, disk))

    def unmounted_disks(self):
        mounted = self.sh("findmnt -rn -o SOURCE", check=False).stdout.split()
        return [d for d in self.disks if not any(m == d or m.startswith(d + "p") for m in mounted)]

    # ------------------------------------------------------------------ invariants
    def snapshot(self):
        """What the invariants compare a step with: the PVs at each canonical (node, path)."""
        keys = {}
        for pv in self.pvs():
            if pv.spec.local is None:
                continue
            keys.setdefault((pv_hostname(pv), canonical(pv.spec.local.path)), set()).add(pv.metadata.uid)
        return keys

    def check(self, before, step):
        """Every invariant after ``step``; raises Violation naming the first that fails."""
        problems = []
        pvs = self.pvs()
        by_name = dict((pv.metadata.name, pv) for pv in pvs)
        # 1. tenant data: every block of every protected payload is still stored, and
        #    a bound PV still shows it through its path
        digests = self.block_digests()
        mounts = {}
        for line in self.sh("findmnt -rn -o TARGET,UUID", check=False).stdout.splitlines():
            parts = line.split()
            if parts:
                mounts[parts[0]] = parts[1] if len(parts) == 2 else None
        for data_id, payload in self.payloads.items():
            if not payload["protected"]:
                continue
            missing = [b for b in payload["blocks"] if not digests.get(b)]
            if missing:
                problems.append("tenant data %s of %s: %d of %d blocks are gone from the disks" % (
                    data_id, payload["pv"], len(missing), len(payload["blocks"])))
            pv = by_name.get(payload["pv"])
            if pv is not None and pv.status.phase == "Bound" and payload.get("claim") and \
                    pv.spec.claim_ref and pv.spec.claim_ref.uid == payload["claim"]:
                seen = self.payload_sha_through_pv(payload, pv)
                if seen is None and not missing and not payload["block"] \
                        and canonical(pv.spec.local.path) not in mounts \
                        and self.remount_told(step, pv.spec.local.path):
                    # the path lost its mount by a move (a reboot in which the disk came back
                    # late), not by the tool; the data is on the disk and the run says how to
                    # mount it again
                    self.note("bound PV %s: nothing mounted at %s, its tenant's data %s is on the disk and the "
                              "run says how to mount it" % (pv.metadata.name, pv.spec.local.path, data_id))
                elif seen != payload["sha"]:
                    problems.append("bound PV %s no longer shows its tenant's data %s at %s (%s)" % (
                        pv.metadata.name, data_id, pv.spec.local.path,
                        "missing" if seen is None else "different content"))
        # 2. exactly one PV per canonical (node, path): the tool never adds one where one is
        after = self.snapshot()
        for key, uids in after.items():
            new = uids - before.get(key, set()) - self.made_by_model
            ours = [pv for pv in pvs if pv.metadata.uid in uids and (pv.metadata.labels or {}).get(MANAGED)]
            if new and (len(uids) > 1):
                problems.append("%d PVs at node %s path %s (%s), one made in this step" % (
                    len(uids), key[0], key[1], ", ".join(sorted(p.metadata.name for p in pvs
                                                                if p.metadata.uid in uids))))
            elif len(ours) > 1:
                problems.append("%d PVs of ours at node %s path %s" % (len(ours), key[0], key[1]))
        # 3. every PV of ours matches its disk's recorded identity; a bound PV's never changes
        for pv in pvs:
            if (pv.metadata.labels or {}).get(RUN_LABEL) != self.tag:
                continue
            ann = pv.metadata.annotations or {}
            path = canonical(pv.spec.local.path)
            if ann.get(FS_UUID) and mounts.get(path) and mounts[path] != ann[FS_UUID]:
                problems.append("PV %s records filesystem %s but %s holds %s" % (
                    pv.metadata.name, ann[FS_UUID], path, mounts[path]))
            seen = self.bound_identity.get(pv.metadata.name)
            if seen and pv.spec.claim_ref and pv.spec.claim_ref.uid == seen[0]:
                now = (seen[0], ann.get(FS_UUID), ann.get(STABLE_ID))
                if now != seen:
                    problems.append("bound PV %s changed its disk identity: fs-uuid %s -> %s, stable-id %s -> %s"
                                    % (pv.metadata.name, seen[1], now[1], seen[2], now[2]))
        # 4. a retired volume is not published again without a confirmation
        for name in sorted(self.retired):
            pv = by_name.get(self.pv_name(name))
            if pv is not None and (pv.metadata.labels or {}).get(RUN_LABEL) == self.tag:
                problems.append("retired volume %s is published again as %s (%s)" % (
                    name, pv.metadata.name, pv.status.phase))
        # 5. PVs not ours are never changed or deleted
        for name, (uid, path, labels) in sorted(self.foreign.items()):
            pv = by_name.get(name)
            if pv is None or pv.metadata.uid != uid:
                problems.append("the hand-made PV %s was deleted" % name)
            elif pv.spec.local.path != path or (pv.metadata.labels or {}) != labels:
                problems.append("the hand-made PV %s was changed (path %s, labels %s)" % (
                    name, pv.spec.local.path, pv.metadata.labels))
        # 6. a failed run says that nothing was changed, or what was
        for res in step.get("runs", []):
            if res.failed and not res.killed and res.data is not None:
                msgs = res.messages()
                if msgs and not any(HONEST_FAILURE.search(m) for m in msgs):
                    problems.append("a failed run does not say what it changed: %s" % " | ".join(msgs)[:600])
        if problems:
            raise Violation("after %s:\n  - %s" % (step.get("name"), "\n  - ".join(problems)))

    def remount_told(self, step, path):
        """Whether the latest site.yml run (of this step, else the model's last) failed
        with a message that names the volume at ``path`` and says ``mount <path>``:
        what the operator needs to give a bound PV whose mount is gone its data back."""
        def site(runs):
            return [r for r in runs if not r.killed and r.argv[-1].endswith("site.yml")][-1:]
        latest = site(step.get("runs", [])) or site(self.runs)
        if not latest or not latest[0].failed:
            return False
        told = re.compile(r"volume %s\b.*`mount %s`" % (re.escape(os.path.basename(path)), re.escape(path)))
        return any(told.search(m) for m in latest[0].messages())

    def audit_writes_since(self, since):
        """Writes by localpv.rollout since ``since`` to this model's objects (their names
        carry its tag) that were not dry runs."""
        out = []
        for ev in self.lab.audit_events(since=since):
            ref = ev.get("objectRef") or {}
            if self.tag not in (ref.get("name") or "") + (ref.get("namespace") or ""):
                continue
            if ev.get("verb") in ("create", "update", "patch", "delete") \
                    and (ev.get("userAgent") or "").startswith("localpv.rollout") \
                    and ev.get("stage") in (None, "ResponseComplete") \
                    and "dryRun=All" not in (ev.get("requestURI") or ""):
                out.append("%s %s" % (ev["verb"], ev.get("requestURI")))
        return out


def now_rfc3339():
    import datetime
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
