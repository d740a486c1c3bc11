"""`rayalign advise --measure`: the pieces that turn a user's own case into answers.

Fast tests: the data survey on files with known flaws, the memory estimate worked by hand on the
tiny model, the rules against their thresholds, the reuse of measurements. The real measurement
on the quickstart data with SmolLM2 is in test_advisor_smollm2.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rayalign.advisor import thresholds as rules
from rayalign.advisor.data_survey import survey
from rayalign.advisor.memory import BYTES, estimate, lora_parameters, model_state, shapes
from rayalign.advisor.measure import Memo
from rayalign.cli import main

LIMITS = rules.Thresholds()


def demo(prompt: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}


def test_survey_counts_usable_invalid_and_other_records(tmp_path):
    rows = [json.dumps(demo(f"Name animal number {i} of a zoo {i * 7} {i * 13}", f"animal {i} {i * 3}"))
            for i in range(6)]
    rows.insert(2, "{not json")
    rows.append(json.dumps({"messages": [{"role": "user", "content": "only a question"}]}))   # no answer
    rows.append(json.dumps({"prompt": "a prompt without an answer"}))                       # prompt-only
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    figures = survey(str(tmp_path / "train.jsonl"))
    assert (figures["records"], figures["usable"], figures["invalid"], figures["other_format"]) == (9, 6, 2, 1)
    assert "line 3" in figures["first_errors"][0] and "not valid JSON" in figures["first_errors"][0]
    assert "line 8" in figures["first_errors"][1] and "messages" in figures["first_errors"][1]
    assert figures["near_duplicate_share"] == 0.0


def test_survey_measures_repetition(tmp_path):
    same = [demo("Describe the weather today in one short sentence please", "It is sunny.")] * 4
    (tmp_path / "repeat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in same))
    figures = survey(str(tmp_path / "repeat.jsonl"))
    assert figures["near_duplicate_share"] == 0.75           # every copy after the first
    assert figures["distinct_2"] == pytest.approx(0.25)      # the same bigrams four times
    answer = rules.data_easy(figures, LIMITS)
    assert answer.value == "no" and answer.source == "measured"
    assert "4 usable < 500" in answer.evidence and "75.0% near-duplicates > 10%" in answer.evidence


def test_the_shipped_quickstart_file_is_templated():
    """800 demonstrations written from templates: enough records, but their wording repeats."""
    figures = survey("shipped:quickstart_train.jsonl")
    assert figures["usable"] == 800 and figures["invalid"] == 0
    assert figures["near_duplicate_share"] > LIMITS.max_near_dup and figures["distinct_2"] < LIMITS.min_distinct
    assert rules.data_easy(figures, LIMITS).value == "no"
    assert rules.data_easy(figures, rules.Thresholds(min_distinct=0.2, max_near_dup=0.5)).value == "yes"


def test_memory_estimate_by_hand(tiny_model):
    tensor_shapes = shapes(tiny_model)
    config = json.loads((Path(tiny_model) / "config.json").read_text())
    params = sum(math.prod(shape) for shape in tensor_shapes.values())
    h, layers = config["hidden_size"], config["num_hidden_layers"]
    q = next(s for n, s in tensor_shapes.items() if n.endswith("layers.0.self_attn.q_proj.weight"))
    assert lora_parameters(tensor_shapes, 8, ["q_proj"]) == layers * 8 * (q[0] + q[1])
    # fp32 AdamW without ZeRO: 4 (weights) + 4 (gradients) + 8 (two moments) bytes per parameter
    assert model_state(params, params, "float32", 0, 2) == 16 * params
    # bf16 with ZeRO-2 over 4 workers: weights whole, gradients and 12-byte optimizer state split
    assert model_state(params, params, "bfloat16", 2, 4) == 2 * params + (2 + 12) * params / 4
    assert model_state(params, params, "bfloat16", 3, 4) == 16 * params / 4
    sizes = estimate(tiny_model, dtype="float32", micro_batch=2, seq=16, zero_stage=0, workers=1, lora_r=8,
                     lora_targets=["q_proj"])
    assert sizes["params"] == params
    tokens = 2 * 16
    assert sizes["activations"] == 34 * (BYTES["float32"] / 2) * tokens * h * layers + 12 * tokens * config["vocab_size"]
    assert sizes["full"] - sizes["lora"] == pytest.approx(12 * params - 12 * sizes["lora_params"])  # fp32: no master copy


def test_compute_rule_reads_the_budget():
    figures = {"params": 135e6, "dtype": "float32", "zero_stage": 2, "device": "node", "devices": 1,
               "device_memory": 10 * 2**30, "full_per_device": 7.9 * 2**30, "lora_per_device": 3 * 2**30}
    assert rules.compute(figures, LIMITS).value == "high"                 # 7.9 <= 0.8 * 10
    figures["full_per_device"] = 8.1 * 2**30
    low = rules.compute(figures, LIMITS)
    assert low.value == "low" and "LoRA does not fit" not in low.evidence
    figures["lora_per_device"] = 9 * 2**30
    assert "LoRA does not fit either" in rules.compute(figures, LIMITS).evidence


def test_knowledge_rule_against_the_target():
    figures = {"chosen": "few-shot-6", "variants": 5, "select_by": "total", "dev_prompts": 16,
               "held_out_prompts": 32, "held_out_mean": 0.34}
    assert rules.knows(figures, LIMITS).value == "no"
    answer = rules.knows(figures, rules.Thresholds(target=0.3))
    assert answer.value == "yes" and "0.340 on 32 held-out prompts >= target 0.3" in answer.evidence


@pytest.mark.parametrize("generate, verify, expected", [
    ({"candidates": 16, "kept": 8, "yield": 0.5, "quality": None}, None, "generate"),
    ({"candidates": 16, "kept": 8, "yield": 0.5, "quality": 0.4}, None, None),       # low quality, no labels
    ({"candidates": 16, "kept": 1, "yield": 1 / 16, "quality": None},
     {"pairs": 16, "agreement": 0.9, "first_position_wins": 0.5}, "verify"),
    ({"candidates": 16, "kept": 1, "yield": 1 / 16, "quality": None},
     {"pairs": 16, "agreement": 0.6, "first_position_wins": 0.8}, "neither"),
    (None, {"pairs": 16, "agreement": None, "first_position_wins": None}, "neither"),
    (None, None, None),
])
def test_ai_rule(generate, verify, expected):
    answer = rules.ai(generate, verify, LIMITS)
    assert (answer.value if answer else None) == expected


def test_measurements_are_reused_while_their_inputs_hold(tmp_path):
    data = tmp_path / "eval.jsonl"
    data.write_text('{"prompt": "a"}\n')
    calls = []

    def measure():
        calls.append(1)
        return {"value": len(calls)}

    memo = Memo(tmp_path / "out")
    assert memo.get("knows", {"eval": str(data), "target": 1}, measure)["value"] == 1
    assert Memo(tmp_path / "out").get("knows", {"eval": str(data), "target": 1}, measure)["value"] == 1
    stale = tmp_path / "out" / "prompt"
    stale.mkdir()
    data.write_text('{"prompt": "b"}\n')          # same path, other content: measured again, old run removed
    assert Memo(tmp_path / "out").get("knows", {"eval": str(data), "target": 1}, measure, stale)["value"] == 2
    assert not stale.exists() and len(calls) == 2


def test_measure_needs_model_and_eval(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["advise", "--measure", "--model", "smollm2-135m-instruct"]) == 2
    assert "--measure needs --model" in capsys.readouterr().err
    assert main(["advise", "--measure", "--model", "m", "--eval", "no/such/file.jsonl"]) == 2
    assert "--eval: no/such/file.jsonl" in capsys.readouterr().err
