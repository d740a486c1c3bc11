"""Choose what trains: LoRA adapters via peft, or partial freezing of a full model."""

from __future__ import annotations

import re

from rayalign.config import FreezeConfig, LoraConfig

_LAYER = re.compile(r"\blayers\.(\d+)\.")


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def apply_lora(model, lora: LoraConfig, head: str = "causal_lm"):
    """LoRA adapters on the target modules; a reward head (`score`) trains in full beside them."""
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    peft_config = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type={"reward": "SEQ_CLS", "value": "TOKEN_CLS"}.get(head, "CAUSAL_LM"),
    )
    return get_peft_model(model, peft_config)


def parse_layers(layers: list[int] | str) -> set[int]:
    """[0, 1, 5] or "0-3" (inclusive) or "0-3,8" -> a set of layer indices."""
    if isinstance(layers, list):
        return set(layers)
    chosen: set[int] = set()
    for part in filter(None, (p.strip() for p in layers.split(","))):
        low, sep, high = part.partition("-")
        if not low.isdigit() or (sep and not high.isdigit()):
            raise ValueError(f"freeze.layers: {part!r} is not an index or an a-b range")
        if sep and int(high) < int(low):
            raise ValueError(f"freeze.layers: {part!r} is a reversed range; write {high}-{low}")
        chosen.update(range(int(low), int(high or low) + 1))
    return chosen


def apply_freeze(model, freeze: FreezeConfig):
    """Freeze in place; return the model. Raises if a pattern or layer matches nothing."""
    names = [name for name, _ in model.named_parameters()]
    if freeze.train_only:
        patterns = [re.compile(p) for p in freeze.train_only]
        for name, param in model.named_parameters():
            param.requires_grad = any(p.search(name) for p in patterns)
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError(f"freeze.train_only {freeze.train_only} matches no parameter")
    for pattern in freeze.modules:
        regex = re.compile(pattern)
        hits = [n for n in names if regex.search(n)]
        if not hits:
            raise ValueError(f"freeze.modules pattern {pattern!r} matches no parameter")
        for name, param in model.named_parameters():
            if regex.search(name):
                param.requires_grad = False
    layers = parse_layers(freeze.layers)
    present = {int(m.group(1)) for n in names if (m := _LAYER.search(n))}
    if missing := layers - present:
        raise ValueError(f"freeze.layers {sorted(missing)} not in the model (it has 0-{max(present)})")
    for name, param in model.named_parameters():
        match = _LAYER.search(name)
        if match and int(match.group(1)) in layers:
            param.requires_grad = False
    return model


def build_trainable(model_config, head: str = "causal_lm"):
    """Load the configured model with its head, apply LoRA or freezing; returns (model, counts line).
    Weights stay fp32 here; DeepSpeed casts them when the run trains in bf16/fp16."""
    from rayalign.models.loading import load_model

    model = load_model(model_config.name_or_path, head, dtype="float32",
                       trainable_adapter=model_config.lora is None)
    if model_config.lora is not None:
        model = apply_lora(model, model_config.lora, head)
    elif model_config.freeze is not None:
        model = apply_freeze(model, model_config.freeze)
    if model_config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
        if model_config.lora is not None:
            model.enable_input_require_grads()
    trainable, total = count_parameters(model)
    return model, f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)"
