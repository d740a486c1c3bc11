"""Fuzz the serving app's HTTP API with schemathesis, longer than the CI test does, and print one
JSON line: cases run per operation (with a key and without), statuses, failures by kind, and the
first failing cases; then bodies over the limit (413 expected), and whether a normal chat
request still succeeds.

Against a running server (its /openapi.json, with the key):
    python scripts/fuzz_http.py --url http://127.0.0.1:8000 --key KEY [--examples 50] [--all]
Or start one here (a local Ray, the tiny test model, the fine-tuning service on; stopped after):
    python scripts/fuzz_http.py --start [--examples 50] [--all]

`--all` also fuzzes ray.serve.llm's routes outside issue 16's list (embeddings, score,
transcriptions, tokenize). Exit status 1 if any case failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from http_fuzz import fuzz, load_schema, oversize  # noqa: E402

OPERATIONS = r"^/v1/(chat/completions|completions|models.*|rewards|judge|files.*|fine_tuning.*)$"
KEY = "fuzz-key"


def start_local(folder: Path) -> str:
    import ray

    from rayalign.serving import lifecycle
    from test_serve_app import free_port
    from tiny_model import build_tiny_model

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    model = build_tiny_model(folder / "tiny-llm", hidden_size=64, heads=2)
    (folder / "runs").mkdir()
    (folder / "keys").write_text(f"{KEY}\n")
    args = {"runs_dir": str(folder / "runs"), "models": [model], "auth": {"keys_file": str(folder / "keys")},
            "engine": {"max_model_len": 256, "max_num_seqs": 8}, "finetune": {"enabled": True,
                                                                                "storage": str(folder / "ft")},
            "deployments": {"policy": {"ray_actor_options": {"num_cpus": 0}}}}
    return lifecycle.start(args, port=free_port(), name="fuzz")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url")
    parser.add_argument("--key", default=KEY)
    parser.add_argument("--start", action="store_true", help="start a local server on the tiny model")
    parser.add_argument("--examples", type=int, default=50, help="examples per operation, key and mode")
    parser.add_argument("--all", action="store_true", help="every operation of the schema")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds an answer may take")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", help="a served model that positive cases name (default: the first listed)")
    parser.add_argument("--max-body-bytes", type=int, default=8 * 2**20, help="the server's max_body_bytes")
    args = parser.parse_args()
    if not (args.url or args.start):
        parser.error("give --url or --start")
    with tempfile.TemporaryDirectory(prefix="fuzz-http-") as folder:
        url = start_local(Path(folder)) if args.start else args.url.rstrip("/")
        try:
            result = fuzz(load_schema(url, args.key), url, args.key, max_examples=args.examples,
                          operations=None if args.all else OPERATIONS, time_limit_s=args.time_limit,
                          seed=args.seed, model=args.model or _first_model(url, args.key))
            too_large = oversize(url, args.key, args.max_body_bytes)
            healthy = _chat_ok(url, args.key)
        finally:
            if args.start:
                from ray import serve

                from rayalign.serving import lifecycle

                lifecycle.stop("fuzz")
                serve.shutdown()
    result["oversize"] = too_large
    result["serving_after"] = healthy
    print(json.dumps(result))
    refused = all(r["status"] == 413 for r in too_large.values())
    return 0 if not result["failures"] and healthy and refused else 1


def _first_model(url: str, key: str) -> str:
    import httpx

    return httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30).json()["data"][0]["id"]


def _chat_ok(url: str, key: str) -> bool:
    """Whether a normal chat request to the first model still answers."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    model = _first_model(url, key)
    answer = httpx.post(url + "/v1/chat/completions", headers=headers, timeout=120,
                        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    return answer.status_code == 200


if __name__ == "__main__":
    sys.exit(main())
