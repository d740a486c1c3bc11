"""Pad encoded examples into tensors and lay out an epoch's order deterministically."""

from __future__ import annotations

import torch

from rayalign.data.encode import Encoded

from rayalign.algorithms.sft import IGNORE_INDEX


def collate(examples: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example: input_ids, attention_mask, labels (-100 = no loss)."""
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for i, example in enumerate(examples):
        n = len(example.input_ids)
        input_ids[i, :n] = torch.tensor(example.input_ids)
        attention[i, :n] = 1
        labels[i, :n] = torch.where(torch.tensor(example.loss_mask, dtype=torch.bool),
                                    torch.tensor(example.input_ids), IGNORE_INDEX)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of n examples in a given epoch; the same for the same inputs."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


def sample_indices(n: int, seed: int, start: int, count: int) -> list[int]:
    """Indices of the `count` samples after `start` samples seen, over as many epochs as needed."""
    indices = []
    position = start
    while len(indices) < count:
        epoch, offset = divmod(position, n)
        order = epoch_order(n, seed, epoch)
        take = min(count - len(indices), n - offset)
        indices += order[offset : offset + take]
        position += take
    return indices
