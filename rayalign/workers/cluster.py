"""Connect to the Ray cluster a run should use, or start a local one bound to 127.0.0.1."""

from __future__ import annotations

import contextlib
import os

import ray


def connect(address: str | None = None, num_cpus: int | None = None) -> None:
    """`address` (or RAY_ADDRESS) names a cluster ("local": always a new local one);
    otherwise join one started on this machine with `ray start`, or start a local cluster
    that listens on loopback only."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every listener on 127.0.0.1
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
    # Ray starts its workers at nice 15; in a local run the workers are the job, so they
    # keep the driver's priority (measured: at 15 they starved behind other processes).
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)


@contextlib.contextmanager
def ray_session():
    """A Ray connection made inside ends on the way out (one made before stays). Ray holds
    back worker lines repeated across workers and prints them at shutdown: this way they
    come out while the caller still decides where output goes, not after it has returned."""
    connected = ray.is_initialized()
    try:
        yield
    finally:
        if not connected and ray.is_initialized():
            ray.shutdown()
