"""The lineage tree as indented lines, and the AI share of the training signal in words
(what `rayalign lineage` prints and the run report shows)."""

from __future__ import annotations

from rayalign.lineage.tree import ai_total

INDENT = "  "


def percent(value: float) -> str:
    return f"{100 * value:.0f}%"


def describe_split(part: dict | None) -> str:
    """"71% AI (smollm2-135m-instruct 38%, judge-7b 33%), 29% human or rules" (unknown when there is some)."""
    if part is None:
        return "no training signal of its own"
    models = sorted(part["ai"].items(), key=lambda item: (-item[1], item[0]))
    text = f"{percent(ai_total(part))} AI"
    if models:
        text += " (" + ", ".join(f"{model} {percent(share)}" for model, share in models) + ")"
    text += f", {percent(part['human'])} human or rules"
    return text + (f", {percent(part['unknown'])} unknown" if part["unknown"] > 0.005 else "")


def describe_origin(entry: dict) -> str:
    """"6 generated, 1 edited, 1 written (2 reviewed)", and what the counts rest on when not the records."""
    origin = entry.get("origin")
    if not origin:
        return "origin unknown"
    counts = ", ".join(f"{n} {name}" for name, n in sorted(origin["origins"].items(), key=lambda item: -item[1]))
    text = (counts or "no records") + (f" ({origin['reviewed']} reviewed)" if origin["reviewed"] else "")
    return text if origin["from"] == "records" else f"{text}; {origin['from']}"


def _run_lines(node: dict, depth: int, shown: set) -> list[str]:
    """A run and its ancestry; a run met again (an SFT run both policy and reward model started
    from) is one line pointing up."""
    pad = INDENT * depth
    if node["kind"] == "missing":
        return [f"{pad}MISSING {node['folder']}: {node['note']}"]
    lines = [f"{pad}{node['name']} ({node['method']})  {node['folder']}"]
    if node["folder"] in shown:
        return [lines[0] + "  (shown above)"]
    shown.add(node["folder"])
    if node.get("note"):
        lines.append(f"{pad}{INDENT}note: {node['note']}")
    if node["signal"] is not None:
        lines.append(f"{pad}{INDENT}training signal of this run: {describe_split(node['signal'])}")
    for parent in node["parents"]:
        lines += _parent_lines(parent, depth + 1, shown)
    for dataset in node["datasets"]:
        lines += _dataset_lines(dataset, depth + 1, shown)
    return lines


def _parent_lines(parent: dict, depth: int, shown: set) -> list[str]:
    pad, role = INDENT * depth, parent["role"]
    if parent.get("type"):
        named = parent["type"] if parent["label"] == parent["type"] else f"{parent['type']} {parent['label']}"
        role += f" ({named}, weight {parent['weight']:g})"
    kind = {"missing": "NOT FOUND"}.get(parent["kind"], parent["kind"])
    lines = [f"{pad}{role}: {parent['ref']} [{kind}]"]
    if "tree" in parent:
        lines += _run_lines(parent["tree"], depth + 1, shown)
    return lines


def _dataset_lines(dataset: dict, depth: int, shown: set) -> list[str]:
    pad = INDENT * depth
    if dataset.get("missing"):
        return [f"{pad}{dataset['role']}: {dataset['path']} [NOT FOUND]"]
    size = "? records" if dataset["records"] is None else f"{dataset['records']} records"
    lines = [f"{pad}{dataset['role']}: {dataset['path']}  {size}, sha256 {dataset['sha256'][:12]}",
             f"{pad}{INDENT}origin: {describe_origin(dataset)}; {describe_split(dataset['split'])}"]
    if "tree" in dataset:
        lines += [f"{pad}{INDENT}written by:"] + _run_lines(dataset["tree"], depth + 2, shown)
    return lines


def tree_lines(tree: dict) -> list[str]:
    return _run_lines(tree, 0, set())


def summary_lines(tree: dict) -> list[str]:
    """The chain's share, then each training stage's own."""
    if tree["kind"] != "run":
        return [f"no lineage: {tree['note']}"]
    if tree["chain"] is None:
        return ["Training signal: none (this run trains no model; its data's origins are above)"]
    count = len(tree["stages"])
    lines = [f"Training signal: {describe_split(tree['chain'])}",
             f"{INDENT}the mean of {count} training stage{'s' if count > 1 else ''}, each counted once:"]
    for stage in tree["stages"]:
        note = f" ({stage['note']})" if stage.get("note") else ""
        lines.append(f"{INDENT * 2}{stage['run']} ({stage['method'] or '?'}): {describe_split(stage['signal'])}{note}")
    return lines
