"""Preference pairs: the shapes users bring (HH-RLHF transcripts, UltraFeedback-binarized,
TRL explicit/implicit prompt), how they split into prompt + completions, how they encode and
batch (with graded margins, soft labels), and the errors bad rows give (file, line, field)."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import trained_runs, write_jsonl
from rayalign.algorithms.sft import IGNORE_INDEX
from rayalign.data.encode import Encoded
from rayalign.data.formats import PREFERENCE, load_examples
from rayalign.data.preference import PairExample, collate_pairs, encode_pair, load_pairs, pair_margin, split_pair
from rayalign.data.readers import DataError, Row
from rayalign.models.loading import load_tokenizer

EOS = "<|im_end|>"


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def system(text):
    return {"role": "system", "content": text}


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return load_tokenizer(tiny_model)


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _trained(tokenizer, encoded: Encoded) -> str:
    return tokenizer.decode([t for t, m in zip(encoded.input_ids, encoded.loss_mask) if m])


def _untrained(tokenizer, encoded: Encoded) -> str:
    return tokenizer.decode([t for t, m in zip(encoded.input_ids, encoded.loss_mask) if not m])


def _runs(tokenizer, encoded: Encoded) -> list[str]:
    """The decoded maximal runs of consecutive trained tokens."""
    return [tokenizer.decode(run) for run in trained_runs(encoded)]


def _row(fields: dict, line: int = 1) -> Row:
    return Row("pairs.jsonl", line, fields)


# ---------------------------------------------------------------- HH-RLHF (implicit prompt, transcripts)

HH_Q = "\n\nHuman: What is 2+2?\n\nAssistant:"
HH_HISTORY = "\n\nHuman: Hi there.\n\nAssistant: Hello! How can I help?\n\nHuman: What is 2+2?\n\nAssistant:"


def test_hh_single_turn_splits_at_the_assistant_marker():
    row = _row({"chosen": HH_Q + " 4", "rejected": HH_Q + " 5"})
    assert split_pair(row) == (HH_Q, " 4", " 5")


def test_hh_multi_turn_prompt_keeps_the_shared_history():
    row = _row({"chosen": HH_HISTORY + " It is 4.", "rejected": HH_HISTORY + " It is 5."})
    prompt, chosen, rejected = split_pair(row)
    # the prompt ends at the last shared "Assistant:", not at the longest common prefix " It is "
    assert prompt == HH_HISTORY
    assert (chosen, rejected) == (" It is 4.", " It is 5.")
    # and the earlier assistant turn stays inside the prompt
    assert prompt.count("Assistant:") == 2 and "Hello! How can I help?" in prompt


def test_hh_completion_that_extends_the_other_is_kept_whole():
    row = _row({"chosen": HH_Q + " 4", "rejected": HH_Q + " 42"})
    assert split_pair(row) == (HH_Q, " 4", " 42")


def test_hh_encoding_masks_the_prompt_and_trains_completion_plus_eos(tokenizer):
    row = _row({"chosen": HH_HISTORY + " 4", "rejected": HH_HISTORY + " 5"})
    pair = encode_pair(row, tokenizer, 512)
    for encoded, answer in ((pair.chosen, " 4"), (pair.rejected, " 5")):
        assert len(encoded.input_ids) == len(encoded.loss_mask)
        assert encoded.input_ids == _ids(tokenizer, HH_HISTORY) + _ids(tokenizer, answer + EOS)
        assert _untrained(tokenizer, encoded) == HH_HISTORY
        assert _trained(tokenizer, encoded) == answer + EOS
        assert encoded.input_ids[-1] == tokenizer.eos_token_id and encoded.loss_mask[-1] == 1
        # one contiguous masked prefix, then one trained run
        first = encoded.loss_mask.index(1)
        assert encoded.loss_mask == [0] * first + [1] * (len(encoded.loss_mask) - first)
    assert pair.margin is None and pair.reference_chosen is None and pair.reference_rejected is None


def test_hh_file_through_load_pairs(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "hh.jsonl", [
        {"chosen": HH_Q + " 4", "rejected": HH_Q + " 5"},
        {"chosen": HH_HISTORY + " Four.", "rejected": HH_HISTORY + " Five."},
    ])
    pairs = load_pairs(path, tokenizer, 512)
    assert len(pairs) == 2
    assert [_trained(tokenizer, p.chosen) for p in pairs] == [" 4" + EOS, " Four." + EOS]
    assert [_trained(tokenizer, p.rejected) for p in pairs] == [" 5" + EOS, " Five." + EOS]
    assert [_untrained(tokenizer, p.chosen) for p in pairs] == [HH_Q, HH_HISTORY]


# ---------------------------------------------------------------- UltraFeedback-binarized

UF_Q = "What is the capital of France?"
UF_ROW = {
    "prompt": UF_Q,
    "prompt_id": "abc123",
    "chosen": [user(UF_Q), assistant("Paris")],
    "rejected": [user(UF_Q), assistant("Lyon")],
    "messages": [user(UF_Q), assistant("Paris")],
    "score_chosen": 8.0,
    "score_rejected": 3.0,
}


def test_ultrafeedback_is_detected_as_preference(tmp_path):
    path = write_jsonl(tmp_path / "uf.jsonl", [UF_ROW])
    fmt, rows = load_examples(path, (PREFERENCE,))
    assert fmt == PREFERENCE and rows[0].fields == UF_ROW


def test_ultrafeedback_split_does_not_repeat_the_user_turn():
    assert split_pair(_row(UF_ROW)) == ([user(UF_Q)], [assistant("Paris")], [assistant("Lyon")])


def test_ultrafeedback_margin_is_the_score_difference():
    assert pair_margin(_row(UF_ROW)) == 5.0
    assert isinstance(pair_margin(_row(UF_ROW)), float)


def test_ultrafeedback_encoding_renders_the_user_turn_once(tokenizer):
    pair = encode_pair(_row(UF_ROW), tokenizer, 512, with_margin=True)
    assert pair.margin == 5.0
    for encoded, answer in ((pair.chosen, "Paris"), (pair.rejected, "Lyon")):
        text = tokenizer.decode(encoded.input_ids)
        assert text.count(UF_Q) == 1
        assert text.count("<|im_start|>user") == 1
        assert text == tokenizer.apply_chat_template([user(UF_Q), assistant(answer)], tokenize=False)
        assert _runs(tokenizer, encoded) == [answer + EOS + "\n"]
        assert _untrained(tokenizer, encoded) == f"<|im_start|>user\n{UF_Q}{EOS}\n<|im_start|>assistant\n"


def test_ultrafeedback_file_with_margin(tmp_path, tokenizer):
    second = dict(UF_ROW, score_chosen=6.5, score_rejected=6.0)
    path = write_jsonl(tmp_path / "uf.jsonl", [UF_ROW, second])
    pairs = load_pairs(path, tokenizer, 512, with_margin=True)
    assert [p.margin for p in pairs] == [5.0, 0.5]
    # without rm.margin the scores are ignored
    assert [p.margin for p in load_pairs(path, tokenizer, 512)] == [None, None]


def test_explicit_margin_wins_over_scores():
    assert pair_margin(_row(dict(UF_ROW, margin=2))) == 2.0


# ---------------------------------------------------------------- explicit prompt (TRL standard)


def test_explicit_conversational_prompt(tokenizer):
    prompt = [system("Be brief."), user(UF_Q)]
    row = _row({"prompt": prompt, "chosen": [assistant("Paris")], "rejected": [assistant("The capital is Paris.")]})
    assert split_pair(row) == (prompt, [assistant("Paris")], [assistant("The capital is Paris.")])
    pair = encode_pair(row, tokenizer, 512)
    for encoded, answer in ((pair.chosen, "Paris"), (pair.rejected, "The capital is Paris.")):
        assert tokenizer.decode(encoded.input_ids) == tokenizer.apply_chat_template(
            prompt + [assistant(answer)], tokenize=False)
        assert _runs(tokenizer, encoded) == [answer + EOS + "\n"]


def test_explicit_conversational_prompt_history_is_not_trained(tokenizer):
    prompt = [user("What is 3 + 4?"), assistant("7"), user(UF_Q)]
    row = _row({"prompt": prompt, "chosen": [assistant("Paris")], "rejected": [assistant("Lyon")]})
    pair = encode_pair(row, tokenizer, 512)
    assert _runs(tokenizer, pair.chosen) == ["Paris" + EOS + "\n"]
    assert _runs(tokenizer, pair.rejected) == ["Lyon" + EOS + "\n"]
    assert tokenizer.decode(pair.chosen.input_ids).count("7" + EOS) == 1


def test_explicit_string_prompt_has_no_chat_template(tokenizer):
    prompt = "What is the capital of France? Answer with one word."
    row = _row({"prompt": prompt, "chosen": " Paris", "rejected": " Lyon"})
    assert split_pair(row) == (prompt, " Paris", " Lyon")
    pair = encode_pair(row, tokenizer, 512)
    for encoded, answer in ((pair.chosen, " Paris"), (pair.rejected, " Lyon")):
        answer_ids = _ids(tokenizer, answer + EOS)
        assert encoded.input_ids == _ids(tokenizer, prompt) + answer_ids
        assert encoded.loss_mask == [0] * len(_ids(tokenizer, prompt)) + [1] * len(answer_ids)
        assert "<|im_start|>" not in tokenizer.decode(encoded.input_ids)
        assert encoded.input_ids[-1] == tokenizer.eos_token_id


def test_explicit_string_prompt_repeated_in_transcripts_is_removed():
    prompt = "Q: What is 3 + 4?\nA:"
    row = _row({"prompt": prompt, "chosen": prompt + " 7", "rejected": prompt + " 8"})
    assert split_pair(row) == (prompt, " 7", " 8")


# ---------------------------------------------------------------- implicit prompt, message lists


def test_implicit_message_lists_share_their_leading_messages(tokenizer):
    history = [system("Be brief."), user("What is 3 + 4?"), assistant("7"), user(UF_Q)]
    row = _row({"chosen": history + [assistant("Paris")], "rejected": history + [assistant("Lyon")]})
    assert split_pair(row) == (history, [assistant("Paris")], [assistant("Lyon")])
    pair = encode_pair(row, tokenizer, 512)
    assert tokenizer.decode(pair.chosen.input_ids) == tokenizer.apply_chat_template(
        history + [assistant("Paris")], tokenize=False)
    # the shared earlier assistant turn is context, not a target
    assert _runs(tokenizer, pair.chosen) == ["Paris" + EOS + "\n"]
    assert _runs(tokenizer, pair.rejected) == ["Lyon" + EOS + "\n"]


def test_implicit_message_lists_diverging_at_the_first_answer():
    row = _row({"chosen": [user(UF_Q), assistant("Paris"), user("Sure?"), assistant("Yes.")],
                "rejected": [user(UF_Q), assistant("Lyon")]})
    assert split_pair(row) == ([user(UF_Q)], [assistant("Paris"), user("Sure?"), assistant("Yes.")],
                               [assistant("Lyon")])


# ---------------------------------------------------------------- collate_pairs


def _pair(chosen, rejected, **extra) -> PairExample:
    return PairExample(Encoded(*chosen), Encoded(*rejected), **extra)


PAIRS = [([[5, 6, 7], [0, 1, 1]], [[5, 8], [0, 1]]),
         ([[9, 10], [0, 1]], [[9, 11, 12, 13], [0, 1, 1, 1]])]


def test_collate_pairs_puts_chosen_first_then_rejected():
    batch = collate_pairs([_pair(c, r) for c, r in PAIRS], pad_id=2)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].tolist() == [[5, 6, 7, 2], [9, 10, 2, 2], [5, 8, 2, 2], [9, 11, 12, 13]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    x = IGNORE_INDEX
    assert batch["labels"].tolist() == [[x, 6, 7, x], [x, 10, x, x], [x, 8, x, x], [x, 11, 12, 13]]


def test_collate_pairs_margin_only_when_requested():
    with_margin = collate_pairs([_pair(c, r, margin=m) for (c, r), m in zip(PAIRS, (0.5, 1.5))], pad_id=2)
    assert set(with_margin) == {"input_ids", "attention_mask", "labels", "margin"}
    assert with_margin["margin"].dtype == torch.float32
    assert with_margin["margin"].tolist() == [0.5, 1.5]   # one per pair, not per row


def test_collate_pairs_reference_only_when_set():
    pairs = [_pair(c, r, reference_chosen=-1.0 - i, reference_rejected=-3.0 - i) for i, (c, r) in enumerate(PAIRS)]
    batch = collate_pairs(pairs, pad_id=2)
    assert set(batch) == {"input_ids", "attention_mask", "labels", "reference_chosen", "reference_rejected"}
    assert batch["reference_chosen"].tolist() == [-1.0, -2.0]
    assert batch["reference_rejected"].tolist() == [-3.0, -4.0]
    assert batch["reference_chosen"].dtype == batch["reference_rejected"].dtype == torch.float32
    both = collate_pairs([_pair(c, r, margin=1.0, reference_chosen=0.0, reference_rejected=0.0)
                          for c, r in PAIRS], pad_id=2)
    assert set(both) == {"input_ids", "attention_mask", "labels", "margin", "reference_chosen", "reference_rejected"}


def test_collate_of_loaded_pairs(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "uf.jsonl", [UF_ROW, dict(UF_ROW, score_rejected=7.0)])
    pairs = load_pairs(path, tokenizer, 512, with_margin=True)
    batch = collate_pairs(pairs, tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 4
    assert batch["margin"].tolist() == [5.0, 1.0]
    for i, encoded in enumerate([p.chosen for p in pairs] + [p.rejected for p in pairs]):
        n = len(encoded.input_ids)
        assert batch["input_ids"][i, :n].tolist() == encoded.input_ids
        targets = batch["labels"][i][batch["labels"][i] != IGNORE_INDEX].tolist()
        assert tokenizer.decode(targets) == ("Paris" if i < 2 else "Lyon") + EOS + "\n"
    assert "margin" not in collate_pairs(load_pairs(path, tokenizer, 512), tokenizer.pad_token_id)


# ---------------------------------------------------------------- bad rows

GOOD = {"prompt": "q", "chosen": " a", "rejected": " b"}

BAD_ROWS = {
    "missing rejected": ({"prompt": "q", "chosen": "a"}, False, "rejected", "missing"),
    "empty chosen text": ({"prompt": "q", "chosen": "   ", "rejected": "b"}, False, "chosen", "empty text"),
    "chosen empty after the shared prompt": (
        {"chosen": HH_Q, "rejected": HH_Q + " 5"}, False, "chosen", "empty once the shared prompt is removed"),
    "identical": ({"prompt": "q", "chosen": "same", "rejected": "same"}, False, "rejected", "identical to chosen"),
    "list and string": ({"chosen": [user("q"), assistant("a")], "rejected": "b"}, False, "rejected",
                        "must both be strings or both message lists"),
    "differ at a user message": (
        {"chosen": [user("q"), assistant("a"), user("more?"), assistant("yes")],
         "rejected": [user("q"), assistant("a"), user("less?"), assistant("no")]},
        False, "chosen", "differ at a user message"),
    "prefix": ({"chosen": [user("q"), assistant("a")],
                "rejected": [user("q"), assistant("a"), user("more?"), assistant("yes")]},
               False, "rejected", "prefix of the other"),
    "no margin": ({"prompt": "q", "chosen": "a", "rejected": "b"}, True, "margin", "rm.margin is on"),
    "only one score": ({"prompt": "q", "chosen": "a", "rejected": "b", "score_chosen": 1.0}, True, "margin",
                       "rm.margin is on"),
    "non-numeric margin": ({"prompt": "q", "chosen": "a", "rejected": "b", "margin": "high"}, True, "margin",
                           "expected a number, got 'high'"),
}


@pytest.mark.parametrize("record, with_margin, field, message", BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_bad_row_names_file_line_and_field(tmp_path, tokenizer, record, with_margin, field, message):
    good = dict(GOOD, margin=1.0) if with_margin else GOOD
    path = write_jsonl(tmp_path / "pairs.jsonl", [good, good, record])
    with pytest.raises(DataError) as info:
        load_pairs(path, tokenizer, 512, with_margin=with_margin)
    error = info.value
    assert (error.source, error.line, error.field) == (path, 3, field)
    assert str(error).startswith(f"{path}, line 3, field '{field}': ")
    assert message in str(error)


def test_the_good_rows_alone_load(tmp_path, tokenizer):
    """The bad-row cases above fail because of their third row, not the first two."""
    path = write_jsonl(tmp_path / "pairs.jsonl", [dict(GOOD, margin=1.0)] * 2)
    assert [p.margin for p in load_pairs(path, tokenizer, 512, with_margin=True)] == [1.0, 1.0]


def test_sft_file_given_to_load_pairs(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "sft.jsonl", [{"messages": [user("q"), assistant("a")]}])
    with pytest.raises(DataError) as info:
        load_pairs(path, tokenizer, 512)
    error = info.value
    assert (error.source, error.line, error.field) == (path, 1, None)
    assert str(error) == f"{path}, line 1: is conversational data; this method takes preference"


def test_non_numeric_scores_give_a_data_error(tmp_path, tokenizer):
    record = {"prompt": "q", "chosen": "a", "rejected": "b", "score_chosen": "8", "score_rejected": "3"}
    path = write_jsonl(tmp_path / "pairs.jsonl", [record])
    with pytest.raises(DataError) as info:
        load_pairs(path, tokenizer, 512, with_margin=True)
    assert (info.value.line, info.value.field) == (1, "score_chosen")


def test_null_prompt_in_a_table_counts_as_absent(tmp_path, tokenizer):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist([
        {"prompt": "Q:", "chosen": " 4", "rejected": " 5"},
        {"chosen": HH_Q + " 4", "rejected": HH_Q + " 5"},
    ]), path)
    pairs = load_pairs(str(path), tokenizer, 512)
    assert _untrained(tokenizer, pairs[1].chosen) == HH_Q


# ---------------------------------------------------------------- the shipped pairs

SCORE_OF_KIND = {"rambling": 0.5, "wrong_answer": 0.0, "refusal_or_off_topic": -0.5}


@pytest.mark.parametrize("name, count", [("quickstart_prefs_train.jsonl", 800), ("quickstart_prefs_eval.jsonl", 128)])
def test_shipped_pairs_load_with_graded_margins(tokenizer, name, count):
    pairs = load_pairs(f"shipped:{name}", tokenizer, 512, with_margin=True)
    _, rows = load_examples(f"shipped:{name}", (PREFERENCE,))
    assert len(pairs) == len(rows) == count
    assert {p.margin for p in pairs} == {0.5, 1.0, 1.5}
    for pair, row in zip(pairs, rows):
        fields = row.fields
        assert fields["score_chosen"] == 1.0
        assert pair.margin == 1.0 - SCORE_OF_KIND[fields["kind"]]
        # nothing truncated: each side is the whole rendered conversation, trained on its answer only
        for encoded, side in ((pair.chosen, "chosen"), (pair.rejected, "rejected")):
            (answer,) = fields[side]
            assert tokenizer.decode(encoded.input_ids) == tokenizer.apply_chat_template(
                fields["prompt"] + [answer], tokenize=False)
            assert _runs(tokenizer, encoded) == [answer["content"] + EOS + "\n"]


# ---------------------------------------------------------------- scoring routes pairs the same way


def test_score_file_scores_what_encode_pair_encodes(tmp_path, tiny_model, tokenizer, monkeypatch):
    from rayalign.pipelines import score
    from rayalign.rewards.reward_model import RewardModelScorer

    scorer = RewardModelScorer(tiny_model, 512)  # the reward head is random: score with this one instance
    monkeypatch.setattr(score, "RewardModelScorer", lambda *args, **kwargs: scorer)
    path = write_jsonl(tmp_path / "uf.jsonl", [UF_ROW, {"chosen": HH_Q + " 4", "rejected": HH_Q + " 5"}])
    out = tmp_path / "scored.jsonl"
    with open(out, "w") as handle:
        assert score.score_file(tiny_model, path, handle, max_length=512) == 2
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert scored[0]["prompt_id"] == "abc123" and scored[1]["chosen"] == HH_Q + " 4"
    assert scored[0]["reward_chosen"] != scored[0]["reward_rejected"]
    _, rows = load_examples(path, (PREFERENCE,))
    for result, row in zip(scored, rows):
        pair = encode_pair(row, tokenizer, 512)
        expected = scorer.score_encoded([pair.chosen, pair.rejected])
        assert [result["reward_chosen"], result["reward_rejected"]] == pytest.approx(expected, abs=1e-5)


# ---------------------------------------------------------------- soft labels (RLAIF)


def test_soft_labels_reach_the_batch_unless_off(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "soft.jsonl", [dict(GOOD, soft_label=0.8), dict(GOOD, soft_label=1)])
    for mode in ("auto", "on"):
        pairs = load_pairs(path, tokenizer, 512, soft_labels=mode)
        assert [p.target for p in pairs] == [0.8, 1.0]
        batch = collate_pairs(pairs, tokenizer.pad_token_id)
        assert batch["target"].dtype == torch.float32
        assert batch["target"].tolist() == pytest.approx([0.8, 1.0])
    off = load_pairs(path, tokenizer, 512, soft_labels="off")
    assert [p.target for p in off] == [None, None]
    assert "target" not in collate_pairs(off, tokenizer.pad_token_id)
    hard = write_jsonl(tmp_path / "hard.jsonl", [GOOD, GOOD])
    assert [p.target for p in load_pairs(hard, tokenizer, 512, soft_labels="auto")] == [None, None]


def _soft_label_error(tmp_path, tokenizer, rows, mode) -> DataError:
    path = write_jsonl(tmp_path / "soft.jsonl", rows)
    with pytest.raises(DataError) as info:
        load_pairs(path, tokenizer, 512, soft_labels=mode)
    assert info.value.source == path and info.value.field == "soft_label"
    assert str(info.value).startswith(f"{path}, line {info.value.line}, field 'soft_label': ")
    return info.value


@pytest.mark.parametrize("value, message", [(True, "expected a number, got True"), ("0.8", "expected a number"),
                                            (float("nan"), "expected a number, got nan"),
                                            (1.5, "expected a probability in [0, 1], got 1.5"),
                                            (-0.1, "expected a probability in [0, 1], got -0.1")])
def test_bad_soft_label_names_file_line_and_field(tmp_path, tokenizer, value, message):
    rows = [dict(GOOD, soft_label=0.5), dict(GOOD, soft_label=value)]
    error = _soft_label_error(tmp_path, tokenizer, rows, "auto")
    assert error.line == 2 and message in str(error)
    assert [p.target for p in load_pairs(error.source, tokenizer, 512, soft_labels="off")] == [None, None]


def test_missing_soft_labels(tmp_path, tokenizer):
    rows = [dict(GOOD, soft_label=0.9), GOOD, dict(GOOD, soft_label=0.7)]
    error = _soft_label_error(tmp_path, tokenizer, rows, "auto")
    assert error.line == 2 and "missing, but line 1 has one" in str(error)
    assert _soft_label_error(tmp_path, tokenizer, rows, "on").line == 2
    error = _soft_label_error(tmp_path, tokenizer, [GOOD, GOOD], "on")
    assert error.line == 1 and "rm.soft_labels is on, but the row has no `soft_label`" in str(error)
