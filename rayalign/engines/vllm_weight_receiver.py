"""The vLLM side of the collective weight sync, as a vLLM worker extension.

vLLM mixes `WeightReceiver` into its worker class (`LLM(worker_extension_cls=...)`); the
engine reaches it with `llm.collective_rpc("join_weight_group" | "receive_weights" |
"leave_weight_group")`, so the tensors arrive in the worker that holds the model, whether
the engine runs in-process or in worker processes. Received full or merged weights go
through the worker's public `reload_weights(weights_iterator=...)` (vLLM's layerwise
in-place reload, which redoes each layer's post-load processing) bucket by bucket as they
arrive; a received adapter is written as a peft folder in /dev/shm for `add_lora`.
"""

from __future__ import annotations

from rayalign.engines.weight_files import adapter_payload, write_payload
from rayalign.engines.weight_sync import join_weight_group, receive_buckets


class WeightReceiver:
    """Methods vLLM adds to its worker (`self` is the worker: `self.rank`, `self.device`,
    `self.reload_weights`)."""

    def join_weight_group(self, address: str, port: int, first_rank: int, world_size: int, backend: str,
                          timeout_s: float) -> int:
        """Join the trainer's weight-sync group as rank `first_rank` + this worker's rank in its engine."""
        self.weight_group_rank = first_rank + self.rank
        self.weight_group = join_weight_group(address, port, self.weight_group_rank, world_size, backend, timeout_s)
        return self.weight_group_rank

    def receive_weights(self, manifest: dict, mode: str, bucket_bytes: int) -> str | None:
        """Receive one sync. Full or merged weights are reloaded in place (returns None);
        an adapter is written to a fresh folder (returns its path, for add_lora)."""
        received = receive_buckets(self.weight_group, manifest["tensors"], bucket_bytes, self.device,
                                   self.weight_group_rank)
        if mode == "adapter":
            return write_payload(adapter_payload(received, manifest["adapter_config"]))
        self.reload_weights(weights_iterator=received, is_checkpoint_format=True)
        return None

    def leave_weight_group(self) -> None:
        self.weight_group = None
