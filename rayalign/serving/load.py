"""A bounded load generator for an OpenAI-compatible endpoint: N chat requests at a fixed
concurrency with the `openai` client; requests/s and latency percentiles (tests and bench/)."""

from __future__ import annotations

import asyncio
import statistics
import time


def percentile(ordered: list[float], q: float) -> float:
    """The nearest-rank percentile of sorted values (q in 0..100)."""
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))]


async def chat_load(base_url: str, api_key: str, model: str, prompts: list[str], concurrency: int,
                    max_tokens: int = 32) -> dict:
    """Send one greedy chat request per prompt, `concurrency` at a time; figures and errors.
    `ignore_eos` makes every reply exactly `max_tokens` long, so two servers do the same work."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=600)
    gate, latencies, errors, tokens = asyncio.Semaphore(concurrency), [], [], [0]

    async def one(prompt: str):
        async with gate:
            start = time.perf_counter()
            try:
                reply = await client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
                    temperature=0, extra_body={"ignore_eos": True})
            except openai.OpenAIError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            latencies.append(time.perf_counter() - start)
            tokens[0] += reply.usage.completion_tokens

    start = time.perf_counter()
    await asyncio.gather(*(one(p) for p in prompts))
    elapsed = time.perf_counter() - start
    await client.close()
    ordered = sorted(latencies) or [float("nan")]
    return {"requests": len(prompts), "concurrency": concurrency, "errors": len(errors),
            "first_errors": errors[:3], "seconds": round(elapsed, 3),
            "requests_per_s": round(len(latencies) / elapsed, 3),
            "completion_tokens": tokens[0], "p50_s": round(statistics.median(ordered), 4),
            "p99_s": round(percentile(ordered, 99), 4)}
