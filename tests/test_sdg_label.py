"""`rayalign sdg label`: drafts for the user's own prompts and preference suggestions for their
pairs, by a local model on the rollout workers, each with a confidence, ready for review."""

from __future__ import annotations

import json
import math

from conftest import write_jsonl
from rayalign.cli import main
from rayalign.review.items import Review


def label(tmp_path, tiny_model, data, name) -> int:
    return main(["sdg", "label", "--data", str(data), f"output_dir={tmp_path}", f"name={name}",
                 f"teacher.model={tiny_model}", f"labeler.model={tiny_model}", "teacher.answer_max_tokens=8",
                 "rollout.engine=hf", "rollout.cpus_per_worker=1", "rollout.max_model_len=512",
                 "logging.progress=false"])


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_drafts_for_prompts_and_suggestions_for_pairs_with_confidences(ray_cluster, tiny_model, tmp_path):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [
        {"instruction": "Name a fruit.", "output": "apple"},
        {"prompt": "What colour is the sky?"},
        {"messages": [{"role": "user", "content": "Say hello."}]}])
    assert label(tmp_path, tiny_model, prompts, "drafts") == 0
    run = tmp_path / "drafts"
    items = read(run / "items.jsonl")
    assert sorted(i["id"] for i in items) == ["u-1", "u-2", "u-3"]
    assert {i["instruction"] for i in items} == {"Name a fruit.", "What colour is the sky?", "Say hello."}
    assert all(i["kind"] == "sft" and i["origin"] == "user" and i["teacher"] == tiny_model for i in items)
    assert all(isinstance(i["answer"], str) and 0 < i["confidence"] <= 1 for i in items)
    assert [i["confidence"] for i in items] == sorted(i["confidence"] for i in items)  # least sure first
    assert all(i["answer"] != "apple" for i in items)  # the user's own answer is not offered as the draft
    assert len(Review(run / "items.jsonl", tmp_path / "decisions.jsonl").items) == 3  # ready for review

    before = (run / "suggestions.partial.jsonl").read_text()
    assert label(tmp_path, tiny_model, prompts, "drafts") == 0  # all done: nothing asked again
    assert (run / "suggestions.partial.jsonl").read_text() == before

    pairs = write_jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": "Name a fruit.", "a": "An apple.", "b": "A chair."},
        {"prompt": "What is 2 + 2?", "a": "4", "b": "5"}])
    assert label(tmp_path, tiny_model, pairs, "prefs") == 0
    suggestions = read(tmp_path / "prefs" / "items.jsonl")
    assert len(suggestions) == 2 and all(s["kind"] == "preference" for s in suggestions)
    for s, (a, b) in zip(sorted(suggestions, key=lambda s: s["id"]), [("An apple.", "A chair."), ("4", "5")]):
        assert {s["chosen"], s["rejected"]} == {a, b} and "a" not in s and "b" not in s
        assert s["confidence"] in (0.0, 0.5) or 0.5 < s["confidence"] <= 1
        assert math.isclose(s["scores"]["p_chosen"], s["confidence"])
