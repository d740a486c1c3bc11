"""Turn validated rows into token ids and loss masks for supervised training.

Chat data goes through the tokenizer's own chat template. The loss covers the completion
only (prompt-completion) or the assistant turns only (conversational) when
`completion_only` is set; language-modeling text is learned whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from rayalign.data.formats import CONVERSATIONAL, LANGUAGE_MODELING, PROMPT_COMPLETION
from rayalign.data.readers import Row


@dataclass
class Encoded:
    input_ids: list[int]
    loss_mask: list[int]  # 1 where the token is a training target


def _chat_segments(row: Row, tokenizer, messages: list[dict], first_target: int = 0) -> list[tuple[str, bool]]:
    """Split the rendered conversation into (text, is_target) pieces.

    Renders successive prefixes of the conversation; each assistant turn is the text the
    full render adds beyond the prefix that ends with the generation prompt. Assistant
    turns before message `first_target`, or with OpenAI's `"weight": 0`, are context, not targets.
    """
    segments: list[tuple[str, bool]] = []
    done = ""
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True)
        upto = tokenizer.apply_chat_template(messages[: index + 1], tokenize=False)
        if not before.startswith(done) or not upto.startswith(before):
            raise row.error("messages", "the tokenizer's chat template does not render conversations "
                            "prefix by prefix; assistant-only masking needs that")
        target = index >= first_target and message.get("weight", 1) != 0  # OpenAI's weight 0: context
        segments += [(before[len(done):], False), (upto[len(before):], target)]
        done = upto
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if full[len(done):]:
        segments.append((full[len(done):], False))
    return segments


def prompt_completion_segments(row: Row, tokenizer, prompt, completion) -> list[tuple[str, bool]]:
    """Plain strings are concatenated (completion + EOS is the target); message lists go
    through the chat template (the completion's assistant turns are the target)."""
    if isinstance(completion, list):
        return _chat_segments(row, tokenizer, list(prompt) + completion, len(prompt))
    return [(prompt, False), (completion + (tokenizer.eos_token or ""), True)]


def _segments(row: Row, fmt: str, tokenizer) -> list[tuple[str, bool]]:
    fields = row.fields
    if fmt == LANGUAGE_MODELING:
        return [(fields["text"] + (tokenizer.eos_token or ""), True)]
    if fmt == CONVERSATIONAL:
        return _chat_segments(row, tokenizer, fields["messages"])
    if fmt == PROMPT_COMPLETION:
        return prompt_completion_segments(row, tokenizer, fields["prompt"], fields["completion"])
    raise row.error(None, f"{fmt} data has nothing to imitate; SFT takes text, prompt-completion or messages")


def encode_segments(row: Row, segments: list[tuple[str, bool]], tokenizer, max_length: int,
                    completion_only: bool = True) -> Encoded:
    """Tokenize each piece and mark its tokens; at least one target must survive truncation."""
    ids: list[int] = []
    mask: list[int] = []
    for text, trained in segments:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        mask += [int(trained or not completion_only)] * len(piece)
    if not any(mask[1 : max_length]):
        raise row.error(None, f"no training target within max_length={max_length} tokens "
                        f"(the prompt alone is {mask.index(1) if 1 in mask else len(mask)} tokens)")
    return Encoded(ids[:max_length], mask[:max_length])


def encode_sft(row: Row, fmt: str, tokenizer, max_length: int, completion_only: bool = True) -> Encoded:
    return encode_segments(row, _segments(row, fmt, tokenizer), tokenizer, max_length, completion_only)
