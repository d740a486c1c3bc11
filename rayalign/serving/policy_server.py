"""The policy deployment: ray.serve.llm's LLMServer, with LoRA adapters from local run folders.

ray.serve.llm loads adapters only from object storage (`dynamic_lora_loading_path` must be
s3://, gs://, ...). Here an adapter model id `<base>:<run>` names `runs/<run>/final/`, looked
up when first requested, so adapters trained after start-up are served too. Serve's
multiplexing keeps `max_num_adapters_per_replica` adapters per replica and routes requests for
an adapter to a replica that has it; vLLM holds as many in its LRU cache (`max_cpu_loras`).
"""

from __future__ import annotations

from fastapi import HTTPException
from ray.llm._internal.common.models import global_id_manager
from ray.llm._internal.common.utils.lora_utils import get_base_model_id, get_lora_id
from ray.llm._internal.serve.core.configs.llm_config import DiskMultiplexConfig
from ray.serve.llm.deployment import LLMServer

from rayalign.serving.discovery import find_run


class RunFolderAdapters:
    """Maps `<base>:<run>` to the adapter folder of that run (the loader interface LLMServer
    multiplexes with); a fine-tuning job's run `ft-<id>` is in the service's runs folder."""

    def __init__(self, runs_dir: str, finetune_runs: str | None = None):
        self.runs_dir, self.finetune_runs = runs_dir, finetune_runs

    async def load_model_from_config(self, lora_model_id: str, llm_config) -> DiskMultiplexConfig:
        base, run = get_base_model_id(lora_model_id), get_lora_id(lora_model_id)
        runs_dir = self.finetune_runs if self.finetune_runs and run.startswith("ft-") else self.runs_dir
        try:
            found = find_run(runs_dir, run, "adapter")
        except LookupError as exc:
            raise HTTPException(404, f"model {lora_model_id!r}: {exc}") from exc
        if found.base != base:
            raise HTTPException(404, f"model {lora_model_id!r}: run {run!r} adapts {found.base!r}, not {base!r}")
        return DiskMultiplexConfig(model_id=lora_model_id, local_path=found.path, max_total_tokens=None,
                                   lora_assigned_int_id=global_id_manager.next())


class RunFolderLLMServer(LLMServer):
    async def __init__(self, llm_config, *, runs_dir: str, finetune_runs: str | None = None):
        self._runs_dir, self._finetune_runs = runs_dir, finetune_runs
        await super().__init__(llm_config)

    def _init_multiplex_loader(self, model_downloader_cls=None):
        runs_dir, finetune_runs = self._runs_dir, self._finetune_runs
        super()._init_multiplex_loader(lambda **_download_options: RunFolderAdapters(runs_dir, finetune_runs))
