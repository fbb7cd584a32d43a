# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""No module returns its own data under a key Ansible gives a meaning of its own:
ansible-core 2.20+ converts such a value (a list under ``skipped`` became ``True``)
and the data is lost."""

import ast
import glob
import os

import yaml

from conftest import REPO

# Keys of a task result that Ansible reads itself (the "Common return values").
RESERVED = {"skipped", "failed", "changed", "rc", "results", "stdout", "stdout_lines", "stderr",
            "stderr_lines", "invocation", "exception", "warnings", "deprecations", "ansible_facts",
            "backup_file", "diff", "msg", "unreachable", "item"}
# The ones a module may set, in the meaning Ansible gives them.
SET_BY_MODULES_AS_ANSIBLE_MEANS = {"changed", "msg", "diff"}


def modules():
    for path in sorted(glob.glob(os.path.join(REPO, "plugins", "modules", "*.py"))):
        with open(path) as f:
            yield os.path.basename(path), ast.parse(f.read())


def test_no_documented_return_value_uses_a_key_ansible_reserves():
    found = {}
    for name, tree in modules():
        for node in tree.body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "RETURN":
                keys = set(yaml.safe_load(node.value.value) or {})
                if keys & RESERVED:
                    found[name] = sorted(keys & RESERVED)
    assert found == {}


def test_no_module_exits_with_its_data_under_a_key_ansible_reserves():
    found = {}
    for name, tree in modules():
        for call in ast.walk(tree):
            if isinstance(call, ast.Call) and getattr(call.func, "attr", None) in ("exit_json", "fail_json"):
                keys = {kw.arg for kw in call.keywords if kw.arg}
                bad = keys & (RESERVED - SET_BY_MODULES_AS_ANSIBLE_MEANS)
                if bad:
                    found.setdefault(name, set()).update(bad)
    assert found == {}
