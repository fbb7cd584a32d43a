# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""StorageClasses of local PVs: the wanted class, its comparison, and ensuring it.

A class that exists and does not carry our managed-by label belongs to someone
else: it is used as it is when it matches, and never patched, replaced or
deleted when it does not (the difference is reported and the run stops).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming

from ansible_collections.localpv.rollout.plugins.module_utils.common.errors import KubeError
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as vol

NO_PROVISIONER = "kubernetes.io/no-provisioner"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
BINDING_MODES = ("WaitForFirstConsumer", "Immediate")
# The API server refuses to change these of a StorageClass.
STORAGE_CLASS_IMMUTABLE = ("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode")


def normalize_storage_class(item):
    """Check one wanted StorageClass and fill in defaults. Returns ``(cls, reasons)``."""
    reasons = []
    name = item.get("name")
    if naming.node_name_reasons(name):
        reasons.append("name %r is not a valid StorageClass name" % (name,))
    reclaim = item.get("reclaim_policy") or vol.DEFAULT_RECLAIM_POLICY
    if reclaim not in vol.RECLAIM_POLICIES:
        reasons.append("reclaim_policy %r is not one of %s" % (reclaim, ", ".join(vol.RECLAIM_POLICIES)))
    # the policy of the PVs that name the class: a class of another owner may say Delete
    # (the local static provisioner's chart does) while our static PVs keep Retain
    pv_reclaim = item.get("pv_reclaim_policy") or reclaim
    if pv_reclaim not in vol.RECLAIM_POLICIES:
        reasons.append("pv_reclaim_policy %r is not one of %s" % (pv_reclaim, ", ".join(vol.RECLAIM_POLICIES)))
    mode = item.get("volume_binding_mode") or "WaitForFirstConsumer"
    if mode not in BINDING_MODES:
        reasons.append("volume_binding_mode %r is not one of %s" % (mode, ", ".join(BINDING_MODES)))
    labels = item.get("labels") or {}
    reasons += vol.labels_reasons(dict((k, v) for k, v in labels.items() if k != vol.MANAGED_BY_LABEL))
    cls = {
        "name": name,
        "reclaim_policy": reclaim,
        "pv_reclaim_policy": pv_reclaim,
        "volume_binding_mode": mode,
        "provisioner": item.get("provisioner") or NO_PROVISIONER,
        "default": item.get("default"),
        "labels": labels,
        "mount_options": item.get("mount_options"),
    }
    return cls, ["StorageClass %s: %s" % (name, r) for r in reasons]


def storage_class_manifest(cls):
    labels = dict(cls.get("labels") or {})
    labels[vol.MANAGED_BY_LABEL] = vol.MANAGED_BY_VALUE
    manifest = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": cls["name"], "labels": labels},
        "provisioner": cls.get("provisioner") or NO_PROVISIONER,
        "reclaimPolicy": cls.get("reclaim_policy") or vol.DEFAULT_RECLAIM_POLICY,
        "volumeBindingMode": cls.get("volume_binding_mode") or "WaitForFirstConsumer",
    }
    if cls.get("default") is not None:
        manifest["metadata"]["annotations"] = {DEFAULT_CLASS_ANNOTATION: "true" if cls["default"] else "false"}
    if cls.get("mount_options") is not None:
        manifest["mountOptions"] = list(cls["mount_options"])
    return manifest


def storage_class_view(obj):
    meta = obj.get("metadata") or {}
    return {
        "labels": dict(meta.get("labels") or {}),
        "default": (meta.get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION),
        "provisioner": obj.get("provisioner"),
        "parameters": obj.get("parameters") or {},
        "reclaimPolicy": obj.get("reclaimPolicy") or "Delete",
        "volumeBindingMode": obj.get("volumeBindingMode") or "Immediate",
        "mountOptions": obj.get("mountOptions") or [],
    }


def compare_storage_class(desired, existing):
    """``(immutable, patch)`` like :func:`compare_pv`. The managed-by label is
    only set when we create the class; an existing class keeps its owner."""
    want, have = storage_class_view(desired), storage_class_view(existing)
    immutable = [f for f in STORAGE_CLASS_IMMUTABLE if want[f] != have[f]]
    patch = {}
    labels = dict((k, v) for k, v in want["labels"].items()
                  if k != vol.MANAGED_BY_LABEL and have["labels"].get(k) != v)
    meta = {}
    if labels:
        meta["labels"] = labels
    if want["default"] is not None and want["default"] != have["default"]:
        meta["annotations"] = {DEFAULT_CLASS_ANNOTATION: want["default"]}
    if meta:
        patch["metadata"] = meta
    if "mountOptions" in desired and want["mountOptions"] != have["mountOptions"]:
        patch["mountOptions"] = want["mountOptions"]
    return immutable, (patch or None)


def _differences(manifest, existing, immutable, patch):
    """The fields of ``existing`` that differ from what is wanted, as ``field: have -> want``."""
    want, have = storage_class_view(manifest), storage_class_view(existing)
    fields = list(immutable)
    if patch:
        fields += ["labels"] if (patch.get("metadata") or {}).get("labels") else []
        fields += ["default"] if (patch.get("metadata") or {}).get("annotations") else []
        fields += ["mountOptions"] if "mountOptions" in patch else []
    return ["%s: %r -> %r" % (f, have[f], want[f]) for f in fields]


def plan_storage_class(wanted, existing, replace=False):
    """What ensuring ``wanted`` (normalized) means, given the class on the
    server (or None): an item with ``action`` (create, patch, replace,
    unchanged, conflict), ``changes``, ``reason``, ``manifest``, ``existing``."""
    manifest = storage_class_manifest(wanted)
    name = manifest["metadata"]["name"]
    item = {"name": name, "manifest": manifest, "existing": existing, "changes": []}
    if existing is None:
        return dict(item, action="create")
    immutable, patch = compare_storage_class(manifest, existing)
    item["changes"], item["patch"] = immutable, patch
    if not immutable and not patch:
        return dict(item, action="unchanged")
    if not vol.is_owned(existing) and immutable == ["reclaimPolicy"] and not patch:
        have = storage_class_view(existing)["reclaimPolicy"]
        return dict(item, action="conflict", reason=(
            "StorageClass %s is not managed by localpv.rollout and has reclaimPolicy %s, not %s (the local static "
            "provisioner's class usually says Delete); it is never replaced, as claims name it. To use it as it "
            "is, give it in localpv_storage_classes as {name: %s, reclaim_policy: %s, pv_reclaim_policy: %s}: "
            "the class stays as it is and its PVs get %s (docs/pv_register.md, moving from the provisioner)"
            % (name, have, wanted["reclaim_policy"], name, have, wanted.get("pv_reclaim_policy") or "Retain",
               wanted.get("pv_reclaim_policy") or "Retain")))
    if not vol.is_owned(existing):
        return dict(item, action="conflict", reason=(
            "StorageClass %s is not managed by localpv.rollout (no label %s=%s) and differs from what is wanted "
            "(%s); it is never patched or replaced: make the inventory match it, or add that label to let "
            "localpv.rollout manage it" % (name, vol.MANAGED_BY_LABEL, vol.MANAGED_BY_VALUE,
                                           "; ".join(_differences(manifest, existing, immutable, patch)))))
    if immutable and not replace:
        return dict(item, action="conflict", reason=(
            "StorageClass %s has %s different from what is wanted and the API server does not allow changing "
            "them; set replace=true to delete and create it (PVs and claims that name the class are not "
            "affected)" % (name, ", ".join(immutable))))
    return dict(item, action="replace" if immutable else "patch")


def ensure_storage_classes(kube, classes, replace=False):
    """Ensure each StorageClass of ``classes`` (normalized, see
    :func:`normalize_storage_class`). Any conflict stops before the first write.
    Returns one item per class (see :func:`plan_storage_class`); a write the API
    server confirmed sets ``confirmed``, a failed one ``error``."""
    results = [plan_storage_class(wanted, kube.get_storage_class(wanted["name"]), replace) for wanted in classes]
    if any(r["action"] == "conflict" for r in results):
        return results
    for item in results:
        try:
            if item["action"] == "create":
                kube.create_storage_class(item["manifest"])
            elif item["action"] == "patch":
                patch = dict(item["patch"], metadata=dict(item["patch"].get("metadata") or {}, resourceVersion=(
                    item["existing"]["metadata"].get("resourceVersion"))))
                kube.patch_storage_class(item["name"], patch)
            elif item["action"] == "replace":
                kube.delete_storage_class(item["name"], item["existing"]["metadata"].get("uid"))
                item["deleted"] = True
                if not kube.dry_run:
                    kube.create_storage_class(item["manifest"])
            item["confirmed"] = item["action"] != "unchanged"
        except KubeError as exc:
            item["error"] = exc.msg
            break
    return results
