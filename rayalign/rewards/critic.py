"""The AI critic as a reward source (direct RLAIF): a model rates each answer from 1 to 10.

The critic reads the rubric, the conversation and the answer, and its reply is prefilled
with "Score:"; the score is the probability-weighted mean over the score tokens at the next
non-blank position (not the argmax), rescaled from [1, 10] to [-1, 1]. For a tokenizer that
writes 10 as "1" "0", a second short request after "Score: 1" gives P("0" | "1"), which
splits the mass of "1" between 1 and 10. With `rationale`, a one-line rationale comes first.

The model runs in the reward worker's own process (`path`: a built-in name, folder or run
folder; engine vllm or hf) or behind an OpenAI-compatible endpoint (`url` + `served_model`).
An answer whose score cannot be read gets None (counted in `none_count`, reads as 0).
The conversation and the answer are shown fenced (rayalign.rewards.fence).
"""

from __future__ import annotations

import math

from rayalign.algorithms.ai_feedback import expected_score, read_position, to_unit_interval
from rayalign.rewards.feedback import RATIONALE, EndpointFeedback, LocalFeedback, replies_at
from rayalign.rewards.fence import fence_id, fenced
from rayalign.rewards.judge import REMINDER, SYSTEM, completion_text, fenced_conversation
from rayalign.rewards.values import RewardError, to_rewards

DEFAULT_RUBRIC = ("A good answer does exactly what the user asked: it is correct, it answers the question that "
                  "was asked, and it follows every instruction about format and length.")
SCORE = "Score:"


def critic_messages(rubric: str, prompt, completion, rationale: bool, id_: str | None = None) -> list[dict]:
    """The critic's chat; `id_` is the tags' id (by default `fence_id` of what is judged)."""
    id_ = id_ or fence_id(prompt, completion)
    how = (f'First write one line "{RATIONALE} <one sentence>", then one line "{SCORE} <1-10>".' if rationale
           else f'Reply with "{SCORE} <1-10>".')
    task = (f"{rubric}\n\n{fenced_conversation(prompt, id_)}\n\n{fenced('answer', completion_text(completion), id_)}"
            f"\n\n{REMINDER.format(id=id_)}\nRate the answer from 1 (useless or wrong) to 10 (excellent). {how}")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task}]


def _token_probability(top: dict[str, float], text: str) -> float:
    return sum(math.exp(lp) for token, lp in top.items() if token.strip() == text)


class CriticReward:
    kind = "critic"

    def __init__(self, path: str | None = None, url: str | None = None, served_model: str | None = None,
                 api_key_env: str | None = None, timeout_s: float = 120.0, name: str | None = None,
                 engine: str = "vllm", rubric: str | None = None, rationale: bool = False,
                 rationale_max_tokens: int = 64, prefill: bool = True, dtype: str = "bfloat16",
                 max_model_len: int = 1024, threads: int | None = None, kv_cache_gib: int = 1,
                 top_logprobs: int = 20):
        self.name, self.rubric = name or self.kind, rubric or DEFAULT_RUBRIC
        self.rationale, self.rationale_max_tokens = rationale, rationale_max_tokens
        self.top_logprobs = top_logprobs  # vLLM and OpenAI endpoints give at most 20; the HF engine any number
        if url:
            if not served_model:
                raise RewardError(f"critic {self.name!r}: with url, options.served_model names the model to ask")
            self.feedback = EndpointFeedback(url, served_model, api_key_env, timeout_s, prefill)
        elif path:
            from rayalign.config import RolloutConfig

            rollout = RolloutConfig(engine=engine, dtype=dtype, max_model_len=max_model_len, threads=threads,
                                    kv_cache_gib=kv_cache_gib)
            self.feedback = LocalFeedback(path, engine, rollout)
        else:
            raise RewardError(f"critic {self.name!r}: needs path (a local model) or url (an endpoint)")
        self.none_count = 0

    def scores(self, prompts: list, completions: list) -> list[float | None]:
        """Expected scores in [1, 10], None where none can be read."""
        chats = [critic_messages(self.rubric, p, c, self.rationale) for p, c in zip(prompts, completions)]
        replies = replies_at(self.feedback, chats, SCORE, self.rationale, self.rationale_max_tokens,
                             self.top_logprobs)
        positions = [read_position(prefix, reply.tokens, SCORE) for prefix, reply in replies]
        tens = self._ten_after_one(chats, replies, positions) if self.feedback.prefills else [None] * len(chats)
        return [self._score(reply, position, ten) for (_, reply), position, ten in zip(replies, positions, tens)]

    def _ten_after_one(self, chats: list, replies: list, positions: list) -> list[float | None]:
        """P("0" right after "1") where the tokenizer splits 10 and "1" is among the top tokens."""
        asks = {}
        for index, ((prefix, reply), position) in enumerate(zip(replies, positions)):
            if position is None or position >= len(reply.top_logprobs):
                continue
            top = reply.top_logprobs[position]
            if _token_probability(top, "1") > 0 and _token_probability(top, "10") == 0:
                written = prefix + "".join(reply.tokens[:position]) + "1"
                asks[index] = chats[index] + [{"role": "assistant", "content": written}]
        follow = self.feedback.continue_chats(list(asks.values()), 1, self.top_logprobs)
        tens = [None] * len(replies)
        for index, reply in zip(asks, follow):
            tens[index] = _token_probability(reply.top_logprobs[0], "0") if reply.top_logprobs else None
        return tens

    @staticmethod
    def _score(reply, position: int | None, ten_after_one: float | None) -> float | None:
        if position is None or position >= len(reply.top_logprobs):
            return None
        return expected_score(reply.top_logprobs[position], ten_after_one=ten_after_one)

    def __call__(self, prompts: list, completions: list, metadata: list[dict] | None = None) -> list[float]:
        scores = self.scores(prompts, completions)
        rewards, nones = to_rewards([None if s is None else to_unit_interval(s) for s in scores], len(prompts),
                                    f"critic {self.name!r}")
        self.none_count += nones
        return rewards
