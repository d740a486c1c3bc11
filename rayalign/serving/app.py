"""Build the serving application from its settings: one vLLM deployment per policy model (base
models with their run-folder adapters multiplexed, and full fine-tunes), the reward deployment,
and the OpenAI-compatible ingress in front of them.

    ingress (RayalignIngress, HTTP, API keys; prompt runs `<base>:<run>` rewritten to `<base>`)
      |-- RunFolderLLMServer:<base>   vLLM engine (ray.serve.llm), LoRA adapters `<base>:<run>`
      |-- RunFolderLLMServer:<run>    a full fine-tune, as its own model
      |-- RewardScorers               reward models `<run>`, for /v1/rewards
      `-- FineTuneRunner              with `finetune.enabled`: runs the fine-tuning jobs
                                      (rayalign/serving/finetune_runner.py)
"""

from __future__ import annotations

from pathlib import Path

from ray import serve
from ray.llm._internal.serve.core.configs.openai_api_models import to_model_metadata
from ray.serve.deployment import Application
from ray.serve.llm import LLMConfig, build_llm_deployment
from ray.serve.llm.ingress import OpenAiIngress

from rayalign.config import ConfigError
from rayalign.models.registry import BUILTIN_MODELS
from rayalign.serving.discovery import base_models, discover_runs
from rayalign.serving.finetune_runner import FineTuneRunner
from rayalign.serving.ingress import ingress_class
from rayalign.serving.policy_server import RunFolderLLMServer
from rayalign.serving.reward_server import RewardScorers
from rayalign.serving.settings import ServeSettings


def llm_config(model_id: str, folder: str, settings: ServeSettings, adapters: bool) -> LLMConfig:
    engine = settings.engine
    engine_kwargs = dict(dtype=engine.dtype, max_model_len=engine.max_model_len, max_num_seqs=engine.max_num_seqs,
                         seed=engine.seed, **engine.extra)
    env = {}
    if engine.accelerator == "cpu":
        engine_kwargs["enforce_eager"] = True
        env = {"VLLM_CPU_KVCACHE_SPACE": str(engine.kv_cache_gib)}
        if engine.cpu_threads:
            env.update(VLLM_CPU_OMP_THREADS_BIND=engine.cpu_threads, VLLM_CPU_NUM_OF_RESERVED_CPU="0")
    lora = None
    if adapters:
        count = settings.adapters.max_per_replica
        engine_kwargs.update(enable_lora=True, max_lora_rank=settings.adapters.max_rank, max_loras=count,
                             max_cpu_loras=count)
        lora = {"max_num_adapters_per_replica": count}
    return LLMConfig(
        model_loading_config={"model_id": model_id, "model_source": folder},
        accelerator_config={"kind": engine.accelerator},
        engine_kwargs=engine_kwargs,
        lora_config=lora,
        runtime_env={"env_vars": env},
        deployment_config=settings.deployments.policy.options(),
    )


def build_app(args: dict) -> Application:
    """The application for `serve deploy`, a RayService (`import_path: serve.app:build_app`) and
    `rayalign serve`; `args` are the ServeSettings."""
    settings = ServeSettings.model_validate(args)
    settings.runs_dir = str(Path(settings.runs_dir).expanduser().resolve())  # replicas run elsewhere
    runs = discover_runs(settings.runs_dir)
    with_adapters = {r.base for r in runs if r.kind == "adapter"}
    finetune = settings.finetune
    lora = settings.adapters.enabled
    if finetune.enabled and lora == "auto":
        lora = True  # a job's adapter is served as soon as it is trained
    bases = base_models(settings.models, runs, settings.runs_dir)
    configs = [llm_config(name, folder, settings, adapters=lora is True or (lora == "auto" and name in with_adapters))
               for name, folder in bases.items()]
    configs += [llm_config(r.run, r.path, settings, adapters=False)
                for r in runs if r.kind == "full" and r.run not in bases]  # else served as that base
    if not configs:
        raise ConfigError(f"nothing to serve: no run folder with a model in {settings.runs_dir} and no `models` "
                         "in the settings (e.g. models: [smollm2-135m-instruct])")
    if finetune.enabled:
        finetune.storage = str(Path(finetune.storage).expanduser().resolve())
    finetune_runs = str(Path(finetune.storage) / "runs") if finetune.enabled else None
    policies = {c.model_id: build_llm_deployment(c, bind_kwargs={"runs_dir": settings.runs_dir,
                                                                 "finetune_runs": finetune_runs},
                                                 deployment_cls=RunFolderLLMServer) for c in configs}
    cards = {c.model_id: to_model_metadata(c.model_id, c) for c in configs}
    rewards = serve.deployment(RewardScorers, **settings.deployments.rewards.options()).bind(
        settings.runs_dir, settings.reward_batch_size)
    ingress_options = {**OpenAiIngress.get_deployment_options(configs), **settings.deployments.ingress.options()}
    if "num_replicas" in ingress_options:
        ingress_options.pop("autoscaling_config", None)
    # what a job may tune: a base whose engine takes adapters, by the name its recipe gives it
    tune_bases = {c.model_id: c.model_id if c.model_id in BUILTIN_MODELS else bases[c.model_id]
                  for c in configs if c.lora_config is not None and c.model_id in bases} if finetune.enabled else {}
    runner = (serve.deployment(FineTuneRunner, num_replicas=1, ray_actor_options={"num_cpus": 0})
              .bind(finetune.model_dump(), tune_bases) if finetune.enabled else None)
    return serve.deployment(ingress_class(settings, tune_bases), **ingress_options).bind(
        llm_deployments=policies, model_cards=cards, rewards=rewards, settings=settings.model_dump(),
        lora_bases=[c.model_id for c in configs if c.lora_config is not None], tune_bases=tune_bases, runner=runner)
