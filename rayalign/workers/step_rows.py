"""What RL workers do with a step's blocks: forward passes over their share of the rows and
training micro-batches, collated on the worker from the object store (see
data/rollout_batch.py), so per-token data never passes through the controller."""

from __future__ import annotations

from typing import Callable

import torch

from rayalign.data.rollout_batch import StepLayout, StepRows, rows_to_block


def forward_rows(evaluate: Callable[[list[dict], str], list[dict]], objective: str, key: str,
                 batches: list[list[int]], keep: int, layout: StepLayout, blocks: tuple) -> torch.Tensor:
    """`key` of the named objective for every row of `batches`, as one [keep, width] block (the
    rows past `keep` are repeats that keep ZeRO-3 ranks in step)."""
    rows = StepRows(layout, blocks)
    stats = evaluate([rows.collate(batch) for batch in batches], objective)
    values = [torch.tensor(row) for batch in stats for row in batch[key]]
    return rows_to_block(values[:keep], layout.width)


def training_batches(batches: list[list[int]], normaliser: float, fields: tuple[str, ...], layout: StepLayout,
                     blocks: tuple) -> list[dict]:
    rows = StepRows(layout, blocks)
    return [rows.collate(batch, fields, normaliser) for batch in batches]
