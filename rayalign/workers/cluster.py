"""Connect to the Ray cluster a run should use, or start a local one bound to 127.0.0.1.

A local cluster listens on loopback only: Ray binds its GCS, raylet, agents and workers to
all interfaces unless the node's address is loopback, and it turns an explicit 127.0.0.1
into the machine's external address unless `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER` is 0 when
`ray` is imported (read once, into `ray._private.ray_constants.ENABLE_RAY_CLUSTER`). We set
both, and check the node's address after start. `RAYALIGN_RAY_HOST=ADDRESS` binds the local
cluster there instead (reachable from other machines); Ray's token auth then must stay on.

A local cluster ends with `shutdown()` (at the latest at exit): `ray.shutdown()`, then every
process of that cluster still there (the processes Ray started for it, their descendants, and
any naming its session folder) is terminated, then killed, within a bound (`kill_local()`
kills them at once, for a shutdown that hangs).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import time

import psutil
import ray

from rayalign.config import ConfigError

LOOPBACK = "127.0.0.1"
HOST_ENV = "RAYALIGN_RAY_HOST"

_local: dict | None = None  # the local cluster this process started: its session folder, its processes by PID


def local_host() -> str:
    """The address a local cluster binds: 127.0.0.1 unless RAYALIGN_RAY_HOST says otherwise."""
    return os.environ.get(HOST_ENV, "").strip() or LOOPBACK


def _is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")


def connect(address: str | None = None, num_cpus: int | None = None) -> None:
    """`address` (or RAY_ADDRESS) names a cluster ("local": always a new local one);
    otherwise join one started on this machine with `ray start`, or start a local cluster
    that listens on loopback only (RAYALIGN_RAY_HOST: elsewhere)."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    quiet = dict(logging_level="WARNING", log_to_driver=True)
    if address and address != "local":
        ray.init(address=address, **quiet)
        return
    if not address:
        try:
            ray.init(address="auto", **quiet)
            return
        except ConnectionError:
            pass
    host = local_host()
    if _is_loopback(host):
        # Children (agents, workers) read the variable at their import; this process read it already.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        ray._private.ray_constants.ENABLE_RAY_CLUSTER = False
        host = LOOPBACK
    elif os.environ.get("RAY_AUTH_MODE", "token").lower() == "disabled":
        raise ConfigError(f"{HOST_ENV}={host} makes the local Ray cluster reachable from other machines: "
                         "keep Ray's token auth on (unset RAY_AUTH_MODE=disabled)")
    else:
        os.environ["RAY_AUTH_MODE"] = "token"
    # Ray starts its workers at nice 15; in a local run the workers are the job, so they
    # keep the driver's priority (measured: at 15 they starved behind other processes).
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address=host, **quiet)
    node = ray._private.worker.global_worker.node
    _remember_local(node)
    if host == LOOPBACK and node.node_ip_address != LOOPBACK:
        shutdown()
        raise RuntimeError(f"the local Ray cluster came up on {node.node_ip_address}, not {LOOPBACK}: this Ray "
                           "version binds differently; refusing to run a cluster reachable from other machines")


def _remember_local(node) -> None:
    global _local
    started = {}
    for info in (info for infos in node.all_processes.values() for info in infos):
        with contextlib.suppress(psutil.Error):
            started[info.process.pid] = psutil.Process(info.process.pid)
    _local = {"session_dir": node.get_session_dir_path(), "procs": started}
    atexit.register(shutdown)  # after ray's own atexit hook is registered, so this one runs first


def local_processes() -> list[psutil.Process]:
    """Every process of the local cluster this process started (none if it joined one): the
    ones Ray started for it (GCS, raylet, agents...), those seen before, any naming its session
    folder (a worker whose parent is gone), and all their descendants (workers, replicas, engines)."""
    if _local is None:
        return []
    found = {}
    for pid, proc in _local["procs"].items():
        with contextlib.suppress(psutil.Error):
            if proc.is_running():  # the same process (start time checked), not a reused PID
                found[pid] = proc
                found.update({c.pid: c for c in proc.children(recursive=True)})
    session = _local["session_dir"]
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if proc.pid not in found and any(session in arg for arg in proc.info["cmdline"] or []):
                found[proc.pid] = proc
                found.update({c.pid: c for c in proc.children(recursive=True)})
    found.pop(os.getpid(), None)
    return list(found.values())


def shutdown(timeout_s: float = 10.0) -> list[int]:
    """End the Ray connection; if this process started the cluster, make sure none of its
    processes is left: SIGTERM what `ray.shutdown()` left, SIGKILL what is left `timeout_s`
    later. The PIDs that had to be signalled."""
    global _local
    if _local is not None:
        _local["procs"].update({p.pid: p for p in local_processes()})
    with contextlib.suppress(Exception):
        ray.shutdown()
    if _local is None:
        return []
    left = [p for p in local_processes() if _running(p)]
    signalled = [p.pid for p in left]
    for how in ("terminate", "kill"):
        for proc in left:
            with contextlib.suppress(psutil.Error):
                getattr(proc, how)()
        deadline = time.monotonic() + timeout_s
        while (left := [p for p in left if _running(p)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not left:
            break
    _local = None
    return signalled


def kill_local() -> list[int]:
    """SIGKILL every process of the local cluster this process started, without asking Ray
    (for a shutdown that hangs); the PIDs killed."""
    procs = local_processes()
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return [p.pid for p in procs]


def _running(proc: psutil.Process) -> bool:
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            with contextlib.suppress(psutil.Error, ChildProcessError):
                os.waitpid(proc.pid, os.WNOHANG)  # our own child: reap it
            return False
        return True
    except psutil.Error:
        return False


@contextlib.contextmanager
def ray_session():
    """A Ray connection made inside ends on the way out (one made before stays). Ray holds
    back worker lines repeated across workers and prints them at shutdown: this way they
    come out while the caller still decides where output goes, not after it has returned.
    A local cluster started inside ends with it, none of its processes left."""
    connected = ray.is_initialized()
    try:
        yield
    finally:
        if not connected and ray.is_initialized():
            shutdown()
