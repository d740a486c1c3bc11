"""Weights as a folder's files in memory (`{filename: bytes}`): how the object-store sync carries
them, and how an engine that received an adapter tensor by tensor hands it to its LoRA loader."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

WEIGHTS_FILE = "model.safetensors"
ADAPTER_FILE = "adapter_model.safetensors"


def write_payload(payload: dict[str, bytes]) -> str:
    """Write a folder's files into a fresh temporary folder (in /dev/shm when it exists)."""
    folder = tempfile.mkdtemp(prefix="rayalign-weights-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    for name, data in payload.items():
        (Path(folder) / name).write_bytes(data)
    return folder


def adapter_payload(tensors, config_json: str) -> dict[str, bytes]:
    """A peft adapter folder's files in memory, from received `(name, tensor)` pairs and its config."""
    from safetensors.torch import save

    return {ADAPTER_FILE: save({name: tensor.contiguous() for name, tensor in tensors}),
            "adapter_config.json": config_json.encode()}
