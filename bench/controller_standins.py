"""Fixed-cost stand-ins for `bench/controller_path.py`, installed in every Ray worker by a
`worker_process_setup_hook`: the rollout engine returns ready-made samples of the benchmark's
size (no model call) and the training engine takes its micro-batches without computing on
them, so a step's time is the data path's. Both are subclasses of the real engines (the
models still load, DeepSpeed still builds, checkpoints and export still work)."""

from __future__ import annotations

import os
import random


def install() -> None:
    from rayalign.data.rollouts import Sample
    from rayalign.engines import generation, hf_generation, training

    tokens = int(os.environ["BENCH_RESPONSE_TOKENS"])

    class ReadySamples(hf_generation.HfEngine):
        def generate(self, prompts, n=1, greedy=False, max_new_tokens=None):
            rng = random.Random(len(prompts))
            pool = [rng.randrange(100, 40000) for _ in range(tokens + 997)]
            return [[Sample(list(prompt), pool[(i * 7 + j) % 997:][:tokens], [-1.0] * tokens, False)
                     for j in range(n)] for i, prompt in enumerate(prompts)]

    class TakesBatches(training.TrainingEngine):
        def train_step(self, micro_batches, objective):
            seen = sum(int(b["response_mask"].sum()) for b in micro_batches)
            return {"loss": 0.0, "response_tokens": float(seen), "grad_norm": 0.0, "lr": 0.0,
                    "peak_memory_gib": training.peak_memory_gib()}

    generation.ENGINES["hf"] = ReadySamples
    training.TrainingEngine = TakesBatches


def distinct_characters(prompts, completions, **_):
    """The benchmark's reward: cheap, and it reads every completion's text."""
    return [len(set(text)) / 100 for text in completions]
