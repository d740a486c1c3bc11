"""The sections every run shares: the model (LoRA, freezing), the data, training, placement, logging."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraConfig(_Strict):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]


class FreezeConfig(_Strict):
    """Partial fine-tuning: which parameters stay frozen.

    `modules`: regular expressions matched against parameter names (search, not full match).
    `layers`: decoder-layer indices to freeze, as a list or an inclusive "a-b" range string.
    `train_only`: if set, everything else is frozen and only parameters matching these
    patterns train (applied before `modules` and `layers`).
    """

    modules: list[str] = []
    layers: list[int] | str = []
    train_only: list[str] = []


class ModelConfig(_Strict):
    """`name_or_path`: a built-in name, a Hugging Face folder, or a run folder to start from.
    `parent`: when that is a LoRA adapter, `merge` it into its base first (the default: a new
    LoRA or full training on top; the parent is the reference) or `continue` training it
    (SFT, DPO, reward models; leave `lora` unset). See rayalign/models/chain.py."""

    name_or_path: str = "smollm2-135m-instruct"
    parent: Literal["merge", "continue"] = "merge"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    lora: LoraConfig | None = None
    freeze: FreezeConfig | None = None
    gradient_checkpointing: bool = False

    @model_validator(mode="after")
    def _one_way_to_train(self):
        if self.lora is not None and self.freeze is not None:
            raise ValueError("set either lora or freeze, not both (LoRA already freezes the base)")
        if self.parent == "continue" and (self.lora is not None or self.freeze is not None):
            raise ValueError("parent: continue trains the parent's own adapter; leave lora and freeze unset")
        return self


class DataConfig(_Strict):
    """Where the data is. Paths may be `shipped:NAME` for files shipped with rayalign."""

    train: str
    eval: str | None = None
    eval_fraction: float = Field(0.0, ge=0, lt=1)
    max_length: int = Field(512, gt=8)
    completion_only: bool = True
    max_train_samples: int | None = Field(None, gt=0)
    max_eval_samples: int | None = Field(None, gt=0)


class TrainConfig(_Strict):
    """`autocast: bfloat16` runs forward passes under torch.autocast in bfloat16 while the weights,
    gradients and optimizer stay float32 (mixed precision with fp32 master weights; needs
    model.dtype float32). Left unset, training runs in model.dtype throughout (bfloat16 there is
    DeepSpeed's pure-bf16 path)."""

    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0)
    micro_batch_size: int = Field(4, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    lr_scheduler: Literal["constant", "linear", "cosine"] = "linear"
    max_grad_norm: float = Field(1.0, ge=0)
    zero_stage: Literal[0, 1, 2, 3] = 2
    eval_every: int = Field(0, ge=0)
    save_every: int = Field(0, ge=0)
    keep_last: int = Field(2, gt=0)
    log_every: int = Field(1, gt=0)
    autocast: Literal["bfloat16"] | None = None
    deepspeed: dict[str, Any] = {}


class PlacementConfig(_Strict):
    """Where workers run. `address`: a Ray cluster ("auto" finds a running one); None
    starts a local cluster unless one is reachable. `num_workers`/`*_per_worker` size the
    trainer group; in RL, `colocate` puts the rollout, reference and critic workers on the
    trainers' bundles (sharing their devices) instead of bundles of their own."""

    num_workers: int = Field(1, gt=0)
    cpus_per_worker: float = Field(1.0, ge=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    address: str | None = None
    timeout_s: float = Field(600.0, gt=0)
    colocate: bool = False


class LoggingConfig(_Strict):
    tensorboard: bool = True
    progress: bool = True


