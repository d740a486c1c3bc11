"""Save what was trained (an adapter or a full model) and merge adapters into a base."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def save_trained(model, tokenizer, folder: str | os.PathLike) -> str:
    """Write an HF folder (full model) or a peft adapter folder, atomically."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(folder)


def merge_adapter(adapter_folder: str, out_folder: str, dtype: str = "float32") -> str:
    """Fold a LoRA adapter into its base weights and save a plain HF model."""
    from rayalign.models.loading import adapter_base, load_causal_lm, load_tokenizer

    base = adapter_base(adapter_folder)
    if base is None:
        raise ValueError(f"{adapter_folder}: no adapter_config.json, nothing to merge")
    merged = load_causal_lm(adapter_folder, dtype=dtype).merge_and_unload()
    return save_trained(merged, load_tokenizer(base), out_folder)


def weights_payload(model) -> dict[str, bytes]:
    """What a rollout engine needs to follow the trainer, as files in memory: a peft model's
    adapter folder, or a full model's weights as one safetensors file (tied copies once)."""
    if hasattr(model, "peft_config"):
        with tempfile.TemporaryDirectory(prefix="rayalign-adapter-") as staging:
            model.save_pretrained(staging)
            return {path.name: path.read_bytes() for path in Path(staging).iterdir() if path.is_file()}
    from safetensors.torch import save

    seen, state = set(), {}
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            state[name] = tensor.detach().contiguous()
    return {"model.safetensors": save(state)}
