"""Start a run from another run: `model.name_or_path` may name a run folder (or an adapter folder).

A parent that is a full model is simply loaded. A parent that is a LoRA adapter is used as
`model.parent` says:

    merge     (default) fold the adapter into its base once, into `<parent run>/merged/`, and
              start from that full model: the new run trains a new LoRA (`model.lora`) or the
              weights themselves, and its reference model (DPO, the KL of RL) is the parent.
    continue  keep training the parent's own adapter (leave `model.lora` unset); the reference
              is then the parent's base. Offline methods only (SFT, DPO, reward models).

The merged folder is rebuilt when the parent's adapter is newer than it (the parent was
trained again), under a file lock, and appears atomically.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

from rayalign.models.loading import adapter_base
from rayalign.models.registry import resolve_model

MERGED = "merged"


def merged_folder(adapter: Path) -> Path:
    """Where an adapter's merged model lives: `<run>/merged` for a run's `final/`, else beside it."""
    if adapter.name == "final" and (adapter.parent / "config.yaml").is_file():
        return adapter.parent / MERGED
    return adapter.parent / f"{adapter.name}-{MERGED}"


def merge_parent(adapter_folder: str) -> str:
    """The merged model of a LoRA adapter, made (or remade, when the adapter is newer) on demand."""
    from rayalign.console import say
    from rayalign.models.export import merge_adapter

    adapter = Path(adapter_folder).resolve()
    target = merged_folder(adapter)
    weights = max(p.stat().st_mtime for p in adapter.iterdir())

    def fresh() -> bool:
        return (target / "config.json").is_file() and (target / "config.json").stat().st_mtime >= weights

    if not fresh():
        with open(target.parent / f".{target.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not fresh():
                say(f"[rayalign] merging the adapter {adapter} into its base -> {target} (once)")
                merge_adapter(str(adapter), str(target))
    return str(target)


def start_model(name_or_path: str, parent: str = "merge") -> str:
    """The folder a run starts from: a full model as it is; an adapter merged (`merge`) or as is
    (`continue`)."""
    folder = resolve_model(name_or_path)
    if adapter_base(folder) is None or parent == "continue":
        return folder
    return merge_parent(folder)


def resolve_start(config):
    """The run's config (a RunConfig) with `model.name_or_path` replaced by the folder it starts from."""
    model = config.model
    start = model.model_copy(update={"name_or_path": start_model(model.name_or_path, model.parent)})
    return config.model_copy(update={"model": start})
