"""The sections of synthetic data generation: the `teacher` that writes and answers tasks, and
`sdg`: the seeds, the rounds, the budget and the filters. See rayalign/pipelines/sdg_generate.py."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rayalign.config.methods import RewardSourceConfig
from rayalign.config.rlaif import ChatModelConfig
from rayalign.config.sections import _Strict


class TeacherConfig(ChatModelConfig):
    """The general model that writes tasks and answers them (a chat model, local or remote:
    see ChatModelConfig). New tasks are sampled at `temperature`; answers at
    `answer_temperature` (0: greedy, the teacher's best answer; preference records sample two
    answers at `temperature`). Confidence is the answer's mean token probability, read from
    the `top_logprobs` the model reports."""

    temperature: float = Field(1.0, ge=0)
    answer_temperature: float = Field(0.0, ge=0)
    task_max_tokens: int = Field(48, gt=0)
    answer_max_tokens: int = Field(64, gt=0)
    top_logprobs: int = Field(1, ge=0, le=20)


class SdgFiltersConfig(_Strict):
    """What a new item must pass, cheapest first (rayalign/data/sdg_chain.py): its format;
    `min_task_words`..`max_task_words` words in the task, at most `max_answer_words` in each
    answer; none of the `blacklist` words
    (null: self-instruct's list); no refusal; no copy of the task as its answer; the `verify`
    function (`pkg.module:fn`, item -> True/False/None; `verify_required`: an unverifiable item,
    None, is rejected too); near-duplicates by MinHash-LSH (Jaccard >= `near_duplicate`),
    optionally by embedding cosine (>= `embedding`, with all-MiniLM-L6-v2); novelty, ROUGE-L
    to everything kept and the seeds < `novelty`; and last the `quality` reward sources (a
    judge, a reward model, a function), their weighted sum >= `quality_threshold`."""

    novelty: float = Field(0.7, gt=0, le=1)
    near_duplicate: float = Field(0.5, gt=0, le=1)
    embedding: float | None = Field(None, gt=0, le=1)
    min_task_words: int = Field(4, ge=0)
    max_task_words: int = Field(150, gt=0)
    max_answer_words: int | None = Field(None, gt=0)
    blacklist: list[str] | None = None
    verify: str | None = None
    verify_required: bool = False
    quality: list[RewardSourceConfig] = []
    quality_threshold: float = 0.5

    @model_validator(mode="after")
    def _verify_path(self):
        if self.verify is not None and ":" not in self.verify:
            raise ValueError("sdg.filters.verify needs an import path 'pkg.module:function'")
        return self


class SdgConfig(_Strict):
    """Self-instruct (`rayalign sdg generate`): each request shows the teacher `in_context` tasks
    (`generated_in_context` of them from what was kept so far, the rest from the seed tasks in
    `data.train`)
    and asks for one new task; the teacher then answers each new task (`kind: sft`; with
    `answers_per_task` > 1 it samples that many and the best is kept: verified first, then by
    quality, i.e. rejection sampling) or writes two answers that the quality sources or the verifier rank (`kind: preference`). Rounds of
    `requests_per_round` requests run until `target` items are kept, `max_rounds` rounds are
    done or `max_candidates` tasks were written. Each finished round is saved; a rerun resumes.

    Model-assisted labelling (`rayalign sdg label`): the teacher drafts an answer to each of the
    user's prompts (`data.train`), or a preference for each of their pairs, with its confidence,
    as suggestions for `rayalign review serve`."""

    kind: Literal["sft", "preference"] = "sft"
    target: int = Field(200, gt=0)
    max_rounds: int = Field(20, gt=0)
    max_candidates: int | None = Field(None, gt=0)
    requests_per_round: int = Field(64, gt=0)
    answers_per_task: int = Field(1, ge=1, le=16)
    in_context: int = Field(8, ge=1)
    generated_in_context: int = Field(2, ge=0)
    filters: SdgFiltersConfig = SdgFiltersConfig()

    @model_validator(mode="after")
    def _sizes(self):
        if self.generated_in_context > self.in_context:
            raise ValueError("sdg.generated_in_context cannot exceed sdg.in_context")
        return self
