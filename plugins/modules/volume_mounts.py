#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: volume_mounts
short_description: Mount a host's local volumes through /etc/fstab and link its block volumes, in one run
version_added: 0.1.0
description:
  - Runs on the node. Does in one run what a loop of M(ansible.posix.mount) with C(state=mounted) and one of
    M(ansible.builtin.file) with C(state=link) and C(force=true) do item by item, for all the volumes of a host
    (measured on 24 volumes, the loop cost about half a second per item).
  - Makes each mount point directory, gives each mount point exactly one line in C(/etc/fstab) (a different line
    is replaced where it stands, more lines for the same mount point are dropped, a missing one is appended),
    writes C(/etc/fstab) once, atomically (a temporary file in the same directory, then a rename; mode, owner and
    SELinux context kept), and only when its text changes; then runs C(mount <path>) for each path that is not
    mounted (mount(8) takes the line from fstab), and C(mount -o remount <path>) for a mounted one whose line
    changed, as M(ansible.posix.mount) does, four at a time. Then it makes or corrects the links.
  - A mounted path whose fstab line is right but whose live mount differs from it in a per-mount flag (C(ro)/C(rw),
    C(nosuid), C(nodev), C(noexec), and the atime flag the line names) is remounted too, and the flags that
    differed are returned in RV(plan.option_drift), so a re-run notices a mount changed by hand (for example
    C(remount,ro)). Filesystem options (C(inode64), C(data=...)) are not compared.
  - The fstab lines are the ones M(ansible.posix.mount) writes (six fields, dump and passno C(0), space, backslash
    and ampersand as octal escapes), so M(ansible.posix.mount) with C(state=absent) removes them.
  - Checks every item before the first change, and changes nothing if any may not be done; the message names
    each path, what is there, and what to do. Refused are a path given twice, a path inside another, a path not
    under O(root), a mount point mounted from another source, a mount point that is not a directory, a mount point
    that is not mounted and is not empty, and a link path that holds a file or a directory.
  - A mount point that is not mounted but holds files or directories (C(lost+found) too) is refused rather than
    mounted over, which would hide them. In local-PV use they are most likely what a pod wrote while the volume
    was not mounted (after a reboot whose mount failed), on the filesystem below; the message names the path, how
    many entries it holds and a few of them. Move them away and run again. A bind mount's source directory is
    not looked at (it holds the volume's data); its mount point is, like any other.
  - When a mount fails, its fstab line goes back to what it was and the mount point made for it is removed (as
    M(ansible.posix.mount) does); the other mounts and the links are still made, the result lists what was
    done and what failed, and a re-run finishes the job.
  - One run at a time per host. The module holds the host lock C(/run/localpv-rollout.lock) (BSD flock, shared
    with M(localpv.rollout.disk_prepare)) while it reads and changes the mounts; a second run waits for it, up to
    O(lock_timeout) seconds, and then finds the mounts made (no change). A timeout changes nothing and names the
    pid that holds the lock, and says so when it is a disk tool (mkfs, sfdisk, wipefs) still running.
  - The mount commands run in the module's process group, which is killed when the run that started it is gone.
author:
  - localpv.rollout contributors (@localpv)
requirements:
  - util-linux (mount, blkid) on the managed host
extends_documentation_fragment:
  - localpv.rollout.attributes
  - localpv.rollout.attributes.node
attributes:
  check_mode:
    support: full
    details: Checks everything, changes nothing, and returns in RV(plan) what it would do.
  diff_mode:
    support: full
    details: The fstab before and after, and a line per mount and link that changes.
options:
  root:
    description:
      - The directory that holds the mount points and the links (the mount root of M(localpv.rollout.disk_prepare)).
        Every O(mounts[].path) and O(links[].path) must be under it.
      - Made with mode C(0755) when missing; when there are O(links), an existing one is given mode C(0755).
    type: path
    required: true
  mounts:
    description:
      - The filesystems to mount, as RV(localpv.rollout.disk_prepare#module:mounts) lists them.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The mount point.
        type: path
        required: true
      src:
        description:
          - What to mount, as in fstab; C(UUID=...) (also C(LABEL=), C(PARTUUID=), C(PARTLABEL=)), a device path,
            or for a bind mount (C(bind) in O(mounts[].opts)) the directory.
          - A path already mounted is checked against it, by the tag read from the mounted device itself
            (C(blkid -p)), by the bind source, or by the device number.
        type: str
        required: true
      fstype:
        description: Filesystem type in fstab (C(none) for a bind mount).
        type: str
        required: true
      opts:
        description: Mount options in fstab.
        type: str
        default: defaults
  links:
    description:
      - The block volume links, as RV(localpv.rollout.disk_prepare#module:links) lists them. A missing or different
        link is made or replaced (in one rename); a file or directory at the path is refused.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Where the link is.
        type: path
        required: true
      target:
        description: Where it points (absolute).
        type: str
        required: true
  host:
    description: Name of the host in messages (the role passes C(inventory_hostname)).
    type: str
  lock_timeout:
    description: Seconds to wait for the host lock held by another run.
    type: int
    default: 600
  lock_handoff:
    description:
      - The RV(localpv.rollout.disk_prepare#module:lock_handoff) of the M(localpv.rollout.disk_prepare) call of this
        run. The host lock reserved for this call is taken at once, while other runs wait for it.
    type: str
notes:
  - The fstab is C(/etc/fstab). A symlinked C(/etc/fstab) is written through the link.
seealso:
  - module: localpv.rollout.disk_prepare
  - module: ansible.posix.mount
"""

EXAMPLES = r"""
- name: Plan the disks of this host, refuse unsafe ones, then partition and format
  localpv.rollout.disk_prepare:
    disks: [{name: ssd0, device: /dev/disk/by-id/nvme-eui.0025385b71b0a1c2}]
  register: prep

- name: Mount volumes by filesystem UUID in fstab and link block volumes
  localpv.rollout.volume_mounts:
    root: /mnt/disks
    mounts: "{{ prep.mounts }}"
    links: "{{ prep.links }}"
  when: prep.mounts or prep.links

- name: Mount a filesystem and bind-mount a directory, written out
  localpv.rollout.volume_mounts:
    root: /mnt/disks
    mounts:
      - {path: /mnt/disks/ssd0, src: UUID=0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0, fstype: xfs, opts: 'defaults,nofail'}
      - {path: /mnt/disks/vol1, src: /data/k8s/localpv/vol1, fstype: none, opts: bind}
    links:
      - {path: /mnt/disks/raw0, target: /dev/disk/by-partuuid/5d8b7e3a-1c2f-4b6a-9e0d-3f4a5b6c7d8e}
"""

RETURN = r"""
lock_holders:
  description: On a lock timeout, the processes that have the host lock open, with C(pid), C(comm), C(command), and
    C(tool) true for a disk tool (mkfs, sfdisk, wipefs) left running.
  returned: failure
  type: list
  elements: dict
  sample: [{pid: 4242, comm: mkfs.xfs, command: mkfs.xfs -q /dev/sdb1, tool: true}]
plan:
  description: What the run set out to do (in check mode, what it would do).
  returned: success
  type: dict
  contains:
    mkdir:
      description: Mount points to make.
      type: list
      elements: str
    mount:
      description: Paths to mount.
      type: list
      elements: str
    remount:
      description: Mounted paths whose fstab line changes, or whose live flags differ from it, to remount.
      type: list
      elements: str
    option_drift:
      description: "Per mounted path whose live flags differ from its fstab line, how: C(ro (fstab: rw))."
      type: dict
    link:
      description: Links to make or correct, C(path -> target).
      type: list
      elements: str
    fstab:
      description: Whether /etc/fstab changes.
      type: bool
  sample: {mkdir: [/mnt/disks/ssd0], mount: [/mnt/disks/ssd0], remount: [], link: [], fstab: true,
           option_drift: {}}
mounted:
  description: Paths mounted by this run (empty in check mode).
  returned: always
  type: list
  elements: str
  sample: [/mnt/disks/ssd0]
remounted:
  description: Paths remounted by this run.
  returned: always
  type: list
  elements: str
  sample: []
linked:
  description: Links made or corrected by this run.
  returned: always
  type: list
  elements: str
  sample: [/mnt/disks/raw0]
created:
  description: Directories made by this run (the root, mount points).
  returned: always
  type: list
  elements: str
  sample: [/mnt/disks/ssd0]
fstab_changed:
  description: Whether this run wrote /etc/fstab.
  returned: always
  type: bool
failed_items:
  description: On a failure midway, each path that failed and why; everything else listed above was done.
  returned: always
  type: list
  elements: dict
  sample: [{path: /mnt/disks/ssd1, error: 'mount /mnt/disks/ssd1: wrong fs type'}]
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices
from ansible_collections.localpv.rollout.plugins.module_utils.host import host_lock
from ansible_collections.localpv.rollout.plugins.module_utils.host import host_volumes
from ansible_collections.localpv.rollout.plugins.module_utils.host import mounts

NOTHING_DONE = dict(mounted=[], remounted=[], linked=[], created=[], fstab_changed=False, failed_items=[])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            mounts=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True), src=dict(type="str", required=True),
                fstype=dict(type="str", required=True), opts=dict(type="str", default="defaults"))),
            links=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True), target=dict(type="str", required=True))),
            host=dict(type="str"),
            lock_timeout=dict(type="int", default=host_lock.DEFAULT_TIMEOUT),
            lock_handoff=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    host = module.params["host"] or os.uname()[1]
    host_lock.tether()
    try:
        # under the lock, a second run reads the mounts after the first made them
        with host_lock.HostLock(host, timeout=module.params["lock_timeout"], handoff=module.params["lock_handoff"]):
            _mount(module, host)
    except host_lock.LockTimeout as exc:
        module.fail_json(msg=exc.msg, lock_holders=exc.holders, **NOTHING_DONE)


def _mount(module, host):
    p = module.params
    root = os.path.normpath(p["root"])
    try:
        work = mounts.plan(root, p["mounts"], p["links"], host_volumes.read_fstab_text(mounts.FSTAB),
                           host_volumes.read_mountinfo(), lambda dev: mounts.probe_dev(dev, devices.run_command))
    except mounts.MountError as exc:
        module.fail_json(msg="host %s: refusing to mount or link anything; nothing was changed. %s" % (
            host, "; ".join(exc.reasons)), **NOTHING_DONE)
    result = dict(NOTHING_DONE, changed=mounts.pending(work), plan=mounts.summary(work), diff=mounts.diff(work))
    if result["changed"] and not module.check_mode:
        try:
            done = mounts.apply(root, work, devices.run_command, move=module.atomic_move)
        except mounts.MountError as exc:
            done = dict(exc.done)
            failed = done.pop("failed")
            module.fail_json(msg="host %s: %s. Done all the same (a re-run finishes the job): %s" % (
                host, "; ".join(exc.reasons), _said(done)), changed=mounts.changed_any(done), plan=result["plan"],
                failed_items=failed, **done)
        failed = done.pop("failed")
        result.update(done, failed_items=failed)
    module.exit_json(**result)


def _said(done):
    parts = ["%s %s" % (key, ", ".join(done[key])) for key in ("created", "mounted", "remounted", "linked")
             if done[key]]
    return "; ".join(parts + (["/etc/fstab written"] if done["fstab_changed"] else [])) or "nothing"


if __name__ == "__main__":
    main()
