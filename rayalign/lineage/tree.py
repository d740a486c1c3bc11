"""The lineage tree of a run, down to base models and human data, and how much of its training
signal came from AI models, and from which.

The tree: a run's parents (the model it starts from, its teacher or labeler, its reward sources)
and its datasets, each parent run and each dataset that a run wrote (a path inside a run
folder) followed to that run's own lineage.json (or, for a run without one, to what its
config.yaml says now). A folder that is gone is reported in the tree, not raised.

The share of the training signal, a split into `ai` (by model), `human` (people, and rules
people wrote) and `unknown` that sums to 1:

    a dataset     its records counted by origin (rayalign/lineage/data.py): a record whose text
                  or label a model produced and no person edited or wrote is AI, by that model;
                  shipped data and records a person edited or wrote are human; user data
                  without provenance is unknown
    a run's own   sft, dpo, rm: its training data's split. rlhf: its reward sources' splits
    signal        weighted by |weight| (weight 0 pays nothing and counts nothing): a function or
                  a grader without a model is a rule (human); a reward model that is a run
                  brings that run's own split; a critic, judge or a grader with a score_model
                  is AI (its model); anything else is unknown. Runs that train
                  nothing (prompting, synthetic data, AI labels) have none: their products count
                  where they are trained on
    the chain     the mean of the own splits of the run and of each run it started from, each
                  training stage counted once; a start run that cannot be read counts as unknown
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from rayalign.lineage.record import LINEAGE_FILE, lineage_of

OFFLINE = ("sft", "dpo", "rm")


def load_lineage(folder: Path) -> tuple[dict | None, str | None]:
    """(lineage, note): lineage.json; else one made now from config.yaml (noted); else (None, why)."""
    file = folder / LINEAGE_FILE
    try:
        if file.is_file():
            return json.loads(file.read_text()), None
        if (folder / "config.yaml").is_file():
            from rayalign.config import RunConfig

            config = RunConfig.model_validate(yaml.safe_load((folder / "config.yaml").read_text()))
            return lineage_of(config, folder), f"no {LINEAGE_FILE}: made now from config.yaml"
    except Exception as exc:  # a damaged file is reported in the tree
        return None, f"{file.name if file.is_file() else 'config.yaml'} unreadable ({type(exc).__name__}: {exc})"
    return None, "not a run folder (no lineage.json, no config.yaml)" if folder.is_dir() else "no such folder"


def split(ai: dict | None = None, human: float = 0.0, unknown: float = 0.0) -> dict:
    return {"ai": {model: share for model, share in (ai or {}).items() if share}, "human": human, "unknown": unknown}


def dataset_split(entry: dict) -> dict:
    origin, records = entry.get("origin"), entry.get("records")
    if not origin or not records:
        return split(unknown=1.0)
    return split({m: n / records for m, n in origin["ai"].items()}, origin["human"] / records,
                 origin["unknown"] / records)


def mix(weighted: list[tuple[float, dict]]) -> dict | None:
    """The weighted mean of splits (weights need not sum to 1); None when nothing weighs."""
    total = sum(weight for weight, _ in weighted)
    if total <= 0:
        return None
    ai: dict[str, float] = {}
    for weight, part in weighted:
        for model, share in part["ai"].items():
            ai[model] = ai.get(model, 0.0) + weight * share / total
    return split(ai, sum(w * p["human"] for w, p in weighted) / total,
                 sum(w * p["unknown"] for w, p in weighted) / total)


def ai_total(part: dict) -> float:
    return sum(part["ai"].values())


def build_tree(folder: str | Path, _above: frozenset = frozenset()) -> dict:
    """The run's node: its lineage, parents and datasets as child nodes, its own signal and the chain's."""
    folder = Path(folder).resolve()
    lineage, note = load_lineage(folder)
    if lineage is None or folder in _above:
        return {"kind": "missing", "folder": str(folder), "note": "a cycle: this run is its own ancestor"
                if lineage is not None else note}
    above = _above | {folder}
    node = {"kind": "run", "name": lineage.get("run", folder.name), "method": lineage.get("method"),
            "folder": str(folder), "created": lineage.get("created"), "base_model": lineage.get("base_model"),
            "note": note, "parents": [_parent(p, above) for p in lineage.get("parents", [])],
            "datasets": [_dataset(d, above) for d in lineage.get("datasets", [])]}
    node["signal"] = own_signal(node)
    node["stages"] = stages(node)
    node["chain"] = mix([(1.0, stage["signal"]) for stage in node["stages"]])
    return node


def _parent(entry: dict, above: frozenset) -> dict:
    node = {"kind": "parent", **entry}
    if entry.get("kind") == "run":
        node["tree"] = build_tree(entry["run"], above)
    return node


def _dataset(entry: dict, above: frozenset) -> dict:
    node = {"kind": "dataset", **entry, "split": dataset_split(entry)}
    if entry.get("run"):
        node["tree"] = build_tree(entry["run"], above)
    return node


def reward_split(parent: dict) -> dict:
    """What one reward source brings: see the module docstring."""
    if parent.get("type") == "function" or parent.get("kind") == "rule":
        return split(human=1.0)
    if parent.get("type") in ("critic", "judge") or parent.get("ai"):
        return split({parent["ref"]: 1.0})
    tree = parent.get("tree")
    if parent.get("type") == "model" and tree and tree.get("signal"):
        return tree["signal"]
    return split(unknown=1.0)


def own_signal(node: dict) -> dict | None:
    if node["method"] in OFFLINE:
        return mix([(1.0, d["split"]) for d in node["datasets"] if d["role"] == "data.train"])
    if node["method"] == "rlhf":
        return mix([(abs(p.get("weight", 1.0)), reward_split(p)) for p in node["parents"] if p["role"] == "reward"])
    return None


def stages(node: dict) -> list[dict]:
    """The training stages of the chain, this run first: each one's own signal."""
    found = [{"run": node["name"], "method": node["method"], "signal": node["signal"]}] if node["signal"] else []
    for parent in node["parents"]:
        if parent["role"] != "start":
            continue
        tree = parent.get("tree")
        if tree and tree["kind"] == "run":
            found += tree["stages"]
        elif parent["kind"] in ("run", "missing"):
            found.append({"run": parent["ref"], "method": None, "signal": split(unknown=1.0),
                          "note": (tree or {}).get("note") or "not found"})
    return found
