"""Collective weight sync: trainer rank 0 broadcasts weights to every rollout engine's worker.

The process group is built directly from a TCPStore (gloo on CPU, NCCL on GPU), so it is
separate from DeepSpeed's default group on the trainers and from vLLM's own
torch.distributed state on the engines. Rank 0 is the trainer; ranks 1.. the engines.

Both sides know the manifest, the list of `(name, dtype, shape)` the trainer sends, and cut
it into the same buckets (`plan_buckets`): the sender fills a bucket tensor by tensor and
broadcasts it when it is full; a receiver gets bucket after bucket and hands each bucket's
tensors on as it arrives. Memory on either side stays within one bucket (or one tensor,
if a tensor is larger than a bucket). Every broadcast has the group's timeout; a failed
or timed-out broadcast is an error naming the side, the bucket and its first tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator

import torch

ALIGN = 64  # bytes: every tensor starts aligned inside its bucket


def backend_for(on_gpu: bool) -> str:
    return "nccl" if on_gpu else "gloo"


def join_weight_group(address: str, port: int, rank: int, world_size: int, backend: str, timeout_s: float,
                      store=None):
    """Join the weight-sync group (blocks until all `world_size` ranks have joined).
    Rank 0 passes the store it opened (engines/distributed.py open_store)."""
    import torch.distributed as dist

    timeout = timedelta(seconds=timeout_s)
    if store is None:
        store = dist.TCPStore(address, port, world_size, is_master=False, timeout=timeout)
    if backend == "gloo":
        return dist.ProcessGroupGloo(store, rank, world_size, timeout=timeout)
    if backend == "nccl":
        options = dist.ProcessGroupNCCL.Options()
        options._timeout = timeout
        return dist.ProcessGroupNCCL(store, rank, world_size, options)
    raise ValueError(f"weight sync backend {backend!r}: choose gloo (CPU) or nccl (GPU)")


@dataclass
class Slot:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int      # bytes from the bucket's start

    @property
    def nbytes(self) -> int:
        return torch.Size(self.shape).numel() * self.dtype.itemsize


@dataclass
class Bucket:
    slots: list[Slot]
    nbytes: int


def plan_buckets(manifest: list[tuple[str, str, tuple[int, ...]]], bucket_bytes: int) -> list[Bucket]:
    """The manifest in order, cut into buckets of at most `bucket_bytes` (a larger tensor goes alone)."""
    buckets, slots, used = [], [], 0
    for name, dtype, shape in manifest:
        slot = Slot(name, getattr(torch, dtype), tuple(shape), 0)
        start = -(-used // ALIGN) * ALIGN
        if slots and start + slot.nbytes > bucket_bytes:
            buckets.append(Bucket(slots, used))
            slots, start = [], 0
        slot.offset = start
        slots.append(slot)
        used = start + slot.nbytes
    if slots:
        buckets.append(Bucket(slots, used))
    return buckets


def _view(buffer: torch.Tensor, slot: Slot) -> torch.Tensor:
    return buffer[slot.offset: slot.offset + slot.nbytes].view(slot.dtype).view(slot.shape)


def _broadcast(group, buffer: torch.Tensor, side: str, index: int, buckets: list[Bucket]) -> None:
    bucket = buckets[index]
    try:
        group.broadcast(buffer, 0).wait()
    except Exception as exc:  # noqa: BLE001 - any transport failure becomes one named error
        raise RuntimeError(f"weight sync ({side}): broadcast of bucket {index + 1}/{len(buckets)} "
                           f"({bucket.nbytes / 2**20:.1f} MiB, from {bucket.slots[0].name}) failed: "
                           f"{type(exc).__name__}: {exc}") from exc


class BucketSender:
    """Rank 0's side: `add` the manifest's tensors in order; each full bucket goes out."""

    def __init__(self, group, manifest: list, bucket_bytes: int, device):
        self.group, self.device = group, device
        self.buckets = plan_buckets(manifest, bucket_bytes)
        self.index = self.slot = 0
        self.buffer = None

    def add(self, tensor: torch.Tensor) -> None:
        bucket = self.buckets[self.index]
        slot = bucket.slots[self.slot]
        if tuple(tensor.shape) != slot.shape:
            raise ValueError(f"weight sync: {slot.name} has shape {tuple(tensor.shape)}, the manifest says "
                             f"{slot.shape}")
        if self.buffer is None:
            self.buffer = torch.empty(bucket.nbytes, dtype=torch.uint8, device=self.device)
        _view(self.buffer, slot).copy_(tensor)   # casts to the engine's dtype
        self.slot += 1
        if self.slot == len(bucket.slots):
            _broadcast(self.group, self.buffer, "trainer rank 0 sending", self.index, self.buckets)
            self.index, self.slot, self.buffer = self.index + 1, 0, None

    def finish(self) -> int:
        """Check that the whole manifest went out; returns the buckets sent."""
        if self.index != len(self.buckets):
            raise RuntimeError(f"weight sync: sent {self.index} of {len(self.buckets)} buckets")
        return self.index


def receive_buckets(group, manifest: list, bucket_bytes: int, device, rank: int) -> Iterator[tuple[str, torch.Tensor]]:
    """An engine worker's side: `(name, tensor)` for the whole manifest, bucket after bucket
    (each bucket's tensors are handed on as soon as it has arrived; every bucket is a fresh buffer)."""
    buckets = plan_buckets(manifest, bucket_bytes)
    for index, bucket in enumerate(buckets):
        buffer = torch.empty(bucket.nbytes, dtype=torch.uint8, device=device)
        _broadcast(group, buffer, f"engine rank {rank} receiving", index, buckets)
        for slot in bucket.slots:
            yield slot.name, _view(buffer, slot)
