# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Naming rules: volume, node and PV names, label values, path spellings.

This is the one place for naming rules, shared by the node side (a volume name
becomes a directory under the mount root and an fstab line) and the controller
side (it becomes part of a Kubernetes object name). Names must be valid in all
three places; PV names are derived from node and volume names deterministically
so that a re-run finds what an earlier run made. Standard library only: this
file travels to every node.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import functools
import hashlib
import posixpath
import re

# RFC 1123 label: what Kubernetes accepts as a label-like name, and what is safe as
# a single path component and in an fstab line (no '/', no spaces, no dots).
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@functools.lru_cache(maxsize=8192)
def _matches(pattern, text):
    """Whether all of ``text`` matches ``pattern`` (``$`` alone also matches
    before a final newline, and ``"d0\\n"`` is no volume name), remembered: a
    fleet's volumes repeat every node name, volume name and label thousands of
    times."""
    return pattern.fullmatch(text) is not None


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
    if not _matches(_DNS1123_LABEL, name):
        reasons.append(
            "not an RFC 1123 label (use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit)"
        )
    return reasons


def node_of(host, host_vars):
    """The Kubernetes node name of inventory host ``host``: its ``localpv_node_name``
    (``host_vars`` are that host's variables), else the inventory name. Empty or
    unset is the same. The one rule: every role, template and plugin asks it here
    (templates through the ``localpv.rollout.node_name`` filter)."""
    value = host_vars.get("localpv_node_name") if host_vars is not None else None
    return str(value) if value not in (None, "") else str(host)


def node_name_reasons(name):
    """Return why ``name`` cannot be a Kubernetes node name (empty list when it can)."""
    if not isinstance(name, str) or not name:
        return ["the node name is empty"]
    if len(name) > 253 or not _matches(_DNS1123_SUBDOMAIN, name):
        return ["not a valid Kubernetes node name (an RFC 1123 subdomain of at most 253 characters)"]
    return []


def _short_hash(*parts):
    return hashlib.sha256("/".join(parts).encode("utf-8")).hexdigest()[:_HASH_LEN]


def is_label_value(text):
    """Whether ``text`` is a valid Kubernetes label value (or the name part of a key)."""
    return len(text) <= 63 and _matches(_LABEL_VALUE, text)


def label_value(value):
    """Return ``value`` usable as a label value: itself when valid, else a readable
    prefix plus a hash so that distinct values stay distinct."""
    if is_label_value(value):
        return value
    head = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[: 63 - _HASH_LEN - 1].strip("-_.")
    return "%s-%s" % (head, _short_hash(value)) if head else _short_hash(value)


def pv_name(node, volume):
    """The deterministic name of the PV that this collection makes for ``volume`` on ``node``.

    ``local-<node>-<volume>``, where every ``-`` of the node name is written
    twice: volume names hold no dots and node names no ``--`` run of odd
    length once doubled, so the first single ``-`` after ``local-`` always
    says where the node name ends. Node ``node-1`` with volume ``data0``
    (``local-node--1-data0``) and node ``node`` with volume ``1-data0``
    (``local-node-1-data0``) never share a name. A name longer than 63
    characters is a prefix of it followed by a hash of node and volume.

    Only new PVs get this name: an existing PV is found by its node and path,
    whatever its name (see ``persistent_volumes``).
    """
    name = "local-%s-%s" % (node.replace("-", "--"), volume)
    if len(name) <= PV_NAME_MAX:
        return name
    head = name[: PV_NAME_MAX - _HASH_LEN - 1].rstrip("-.")
    return "%s-%s" % (head, _short_hash(node, volume))


def canonical_path(path):
    """The one spelling of an absolute path: no ``.``, no ``..``, no ``//`` and no
    trailing ``/`` (``/mnt/disks/./x``, ``/mnt/disks//x`` and ``/mnt/disks/x/``
    are all ``/mnt/disks/x``), or None for anything that is no absolute path.

    Volume paths, mount points, bind sources and ``spec.local.path`` go through
    it before they are compared or written: a PV at another spelling of our
    path is the same directory, and two spellings must never make two PVs.
    Only the text is normalised; where the host is reachable a symlink is
    resolved there (see ``preflight``)."""
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        return None
    # POSIX lets normpath keep a leading '//'; Linux treats it as '/'
    return posixpath.normpath("/" + path.lstrip("/"))


def duplicate_names(names):
    """Return the names that appear more than once, in first-seen order."""
    seen, dups = set(), []
    for name in names:
        if name in seen and name not in dups:
            dups.append(name)
        seen.add(name)
    return dups
