# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bytes a volume offers, by the documented rule."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def capacity(volume, statvfs=None, filesystem_bytes=None):
    """Bytes a volume offers, by the documented rule.

    Filesystem volumes: the size of the filesystem as statvfs reports it once
    mounted (f_blocks * f_frsize), which is what a pod can use. Before it is
    mounted, ``filesystem_bytes``: the same number read from the superblock, or
    predicted from the plan in check mode (``host_volumes.filesystem_bytes``).
    ``capacity_from: device`` and block volumes: the partition size. A bind
    volume's explicit ``capacity`` wins over all of these.
    """
    if volume.get("explicit_capacity"):
        return volume["explicit_capacity"]
    if volume["mode"] == "block" or volume.get("capacity_from") == "device":
        return volume.get("size")
    if statvfs is not None:
        return statvfs.f_blocks * statvfs.f_frsize
    return filesystem_bytes
