"""Load, adapt (LoRA, partial freezing) and save models; built-in model names."""

from rayalign.models.registry import BUILTIN_MODELS, resolve_model
from rayalign.models.loading import load_causal_lm, load_model, load_tokenizer
from rayalign.models.adapt import apply_lora, apply_freeze, build_trainable, count_parameters
from rayalign.models.export import save_trained, merge_adapter

__all__ = [
    "BUILTIN_MODELS", "resolve_model", "load_causal_lm", "load_model", "load_tokenizer",
    "apply_lora", "apply_freeze", "build_trainable", "count_parameters", "save_trained", "merge_adapter",
]
