# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The execution environment (EE) that AWX and Automation Platform run the collection in.

    ee.py build          build it (or find the build of the same inputs) and print its image
    ee.py run [IMAGE]    run site.yml of the EE's copy of the collection against the lab

`build` runs ansible-builder 3 on ee/execution-environment.yml, on a Debian base image
the lab makes itself (lab/build-ee-base.sh), with this checkout's collection tarball and
the tarballs of its dependencies packed from the `ansible` package of the project's
venv. The image is tagged with a hash of all of that, so an unchanged checkout reuses
its build. `run` runs ansible-runner with container isolation, as AWX does: the lab's
inventory and site vars (what `make site` uses), host networking to reach the API
server and the nodes' sshd on 127.0.0.1, the kubeconfig and SSH key mounted read-only.

Everything goes under the lab cache: the tools' venv, the build directory, the image
store (the lab's podman graphroot), and ansible-runner's private data dir and artifacts.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import lab  # noqa: E402  (lab.py beside this file: the cache, the state and podman's settings)

# Pinned, in a venv of their own (they pin their own needs, apart from the project's):
# ansible-builder 3 builds the EE from its definition; bindep is what ansible-builder
# runs on bindep.txt (the tests read the node profile with it); ansible-runner is the
# engine AWX and Automation Platform run jobs with, and runs the EE here the same way
# (ansible-navigator would wrap the same runner in one more layer of settings).
TOOLS = ("ansible-builder==3.2.0", "bindep==2.14.0", "ansible-runner==2.4.3")
TOOLS_VENV = os.path.join(lab.CACHE, "builder-venv")
DEFINITION = os.path.join(REPO, "ee", "execution-environment.yml")
# what galaxy.yml depends on, and what those depend on in turn (community.general)
DEPENDENCIES = ("kubernetes.core", "community.general", "community.library_inventory_filtering_v1",
                "ansible.posix")
CHECKOUT_ID = hashlib.sha256(os.path.realpath(REPO).encode()).hexdigest()[:12]
WORK = os.path.join(lab.CACHE, "ee", CHECKOUT_ID)
PLAYBOOK = "localpv.rollout.site"
# the label that says which checkout built an image (its older builds are removed)
CHECKOUT_LABEL = "localpv-ee.checkout"


def log(msg):
    print("ee: " + msg, file=sys.stderr, flush=True)


def run(cmd, check=True, **kwargs):
    return subprocess.run(cmd, check=check, **kwargs)


def tools():
    """The bin directory of the venv with TOOLS, made (again) when the pins change."""
    stamp = os.path.join(TOOLS_VENV, ".tools")
    want = "\n".join(TOOLS)
    try:
        with open(stamp) as f:
            current = f.read()
    except FileNotFoundError:
        current = None
    if current != want:
        log("making the tools' venv %s (%s)" % (TOOLS_VENV, ", ".join(TOOLS)))
        shutil.rmtree(TOOLS_VENV, ignore_errors=True)
        run([sys.executable, "-m", "venv", TOOLS_VENV])
        run([os.path.join(TOOLS_VENV, "bin", "pip"), "install", "-q"] + list(TOOLS))
        with open(stamp, "w") as f:
            f.write(want)
    return os.path.join(TOOLS_VENV, "bin")


def _add(tar, name, data=None, directory=False, mode=0o644):
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if directory:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    else:
        info.size, info.mode = len(data), mode
        tar.addfile(info, io.BytesIO(data))


def _write_tarball(dest, members):
    """A gzipped tar of (name, bytes or None for a directory, mode), the same bytes for
    the same members, so that the container build's layer cache holds."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data, mode in members:
            _add(tar, name, data, directory=data is None, mode=mode)
    with open(dest, "wb") as f:
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
            gz.write(raw.getvalue())


def pack_installed(fqcn, dest):
    """The collection ``fqcn`` as installed by the `ansible` package, packed as the
    artifact `ansible-galaxy collection install` takes: MANIFEST.json, FILES.json and the
    files FILES.json lists (their checksums are checked at install)."""
    namespace, name = fqcn.split(".")
    root = os.path.join(sysconfig.get_paths()["purelib"], "ansible_collections", namespace, name)
    if not os.path.isfile(os.path.join(root, "MANIFEST.json")):
        raise SystemExit("ee: %s is not in the project's venv (%s): the `ansible` package brings it" % (fqcn, root))
    with open(os.path.join(root, "MANIFEST.json")) as f:
        manifest = json.load(f)
    with open(os.path.join(root, "FILES.json")) as f:
        files = json.load(f)
    # the `ansible` package leaves out some files its FILES.json lists (CI set-up such
    # as .github): list only what is there, and give MANIFEST.json the new checksum
    files["files"] = [e for e in files["files"]
                      if e["name"] == "." or os.path.lexists(os.path.join(root, e["name"]))]
    files_json = json.dumps(files, indent=4).encode()
    manifest["file_manifest_file"]["chksum_sha256"] = hashlib.sha256(files_json).hexdigest()
    members = [("MANIFEST.json", json.dumps(manifest, indent=4).encode(), 0o644), ("FILES.json", files_json, 0o644)]
    for entry in files["files"]:
        if entry["name"] == ".":
            continue
        path = os.path.join(root, entry["name"])
        if entry["ftype"] == "dir":
            members.append((entry["name"], None, 0o755))
        else:
            with open(path, "rb") as f:
                members.append((entry["name"], f.read(), os.stat(path).st_mode & 0o777))
    _write_tarball(dest, members)


def _files_json(tarball):
    with tarfile.open(tarball) as tar:
        return tar.extractfile("FILES.json").read()


def collection_tarballs(dest):
    """This checkout's tarball and its dependencies', in ``dest`` under the names
    ee/execution-environment.yml gives them."""
    os.makedirs(dest, exist_ok=True)
    dist = os.path.join(WORK, "dist")
    shutil.rmtree(dist, ignore_errors=True)
    run([os.path.join(os.path.dirname(sys.executable), "ansible-galaxy"), "collection", "build",
         "--output-path", dist, REPO], stdout=subprocess.DEVNULL)
    (built,) = [f for f in os.listdir(dist) if f.endswith(".tar.gz")]
    shutil.copyfile(os.path.join(dist, built), os.path.join(dest, "localpv-rollout.tar.gz"))
    for fqcn in DEPENDENCIES:
        pack_installed(fqcn, os.path.join(dest, fqcn.replace(".", "-") + ".tar.gz"))
    named = set(f for f in os.listdir(dest))
    with open(DEFINITION) as f:
        wanted = set(os.path.basename(c["name"]) for c in yaml.safe_load(f)["dependencies"]["galaxy"]["collections"])
    if named != wanted:
        raise SystemExit("ee: the definition names %s, the build has %s" % (sorted(wanted), sorted(named)))
    return sorted(os.path.join(dest, f) for f in named)


def base_image():
    res = run(["bash", os.path.join(HERE, "build-ee-base.sh")], env=lab.podman_env(), stdout=subprocess.PIPE,
              text=True)
    return res.stdout.strip().splitlines()[-1]


def image_exists(image):
    return run(["podman", "image", "exists", image], env=lab.podman_env(), check=False).returncode == 0


def build(force=False):
    """The EE image of this checkout: built, or found built from the same inputs."""
    t0 = time.time()
    bin_dir = tools()
    base = base_image()
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    definition = os.path.join(WORK, "execution-environment.yml")
    shutil.copyfile(DEFINITION, definition)
    tarballs = collection_tarballs(os.path.join(WORK, "collections"))
    # the tag: everything the image is made of (the tarballs by their file checksums,
    # which do not change with the time of the build)
    digest = hashlib.sha256()
    for part in [open(DEFINITION, "rb").read(), base.encode(), "\n".join(TOOLS).encode()] + \
            [_files_json(t) for t in tarballs]:
        digest.update(hashlib.sha256(part).digest())
    image = "localhost/localpv-ee:%s" % digest.hexdigest()[:12]
    if image_exists(image) and not force:
        log("%s is built from these inputs already (%.0fs)" % (image, time.time() - t0))
        return image
    log("building %s on %s" % (image, base))
    env = dict(lab.podman_env(), PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]))
    # host networking: pip in the build reaches PyPI only through the machine's network
    run([os.path.join(bin_dir, "ansible-builder"), "build", "-f", definition, "-c", os.path.join(WORK, "context"),
         "-t", image, "--container-runtime", "podman", "--build-arg", "EE_BASE_IMAGE=" + base,
         "--extra-build-cli-args=--network=host --label=%s=%s" % (CHECKOUT_LABEL, CHECKOUT_ID), "-v", "2"],
        env=env, cwd=WORK)
    log("built %s in %.0fs" % (image, time.time() - t0))
    drop_older_builds(image)
    return image


def drop_older_builds(image):
    """Remove this checkout's builds of other inputs (each holds its own collections and
    Python packages); other checkouts' builds and the layer cache stay."""
    listed = run(["podman", "images", "--filter", "label=%s=%s" % (CHECKOUT_LABEL, CHECKOUT_ID), "--format",
                  "{{.Repository}}:{{.Tag}}"], env=lab.podman_env(), stdout=subprocess.PIPE, text=True).stdout
    for old in sorted(set(listed.split()) - {image}):
        if old.startswith("localhost/localpv-ee:"):
            run(["podman", "rmi", old], env=lab.podman_env(), check=False, stdout=subprocess.DEVNULL)
            log("removed the older build %s" % old)


def _lab_info():
    try:
        with open(lab.path("lab.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        raise SystemExit("ee: no lab of instance %d runs (make lab-up)" % lab.INSTANCE)


def private_data_dir(info, ident):
    """ansible-runner's input, laid out as AWX lays it out: the lab's inventory (with
    the ssh control sockets in the container's own /tmp, not the host's), the site vars
    as extra vars, the project's ansible.cfg in the project directory."""
    pdd = os.path.join(lab.CACHE, "ee", "runner-%s-%d" % (CHECKOUT_ID, lab.INSTANCE))
    for sub in ("inventory", "env", "project"):
        shutil.rmtree(os.path.join(pdd, sub), ignore_errors=True)
        os.makedirs(os.path.join(pdd, sub))
    with open(info["inventory"]) as f:
        inventory = yaml.safe_load(f)
    common = inventory["all"]["vars"]["ansible_ssh_common_args"].split()
    common = ["ControlPath=/tmp/cm-%C" if arg.startswith("ControlPath=") else arg for arg in common]
    inventory["all"]["vars"]["ansible_ssh_common_args"] = " ".join(common)
    with open(os.path.join(pdd, "inventory", "hosts.yml"), "w") as f:
        yaml.safe_dump(inventory, f)
    shutil.copyfile(lab.path("site-vars.yml"), os.path.join(pdd, "env", "extravars"))
    with open(os.path.join(pdd, "env", "envvars"), "w") as f:
        yaml.safe_dump({"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}, f)
    shutil.copyfile(os.path.join(REPO, "ansible.cfg"), os.path.join(pdd, "project", "ansible.cfg"))
    return pdd


def run_site(image, ident=None, quiet=False):
    """site.yml through the EE with ansible-runner; the CompletedProcess (stdout is the
    playbook's output)."""
    bin_dir = tools()
    info = _lab_info()
    ident = ident or time.strftime("site-%Y%m%dT%H%M%S")
    pdd = private_data_dir(info, ident)
    pki = os.path.dirname(_kubeconfig_paths(info["kubeconfig"])[0])
    mounts = [info["kubeconfig"], pki, info["ssh_key"]]
    cmd = [os.path.join(bin_dir, "ansible-runner"), "run", pdd, "-p", PLAYBOOK, "--ident", ident,
           "--rotate-artifacts", "6", "--process-isolation", "--process-isolation-executable", "podman",
           "--container-image", image,
           # the API server and the nodes' sshd listen on the host's 127.0.0.1
           "--container-option=--network=host",
           # root: the lab's key files are root's, mode 0600 (the image's user is 1000)
           "--container-option=--user=0",
           # local images only: no registry is reachable
           "--container-option=--pull=never"]
    for mount in mounts:
        cmd += ["--container-volume-mount", "%s:%s:ro" % (mount, mount)]
    env = dict(lab.podman_env(), PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]))
    t0 = time.time()
    res = run(cmd, env=env, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not quiet:
        sys.stdout.write(res.stdout)
    log("ran %s through %s in %.0fs (rc %d); artifacts in %s" % (
        PLAYBOOK, image, time.time() - t0, res.returncode, os.path.join(pdd, "artifacts", ident)))
    return res


def _kubeconfig_paths(kubeconfig):
    with open(kubeconfig) as f:
        config = yaml.safe_load(f)
    paths = [c["cluster"].get("certificate-authority") for c in config["clusters"]]
    paths += [u["user"].get(k) for u in config["users"] for k in ("client-certificate", "client-key")]
    return [p for p in paths if p]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the EE (or find its build) and print the image")
    b.add_argument("--force", action="store_true", help="build again even when the image exists")
    r = sub.add_parser("run", help="run site.yml through the EE against the lab")
    r.add_argument("image", nargs="?", help="the EE image (default: build or find this checkout's)")
    args = parser.parse_args()
    if args.cmd == "build":
        print(build(args.force))
    else:
        sys.exit(run_site(args.image or build()).returncode)


if __name__ == "__main__":
    main()
