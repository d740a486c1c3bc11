"""`runs/<name>/lineage.json`: what a run came from, written when the run starts (RunDir).

    {"lineage": 1, "run": name, "method": ..., "folder": absolute path, "created": UTC time,
     "base_model": the built-in name or model folder at the root of the model chain (null for
                   runs that train no model: synthetic data, AI labels),
     "parents":  [{"role": start | policy | teacher | labeler | reward | critic, "ref": as configured,
                   "kind": built-in | folder | run | remote | rule | missing, "run": the run folder
                   when it is one, and for rewards "type", "label", "weight"}],
     "datasets": [{"role": "data.train" | "data.eval" | ..., "path", "resolved", "sha256", "records",
                   "origin": counts (rayalign/lineage/data.py), "run": the run folder that wrote it}]}

A resumed run writes it again: the hashes are those of the data it resumed on. Recording never
fails a run: a problem is a warning.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from rayalign.console import say
from rayalign.lineage.data import summarise_dataset
from rayalign.models.registry import BUILTIN_MODELS
from rayalign.runs import write_atomic

LINEAGE_FILE = "lineage.json"
MODEL_METHODS = ("sft", "rm", "dpo", "rlhf", "prompt")   # they tune (or prompt) model.name_or_path
POLICY_METHODS = ("rlaif_label", "rlaif_revise")         # model.name_or_path writes answers for the data
CHAT_ROLES = {"sdg_generate": "teacher", "sdg_label": "teacher", "rlaif_label": "labeler"}
RUN_DEPTH = 3  # a path this many folders below a run folder belongs to it (run/final, run/checkpoints/step-N)


def owning_run(path: Path, own: Path | None = None) -> Path | None:
    """The run folder (it has config.yaml) that `path` is, or lies within; never `own`."""
    path = path.resolve()
    for folder in [path, *path.parents][:RUN_DEPTH]:
        if (folder / "config.yaml").is_file():
            return None if own is not None and folder == own.resolve() else folder
    return None


def model_ref(role: str, name_or_path: str) -> dict:
    entry = {"role": role, "ref": name_or_path}
    if name_or_path in BUILTIN_MODELS:
        return {**entry, "kind": "built-in"}
    path = Path(name_or_path).expanduser()
    if not path.exists():
        return {**entry, "kind": "missing"}
    run = owning_run(path)
    if run:
        return {**entry, "kind": "run", "run": str(run)}
    return {**entry, "kind": "folder", "path": str(path.resolve())}


def chat_ref(role: str, chat) -> dict:
    """A ChatModelConfig (teacher, labeler): remote by URL, else a local model."""
    return {"role": role, "ref": chat.label, "kind": "remote"} if chat.url else model_ref(role, chat.model)


def reward_ref(source) -> dict:
    """One reward source: a rule (function, a grader without a model), a reward model or critic
    (a model ref), a remote scorer; "ai": true where a model grades (a score_model grader)."""
    about = {"type": source.type, "label": source.label, "weight": source.weight}
    if source.type == "grader":
        from rayalign.config.graders import ScoreModelGrader, walk

        models = sorted({g.model for g in walk(source.grader) if isinstance(g, ScoreModelGrader)})
        if not models:
            return {"role": "reward", "ref": f"grader:{source.grader.type}", "kind": "rule", **about}
        return {"role": "reward", "ref": f"{'+'.join(models)}@{source.url}", "kind": "remote", "ai": True, **about}
    if source.type in ("model", "critic") and source.path:
        return {**model_ref("reward", source.path), **about}
    if source.type == "function":
        return {"role": "reward", "ref": source.path, "kind": "rule", **about}
    served = source.options.get("served_model") if source.type == "critic" else None
    return {"role": "reward", "ref": f"{served}@{source.url}" if served else source.url, "kind": "remote", **about}


def answers_with_policy(config) -> bool:
    """rlaif_label asks its policy only when data.train holds prompts: pairs bring their answers."""
    if config.method != "rlaif_label":
        return True
    from rayalign.data.ai_labels import read_pairs

    try:
        return read_pairs(config.data.train, config.seed) is None
    except Exception:  # unreadable here: the run names the problem; keep the policy
        return True


def parents(config) -> list[dict]:
    found = []
    if config.method in MODEL_METHODS or (config.method in POLICY_METHODS and answers_with_policy(config)):
        found.append(model_ref("start" if config.method in MODEL_METHODS else "policy", config.model.name_or_path))
    if config.method in CHAT_ROLES:
        role = CHAT_ROLES[config.method]
        found.append(chat_ref(role, getattr(config, role)))
    if config.method == "rlhf":
        found += [reward_ref(source) for source in config.rewards]
        if config.rlhf.algorithm == "ppo" and config.critic.name_or_path:
            found.append(model_ref("critic", config.critic.name_or_path))
    return found


def base_model(start: dict) -> str | None:
    """The root of the model chain: a built-in name or folder, or what the parent run recorded."""
    if start["kind"] in ("built-in", "missing"):
        return start["ref"]
    if start["kind"] != "run":
        return start["path"]
    run = Path(start["run"])
    for file, read in ((LINEAGE_FILE, lambda text: json.loads(text).get("base_model")),
                       ("config.yaml", lambda text: (yaml.safe_load(text).get("model") or {}).get("name_or_path"))):
        if (run / file).is_file():
            return read((run / file).read_text())
    return None


def data_paths(config) -> list[tuple[str, str]]:
    paths = [("data.train", config.data.train), ("data.eval", config.data.eval)]
    if config.method == "prompt":
        paths += [("prompt.dev", config.prompt.dev), ("prompt.examples", config.prompt.examples)]
    if config.method == "rlaif_label":
        paths.append(("labeler.examples", config.labeler.examples))
    return [(role, path) for role, path in paths if path]


def lineage_of(config, folder: Path) -> dict:
    """The lineage of a run with this config whose folder is `folder` (data files are read now)."""
    found = parents(config)
    start = next((p for p in found if p["role"] == "start"), None)
    datasets = []
    for role, path in data_paths(config):
        entry = summarise_dataset(role, path)
        made_by = owning_run(Path(entry["resolved"]), own=folder) if "resolved" in entry else None
        datasets.append({**entry, "run": str(made_by)} if made_by else entry)
    return {"lineage": 1, "run": config.name, "method": config.method, "folder": str(folder.resolve()),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "base_model": base_model(start) if start else None, "parents": found, "datasets": datasets}


def record_lineage(config, folder: Path) -> Path | None:
    """Write `folder/lineage.json`; on any failure warn and go on (lineage never fails a run)."""
    try:
        target = Path(folder) / LINEAGE_FILE
        write_atomic(target, json.dumps(lineage_of(config, Path(folder)), indent=1) + "\n")
        return target
    except Exception as exc:
        say(f"rayalign: warning: no {LINEAGE_FILE} for {folder} ({type(exc).__name__}: {exc})")
        return None
