"""`rayalign advise --measure` on the shipped quickstart data with the real SmolLM2-135M-Instruct.

Every question is answered from a real run: the prompting pipeline on held-out prompts, the survey
of the training file, the memory estimate against this Ray cluster, a self-instruct round and the
judge on labelled pairs. Then the evidence changes (an eval set of the one task type the base
model already does well, writing a sentence that includes a given word) and so does the
recommendation: prompting. The unchanged measurements are reused, not run again.
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


def advise(tmp_path, capsys, eval_file, *extra) -> tuple[str, dict]:
    labels = write_jsonl(tmp_path / "labels.jsonl", rows("quickstart_prefs_eval.jsonl", limit=16))
    code = main(["advise", "--measure", "--model", "smollm2-135m-instruct", "--eval", eval_file,
                 "--train", "shipped:quickstart_train.jsonl", "--labels", labels,
                 "--verify", "rayalign.data.quickstart_verify:verify_item", "--samples", "16",
                 "--out", str(tmp_path / "advise"), *extra])
    out = capsys.readouterr().out
    assert code == 0, out
    return out, json.loads((tmp_path / "advise" / "evidence.json").read_text())


def test_measured_answers_with_their_evidence_and_a_changed_eval_set_changes_the_method(tmp_path, capsys):
    eval_file = write_jsonl(tmp_path / "eval.jsonl", rows("quickstart_eval.jsonl", limit=32))
    out, evidence = advise(tmp_path, capsys, eval_file, "--write", str(tmp_path / "recipe.yaml"))
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

    # an eval set the base model already passes: the same model, training file, labels and cluster
    easy = write_jsonl(tmp_path / "easy.jsonl", rows("quickstart_eval.jsonl", lambda f: f["task"] == "include_word"))
    out, evidence = advise(tmp_path, capsys, easy)
    assert out.startswith("Recommended: prompting") or "\nRecommended: prompting" in out
    assert evidence["answers"]["knows"]["value"] == "yes"
    assert evidence["figures"]["knows"]["held_out_prompts"] == 21
    assert "generate: measured before with the same inputs" in out
    assert "verify: measured before with the same inputs" in out
    assert "knows: measured before" not in out
