"""Prompts for on-policy RL: what the policy is asked, tokenised, with the row's metadata.

Accepted formats (TRL's names): prompt-only `{"prompt": str | messages}`,
prompt-completion (the completion is kept as metadata `reference`) and conversational
`{"messages": [...]}` (the prompt is every message before the last assistant turn, whose
text is kept as `reference`). Other fields, such as a `check` spec, travel as metadata to
the reward functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from rayalign.data.formats import CONVERSATIONAL, PROMPT_COMPLETION, PROMPT_ONLY, load_examples
from rayalign.data.prompting import PromptVariant
from rayalign.data.readers import Row

PROMPT_FORMATS = (PROMPT_ONLY, PROMPT_COMPLETION, CONVERSATIONAL)


@dataclass
class PromptExample:
    row: Row
    prompt: str | list[dict]      # as the user wrote it: text or chat messages
    prompt_ids: list[int]          # after the chat template, with the generation prompt
    metadata: dict


def _split(row: Row, fmt: str) -> tuple[str | list[dict], dict]:
    fields = dict(row.fields)
    if fmt == CONVERSATIONAL:
        messages = fields.pop("messages")
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
        if last == 0:
            raise row.error("messages", "no prompt before the first assistant turn")
        if last < len(messages):
            fields["reference"] = messages[last]["content"]
        return messages[:last], fields
    prompt = fields.pop("prompt")
    if fmt == PROMPT_COMPLETION:
        completion = fields.pop("completion")
        fields["reference"] = completion if isinstance(completion, str) else completion[-1]["content"]
    return prompt, fields


def encode_prompt(prompt: str | list[dict], tokenizer) -> list[int]:
    """Chat messages go through the chat template (ending with the generation prompt);
    plain text is tokenised as it is."""
    if isinstance(prompt, str):
        return tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


def encode_chat(messages: list[dict], tokenizer) -> list[int]:
    """A conversation as the model sees it, rendered by the chat template. One whose last
    message is the assistant's is continued from that text (a prefilled reply); otherwise
    the generation prompt opens a new assistant turn."""
    prefilled = messages[-1]["role"] == "assistant"
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=not prefilled,
                                         continue_final_message=prefilled)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def load_prompts(path: str, tokenizer, max_prompt_length: int) -> list[PromptExample]:
    """Every prompt of a file, validated; a prompt longer than `max_prompt_length` tokens
    is an error naming its line (truncating a prompt would change the task)."""
    fmt, rows = load_examples(path, PROMPT_FORMATS)
    examples = []
    for row in rows:
        prompt, metadata = _split(row, fmt)
        ids = encode_prompt(prompt, tokenizer)
        if len(ids) > max_prompt_length:
            raise row.error("messages" if fmt == CONVERSATIONAL else "prompt",
                            f"{len(ids)} tokens after the chat template; the limit is {max_prompt_length} "
                            "(data.max_length minus rollout.max_new_tokens)")
        examples.append(PromptExample(row, prompt, ids, metadata))
    return examples


def with_variant(examples: list[PromptExample], variant: PromptVariant | None, tokenizer,
                 max_prompt_length: int) -> list[PromptExample]:
    """The examples as `variant` asks them (system prompt, few-shot turns, template), re-encoded;
    `prompt` and the metadata stay as the user wrote them, so rewards see the original question."""
    if variant is None:
        return examples
    shown = []
    for example in examples:
        ids = encode_prompt(variant.apply(example.prompt), tokenizer)
        if len(ids) > max_prompt_length:
            raise example.row.error(None, f"{len(ids)} tokens with prompt variant {variant.name!r}; the limit is "
                                    f"{max_prompt_length} (fewer shots, or a larger max_length)")
        shown.append(PromptExample(example.row, example.prompt, ids, example.metadata))
    return shown
