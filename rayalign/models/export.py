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


def merged_lora_weights(model) -> dict:
    """W + scale * B @ A for every LoRA-wrapped module of a peft model, under the base
    model's own parameter names (what an engine holding the base model loads in place)."""
    from peft.tuners.lora import LoraLayer

    merged = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            weight = module.base_layer.weight + module.get_delta_weight(module.active_adapters[0])
            merged[name.removeprefix("base_model.model.") + ".weight"] = weight.detach()
    return merged


def weights_payload(model, mode: str, dtype=None) -> dict[str, bytes]:
    """What a rollout engine needs to follow the trainer, as files in memory.

    adapter: the peft adapter folder (the engine serves it as a LoRA).
    merged:  a peft model's LoRA-wrapped weights with the adapter folded in (the engine
             reloads just those tensors; no LoRA kernels at generation time).
    full:    every weight of the model (tied copies once).
    Tensors are cast to `dtype` (the engine's) when given."""
    if mode == "adapter":
        with tempfile.TemporaryDirectory(prefix="rayalign-adapter-") as staging:
            model.save_pretrained(staging)
            return {path.name: path.read_bytes() for path in Path(staging).iterdir() if path.is_file()}
    from safetensors.torch import save

    if mode == "merged":
        state = merged_lora_weights(model)
    elif mode == "full":
        seen, state = set(), {}
        for name, tensor in model.state_dict().items():
            if tensor.data_ptr() not in seen:
                seen.add(tensor.data_ptr())
                state[name] = tensor.detach()
    else:
        raise ValueError(f"unknown weight-sync mode {mode!r}; choose adapter, merged or full")
    return {"model.safetensors": save({k: v.to(dtype).contiguous() if dtype else v.contiguous()
                                       for k, v in state.items()})}


ARCHITECTURE_KEYS = ("architectures", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "num_key_value_heads", "intermediate_size", "vocab_size", "tie_word_embeddings")


def same_architecture(folder_a: str, folder_b: str) -> bool:
    """Whether two full-model folders hold weights of one shape (one can be loaded in place of the other)."""
    import json

    a, b = (json.loads((Path(f) / "config.json").read_text()) for f in (folder_a, folder_b))
    return all(a.get(key) == b.get(key) for key in ARCHITECTURE_KEYS)


def folder_payload(folder: str) -> dict[str, bytes]:
    """A full model's weight files in memory, as a rollout engine's full weight load takes them."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors weights to load")
    return {path.name: path.read_bytes() for path in files}
