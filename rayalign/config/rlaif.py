"""The sections of RLAIF: who labels and how it is asked (`labeler`), what is labelled or
revised (`rlaif`). See rayalign/pipelines/rlaif_label.py and rlaif_revise.py."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rayalign.config.methods import RewardSourceConfig
from rayalign.config.sections import _Strict


class ChatModelConfig(_Strict):
    """A chat model that rayalign asks: local, `model` (a built-in name, HF folder or run folder)
    on the rollout workers, sized by the `rollout:` section; or remote, `url` of an
    OpenAI-compatible server with `served_model`. `prefill: true` continues a started reply with
    vLLM's continue_final_message (rayalign serve, vLLM), `false` lets the model write the whole
    reply (other vendors)."""

    model: str = "smollm2-135m-instruct"
    url: str | None = None
    served_model: str | None = None
    api_key_env: str | None = None
    prefill: bool = True
    timeout_s: float = Field(120.0, gt=0)
    concurrency: int = Field(8, gt=0)

    @property
    def label(self) -> str:
        return f"{self.served_model}@{self.url}" if self.url else self.model


class LabelerConfig(ChatModelConfig):
    """The AI labeler (a chat model, local or remote: see ChatModelConfig).

    How it is asked: a `rubric` (text) or a `constitution` file's principles as the preamble,
    optional few-shot `examples` (JSONL of prompt, a, b, verdict A|B, rationale?), a one-line
    `rationale` before the verdict when set; the verdict's probabilities come from the
    `top_logprobs` at its position."""

    rubric: str | None = None
    constitution: str | None = None
    examples: str | None = None
    rationale: bool = False
    rationale_max_tokens: int = Field(64, gt=0)
    top_logprobs: int = Field(20, ge=0, le=20)

    @model_validator(mode="after")
    def _one_preamble(self):
        if self.rubric and self.constitution:
            raise ValueError("set either labeler.rubric or labeler.constitution, not both")
        return self


class RlaifConfig(_Strict):
    """Labelling (`rayalign rlaif label`): `data.train` holds prompts (the policy,
    `model.name_or_path`, writes `answers_per_prompt` answers at the rollout temperature and
    every two of them make a pair) or pairs (`prompt`, `chosen`/`rejected` whose labels become
    the reference, shown in a seeded random order; or unlabelled `a`/`b`). `orders: both` judges
    each pair as (A, B) and (B, A); pairs whose orders disagree are kept as ties
    (`disagreement: tie`) or dropped. `reference` reward sources (rules) label prompts-only pairs
    for the agreement figures. Work is saved every `chunk` pairs; a rerun resumes.

    Critique and revise (`rayalign rlaif revise`): each prompt's first answer, then `rounds`
    of critique -> revision, each under a principle of `constitution` drawn at random."""

    answers_per_prompt: int = Field(2, ge=2, le=4)
    orders: Literal["both", "one"] = "both"
    disagreement: Literal["tie", "drop"] = "tie"
    reference: list[RewardSourceConfig] = []
    max_pairs: int | None = Field(None, gt=0)
    chunk: int = Field(64, gt=0)
    constitution: str | None = None
    rounds: int = Field(2, gt=0)
    critique_max_tokens: int = Field(96, gt=0)
    revision_max_tokens: int = Field(96, gt=0)
