"""Request bodies of the critic endpoints, /v1/rewards and /v1/judge (validated: a bad body is
a 400 in the OpenAI error format).

    POST /v1/rewards {"model"?, "prompts": [str | messages], "completions": [str], "metadata"?: [dict]}
        -> {"model", "rewards": [float]}             normalised reward-model scores
    POST /v1/judge {"mode": "pointwise", "model"?, "prompts", "completions"}
        -> {"model", "rewards": [0..1], "verdicts": [score 1-10 | null], "rationales": [str]}
    POST /v1/judge {"mode": "pairwise", "model"?, "prompt" | "prompts", "a", "b"} (str or lists)
        -> {"model", "verdicts": ["a" | "b" | "tie"], "rationales": [[a first, b first]],
            "order_verdicts": [[...]], and for a single pair "verdict" and "rationale"}
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, model_validator

Prompt = Union[str, list[dict[str, Any]]]


class RewardsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    prompts: list[Prompt]
    completions: list[str]
    metadata: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _same_lengths(self):
        if len(self.prompts) != len(self.completions):
            raise ValueError(f"{len(self.prompts)} prompts but {len(self.completions)} completions")
        if self.metadata is not None and len(self.metadata) != len(self.prompts):
            raise ValueError(f"{len(self.metadata)} metadata entries for {len(self.prompts)} prompts")
        return self


class JudgeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["pointwise", "pairwise"]
    model: str | None = None
    prompts: list[Prompt] | None = None
    completions: list[str] | None = None
    prompt: Prompt | None = None
    a: str | list[str] | None = None
    b: str | list[str] | None = None

    @model_validator(mode="after")
    def _fields_of_the_mode(self):
        if self.mode == "pointwise":
            if self.prompts is None or self.completions is None:
                raise ValueError("pointwise judging needs prompts and completions")
            if len(self.prompts) != len(self.completions):
                raise ValueError(f"{len(self.prompts)} prompts but {len(self.completions)} completions")
            return self
        if self.a is None or self.b is None or (self.prompt is None) == (self.prompts is None):
            raise ValueError("pairwise judging needs a, b and one of prompt or prompts")
        if isinstance(self.a, str) != isinstance(self.b, str):
            raise ValueError("a and b must both be strings or both be lists")
        prompts, a, b = self.pairs()
        if not len(prompts) == len(a) == len(b):
            raise ValueError(f"pairwise judging needs as many prompts as a and b answers: "
                             f"got {len(prompts)}, {len(a)}, {len(b)}")
        return self

    @property
    def single(self) -> bool:
        return isinstance(self.a, str)

    def pairs(self) -> tuple[list[Prompt], list[str], list[str]]:
        """Pairwise: (prompts, a, b) as equal-length lists."""
        a = [self.a] if self.single else self.a
        b = [self.b] if self.single else self.b
        prompts = self.prompts if self.prompts is not None else [self.prompt] * len(a)
        return prompts, a, b
