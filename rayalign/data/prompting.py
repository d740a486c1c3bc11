"""A prompt variant: the system prompt, instruction template and few-shot examples put around
what a user asks, and the `prompt.json` a prompting run leaves behind.

    variant.apply("What is 2 + 3?")  ->  [system?, user(shot 1), assistant(answer 1), ...,
                                          user(template with the question)]

The messages then go through the model's own chat template, as every chat prompt does. The
same function renders prompts for scoring (`rayalign prompt`, `rayalign eval --prompt`) and
for serving (`rayalign serve` answers `<base>:<prompt-run>` with the variant applied), so a
prompted model answers the same way in evaluation and in production.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROMPT_FILE = "prompt.json"
PLACEHOLDER = "{prompt}"


@dataclass
class PromptVariant:
    name: str
    system: str | None = None
    template: str = PLACEHOLDER                               # must contain {prompt} once
    examples: list[dict] = field(default_factory=list)        # [{"prompt": str, "answer": str}]

    def __post_init__(self):
        if self.template.count(PLACEHOLDER) != 1:
            raise ValueError(f"prompt variant {self.name!r}: template must contain {PLACEHOLDER} exactly once, "
                             f"got {self.template!r}")

    def wrap(self, text: str) -> str:
        return self.template.replace(PLACEHOLDER, text)

    def apply(self, prompt: str | list[dict]) -> list[dict]:
        """The conversation to send for `prompt` (a user message, or chat messages whose
        user turns get the template). A system message of the prompt itself is kept and
        comes after the variant's."""
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        head = [{"role": "system", "content": self.system}] if self.system else []
        shots = [m for example in self.examples for m in (
            {"role": "user", "content": self.wrap(example["prompt"])},
            {"role": "assistant", "content": example["answer"]})]
        own_system = [m for m in messages if m["role"] == "system"]
        if own_system and head:
            head = [{"role": "system", "content": f"{self.system}\n\n{own_system[0]['content']}"}]
        elif own_system:
            head = own_system[:1]
        rest = [{**m, "content": self.wrap(m["content"])} if m["role"] == "user" else m
                for m in messages if m["role"] != "system"]
        return head + shots + rest

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "PromptVariant":
        return cls(**{key: data[key] for key in ("name", "system", "template", "examples") if key in data})


def prompt_run_record(variant: PromptVariant, base: str) -> str:
    """The text of `<run>/prompt.json`: the chosen variant and the model it prompts."""
    return json.dumps({"base": base, "variant": variant.to_json()}, indent=2) + "\n"


def read_prompt_run(folder: str | Path) -> tuple[PromptVariant, str] | None:
    """(variant, base model) of a prompting run folder, or None if it is not one."""
    path = Path(folder) / PROMPT_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return PromptVariant.from_json(data["variant"]), data["base"]
