# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Selector entries (``match:``): which disks fit, which are taken already, in which order."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch

from ansible_collections.localpv.rollout.plugins.module_utils.host.plan.entries import volume_names
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan.recognise import carries_ours, ours_for


def match_misses(disk, match):
    """Why a disk does not fit a selector's ``match`` (eligibility is checked apart); [] = fits."""
    misses = []
    if match.get("rotational") is not None and disk["rotational"] != bool(match["rotational"]):
        misses.append("rotational is %s" % disk["rotational"])
    if match.get("min_size") is not None and disk["size"] < match["min_size"]:
        misses.append("%d bytes, below min_size %d" % (disk["size"], match["min_size"]))
    if match.get("max_size") is not None and disk["size"] > match["max_size"]:
        misses.append("%d bytes, above max_size %d" % (disk["size"], match["max_size"]))
    if match.get("model") and not fnmatch.fnmatch((disk.get("model") or "").strip(), match["model"]):
        misses.append("model %r does not match %r" % (disk.get("model"), match["model"]))
    return misses


def selection_order(disk):
    """The order a selector takes disks in: by stable id (a disk without one last), then path."""
    return (disk["stable_id"] or "~", disk["path"])


def already_ours(spec, candidates, limit):
    """(number, disk) of the candidates that carry this selector's volumes already."""
    taken = []
    for disk in sorted(candidates, key=selection_order):
        if not carries_ours(disk):
            continue
        for number in range(limit):
            if ours_for(disk, volume_names("%s%d" % (spec["name_prefix"], number), spec["partitions"])):
                taken.append((number, disk))
                break
    return taken


def reasons_not_taken(planner, spec, disk):
    """Why a selector does not take ``disk``; [] = it may."""
    why = match_misses(disk, spec["match"]) + ([] if disk["eligible"] else list(disk["reasons"]))
    if not why and not planner.sample(disk["path"], disk["size"], spec["blank_proof"])["zero"]:
        why = ["holds unrecognised data (%s)" % planner.blank_words(disk["path"], disk["size"], spec["blank_proof"])]
    return why


def describe_match(match):
    """A selector's ``match`` as a refusal says it: ``min_size=..., model=...``."""
    return ", ".join("%s=%s" % (k, match[k]) for k in sorted(match) if k != "count") or "anything"
