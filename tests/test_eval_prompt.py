"""`rayalign eval` and `rayalign prompt` end to end on a tiny model with real rollout workers
(vLLM, and HF generate) and real reward sources: figures known in advance, intervals, the
per-task split, several samples, and prompt selection on the dev split only."""

from __future__ import annotations

import json

import pytest

from conftest import write_jsonl
from rayalign.config import RewardSourceConfig, RolloutConfig, load_config
from rayalign.data.prompting import PromptVariant, read_prompt_run
from rayalign.data.prompts import encode_prompt
from rayalign.evaluation.evaluate import Sampling
from rayalign.evaluation.stats import wilson
from rayalign.pipelines.evaluate import EvalRequest, run_eval
from tiny_model import build_tiny_model

KNOWN = RewardSourceConfig(type="function", path="rl_rewards:from_column", name="known")
QUESTIONS = ["What is 3 + 4?", "Write one short sentence about the sea.", "What is the capital of France?",
             "Yes or No?", "the quick brown fox", "What is 2 + 2?"]


def rows(values: list[float]) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"{QUESTIONS[i % 6]} ({i})"},
                          {"role": "assistant", "content": "Paris"}],
             "task": "odd" if i % 2 else "even", "value": value} for i, value in enumerate(values)]


@pytest.fixture(scope="module")
def vllm_model(tmp_path_factory) -> str:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-vllm"), hidden_size=64, heads=2)  # vLLM CPU head size 32


def test_eval_reports_known_means_with_intervals_per_task(ray_cluster, vllm_model, tmp_path):
    values = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]   # 8 of 12; even rows 4 of 6, odd 4 of 6
    data = write_jsonl(tmp_path / "eval.jsonl", rows(values))
    [result] = run_eval(EvalRequest(vllm_model, [data], [KNOWN], sampling=Sampling(1, 0.0, 8),
                                    rollout=RolloutConfig(cpus_per_worker=1, max_model_len=128, dtype="float32"),
                                    out_dir=str(tmp_path / "out")))
    assert result["prompts"] == 12 and len(result["answers"]) == 12
    total = result["scores"]["total"]
    assert total["mean"] == pytest.approx(8 / 12) and (total["low"], total["high"]) == pytest.approx(wilson(8, 12))
    assert result["scores"]["known"] == total
    even, odd = values[0::2], values[1::2]
    assert result["by_task"]["even"]["known"]["mean"] == pytest.approx(sum(even) / 6)
    assert result["by_task"]["odd"]["known"]["mean"] == pytest.approx(sum(odd) / 6)
    assert result["by_task"]["odd"]["known"]["n"] == 6
    assert [a["scores"]["known"] for a in result["answers"]] == values
    assert all(1 <= a["tokens"] <= 8 for a in result["answers"])
    assert result["response_length"]["mean"] == pytest.approx(sum(a["tokens"] for a in result["answers"]) / 12)
    saved = json.loads((tmp_path / "out" / "eval" / "eval.json").read_text())
    assert saved["scores"] == result["scores"] and saved["data_label"] == "eval"


def test_eval_with_samples_gives_pass_at_k_and_the_prompt_as_unit(ray_cluster, tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "eval.jsonl", rows([1.0, 0.0, 0.0, 1.0]))
    [result] = run_eval(EvalRequest(tiny_model, [data], [KNOWN], sampling=Sampling(4, 1.0, 6),
                                    rollout=RolloutConfig(engine="hf", cpus_per_worker=1, max_model_len=128,
                                                          dtype="float32")))
    assert result["sampling"] == {"samples": 4, "temperature": 1.0, "max_new_tokens": 6}
    assert result["scores"]["known"]["n"] == 4 and result["scores"]["known"]["mean"] == pytest.approx(0.5)
    assert result["pass_at_k"]["known"] == pytest.approx({"1": 0.5, "2": 0.5, "4": 0.5})


def test_few_shot_variant_renders_through_the_chat_template(tiny_model):
    from rayalign.models.loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_model)
    variant = PromptVariant("shots", system="Be brief.", template="Q: {prompt}\nA:",
                            examples=[{"prompt": "What is 1 + 1?", "answer": "2"}])
    messages = variant.apply("What is 3 + 4?")
    assert messages == [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Q: What is 1 + 1?\nA:"}, {"role": "assistant", "content": "2"},
                        {"role": "user", "content": "Q: What is 3 + 4?\nA:"}]
    text = tokenizer.decode(encode_prompt(messages, tokenizer))
    assert text.index("Be brief.") < text.index("What is 1 + 1?") < text.index("2<|im_end|>") \
        < text.index("What is 3 + 4?")
    assert text.endswith("<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="exactly once"):
        PromptVariant("bad", template="no placeholder")


def test_prompt_choice_uses_the_dev_split_only(ray_cluster, vllm_model, tmp_path, monkeypatch):
    """Every variant is scored on dev prompts drawn from the training file; the held-out prompts
    are asked once, with the chosen variant only, after the choice."""
    import rayalign.pipelines.prompting as prompting

    train = write_jsonl(tmp_path / "train.jsonl", rows([1.0] * 24))
    held = write_jsonl(tmp_path / "held.jsonl", [{**r, "messages": [{"role": "user", "content": f"held {i}"},
                                                                     r["messages"][1]]}
                                                  for i, r in enumerate(rows([0.0] * 6))])
    recipe = tmp_path / "prompt.yaml"
    recipe.write_text(json.dumps({
        "method": "prompt", "name": "p", "output_dir": str(tmp_path / "runs"),
        "model": {"name_or_path": vllm_model}, "data": {"train": train, "eval": held, "max_length": 256},
        "prompt": {"dev_samples": 8, "variants": [{"name": "a"}, {"name": "b", "system": "Be brief.", "shots": 2}]},
        "rewards": [KNOWN.model_dump()], "rollout": {"max_new_tokens": 6, "dtype": "float32", "cpus_per_worker": 1},
        "placement": {"cpus_per_worker": 1}}))
    asked = []  # (variant, data file, the questions) of every evaluation, in order
    real = prompting.evaluate

    def spy(examples, generate, score, tokenizer, sampling, about):
        asked.append((about["variant"], about["data"], [e.prompt[0]["content"] for e in examples]))
        return real(examples, generate, score, tokenizer, sampling, about)

    monkeypatch.setattr(prompting, "evaluate", spy)
    report = prompting.run_prompting(load_config(str(recipe)))
    assert [(variant, data == held) for variant, data, _ in asked] == [("a", False), ("b", False), ("a", True)]
    dev = asked[0][2]
    assert len(dev) == 8 and asked[1][2] == dev and not any(q.startswith("held") for q in dev)
    assert asked[2][2] == [f"held {i}" for i in range(6)]
    assert report["chosen"] == "a"   # a tie on dev goes to the variant listed first
    variant, base = read_prompt_run(tmp_path / "runs" / "p")
    assert variant.name == "a" and base == vllm_model
    assert set(report["dev"]["variants"]) == {"a", "b"} and "answers" not in report["dev"]["variants"]["a"]
    assert report["held_out"]["scores"]["known"]["mean"] == 0.0
    assert (tmp_path / "runs" / "p" / "eval" / "held.json").is_file()


def test_choose_picks_the_best_dev_mean_and_the_first_on_ties():
    from rayalign.config import ConfigError
    from rayalign.pipelines.prompting import choose

    def result(mean):
        return {"scores": {"total": {"mean": mean}, "rule": {"mean": 1 - mean}}}

    assert choose({"a": result(0.2), "b": result(0.6), "c": result(0.6)}, "total") == "b"
    assert choose({"a": result(0.2), "b": result(0.6)}, "rule") == "a"
    with pytest.raises(ConfigError, match="select_by 'nope'"):
        choose({"a": result(0.2)}, "nope")
