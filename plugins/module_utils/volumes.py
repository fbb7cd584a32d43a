# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The volume model: names, paths and the PersistentVolume a volume becomes.

This is the one place for naming rules. Volume names end up in three places at
once (a directory under the mount root, an fstab line and a Kubernetes object
name), so they must be valid in all three; PV names are derived from node and
volume names deterministically so that a re-run finds what an earlier run made.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "localpv.rollout"
NODE_LABEL = "localpv.rollout/node"
VOLUME_LABEL = "localpv.rollout/volume"
HOSTNAME_LABEL = "kubernetes.io/hostname"

# RFC 1123 label: what Kubernetes accepts as a label-like name, and what is safe as
# a single path component and in an fstab line (no '/', no spaces, no dots).
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

# PV names may be 253 characters, but we keep them within 63 so that they stay
# readable in `kubectl get pv` and fit in a label value too.
PV_NAME_MAX = 63
_HASH_LEN = 8


def volume_name_reasons(name):
    """Return why ``name`` cannot be a volume name (empty list when it can).

    A volume name becomes ``<mount_root>/<name>`` and part of the PV name, so it
    must be an RFC 1123 label: lowercase letters, digits and '-', starting and
    ending with a letter or digit, at most 63 characters.
    """
    if not isinstance(name, str) or not name:
        return ["the name is empty"]
    reasons = []
    if len(name) > 63:
        reasons.append("longer than 63 characters")
    if not _DNS1123_LABEL.match(name):
        reasons.append(
            "not an RFC 1123 label (use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit)"
        )
    return reasons


def node_name_reasons(name):
    """Return why ``name`` cannot be a Kubernetes node name (empty list when it can)."""
    if not isinstance(name, str) or not name:
        return ["the node name is empty"]
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        return ["not a valid Kubernetes node name (an RFC 1123 subdomain of at most 253 characters)"]
    return []


def _short_hash(*parts):
    return hashlib.sha256("/".join(parts).encode("utf-8")).hexdigest()[:_HASH_LEN]


def label_value(value):
    """Return ``value`` usable as a label value: itself when valid, else a readable
    prefix plus a hash so that distinct values stay distinct."""
    if len(value) <= 63 and _LABEL_VALUE.match(value):
        return value
    head = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[: 63 - _HASH_LEN - 1].strip("-_.")
    return "%s-%s" % (head, _short_hash(value)) if head else _short_hash(value)


def pv_name(node, volume):
    """The deterministic name of the PV of ``volume`` on ``node``.

    ``local-<node>-<volume>`` when that is at most 63 characters; otherwise a
    prefix of it followed by a hash of node and volume, so that two long names
    that share a prefix never collide. Dots of FQDN node names are kept (PV
    names are RFC 1123 subdomains).
    """
    name = "local-%s-%s" % (node, volume)
    if len(name) <= PV_NAME_MAX:
        return name
    head = name[: PV_NAME_MAX - _HASH_LEN - 1].rstrip("-.")
    return "%s-%s" % (head, _short_hash(node, volume))


def duplicate_names(names):
    """Return the names that appear more than once, in first-seen order."""
    seen, dups = set(), []
    for name in names:
        if name in seen and name not in dups:
            dups.append(name)
        seen.add(name)
    return dups
