# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run report: per node, each volume with its device, size, filesystem, mount,
PV, capacity, phase and claim, as a document (JSON), a table that fits a given
width, and Markdown. Pure functions of plain data, no Ansible, no I/O.

A report is ``{"kind", "planned", "nodes": [{"node", "volumes": [row...]}], "totals"}``;
a row has the keys of ``ROW_KEYS`` (``None`` when not known) plus ``action``,
what the run did (or, when ``planned``, would do) to the PV.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.localpv.rollout.plugins.module_utils.common import naming

ROW_KEYS = ("volume", "device", "size", "fstype", "mount", "pv", "capacity", "phase", "claim", "action")
KINDS = ("site", "decommission", "reclaim")
# Columns of the table: header, row key, which end of a long value is kept.
COLUMNS = (("VOLUME", "volume", "head"), ("DEVICE", "device", "tail"),
           ("SIZE", "size", "head"), ("FS", "fstype", "head"), ("MOUNT", "mount", "tail"),
           ("PV", "pv", "tail"), ("CAPACITY", "capacity", "head"), ("PHASE", "phase", "head"),
           ("CLAIM", "claim", "head"), ("ACTION", "action", "head"))
# Columns that give up width when the table is too wide: first down to their soft floor
# (the tail of a stable id or the head of a claim still tells them apart), then to MIN_WIDTH.
SOFT_FLOOR = {"device": 16, "claim": 20, "mount": 12, "pv": 20, "volume": 8, "action": 6}
SHRINK_ORDER = ("device", "claim", "mount", "pv", "volume", "action")
MIN_WIDTH = 6
MARK = "~"
GAP = "  "
NARROW_GAP = " "  # between columns of a table that does not fit with GAP
# local_pv's result keys and the action each stands for
# Hosts of the run that were not reached, or failed before their volumes were known.
HOST_STATUSES = {"unreachable": "UNREACHABLE: not reached over SSH, nothing known or done there",
                 "failed": "FAILED before its volumes were known (see the error above)"}
CHANGE_ACTIONS = (("created", "create"), ("updated", "update"), ("taken_over", "take over"),
                  ("replaced", "replace"), ("deleted", "delete"))
# The writes a user must be able to find without --diff, one line each: what happened to a
# PV that no longer matches a volume of the inventory, or that was not ours.
WRITE_KINDS = (("deleted", "pruned", "no volume of the inventory wants it and it was unbound; deleted"),
               ("taken_over", "taken over", "made ours in place; its name, claim and data stay"),
               ("replaced", "replaced", "unbound, deleted and made again with fields that cannot change in place"),
               ("kept_bound", "kept bound", "no volume of the inventory wants it, but a claim holds it; retire it "
                                            "with decommission"))


def human_size(value):
    """Bytes as a short binary quantity (``1.5Gi``, ``512Mi``); ``None`` stays ``None``."""
    if value is None:
        return None
    size = float(value)
    for unit in ("", "Ki", "Mi", "Gi", "Ti", "Pi"):
        if abs(size) < 1024 or unit == "Pi":
            break
        size /= 1024
    if unit == "":
        return "%d" % size
    text = ("%.1f" % size).rstrip("0").rstrip(".") if size < 100 else "%d" % round(size)
    return text + unit


def _device_of(volume):
    """What identifies the storage of a published volume: the disk's stable id
    (with the partition number disk_prepare keeps), else the bind source, else the
    kernel name."""
    if volume.get("stable_id"):
        part = volume.get("partition")
        return volume["stable_id"] + ("-part%s" % part if part else "")
    return volume.get("source") or volume.get("device") or volume.get("disk")


def _row(**values):
    row = dict((key, None) for key in ROW_KEYS)
    row.update(values)
    return row


def _changes_by_pv(changes):
    actions = {}
    for key, action in CHANGE_ACTIONS:
        for name in (changes or {}).get(key) or []:
            actions[name] = action
    for item in (changes or {}).get("kept_bound") or []:
        actions[item.get("name")] = "keep (bound)"
    return actions


def named_writes(changes, planned=False):
    """One entry per PV pruned, taken over, replaced or kept bound by local_pv
    (``changes`` is its result, with ``return_names``): ``{write, pv, node,
    claim, why}``, in that order of kinds, then by PV name."""
    out = []
    for key, write, why in WRITE_KINDS:
        for item in (changes or {}).get(key) or []:
            item = item if isinstance(item, dict) else {"name": item}
            out.append({"write": write if not planned or key == "kept_bound" else "to be " + write,
                        "pv": item.get("name"), "node": item.get("node"), "claim": item.get("claim"), "why": why})
    return out


def write_lines(report):
    """The named writes as lines a user reads: ``pruned: PV local-node1-old (...)``."""
    return ["%s: PV %s%s%s (%s)" % (w["write"], w["pv"], " of node %s" % w["node"] if w.get("node") else "",
                                    ", claim %s" % w["claim"] if w.get("claim") else "", w["why"])
            for w in report.get("writes") or []]


def site_report(hosts, pvs, changes=None, planned=False):
    """The report of a site run.

    ``hosts``: ``[{"node": name, "volumes": [published volume...]}]`` (disk_prep's
    ``localpv_volumes``); ``pvs``: local_pv_info's ``pvs`` (what is in the cluster,
    read after the run, or before it when ``planned``); ``changes``: local_pv's
    result. Owned PVs of these nodes that no volume wants are listed too.
    """
    by_key = dict(((pv.get("node"), pv.get("volume")), pv) for pv in pvs or [])
    actions = _changes_by_pv(changes)
    nodes, seen = [], set()
    for host in hosts:
        node, rows = host["node"], []
        if host.get("status") in HOST_STATUSES:
            # nothing is known of its volumes: said so, not left out of the table
            nodes.append({"node": node, "volumes": [], "status": host["status"]})
            continue
        for volume in host.get("volumes") or []:
            name = volume["name"]
            pv = by_key.get((naming.label_value(node), name)) or by_key.get((node, name)) or {}
            pv_name = pv.get("name") or naming.pv_name(node, name)
            seen.add(pv_name)
            rows.append(_row(volume=name, device=_device_of(volume), size=volume.get("size"),
                             fstype=volume.get("fstype") or ("block" if volume.get("mode") == "block" else None),
                             mount=volume.get("path"), pv=pv_name,
                             capacity=pv.get("capacity") if pv else volume.get("capacity"),
                             phase=pv.get("phase"), claim=pv.get("claim"),
                             action=actions.get(pv_name, "create" if planned and not pv else "none")))
        nodes.append({"node": node, "volumes": rows})
    for pv in pvs or []:
        if pv.get("name") not in seen:
            entry = _node_entry(nodes, pv.get("node"))
            entry["volumes"].append(_pv_row(pv, actions.get(pv.get("name"), "none")))
    return _document("site", nodes, planned, named_writes(changes, planned))


def _node_entry(nodes, node):
    for entry in nodes:
        if entry["node"] == node:
            return entry
    nodes.append({"node": node, "volumes": []})
    return nodes[-1]


def _pv_row(pv, action):
    return _row(volume=pv.get("volume"), device=pv.get("stable_id"), fstype=pv.get("fstype") or (
        "block" if pv.get("volume_mode") == "Block" else None), mount=pv.get("path"), pv=pv.get("name"),
        capacity=pv.get("capacity"), phase=pv.get("phase"), claim=pv.get("claim"), action=action)


def pv_report(kind, nodes, pvs, action, planned=False):
    """The report of a decommission or reclaim run from the PVs (local_pv_info
    entries) it retires or recycles; every node of ``nodes`` is listed, with its
    PVs or none."""
    if kind not in KINDS:
        raise ValueError("report kind %r is not one of %s" % (kind, ", ".join(KINDS)))
    entries = [{"node": node, "volumes": []} for node in nodes]
    for pv in pvs:
        _node_entry(entries, pv.get("node"))["volumes"].append(_pv_row(pv, action))
    return _document(kind, entries, planned)


def _document(kind, nodes, planned, writes=()):
    for entry in nodes:
        entry["volumes"].sort(key=lambda r: (r["volume"] is None, r["volume"] or "", r["pv"] or ""))
    nodes = sorted(nodes, key=lambda e: e["node"] or "")
    totals = {"nodes": len(nodes), "volumes": 0, "phases": {}, "actions": {}}
    for entry in nodes:
        if entry.get("status"):
            totals[entry["status"]] = totals.get(entry["status"], 0) + 1
        for row in entry["volumes"]:
            totals["volumes"] += 1
            phase = row["phase"] or "no PV"
            totals["phases"][phase] = totals["phases"].get(phase, 0) + 1
            totals["actions"][row["action"]] = totals["actions"].get(row["action"], 0) + 1
    return {"kind": kind, "planned": bool(planned), "nodes": nodes, "totals": totals, "writes": list(writes)}


def _cells(report):
    """The table's cells as text: per node, ``(node, [cells of each volume])``."""
    groups = []
    for entry in report["nodes"]:
        rows = []
        for row in entry["volumes"]:
            cells = dict((key, "-" if value is None else str(value)) for key, value in row.items())
            cells["size"] = human_size(row["size"]) or "-"
            cells["capacity"] = human_size(row["capacity"]) or "-"
            rows.append(cells)
        groups.append((entry["node"] or "-", rows))
    return groups


def _columns(report, table=False):
    """The columns worth printing: ACTION only when something is (to be) done, and in
    the table only when the rows differ in it (else the summary line says it)."""
    wanted = [c for c in COLUMNS if c[1] != "action"]
    actions = set(r["action"] for e in report["nodes"] for r in e["volumes"])
    if actions - {"none", None} and not (table and len(actions) == 1):
        wanted.append(COLUMNS[-1])
    return wanted


def fit_widths(natural, headers, keys, width, gap=GAP):
    """Column widths: each column's widest cell, then, while the line is longer than
    ``width``, the widest column of ``SHRINK_ORDER`` above its soft floor gives up one
    character; when all are at their soft floor, the same down to the header's width
    or ``MIN_WIDTH``."""
    widths = list(natural)
    hard = [max(len(h), MIN_WIDTH) for h in headers]
    soft = [max(SOFT_FLOOR.get(k, 0), f) for k, f in zip(keys, hard)]
    total = sum(widths) + len(gap) * (len(widths) - 1)
    for floor in (soft, hard):
        while total > width:
            candidates = [i for i, key in enumerate(keys) if key in SHRINK_ORDER and widths[i] > floor[i]]
            if not candidates:
                break
            # the widest first; among equals, the one earliest in SHRINK_ORDER
            i = max(candidates, key=lambda j: (widths[j], -SHRINK_ORDER.index(keys[j])))
            widths[i] -= 1
            total -= 1
    return widths


def common_root(paths):
    """The directory all ``paths`` are in (with its trailing slash), or ``""``."""
    paths = [p for p in paths if p and p.startswith("/")]
    if not paths:
        return ""
    parts = [p.split("/")[:-1] for p in paths]
    common = []
    for items in zip(*parts):
        if any(item != items[0] for item in items):
            break
        common.append(items[0])
    root = "/".join(common)
    return root + "/" if len(root) > 1 else ""


def cut(text, width, keep="head"):
    """``text`` in at most ``width`` characters; a cut is marked with ``MARK``
    where the text was cut (the end of the text, or its start when the tail is kept)."""
    if len(text) <= width:
        return text
    if keep == "tail":
        return MARK + text[len(text) - width + 1:]
    return text[:width - 1] + MARK


TITLES = {"site": ("Local volumes per node", "Local volumes per node, planned (check mode: nothing was changed)"),
          "decommission": ("Volumes retired", "Volumes to retire (the plan: nothing was changed)"),
          "reclaim": ("Volumes wiped and made Available", "Volumes to wipe and make Available (the plan)")}


def title(report):
    return TITLES[report["kind"]][1 if report["planned"] else 0]


def summary(report):
    """One line: how many nodes and volumes, by phase and by action."""
    totals = report["totals"]
    phases = ", ".join("%d %s" % (n, p) for p, n in sorted(totals["phases"].items()))
    actions = ", ".join("%s %d" % (a, n) for a, n in sorted(totals["actions"].items()) if a != "none")
    text = "%d node(s), %d volume(s)" % (totals["nodes"], totals["volumes"])
    missed = ", ".join("%d %s" % (totals[k], k) for k in sorted(HOST_STATUSES) if totals.get(k))
    if missed:
        text += " (%s)" % missed
    if phases:
        text += ": " + phases
    if actions:
        text += "; " + ("to %s" if report["planned"] else "%s") % actions
    return text


def table_lines(report, width=100):
    """The report as lines of text, none longer than ``width``: a title, a header,
    per node a ``[node]`` line and one row per volume, and a summary. Long cells
    are cut and the cut marked with ``MARK``."""
    groups = _cells(report)
    statuses = dict((e["node"] or "-", e.get("status")) for e in report["nodes"])
    rows = [cells for node_rows in (g[1] for g in groups) for cells in node_rows]
    # the mounts' common directory is said once, in the title
    root = common_root([r["mount"] for r in rows])
    for cells in rows:
        if root and cells["mount"].startswith(root):
            cells["mount"] = cells["mount"][len(root):]
    columns = _columns(report, table=True)
    headers = [c[0] for c in columns]
    keys = [c[1] for c in columns]
    natural = [max([len(h)] + [len(r[k]) for r in rows]) for h, k in zip(headers, keys)]
    gap = GAP if sum(natural) + len(GAP) * (len(natural) - 1) <= width else NARROW_GAP
    widths = fit_widths(natural, headers, keys, width, gap)

    def line(cells):
        text = gap.join(cut(cells[c[1]], w, c[2]).ljust(w) for c, w in zip(columns, widths))
        return text.rstrip()[:width]

    head = title(report) + (", mounts under %s" % root if root else "")
    if any(n > w for n, w in zip(natural, widths)):
        head += " (%s marks a cut)" % MARK
    lines = [cut(head, width), line(dict(zip(keys, headers)))]
    for node, node_rows in groups:
        status = statuses.get(node)
        lines.append(cut("[%s]%s" % (node, " " + HOST_STATUSES[status] if status else "" if node_rows
                                     else " no volume"), width, "tail"))
        lines.extend(line(cells) for cells in node_rows)
    lines.append(cut(summary(report), width))
    # not cut: each names a PV that was written, which must be found in the output
    lines.extend(write_lines(report))
    return lines


def _md_cell(value):
    return "-" if value in (None, "") else str(value).replace("|", "\\|")


def markdown(report):
    """The report as Markdown: a title, a table per node (nothing cut), the summary."""
    out = ["# " + title(report), ""]
    columns = _columns(report)
    for entry in report["nodes"]:
        out += ["## " + _md_cell(entry["node"]), ""]
        out.append("| " + " | ".join(c[0].capitalize() for c in columns) + " |")
        out.append("|" + "---|" * len(columns))
        for row in entry["volumes"]:
            cells = dict(row, size=human_size(row["size"]), capacity=human_size(row["capacity"]))
            out.append("| " + " | ".join(_md_cell(cells[c[1]]) for c in columns) + " |")
        if entry.get("status"):
            out.append("| " + " | ".join([HOST_STATUSES[entry["status"]]] + ["-"] * (len(columns) - 1)) + " |")
        elif not entry["volumes"]:
            out.append("| " + " | ".join(["(none)"] + ["-"] * (len(columns) - 1)) + " |")
        out.append("")
    out.append(summary(report) + ".")
    if report.get("writes"):
        out += ["", "## PVs pruned, taken over, replaced or kept bound", ""]
        out += ["- " + line.replace("|", "\\|") for line in write_lines(report)]
    return "\n".join(out) + "\n"


# The options of volume_report (module documentation and action plugin share them).
ARGUMENT_SPEC = dict(
    kind=dict(type="str", choices=list(KINDS), default="site"),
    hosts=dict(type="list", elements="dict", default=[], options=dict(
        node=dict(type="str", required=True),
        volumes=dict(type="list", elements="dict", default=[]),
        status=dict(type="str", choices=sorted(HOST_STATUSES)))),
    pvs=dict(type="list", elements="dict", default=[]),
    nodes=dict(type="list", elements="str", default=[]),
    changes=dict(type="dict", default={}),
    action=dict(type="str", default="none"),
    planned=dict(type="bool"),
    width=dict(type="int", default=100),
)


def report_result(params, check_mode=False):
    """What volume_report returns for its validated ``params``: the report, its
    table (as lines and as one text) and its Markdown."""
    planned = check_mode if params["planned"] is None else params["planned"]
    if params["kind"] == "site":
        report = site_report(params["hosts"], params["pvs"], params["changes"], planned=planned)
    else:
        report = pv_report(params["kind"], params["nodes"], params["pvs"], params["action"], planned=planned)
    lines = table_lines(report, params["width"])
    return {"changed": False, "report": report, "lines": lines, "table": "\n".join(lines),
            "markdown": markdown(report)}
