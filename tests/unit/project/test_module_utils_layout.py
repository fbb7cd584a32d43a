# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The boundary of module_utils: ``host/`` is shipped to every node and
``common/`` to both sides, so neither may import ``kube/`` (the controller's API
client and PV model would travel to the nodes with it), and ``common/`` imports
nothing but the standard library and ``common/``. Read from the source (ast),
imports inside functions included."""

import ast
import os
import sys

import pytest

from conftest import REPO

PACKAGE = "ansible_collections.localpv.rollout.plugins.module_utils"
ROOT = os.path.join(REPO, "plugins", "module_utils")
PARTS = ("common", "host", "kube")
STDLIB = set(getattr(sys, "stdlib_module_names", ())) | {"__future__"}


def _files():
    out = []
    for folder, _dirs, names in os.walk(ROOT):
        out += [os.path.relpath(os.path.join(folder, n), ROOT) for n in names if n.endswith(".py")]
    return sorted(out)


def imported_modules(source, package):
    """Every module ``source`` (a module of ``package``) imports, by its full name:
    ``from a import b`` counts as ``a`` and ``a.b`` (``b`` may be a module)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            out.append(base)
            out += ["%s.%s" % (base, alias.name) for alias in node.names]
    return out


def violations(part, modules):
    """What a file of ``part`` may not import, of ``modules``."""
    bad = []
    for name in modules:
        if part in ("common", "host") and (name == PACKAGE + ".kube" or name.startswith(PACKAGE + ".kube.")):
            bad.append("%s (a %s/ file never imports kube/)" % (name, part))
        elif part == "common" and name.split(".")[0] not in STDLIB and not name.startswith(PACKAGE + ".common") \
                and name != PACKAGE:
            bad.append("%s (common/ imports only the standard library and common/)" % name)
    return bad


# Folders of a part: one concern split into files (the host's plan), on the part's side of the boundary.
SUBPACKAGES = (os.path.join("host", "plan"),)


def test_every_file_is_in_one_of_the_three_parts():
    stray = [f for f in _files() if f.split(os.sep)[0] not in PARTS or not (
        len(f.split(os.sep)) == 2 or os.path.dirname(f) in SUBPACKAGES)]
    assert not stray, "module_utils files outside common/, host/ and kube/: %s" % stray
    assert all(os.path.isdir(os.path.join(ROOT, p)) for p in PARTS)


@pytest.mark.skipif(not hasattr(sys, "stdlib_module_names"), reason="needs Python 3.10+ for the stdlib list")
@pytest.mark.parametrize("path", [f for f in _files() if f.split(os.sep)[0] in ("common", "host")])
def test_host_and_common_stay_within_the_boundary(path):
    part = path.split(os.sep)[0]
    with open(os.path.join(ROOT, path)) as handle:
        modules = imported_modules(handle.read(), "%s.%s" % (PACKAGE, part))
    assert violations(part, modules) == [], path


@pytest.mark.skipif(not hasattr(sys, "stdlib_module_names"), reason="needs Python 3.10+ for the stdlib list")
@pytest.mark.parametrize("part, source, expected", [
    ("host", "from %s.kube import volumes as vol\n" % PACKAGE, True),
    ("host", "from %s.kube.client import KubeError\n" % PACKAGE, True),
    ("host", "def f():\n    import %s.kube.client\n" % PACKAGE, True),
    ("host", "from ..kube import client\n", True),
    ("common", "from %s import kube\n" % PACKAGE, True),
    ("common", "from %s.host import devices\n" % PACKAGE, True),
    ("common", "from ansible.module_utils.basic import AnsibleModule\n", True),
    ("common", "import yaml\n", True),
    ("common", "import os\nfrom %s.common import sizes\nfrom . import naming\n" % PACKAGE, False),
    ("host", "from %s.host import devices\nfrom %s.common import naming\n" % (PACKAGE, PACKAGE), False),
])
def test_the_check_sees_a_crossing(part, source, expected):
    modules = imported_modules(source, "%s.%s" % (PACKAGE, part))
    assert bool(violations(part, modules)) is expected, modules
