"""The DeepSpeed training engine: ZeRO 0-3, gradient accumulation, checkpoints, export.

The engine knows nothing of methods: it takes an `objective(model, batch) -> (loss, stats)`
and runs it over micro-batches. The same code runs on gloo/CPU and nccl/GPU.

Precision: the weights train in `dtype` (bfloat16 or float16 there is DeepSpeed's own
low-precision path), or, with `train.autocast`, stay float32 (weights, gradients, optimizer)
while every objective runs under `torch.autocast` in that dtype on the engine's device.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
from typing import Any, Callable

import torch

from rayalign.config import TrainConfig

Objective = Callable[[Any, dict], tuple[torch.Tensor, dict]]


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written, with its folder and the cause."""


@contextlib.contextmanager
def checkpoint_writing(folder: str):
    """Writes into checkpoint `folder`; a failure becomes a `CheckpointWriteError` that says
    where and why. torch's writer reports a short write as "unexpected pos" without the
    operating system's reason, so the likely reasons are looked up here: the space left on the
    folder's filesystem and this process's file-size limit (RLIMIT_FSIZE, `ulimit -f`)."""
    try:
        yield
    except CheckpointWriteError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch, DeepSpeed and Python each fail in their own way
        raise CheckpointWriteError(f"checkpoint {folder} not written: {write_failure_cause(folder, exc)}") from exc


def write_failure_cause(folder: str, exc: BaseException) -> str:
    reasons = []
    codes = {getattr(e, "errno", None) for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    for code in sorted(filter(None, codes)):
        reasons.append(os.strerror(code))
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        largest = max((f.stat().st_size for f in _files(folder)), default=0)
        if largest >= limit or errno.EFBIG in codes:
            reasons.append(f"{os.strerror(errno.EFBIG)}: this process may write files of at most {limit} bytes "
                           "(RLIMIT_FSIZE, ulimit -f)")
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(folder).free
        if free < 64 * 2**20 or errno.ENOSPC in codes:
            reasons.append(f"{os.strerror(errno.ENOSPC)}: {free} bytes free on its filesystem")
    reasons = list(dict.fromkeys(reasons))
    cause = f"{type(exc).__name__}: {exc}".strip()
    return f"{'; '.join(reasons)} ({cause})" if reasons else cause


def _files(folder: str):
    from pathlib import Path

    with contextlib.suppress(OSError):
        yield from (f for f in Path(folder).rglob("*") if f.is_file())


def deepspeed_config(train: TrainConfig, world_size: int, dtype: str) -> dict:
    """A DeepSpeed config from the schema; `train.deepspeed` is merged over it last."""
    config = {
        "train_micro_batch_size_per_gpu": train.micro_batch_size,
        "gradient_accumulation_steps": train.gradient_accumulation_steps,
        "train_batch_size": train.micro_batch_size * train.gradient_accumulation_steps * world_size,
        "gradient_clipping": train.max_grad_norm,
        "zero_optimization": {"stage": train.zero_stage},
        "bf16": {"enabled": dtype == "bfloat16"},
        "fp16": {"enabled": dtype == "float16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    return _merge(config, train.deepspeed)


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def _to_device(batch: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def peak_memory_gib() -> float:
    """This process's peak so far: allocated GPU memory on a GPU, else resident memory (RSS)."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # Linux: KiB


def plain_stats(stats: dict) -> dict:
    """An objective's stats as Python numbers, or (nested) lists for per-row values."""
    return {k: v.item() if v.dim() == 0 else v.float().cpu().tolist() for k, v in stats.items()}


class TrainingEngine:
    """Wraps a (possibly peft) model in DeepSpeed with AdamW and an LR schedule."""

    def __init__(self, model, train: TrainConfig, total_steps: int, world_size: int, dtype: str = "float32"):
        import deepspeed
        from transformers import get_scheduler

        if train.autocast and dtype != "float32":
            raise ValueError(f"train.autocast={train.autocast} needs float32 master weights, got dtype={dtype}")
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        optimizer = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
        scheduler = get_scheduler(train.lr_scheduler, optimizer, num_warmup_steps=train.warmup_steps,
                                  num_training_steps=max(total_steps, 1))
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler,
            config=deepspeed_config(train, world_size, dtype),
        )
        self.zero_stage = train.zero_stage
        self.autocast = getattr(torch, train.autocast) if train.autocast else None

    def _precision(self):
        """Where objectives run: under autocast when configured, else in the weights' dtype."""
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.engine.device).type, dtype=self.autocast)

    @property
    def module(self):
        return self.engine.module

    @property
    def device(self):
        return self.engine.device

    def train_step(self, micro_batches: list[dict], objective: Objective) -> dict:
        """Forward/backward every micro-batch, then one optimizer step. Returns mean stats."""
        if len(micro_batches) != self.engine.gradient_accumulation_steps():
            raise ValueError(f"got {len(micro_batches)} micro-batches, expected "
                             f"gradient_accumulation_steps={self.engine.gradient_accumulation_steps()}")
        self.engine.train()
        totals: dict[str, float] = {}
        for batch in micro_batches:
            with self._precision():
                loss, stats = objective(self.engine, _to_device(batch, self.engine.device))
            self.engine.backward(loss)
            self.engine.step()
            for key, value in {"loss": loss.item(), **stats}.items():
                totals[key] = totals.get(key, 0.0) + float(value) / len(micro_batches)
        norm = self.engine.get_global_grad_norm()
        totals["grad_norm"] = float(norm) if norm is not None else float("nan")
        totals["lr"] = self.scheduler.get_last_lr()[0]
        totals["peak_memory_gib"] = peak_memory_gib()
        return totals

    @torch.no_grad()
    def evaluate(self, batches: list[dict], objective: Objective) -> list[dict]:
        """The objective's stats per batch, without gradients: numbers, or lists for per-row values."""
        self.engine.eval()
        results = []
        for batch in batches:
            with self._precision():
                stats = objective(self.engine, _to_device(batch, self.engine.device))[1]
            results.append(plain_stats(stats))
        return results

    # What the update needs and the forward passes and the weight sync do not: the optimizer
    # moments, the fp32 master weights and the gradient buffers (the model's weights stay).
    OPTIMIZER_STATES = ("optim_states", "hp_params", "lp_grads", "contiguous_grad_buffer")

    def offload_optimizer_states(self) -> None:
        """Move the optimizer's states to CPU memory (ZeRO 1-3), freeing the GPU for a
        colocated generation engine; `reload_optimizer_states` brings them back."""
        from deepspeed.runtime.zero.offload_config import OffloadStateTypeEnum

        self.engine.offload_states(include=[OffloadStateTypeEnum(s) for s in self.OPTIMIZER_STATES])

    def reload_optimizer_states(self) -> None:
        self.engine.reload_states()

    def save_checkpoint(self, folder: str, client_state: dict | None = None) -> None:
        """Every rank writes its shard (trainable weights, optimizer, scheduler); a write that
        fails is a `CheckpointWriteError` naming the folder and the cause."""
        with checkpoint_writing(folder):
            self.engine.save_checkpoint(folder, tag="state", client_state=client_state or {},
                                        exclude_frozen_parameters=True)

    def load_checkpoint(self, folder: str) -> dict:
        _, client_state = self.engine.load_checkpoint(folder, tag="state", load_module_strict=False)
        if client_state is None:
            raise FileNotFoundError(f"{folder}: no DeepSpeed checkpoint to resume from")
        return client_state

    def full_parameters(self):
        """Inside, every rank sees whole parameters (ZeRO-3 gathers them; other stages have them)."""
        return self.gathered(list(self.module.parameters()))

    @contextlib.contextmanager
    def gathered(self, params: list):
        """Inside, `params` are whole on every rank (under ZeRO-3 every rank must enter: it is
        a collective of the trainer group); yields the module."""
        if self.zero_stage != 3:
            yield self.module
            return
        import deepspeed

        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            yield self.module
