# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Recorded hosts as the plan's tests read them, and make_plan() on one.

The recordings are those of host/data (tests/unit/plugins/module_utils/host/data).
Shared by the test modules of this folder, which import it by name (pytest puts this
folder on sys.path); plain functions, not fixtures, since tests call them with arguments."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import json
import os

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import planner as plan_planner

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
GIB = 1024 ** 3


def recorded(name):
    with open(os.path.join(DATA, name + ".json")) as handle:
        return json.load(handle)


def zeros(data=()):
    """A content sampler that finds zeros everywhere but on the devices ``data``."""
    def sampler(path, size, proof="spread"):
        return {"zero": path not in data, "digest": "d-" + path if path in data else "0", "error": None}
    return sampler


def plan(recording, entries, fstab="", mountinfo=None, allow_wipe=False, raw=None, data=(), dirs=None, **options):
    """``dirs`` maps the directories of the host to what they hold (none exist by default)."""
    raw = raw or recorded(recording)
    options.setdefault("mount_root", "/mnt/disks")
    options.setdefault("allow_kernel_names", True)
    options["allow_wipe"] = allow_wipe
    return plan_planner.make_plan("node1", devices.build(raw), entries, options, fstab,
                                  raw["mountinfo"] if mountinfo is None else mountinfo, isdir=lambda p: True,
                                  sampler=zeros(data), dir_entries=(dirs or {}).get)


def reasons(p):
    return " | ".join("%s: %s" % (r["disk"], "; ".join(r["reasons"])) for r in p["refusals"])


def fingerprint_of(recording, data=()):
    p = plan(recording, [{"name": "ssd0", "device": "/dev/loop0"}], data=data)
    return p["refusals"][0]["fingerprint"]


def fresh(text):
    """An equal string that is another object, as one read from an inventory is."""
    return "".join(list(text))
