"""Join a torch.distributed process group the way DeepSpeed expects, on CPU (gloo) or GPU (nccl).

Works under a launcher (torchrun sets the variables), inside a Ray actor (the group
passes rank and address), or alone (world size 1).
"""

from __future__ import annotations

import importlib
import os
import sys
from datetime import timedelta

import torch


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def _skip_shm_build() -> None:
    """DeepSpeed builds a shared-memory comm op on CPU at first use (20-30 s); gloo does not need it."""
    importlib.import_module("deepspeed.comm.torch")
    sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None


def open_store(host: str, world_size: int, timeout_s: float = 600.0):
    """Rank 0's rendezvous store on a port the OS picks (no probe-then-bind race).
    Keep the returned store alive and pass it to `init_process_group`; others get its port."""
    import torch.distributed as dist

    return dist.TCPStore(host, 0, world_size, is_master=True, timeout=timedelta(seconds=timeout_s),
                         wait_for_workers=False)


def init_process_group(
    rank: int = 0,
    world_size: int = 1,
    master_addr: str = "127.0.0.1",
    master_port: int = 0,
    backend: str = "auto",
    local_rank: int = 0,
    timeout_s: float = 600.0,
    store=None,
) -> str:
    """Join the group through rank 0's store (`store` on rank 0 itself), then hand the group
    to DeepSpeed's comm layer. Returns the backend."""
    import deepspeed
    import torch.distributed as dist

    backend = default_backend() if backend == "auto" else backend
    timeout = timedelta(seconds=timeout_s)
    if store is None:
        store = (open_store(master_addr, world_size, timeout_s) if rank == 0 else
                 dist.TCPStore(master_addr, master_port, world_size, is_master=False, timeout=timeout))
    for key, value in dict(RANK=rank, WORLD_SIZE=world_size, LOCAL_RANK=local_rank,
                           MASTER_ADDR=master_addr, MASTER_PORT=store.port).items():
        os.environ[key] = str(value)
    if backend == "gloo":
        _skip_shm_build()
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout)
    deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False, verbose=False, timeout=timeout)
    return backend


def close_process_group() -> None:
    """Leave cleanly: without the barrier a 2-process gloo group crashes at exit."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
