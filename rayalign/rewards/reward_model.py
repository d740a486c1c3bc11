"""A trained reward model as a reward source, normalised with the statistics saved beside it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from rayalign.data.batching import collate
from rayalign.data.encode import Encoded, encode_segments, prompt_completion_segments
from rayalign.data.readers import Row
from rayalign.models.loading import adapter_base, load_model, load_tokenizer
from rayalign.models.registry import resolve_model

REWARD_STATS = "reward_stats.json"


class RewardModelScorer:
    """Scores (prompt, completion) pairs; prompts and completions are strings or message lists."""

    def __init__(self, path: str, max_length: int = 1024, batch_size: int = 8, normalise: bool = True):
        folder = resolve_model(path)
        self.model = load_model(folder, head="reward").eval()
        self.tokenizer = load_tokenizer(adapter_base(folder) or folder)
        self.max_length, self.batch_size = max_length, batch_size
        stats_file = Path(folder) / REWARD_STATS
        self.stats = json.loads(stats_file.read_text()) if stats_file.is_file() else None
        self.normalise = normalise and self.stats is not None

    def encode(self, row: Row, prompt, completion) -> Encoded:
        segments = prompt_completion_segments(row, self.tokenizer, prompt, completion)
        return encode_segments(row, segments, self.tokenizer, self.max_length)

    @torch.no_grad()
    def score_encoded(self, examples: list[Encoded], progress: bool = False) -> list[float]:
        scores: list[float] = []
        starts = range(0, len(examples), self.batch_size)
        for start in tqdm(starts, desc="score", file=sys.stderr, disable=not progress or len(starts) < 2):
            batch = collate(examples[start: start + self.batch_size], self.tokenizer.pad_token_id)
            logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            scores += logits.squeeze(-1).float().tolist()
        if self.normalise:
            scores = [(s - self.stats["mean"]) / max(self.stats["std"], 1e-6) for s in scores]
        return scores

    def __call__(self, prompts: list, completions: list, metadata: list[dict] | None = None) -> list[float]:
        """A completion string answering a chat prompt is scored as the assistant's turn."""
        rows = [Row("<reward input>", i + 1, {}) for i in range(len(prompts))]
        completions = [[{"role": "assistant", "content": c}] if isinstance(p, list) and isinstance(c, str) else c
                       for p, c in zip(prompts, completions)]
        return self.score_encoded([self.encode(r, p, c) for r, p, c in zip(rows, prompts, completions)])
