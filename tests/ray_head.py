"""A real `ray start --head` for tests: loopback only, token auth on, every port chosen free,
its own temp folder; stopped by the PIDs it started, never by a machine-wide `ray stop`
(the test session's own cluster, and anyone else's, keep running)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from test_serve_app import free_port

PORT_FLAGS = ("--port", "--dashboard-port", "--ray-client-server-port", "--dashboard-agent-listen-port",
              "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port",
              "--node-manager-port", "--object-manager-port")


@dataclass
class Head:
    folder: Path                  # temp dir (short: Ray's socket paths must stay under 108 bytes)
    ports: dict
    env: dict                     # what a client on this machine needs: the token

    @property
    def gcs(self) -> str:
        return f"127.0.0.1:{self.ports['--port']}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.ports['--dashboard-port']}"

    @property
    def client_env(self) -> dict:
        """A job client's environment: the token, and the job server as RAY_ADDRESS."""
        return {**self.env, "RAY_ADDRESS": self.dashboard}

    def processes(self) -> list[psutil.Process]:
        """Every process of this head: those naming its folder or its GCS address, and all their
        descendants (workers, agents, Serve replicas and their engines)."""
        mine = set()
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if any(str(self.folder) in arg or arg.endswith(self.gcs) for arg in proc.info["cmdline"] or []):
                    mine.add(proc)
                    mine.update(proc.children(recursive=True))
            except psutil.Error:
                continue
        return list(mine)


ROOT = Path(__file__).parent.parent


def start_head(num_cpus: int = 2, extra_env: dict | None = None, extra_flags: list[str] = (),
               script: bool = False, fixed_ports: dict | None = None) -> Head:
    """A head that listens on 127.0.0.1 only, with token auth on (a fresh token in its folder).
    `script`: started by cluster/start-head.sh as a user starts it (its HOME the head's folder, so
    the token it makes sure of is that one), only the ports and the temp folder given as flags.
    `fixed_ports`: flags of PORT_FLAGS to give these ports rather than free ones."""
    folder = Path(tempfile.mkdtemp(prefix="rh-", dir="/tmp"))
    token = folder / ".ray" / "auth_token"
    token.parent.mkdir()
    token.write_text(secrets.token_hex(16))
    workers = free_port()  # a range of 200 ports from here for the workers; the others outside it
    ports: dict[str, int] = {}
    for flag in PORT_FLAGS:
        port = free_port()
        while workers <= port <= workers + 200 or port in ports.values() or port in (fixed_ports or {}).values():
            port = free_port()
        ports[flag] = port
    ports.update(fixed_ports or {})
    base = {key: value for key, value in os.environ.items() if not key.startswith("RAY_ADDRESS")}
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env = {**base, **auth, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **(extra_env or {}),
           # the jobs' `python` is the first on the PATH of the shell that ran `ray start`
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), base.get("PATH", "")])}
    flags = ["--temp-dir", str(folder / "ray"), "--num-cpus", str(num_cpus), "--min-worker-port", str(workers),
             "--max-worker-port", str(workers + 200), *[part for flag, port in ports.items() for part in (flag, str(port))],
             *extra_flags]
    if script:
        env = {key: value for key, value in env.items() if key != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
        command = ["bash", str(ROOT / "cluster" / "start-head.sh"), *flags]
        env["HOME"] = str(folder)
    else:
        command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1",
                   "--dashboard-host", "127.0.0.1", "--disable-usage-stats", *flags]
    started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    head = Head(folder, ports, {**base, **auth})
    if started.returncode != 0:
        stop_head(head)
        raise RuntimeError(f"ray start failed:\n{started.stdout[-2000:]}\n{started.stderr[-2000:]}")
    return head


def stop_head(head: Head, timeout_s: float = 5, keep_logs: bool = False) -> None:
    """SIGTERM every process of the head, SIGKILL what is left after `timeout_s`; its folder is
    removed unless `keep_logs` (a failed test's Ray logs)."""
    procs = head.processes()
    for signal_them in ("terminate", "kill"):
        for proc in procs:
            try:
                getattr(proc, signal_them)()
            except psutil.Error:
                pass
        deadline = time.time() + timeout_s
        while (procs := [p for p in procs if _running(p)]) and time.time() < deadline:
            time.sleep(0.2)
    if keep_logs:
        print(f"Ray's logs of this head are kept in {head.folder}/ray/session_latest/logs")
    else:
        shutil.rmtree(head.folder, ignore_errors=True)


class ServeProcess:
    """`rayalign serve ARGS` as a user runs it, in a session of its own, its output collected."""

    def __init__(self, args: list[str], env: dict, cwd: Path):
        self.args, self.env, self.cwd = args, env, cwd
        self.process: subprocess.Popen | None = None
        self.lines: list[str] = []

    def start(self, timeout_s: float = 420) -> None:
        """Start it and return once it says it is ready."""
        self.lines = []
        self.process = subprocess.Popen([sys.executable, "-m", "rayalign.cli", "serve", *self.args], cwd=self.cwd,
                                        env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while not any(line.startswith("[serve] ready") for line in self.lines):
            assert self.process.poll() is None and time.monotonic() < deadline, self.tail()
            time.sleep(1)

    def tail(self) -> str:
        """The error lines it printed (a deployment's exception is far above its last lines) and its last 40."""
        errors = [line for line in self.lines if "Error" in line or "Traceback" in line]
        return "".join([*errors[-20:], "...\n", *self.lines[-40:]])

    def stop(self, timeout_s: float = 120) -> None:
        """Ctrl-C (the app is deleted, its engines' segments removed); SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def _running(proc: psutil.Process) -> bool:
    """Alive and not a zombie (a daemon whose parent exited may never be reaped here)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
