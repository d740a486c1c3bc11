"""Score a JSONL/Parquet file with a trained reward model, offline: rows in, rows + rewards out.

Prompt-completion rows get `reward`; conversational rows are scored on their last
assistant turn; preference rows get `reward_chosen` and `reward_rejected`.
"""

from __future__ import annotations

import json

from rayalign.data.formats import CONVERSATIONAL, PREFERENCE, PROMPT_COMPLETION, load_examples
from rayalign.data.preference import split_pair
from rayalign.rewards.reward_model import RewardModelScorer


def score_file(model: str, data: str, out, max_length: int = 1024, batch_size: int = 8,
               normalise: bool = True) -> int:
    fmt, rows = load_examples(data, (PROMPT_COMPLETION, CONVERSATIONAL, PREFERENCE))
    scorer = RewardModelScorer(model, max_length, batch_size, normalise)
    jobs = []  # (row index, output field, encoded)
    for index, row in enumerate(rows):
        fields = row.fields
        if fmt == PREFERENCE:
            prompt, chosen, rejected = split_pair(row)
            jobs += [(index, "reward_chosen", scorer.encode(row, prompt, chosen)),
                     (index, "reward_rejected", scorer.encode(row, prompt, rejected))]
        elif fmt == CONVERSATIONAL:
            messages = fields["messages"]
            last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
            jobs.append((index, "reward", scorer.encode(row, messages[:last], messages[last:last + 1])))
        else:
            jobs.append((index, "reward", scorer.encode(row, fields["prompt"], fields["completion"])))
    scores = scorer.score_encoded([job[2] for job in jobs], progress=True)
    results = [dict(row.fields) for row in rows]
    for (index, field, _), score in zip(jobs, scores):
        results[index][field] = score
    for result in results:
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
    return len(results)
