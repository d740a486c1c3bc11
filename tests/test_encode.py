"""Encoding rows into token ids and loss masks; padding; the deterministic sample order."""

from __future__ import annotations

import pytest
import torch

from conftest import trained_runs
from rayalign.algorithms.sft import IGNORE_INDEX
from rayalign.data.batching import collate, epoch_order, sample_indices
from rayalign.data.encode import Encoded, encode_sft
from rayalign.data.formats import CONVERSATIONAL, LANGUAGE_MODELING, PROMPT_COMPLETION, PROMPT_ONLY
from rayalign.data.readers import DataError, Row
from rayalign.models.loading import load_tokenizer

SYSTEM = {"role": "system", "content": "Be brief."}
Q1 = {"role": "user", "content": "What is 3 + 4?"}
A1 = {"role": "assistant", "content": "7"}
Q2 = {"role": "user", "content": "What is the capital of France?"}
A2 = {"role": "assistant", "content": "Paris"}


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return load_tokenizer(tiny_model)


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# ---------------------------------------------------------------- conversational


def test_template_renders_chatml(tokenizer):
    rendered = tokenizer.apply_chat_template([Q1, A1], tokenize=False)
    assert rendered == "<|im_start|>user\nWhat is 3 + 4?<|im_end|>\n<|im_start|>assistant\n7<|im_end|>\n"


def test_conversation_trains_exactly_the_assistant_turns(tokenizer):
    messages = [SYSTEM, Q1, A1, Q2, A2]
    row = Row("chat.jsonl", 1, {"messages": messages})
    encoded = encode_sft(row, CONVERSATIONAL, tokenizer, max_length=512)

    assert len(encoded.input_ids) == len(encoded.loss_mask)
    # the whole conversation is the template's rendering, token for token
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    assert tokenizer.decode(encoded.input_ids) == full
    # two trained spans, each an assistant's content plus the end-of-turn as rendered
    runs = trained_runs(encoded)
    assert [tokenizer.decode(run) for run in runs] == ["7<|im_end|>\n", "Paris<|im_end|>\n"]
    assert runs == [_ids(tokenizer, "7<|im_end|>\n"), _ids(tokenizer, "Paris<|im_end|>\n")]
    # and nothing else: the untrained tokens are the system/user turns and generation prompts
    untrained = tokenizer.decode([t for t, m in zip(encoded.input_ids, encoded.loss_mask) if not m])
    assert untrained == full.replace("7<|im_end|>\n", "").replace("Paris<|im_end|>\n", "")
    assert sum(encoded.loss_mask) == len(runs[0]) + len(runs[1])


def test_conversation_ending_with_a_user_turn_leaves_the_tail_untrained(tokenizer):
    messages = [Q1, A1, Q2]
    encoded = encode_sft(Row("chat.jsonl", 1, {"messages": messages}), CONVERSATIONAL, tokenizer, 512)
    assert tokenizer.decode(encoded.input_ids) == tokenizer.apply_chat_template(messages, tokenize=False)
    assert [tokenizer.decode(run) for run in trained_runs(encoded)] == ["7<|im_end|>\n"]
    assert encoded.loss_mask[-1] == 0


def test_completion_only_false_trains_everything(tokenizer):
    messages = [SYSTEM, Q1, A1, Q2, A2]
    row = Row("chat.jsonl", 1, {"messages": messages})
    masked = encode_sft(row, CONVERSATIONAL, tokenizer, 512)
    everything = encode_sft(row, CONVERSATIONAL, tokenizer, 512, completion_only=False)
    assert everything.input_ids == masked.input_ids
    assert everything.loss_mask == [1] * len(everything.input_ids)


def test_conversational_prompt_completion_trains_the_completion(tokenizer):
    row = Row("pc.jsonl", 1, {"prompt": [Q1], "completion": [A1]})
    encoded = encode_sft(row, PROMPT_COMPLETION, tokenizer, 512)
    assert tokenizer.decode(encoded.input_ids) == tokenizer.apply_chat_template([Q1, A1], tokenize=False)
    assert [tokenizer.decode(run) for run in trained_runs(encoded)] == ["7<|im_end|>\n"]


def test_conversational_prompt_completion_does_not_train_prompt_history(tokenizer):
    row = Row("pc.jsonl", 1, {"prompt": [Q1, A1, Q2], "completion": [A2]})
    encoded = encode_sft(row, PROMPT_COMPLETION, tokenizer, 512)
    assert [tokenizer.decode(run) for run in trained_runs(encoded)] == ["Paris<|im_end|>\n"]


# ---------------------------------------------------------------- strings


def test_prompt_completion_strings_mask_the_prompt(tokenizer):
    row = Row("pc.jsonl", 1, {"prompt": "What is 3 + 4? Answer with just the number.", "completion": " 7"})
    encoded = encode_sft(row, PROMPT_COMPLETION, tokenizer, 512)
    prompt_ids = _ids(tokenizer, "What is 3 + 4? Answer with just the number.")
    target_ids = _ids(tokenizer, " 7<|im_end|>")
    assert target_ids[-1] == tokenizer.eos_token_id
    assert encoded.input_ids == prompt_ids + target_ids
    assert encoded.loss_mask == [0] * len(prompt_ids) + [1] * len(target_ids)
    assert tokenizer.decode(trained_runs(encoded)[0]) == " 7<|im_end|>"


def test_prompt_completion_strings_without_completion_only(tokenizer):
    row = Row("pc.jsonl", 1, {"prompt": "What is 3 + 4?", "completion": " 7"})
    encoded = encode_sft(row, PROMPT_COMPLETION, tokenizer, 512, completion_only=False)
    assert encoded.loss_mask == [1] * len(encoded.input_ids)
    assert encoded.input_ids[-1] == tokenizer.eos_token_id


def test_language_modeling_trains_all_tokens_and_eos(tokenizer):
    text = "the quick brown fox jumps over the lazy dog"
    encoded = encode_sft(Row("lm.jsonl", 1, {"text": text}), LANGUAGE_MODELING, tokenizer, 512)
    assert encoded.input_ids == _ids(tokenizer, text) + [tokenizer.eos_token_id]
    assert encoded.loss_mask == [1] * len(encoded.input_ids)
    assert tokenizer.decode(encoded.input_ids) == text + "<|im_end|>"


def test_prompt_only_has_nothing_to_imitate(tokenizer):
    with pytest.raises(DataError) as info:
        encode_sft(Row("p.jsonl", 4, {"prompt": "q"}), PROMPT_ONLY, tokenizer, 512)
    assert str(info.value).startswith("p.jsonl, line 4: prompt_only data has nothing to imitate")


# ---------------------------------------------------------------- max_length


def test_truncation_to_max_length(tokenizer):
    text = "the quick brown fox jumps over the lazy dog 0 1 2 3 4 5 6 7 8 9"
    row = Row("lm.jsonl", 1, {"text": text})
    full = encode_sft(row, LANGUAGE_MODELING, tokenizer, 512)
    assert len(full.input_ids) > 10
    cut = encode_sft(row, LANGUAGE_MODELING, tokenizer, 10)
    assert cut.input_ids == full.input_ids[:10]
    assert cut.loss_mask == full.loss_mask[:10]


def test_truncated_conversation_keeps_its_mask_aligned(tokenizer):
    row = Row("chat.jsonl", 1, {"messages": [SYSTEM, Q1, A1, Q2, A2]})
    full = encode_sft(row, CONVERSATIONAL, tokenizer, 512)
    first_target = full.loss_mask.index(1)
    cut = encode_sft(row, CONVERSATIONAL, tokenizer, first_target + 2)
    assert cut.input_ids == full.input_ids[: first_target + 2]
    assert cut.loss_mask == [0] * first_target + [1, 1]


def test_prompt_as_long_as_max_length_raises_naming_the_line(tokenizer):
    prompt = "What is the capital of France? Answer with one word."
    n = len(_ids(tokenizer, prompt))
    row = Row("data/pc.jsonl", 17, {"prompt": prompt, "completion": " Paris"})
    with pytest.raises(DataError) as info:
        encode_sft(row, PROMPT_COMPLETION, tokenizer, max_length=n)
    error = info.value
    assert (error.source, error.line) == ("data/pc.jsonl", 17)
    assert str(error) == (f"data/pc.jsonl, line 17: no training target within max_length={n} tokens "
                          f"(the prompt alone is {n} tokens)")
    # one more token of room leaves exactly one target
    fits = encode_sft(row, PROMPT_COMPLETION, tokenizer, max_length=n + 1)
    assert len(fits.input_ids) == n + 1 and sum(fits.loss_mask) == 1


def test_prompt_longer_than_max_length_raises(tokenizer):
    row = Row("pc.jsonl", 3, {"prompt": "the quick brown fox jumps over the lazy dog " * 4, "completion": " x"})
    with pytest.raises(DataError, match=r"^pc.jsonl, line 3: no training target within max_length=9 tokens"):
        encode_sft(row, PROMPT_COMPLETION, tokenizer, max_length=9)


# ---------------------------------------------------------------- collate


def test_collate_pads_right_and_masks_labels():
    examples = [Encoded([5, 6, 7], [0, 1, 1]), Encoded([8, 9], [1, 0])]
    batch = collate(examples, pad_id=2)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert all(t.dtype == torch.long for t in batch.values())
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert IGNORE_INDEX == -100


def test_collate_of_equal_lengths_has_no_padding():
    batch = collate([Encoded([1, 2], [1, 1]), Encoded([3, 4], [0, 1])], pad_id=0)
    assert batch["attention_mask"].tolist() == [[1, 1], [1, 1]]
    assert batch["labels"].tolist() == [[1, 2], [-100, 4]]


def test_collate_of_real_encodings(tokenizer):
    rows = [Row("x.jsonl", 1, {"prompt": "What is 3 + 4?", "completion": " 7"}),
            Row("x.jsonl", 2, {"prompt": "What is the capital of France?", "completion": " Paris"})]
    encoded = [encode_sft(r, PROMPT_COMPLETION, tokenizer, 512) for r in rows]
    batch = collate(encoded, tokenizer.pad_token_id)
    width = max(len(e.input_ids) for e in encoded)
    assert batch["input_ids"].shape == (2, width)
    for i, e in enumerate(encoded):
        n = len(e.input_ids)
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (width - n)
        assert batch["input_ids"][i, n:].eq(tokenizer.pad_token_id).all()
        assert batch["labels"][i, n:].eq(IGNORE_INDEX).all()
        targets = batch["labels"][i][batch["labels"][i] != IGNORE_INDEX].tolist()
        assert targets == [t for t, m in zip(e.input_ids, e.loss_mask) if m]


# ---------------------------------------------------------------- sample order


def test_epoch_order_is_a_deterministic_permutation():
    assert epoch_order(10, seed=3, epoch=0) == epoch_order(10, seed=3, epoch=0)
    assert sorted(epoch_order(10, seed=3, epoch=0)) == list(range(10))
    assert epoch_order(10, seed=3, epoch=0) != epoch_order(10, seed=3, epoch=1)
    assert epoch_order(10, seed=3, epoch=0) != epoch_order(10, seed=4, epoch=0)


def test_sample_indices_are_deterministic():
    assert sample_indices(7, seed=1, start=0, count=30) == sample_indices(7, seed=1, start=0, count=30)
    assert sample_indices(7, seed=1, start=0, count=30) != sample_indices(7, seed=2, start=0, count=30)


def test_each_epoch_is_a_permutation():
    n = 7
    indices = sample_indices(n, seed=5, start=0, count=4 * n)
    assert len(indices) == 4 * n
    for epoch in range(4):
        chunk = indices[epoch * n : (epoch + 1) * n]
        assert sorted(chunk) == list(range(n))
        assert chunk == epoch_order(n, 5, epoch)
    # epochs are reshuffled, not repeated
    assert len({tuple(indices[e * n : (e + 1) * n]) for e in range(4)}) > 1


@pytest.mark.parametrize("start, count", [(0, 5), (3, 4), (5, 2), (6, 9), (7, 7), (13, 1), (20, 15), (2, 0)])
def test_a_window_equals_the_slice_of_a_longer_run(start, count):
    """Resuming at `start` samples must give exactly what an uninterrupted run would have."""
    n, seed = 7, 11
    longer = sample_indices(n, seed, start=0, count=60)
    assert sample_indices(n, seed, start=start, count=count) == longer[start : start + count]


def test_resuming_in_steps_reproduces_the_whole_run():
    n, seed, batch = 5, 2, 3
    whole = sample_indices(n, seed, start=0, count=24)
    stepped = []
    for step in range(8):
        stepped += sample_indices(n, seed, start=step * batch, count=batch)
    assert stepped == whole
