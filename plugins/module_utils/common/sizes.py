# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one size grammar of the collection's inputs: Kubernetes quantities.

``G`` is 10^9 bytes and ``Gi`` is 2^30, as in a PV's capacity and a claim's
request; the units disk vendors print (``GB``, ``TB``) are the same decimal units,
and ``GiB``/``TiB`` the binary ones. Spellings that mean one thing to Kubernetes and
another to lsblk or Ansible's ``human_to_bytes`` (``K``, ``g``, ``gb``) are refused
with the two spellings that are not ambiguous.

A disk's ``expect: {size: ...}`` matches within :data:`EXPECT_TOLERANCE` when the
size is given with a unit (vendors print ``1.92 TB`` for 1,920,383,410,176 bytes),
and exactly when it is given in bytes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

DECIMAL = {"k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12, "P": 10 ** 15, "E": 10 ** 18}
BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
# The units vendors print: the same decimal and binary units with a B.
VENDOR = dict([(unit + "B", factor) for unit, factor in DECIMAL.items()]
              + [("KB", 10 ** 3)] + [(unit + "B", factor) for unit, factor in BINARY.items()])
UNITS = dict(DECIMAL, **BINARY)
UNITS.update(VENDOR)

# 1 %: every vendor size seen is within 0.1 % of its label, and a decimal label
# read as binary (1.92 TB as 1.92 TiB) is 2.4 % (k) to 10 % (T) away.
EXPECT_TOLERANCE = 0.01

_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$")
# Kubernetes' own forms, as the API server writes them back: milli and exponents too.
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)(([eE][+-]?[0-9]+)|Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
_QUANTITY_SUFFIX = dict(UNITS, m=0.001)
_QUANTITY_SUFFIX[None] = 1


def parse_quantity(value):
    """A Kubernetes quantity (``"100Gi"``, ``"107374182400"``, ``"1e3"``) as an int
    number of units, or None when it is not one. For what the API server returns:
    it rewrites quantities into a canonical form (``1000000000`` comes back as
    ``1G``), so PVs are compared by number, never by string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():   # the usual form for bytes
        return int(value)
    match = _QUANTITY.match(str(value).strip())
    if not match:
        return None
    number, suffix, exponent = match.group(1), match.group(2), match.group(3)
    try:
        if exponent:
            return int(float(number) * 10 ** int(exponent[1:]))
        if "." in number or suffix == "m":
            return int(float(number) * _QUANTITY_SUFFIX[suffix])
        return int(number) * _QUANTITY_SUFFIX[suffix]
    except (ValueError, OverflowError):
        return None


def _suggest(unit):
    """The two unambiguous spellings of a unit someone wrote."""
    letter = unit[:1].upper()
    decimal = "k" if letter == "K" else letter
    return "%s (10^%d bytes) or %si (2^%d bytes)" % (
        decimal, 3 * (" KMGTPE".index(letter)), letter, 10 * (" KMGTPE".index(letter)))


def parse_size(value):
    """Bytes from an int or a size such as ``100Gi``, ``1.92T``, ``1.92TB``, ``512Mi``.

    Raises ValueError with the fix when the value is no size or its unit is
    ambiguous."""
    if isinstance(value, bool):
        raise ValueError("%r is not a size" % (value,))
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative: %r" % (value,))
        return value
    if isinstance(value, float):
        if value < 0:
            raise ValueError("a size cannot be negative: %r" % (value,))
        return int(value)
    match = _SIZE.match(str(value).strip())
    if not match:
        raise ValueError("%r is not a size: give bytes, or a number with a Kubernetes unit such as 500Gi "
                         "(2^30 bytes each) or 1.92T (10^12 bytes each)" % (value,))
    number, unit = match.groups()
    if unit not in UNITS and unit != "":
        if unit[:1].upper() in "KMGTPE":
            raise ValueError("%r: the unit %r is ambiguous; write %s" % (value, unit, _suggest(unit)))
        raise ValueError("%r: unknown unit %r; use k, M, G, T, P (powers of 1000) or Ki, Mi, Gi, Ti, Pi "
                         "(powers of 1024)" % (value, unit))
    if unit == "" and "." in number:
        raise ValueError("%r: a number of bytes has no fraction" % (value,))
    factor = UNITS.get(unit, 1)
    if "." in number:
        whole, frac = number.split(".")
        return (int(whole + frac) * factor) // 10 ** len(frac)
    return int(number) * factor


def is_exact(value):
    """True when a size is given in bytes (compared exactly), False with a unit."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())


def size_matches(expected, actual):
    """Whether a disk of ``actual`` bytes is the ``expected`` size as written:
    exactly when written in bytes, within :data:`EXPECT_TOLERANCE` with a unit."""
    wanted = parse_size(expected)
    if is_exact(expected):
        return actual == wanted
    return abs(actual - wanted) <= wanted * EXPECT_TOLERANCE


def describe_tolerance(expected):
    """How ``expected`` is compared, for messages."""
    if is_exact(expected):
        return "%d bytes exactly" % parse_size(expected)
    wanted = parse_size(expected)
    return "%s = %d bytes, within %d%%" % (expected, wanted, round(EXPECT_TOLERANCE * 100))
