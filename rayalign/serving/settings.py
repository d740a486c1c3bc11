"""The settings of the serving application: the `args` of serve/config.yaml, typed.

`serve deploy`, a KubeRay RayService and `rayalign serve` all pass these `args` to the
application builder; an unknown key or a wrong type stops the deployment with its name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rayalign.config import ConfigError
from rayalign.config.loading import validation_problems
from rayalign.data.readers import DataError
from rayalign.data.yaml_files import load_file
from rayalign.rewards.judge import REPLY_MAX_TOKENS

APP_NAME = "rayalign"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EngineSettings(_Strict):
    """The vLLM engine of every policy model. `cpu_threads`: the cores vLLM binds on a CPU
    machine (e.g. "0-1"); None leaves vLLM's default (core 0 only)."""

    accelerator: Literal["cpu", "gpu"] = "cpu"
    dtype: Literal["bfloat16", "float16", "float32", "auto"] = "bfloat16"
    max_model_len: int = Field(1024, gt=16)
    max_num_seqs: int = Field(16, gt=0)
    kv_cache_gib: int = Field(1, gt=0)
    cpu_threads: str | None = None
    seed: int = 0
    extra: dict[str, Any] = {}  # any other vLLM engine argument


class AdapterSettings(_Strict):
    """LoRA adapters found in run folders, multiplexed on their base model's replicas:
    `max_per_replica` loaded at once (least recently used unloaded first), rank up to `max_rank`.
    `enabled`: LoRA on a base model's engine. `auto` turns it on for the base models that have
    adapter runs at start-up: a LoRA-enabled vLLM engine answers base-model requests more
    slowly (measured on CPU: 64 greedy requests x 32 tokens in 4.0 s against 3.15 s without).
    `true` turns it on for every base model, so that adapters trained after start-up are
    served too; `false` serves no adapters."""

    enabled: bool | Literal["auto"] = "auto"
    max_per_replica: int = Field(4, gt=0)
    max_rank: int = Field(16, gt=0)


class AuthSettings(_Strict):
    """Bearer-token API keys: from the environment variable `keys_env` (comma-separated) and/or
    `keys_file` (one key a line, e.g. a mounted Kubernetes secret). On unless `enabled: false`."""

    enabled: bool = True
    keys_env: str = "RAYALIGN_API_KEYS"
    keys_file: str | None = None


class JudgeSettings(_Strict):
    """The AI critic of /v1/judge: `model` is any served policy model name (default: the first
    base model); replies follow the judge grammar when `constrained` (vLLM structured outputs)."""

    model: str | None = None
    max_tokens: int = Field(192, gt=0)
    temperature: float = Field(0.0, ge=0)
    constrained: bool = True

    @model_validator(mode="after")
    def _room_for_a_whole_reply(self):
        if self.constrained and self.max_tokens < REPLY_MAX_TOKENS:
            raise ValueError(f"judge.max_tokens={self.max_tokens} may cut a constrained reply short; "
                             f"give at least {REPLY_MAX_TOKENS}")
        return self


class DeploymentSettings(_Strict):
    """Ray Serve options of one deployment: `num_replicas` or `autoscaling_config`,
    `max_ongoing_requests`, `ray_actor_options` (e.g. num_cpus)."""

    num_replicas: int | None = Field(None, gt=0)
    autoscaling_config: dict[str, Any] | None = None
    max_ongoing_requests: int | None = Field(None, gt=0)
    ray_actor_options: dict[str, Any] = {}

    def options(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude_defaults=True)


class Deployments(_Strict):
    """Per-deployment settings: `policy` (each vLLM model), `ingress` (the HTTP front),
    `rewards` (the reward-model scorers)."""

    policy: DeploymentSettings = DeploymentSettings()
    ingress: DeploymentSettings = DeploymentSettings(ray_actor_options={"num_cpus": 0})
    rewards: DeploymentSettings = DeploymentSettings(ray_actor_options={"num_cpus": 0})


class FineTuneSettings(_Strict):
    """The fine-tuning service: OpenAI's /v1/files and /v1/fine_tuning/jobs (rayalign/finetune).
    Off unless `enabled`. `storage`: uploaded files, converted data and the jobs' run folders, a
    folder every node of the cluster sees. `database_url`: SQLAlchemy URL of the jobs' state,
    default SQLite in `storage` (one service replica); PostgreSQL (`postgresql+psycopg://...`)
    for several. `ray_address`: the Ray job server the jobs are submitted to (default
    RAY_ADDRESS, else http://127.0.0.1:8265). `recipes`: the recipe each OpenAI method runs,
    with the operator's `overrides` (key=value) applied before the job's hyperparameters.
    `score_model_url`: the chat server score_model graders ask (e.g. this service's /v1).
    `python_graders`: let tenants' python graders run (isolated, rayalign/rewards/sandbox.py).
    Limits are per tenant."""

    enabled: bool = False
    storage: str = "finetune"
    database_url: str | None = None
    ray_address: str | None = None
    recipes: dict[Literal["supervised", "dpo", "reinforcement"], str] = {
        "supervised": "quickstart", "dpo": "dpo", "reinforcement": "rlhf_grpo"}
    overrides: dict[Literal["supervised", "dpo", "reinforcement"], list[str]] = {}
    score_model_url: str | None = None
    python_graders: bool = False
    max_file_bytes: int = Field(512 * 2**20, gt=0)
    max_stored_bytes: int = Field(8 * 2**30, gt=0)
    max_active_jobs: int = Field(2, gt=0)
    poll_s: float = Field(2.0, gt=0)


class ServeSettings(_Strict):
    """What to serve. `models`: base models (built-in names or HF folders) served whether or
    not a run uses them; every run folder under `runs_dir` adds its adapter (next to its base,
    which is then served too), its full fine-tune (as a model of its own) or its reward model.
    `max_body_bytes`: the largest request body taken (413 above it, refused before it is read
    whole); a file upload of the fine-tuning service may be up to `finetune.max_file_bytes`."""

    runs_dir: str = "runs"
    models: list[str] = []
    engine: EngineSettings = EngineSettings()
    adapters: AdapterSettings = AdapterSettings()
    auth: AuthSettings = AuthSettings()
    judge: JudgeSettings = JudgeSettings()
    reward_batch_size: int = Field(8, gt=0)
    deployments: Deployments = Deployments()
    finetune: FineTuneSettings = FineTuneSettings()
    max_body_bytes: int = Field(8 * 2**20, gt=0)


def read_serve_config(path: str, runs_dir: str | None = None) -> tuple[dict, dict]:
    """(the `args` of the rayalign application, `http_options`) from a Serve config file such as
    serve/config.yaml, checked against ServeSettings; `runs_dir` replaces the file's."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"serve config {path}: no such file")
    try:  # not UTF-8, not YAML: named with the line
        config = load_file(file, path) or {}
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a Serve config is a mapping, got {type(config).__name__}")
    listed = config.get("applications")
    if not isinstance(listed, (list, type(None))):
        raise ConfigError(f"{path}: `applications` is a list of Serve applications, got {type(listed).__name__}")
    apps = [a for a in listed or [] if isinstance(a, dict) and a.get("name") == APP_NAME]
    if not apps:
        raise ConfigError(f"{path}: no application named {APP_NAME!r} under `applications`")
    args = apps[0].get("args") or {}
    if not isinstance(args, dict):
        raise ConfigError(f"{path}, application {APP_NAME!r}: args is a mapping, got {type(args).__name__}")
    args = dict(args)
    if runs_dir is not None:
        args["runs_dir"] = runs_dir
    try:
        ServeSettings.model_validate(args)
    except ValidationError as exc:
        raise ConfigError(f"{path}, application {APP_NAME!r}, args: {validation_problems(exc)}") from None
    http_options = config.get("http_options") or {}
    if not isinstance(http_options, dict):
        raise ConfigError(f"{path}: http_options is a mapping, got {type(http_options).__name__}")
    return args, dict(http_options)
