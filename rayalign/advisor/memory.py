"""How much memory training a model takes, estimated from its weights' shapes, per device.

Per data-parallel worker, with P parameters stored in the training dtype (b bytes each) and T
of them trained with AdamW:

    weights        b * P
    gradients      b * T
    optimizer      8 * T (Adam's two fp32 moments) + 4 * T when b < 4 (the fp32 master copy)
    ZeRO           stage 1 splits the optimizer state over the N workers, stage 2 also the
                   gradients, stage 3 also the weights (Rajbhandari et al., 2020)
    activations    per micro-batch of m sequences of s tokens through L layers of width h:
                   s*m*h*L*34*(b/2) bytes (Korthikanti et al., 2022, without recomputation),
                   2*b*s*m*h*L with gradient checkpointing, plus 3 * 4*s*m*V for the fp32
                   logits over the vocabulary V, their softmax and its gradient
    process        what a training process holds before its model: CUDA context and allocator on
                   a GPU (1 GiB), or Python, torch and DeepSpeed on a CPU (PROCESS_CPU)

Full fine-tuning trains every weight (T = P); LoRA trains r*(d_in + d_out) per adapted matrix
and keeps the base frozen (no gradients or optimizer state for it). On a CPU cluster every
worker of a node shares the node's memory, so a node's need is the sum over its workers.
Checked against the peak memory real runs report (`peak_memory_gib` in their metrics;
bench/memory_estimate.py): SmolLM2 full fine-tuning on 2 CPU workers, 3.94 GiB estimated per
worker against 3.75 measured; LoRA, 3.21 against 1.77, because the activations are taken at
data.max_length and the quickstart's sequences are far shorter. An upper bound, then.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open

GiB = 2**30
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
PROCESS_GPU = 1.0 * GiB
PROCESS_CPU = 1.0 * GiB


def shapes(folder: str) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape, from the safetensors headers (nothing is loaded)."""
    found = {}
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                found[name] = tuple(handle.get_slice(name).get_shape())
    if not found:
        raise FileNotFoundError(f"{folder}: no *.safetensors weights to size the model from")
    return found


def _count(shape: tuple[int, ...]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


def lora_parameters(tensor_shapes: dict[str, tuple[int, ...]], r: int, targets: list[str]) -> int:
    return sum(r * (shape[0] + shape[1]) for name, shape in tensor_shapes.items()
               if len(shape) == 2 and any(name.endswith(f"{target}.weight") for target in targets))


def model_state(params: int, trained: int, dtype: str, zero_stage: int, workers: int) -> float:
    """Bytes of weights, gradients and optimizer state on one worker."""
    b = BYTES[dtype]
    weights, gradients, optimizer = b * params, b * trained, (8 + (4 if b < 4 else 0)) * trained
    if zero_stage >= 1:
        optimizer /= workers
    if zero_stage >= 2:
        gradients /= workers
    if zero_stage >= 3:
        weights /= workers
    return weights + gradients + optimizer


def activations(config: dict, dtype: str, micro_batch: int, seq: int, checkpointing: bool) -> float:
    b, tokens = BYTES[dtype], micro_batch * seq
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    per_layer = 2 * b * tokens * hidden if checkpointing else 34 * (b / 2) * tokens * hidden
    return per_layer * layers + 3 * 4 * tokens * config["vocab_size"]


def estimate(folder: str, *, dtype: str, micro_batch: int, seq: int, zero_stage: int, workers: int,
             lora_r: int, lora_targets: list[str], checkpointing: bool = False, gpu: bool = False) -> dict:
    """Bytes per worker for full fine-tuning and for LoRA, and the model's sizes."""
    tensor_shapes = shapes(folder)
    config = json.loads((Path(folder) / "config.json").read_text())
    params = sum(_count(shape) for shape in tensor_shapes.values())
    adapter = lora_parameters(tensor_shapes, lora_r, lora_targets)
    act = activations(config, dtype, micro_batch, seq, checkpointing)
    process = PROCESS_GPU if gpu else PROCESS_CPU
    return {"params": params, "lora_params": adapter, "dtype": dtype, "zero_stage": zero_stage, "workers": workers,
            "activations": act,
            "full": model_state(params, params, dtype, zero_stage, workers) + act + process,
            "lora": model_state(params, adapter, dtype, 0, workers) + act + process}
