# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading a host for its plan. Each fact of a host is read once per run: plan_host()
with counting readers; and only the disks the entries name are probed.

Two readings of one fact (the mount table, a link, a disk's content) taken at two
moments can disagree, and the plan would judge a disk on one and a mount on the other.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import copy

import pytest

from plan_recordings import recorded

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import entries as plan_entries
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import read as plan_read


def as_argspec_gives(**entry):
    """An entry as disk_prepare's argument spec hands it on: every key, None where not given."""
    full = dict((key, None) for key in plan_entries.SPEC_KEYS)
    full.update(entry)
    return full


class Host(object):
    """A host whose every reader counts its calls; the devices are a recording."""

    def __init__(self, raw, fstab="", links=None, data=()):
        self.raw = raw
        self.fstab = fstab
        self.links = links or {}
        self.data = data
        self.collected = 0
        self.probed = []
        self.files = []
        self.readlinks = []
        self.samples = []
        self.commands = []

    def collect(self, probe=False):
        assert probe is False
        self.collected += 1
        raw = copy.deepcopy(self.raw)
        raw.update(probes={}, tables={}, exclusive={}, table_probes={})
        return raw

    def add_probes(self, raw, names=None):
        """What the recording read of the devices ``names`` (None: all)."""
        self.probed.append(None if names is None else sorted(names))
        for name, attrs in self.raw["devices"].items():
            if names is None or name in names:
                for key in ("probes", "tables", "exclusive", "table_probes"):
                    for got in [name] + list(attrs["partitions"]):
                        if got in (self.raw.get(key) or {}):
                            raw[key][got] = copy.deepcopy(self.raw[key][got])

    def read(self, path):
        self.files.append(path)
        assert path == "/etc/fstab", "the plan reads %s, which it was handed already" % path
        return self.fstab

    def readlink(self, path):
        self.readlinks.append(path)
        return self.links.get(path)

    def sampler(self, path, size, proof="spread"):
        self.samples.append(path)
        return {"zero": path not in self.data, "digest": "d-" + path, "error": None}

    def run(self, argv):
        self.commands.append(argv)
        return 0, "", ""

    def plan(self, entries, **options):
        options.setdefault("mount_root", "/mnt/disks")
        options.setdefault("allow_kernel_names", True)
        return plan_read.plan_host("node1", entries, options, read=self.read, collect=self.collect,
                                   add_probes=self.add_probes, run=self.run, readlink=self.readlink,
                                   sampler=self.sampler, isdir=lambda p: True, dir_entries={}.get,
                                   kind_at=lambda p: None)


@pytest.fixture
def builds(monkeypatch):
    """The raws devices.build judged, in order."""
    seen = []
    build = devices.build

    def counting(raw, *args, **kwargs):
        seen.append(raw)
        return build(raw, *args, **kwargs)
    monkeypatch.setattr(devices, "build", counting)
    return seen


def mounted_data0():
    """ours_two_ext4 with both volumes in fstab and mounted, as a re-run finds them."""
    raw = recorded("ours_two_ext4")
    parts = raw["devices"]["loop0"]["partitions"]
    uuids = dict((p["name"], p["uuid"]) for p in devices.build(raw)[0]["partitions"])
    raw["mountinfo"] += "".join("9%d 27 %s / /mnt/disks/data0-%d rw - ext4 /dev/loop0p%d rw\n" % (
        n, parts["loop0p%d" % n]["dev"], n, n) for n in (1, 2))
    fstab = "".join("UUID=%s /mnt/disks/data0-%d ext4 defaults,nofail 0 0\n" % (uuids["loop0p%d" % n], n)
                    for n in (1, 2))
    return raw, fstab


def test_a_re_run_reads_the_devices_the_mount_table_and_fstab_once(builds):
    raw, fstab = mounted_data0()
    del builds[:]
    host = Host(raw, fstab)
    p = host.plan([as_argspec_gives(name="data0", device="/dev/loop0", partitions=2, fstype="ext4")])
    assert p["refusals"] == [] and [e["actions"] for e in p["disks"]] == [[]]
    # the mount table is the one the disks were listed with (collect's), not read again
    assert [v["mounted"] for v in p["volumes"]] == [True, True]
    assert host.collected == 1 and host.files == ["/etc/fstab"]
    assert host.probed == [["loop0"]]
    # the listing (to know what to probe) and the probed disks: each judged once
    assert len(builds) == 2 and builds[0] is builds[1]
    assert host.samples == [] and host.commands == []


def test_a_block_volume_is_planned_once_and_its_link_read_once(builds):
    raw = recorded("ours_two_ext4")
    for part in ("loop0p1", "loop0p2"):
        raw["probes"][part] = {"signatures": [], "error": None}
    raw["by_id"] = {"wwn-0x5000c500a1b2c3d4": "loop0"}
    uuids = [entry["uuid"] for entry in raw["tables"]["loop0"]]
    links = dict(("/mnt/disks/data0-%d" % n, "/dev/disk/by-partuuid/" + u) for n, u in zip((1, 2), uuids))
    host = Host(raw, links=links)
    p = host.plan([as_argspec_gives(name="data0", device="/dev/loop0", partitions=2, mode="block")])
    assert p["refusals"] == []
    assert [(v["link_target"], v["needs_link"]) for v in p["volumes"]] == [(links[path], False) for path in sorted(links)]
    # the link proves the volume's disk and says whether it needs making: one reading for both
    assert sorted(host.readlinks) == sorted(links)
    assert host.collected == 1 and len(builds) == 2


def test_a_refused_disk_is_sampled_once_and_the_old_disk_looked_for_without_listing_the_host_again(builds):
    raw = recorded("blank")
    fstab = "UUID=0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0 /mnt/disks/ssd0 xfs defaults,nofail 0 0\n"
    host = Host(raw, fstab)
    p = host.plan([as_argspec_gives(name="ssd0", device="/dev/loop0")])
    (refusal,) = p["refusals"]
    assert "volume ssd0 was made on a disk with filesystem UUID 0b1c2d3e" in refusal["reasons"][0]
    assert "No disk of this host carries those ids now" in refusal["reasons"][0]
    # its content for "blank" and for the fingerprint the refusal prints: one read
    assert host.samples == ["/dev/loop0"]
    # the old disk is looked for among the devices the plan listed: only the unprobed ones are probed
    unprobed = sorted(n for n, a in raw["devices"].items() if a["size"] and n not in ["loop0"])
    assert host.collected == 1 and host.probed == [["loop0"], unprobed]
    assert len(builds) == 3


def test_a_selector_samples_every_candidate_disk_once():
    raw = recorded("blank")
    host = Host(raw)
    p = host.plan([as_argspec_gives(match={"rotational": None, "min_size": None, "max_size": None, "model": None,
                                           "count": 1}, name_prefix="ssd")])
    assert p["refusals"] == [] and [v["name"] for v in p["volumes"]] == ["ssd0"]
    assert sorted(host.samples) == sorted(set(host.samples))
    assert host.probed == [None] and host.collected == 1


def test_the_host_is_read_again_only_when_the_kernel_was_told_of_stale_partitions(builds):
    raw = recorded("ours_two_ext4")
    raw["tables"]["loop0"] = raw["tables"]["loop0"][:1]
    host = Host(raw)
    host.plan([as_argspec_gives(name="data0", device="/dev/loop0", partitions=2, fstype="ext4")])
    assert host.commands == [["partx", "-u", "/dev/loop0"]]
    # listed, probed, refreshed; then listed and probed again, as the kernel's view changed
    assert host.collected == 2 and host.probed == [["loop0"], ["loop0"]] and len(builds) == 3


def test_an_entry_as_the_argument_spec_gives_it_plans_as_the_entry_written_out():
    """The defaults of an entry are filled in one place (normalize_spec): what the argument
    spec leaves None is what the inventory left out."""
    raw = recorded("blank")
    short = Host(raw).plan([{"name": "ssd0", "device": "/dev/loop0"}])
    full = Host(raw).plan([as_argspec_gives(name="ssd0", device="/dev/loop0")])
    for p in (short, full):
        for entry in p["disks"]:
            for part in entry["layout"]:
                part["partuuid"] = "-"
        for volume in p["volumes"]:
            volume["partuuid"] = "-"
    assert short == full and short["refusals"] == []
    spec, errors = plan_entries.normalize_spec(as_argspec_gives(name="ssd0", device="/dev/loop0"), 0, {})
    assert errors == []
    assert dict((k, spec[k]) for k in plan_entries.ENTRY_DEFAULTS) == plan_entries.ENTRY_DEFAULTS
    assert (spec["fstype"], spec["mount_options"], spec["capacity_from"], spec["blank_proof"]) == (
        "xfs", "defaults,nofail", "filesystem", "spread")


def test_only_the_disks_the_entries_name_are_probed_unless_a_selector_may_take_any():
    disks = devices.build(recorded("vm_gpt_partitions"))
    assert plan_read.disks_to_probe(disks, [{"name": "a", "device": "/dev/loop1"}, {"name": "b", "bind": "/srv/b"},
                                            {"name": "c", "device": "/dev/loop0p1"}, {"name": "d", "device": "/dev/nope"}]
                                    ) == {"loop1", "loop0"}
    assert plan_read.disks_to_probe(disks, [{"name": "b", "bind": "/srv/b"}]) == set()
    assert plan_read.disks_to_probe(disks, [{"name": "a", "device": "/dev/loop1"},
                                            {"name_prefix": "d", "match": {"min_size": "1G"}}]) is None
