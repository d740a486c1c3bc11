"""Save what was trained (an adapter or a full model) and merge adapters into a base."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


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


@dataclass
class SyncTensor:
    """One tensor a rollout engine loads: its name, the parameters that must be whole to
    compute it (what a ZeRO-3 gather needs), and how to compute it from them."""

    name: str
    params: list
    compute: Callable   # () -> the tensor, once `params` are whole

    @property
    def shape(self) -> tuple[int, ...]:
        """Its shape (the first parameter's: the weight itself, or the base weight of a merged
        LoRA), known without gathering: ZeRO-3 keeps a partitioned parameter's in `ds_shape`."""
        return tuple(getattr(self.params[0], "ds_shape", self.params[0].shape))


def _lora_layers(model):
    from peft.tuners.lora import LoraLayer

    return [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]


def sync_tensors(model, mode: str) -> list[SyncTensor]:
    """What a rollout engine needs to follow the trainer, tensor by tensor, in a fixed order.

    adapter: the LoRA A/B tensors under the names a peft adapter file uses.
    merged:  a peft model's LoRA-wrapped weights with the adapter folded in (W + scale * B @ A),
             under the base model's own names (the engine reloads just those in place).
    full:    every weight of the model (tied copies once)."""
    if mode == "full":
        return [SyncTensor(name, [p], lambda p=p: p) for name, p in model.named_parameters()]
    if mode == "merged":
        return [SyncTensor(name.removeprefix("base_model.model.") + ".weight",
                           [module.base_layer.weight, *_lora_pair(module)],
                           lambda m=module: m.base_layer.weight + m.get_delta_weight(m.active_adapters[0]))
                for name, module in _lora_layers(model)]
    if mode == "adapter":
        return [SyncTensor(f"{name}.{part}.weight", [p], lambda p=p: p)
                for name, module in _lora_layers(model)
                for part, p in zip(("lora_A", "lora_B"), _lora_pair(module))]
    raise ValueError(f"unknown weight-sync mode {mode!r}; choose adapter, merged or full")


def _lora_pair(module) -> list:
    adapter = module.active_adapters[0]
    return [module.lora_A[adapter].weight, module.lora_B[adapter].weight]


def adapter_config_json(model) -> str:
    """The active adapter's adapter_config.json, as `save_pretrained` writes it."""
    config = model.peft_config[model.active_adapter]
    with tempfile.TemporaryDirectory(prefix="rayalign-adapter-config-") as staging:
        config.save_pretrained(staging)
        return (Path(staging) / "adapter_config.json").read_text()


def weights_payload(model, mode: str, dtype=None) -> dict[str, bytes]:
    """`sync_tensors` as files in memory (the object-store sync): the peft adapter folder for
    `adapter`, a safetensors file for `merged` and `full`. Tensors are cast to `dtype` (the
    engine's) when given."""
    if mode == "adapter":
        with tempfile.TemporaryDirectory(prefix="rayalign-adapter-") as staging:
            model.save_pretrained(staging)
            return {path.name: path.read_bytes() for path in Path(staging).iterdir() if path.is_file()}
    from safetensors.torch import save

    state = {t.name: t.compute().detach() for t in sync_tensors(model, mode)}
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
