# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Record what ``devices.collect()`` reads on this host, for the unit tests.

    record_host.py NAME [--only loop0,loop1] [--scrub PREFIX=REPLACEMENT ...] > NAME.json

Private paths (home directories, work trees) are replaced with neutral ones via
--scrub so that recordings can be committed. Mounts of virtual file systems
(major 0) are dropped: they never bear on a disk verdict and only add noise.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import argparse
import json
import sys

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices


def scrub(value, replacements):
    if isinstance(value, str):
        for old, new in replacements:
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [scrub(item, replacements) for item in value]
    if isinstance(value, dict):
        return dict((scrub(k, replacements), scrub(v, replacements)) for k, v in value.items())
    return value


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("description")
    parser.add_argument("--only", default=None, help="comma-separated kernel names to keep")
    parser.add_argument("--scrub", action="append", default=[])
    args = parser.parse_args()
    raw = devices.collect()
    if args.only:
        keep = set(args.only.split(","))
        raw["devices"] = dict((k, v) for k, v in raw["devices"].items() if k in keep)
        for key in ("probes", "tables", "exclusive"):
            raw[key] = dict((k, v) for k, v in raw[key].items()
                            if k in keep or any(k.startswith(n) for n in keep))
    raw["mountinfo"] = "\n".join(line for line in raw["mountinfo"].splitlines()
                                 if not line.split()[2].startswith("0:")) + "\n"
    replacements = [tuple(item.split("=", 1)) for item in args.scrub]
    raw = scrub(raw, replacements)
    raw["description"] = args.description
    json.dump(raw, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
