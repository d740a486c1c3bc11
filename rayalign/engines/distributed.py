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


def init_process_group(
    rank: int = 0,
    world_size: int = 1,
    master_addr: str = "127.0.0.1",
    master_port: int = 29500,
    backend: str = "auto",
    local_rank: int = 0,
    timeout_s: float = 600.0,
) -> str:
    """Set the launcher variables and initialise DeepSpeed's comm layer. Returns the backend."""
    import deepspeed

    backend = default_backend() if backend == "auto" else backend
    for key, value in dict(RANK=rank, WORLD_SIZE=world_size, LOCAL_RANK=local_rank,
                           MASTER_ADDR=master_addr, MASTER_PORT=master_port).items():
        os.environ.setdefault(key, str(value))
    if backend == "gloo":
        _skip_shm_build()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False, verbose=False,
                               timeout=timedelta(seconds=timeout_s))
    return backend


def close_process_group() -> None:
    """Leave cleanly: without the barrier a 2-process gloo group crashes at exit."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
