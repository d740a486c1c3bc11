"""The shipped quickstart dataset: reproducible, correct by its own checks, honestly held out
(in items for eval, in items and prompt wording for eval_phrasing)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from rayalign.data import quickstart
from rayalign.data.quickstart_banks import PHRASING_TEMPLATES, TEMPLATES

SHIPPED = Path(quickstart.__file__).parent / "shipped"
SIZES = {**quickstart.SHIPPED_SIZES, "eval_phrasing": quickstart.PHRASING_SIZE}


def _load(split: str) -> list[dict]:
    with open(SHIPPED / f"quickstart_{split}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_regenerating_with_seed_0_reproduces_the_shipped_files(tmp_path):
    paths = quickstart.write_shipped(str(tmp_path), seed=0)
    assert set(paths) == {"train", "eval", "eval_phrasing"}
    for split, path in paths.items():
        assert Path(path).read_bytes() == (SHIPPED / f"quickstart_{split}.jsonl").read_bytes()


@pytest.mark.parametrize("split", SIZES)
def test_shipped_records_are_well_formed_and_pass_their_checks(split):
    records = _load(split)
    assert len(records) == SIZES[split]
    for record in records:
        assert record["task"] in quickstart.TASKS
        user, assistant = record["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        assert quickstart.check(record["check"], assistant["content"]), record
        assert quickstart.prompt_messages(record) == [user]


@pytest.mark.parametrize("split", SIZES)
def test_families_are_balanced(split):
    counts = Counter(record["task"] for record in _load(split))
    assert set(counts) == set(quickstart.TASKS)
    assert max(counts.values()) - min(counts.values()) <= 1


def _item(record: dict):
    """What a record is about: its unordered number pair, or its written answer."""
    if record["task"] == "addition":
        return tuple(sorted(map(int, re.findall(r"\d+", record["messages"][0]["content"]))))
    return record["messages"][1]["content"]


def test_no_eval_prompt_or_item_appears_in_train():
    train, eval_ = _load("train"), _load("eval")
    train_prompts = {r["messages"][0]["content"] for r in train}
    assert not train_prompts & {r["messages"][0]["content"] for r in eval_}
    train_items = {(r["task"], _item(r)) for r in train}
    assert not train_items & {(r["task"], _item(r)) for r in eval_}


def _bank_part(part: str) -> set:
    """(task, what each item is about, as `_item` gives it) for one part of the banks."""
    return {(task, tuple(sorted(item)) if task == "addition" else item[-1])
            for task in quickstart.TASKS for item in quickstart.split_items(task, part)}


def test_phrasing_split_asks_only_eval_items():
    phrasing_items = {(r["task"], _item(r)) for r in _load("eval_phrasing")}
    assert phrasing_items <= _bank_part("eval")
    assert not phrasing_items & _bank_part("train")


def _pattern(template: str) -> re.Pattern:
    """A regex that matches every prompt the template can render, whatever the item."""
    return re.compile("(.+)".join(map(re.escape, re.split(r"\{\w+\}", template))))


def test_no_training_template_words_a_phrasing_prompt():
    seen = {r["messages"][0]["content"] for split in ("train", "eval") for r in _load(split)}
    for record in _load("eval_phrasing"):
        prompt, task = record["messages"][0]["content"], record["task"]
        assert prompt not in seen
        assert any(_pattern(t).fullmatch(prompt) for t in PHRASING_TEMPLATES[task]), prompt
        leaked = [t for ts in TEMPLATES.values() for t in ts if _pattern(t).fullmatch(prompt)]
        assert not leaked, (prompt, leaked)


def _four_word_runs(template: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\{\}|\w+", re.sub(r"\{\w+\}", " {} ", template).lower())
    return {tuple(words[i:i + 4]) for i in range(len(words) - 3)}


def test_phrasing_templates_are_worded_apart_from_the_training_ones():
    assert set(PHRASING_TEMPLATES) == set(TEMPLATES) == set(quickstart.TASKS)
    training = set().union(*(_four_word_runs(t) for ts in TEMPLATES.values() for t in ts))
    for task, templates in PHRASING_TEMPLATES.items():
        assert len(templates) >= 3, task
        for template in templates:
            assert not _four_word_runs(template) & training, template


def test_generate_is_deterministic_and_seeded():
    assert quickstart.generate("eval", 30, seed=3) == quickstart.generate("eval", 30, seed=3)
    assert quickstart.generate("eval", 30, seed=3) != quickstart.generate("eval", 30, seed=4)
    with pytest.raises(ValueError):
        quickstart.generate("test", 10)


@pytest.mark.parametrize("spec, completion", [
    ({"type": "number", "answer": 12}, "12"),
    ({"type": "number", "answer": 12}, " 12. "),
    ({"type": "number", "answer": 12}, '"12"'),
    ({"type": "one_word", "answer": "Paris"}, "Paris."),
    ({"type": "one_word", "answer": "Paris"}, "'paris'"),
    ({"type": "include_word", "word": "blue"}, "The sea is BLUE today."),
    ({"type": "max_words", "n": 5}, "A star at our center."),
    ({"type": "lowercase"}, "the sky is blue."),
    ({"type": "starts_with", "prefix": "Yes"}, "  Yes, it does."),
    ({"type": "starts_with", "prefix": "Yes"}, "Yes"),
])
def test_lenient_right_answers_pass(spec, completion):
    assert quickstart.check(spec, completion)


@pytest.mark.parametrize("spec, completion", [
    ({"type": "number", "answer": 12}, "The answer is 12"),
    ({"type": "number", "answer": 12}, "13"),
    ({"type": "number", "answer": 12}, "12 apples"),
    ({"type": "number", "answer": 12}, ""),
    ({"type": "one_word", "answer": "Paris"}, "Paris is the capital"),
    ({"type": "one_word", "answer": "Paris"}, "Lyon"),
    ({"type": "include_word", "word": "blue"}, "The sea is green today."),
    ({"type": "include_word", "word": "blue"}, "The bluest sea I have seen."),
    ({"type": "max_words", "n": 5}, "The sun is a very hot star."),
    ({"type": "max_words", "n": 5}, "   "),
    ({"type": "lowercase"}, "Hello there"),
    ({"type": "lowercase"}, ""),
    ({"type": "starts_with", "prefix": "Yes"}, "No."),
    ({"type": "starts_with", "prefix": "Yes"}, "Yesterday it rained."),
    ({"type": "starts_with", "prefix": "Yes"}, "Well, yes."),
])
def test_wrong_answers_fail(spec, completion):
    assert not quickstart.check(spec, completion)


def test_unknown_check_type_is_an_error():
    with pytest.raises(ValueError):
        quickstart.check({"type": "rhymes"}, "moon")
