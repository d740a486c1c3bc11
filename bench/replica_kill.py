"""A policy replica killed under load: what the clients see, and how long Serve takes to replace it.

Starts the serving application (two policy replicas by default) on a local Ray, sends a bounded
load (`--clients` closed-loop clients, one chat request after another, for `--seconds`, each
request with a `--timeout-s` client timeout), and SIGKILLs one policy replica's process
`--kill-after-s` into the load. Every request is recorded (start, end, HTTP status or error kind).

Output: one JSON line: requests, ok, failed (by kind), failures that started before the kill,
the longest request against the timeout, the time from the kill to the first success and to the
deployment being back at its replica count with a new process, and the killed replica's
children (vLLM's engine processes) still alive once it was replaced; those are then killed.

Run:   .venv/bin/python bench/replica_kill.py [--model tiny|smollm2-135m-instruct --replicas 2
                                               --clients 4 --seconds 60 --kill-after-s 15 --timeout-s 30]
The same function runs in tests/test_serve_faults.py on the test session's Ray.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

from rayalign.serving.lifecycle import segments_mapped_by

APP = "rayalign"
POLICY = "RunFolderLLMServer"


def policy_replicas(app: str = APP) -> list[psutil.Process]:
    """The policy replica processes of `app` that this process's own Ray started (another Ray
    cluster on the machine is left alone)."""
    marker = f"ray::ServeReplica:{app}:{POLICY}"
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if (proc.cmdline() or [""])[0].startswith(marker):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def running_policy_replicas(app: str = APP) -> int:
    from ray import serve

    deployments = serve.status().applications[app].deployments
    return sum(d.replica_states.get("RUNNING", 0) for name, d in deployments.items() if name.startswith(POLICY))


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def kill_under_load(url: str, key: str, model: str, clients: int = 4, seconds: float = 60,
                          kill_after_s: float = 15, timeout_s: float = 30, max_tokens: int = 8,
                          app: str = APP, recovery_limit_s: float = 240, after_s: float = 5) -> dict:
    """The figures of one run (see the module docstring); `url` is the application's base URL.
    The load lasts `seconds`, and goes on until `after_s` past the replacement (at most
    `recovery_limit_s` after the kill), so that requests served after it are counted too."""
    replicas = policy_replicas(app)
    if not replicas:
        raise RuntimeError(f"no policy replica of application {app!r} among this process's Ray workers")
    expected = running_policy_replicas(app)
    records: list[dict] = []
    body = {"model": model, "messages": [{"role": "user", "content": "What is 3 + 4?"}],
            "max_tokens": max_tokens, "temperature": 0}
    start = time.monotonic()
    killed: dict = {}

    def done() -> bool:
        """After `seconds`, and once the replica is replaced, `after_s` more (or the watch gave up)."""
        now = time.monotonic()
        if now < start + seconds:
            return False
        recovered = killed.get("recovered_at")
        return "gave_up" in killed or (recovered is not None and now >= recovered + after_s)

    async def client(http: httpx.AsyncClient):
        while not done():
            began = time.monotonic()
            try:
                answer = await http.post(f"{url}/v1/chat/completions", json=body, timeout=timeout_s)
                kind = "ok" if answer.status_code == 200 else f"HTTP {answer.status_code}"
                detail = None if answer.status_code == 200 else answer.text[:300]
            except httpx.TimeoutException:
                kind, detail = "timeout", None
            except httpx.HTTPError as exc:
                kind, detail = type(exc).__name__, str(exc)[:300]
            records.append({"start": began, "end": time.monotonic(), "kind": kind, "detail": detail})
            if kind != "ok":
                await asyncio.sleep(0.2)  # a client backs off a little after a failure

    victim = replicas[0]

    def kill_and_watch():
        time.sleep(max(start + kill_after_s - time.monotonic(), 0))
        children = victim.children(recursive=True)
        segments = {path for _, path in segments_mapped_by([victim, *children])}
        killed.update(pid=victim.pid, at=time.monotonic())
        victim.send_signal(signal.SIGKILL)
        deadline = killed["at"] + recovery_limit_s
        while time.monotonic() < deadline:
            try:
                fresh = [p.pid for p in policy_replicas(app)]
                if victim.pid not in fresh and len(fresh) >= len(replicas) and running_policy_replicas(app) >= expected:
                    killed["recovered_at"] = time.monotonic()
                    break
            except Exception:  # noqa: BLE001 - the controller may answer slowly while it replaces the replica
                pass
            time.sleep(0.25)
        killed["orphans"] = [p.pid for p in children if alive(p)]
        for orphan in children:  # what outlived the replica (vLLM's processes), by pid: ours to end
            if alive(orphan):
                orphan.kill()
        killed["segments"] = sorted(segments)
        if "recovered_at" not in killed:
            killed["gave_up"] = True

    watcher = threading.Thread(target=kill_and_watch, daemon=True)
    watcher.start()
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(headers=headers) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    await asyncio.to_thread(watcher.join, recovery_limit_s + kill_after_s + 10)
    return figures(records, killed, timeout_s, clients, time.monotonic() - start)


def figures(records: list[dict], killed: dict, timeout_s: float, clients: int, seconds: float) -> dict:
    at = killed.get("at", float("inf"))
    failed = [r for r in records if r["kind"] != "ok"]
    kinds: dict[str, int] = {}
    for r in failed:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    after = sorted((r for r in records if r["kind"] == "ok" and r["start"] >= at), key=lambda r: r["end"])
    recovered = killed.get("recovered_at")
    return {
        "clients": clients, "seconds": round(seconds, 1), "timeout_s": timeout_s,
        "requests": len(records), "ok": len(records) - len(failed), "failed": len(failed), "failed_by_kind": kinds,
        "failed_before_kill": sum(r["start"] < at and r["end"] < at for r in failed),
        "failed_after_recovery": sum(r["start"] >= recovered for r in failed) if recovered else None,
        "ok_after_recovery": sum(r["start"] >= recovered and r["kind"] == "ok" for r in records) if recovered else None,
        "first_failures": sorted({f"{r['kind']}: {r['detail']}" for r in failed})[:3],
        "max_latency_s": round(max((r["end"] - r["start"] for r in records), default=0.0), 3),
        "killed_pid": killed.get("pid"),
        "first_success_after_kill_s": round(after[0]["end"] - at, 3) if after else None,
        "replaced_after_s": round(recovered - at, 3) if recovered else None,
        "killed_replica_children_alive": killed.get("orphans"),
        "killed_replica_shm": killed.get("segments"),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", help="'tiny' (a random 100K-parameter Llama built here) or a "
                                                       "model name/folder, e.g. smollm2-135m-instruct")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--kill-after-s", type=float, default=15)
    parser.add_argument("--timeout-s", type=float, default=30)
    parser.add_argument("--max-tokens", type=int, default=8)
    args = parser.parse_args()

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    from rayalign.serving import lifecycle

    work = Path(tempfile.mkdtemp(prefix="replica-kill-"))
    model = args.model
    if model == "tiny":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from tiny_model import build_tiny_model

        model = build_tiny_model(work / "tiny-llm", hidden_size=64, heads=2)
    (work / "runs").mkdir()
    (work / "keys").write_text("bench-key\n")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)  # stdout: the JSON line
    settings = {"runs_dir": str(work / "runs"), "models": [model], "auth": {"keys_file": str(work / "keys")},
                "engine": {"max_model_len": 512, "max_num_seqs": 8},
                "deployments": {"policy": {"num_replicas": args.replicas, "ray_actor_options": {"num_cpus": 0}}}}
    began = time.monotonic()
    url = lifecycle.start(settings, port=free_port())
    started_s = time.monotonic() - began
    segments = lifecycle.EngineSegments()  # as `rayalign serve` keeps them
    segments.note()
    result: dict = {}
    try:
        result = asyncio.run(kill_under_load(url, "bench-key", Path(model).name if model.startswith("/") else model,
                                             args.clients, args.seconds, args.kill_after_s, args.timeout_s,
                                             args.max_tokens))
    finally:
        swept = segments.sweep()  # the killed engine's, as the server's periodic sweep removes them
        removed = lifecycle.stop(segments=segments)
        ray.shutdown()
    print(json.dumps({"model": args.model, "replicas": args.replicas, "start_s": round(started_s, 1), **result,
                      "shm_swept": len(swept), "shm_removed_at_stop": len(removed)}))


if __name__ == "__main__":
    main()
