"""What the run folders under `runs/` offer to serve, and under which model names.

    runs/<run>/final/ with reward_stats.json, or a run of method `rm`  -> reward model `<run>`
    runs/<run>/final/adapter_config.json                            -> adapter `<base>:<run>`
    runs/<run>/final/config.json                                    -> full model `<run>`

`<base>` is the model the run started from, as its config.yaml names it: a built-in name
(`smollm2-135m-instruct`) or, for a folder, the folder's name. Runs without a final model
(still training, failed) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from rayalign.config import ConfigError
from rayalign.models.loading import adapter_base
from rayalign.models.registry import BUILTIN_MODELS, resolve_model
from rayalign.rewards.reward_model import REWARD_STATS


@dataclass(frozen=True)
class ServedRun:
    run: str
    kind: str           # "adapter", "full" or "reward"
    path: str           # the final/ folder
    base_source: str | None = None  # adapter: the base model as the run named it

    @property
    def base(self) -> str | None:
        """An adapter's base model, by its served name."""
        return model_name(self.base_source) if self.base_source else None


def model_name(name_or_path: str) -> str:
    """The served name of a base model: a built-in name as is, a folder by its own name."""
    return name_or_path if name_or_path in BUILTIN_MODELS else Path(name_or_path).resolve().name


def _method_and_base(run: Path, final: Path) -> tuple[str | None, str | None]:
    """The run's method and, for an adapter, its base: the built-in name the run started from,
    else the folder peft recorded (absolute, unlike a path in config.yaml)."""
    config_file = run / "config.yaml"
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    named = (config.get("model") or {}).get("name_or_path")
    return config.get("method"), named if named in BUILTIN_MODELS else adapter_base(str(final))


def discover_runs(runs_dir: str) -> list[ServedRun]:
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    found = []
    for run in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        final = run / "final"
        is_adapter = (final / "adapter_config.json").is_file()
        if not is_adapter and not (final / "config.json").is_file():
            continue
        method, base = _method_and_base(run, final)
        if method == "rm" or (final / REWARD_STATS).is_file():
            found.append(ServedRun(run.name, "reward", str(final.resolve())))
        elif is_adapter:
            found.append(ServedRun(run.name, "adapter", str(final.resolve()), base))
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


def base_models(names: list[str], runs: list[ServedRun], runs_dir: str) -> dict[str, str]:
    """Served name -> local folder of every base model: those named plus the bases of adapters."""
    wanted = [*names, *(r.base_source for r in runs if r.kind == "adapter")]
    folders: dict[str, str] = {}
    for name_or_path in wanted:
        name, folder = model_name(name_or_path), resolve_model(name_or_path)
        if folders.setdefault(name, folder) != folder:
            raise ConfigError(f"two base models are both named {name!r}: {folders[name]} and {folder}")
    taken = {r.run for r in runs if r.kind == "full"} & set(folders)
    if taken:
        raise ConfigError(f"runs {sorted(taken)} in {runs_dir} have the name of a base model; rename them")
    return folders
