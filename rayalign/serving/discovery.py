"""What the run folders under `runs/` offer to serve, and under which model names.

    runs/<run>/prompt.json (a prompting run)                        -> prompt run `<base>:<run>`
    runs/<run>/final/ with reward_stats.json, or a run of method `rm`  -> reward model `<run>`
    runs/<run>/final/adapter_config.json                            -> adapter `<base>:<run>`
    runs/<run>/final/config.json                                    -> full model `<run>`

`<base>` is the model the run started from: a built-in name (`smollm2-135m-instruct`), a
folder by its own name, or, for a chained run that started from another run, that parent
run's name: its `merged/` folder (its adapter folded into its base) or its full `final/`.
Runs without a final model or prompt (still training, failed) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from rayalign.config import ConfigError
from rayalign.data.prompting import PROMPT_FILE, PromptVariant, read_prompt_run
from rayalign.models.loading import adapter_base
from rayalign.models.chain import start_model
from rayalign.models.registry import BUILTIN_MODELS
from rayalign.rewards.reward_model import REWARD_STATS

RUN_MODELS = ("merged", "final")  # the folders of a run that another run can start from, preferred first


@dataclass(frozen=True)
class ServedRun:
    run: str
    kind: str           # "adapter", "full", "reward" or "prompt"
    path: str           # the final/ folder; for a prompt run, the run folder
    base_source: str | None = None  # adapter, prompt: the base model, a built-in name or a folder
    variant: PromptVariant | None = None  # prompt: what is put around the user's turns

    @property
    def base(self) -> str | None:
        """An adapter's or a prompt run's base model, by its served name."""
        return model_name(self.base_source) if self.base_source else None


def is_run_folder(path: Path) -> bool:
    return (path / "config.yaml").is_file()


def run_model(run: Path) -> Path | None:
    """The full model a run folder offers to a run started from it: merged/, else a full final/."""
    for name in RUN_MODELS:
        folder = run / name
        if (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
            return folder
    return None


def model_name(name_or_path: str) -> str:
    """The served name of a base model: a built-in name as is, a run's merged/ or final/ folder by
    the run's name, any other folder by its own name."""
    if name_or_path in BUILTIN_MODELS:
        return name_or_path
    path = Path(name_or_path).resolve()
    return path.parent.name if path.name in RUN_MODELS and is_run_folder(path.parent) else path.name


def locate_base(name_or_path: str, runs_root: Path) -> str:
    """A base model as a built-in name or an absolute folder. A run folder stands for its model
    (run_model); a run's folder that is not there (the runs were moved, or are mounted
    elsewhere) is looked for among the runs in `runs_root`."""
    if name_or_path in BUILTIN_MODELS:
        return name_or_path
    path = Path(name_or_path).expanduser()
    if not path.exists():
        if path.name in RUN_MODELS and is_run_folder(runs_root / path.parent.name):
            path = runs_root / path.parent.name / path.name
        elif is_run_folder(runs_root / path.name):
            path = runs_root / path.name
    if is_run_folder(path):
        path = run_model(path) or path  # none: base_models says what is missing
    return str(path.resolve())


def _run_config(run: Path) -> dict:
    config_file = run / "config.yaml"
    return (yaml.safe_load(config_file.read_text()) or {}) if config_file.is_file() else {}


def _adapter_base(run: Path, final: Path, config: dict) -> str:
    """An adapter's base: the built-in name the run started from, else the folder peft recorded
    (absolute, unlike a path in config.yaml)."""
    named = (config.get("model") or {}).get("name_or_path")
    return named if named in BUILTIN_MODELS else locate_base(adapter_base(str(final)), run.parent)


def _prompt_run(run: Path) -> ServedRun | None:
    try:
        record = read_prompt_run(run)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{run / PROMPT_FILE}: not a prompt run record: {exc}") from None
    if record is None:
        return None
    variant, base = record
    return ServedRun(run.name, "prompt", str(run.resolve()), locate_base(base, run.parent), variant)


def discover_runs(runs_dir: str) -> list[ServedRun]:
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    found = []
    for run in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        prompted = _prompt_run(run)
        if prompted is not None:
            found.append(prompted)
            continue
        final = run / "final"
        is_adapter = (final / "adapter_config.json").is_file()
        if not is_adapter and not (final / "config.json").is_file():
            continue
        config = _run_config(run)
        if config.get("method") == "rm" or (final / REWARD_STATS).is_file():
            found.append(ServedRun(run.name, "reward", str(final.resolve())))
        elif is_adapter:
            found.append(ServedRun(run.name, "adapter", str(final.resolve()), _adapter_base(run, final, config)))
        else:
            found.append(ServedRun(run.name, "full", str(final.resolve())))
    return found


def find_run(runs_dir: str, run: str, kind: str) -> ServedRun:
    """The run of that name and kind, or a LookupError that says what is there instead."""
    runs = [r for r in discover_runs(runs_dir) if r.kind == kind]
    for candidate in runs:
        if candidate.run == run:
            return candidate
    names = ", ".join(r.run for r in runs) or "none"
    raise LookupError(f"no {kind} run named {run!r} in {runs_dir} (found: {names})")


def _base_folder(name_or_path: str, run: ServedRun | None) -> str:
    """The folder of a base model; a LoRA run named as a base is merged into its base once
    (rayalign/models/chain.py)."""
    try:
        return str(Path(start_model(name_or_path)).resolve())
    except FileNotFoundError as exc:
        raise ConfigError(f"run {run.run!r}: base {exc}" if run else str(exc)) from None


def base_models(names: list[str], runs: list[ServedRun], runs_dir: str) -> dict[str, str]:
    """Served name -> local folder of every base model: those named plus the bases of adapters
    and prompt runs. A full fine-tune that is also a base (a run started from it) is served once,
    as that base; any other name given to two models is an error."""
    wanted = [*((None, n) for n in names), *((r, r.base_source) for r in runs if r.kind in ("adapter", "prompt"))]
    folders: dict[str, str] = {}
    for run, name_or_path in wanted:
        name, folder = model_name(name_or_path), _base_folder(name_or_path, run)
        if folders.setdefault(name, folder) != folder:
            raise ConfigError(f"two base models are both named {name!r}: {folders[name]} and {folder}")
    taken = sorted(r.run for r in runs if r.kind == "full" and folders.get(r.run, r.path) != r.path)
    if taken:
        raise ConfigError(f"runs {taken} in {runs_dir} have the name of a base model; rename them")
    return folders
