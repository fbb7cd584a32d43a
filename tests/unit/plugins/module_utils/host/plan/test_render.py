# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the plan shows before and after: each disk, its partitions, filesystems and mounts."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


from plan_recordings import plan

from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import render as plan_render


def test_render_shows_which_disk_gets_which_partition_filesystem_and_mount():
    p = plan("blank", [{"name": "ssd0", "device": "/dev/loop0"}])
    assert "blank" in plan_render.render(p, after=False)
    after = plan_render.render(p)
    assert "/dev/loop0p1 [localpv-ssd0] xfs -> /mnt/disks/ssd0" in after
    assert "fstab: UUID=<new> /mnt/disks/ssd0 xfs defaults,nofail" in after


def test_diff_before_shows_a_bind_mount_only_once_it_exists():
    p = plan("blank", [{"name": "vol1", "bind": "/data/k8s/localpv/vol1", "capacity": "1G"}])
    assert "(bind)" not in plan_render.render(p, after=False)
    assert "/data/k8s/localpv/vol1 -> /mnt/disks/vol1 (bind)" in plan_render.render(p)
