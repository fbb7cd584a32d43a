# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The localpv.rollout test lab: a real Kubernetes control plane and bare-metal-like nodes.

    lab.py up [--nodes N] [--disks SIZE,SIZE,...]   build what is missing, start what is stopped
    lab.py down                                     stop and remove everything the lab made
    lab.py status                                   say what runs (exit 0 only when all is up)
    lab.py env                                      shell exports for kubectl and ansible
    lab.py wipe-disks [HOST ...]                    give nodes blank disks again (all nodes by default)

Control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler built from
their Go modules (build-control-plane.sh) and kwok, which keeps the lab's Nodes Ready and
runs the Pods scheduled to them. All listen on 127.0.0.1 only.

Nodes: podman containers of a debootstrap image (build-node-image.sh), each with its own
sparse-file loop disks and an sshd on a 127.0.0.1 port. They run confined: SYS_ADMIN,
the host's /dev, and device-cgroup rules that allow only their own loop disks and loop
partitions, so a wrong device name cannot reach the machine's disk or another node's
whole disks. Each node is also a kwok Node; node3's Node name differs from its
kubernetes.io/hostname label, as on clusters whose nodes are named by FQDN.

Everything lives under $LOCALPV_LAB_STATE (default ~/.cache/localpv-lab/state); built
binaries and the node image are cached under $LOCALPV_LAB_CACHE (default
~/.cache/localpv-lab) and survive `down`.
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("LOCALPV_LAB_CACHE") or os.path.expanduser("~/.cache/localpv-lab")
# Several labs can run side by side (say, a CI run beside a developer's lab): each
# instance has its own state, ports and container names.
INSTANCE = int(os.environ.get("LOCALPV_LAB_INSTANCE") or 0)
STATE = os.environ.get("LOCALPV_LAB_STATE") or os.path.join(CACHE, "state" if not INSTANCE else "state-%d" % INSTANCE)

# Ports: one block of 1000 per instance, below the kernel's ephemeral range (Linux's
# default is 32768-60999): an outgoing connection can take any free port of that
# range, and a lab that lost its API server's or an sshd's port to one would fail at
# random (measured: a 24-node lab lost three nodes so). `up` checks the range it runs
# under and reserves (net.ipv4.ip_local_reserved_ports) whatever lies inside it.
MAX_INSTANCES = 10
PORT_BLOCK = 1000
FIRST_PORT = 20000


def port_block(instance):
    """The ports of ``instance``: [first, last]."""
    first = FIRST_PORT + PORT_BLOCK * instance
    return first, first + PORT_BLOCK - 1


_PORTS = port_block(INSTANCE)[0]
ETCD_PORT = _PORTS + 379
ETCD_PEER_PORT = _PORTS + 380
KCM_PORT = _PORTS + 257
SCHEDULER_PORT = _PORTS + 259
KWOK_PORT = _PORTS + 280
APISERVER_PORT = _PORTS + 443
SSH_BASE_PORT = _PORTS + 500          # node i listens on SSH_BASE_PORT + i
MAX_NODES = PORT_BLOCK - 500 - 1
SERVICE_CIDR = "10.96.0.0/16"

CONTAINER_PREFIX = "localpv-lab-" if not INSTANCE else "localpv-lab%d-" % INSTANCE
DEFAULT_NODES = 3
# Three disks per node, sizes differ; xfs needs at least 300 MB.
DEFAULT_DISKS = ("1G", "2G", "512M")


def log(msg):
    print("lab: %s" % msg, file=sys.stderr, flush=True)


def path(*parts):
    return os.path.join(STATE, *parts)


def run(cmd, check=True, capture=True, env=None, **kw):
    res = subprocess.run(cmd, check=False, text=True, env=env,
                         stdout=subprocess.PIPE if capture else None,
                         stderr=subprocess.PIPE if capture else None, **kw)
    if check and res.returncode != 0:
        raise SystemExit("lab: command failed (%d): %s\n%s%s" % (
            res.returncode, " ".join(cmd), res.stdout or "", res.stderr or ""))
    return res


def versions():
    vals = {}
    with open(os.path.join(HERE, "versions.env")) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                vals[k] = v
    return vals


def bin_dir():
    v = versions()
    return os.path.join(CACHE, "bin", "%s-%s" % (v["K8S_VERSION"], v["KWOK_VERSION"]))


def binary(name):
    return os.path.join(bin_dir(), name)


# ---------------------------------------------------------------- podman

def podman_env():
    """podman settings this machine needs (see the lab notes): runc, cgroupfs and
    ulimits within the hard limit, in files the lab owns, with a lab-owned graphroot
    in the cache so that the node image survives `down`."""
    conf_dir = os.path.join(CACHE, "podman")
    os.makedirs(conf_dir, exist_ok=True)
    hard = min(20000, _hard_nofile())
    containers_conf = os.path.join(conf_dir, "containers.conf")
    storage_conf = os.path.join(conf_dir, "storage.conf")
    _write_if_changed(containers_conf, (
        "[containers]\n"
        "default_ulimits = [\"nofile=%d:%d\", \"nproc=%d:%d\"]\n"
        "[engine]\n"
        "runtime = \"runc\"\n"
        "cgroup_manager = \"cgroupfs\"\n"
        "events_logger = \"file\"\n" % (hard, hard, hard, hard)))
    _write_if_changed(storage_conf, (
        "[storage]\n"
        "driver = \"overlay\"\n"
        "graphroot = \"%s\"\n"
        "runroot = \"%s\"\n" % (os.path.join(CACHE, "podman-storage"), "/run/localpv-lab-podman")))
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = containers_conf
    env["CONTAINERS_STORAGE_CONF"] = storage_conf
    return env


def _hard_nofile():
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 20000 if hard == resource.RLIM_INFINITY else hard


def _write_if_changed(file, text, mode=0o644):
    try:
        with open(file) as f:
            if f.read() == text:
                return False
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(file), exist_ok=True)
    with open(file, "w") as f:
        f.write(text)
    os.chmod(file, mode)
    return True


def podman(*args, check=True):
    return run(["podman"] + list(args), check=check, env=podman_env())


# ---------------------------------------------------------------- certificates

def make_pki():
    """A CA, the API server's serving cert, client certs per component, and the
    service-account signing key. Made once per lab; `down` removes them."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
    import ipaddress

    pki = path("pki")
    if os.path.exists(os.path.join(pki, "done")):
        return
    os.makedirs(pki, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    later = now + datetime.timedelta(days=365)

    def key_pem(key):
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def save(name, data, mode=0o600):
        with open(os.path.join(pki, name), "wb") as f:
            f.write(data)
        os.chmod(os.path.join(pki, name), mode)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localpv-lab-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(later)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
          # Python 3.13 verifies strictly (VERIFY_X509_STRICT): a CA needs a subject key
          # identifier and every certificate it signs an authority key identifier.
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    save("ca.key", key_pem(ca_key))
    save("ca.crt", ca.public_bytes(serialization.Encoding.PEM), 0o644)

    def issue(name, cn, orgs=(), server=False):
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
        b = (x509.CertificateBuilder().subject_name(x509.Name(attrs)).issuer_name(ca_name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now).not_valid_after(later)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
             .add_extension(x509.ExtendedKeyUsage(
                 [ExtendedKeyUsageOID.SERVER_AUTH] if server else [ExtendedKeyUsageOID.CLIENT_AUTH]),
                 critical=False))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.DNSName("kubernetes"),
                x509.DNSName("kubernetes.default"), x509.DNSName("kubernetes.default.svc"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("10.96.0.1"))]), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        save(name + ".key", key_pem(key))
        save(name + ".crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)

    issue("apiserver", "kube-apiserver", server=True)
    issue("admin", "lab-admin", ["system:masters"])
    issue("kube-controller-manager", "system:kube-controller-manager")
    issue("kube-scheduler", "system:kube-scheduler")
    issue("kwok", "kwok-controller", ["system:masters"])
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    save("sa.key", key_pem(sa))
    save("sa.pub", sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
    with open(os.path.join(pki, "done"), "w") as f:
        f.write("ok\n")


def write_kubeconfig(name, user):
    pki = path("pki")
    text = """apiVersion: v1
kind: Config
clusters:
- name: localpv-lab
  cluster:
    server: https://127.0.0.1:%d
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: localpv-lab
  context: {cluster: localpv-lab, user: %s}
current-context: localpv-lab
""" % (APISERVER_PORT, os.path.join(pki, "ca.crt"), user, os.path.join(pki, user + ".crt"),
       os.path.join(pki, user + ".key"), user)
    _write_if_changed(path(name), text, 0o600)
    return path(name)


# ---------------------------------------------------------------- processes

def _pid_alive(name):
    try:
        with open(path("run", name + ".pid")) as f:
            pid = int(f.read().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmd = f.read().split(b"\0")[0].decode()
    except FileNotFoundError:
        return None
    return pid if os.path.basename(cmd) == name else None


def start_process(name, args):
    if _pid_alive(name):
        return False
    os.makedirs(path("run"), exist_ok=True)
    os.makedirs(path("logs"), exist_ok=True)
    logf = open(path("logs", name + ".log"), "ab")
    proc = subprocess.Popen([binary(name)] + args, stdout=logf, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd=STATE)
    with open(path("run", name + ".pid"), "w") as f:
        f.write("%d\n" % proc.pid)
    # until the child has exec'd, /proc shows it as a copy of us: wait for that to
    # pass, so that a later check does not take a starting process for a dead one
    deadline = time.time() + 5
    while not _pid_alive(name) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    log("started %s (pid %d)" % (name, proc.pid))
    return True


def stop_process(name):
    pid = _pid_alive(name)
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 10
        while _pid_alive(name) and time.time() < deadline:
            time.sleep(0.1)
        if _pid_alive(name):
            os.kill(pid, signal.SIGKILL)
        log("stopped %s" % name)
    try:
        os.unlink(path("run", name + ".pid"))
    except FileNotFoundError:
        pass


def wait_for(what, check, timeout=90, name=None, detail=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - anything means "not yet"
            pass
        if name and not _pid_alive(name):
            raise SystemExit("lab: %s exited; the end of %s:\n%s" % (
                name, path("logs", name + ".log"), _tail(path("logs", name + ".log"))))
        time.sleep(0.3)
    raise SystemExit("lab: timed out waiting for %s%s%s" % (
        what, "; see %s" % path("logs", name + ".log") if name else "",
        "\n" + detail() if detail else ""))


def _tail(file, lines=15):
    try:
        with open(file, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _https_ok(url, verify=True):
    if verify:
        ctx = ssl.create_default_context(cafile=path("pki", "ca.crt"))
        ctx.load_cert_chain(path("pki", "admin.crt"), path("pki", "admin.key"))
    else:
        # the controller manager and scheduler serve self-signed certificates
        ctx = ssl._create_unverified_context()  # noqa: S323
    with urllib.request.urlopen(url, context=ctx, timeout=3) as r:
        return r.status == 200


def _http_ok(url):
    with urllib.request.urlopen(url, timeout=3) as r:
        return r.status == 200


AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
# Writes to the objects whose order of operations the tests prove, at Metadata level
# (who, what, when, response code). Heartbeats (leases, node and pod status) are left
# out: they are kwok's noise, not ours.
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
  resources:
  - group: ""
    resources: [pods, pods/eviction, pods/binding, persistentvolumeclaims, persistentvolumes,
                nodes, namespaces, serviceaccounts, serviceaccounts/token]
  - group: storage.k8s.io
    resources: [storageclasses]
  - group: apps
    resources: [deployments, statefulsets, replicasets]
  - group: policy
    resources: [poddisruptionbudgets]
  - group: rbac.authorization.k8s.io
# The reads and reviews of the lab's admin (the identity the playbooks run as), at
# Metadata level: the events carry the user agent, so a test counts the requests the
# collection itself sent (tests/integration/test_controller_pass.py).
- level: Metadata
  users: [lab-admin]
  verbs: [get, list, create]
  resources:
  - group: ""
    resources: [persistentvolumes, persistentvolumeclaims, pods, nodes]
  - group: storage.k8s.io
    resources: [storageclasses]
  - group: authorization.k8s.io
    resources: [selfsubjectaccessreviews]
  - group: authentication.k8s.io
    resources: [selfsubjectreviews]
- level: None
"""


def apiserver_args(wanted):
    """The extra kube-apiserver flags of this lab (``up --apiserver-arg``), kept in the
    state so that a plain ``up`` keeps them. A running API server started with other
    flags is stopped here, so that start_control_plane starts it with these."""
    saved_path = path("apiserver-args.json")
    try:
        with open(saved_path) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        saved = []
    if wanted is None:
        return saved
    wanted = [arg for arg in wanted if arg]
    if wanted != saved:
        stop_process("kube-apiserver")
        _write_if_changed(saved_path, json.dumps(wanted) + "\n")
    return wanted


def start_control_plane(extra_apiserver_args=()):
    make_pki()

    def pki(name):
        return path("pki", name)

    os.makedirs(path("etcd"), mode=0o700, exist_ok=True)
    start_process("etcd", [
        "--name=lab", "--data-dir=" + path("etcd"),
        "--listen-client-urls=http://127.0.0.1:%d" % ETCD_PORT,
        "--advertise-client-urls=http://127.0.0.1:%d" % ETCD_PORT,
        "--listen-peer-urls=http://127.0.0.1:%d" % ETCD_PEER_PORT,
        "--initial-advertise-peer-urls=http://127.0.0.1:%d" % ETCD_PEER_PORT,
        "--initial-cluster=lab=http://127.0.0.1:%d" % ETCD_PEER_PORT,
        "--listen-metrics-urls=", "--log-level=warn", "--quota-backend-bytes=4294967296",
        # the lab is throwaway: trade durability for speed on a shared disk
        "--unsafe-no-fsync",
    ])
    wait_for("etcd", lambda: _http_ok("http://127.0.0.1:%d/health" % ETCD_PORT), name="etcd")

    if _write_if_changed(path("audit-policy.yaml"), AUDIT_POLICY):
        stop_process("kube-apiserver")   # it reads its audit policy when it starts
    start_process("kube-apiserver", [
        "--etcd-servers=http://127.0.0.1:%d" % ETCD_PORT,
        "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
        "--secure-port=%d" % APISERVER_PORT,
        "--tls-cert-file=" + pki("apiserver.crt"), "--tls-private-key-file=" + pki("apiserver.key"),
        "--client-ca-file=" + pki("ca.crt"),
        "--service-account-key-file=" + pki("sa.pub"),
        "--service-account-signing-key-file=" + pki("sa.key"),
        "--service-account-issuer=https://kubernetes.default.svc",
        "--api-audiences=https://kubernetes.default.svc",
        "--authorization-mode=Node,RBAC",
        "--service-cluster-ip-range=" + SERVICE_CIDR,
        "--allow-privileged=true",
        "--audit-policy-file=" + path("audit-policy.yaml"),
        "--audit-log-path=" + path("logs", "audit.log"),
        "--audit-log-format=json", "--audit-log-maxbackup=1", "--audit-log-maxsize=200",
        "--audit-log-mode=blocking",
        "--profiling=false",
        # the kubernetes Service endpoint cannot point at loopback; the lab needs none
        "--endpoint-reconciler-type=none",
    ] + list(extra_apiserver_args))
    wait_for("kube-apiserver", lambda: _https_ok("https://127.0.0.1:%d/readyz" % APISERVER_PORT),
             timeout=120, name="kube-apiserver")

    kcm = write_kubeconfig("kube-controller-manager.kubeconfig", "kube-controller-manager")
    start_process("kube-controller-manager", [
        "--kubeconfig=" + kcm, "--authentication-kubeconfig=" + kcm, "--authorization-kubeconfig=" + kcm,
        "--bind-address=127.0.0.1", "--secure-port=%d" % KCM_PORT,
        "--leader-elect=false", "--use-service-account-credentials=true",
        "--service-account-private-key-file=" + pki("sa.key"), "--root-ca-file=" + pki("ca.crt"),
        "--cluster-signing-cert-file=" + pki("ca.crt"), "--cluster-signing-key-file=" + pki("ca.key"),
        # The default set: PV binder, PV/PVC protection, node lifecycle, GC, namespace,
        # replicaset, deployment, statefulset, disruption, service accounts...; the
        # cloud ones stay off without a cloud provider.
        "--controllers=*",
        "--node-monitor-grace-period=40s",
    ])
    sched = write_kubeconfig("kube-scheduler.kubeconfig", "kube-scheduler")
    start_process("kube-scheduler", [
        "--kubeconfig=" + sched, "--authentication-kubeconfig=" + sched,
        "--authorization-kubeconfig=" + sched,
        "--bind-address=127.0.0.1", "--secure-port=%d" % SCHEDULER_PORT, "--leader-elect=false",
    ])
    kwok = write_kubeconfig("kwok.kubeconfig", "kwok")
    start_process("kwok", [
        "--kubeconfig=" + kwok,
        "--config=" + binary("kwok-stages.yaml"),
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--node-lease-duration-seconds=40",
        "--server-address=127.0.0.1:%d" % KWOK_PORT,
    ])
    for name, port in (("kube-controller-manager", KCM_PORT), ("kube-scheduler", SCHEDULER_PORT)):
        wait_for(name, lambda p=port: _https_ok("https://127.0.0.1:%d/healthz" % p, verify=False), name=name)


def kubectl(*args, stdin=None, check=True):
    return run([binary("kubectl"), "--kubeconfig", path("kubeconfig")] + list(args),
               input=stdin, check=check)


# ---------------------------------------------------------------- nodes

def node_names(n):
    """(inventory host, Kubernetes node name, kubernetes.io/hostname label) per node.

    node3's Node is named by FQDN while its hostname label is the short name, as
    kubelets with --hostname-override or cloud node names do; PVs must use the label."""
    out = []
    for i in range(1, n + 1):
        host = "node%d" % i
        node = host + ".lab.example" if i == 3 else host
        out.append((host, node, host))
    return out


def kwok_nodes(nodes):
    docs = []
    for n in nodes:
        docs.append({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {
                "name": n["node_name"],
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {"kubernetes.io/hostname": n["hostname_label"], "kubernetes.io/os": "linux",
                           "kubernetes.io/arch": "amd64", "type": "kwok", "localpv-lab/node": "true"},
            },
            "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                       "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"}},
        })
    kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))


def set_node_machine_id(node_name, value):
    """What a kubelet reports from /etc/machine-id, on the status the API server keeps
    apart from the object (kwok's stages keep nodeInfo as they find it)."""
    kubectl("patch", "node", node_name, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"nodeInfo": {"machineID": value}}}))


def _losetup_for(image):
    res = run(["losetup", "-j", image, "-O", "NAME", "-n"], check=False)
    names = [line.strip() for line in res.stdout.splitlines() if line.strip()]
    return names[0] if names else None


def attach_disks(host, sizes):
    """Sparse image files per node, attached as loop devices (re-used when attached)."""
    disks = []
    os.makedirs(path("disks"), exist_ok=True)
    for i, size in enumerate(sizes):
        image = path("disks", "%s-disk%d.img" % (host, i))
        if not os.path.exists(image):
            run(["truncate", "-s", size, image])
        dev = _losetup_for(image)
        if not dev:
            dev = run(["losetup", "-f", "--show", image]).stdout.strip()
            # an image partitioned earlier: this kernel parses no partition tables, so
            # partitions must be announced explicitly (lab notes)
            run(["partx", "-a", dev], check=False)
        st = os.stat(dev)
        disks.append({"path": dev, "image": image, "size": os.path.getsize(image),
                      "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev)})
    return disks


def container_state(name):
    """(running, label) of a lab node container; (None, None) when there is none. The
    label records what the container was made from: its disks, its image and the SSH
    key it trusts."""
    res = podman("inspect", "--type", "container", "--format",
                 "{{.State.Running}} {{index .Config.Labels \"localpv-lab.made-from\"}}", name, check=False)
    if res.returncode != 0:
        return None, None
    running, made_from = (res.stdout.strip().split(" ", 1) + [""])[:2]
    return running == "true", made_from


def node_made_from(image, disks):
    """What a node container is made from, as one label value. A container kept from an
    earlier `up` is reused only when all of it is the same: its device rules name the
    loop devices, and its authorized_keys is a bind mount of a key file that `down`
    deletes (a new key file is a new inode the old container never sees)."""
    with open(path("ssh", "id_ed25519.pub"), "rb") as f:
        key = hashlib.sha256(f.read()).hexdigest()[:16]
    disk_key = ",".join("%d:%d" % (d["major"], d["minor"]) for d in disks)
    return "disks=%s;image=%s;key=%s" % (disk_key, image, key)


def machine_id(host):
    """The node's own machine id, made once and kept in the lab's state: a real host
    has one of its own (the image must not bake one in that every node shares), and
    its kwok Node reports it as status.nodeInfo.machineID, as a kubelet does."""
    file = path("machine-ids", host)
    if not os.path.exists(file):
        os.makedirs(path("machine-ids"), exist_ok=True)
        _write_if_changed(file, uuid.uuid4().hex + "\n")
    with open(file) as f:
        return f.read().strip()


def start_node(image, host, port, disks):
    name = CONTAINER_PREFIX + host
    # the machine id is part of what the container was made with, as its disks are
    made_from = node_made_from(image, disks) + ";machine-id=" + machine_id(host)
    running, recorded = container_state(name)
    if running is not None and recorded == made_from:
        # the disks (and fstab inside) carry the state; the container only runs sshd
        if not running:
            podman("start", name)
        log("%s node %s (ssh 127.0.0.1:%d)" % ("kept" if running else "restarted", host, port))
        return
    if running is not None:
        podman("rm", "-f", "-t", "2", name)
        log("removed node container %s: made from other disks, image or SSH key" % name)
    args = ["run", "-d", "--name", name, "--hostname", host, "--network", "host",
            "--label", "localpv-lab.made-from=" + made_from,
            "--cap-add", "SYS_ADMIN", "--security-opt", "unmask=/sys/dev/block",
            "--security-opt", "label=disable",
            "-v", "/dev:/dev", "-e", "NODE_SSH_PORT=%d" % port,
            "-v", "%s:/etc/ssh/lab_authorized_keys:ro" % path("ssh", "id_ed25519.pub"),
            "-v", "%s:/etc/machine-id:ro" % path("machine-ids", host),
            "--device-cgroup-rule", "b 259:* rwm"]
    for d in disks:
        args += ["--device-cgroup-rule", "b %d:%d rwm" % (d["major"], d["minor"])]
    args.append(image)
    podman(*args)
    log("started node %s (ssh 127.0.0.1:%d, disks %s)" % (host, port, " ".join(d["path"] for d in disks)))


def node_diagnosis(container, port):
    """Why a node answers no SSH: its container's state, its log and the last ssh error."""
    state = podman("inspect", "--type", "container", "--format",
                   "{{.State.Status}} (exit code {{.State.ExitCode}}, started {{.State.StartedAt}})",
                   container, check=False)
    logs = podman("logs", "--tail", "15", container, check=False)
    probe = run(ssh_args(port) + ["true"], check=False)
    return "container %s: %s\nits log:\n%s\nssh -p %d: %s" % (
        container, (state.stdout or state.stderr).strip(), (logs.stdout + logs.stderr).strip(),
        port, (probe.stderr or "exit %d" % probe.returncode).strip())


def ssh_key():
    key = path("ssh", "id_ed25519")
    if not os.path.exists(key):
        os.makedirs(path("ssh"), mode=0o700, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "localpv-lab", "-f", key])
    return key


def ssh_args(port):
    return ["ssh", "-i", path("ssh", "id_ed25519"), "-p", str(port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            "root@127.0.0.1"]


def _ssh_ok(port):
    return run(ssh_args(port) + ["true"], check=False).returncode == 0


XFS_MIN = 300 * 2 ** 20


def site_disks(node):
    """The disks `make site` prepares on a lab node: one whole-disk xfs volume, one disk
    split into two ext4 partitions, one raw block volume, and the seed layout's bind
    mount of a directory. With fewer disks the layout keeps the first kinds (one disk:
    the whole-disk volume only; ext4 when a disk is too small for xfs); disks past the
    third are left to the tests. Tests choose their own; only site-vars.yml points at these."""
    disks = node["disks"]
    wanted = []
    if disks:
        wanted.append({"name": "ssd0", "device": disks[0]["path"],
                       "fstype": "xfs" if disks[0]["size"] >= XFS_MIN else "ext4"})
    if len(disks) > 1:
        wanted.append({"name": "data", "device": disks[1]["path"], "partitions": 2, "fstype": "ext4"})
    if len(disks) > 2:
        wanted.append({"name": "raw0", "device": disks[2]["path"], "mode": "block"})
    return wanted + [{"name": "vol1", "bind": "/data/k8s/localpv/vol1", "capacity": "1G"}]


SITE_VARS = """# Written by lab/lab.py: what `make site` prepares on the lab nodes (see site_disks).
localpv_disks: "{{ lab_site_disks }}"
# The lab's nodes have no udev, so no /dev/disk/by-partuuid: the block volume raw0
# links to its kernel name, which a real host without udev must opt in to.
localpv_allow_kernel_names: true
"""


def write_inventory(nodes):
    lines = ["# Written by lab/lab.py; the lab's nodes as an Ansible inventory.",
             "all:", "  children:", "    nodes:", "      hosts:"]
    for n in nodes:
        lines += [
            "        %s:" % n["host"],
            "          ansible_host: 127.0.0.1",
            "          ansible_port: %d" % n["ssh_port"],
            "          localpv_node_name: %s" % n["node_name"],
            "          lab_disks: %s" % json.dumps([d["path"] for d in n["disks"]]),
            "          lab_site_disks: %s" % json.dumps(site_disks(n)),
        ]
    lines += [
        "  vars:",
        "    ansible_user: root",
        "    ansible_python_interpreter: /usr/bin/python3",
        "    ansible_ssh_private_key_file: %s" % path("ssh", "id_ed25519"),
        "    ansible_ssh_common_args: >-",
        "      -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "      -o ControlMaster=auto -o ControlPersist=60s",
        # a node whose sshd stops answering is given up after about a minute, not waited for
        "      -o ServerAliveInterval=15 -o ServerAliveCountMax=4",
        # %C: one master connection per host/port (a fixed path would send every
        # host's tasks down the first host's connection)
        "      -o ControlPath=%s" % path("ssh", "cm-%C"),
        "    localpv_kubeconfig: %s" % path("kubeconfig"),
        "",
    ]
    _write_if_changed(path("inventory.yml"), "\n".join(lines))
    _write_if_changed(path("site-vars.yml"), SITE_VARS)


# ---------------------------------------------------------------- ports

EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
RESERVED_PORTS = "/proc/sys/net/ipv4/ip_local_reserved_ports"


def lab_ports(nodes):
    """{what: (port, owner)} of every port the lab listens on; owner says whether the
    lab's own process or container holds it already (then it is not free, rightly)."""
    ports = {}
    for name, numbers in (("etcd", (ETCD_PORT, ETCD_PEER_PORT)), ("kube-apiserver", (APISERVER_PORT,)),
                          ("kube-controller-manager", (KCM_PORT,)), ("kube-scheduler", (SCHEDULER_PORT,)),
                          ("kwok", (KWOK_PORT,))):
        for port in numbers:
            ports["%s %d" % (name, port)] = (port, lambda n=name: bool(_pid_alive(n)))
    for host, port in nodes:
        ports["sshd of %s" % host] = (port, lambda h=host: bool(container_state(CONTAINER_PREFIX + h)[0]))
    return ports


def _port_free(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # as the servers do: a listener or a live connection on the port is in the way, a
    # TIME_WAIT left by the last lab is not
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def check_same_layout():
    """A lab started by a lab.py with other ports cannot be brought up in place: its
    processes and sshds listen where the new inventory and kubeconfig would not look."""
    try:
        with open(path("lab.json")) as f:
            running = json.load(f).get("apiserver")
    except FileNotFoundError:
        return
    wanted = "https://127.0.0.1:%d" % APISERVER_PORT
    if running and running != wanted:
        raise SystemExit("lab: instance %d runs with other ports (API server %s, this lab.py wants %s): take it "
                         "down first (make lab-down, or lab.py down), then up again" % (INSTANCE, running, wanted))


def check_ports_free(ports):
    """Stop, naming each port and who holds it, when a port the lab is about to
    listen on is taken by anything but the lab itself."""
    busy = []
    for what, (port, ours) in sorted(ports.items(), key=lambda item: item[1][0]):
        if not _port_free(port) and not ours():
            holder = run(["ss", "-Htanp", "sport = :%d" % port], check=False).stdout.strip()
            busy.append("127.0.0.1:%d (for %s) is in use%s" % (port, what, ": " + holder if holder else ""))
    if busy:
        raise SystemExit("lab: ports of instance %d are taken, so the lab cannot start:\n  %s\nstop what holds "
                         "them, or use another LOCALPV_LAB_INSTANCE (0-%d)" % (
                             INSTANCE, "\n  ".join(busy), MAX_INSTANCES - 1))


def _parse_ports(text):
    ports = set()
    for part in text.replace("\n", "").split(","):
        if "-" in part:
            low, high = part.split("-")
            ports.update(range(int(low), int(high) + 1))
        elif part.strip():
            ports.add(int(part))
    return ports


def _format_ports(ports):
    ranges, ordered = [], sorted(ports)
    for port in ordered:
        if ranges and port == ranges[-1][1] + 1:
            ranges[-1][1] = port
        else:
            ranges.append([port, port])
    return ",".join("%d" % a if a == b else "%d-%d" % (a, b) for a, b in ranges)


def reserve_ports(ports):
    """Reserve the lab's ports that lie inside the kernel's ephemeral range (none with
    the default range), so that no outgoing connection takes them while the lab lives;
    `down` releases them."""
    with open(EPHEMERAL_RANGE) as f:
        low, high = (int(x) for x in f.read().split())
    inside = set(p for p, _ours in ports.values() if low <= p <= high)
    if not inside:
        return
    with open(RESERVED_PORTS) as f:
        current = _parse_ports(f.read())
    with open(RESERVED_PORTS, "w") as f:
        f.write(_format_ports(current | inside) + "\n")
    mine = set(json.load(open(path("reserved-ports.json")))) if os.path.exists(path("reserved-ports.json")) else set()
    _write_if_changed(path("reserved-ports.json"), json.dumps(sorted(mine | inside)))
    log("ports %s lie in the ephemeral range %d-%d: reserved for the lab's life" % (
        _format_ports(inside), low, high))


def release_ports():
    try:
        with open(path("reserved-ports.json")) as f:
            mine = set(json.load(f))
    except FileNotFoundError:
        return
    with open(RESERVED_PORTS) as f:
        current = _parse_ports(f.read())
    with open(RESERVED_PORTS, "w") as f:
        f.write(_format_ports(current - mine) + "\n")
    log("released the reserved ports %s" % _format_ports(mine))


def parse_disk_sizes(text):
    """Disk sizes per node from --disks: one or more sizes truncate understands."""
    sizes = [s.strip() for s in (text or "").split(",") if s.strip()]
    bad = [s for s in sizes if not re.match(r"^[0-9]+[KMGT]?$", s)]
    if not sizes or bad:
        raise SystemExit("lab: --disks wants one or more sizes like 1G,600M (got %r)" % (text,))
    return sizes


# ---------------------------------------------------------------- commands

def cmd_up(args):
    t0 = time.time()
    if not 0 <= INSTANCE < MAX_INSTANCES or not 1 <= args.nodes <= MAX_NODES:
        raise SystemExit("lab: LOCALPV_LAB_INSTANCE must be 0-%d and --nodes 1-%d" % (MAX_INSTANCES - 1, MAX_NODES))
    sizes = parse_disk_sizes(args.disks) if args.disks else list(DEFAULT_DISKS)
    check_same_layout()
    ports = lab_ports([(host, SSH_BASE_PORT + i + 1) for i, (host, _n, _l) in enumerate(node_names(args.nodes))])
    check_ports_free(ports)
    os.makedirs(STATE, exist_ok=True)
    run(["bash", os.path.join(HERE, "build-control-plane.sh")], capture=False)
    image = run(["bash", os.path.join(HERE, "build-node-image.sh")], env=podman_env()).stdout.strip()
    reserve_ports(ports)
    start_control_plane(apiserver_args(args.apiserver_arg))
    write_kubeconfig("kubeconfig", "admin")
    ssh_key()

    nodes = []
    for i, (host, node_name, label) in enumerate(node_names(args.nodes)):
        port = SSH_BASE_PORT + i + 1
        disks = attach_disks(host, sizes)
        start_node(image, host, port, disks)
        nodes.append({"host": host, "node_name": node_name, "hostname_label": label, "machine_id": machine_id(host),
                      "ssh_port": port, "container": CONTAINER_PREFIX + host,
                      "disks": [{"path": d["path"], "size": d["size"], "image": d["image"]} for d in disks]})
    kwok_nodes(nodes)
    write_inventory(nodes)
    info = {"kubeconfig": path("kubeconfig"), "inventory": path("inventory.yml"),
            "audit_log": path("logs", "audit.log"), "image": image,
            "apiserver": "https://127.0.0.1:%d" % APISERVER_PORT,
            "ssh_key": path("ssh", "id_ed25519"), "bin_dir": bin_dir(), "nodes": nodes}
    _write_if_changed(path("lab.json"), json.dumps(info, indent=2) + "\n")
    for n in nodes:
        wait_for("ssh on %s" % n["host"], lambda p=n["ssh_port"]: _ssh_ok(p), timeout=60,
                 detail=lambda c=n["container"], p=n["ssh_port"]: node_diagnosis(c, p))
    wait_for("Nodes Ready", lambda: all(
        s == "True" for s in kubectl("get", "nodes", "-l", "localpv-lab/node=true", "-o",
                                     "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}")
        .stdout.split()) and len(kubectl("get", "nodes", "-o", "name").stdout.split()) >= len(nodes),
        timeout=60)
    # once kwok has initialised the Nodes' status, so that it finds the ids there and keeps them
    for n in nodes:
        set_node_machine_id(n["node_name"], n["machine_id"])
    log("up in %.1fs: %d nodes; kubeconfig %s, inventory %s" % (
        time.time() - t0, len(nodes), path("kubeconfig"), path("inventory.yml")))


def cmd_down(_args):
    env = podman_env()
    res = run(["podman", "ps", "-a", "--format", "{{.Names}}"], env=env, check=False)
    for name in res.stdout.split():
        if name.startswith(CONTAINER_PREFIX):
            run(["podman", "rm", "-f", "-t", "2", name], env=env, check=False)
            log("removed container %s" % name)
    for name in ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
        stop_process(name)
    disk_dir = path("disks")
    if os.path.isdir(disk_dir):
        for image in sorted(os.listdir(disk_dir)):
            full = os.path.join(disk_dir, image)
            while True:
                dev = _losetup_for(full)
                if not dev:
                    break
                # partition nodes of a loop disk stay in devtmpfs unless removed
                run(["partx", "-d", dev], check=False)
                run(["losetup", "-d", dev], check=False)
                log("detached %s (%s)" % (dev, image))
    release_ports()
    if os.path.isdir(STATE):
        shutil.rmtree(STATE)
    log("down")


def status():
    lines, ok = [], True
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
        pid = _pid_alive(name)
        ok &= bool(pid)
        lines.append("%-24s %s" % (name, "running (pid %d)" % pid if pid else "stopped"))
    try:
        with open(path("lab.json")) as f:
            info = json.load(f)
    except FileNotFoundError:
        return False, lines + ["nodes                    none (lab not up)"]
    for n in info["nodes"]:
        running = container_state(n["container"])[0]
        reach = running and _ssh_ok(n["ssh_port"])
        ok &= bool(reach)
        lines.append("%-24s %s, ssh 127.0.0.1:%d, Node %s, disks %s" % (
            n["host"], "up" if reach else "DOWN", n["ssh_port"], n["node_name"],
            " ".join(d["path"] for d in n["disks"])))
    return ok, lines


# Runs on a node (its own mount namespace and fstab): everything mounted from the
# given disks or their partitions is unmounted and its fstab line dropped, links under
# the mount root that point at them are removed, then partitions and signatures are
# wiped and the first MiB zeroed. Only the disks named on the command line.
WIPE_SCRIPT = r"""
set -u
for disk in "$@"; do
  for src in "$disk" "$disk"p*; do
    [ -b "$src" ] || continue
    for target in $(findmnt -rn -o TARGET -S "$src"); do
      umount -l "$target"
      sed -i "\#^[^[:space:]]*[[:space:]]$target[[:space:]]#d" /etc/fstab
    done
  done
  for link in /mnt/disks/*; do
    [ -L "$link" ] || continue
    case "$(readlink -f "$link")" in "$disk"|"$disk"p*) rm -f "$link" ;; esac
  done
  for part in "$disk"p*; do [ -b "$part" ] && wipefs -a -q "$part"; done
  partx -d "$disk" 2>/dev/null
  wipefs -a -q "$disk" && dd if=/dev/zero of="$disk" bs=1M count=1 conv=fsync status=none || exit 1
  # Blank means zero throughout: disk_prep samples content, and a loop disk's
  # discard punches holes in its image, so every byte reads zero again.
  blkdiscard -f "$disk" 2>/dev/null || exit 1
done
"""


def wipe_disks(node, only=None):
    """Give ``node`` (an entry of lab.json) blank disks (all, or the paths of ``only``);
    lab tests start from here."""
    disks = [d["path"] for d in node["disks"] if only is None or d["path"] in only]
    res = run(ssh_args(node["ssh_port"]) + ["sh", "-c", shlex.quote(WIPE_SCRIPT), "wipe"] + disks, check=False)
    if res.returncode != 0:
        raise SystemExit("lab: wiping the disks of %s failed: %s" % (node["host"], res.stderr.strip()))


def site_volume_names(entry):
    """The volume names `make site` makes of a site disk (one per partition)."""
    count = entry.get("partitions", 1)
    return [entry["name"]] if count == 1 else ["%s-%d" % (entry["name"], i + 1) for i in range(count)]


def site_labels(entry):
    """The GPT partition names a site disk carries once `make site` prepared it."""
    return ["localpv-" + name for name in site_volume_names(entry)]


def forget_site_pvs(node, entries):
    """Delete the unbound PVs of the site volumes on ``entries`` (site disks of ``node``
    just blanked): they record the ids of the disks as they were, and site.yml rightly
    refuses to make a volume again on its disk once those ids are gone from it. A bound
    PV is left, and said: its claim must go first. The PVs are found by the labels the
    collection puts on them, so nothing else is touched."""
    names = [name for e in entries for name in site_volume_names(e)]
    selector = "app.kubernetes.io/managed-by=localpv.rollout,localpv.rollout/node=%s,localpv.rollout/volume in (%s)" % (
        node["node_name"], ",".join(names))
    pvs = json.loads(kubectl("get", "pv", "-l", selector, "-o", "json").stdout)["items"]
    unbound = [pv["metadata"]["name"] for pv in pvs if not pv["spec"].get("claimRef")]
    bound = sorted(pv["metadata"]["name"] for pv in pvs if pv["spec"].get("claimRef"))
    if unbound:
        kubectl("delete", "pv", "--wait=true", "--timeout=60s", *sorted(unbound))
        log("deleted the site PVs %s of the blanked disks of %s" % (" ".join(sorted(unbound)), node["host"]))
    if bound:
        log("kept the bound site PVs %s of %s: delete their claims, then run this again" % (
            " ".join(bound), node["host"]))


def disk_labels(device):
    """The GPT partition names on ``device`` (read from the table itself), or None
    when it carries no partition table."""
    res = run(["sfdisk", "-J", device], check=False)
    if res.returncode != 0 or not res.stdout.strip():
        return None
    return [p.get("name") for p in json.loads(res.stdout)["partitiontable"].get("partitions", [])]


def cmd_site_ready(_args):
    """Blank the site disks that carry anything but the site layout (test
    leftovers, or nothing yet), and forget the site PVs that recorded them, so that
    `make site` works after `make test`, also after an earlier `make site`. Disks the
    site prepared already are left alone: a second `make site` changes nothing."""
    with open(path("lab.json")) as f:
        nodes = json.load(f)["nodes"]
    for node in nodes:
        stale = [e for e in site_disks(node) if e.get("device") and disk_labels(e["device"]) != site_labels(e)]
        if stale:
            wipe_disks(node, only=[e["device"] for e in stale])
            log("blanked %s of %s for the site layout" % (" ".join(e["device"] for e in stale), node["host"]))
            forget_site_pvs(node, stale)


def cmd_wipe_disks(args):
    with open(path("lab.json")) as f:
        nodes = json.load(f)["nodes"]
    for node in nodes:
        if not args.hosts or node["host"] in args.hosts:
            wipe_disks(node)
            log("wiped the disks of %s" % node["host"])


def cmd_status(_args):
    ok, lines = status()
    print("\n".join(lines))
    print("lab is %s" % ("up" if ok else "not up"))
    return 0 if ok else 1


def cmd_env(_args):
    print("export KUBECONFIG=%s" % path("kubeconfig"))
    print("export PATH=%s:$PATH" % bin_dir())
    print("export LOCALPV_LAB_INVENTORY=%s" % path("inventory.yml"))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build what is missing and start the lab (idempotent)")
    up.add_argument("--nodes", type=int, default=int(os.environ.get("LOCALPV_LAB_NODES", DEFAULT_NODES)))
    up.add_argument("--disks", default=os.environ.get("LOCALPV_LAB_DISKS"),
                    help="comma-separated disk sizes per node (default %s)" % ",".join(DEFAULT_DISKS))
    up.add_argument("--apiserver-arg", action="append", metavar="--FLAG=VALUE",
                    help="an extra kube-apiserver flag, e.g. --apiserver-arg=--max-requests-inflight=20 (repeatable; "
                         "kept for later plain `up`s; `up --apiserver-arg=` alone goes back to none)")
    sub.add_parser("down", help="stop and remove everything the lab made (idempotent)")
    sub.add_parser("status", help="say what runs; exit 0 only when the whole lab is up")
    sub.add_parser("env", help="print shell exports for kubectl and ansible")
    wipe = sub.add_parser("wipe-disks", help="unmount and wipe the lab disks of the given nodes (default all)")
    wipe.add_argument("hosts", nargs="*")
    sub.add_parser("site-ready", help="blank the site disks that hold anything but the site layout (test leftovers)")
    args = p.parse_args(argv)
    if os.geteuid() != 0 and args.command in ("up", "down"):
        raise SystemExit("lab: needs root (loop devices and podman with device rules)")
    commands = {"up": cmd_up, "down": cmd_down, "status": cmd_status, "env": cmd_env, "wipe-disks": cmd_wipe_disks,
                "site-ready": cmd_site_ready}
    return commands[args.command](args) or 0


if __name__ == "__main__":
    sys.exit(main())
