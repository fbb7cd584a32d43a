#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: local_storage_class
short_description: Ensure the StorageClasses of local PersistentVolumes
version_added: 0.1.0
description:
  - Ensures one or more StorageClasses for static local PVs, by default with
    C(provisioner=kubernetes.io/no-provisioner), C(volumeBindingMode=WaitForFirstConsumer) and
    C(reclaimPolicy=Retain).
  - With C(Immediate) binding a claim binds to a PV of one node while its pod may be pinned to
    another, and the pod stays Pending; keep C(WaitForFirstConsumer) unless you know why not.
  - A class that exists and does not carry the label C(app.kubernetes.io/managed-by=localpv.rollout) belongs to
    someone else. When it matches what is wanted it is used as it is; when it differs, the differences are
    reported and nothing is changed, whatever O(replace) says.
  - A class of ours that exists with other immutable fields (provisioner, parameters, reclaimPolicy,
    volumeBindingMode) is reported as a conflict and left alone, unless O(replace=true), which deletes
    and creates it. PVs and claims refer to a class by name, so they are not affected.
  - Labels and the default-class annotation of a class of ours are patched in place, with a resourceVersion
    precondition. Labels set by others stay.
author:
  - localpv.rollout contributors (@localpv)
extends_documentation_fragment:
  - localpv.rollout.attributes
  - localpv.rollout.attributes.controller
  - localpv.rollout.attributes.k8s_group
  - kubernetes.core.k8s_auth_options
  - localpv.rollout.client
attributes:
  check_mode:
    support: full
    details: Writes are sent with server-side dry-run.
  diff_mode:
    support: full
    details: The classes before and after.
options:
  storage_classes:
    description: The StorageClasses to ensure.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the StorageClass.
        type: str
        required: true
      reclaim_policy:
        description: C(reclaimPolicy) of the class.
        type: str
        choices: [Retain, Delete]
        default: Retain
      pv_reclaim_policy:
        description:
          - C(persistentVolumeReclaimPolicy) of the PVs that name the class (pv_register sets it on them); not
            part of the class. Defaults to O(storage_classes[].reclaim_policy).
          - For a class of another owner that says C(Delete), as the local static provisioner's does - give it
            O(storage_classes[].reclaim_policy=Delete) so that it is used as it is, and V(Retain) here, as a
            static PV with C(Delete) goes C(Failed) when released.
        type: str
        choices: [Retain, Delete]
      volume_binding_mode:
        description: C(volumeBindingMode) of the class.
        type: str
        choices: [WaitForFirstConsumer, Immediate]
        default: WaitForFirstConsumer
      provisioner:
        description: Provisioner of the class. Static local PVs have none.
        type: str
        default: kubernetes.io/no-provisioner
      default:
        description:
          - V(true) makes this the cluster's default class (annotation C(storageclass.kubernetes.io/is-default-class)),
            V(false) sets the annotation to C(false). Unset leaves the annotation as it is.
        type: bool
      labels:
        description: Labels of the class.
        type: dict
      mount_options:
        description: C(mountOptions) of the class. Unset leaves them as they are.
        type: list
        elements: str
  replace:
    description: Delete and create a class of ours whose immutable fields differ from what is wanted.
    type: bool
    default: false
notes:
  - Check mode uses server-side dry-run.
seealso:
  - module: localpv.rollout.local_pv
"""

EXAMPLES = r"""
- name: Ensure the StorageClass of local PVs
  localpv.rollout.local_storage_class:
    storage_classes:
      - name: local-storage
        reclaim_policy: Retain

- name: A second class for NVMe disks, made the default
  localpv.rollout.local_storage_class:
    storage_classes:
      - name: fast-local
        default: true
        labels:
          tier: nvme
"""

RETURN = r"""
storage_classes:
  description: One entry per class with what was done (V(create), V(patch), V(replace), V(unchanged), V(conflict)).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "local-storage", "action": "unchanged", "changes": []}]
requests:
  description: HTTP requests made to the API server, by verb.
  returned: always
  type: dict
  sample: {list: 1, create: 1}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localpv.rollout.plugins.module_utils.kube import client as k
from ansible_collections.localpv.rollout.plugins.module_utils.kube import storage_classes as sc

CLASS_SPEC = dict(
    name=dict(type="str", required=True),
    reclaim_policy=dict(type="str", choices=["Retain", "Delete"], default="Retain"),
    pv_reclaim_policy=dict(type="str", choices=["Retain", "Delete"]),
    volume_binding_mode=dict(type="str", choices=["WaitForFirstConsumer", "Immediate"],
                             default="WaitForFirstConsumer"),
    provisioner=dict(type="str", default=sc.NO_PROVISIONER),
    default=dict(type="bool"),
    labels=dict(type="dict"),
    mount_options=dict(type="list", elements="str"),
)


def main():
    module = AnsibleModule(
        argument_spec=k.module_arg_spec(
            storage_classes=dict(type="list", elements="dict", required=True, options=CLASS_SPEC),
            replace=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    classes, errors = sc.normalize_storage_classes(module.params["storage_classes"])
    if errors:
        module.fail_json(msg="invalid storage_classes, nothing was changed: " + " | ".join(errors),
                         storage_classes=[], requests={})

    with k.api_session(module, {"storage_classes": []}, dry_run=module.check_mode,
                       suffix="; nothing was changed") as kube:
        results = sc.ensure_storage_classes(kube, classes, replace=module.params["replace"])

    out, changed, stop = sc.ensure_outcome(results)
    result = dict(changed=changed, storage_classes=out, requests=kube.requests)
    if module._diff:
        result["diff"] = [sc.class_diff(r) for r in results if r["action"] in ("create", "patch", "replace")]
    if stop:
        module.fail_json(msg=stop, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
