# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""docs/promises.md: every promise names tests, and every test it names exists.

The test functions are found by reading the test files (ast), not by importing
them, so that a promise proven on the lab is checked without the lab.
"""

import ast
import os
import re

import pytest

from conftest import REPO

MATRIX = os.path.join(REPO, "docs", "promises.md")
HEADER = ["id", "promise", "stated in", "proven by"]
TEST_REF = re.compile(r"`([^`:]+\.py)::([A-Za-z_][A-Za-z0-9_]*)`")


def cells(line):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def read_promises(text):
    """The rows of every table whose header is HEADER: dicts with the four columns
    and ``line`` (1-based). Other tables and text are left alone."""
    rows, in_table = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith("|"):
            in_table = False
            continue
        values = cells(line)
        if [v.lower() for v in values] == HEADER:
            in_table = True
            continue
        if not in_table or set("".join(values)) <= set("-: "):
            continue
        if len(values) != len(HEADER):
            raise AssertionError("docs/promises.md line %d has %d columns, not %d"
                                 % (number, len(values), len(HEADER)))
        rows.append(dict(zip(["id", "promise", "stated_in", "proven_by"], values), line=number))
    return rows


_DEFINED = {}


def defined_tests(path):
    """Names of the functions defined in a test file, at any depth."""
    if path not in _DEFINED:
        with open(os.path.join(REPO, path)) as handle:
            tree = ast.parse(handle.read(), path)
        _DEFINED[path] = set(node.name for node in ast.walk(tree)
                             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return _DEFINED[path]


def problems(rows):
    """What is wrong with the promise rows, one line each; [] when nothing is."""
    found, seen = [], set()
    for row in rows:
        where = "docs/promises.md line %d (%s)" % (row["line"], row["id"] or "no id")
        if not re.match(r"^[A-Z][0-9]+$", row["id"]):
            found.append("%s: the id must be a letter and a number" % where)
        if row["id"] in seen:
            found.append("%s: id %s is used twice" % (where, row["id"]))
        seen.add(row["id"])
        if not row["promise"]:
            found.append("%s: no promise" % where)
        if not os.path.isfile(os.path.join(REPO, row["stated_in"])):
            found.append("%s: stated in %r, which is not a file of the collection" % (where, row["stated_in"]))
        refs = TEST_REF.findall(row["proven_by"])
        leftover = TEST_REF.sub("", row["proven_by"]).replace("<br>", "").strip()
        if not refs:
            found.append("%s: no test proves it (write `tests/...py::test_name`)" % where)
        elif leftover:
            found.append("%s: %r is not `path::test_name`" % (where, leftover))
        for path, name in refs:
            if not path.startswith("tests/") or not os.path.isfile(os.path.join(REPO, path)):
                found.append("%s: %s does not exist" % (where, path))
            elif name not in defined_tests(path) or not name.startswith("test_"):
                found.append("%s: %s has no test %s" % (where, path, name))
    return found


def test_every_promise_names_a_test_that_exists():
    with open(MATRIX) as handle:
        rows = read_promises(handle.read())
    assert len(rows) >= 50, "the matrix lost its rows: %d read" % len(rows)
    assert problems(rows) == []


SAMPLE = """
| id | promise | stated in | proven by |
|---|---|---|---|
| D1 | A disk with data is refused. | README.md | `tests/unit/plugins/module_utils/host/test_devices.py::test_disk_with_data_or_in_use_is_not_eligible` |
%s
"""


@pytest.mark.parametrize("row, complaint", [
    ("| D2 | A promise without a test. | README.md | |", "no test proves it"),
    ("| D2 | Named test is gone. | README.md | `tests/unit/plugins/module_utils/host/test_devices.py::test_that_was_renamed` |",
     "has no test test_that_was_renamed"),
    ("| D2 | Named file is gone. | README.md | `tests/unit/test_gone.py::test_x` |", "test_gone.py does not exist"),
    ("| D2 | A helper is no test. | README.md | `tests/unit/plugins/module_utils/host/test_devices.py::recorded` |", "has no test recorded"),
    ("| D2 | Prose is no test. | README.md | the lab shows it |", "no test proves it"),
    ("| D1 | Two rows, one id. | README.md | `tests/unit/plugins/module_utils/host/test_devices.py::test_read_only_disk_is_refused` |",
     "used twice"),
    ("| D2 | Stated nowhere. | docs/nowhere.md | `tests/unit/plugins/module_utils/host/test_devices.py::test_read_only_disk_is_refused` |",
     "not a file of the collection"),
])
def test_a_promise_without_an_existing_test_is_named(row, complaint):
    rows = read_promises(SAMPLE % row)
    assert len(rows) == 2
    found = problems(rows)
    assert len(found) == 1 and complaint in found[0], found
    assert "(%s)" % rows[1]["id"] in found[0]


def test_a_row_with_a_missing_column_is_an_error():
    with pytest.raises(AssertionError, match="has 3 columns"):
        read_promises(SAMPLE % "| D2 | no column for the tests | README.md |")


def test_tables_of_other_shapes_are_not_promises():
    assert read_promises("| step | where |\n|---|---|\n| plan | controller |\n") == []
