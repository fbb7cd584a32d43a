# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mutation testing of the safety rules: every mutant must be killed by the unit suite.

    python tests/mutation/run.py [--work DIR] [--only devices.py] [--python PY] [--json OUT]

The functions listed in safety_functions.txt beside this file are mutated with
cosmic-ray (one change at a time: a comparison flipped, a condition dropped, a
constant changed...), and after each change the unit tests run (``pytest -x
tests/unit``). A mutant the tests do not notice "survives": a safety rule could be
lost without a test failing. The run prints, per file, how many mutants were
killed and how many survived, with the diff of each survivor, and exits 1 when
any survived.

cosmic-ray edits the files it mutates in place, so it works on a copy of the
checkout in a temporary directory (``--work``, default: under the lab cache),
never on the checkout itself.
"""

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TARGETS = os.path.join(HERE, "safety_functions.txt")


def read_targets(path=TARGETS):
    """{file: ([function or Class.method, ...], [test file, ...])} from
    safety_functions.txt; no test files named means all of tests/unit."""
    targets = {}
    with open(path) as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            if not line or line.startswith("equivalent:"):
                continue
            name, _sep, rest = line.partition(":")
            functions, _sep, tests = rest.partition("--")
            entry = targets.setdefault(name.strip(), ([], []))
            entry[0].extend(functions.split())
            entry[1].extend(tests.split())
    return targets


def read_equivalents(path=TARGETS):
    """{(file, source line stripped): [(operator, column or None), ...]} of the mutants
    that change nothing a caller can see (``equivalent: file: source line | operator``
    lines, one per operator; ``operator at column N`` when the line holds that
    operator more than once and only the one at column N, counted from 0, is
    equivalent)."""
    found = {}
    with open(path) as handle:
        for line in handle:
            if not line.startswith("equivalent:"):
                continue
            name, _sep, rest = line[len("equivalent:"):].partition(":")
            text, _sep, operator = rest.rpartition("|")
            operator, _sep, column = operator.strip().partition(" at column ")
            found.setdefault((name.strip(), text.strip()), []).append((operator, int(column) if column else None))
    return found


def is_equivalent(equivalents, module, text, operator, column=None):
    return any(operator == wanted and at in (None, column)
               for wanted, at in equivalents.get((module, text.strip()), []))


# Replacing the % of a message's formatting changes what a refusal says, not what
# is refused, and makes most of the mutants of these functions: left out, so that
# a run fits a small machine.
SKIPPED_OPERATORS = ("core/ReplaceBinaryOperator_Mod_",)


def function_lines(source, names):
    """{name: (first line, last line)} of the named functions (``Class.method`` for a
    method) in ``source``; a name that is not there is an error, so that a renamed
    rule is not silently left out."""
    found = {}
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[node.name] = (node.lineno, node.end_lineno)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found["%s.%s" % (node.name, item.name)] = (item.lineno, item.end_lineno)
    missing = [name for name in names if name not in found]
    if missing:
        raise SystemExit("safety_functions.txt names %s, not found" % ", ".join(missing))
    return dict((name, found[name]) for name in names)


def rule_removals(source, ranges):
    """Mutants that switch one rule off: the condition of each ``if``/``elif`` and
    each conditional expression inside ``ranges`` replaced with ``False``, the way
    a rule lost in an edit looks (cosmic-ray negates conditions, which the tests
    notice far more easily). Yields (function, line, mutated source)."""
    lines = source.splitlines(True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line.encode("utf-8")))
    data = source.encode("utf-8")
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.If, ast.IfExp)):
            continue
        test = node.test
        owner = next((name for name, (first, last) in ranges.items() if first <= test.lineno <= last), None)
        if owner is None:
            continue
        start = offsets[test.lineno - 1] + test.col_offset
        end = offsets[test.end_lineno - 1] + test.end_col_offset
        yield owner, test.lineno, (data[:start] + b"(False)" + data[end:]).decode("utf-8")


def run_removals(checkout, module, ranges, python, tests, timeout, equivalents=None):
    """Each rule switched off in turn; {function: {"killed": n, "survived": [...]}}."""
    path = os.path.join(checkout, module)
    with open(path) as handle:
        original = handle.read()
    summary = {}
    try:
        for owner, line, mutated in rule_removals(original, ranges):
            entry = summary.setdefault(owner, {"killed": 0, "survived": [], "incompetent": 0, "equivalent": 0})
            if is_equivalent(equivalents or {}, module, original.splitlines()[line - 1], "rule switched off"):
                entry["equivalent"] += 1
                continue
            with open(path, "w") as handle:
                handle.write(mutated)
            try:
                proc = subprocess.run([python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"] + tests,
                                      cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      timeout=timeout, check=False)
                killed = proc.returncode != 0
            except subprocess.TimeoutExpired:
                killed = True
            if killed:
                entry["killed"] += 1
            else:
                text = original.splitlines()[line - 1].strip()
                entry["survived"].append({"line": line, "operator": "rule switched off", "occurrence": 0,
                                          "diff": "line %d: %s  ->  condition False" % (line, text)})
    finally:
        with open(path, "w") as handle:
            handle.write(original)
    return summary


def merge(first, second):
    """Two {function: counts} summaries added up."""
    merged = json.loads(json.dumps(first))
    for name, entry in second.items():
        into = merged.setdefault(name, {"killed": 0, "survived": [], "incompetent": 0, "equivalent": 0})
        into["killed"] += entry["killed"]
        into["equivalent"] = into.get("equivalent", 0) + entry.get("equivalent", 0)
        into["incompetent"] += entry["incompetent"]
        into["survived"] += entry["survived"]
    return merged


def copy_checkout(dest):
    """The files git knows (tracked and new, not ignored) copied to ``dest``."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO, check=True, stdout=subprocess.PIPE).stdout.decode()
    for rel in filter(None, out.split("\0")):
        src = os.path.join(REPO, rel)
        if not os.path.lexists(src):
            continue
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)


CONFIG = """[cosmic-ray]
module-path = "{module}"
timeout = {timeout}
excluded-modules = []
test-command = "{python} -m pytest -x -q -p no:cacheprovider {tests}"

[cosmic-ray.distributor]
name = "local"
"""


def keep_only(session, module, ranges, equivalents=None):
    """Mark every mutant outside ``ranges`` (line spans), and every known
    equivalent one, skipped; returns ({function: job ids} of the mutants kept,
    {function: count} of the equivalent ones)."""
    from cosmic_ray.work_db import use_db, WorkDB
    from cosmic_ray.work_item import WorkResult, WorkerOutcome

    kept, equivalent = {}, {}
    with open(os.path.join(session_root(session), module)) as handle:
        lines = handle.read().splitlines()
    with use_db(session, WorkDB.Mode.open) as db:
        skip = []
        for item in db.work_items:
            line = item.mutations[0].start_pos[0]
            owner = next((name for name, (first, last) in ranges.items() if first <= line <= last), None)
            if item.mutations[0].operator_name.startswith(SKIPPED_OPERATORS):
                owner = None
            elif owner and is_equivalent(equivalents or {}, module, lines[line - 1],
                                         item.mutations[0].operator_name, item.mutations[0].start_pos[1]):
                equivalent[owner] = equivalent.get(owner, 0) + 1
                owner = None
            if owner is None:
                skip.append(item.job_id)
            else:
                kept.setdefault(owner, []).append(item.job_id)
        if skip:
            db.set_multiple_results(skip, WorkResult(output=None, test_outcome=None, diff=None,
                                                     worker_outcome=WorkerOutcome.SKIPPED))
    return kept, equivalent


def session_root(session):
    """The copy of the checkout a session's module paths are relative to."""
    with open(os.path.splitext(session)[0] + ".root") as handle:
        return handle.read().strip()


def results(session, kept):
    """Per function: killed, survived (with diffs), incompetent."""
    from cosmic_ray.work_db import use_db, WorkDB

    owner = dict((job, name) for name, jobs in kept.items() for job in jobs)
    summary = {}
    with use_db(session, WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            name = owner.get(item.job_id)
            if name is None:
                continue
            entry = summary.setdefault(name, {"killed": 0, "survived": [], "incompetent": 0, "equivalent": 0})
            outcome = getattr(result.test_outcome, "value", result.test_outcome)
            outcome = str(outcome).lower() if outcome else None
            if outcome == "killed":
                entry["killed"] += 1
            elif outcome == "survived":
                mutation = item.mutations[0]
                entry["survived"].append({"line": mutation.start_pos[0], "operator": mutation.operator_name,
                                          "occurrence": mutation.occurrence, "diff": result.diff})
            else:
                entry["incompetent"] += 1
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", help="directory for the copy and the sessions (default: a new one under "
                                       "LOCALPV_LAB_CACHE or the system's temporary directory)")
    parser.add_argument("--only", action="append", default=[], help="a file (or its base name) of the list")
    parser.add_argument("--python", default=sys.executable, help="the Python that runs the unit tests")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one test run may take")
    parser.add_argument("--json", help="write the counts and survivors here too")
    args = parser.parse_args(argv)

    targets, equivalents = read_targets(), read_equivalents()
    if args.only:
        targets = dict((f, entry) for f, entry in targets.items()
                       if f in args.only or os.path.basename(f) in args.only)
    base = args.work or tempfile.mkdtemp(prefix="localpv-mutants-", dir=os.environ.get("LOCALPV_LAB_CACHE"))
    collections = os.path.join(base, "collections")
    checkout = os.path.join(collections, "ansible_collections", "localpv", "rollout")
    if os.path.exists(checkout):
        shutil.rmtree(checkout)
    os.makedirs(checkout)
    copy_checkout(checkout)
    # the copy's conftest finds itself here and imports the copy, not the checkout
    os.environ["LOCALPV_COLLECTIONS"] = collections
    cosmic_ray = os.path.join(os.path.dirname(sys.executable), "cosmic-ray")

    report, started = {}, time.time()
    for module, (functions, tests) in sorted(targets.items()):
        with open(os.path.join(checkout, module)) as handle:
            ranges = function_lines(handle.read(), functions)
        tag = os.path.splitext(os.path.basename(module))[0]
        config, session = os.path.join(base, tag + ".toml"), os.path.join(base, tag + ".sqlite")
        with open(config, "w") as handle:
            handle.write(CONFIG.format(module=module, timeout=args.timeout, python=args.python,
                                       tests=" ".join(tests) or "tests/unit"))
        if os.path.exists(session):
            os.remove(session)
        with open(os.path.splitext(session)[0] + ".root", "w") as handle:
            handle.write(checkout)
        # the tests must pass on the unmutated copy, or every mutant would count as killed
        baseline = subprocess.run([args.python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
                                  + (tests or ["tests/unit"]), cwd=checkout, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, universal_newlines=True, check=False)
        if baseline.returncode != 0:
            print(baseline.stdout)
            raise SystemExit("the tests of %s fail before any mutation (exit %d)" % (module, baseline.returncode))
        subprocess.run([cosmic_ray, "init", config, session], cwd=checkout, check=True)
        kept, equivalent = keep_only(session, module, ranges, equivalents)
        count = sum(len(jobs) for jobs in kept.values())
        print("%s: %d mutants in %s" % (module, count, ", ".join(functions)), flush=True)
        began = time.time()
        subprocess.run([cosmic_ray, "exec", config, session], cwd=checkout, check=True)
        found = results(session, kept)
        for name, number in equivalent.items():
            found.setdefault(name, {"killed": 0, "survived": [], "incompetent": 0, "equivalent": 0})
            found[name]["equivalent"] += number
        removed = run_removals(checkout, module, ranges, args.python, tests or ["tests/unit"], args.timeout,
                               equivalents)
        found = merge(found, removed)
        report[module] = {"functions": found, "seconds": round(time.time() - began)}

    survivors = 0
    print("\nfile                                        killed  survived  equivalent  incompetent  seconds")
    for module, data in sorted(report.items()):
        funcs = data["functions"].values()
        killed = sum(f["killed"] for f in funcs)
        survived = sum(len(f["survived"]) for f in funcs)
        equivalent = sum(f.get("equivalent", 0) for f in funcs)
        incompetent = sum(f["incompetent"] for f in funcs)
        survivors += survived
        counts = (module, killed, survived, equivalent, incompetent, data["seconds"])
        print("%-44s %6d  %8d  %10d  %11d  %7d" % counts)
    for module, data in sorted(report.items()):
        for name, entry in sorted(data["functions"].items()):
            for mutant in entry["survived"]:
                where = (module, name, mutant["line"], mutant["operator"], mutant["occurrence"], mutant["diff"])
                print("\nSURVIVED %s %s line %d (%s #%d)\n%s" % where)
    print("\n%d survivor(s) in %d s; work directory %s" % (survivors, time.time() - started, base))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1, sort_keys=True)
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
