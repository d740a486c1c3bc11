"""Preference pairs: find the shared prompt, encode chosen and rejected, batch them.

Accepts the shapes users bring (TRL's names):
- explicit prompt: {"prompt", "chosen", "rejected"}, all strings or with message lists;
- implicit prompt: {"chosen", "rejected"} holding whole transcripts, e.g. HH-RLHF's
  "\\n\\nHuman: ... \\n\\nAssistant: ..." strings or full message lists; the shared beginning
  is the prompt;
- UltraFeedback-binarized: a string `prompt` with `chosen`/`rejected` message lists that
  repeat the user turn.
A graded margin comes from a `margin` field, or `score_chosen - score_rejected`; a soft label
(RLAIF: a labeler's probability, in [0, 1], that chosen is better; 0.5 a tie) from `soft_label`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from rayalign.data.batching import collate
from rayalign.data.encode import Encoded, encode_segments, prompt_completion_segments
from rayalign.data.readers import Row

ASSISTANT_MARKER = "Assistant:"


@dataclass
class PairExample:
    chosen: Encoded
    rejected: Encoded
    margin: float | None = None
    target: float | None = None              # soft label: probability that chosen wins (None: it does)
    reference_chosen: float | None = None    # sequence log-probabilities under the reference (DPO)
    reference_rejected: float | None = None


def _as_messages(prompt) -> list[dict]:
    if prompt is None:
        return []
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]


def _split_messages(row: Row, prompt, chosen: list, rejected: list) -> tuple[list, list, list]:
    head = _as_messages(prompt)
    whole_chosen = chosen if chosen[: len(head)] == head else head + chosen
    whole_rejected = rejected if rejected[: len(head)] == head else head + rejected
    shared = 0
    while (shared < min(len(whole_chosen), len(whole_rejected))
           and whole_chosen[shared] == whole_rejected[shared]):
        shared += 1
    if shared == len(whole_chosen) or shared == len(whole_rejected):
        raise row.error("rejected", "one answer is a prefix of the other; nothing to compare")
    for side, whole in (("chosen", whole_chosen), ("rejected", whole_rejected)):
        if whole[shared]["role"] != "assistant":
            raise row.error(side, f"the answers differ at a {whole[shared]['role']} message; "
                            "they must differ from an assistant turn on")
    return whole_chosen[:shared], whole_chosen[shared:], whole_rejected[shared:]


def _split_text(row: Row, prompt: str | None, chosen: str, rejected: str) -> tuple[str, str, str]:
    if prompt is None:
        shared = os.path.commonprefix([chosen, rejected])
        marker = shared.rfind(ASSISTANT_MARKER)
        cut = marker + len(ASSISTANT_MARKER) if marker >= 0 else max(shared.rfind(" ") + 1, 0)
        prompt = shared[:cut]
    elif not (chosen.startswith(prompt) and rejected.startswith(prompt)):
        return prompt, chosen, rejected  # completions only; else transcripts repeating the prompt
    chosen, rejected = chosen[len(prompt):], rejected[len(prompt):]
    if not chosen.strip() or not rejected.strip():
        raise row.error("rejected" if chosen.strip() else "chosen", "empty once the shared prompt is removed")
    return prompt, chosen, rejected


def split_pair(row: Row) -> tuple:
    """(prompt, chosen completion, rejected completion): message lists or strings."""
    fields = row.fields
    if isinstance(fields["chosen"], list):
        return _split_messages(row, fields.get("prompt"), fields["chosen"], fields["rejected"])
    if isinstance(fields.get("prompt"), list):
        raise row.error("prompt", "a message-list prompt needs message-list chosen/rejected")
    return _split_text(row, fields.get("prompt"), fields["chosen"], fields["rejected"])


def _number(row: Row, field: str) -> float:
    value = row.fields[field]
    try:  # an integer too large for a float is no usable number either
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:
        number = math.nan
    if not math.isfinite(number):
        shown = f"an integer of {len(str(value))} digits" if isinstance(value, int) and abs(value) > 10 ** 20 else repr(value)
        raise row.error(field, f"expected a number, got {shown}")
    return number


def pair_margin(row: Row) -> float:
    """The graded margin: `margin`, else `score_chosen - score_rejected` (nulls count as absent)."""
    fields = row.fields
    if fields.get("margin") is not None:
        return _number(row, "margin")
    if fields.get("score_chosen") is not None and fields.get("score_rejected") is not None:
        return _number(row, "score_chosen") - _number(row, "score_rejected")
    raise row.error("margin", "rm.margin is on, but the row has no `margin` nor `score_chosen`/`score_rejected`")


def pair_target(row: Row) -> float:
    """The soft label: the probability that `chosen` is better than `rejected`."""
    target = _number(row, "soft_label")
    if not 0.0 <= target <= 1.0:
        raise row.error("soft_label", f"expected a probability in [0, 1], got {target!r}")
    return target


def uses_soft_labels(rows: list[Row], mode: str) -> bool:
    """Whether to train on the rows' `soft_label` (null counts as absent). Modes: `off` ignores
    it; `on` requires it on every row; `auto` uses it when every row has one, and refuses a
    file where only some rows do."""
    if mode == "off":
        return False
    labelled = [row.fields.get("soft_label") is not None for row in rows]
    if all(labelled):
        return True
    if mode == "auto" and not any(labelled):
        return False
    lacking = rows[labelled.index(False)]
    if mode == "on":
        raise lacking.error("soft_label", "rm.soft_labels is on, but the row has no `soft_label`")
    raise lacking.error("soft_label", f"missing, but line {rows[labelled.index(True)].line} has one; "
                        "give every row a soft label, or set rm.soft_labels=off")


def encode_pair(row: Row, tokenizer, max_length: int, with_margin: bool = False,
                with_target: bool = False) -> PairExample:
    prompt, chosen, rejected = split_pair(row)
    return PairExample(
        encode_segments(row, prompt_completion_segments(row, tokenizer, prompt, chosen), tokenizer, max_length),
        encode_segments(row, prompt_completion_segments(row, tokenizer, prompt, rejected), tokenizer, max_length),
        pair_margin(row) if with_margin else None,
        pair_target(row) if with_target else None,
    )


def load_pairs(path: str, tokenizer, max_length: int, with_margin: bool = False,
               soft_labels: str = "off") -> list[PairExample]:
    """Encode a preference file; `soft_labels` is the mode of `uses_soft_labels`."""
    from rayalign.data.formats import PREFERENCE, load_examples

    _, rows = load_examples(path, (PREFERENCE,))
    with_target = uses_soft_labels(rows, soft_labels)
    return [encode_pair(row, tokenizer, max_length, with_margin, with_target) for row in rows]


def pair_tokens(pair: PairExample) -> int:
    return len(pair.chosen.input_ids) + len(pair.rejected.input_ids)


def collate_pairs(pairs: list[PairExample], pad_id: int) -> dict[str, torch.Tensor]:
    """One batch of 2B rows: the B chosen sequences, then the B rejected ones."""
    batch = collate([p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id)
    if pairs[0].margin is not None:
        batch["margin"] = torch.tensor([p.margin for p in pairs], dtype=torch.float32)
    if pairs[0].target is not None:
        batch["target"] = torch.tensor([p.target for p in pairs], dtype=torch.float32)
    if pairs[0].reference_chosen is not None:
        batch["reference_chosen"] = torch.tensor([p.reference_chosen for p in pairs], dtype=torch.float32)
        batch["reference_rejected"] = torch.tensor([p.reference_rejected for p in pairs], dtype=torch.float32)
    return batch
