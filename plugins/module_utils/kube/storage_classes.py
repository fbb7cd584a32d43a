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


def read_storage_classes(kube, names):
    """``{name: the StorageClass as the API server has it, or None}`` for each of
    ``names``: one GET per class, on the worker pool. The one way the collection
    reads StorageClasses (the preflight, the ensure and the PVs' check that the
    classes they name exist all come here), and what it reads is handed on within
    a run instead of being read again."""
    names = list(dict.fromkeys(names))
    answers = kube.run([(lambda name=name: kube.get_storage_class(name)) for name in names])
    for _obj, err in answers:
        if err is not None:
            raise err
    return dict((name, obj) for name, (obj, _err) in zip(names, answers))


def missing_storage_classes(kube, names, known=None):
    """The names of ``names`` that are no StorageClass, sorted. ``known``
    (``{name: object or None}``, what this run read or made already) is trusted;
    only the others are read (:func:`read_storage_classes`)."""
    known = dict(known or {})
    unread = [name for name in dict.fromkeys(names) if name not in known]
    if unread:
        known.update(read_storage_classes(kube, unread))
    return sorted(name for name in set(names) if known.get(name) is None)


def ensure_storage_classes(kube, classes, replace=False, existing=None):
    """Ensure each StorageClass of ``classes`` (normalized, see
    :func:`normalize_storage_class`). Any conflict stops before the first write.
    ``existing``: the classes as :func:`read_storage_classes` returns them, when
    the caller read them already. Returns one item per class (see
    :func:`plan_storage_class`); a write the API server confirmed sets
    ``confirmed``, a failed one ``error``."""
    if existing is None:
        existing = read_storage_classes(kube, [wanted["name"] for wanted in classes])
    results = [plan_storage_class(wanted, existing.get(wanted["name"]), replace) for wanted in classes]
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


def normalize_storage_classes(items):
    """``(classes, errors)`` of the wanted classes ``items``: each checked and given its
    defaults (:func:`normalize_storage_class`), and no name twice. Before any request."""
    classes, errors = [], []
    for item in items:
        cls, reasons = normalize_storage_class(item)
        classes.append(cls)
        errors += reasons
    errors += ["StorageClass %s is given more than once" % d for d in naming.duplicate_names([c["name"] for c in classes])]
    return classes, errors


def ensure_outcome(results):
    """What a module returns of :func:`ensure_storage_classes`: ``(items, changed,
    message)``; ``message`` says why the run must stop (conflicts, failed writes),
    else None."""
    out = [dict((key, r.get(key)) for key in ("name", "action", "changes", "reason", "error", "confirmed"))
           for r in results]
    changed = any(r.get("confirmed") or r.get("deleted") for r in results)
    conflicts = [r for r in results if r["action"] == "conflict"]
    if conflicts:
        return out, changed, "nothing was changed: " + " | ".join(r["reason"] for r in conflicts)
    failed = [r for r in results if r.get("error")]
    return out, changed, (" | ".join(r["error"] for r in failed) if failed else None)


def class_diff(item):
    """An Ansible diff entry for one ensured class (before/after of its view)."""
    before = storage_class_view(item["existing"]) if item["existing"] else {}
    after = storage_class_view(item["manifest"])
    if item["action"] == "patch":
        after = dict(before, **dict((key, val) for key, val in after.items()
                                    if key in ("default", "mountOptions") and val not in (None, [])))
    return {"before_header": "StorageClass %s" % item["name"], "after_header": "StorageClass %s" % item["name"],
            "before": before, "after": after}


def known_after(results, dry_run=False):
    """``{name: object or None}`` of the classes :func:`ensure_storage_classes` went
    through: what exists once its writes are done (a class made in dry-run exists
    nowhere), for the PVs' check that their classes exist, without reading again."""
    known = {}
    for item in results:
        if item["action"] in ("unchanged", "patch"):
            known[item["name"]] = item["existing"]
        elif item["action"] in ("create", "replace") and item.get("confirmed"):
            known[item["name"]] = item["existing"] if dry_run else item["manifest"]
        else:
            known[item["name"]] = None if item["action"] == "create" else item["existing"]
    return known
