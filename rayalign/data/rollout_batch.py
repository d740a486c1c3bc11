"""A step's rollouts as tensors that stay in Ray's object store: the RL loop's data path.

A rollout worker turns its share of a step into a `RolloutPart` (ragged token tensors, the
engine's log-probs, the decoded texts) and hands the controller only each sample's lengths
and whether it finished. Every per-row quantity of a step (the parts; the per-token fields
the forward passes compute; the advantages) is a list of *blocks*, each covering consecutive
global rows. Workers receive the blocks (Ray fetches them from the object store) with a
`StepLayout` saying where each block starts, and build their own micro-batches.

The micro-batch layout (what `StepRows.collate` builds and workers/rl_objectives.py reads):

    input_ids      [B, P+R]  prompt left-padded to P columns, response right-padded to R
    attention_mask [B, P+R]  1 on real tokens
    position_ids   [B, P+R]  0 at each row's first real token (as the rollout engine counts)
    response_mask  [B, R]    1 on response tokens
    <field>        [B, R]    per-token values (old_logprobs, advantages, returns, ...), 0 on padding
    normaliser     float     the token count a loss divides by

With the layout's `share_prompts`, a micro-batch whose rows repeat a prompt also carries each
distinct prompt once, for a forward that runs it once (workers/rl_objectives.py):

    prompt_ids     [U, P]    the distinct prompts, left-padded to P columns
    prompt_mask    [U, P]    1 on real tokens
    prompt_rows    [B]       which of them each row answers
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch

from rayalign.data.rollouts import Sample

PART = "part"                       # the blocks of rollout parts
BEHAVIOUR = "behaviour_logprobs"    # a field read from the parts: the engine's own log-probs


def _ragged(rows: list[list]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([0] + [len(row) for row in rows])
    return torch.tensor([value for row in rows for value in row]), lengths.cumsum(0)


@dataclass
class RolloutPart:
    """One rollout worker's samples of a step, rows in order (n per prompt, prompt by prompt)."""

    prompt_ids: torch.Tensor        # flat
    prompt_offsets: torch.Tensor    # [rows + 1]
    response_ids: torch.Tensor      # flat
    response_offsets: torch.Tensor  # [rows + 1]
    logprobs: torch.Tensor          # flat, one per response token
    finished: list[bool]
    texts: list[str]

    @classmethod
    def from_samples(cls, samples: list[Sample], texts: list[str]) -> RolloutPart:
        prompts, prompt_offsets = _ragged([s.prompt_ids for s in samples])
        responses, response_offsets = _ragged([s.response_ids for s in samples])
        logprobs, _ = _ragged([s.logprobs for s in samples])
        return cls(prompts.long(), prompt_offsets, responses.long(), response_offsets, logprobs.float(),
                   [s.finished for s in samples], texts)

    def __len__(self) -> int:
        return len(self.finished)

    def prompt(self, row: int) -> torch.Tensor:
        return self.prompt_ids[self.prompt_offsets[row]:self.prompt_offsets[row + 1]]

    def response(self, row: int) -> torch.Tensor:
        return self.response_ids[self.response_offsets[row]:self.response_offsets[row + 1]]

    def behaviour(self, row: int) -> torch.Tensor:
        return self.logprobs[self.response_offsets[row]:self.response_offsets[row + 1]]

    def summary(self) -> dict[str, list]:
        """What the controller keeps of a part: per sample, its lengths and whether it finished."""
        return {"prompt_lengths": self.prompt_offsets.diff().tolist(),
                "response_lengths": self.response_offsets.diff().tolist(), "finished": list(self.finished)}


@dataclass
class StepLayout:
    width: int                       # the step's longest response: per-token blocks are [rows, width]
    pad_id: int
    starts: dict[str, list[int]]     # per source, the global first row of each block, in passing order
    share_prompts: bool = False      # collate each distinct prompt once as well (see above)

    def blocks_of(self, refs: dict[str, list]) -> list:
        """The blocks to pass, in the order `StepRows` reads them back."""
        return [ref for name in self.starts for ref in refs[name]]


@dataclass
class StepData:
    """The controller's hold on a step: references to blocks, never the blocks themselves."""

    width: int
    pad_id: int
    starts: dict[str, list[int]]
    refs: dict[str, list]

    @classmethod
    def of_parts(cls, parts: list, sizes: list[int], width: int, pad_id: int) -> StepData:
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return cls(max(width, 1), pad_id, {PART: starts}, {PART: list(parts)})

    def add(self, name: str, starts: list[int], refs: list) -> None:
        self.starts[name], self.refs[name] = starts, refs

    def for_workers(self, fields: tuple[str, ...] = (), share_prompts: bool = False) -> tuple[StepLayout, list]:
        """The layout and blocks a worker needs to collate these fields (the parts always)."""
        names = [PART, *[name for name in fields if name != BEHAVIOUR]]
        layout = StepLayout(self.width, self.pad_id, {name: self.starts[name] for name in names}, share_prompts)
        return layout, layout.blocks_of(self.refs)


class StepRows:
    """Global rows over the blocks a worker was given (in `StepLayout.blocks_of` order)."""

    def __init__(self, layout: StepLayout, blocks: tuple):
        self.layout, self.sources, position = layout, {}, 0
        for name, starts in layout.starts.items():
            self.sources[name] = (starts, blocks[position:position + len(starts)])
            position += len(starts)

    def _locate(self, name: str, row: int):
        starts, blocks = self.sources[name]
        index = bisect.bisect_right(starts, row) - 1
        return blocks[index], row - starts[index]

    def field_row(self, name: str, row: int, length: int) -> torch.Tensor:
        if name == BEHAVIOUR:
            part, local = self._locate(PART, row)
            return part.behaviour(local)
        block, local = self._locate(name, row)
        return block[local, :length]

    def collate(self, rows: list[int], fields: tuple[str, ...] = (), normaliser: float | None = None) -> dict:
        """One micro-batch of these global rows in the layout above."""
        pad = self.layout.pad_id
        located = [self._locate(PART, row) for row in rows]
        prompts = [part.prompt(local) for part, local in located]
        responses = [part.response(local) for part, local in located]
        prompt_width = max(len(p) for p in prompts)
        width = max(max(len(r) for r in responses), 1)
        ids = torch.full((len(rows), prompt_width + width), pad, dtype=torch.long)
        attention = torch.zeros_like(ids)
        response_mask = torch.zeros(len(rows), width)
        per_token = {name: torch.zeros(len(rows), width) for name in fields}
        for i, (row, prompt, response) in enumerate(zip(rows, prompts, responses)):
            start, end = prompt_width - len(prompt), prompt_width + len(response)
            ids[i, start:prompt_width], ids[i, prompt_width:end] = prompt, response
            attention[i, start:end] = 1
            response_mask[i, :len(response)] = 1.0
            for name in fields:
                per_token[name][i, :len(response)] = self.field_row(name, row, len(response))
        batch = {"input_ids": ids, "attention_mask": attention,
                 "position_ids": (attention.cumsum(-1) - 1).clamp(min=0), "response_mask": response_mask,
                 **per_token,
                 "normaliser": float(normaliser if normaliser is not None else response_mask.sum().clamp(min=1))}
        if self.layout.share_prompts:
            batch.update(_distinct_prompts(prompts, ids[:, :prompt_width], attention[:, :prompt_width]))
        return batch


def _distinct_prompts(prompts: list[torch.Tensor], padded: torch.Tensor, mask: torch.Tensor) -> dict:
    """Each distinct prompt of a micro-batch once (from its rows' `padded` prompts and `mask`)
    and which one each row answers; nothing when every row's prompt differs (sharing would save
    nothing)."""
    index: dict[bytes, int] = {}
    rows = [index.setdefault(prompt.numpy().tobytes(), len(index)) for prompt in prompts]
    if len(index) == len(rows):
        return {}
    first = torch.tensor([rows.index(u) for u in range(len(index))])
    return {"prompt_ids": padded[first], "prompt_mask": mask[first], "prompt_rows": torch.tensor(rows)}


def rows_to_block(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    """Per-token rows, right-padded with 0 to `width` columns: one block."""
    block = torch.zeros(len(rows), width)
    for i, row in enumerate(rows):
        block[i, :len(row)] = row
    return block
