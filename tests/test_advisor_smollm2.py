"""`rayalign advise --measure` on the shipped quickstart data with the real SmolLM2-135M-Instruct.

Every question is answered from a real run: the prompting pipeline on held-out prompts, the survey
of the training file, the memory estimate against this Ray cluster, a self-instruct round and the
judge on labelled pairs. Then the evidence changes (the one task type the base model already does
well, writing a sentence that includes a given word) and, with the same target (0.7, so that one
answer more or less of 21 does not flip it: the base model scored 0.81 there, 0.16 on the whole
task), so does the recommendation: prompting. The unchanged measurement is reused.
"""

from __future__ import annotations

import json

import pytest

from conftest import write_jsonl
from rayalign.cli import main
from rayalign.config import load_config
from rayalign.data.readers import read_rows

pytestmark = pytest.mark.slow

QUESTIONS = ("knows", "data_easy", "compute", "ai")


def rows(name: str, keep=lambda fields: True, limit: int | None = None) -> list[dict]:
    return [row.fields for row in read_rows(f"shipped:{name}") if keep(row.fields)][:limit]


def advise(tmp_path, capfd, eval_file, train, *extra) -> tuple[str, dict]:
    labels = write_jsonl(tmp_path / "labels.jsonl", rows("quickstart_prefs_eval.jsonl", limit=16))
    code = main(["advise", "--measure", "--model", "smollm2-135m-instruct", "--eval", eval_file, "--train", train,
                 "--labels", labels, "--verify", "rayalign.data.quickstart_verify:verify_item", "--samples", "16",
                 "--target", "0.7", "--out", str(tmp_path / "advise"), *extra])
    out = capfd.readouterr().out
    assert code == 0, out
    return out, json.loads((tmp_path / "advise" / "evidence.json").read_text())


def test_measured_answers_with_their_evidence_and_a_changed_eval_set_changes_the_method(tmp_path, capfd):
    eval_file = write_jsonl(tmp_path / "eval.jsonl", rows("quickstart_eval.jsonl", limit=32))
    out, evidence = advise(tmp_path, capfd, eval_file, "shipped:quickstart_train.jsonl",
                           "--write", str(tmp_path / "recipe.yaml"))
    answers, figures = evidence["answers"], evidence["figures"]
    for key in QUESTIONS:
        assert answers[key]["source"] == "measured" and answers[key]["evidence"], key
    assert out.count("(measured)") == 4 and out.count("evidence: ") == 4
    # each figure is the measured runs' own: the prompting run's held-out mean, the label run's agreement
    prompt_report = json.loads((tmp_path / "advise" / "prompt" / "report.json").read_text())
    assert figures["knows"]["held_out_mean"] == prompt_report["held_out"]["scores"]["total"]["mean"]
    assert figures["knows"]["held_out_prompts"] == 32 and answers["knows"]["value"] == "no"
    assert (figures["data_easy"]["usable"], figures["data_easy"]["invalid"]) == (800, 0)
    assert figures["compute"]["params"] == 134_515_008
    label_report = json.loads((tmp_path / "advise" / "label" / "report.json").read_text())
    assert figures["verify"]["agreement"] == label_report["labeling"]["agreement_both_orders_hard"]["agreement"]
    assert figures["generate"]["candidates"] == 16
    sdg_card = json.loads((tmp_path / "advise" / "sdg" / "card.json").read_text())
    assert figures["generate"]["kept"] == sdg_card["kept"]
    # the method follows from the answers, and its recipe loads and validates
    method = out.split("Recommended: ", 1)[1].splitlines()[0]
    assert not method.startswith("prompting")
    written = (tmp_path / "recipe.yaml").read_text()
    assert load_config(str(tmp_path / "recipe.yaml")).model.name_or_path == "smollm2-135m-instruct"
    assert written.startswith(f"# rayalign advise: {method}")

    # a task the base model already does (a sentence that includes a given word), with the same
    # target: its training and eval rows of that type; the same model, labels and cluster
    def easy(fields):
        return fields["task"] == "include_word"

    eval_file = write_jsonl(tmp_path / "easy_eval.jsonl", rows("quickstart_eval.jsonl", easy))
    train = write_jsonl(tmp_path / "easy_train.jsonl", rows("quickstart_train.jsonl", easy))
    out, evidence = advise(tmp_path, capfd, eval_file, train)
    assert "\nRecommended: prompting" in "\n" + out
    assert evidence["answers"]["knows"]["value"] == "yes"
    assert evidence["figures"]["knows"]["held_out_prompts"] == 21
    assert evidence["figures"]["data_easy"]["usable"] == 133
    assert "verify: measured before with the same inputs" in out      # the labels did not change
    assert "knows: measured before" not in out and "generate: measured before" not in out
