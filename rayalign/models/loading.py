"""Load causal LMs and tokenizers from a resolved folder, or a LoRA adapter folder."""

from __future__ import annotations

import json
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def adapter_base(path: str) -> str | None:
    """The base model recorded in a peft adapter folder, or None for a full model."""
    config = Path(path) / "adapter_config.json"
    if not config.is_file():
        return None
    return json.loads(config.read_text())["base_model_name_or_path"]


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    from rayalign.models.registry import resolve_model

    folder = resolve_model(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


HEADS = ("causal_lm", "reward", "value")


def _from_pretrained(folder: str, head: str, dtype: str):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoModelForTokenClassification

    if head == "causal_lm":
        return AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPES[dtype])
    if head not in HEADS:
        raise ValueError(f"unknown model head {head!r}; choose from {HEADS}")
    # A scalar head on the backbone: one score per sequence (reward) or per token (value,
    # the PPO critic). New (random) unless the folder has one; a reward model's head
    # carries over to a value model, since both name it `score`.
    auto = AutoModelForSequenceClassification if head == "reward" else AutoModelForTokenClassification
    model = auto.from_pretrained(folder, num_labels=1, dtype=DTYPES[dtype])
    if model.config.pad_token_id is None:  # transformers pools at the last non-pad token
        model.config.pad_token_id = load_tokenizer(folder).pad_token_id
    return model


def load_model(name_or_path: str, head: str = "causal_lm", dtype: str = "float32", trainable_adapter: bool = False):
    """A built-in name, an HF folder, or an adapter folder (loaded onto its base), with a
    language-modelling head or a scalar reward head."""
    from rayalign.models.registry import resolve_model

    folder = resolve_model(name_or_path)
    base = adapter_base(folder)
    if base is None:
        return _from_pretrained(folder, head, dtype)
    from peft import PeftModel

    model = _from_pretrained(resolve_model(base), head, dtype)
    return PeftModel.from_pretrained(model, folder, is_trainable=trainable_adapter)


def load_causal_lm(name_or_path: str, dtype: str = "float32", trainable_adapter: bool = False):
    return load_model(name_or_path, "causal_lm", dtype, trainable_adapter)
