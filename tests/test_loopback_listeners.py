"""Nothing rayalign starts listens beyond this machine unless told to: the local Ray cluster of a
run (connect()), the head of cluster/start-head.sh (token auth on, and it runs a job), and the
review page. Each test lists the listening sockets of the process tree it started and fails on
any that is not on loopback. `rayalign serve` is checked where its server already runs
(tests/test_serve_smollm2.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from listeners import alive, exposed, listening, tree
from ray_head import start_head, stop_head
from test_review import ITEMS, wait_until_serving, write_items
from test_serve_app import free_port

ROOT = Path(__file__).parent.parent


def plain_env(**extra) -> dict:
    """The environment a user's shell gives a command: none of the test session's Ray settings
    (conftest sets RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER, which would hide what rayalign itself does)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS", "RAYALIGN_RAY_HOST")}
    return {**env, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), **extra}


LOCAL_RUN = """
import os, sys, time, ray
from rayalign.cli.tools import _stop_within
from rayalign.workers.cluster import connect
connect("local", num_cpus=1)

@ray.remote
class Holder:
    def pid(self):
        return os.getpid()

holder = Holder.remote()
ray.get(holder.pid.remote())
print("ready", flush=True)
sys.stdin.readline()
_stop_within(1)  # then stopping hangs: the second way out must end the cluster and the command
time.sleep(120)
"""


def test_a_local_run_listens_on_loopback_only_and_a_hung_stop_leaves_no_process():
    """The listeners of a local cluster (connect()); then a stop that hangs (`rayalign serve`'s
    second way out): the command ends and so does every process of its cluster. The stop that
    does not hang is checked on `rayalign serve` (tests/test_serve_smollm2.py)."""
    run = subprocess.Popen([sys.executable, "-c", LOCAL_RUN], cwd=ROOT, env=plain_env(), stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in run.stdout:
            lines.append(line)
            if line.startswith("ready"):
                break
        assert lines and lines[-1].startswith("ready"), "".join(lines[-40:])
        procs = tree(run.pid)
        sockets = listening(procs)
        print(f"a local run listens on: {sockets}")
        assert len({pid for pid, *_ in sockets}) >= 4, sockets  # driver, GCS, raylet, agents, the actor
        assert exposed(procs) == [], exposed(procs)
        run.stdin.write("\n")
        run.stdin.flush()
        assert run.wait(timeout=30) == 1
        assert "killing the cluster's processes" in run.stdout.read()
        deadline = time.monotonic() + 10
        while alive(procs[1:]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert alive(procs[1:]) == [], "processes of the local cluster left after the run"
    finally:
        if run.poll() is None:
            run.kill()


def test_binding_the_local_cluster_elsewhere_keeps_token_auth(monkeypatch):
    """RAYALIGN_RAY_HOST names where a local cluster listens; with Ray's token auth off that is an error."""
    import ray

    from rayalign.workers import cluster

    calls = []

    def init(**kwargs):
        calls.append((kwargs, os.environ.get("RAY_AUTH_MODE")))
        raise RuntimeError("not starting")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setenv("RAYALIGN_RAY_HOST", "10.1.2.3")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(ValueError, match="token auth"):
        cluster.connect("local")
    assert calls == []
    monkeypatch.delenv("RAY_AUTH_MODE")
    with pytest.raises(RuntimeError, match="not starting"):
        cluster.connect("local")
    assert calls[0][0]["_node_ip_address"] == "10.1.2.3" and calls[0][1] == "token"


def check_head_runs_a_job(head) -> None:
    """The head (started by cluster/start-head.sh) refuses a client without its token and runs a job for one with it."""
    job = ["ray", "job", "submit", "--address", head.dashboard, "--", "python", "-c", "print('job ran')"]
    ray_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join([ray_bin, os.environ.get("PATH", "")])
    refused = subprocess.run(job, env={**plain_env(), "PATH": path, "RAY_AUTH_MODE": "disabled"},
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0, refused.stdout[-2000:]
    ran = subprocess.run(job, env={**plain_env(), **head.env, "PATH": path}, capture_output=True, text=True,
                         timeout=180)
    assert ran.returncode == 0 and "job ran" in ran.stdout, ran.stdout[-3000:] + ran.stderr[-3000:]


def test_the_head_script_listens_on_loopback_only_with_token_auth():
    head = start_head(num_cpus=1, script=True)
    try:
        procs = [p for root in head.processes() for p in tree(root.pid)]
        sockets = listening(procs)
        print(f"cluster/start-head.sh listens on: {sockets}")
        assert len({pid for pid, *_ in sockets}) >= 4, sockets
        assert exposed(procs) == [], exposed(procs)
        check_head_runs_a_job(head)
        assert exposed([p for root in head.processes() for p in tree(root.pid)]) == []  # the job's workers too
    finally:
        stop_head(head)


def test_the_review_page_listens_on_loopback_only(tmp_path):
    items = write_items(tmp_path / "items.jsonl", ITEMS)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "rayalign.cli", "review", "serve", str(items), "--port",
                               str(port), "--reviewer", "alice"], cwd=ROOT, env=plain_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_serving(server, f"http://127.0.0.1:{port}")
        sockets = listening(tree(server.pid))
        assert [port for *_, port in sockets] == [port], sockets
        assert exposed(tree(server.pid)) == []
    finally:
        server.terminate()
        server.wait(30)
