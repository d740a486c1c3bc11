"""The method advisor (`rayalign advise`): the framework's table, the recipes it writes, the prompts.

The framework asks four questions. The issue counts 16 combinations: four two-way questions,
the fourth being "can an existing model make the data?" (generate: yes, neither: no). The
framework splits that answer three ways (generate / verify / neither), so the table below is the
whole product, 2 x 2 x 2 x 3 = 24 rows: the 16 plus the 8 `verify` rows. It is written by hand
from the framework, not computed: a model that knows the task is prompted, whatever else holds
(12 rows); easy data means SFT, full or LoRA by compute, whatever the AI could do (6 rows); only
when data is scarce does the AI's ability choose synthetic data, RLAIF or RLHF (6 rows).
"""

from __future__ import annotations

import sys

import pytest

from rayalign.advisor.framework import QUESTION, Answer, Answers, next_question, recommend
from rayalign.advisor.plans import Target
from rayalign.cli import build_parser
from rayalign.cli.advise import render
from rayalign.config import ConfigError, load_config

# knows, data_easy, compute, ai -> recommendation key, first recipe
TABLE = [
    ("yes", "yes", "high", "generate", "prompting", "quickstart_prompt"),
    ("yes", "yes", "high", "verify", "prompting", "quickstart_prompt"),
    ("yes", "yes", "high", "neither", "prompting", "quickstart_prompt"),
    ("yes", "yes", "low", "generate", "prompting", "quickstart_prompt"),
    ("yes", "yes", "low", "verify", "prompting", "quickstart_prompt"),
    ("yes", "yes", "low", "neither", "prompting", "quickstart_prompt"),
    ("yes", "no", "high", "generate", "prompting", "quickstart_prompt"),
    ("yes", "no", "high", "verify", "prompting", "quickstart_prompt"),
    ("yes", "no", "high", "neither", "prompting", "quickstart_prompt"),
    ("yes", "no", "low", "generate", "prompting", "quickstart_prompt"),
    ("yes", "no", "low", "verify", "prompting", "quickstart_prompt"),
    ("yes", "no", "low", "neither", "prompting", "quickstart_prompt"),
    ("no", "yes", "high", "generate", "sft-full", "sft_full"),
    ("no", "yes", "high", "verify", "sft-full", "sft_full"),
    ("no", "yes", "high", "neither", "sft-full", "sft_full"),
    ("no", "yes", "low", "generate", "sft-lora", "quickstart"),
    ("no", "yes", "low", "verify", "sft-lora", "quickstart"),
    ("no", "yes", "low", "neither", "sft-lora", "quickstart"),
    ("no", "no", "high", "generate", "synthetic-full", "sdg_quickstart"),
    ("no", "no", "high", "verify", "rlaif-full", "rlaif_label"),
    ("no", "no", "high", "neither", "rlhf-full", "reward_model"),
    ("no", "no", "low", "generate", "synthetic-lora", "sdg_quickstart"),
    ("no", "no", "low", "verify", "rlaif-lora", "rlaif_label"),
    ("no", "no", "low", "neither", "rlhf-lora", "reward_model"),
]

# every step of each method: (subcommand, recipe; None for steps that run no recipe)
CHAINS = {
    "prompting": [("prompt", "quickstart_prompt")],
    "sft-full": [("sft", "sft_full")],
    "sft-lora": [("sft", "quickstart")],
    "synthetic-full": [("sdg generate", "sdg_quickstart"), ("review serve", None), ("review import", None),
                       ("sft", "sft_full")],
    "synthetic-lora": [("sdg generate", "sdg_quickstart"), ("review serve", None), ("review import", None),
                       ("sft", "quickstart")],
    "rlaif-full": [("rlaif label", "rlaif_label"), ("rm", "rlaif_rm"), ("rlhf", "rlaif_grpo")],
    "rlaif-lora": [("rlaif label", "rlaif_label"), ("rm", "rlaif_rm"), ("rlhf", "rlaif_grpo")],
    "rlhf-full": [("rm", "reward_model"), ("rlhf", "rlhf_grpo")],
    "rlhf-lora": [("rm", "reward_model"), ("rlhf", "rlhf_grpo")],
}
TARGET = Target(model="my-model", train="my_train.jsonl", eval="my_eval.jsonl", teacher="my-teacher",
                labels="my_pairs.jsonl")


def answers(knows, data_easy, compute, ai) -> Answers:
    return Answers(Answer(knows), Answer(data_easy), Answer(compute), Answer(ai))


def run_advise(argv: list[str], tty: bool, monkeypatch) -> int:
    monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"isatty": lambda self: tty})())
    args = build_parser().parse_args(["advise", *argv])
    return args.handler(args)


def test_the_table_covers_every_combination_once():
    combos = {row[:4] for row in TABLE}
    assert len(combos) == len(TABLE) == 2 * 2 * 2 * 3
    assert {key for *_, key, _ in TABLE} == set(CHAINS)


@pytest.mark.parametrize("knows,data_easy,compute,ai,key,recipe", TABLE)
def test_every_combination_maps_to_the_framework(knows, data_easy, compute, ai, key, recipe):
    recommendation = recommend(answers(knows, data_easy, compute, ai), TARGET)
    assert (recommendation.key, recommendation.recipe) == (key, recipe)
    assert [(step.subcommand, step.recipe) for step in recommendation.plan] == CHAINS[key]
    asked = [step.question.key for step in recommendation.steps]
    assert asked == (["knows"] if knows == "yes" else ["knows", "data_easy", "compute"]
                     + (["ai"] if data_easy == "no" else []))
    assert all(step.reasoning for step in recommendation.steps)


@pytest.mark.parametrize("key", sorted(CHAINS))
def test_every_step_of_every_method_validates(key):
    row = next(row for row in TABLE if row[4] == key)
    recommendation = recommend(answers(*row[:4]), TARGET)
    configs = [load_config(step.recipe, step.overrides) for step in recommendation.plan if step.recipe]
    trained = [c for c in configs if c.method in ("sft", "rm", "rlhf")]
    for config in trained:
        assert config.model.name_or_path == "my-model"
        assert (config.model.lora is None) == key.endswith("-full")   # compute: full weights or LoRA
    for config in configs:
        if config.method == "rlhf":   # RL is paid by the reward model of the step before
            assert [r.path for r in config.rewards] == [f"runs/{key.split('-')[0]}/rm/final"]


@pytest.mark.parametrize("key", sorted(CHAINS))
def test_the_written_recipe_loads_and_runs_the_first_step(key, tmp_path, monkeypatch, capsys):
    knows, data_easy, compute, ai = next(row for row in TABLE if row[4] == key)[:4]
    out = tmp_path / "recipe.yaml"
    flags = ["--knows", knows, "--data-easy", data_easy, "--compute", compute, "--ai", ai, "--model", "my-model",
             "--train", "my_train.jsonl", "--eval", "my_eval.jsonl", "--labels", "my_pairs.jsonl",
             "--write", str(out)]
    assert run_advise(flags, tty=False, monkeypatch=monkeypatch) == 0
    config = load_config(str(out))
    first = CHAINS[key][0]
    assert config.method == {"prompt": "prompt", "sft": "sft", "sdg generate": "sdg_generate",
                             "rlaif label": "rlaif_label", "rm": "rm"}[first[0]]
    expected_train = "my_pairs.jsonl" if key.startswith("rlhf") else "my_train.jsonl"
    assert config.data.train == expected_train
    printed = capsys.readouterr().out
    assert f"rayalign {first[0]} --config {out}" in printed


def test_prompting_needs_only_the_first_answer_and_reports_unused_flags(monkeypatch, capsys):
    assert run_advise(["--knows", "yes", "--ai", "verify"], tty=False, monkeypatch=monkeypatch) == 0
    printed = capsys.readouterr().out
    assert "Recommended: prompting" in printed
    assert "rayalign prompt --config quickstart_prompt" in printed
    assert "not used:\n    --ai verify (flag)" in printed


def test_a_missing_flag_off_a_terminal_is_an_error_naming_it(monkeypatch):
    with pytest.raises(ConfigError, match="--data-easy is missing"):
        run_advise(["--knows", "no"], tty=False, monkeypatch=monkeypatch)
    with pytest.raises(ConfigError, match="--ai is missing.*--ai generate\\|verify\\|neither"):
        run_advise(["--knows", "no", "--data-easy", "no", "--compute", "low"], tty=False, monkeypatch=monkeypatch)


def test_interactive_asks_each_open_question_with_its_reasoning(monkeypatch, capsys):
    typed = iter(["no", "maybe", "n", "l", "v"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(typed))
    assert run_advise(["--model", "my-model"], tty=True, monkeypatch=monkeypatch) == 0
    printed = capsys.readouterr().out
    for key in ("knows", "data_easy", "compute", "ai"):
        assert QUESTION[key].text in printed and QUESTION[key].why in printed
    assert "answer one of: yes, no" in printed   # "maybe" is asked again
    assert "Recommended: RLAIF" in printed and "(LoRA)" in printed
    assert "no (prompt)" in printed
    assert "rayalign rlaif label --config rlaif_label" in printed


def test_interactive_asks_only_what_the_flags_leave_open(monkeypatch, capsys):
    monkeypatch.setattr("builtins.input", lambda prompt: "high")
    assert run_advise(["--knows", "no", "--data-easy", "yes"], tty=True, monkeypatch=monkeypatch) == 0
    printed = capsys.readouterr().out
    assert QUESTION["knows"].why not in printed and QUESTION["compute"].why in printed
    assert "Recommended: SFT (full fine-tuning)" in printed


def test_measured_answers_show_their_evidence():
    measured = Answers(Answer("no", "measured", "best prompt 0.17 on eval, target 0.6"), Answer("yes"), Answer("low"))
    text = render(recommend(measured), unused=[])
    assert "no (measured)" in text and "evidence: best prompt 0.17 on eval, target 0.6" in text


def test_answers_are_checked_and_the_walk_stops_at_the_first_open_question():
    with pytest.raises(ValueError, match="--compute"):
        Answers(compute=Answer("lots"))
    assert next_question(Answers(Answer("no"), compute=Answer("low"))).key == "data_easy"
    assert next_question(Answers(Answer("yes"))) is None
    with pytest.raises(ValueError, match="--ai is not answered"):
        recommend(Answers(Answer("no"), Answer("no"), Answer("high")))


def test_run_carries_out_the_plan(ray_cluster, tiny_model, tmp_path, monkeypatch, capfd):
    """`--run`: the recommended recipe runs as its own command would, in runs/ under the working folder."""
    from conftest import write_jsonl
    from rayalign.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    chat = [{"role": "user", "content": "What is 3 + 4? Answer with just the number."},
            {"role": "assistant", "content": "7"}]
    demos = write_jsonl(tmp_path / "demos.jsonl", [{"messages": chat}] * 8)
    assert main(["advise", "--knows", "no", "--data-easy", "yes", "--compute", "low", "--model", tiny_model,
                 "--train", demos, "--eval", demos, "--run"]) == 0
    assert "[advise] running: rayalign sft --config quickstart" in capfd.readouterr().out
    run = tmp_path / "runs" / "quickstart" / "sft"
    assert (run / "final" / "adapter_config.json").is_file()
    assert load_config(str(run / "config.yaml")).data.train == demos
