# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One size grammar for every size users write: Kubernetes quantities (G = 10^9,
Gi = 2^30), the vendors' GB/TB, and ambiguous spellings refused with the fix."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import ast
import glob
import os

import pytest

from conftest import REPO

from ansible_collections.localpv.rollout.plugins.module_utils.common import sizes
from ansible_collections.localpv.rollout.plugins.module_utils.host.plan import recognise as plan_recognise
from ansible_collections.localpv.rollout.plugins.module_utils.kube import volumes as v

# Real disks as their vendors label them and as the kernel counts them.
SAMSUNG_PM883_1_92TB = 3750748848 * 512      # 1,920,383,410,176 bytes
MICRON_5300_960GB = 1875385008 * 512         # 960,197,124,096 bytes
SEAGATE_EXOS_4TB = 7814037168 * 512          # 4,000,787,030,016 bytes


@pytest.mark.parametrize("text, expected", [
    ("100G", 100 * 10 ** 9), ("100Gi", 100 * 2 ** 30), ("1.92T", 1920 * 10 ** 9), ("1.92TB", 1920 * 10 ** 9),
    ("1.5Ti", 3 * 2 ** 39), ("512MiB", 512 * 2 ** 20), ("300 MB", 300 * 10 ** 6), ("4k", 4000),
    ("4Ki", 4096), (4096, 4096), ("4096", 4096), (" 42 ", 42),
])
def test_sizes_are_kubernetes_quantities_and_vendor_units(text, expected):
    assert sizes.parse_size(text) == expected


@pytest.mark.parametrize("bad, words", [
    ("1g", "the unit 'g' is ambiguous; write G (10^9 bytes) or Gi (2^30 bytes)"),
    ("1K", "the unit 'K' is ambiguous; write k (10^3 bytes) or Ki (2^10 bytes)"),
    ("2tb", "the unit 'tb' is ambiguous; write T (10^12 bytes) or Ti (2^40 bytes)"),
    ("1X", "unknown unit 'X'"), ("big", "is not a size"), ("-1G", "is not a size"),
    ("1.5", "a number of bytes has no fraction"), (True, "is not a size"), (-5, "cannot be negative"),
])
def test_an_ambiguous_or_wrong_size_is_refused_with_the_fix(bad, words):
    with pytest.raises(ValueError) as err:
        sizes.parse_size(bad)
    assert words in str(err.value)


def test_the_api_servers_quantities_read_with_the_same_units():
    for unit, factor in list(sizes.DECIMAL.items()) + list(sizes.BINARY.items()):
        assert v.parse_quantity("3" + unit) == sizes.parse_size("3" + unit) == 3 * factor


@pytest.mark.parametrize("label, disk", [
    ("1.92TB", SAMSUNG_PM883_1_92TB), ("1.92T", SAMSUNG_PM883_1_92TB), ("960GB", MICRON_5300_960GB),
    ("4TB", SEAGATE_EXOS_4TB), ("1Gi", 2 ** 30),
])
def test_expect_size_matches_the_size_on_a_vendors_label(label, disk):
    assert sizes.size_matches(label, disk)


@pytest.mark.parametrize("label, disk", [
    # a decimal label read as binary, or the other way round, is 2.4 % (k) to 10 % (T) away
    ("1.92Ti", SAMSUNG_PM883_1_92TB), ("1.75T", SAMSUNG_PM883_1_92TB), ("1G", 2 ** 30), ("1Gi", 10 ** 9),
    # bytes are exact
    (SAMSUNG_PM883_1_92TB + 512, SAMSUNG_PM883_1_92TB), (str(2 ** 30 - 1), 2 ** 30),
])
def test_expect_size_refuses_the_other_units_and_bytes_are_exact(label, disk):
    assert not sizes.size_matches(label, disk)


def test_the_readme_example_size_matches_a_real_disk():
    """The README and docs/examples promise a disk sold as 1.92 TB passes `expect`."""
    import yaml
    with open(os.path.join(REPO, "docs", "examples", "inventory", "host_vars", "node1.yml")) as f:
        entries = yaml.safe_load(f)["localpv_disks"]
    (size,) = [e["expect"]["size"] for e in entries if e.get("expect", {}).get("size")]
    assert sizes.size_matches(size, SAMSUNG_PM883_1_92TB)
    with open(os.path.join(REPO, "README.md")) as f:
        assert "size: %s" % size in f.read()


def test_expect_size_refusal_says_how_it_was_compared_and_what_the_disk_is():
    disk = {"size": SAMSUNG_PM883_1_92TB, "model": None, "serial": None, "wwid": None}
    (reason,) = plan_recognise.expect_reasons(disk, {"size": "1.75T"})
    assert reason == ("expected size 1.75T = 1750000000000 bytes, within 1%, the disk has 1920383410176 bytes "
                      "(1.92TB, 1.75Ti)")


def test_sizes_are_parsed_in_one_place():
    """No other module_utils parses a size of its own (a regex with unit suffixes, or powers of 1024)."""
    for path in glob.glob(os.path.join(REPO, "plugins", "module_utils", "*.py")):
        if path.endswith("sizes.py"):
            continue
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert "Ki|Mi" not in node.value and "[KMGTPE]" not in node.value, path
            if isinstance(node, ast.FunctionDef):
                assert node.name not in ("parse_size", "parse_quantity", "human_to_bytes"), (path, node.name)
