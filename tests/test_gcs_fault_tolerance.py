"""GCS fault tolerance, for real: `rayalign serve` keeps answering while the head's GCS process is
killed and restarted from an external Redis.

The test starts a password-protected `redis-server` on 127.0.0.1, a Ray head whose GCS keeps its
tables there (`RAY_REDIS_ADDRESS` + `ray start --head --redis-password`, every listener on
127.0.0.1, token auth on), and `rayalign serve` on the shipped SmolLM2. A paced loop of short chat
completions (each with a client timeout, so a dropped request is an error, never a hang) runs
while the `gcs_server` process is SIGKILLed and, after an outage of a few seconds, started again
with its own command line (a bare `ray start` head restarts nothing by itself; KubeRay restarts
the whole head container, raylet and what runs on the head included, so there serving rests on
replicas on worker nodes; here the one node is the head and only its GCS restarts). It checks
that the restarted GCS recovered the cluster from Redis (a KV entry written before the kill, the
same named actors) and that Serve was not redeployed (same replica processes), and prints the
figures as one JSON line:

    python -m pytest tests/test_gcs_fault_tolerance.py -s

Slow (the engine loads in about a minute); skipped where `redis-server` is not installed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from ray_head import Head, ServeProcess, start_head, stop_head
from test_serve_app import free_port

ROOT = Path(__file__).parent.parent
KEY = "gcs-ft-test-key"
MODEL = "smollm2-135m-instruct"
NAMESPACE = "rayalign-gcs-ft"  # RAY_external_storage_namespace: the key prefix of this cluster in Redis
BEFORE_S, OUTAGE_S, AFTER_S = 10.0, 5.0, 30.0  # the request loop before the kill, GCS down, after the restart
REQUEST_TIMEOUT_S, PACE_S, MAX_REQUESTS = 10.0, 0.25, 400

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None,
                       reason="redis-server is not on PATH (Debian: apt-get install redis-server; .ci/run does)"),
]

# Run by a short-lived driver before the kill and after the restart: what the GCS knows.
CLUSTER_STATE = """
import json, sys
import ray
from ray import serve
from ray.experimental import internal_kv
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
if sys.argv[2] == "put":
    internal_kv._internal_kv_put(b"marker", sys.argv[3].encode(), namespace=b"gcs-ft-test")
app = serve.status().applications["rayalign"]
print(json.dumps({
    "kv": (internal_kv._internal_kv_get(b"marker", namespace=b"gcs-ft-test") or b"").decode(),
    "app": getattr(app.status, "value", str(app.status)),
    "deployments": {name: getattr(d.status, "value", str(d.status)) for name, d in app.deployments.items()},
    "named_actors": sorted(a["namespace"] + "/" + a["name"] for a in ray.util.list_named_actors(all_namespaces=True)),
}))
"""


def wait_for_port(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


class Cluster:
    """Redis, the Ray head and the serve process of this test, and their clean-up (by PID only:
    other Ray clusters may run on this machine)."""

    def __init__(self, base: Path):
        self.base = base
        self.redis_port, self.http_port = free_port(), free_port()
        self.password = secrets.token_hex(16)
        # Everything Ray here inherits this: head processes, workers (replicas), drivers.
        self.extra_env = {"RAY_REDIS_ADDRESS": f"127.0.0.1:{self.redis_port}",
                          "RAY_external_storage_namespace": NAMESPACE,
                          "RAY_gcs_rpc_server_reconnect_timeout_s": "60",  # how long raylet and workers wait
                          "RAYALIGN_API_KEYS": KEY,
                          "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
        self.head: Head | None = None
        self.redis: subprocess.Popen | None = None
        self.serve: ServeProcess | None = None
        self.restarted_gcs: subprocess.Popen | None = None

    @property
    def env(self) -> dict:
        return {**self.head.env, **self.extra_env}

    @property
    def address(self) -> str:
        return self.head.gcs

    @property
    def gcs_port(self) -> int:
        return self.head.ports["--port"]

    # -- start ---------------------------------------------------------------------------------
    def start_redis(self) -> None:
        (self.base / "redis").mkdir()
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--requirepass", self.password,
             "--save", "", "--appendonly", "no", "--dir", str(self.base / "redis")],
            stdout=open(self.base / "redis.log", "w"), stderr=subprocess.STDOUT)
        assert wait_for_port(self.redis_port, 20), (self.base / "redis.log").read_text()

    def start_head(self) -> None:
        """Its GCS tables in Redis; no dashboard (not needed here), a small object store."""
        self.head = start_head(extra_env=self.extra_env, extra_flags=[
            "--redis-password", self.password, "--include-dashboard", "false",
            "--object-store-memory", str(500 * 2**20)])

    def start_serve(self) -> None:
        (self.base / "no-runs").mkdir()
        self.serve = ServeProcess(["--address", self.address, "--port", str(self.http_port),
                                   "--runs", str(self.base / "no-runs")], self.env, ROOT)
        self.serve.start()

    # -- look --------------------------------------------------------------------------------------
    def gcs_process(self) -> psutil.Process:
        [gcs] = [p for p in self.head.processes() if p.name() == "gcs_server"]
        return gcs

    def replica_pids(self) -> dict[str, int]:
        """Serve replica processes of this head, by their title (deployment and replica id)."""
        replicas = {}
        for proc in self.head.processes():
            try:
                title = proc.cmdline()[0] if proc.cmdline() else ""
            except psutil.Error:
                continue
            if title.startswith("ray::ServeReplica:"):
                replicas[title.split()[0]] = proc.pid
        return replicas

    def state(self, *args: str) -> dict:
        """What the GCS knows, read by a new driver."""
        done = subprocess.run([sys.executable, "-c", CLUSTER_STATE, self.address, *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def redis_keys(self) -> list[str]:
        keys = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.redis_port), "--no-auth-warning",
                               "-a", self.password, "--scan"], capture_output=True, text=True, timeout=30)
        return keys.stdout.split()

    # -- the fault -------------------------------------------------------------------------------
    @staticmethod
    def kill_gcs(gcs: psutil.Process) -> tuple[list[str], dict, str]:
        """SIGKILL the GCS; its command line, environment and working directory to restart it."""
        again = gcs.cmdline(), gcs.environ(), gcs.cwd()
        gcs.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10  # gone or a zombie (its parent, init here, reaps it when it will)
        while time.monotonic() < deadline:
            try:
                if gcs.status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.02)
        return again

    def restart_gcs(self, command: list[str], env: dict, cwd: str) -> None:
        """The same binary and flags (port, session, Redis address and password): it loads the
        cluster's tables from Redis; raylet, workers and drivers reconnect to it."""
        self.restarted_gcs = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, start_new_session=True)

    # -- clean up --------------------------------------------------------------------------------
    def stop(self, keep_logs: bool) -> None:
        if self.head is None:
            return self._stop_redis()
        pids = {proc.pid for proc in self.head.processes()}
        segments = self.engine_segments()
        if self.serve is not None:
            self.serve.stop()
        stop_head(self.head, keep_logs=keep_logs)
        if self.restarted_gcs is not None:
            self.restarted_gcs.wait(10)
        self._stop_redis()
        # Left behind if Ctrl-C did not get to remove them; and the 32-byte semaphore each vLLM
        # engine's helper process leaves in /dev/shm (sem.loky-<pid>-*) even when stopped cleanly.
        for path in [*segments, *(str(p) for pid in pids for p in Path("/dev/shm").glob(f"sem.loky-{pid}-*"))]:
            Path(path).unlink(missing_ok=True)

    def _stop_redis(self) -> None:
        if self.redis is not None and self.redis.poll() is None:
            self.redis.kill()
            self.redis.wait(10)

    def engine_segments(self) -> set[str]:
        """The vLLM shared-memory segments mapped by this head's processes."""
        segments = set()
        for proc in self.head.processes():
            try:
                segments.update(m.path for m in proc.memory_maps() if m.path.startswith("/dev/shm/psm_"))
            except psutil.Error:
                continue
        return segments


def request_loop(url: str, stop: threading.Event, results: list[dict]) -> None:
    """Short chat completions one after another, paced, each bounded by the client timeout."""
    body = {"model": MODEL, "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": "Name a colour."}]}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"},
                      timeout=REQUEST_TIMEOUT_S) as client:
        while not stop.is_set() and len(results) < MAX_REQUESTS:
            start = time.monotonic()
            try:
                answer = client.post("/v1/chat/completions", json=body)
                error = None if answer.status_code == 200 else f"HTTP {answer.status_code}: {answer.text[:200]}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            results.append({"start": start, "end": time.monotonic(), "error": error})
            time.sleep(max(0.0, PACE_S - (time.monotonic() - start)))


def figures(results: list[dict], killed: float, restarted: float, gcs_back: float) -> dict:
    """Requests, failures, the longest run of consecutive failures (first failure sent to last
    failure answered), and the time from the kill to the first success of a request sent after it."""
    failed = [r for r in results if r["error"]]
    longest, streak = 0.0, []
    for r in results + [{"error": None}]:
        if r["error"]:
            streak.append(r)
        elif streak:
            longest, streak = max(longest, streak[-1]["end"] - streak[0]["start"]), []
    after = [r for r in results if r["start"] >= killed and not r["error"]]
    outage = [r for r in results if killed <= r["start"] < gcs_back]
    latencies = sorted(r["end"] - r["start"] for r in results)
    return {"requests": len(results), "failed": len(failed),
            "timeouts": sum("Timeout" in r["error"] for r in failed),
            "max_failure_window_s": round(longest, 2),
            "recovery_s": round(after[0]["end"] - killed, 2) if after else None,
            "outage_s": round(restarted - killed, 2), "gcs_back_s": round(gcs_back - killed, 2),
            "sent_while_gcs_down": len(outage), "ok_while_gcs_down": sum(not r["error"] for r in outage),
            "max_latency_s": round(latencies[-1], 2), "p50_latency_s": round(latencies[len(latencies) // 2], 3),
            "errors": sorted({r["error"][:160] for r in failed})[:5]}


def test_serving_survives_a_gcs_kill_and_restart_from_redis():
    base = Path(tempfile.mkdtemp(prefix="rgcs", dir="/tmp"))  # Redis's folder, the serve process's runs folder
    cluster = Cluster(base)
    started, passed = time.monotonic(), False
    try:
        cluster.start_redis()
        cluster.start_head()
        assert any(key.startswith(f"RAY{NAMESPACE}@") for key in cluster.redis_keys()), cluster.redis_keys()[:10]
        cluster.start_serve()
        marker = secrets.token_hex(8)
        before = cluster.state("put", marker)
        replicas = cluster.replica_pids()
        assert before["app"] == "RUNNING" and replicas, (before, replicas)

        results: list[dict] = []
        stop = threading.Event()
        loop = threading.Thread(target=request_loop, args=(f"http://127.0.0.1:{cluster.http_port}", stop, results))
        loop.start()
        try:
            time.sleep(BEFORE_S)
            old_gcs = cluster.gcs_process()
            killed = time.monotonic()
            again = cluster.kill_gcs(old_gcs)
            time.sleep(OUTAGE_S)
            restarted = time.monotonic()
            cluster.restart_gcs(*again)
            assert wait_for_port(cluster.gcs_port, 60), "the restarted GCS did not listen within 60 s"
            gcs_back = time.monotonic()
            time.sleep(AFTER_S)
        finally:
            stop.set()
            loop.join(timeout=REQUEST_TIMEOUT_S + 5)
        assert not loop.is_alive(), "a request outlived its client timeout"

        after = cluster.state("get")
        result = figures(results, killed, restarted, gcs_back)
        print("GCS fault tolerance (rayalign serve, SmolLM2, GCS SIGKILLed and restarted from Redis): "
              + json.dumps(result))

        # The GCS was really replaced, and everything it knew came back from Redis.
        assert cluster.gcs_process().pid != old_gcs.pid
        assert after["kv"] == marker, after
        assert after["named_actors"] == before["named_actors"], (before, after)
        # Serve was not redeployed: the same replica processes, the application running.
        assert cluster.replica_pids() == replicas, (replicas, cluster.replica_pids())
        assert after["app"] == "RUNNING" and set(after["deployments"].values()) == {"HEALTHY"}, after
        assert cluster.serve.process.poll() is None, cluster.serve.tail()
        # Serving recovered: no failure before the kill, and the requests after the restart answered.
        assert not [r for r in results if r["error"] and r["start"] < killed], result
        late = [r for r in results if r["start"] >= gcs_back + 5]
        assert len(late) >= 10 and not [r for r in late if r["error"]], result
        # Every request ended within its client timeout (an error seen by the client, never a hang).
        assert result["max_latency_s"] <= REQUEST_TIMEOUT_S + 1, result
        print(f"GCS fault tolerance test: {time.monotonic() - started:.0f} s in all")
        passed = True
    finally:
        cluster.stop(keep_logs=not passed)
        shutil.rmtree(base, ignore_errors=True)
