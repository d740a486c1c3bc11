"""Reward models and DPO end to end on Ray: a tiny model on a learnable preference; SmolLM2 (slow)."""

from __future__ import annotations

import json
import math
import statistics

import pytest
import torch

from conftest import write_jsonl
from rayalign.cli import main
from rayalign.config import load_config
from rayalign.data.preference import collate_pairs, load_pairs
from rayalign.models.loading import load_causal_lm, load_tokenizer
from rayalign.workers.objectives import pair_logprobs

TOPICS = ["the sky", "water", "fire", "a cat", "the moon", "bread", "a river", "snow", "glass", "sand",
          "a tree", "salt", "a bird", "iron", "rain", "a star"]


def yes_no_pairs(topics):
    return [{"prompt": [{"role": "user", "content": f"Is {topic} real? Answer yes or no."}],
             "chosen": [{"role": "assistant", "content": "Yes, it is real."}],
             "rejected": [{"role": "assistant", "content": "No, it is not."}],
             "score_chosen": 1.0, "score_rejected": 0.0}
            for topic in topics]


@pytest.fixture(scope="module")
def preference_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prefs")
    return (write_jsonl(folder / "train.jsonl", yes_no_pairs(TOPICS[:12]) * 2),
            write_jsonl(folder / "eval.jsonl", yes_no_pairs(TOPICS[12:])))


def overrides(tiny_model, data, tmp_path, *extra):
    return [f"output_dir={tmp_path}", f"model.name_or_path={tiny_model}", f"data.train={data[0]}",
            f"data.eval={data[1]}", "train.lr=1e-2", "train.warmup_steps=0", "train.lr_scheduler=constant",
            "train.eval_every=0", "train.save_every=0", "logging.progress=false", *extra]


def test_full_weight_reward_model_with_frozen_layers(ray_cluster, tiny_model, preference_data, tmp_path):
    from rayalign.pipelines.reward_model import run_reward_model

    report = run_reward_model(load_config("reward_model", overrides(
        tiny_model, preference_data, tmp_path, "train.max_steps=12", "model.lora=null", "train.lr=3e-3",
        "model.freeze.layers=[0]")))
    assert report["eval_accuracy_after"] == 1.0
    final = tmp_path / "reward-model" / "final"
    assert json.loads((final / "config.json").read_text())["architectures"] == ["LlamaForSequenceClassification"]
    assert (final / "reward_stats.json").is_file()


def test_reward_model_learns_and_its_statistics_normalise_scores(ray_cluster, tiny_model, preference_data,
                                                                  tmp_path, capsys):
    from rayalign.pipelines.reward_model import run_reward_model

    report = run_reward_model(load_config("reward_model", overrides(tiny_model, preference_data, tmp_path,
                                                                    "train.max_steps=12")))
    assert report["eval_accuracy_after"] == 1.0
    assert report["eval_margin_after"] > report["eval_margin_before"] + 0.5
    final = tmp_path / "reward-model" / "final"
    stats = json.loads((final / "reward_stats.json").read_text())
    assert stats["std"] > 0 and stats["pairs"] == 24

    # Scoring the training pairs offline, normalised by the saved statistics: mean 0, std 1.
    out = tmp_path / "scored.jsonl"
    assert main(["rm", "score", "--model", str(final), "--data", preference_data[0], "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 24 and all(r["reward_chosen"] > r["reward_rejected"] for r in rows)
    scores = [r["reward_chosen"] for r in rows] + [r["reward_rejected"] for r in rows]
    assert statistics.fmean(scores) == pytest.approx(0.0, abs=1e-3)
    assert statistics.pstdev(scores) == pytest.approx(1.0, abs=1e-3)


def test_reward_model_learns_the_soft_labels(ray_cluster, tiny_model, tmp_path, capsys):
    """A labeler that gives `chosen` only a 0.2 chance of being better: the soft loss,
    -(0.2 log sigmoid(d) + 0.8 log sigmoid(-d)), is smallest at d = logit(0.2) = -log 4 and never
    below the label's entropy (0.500402), so the margin turns negative, where the hard labels
    of the same pairs push it up (the tests above)."""
    from rayalign.pipelines.reward_model import run_reward_model

    soft = [dict(pair, soft_label=0.2) for pair in yes_no_pairs(TOPICS)]
    data = (write_jsonl(tmp_path / "train.jsonl", soft[:12] * 2), write_jsonl(tmp_path / "eval.jsonl", soft[12:]))
    report = run_reward_model(load_config("reward_model", overrides(
        tiny_model, data, tmp_path, "train.max_steps=12", "rm.margin=false", "rm.center_coef=0")))
    assert "soft labels" in capsys.readouterr().out
    records = [json.loads(line) for line in (tmp_path / "reward-model" / "metrics.jsonl").open()]
    losses = [record["train/loss"] for record in records if "train/loss" in record]
    entropy = -(0.2 * math.log(0.2) + 0.8 * math.log(0.8))
    assert len(losses) == 12 and min(losses) >= entropy - 1e-5 and losses[-1] < losses[0]
    assert report["eval_margin_after"] < report["eval_margin_before"] - 0.5


def base_logprobs(tiny_model, data_path):
    tokenizer = load_tokenizer(tiny_model)
    pairs = load_pairs(data_path, tokenizer, 512)
    with torch.no_grad():
        stats = pair_logprobs(load_causal_lm(tiny_model).eval(), collate_pairs(pairs, tokenizer.pad_token_id))[1]
    return stats["chosen"].tolist(), stats["rejected"].tolist()


VARIANTS = {"lora": [], "full": ["model.lora=null", "train.lr=3e-3"], "ipo": ["dpo.loss=ipo"],
            "conservative": ["dpo.label_smoothing=0.1"]}


@pytest.mark.parametrize("variant", VARIANTS)
def test_dpo_raises_preference_accuracy_against_the_untouched_reference(ray_cluster, tiny_model, preference_data,
                                                                        tmp_path, variant):
    from rayalign.pipelines.dpo import REFERENCE_FILE, run_dpo

    extra = ["train.max_steps=8", *VARIANTS[variant]]
    report = run_dpo(load_config("dpo", overrides(tiny_model, preference_data, tmp_path, *extra)))
    assert report["eval_accuracy_before"] == 0.5  # policy == reference: every implicit reward is 0
    assert report["eval_accuracy_after"] == 1.0
    assert report["eval_margin_after"] > (0.01 if variant == "ipo" else 0.1)  # IPO rewards are per-token averages

    # The reference log-probabilities are those of the model before training.
    saved = json.loads((tmp_path / "dpo" / REFERENCE_FILE).read_text())
    chosen, rejected = base_logprobs(tiny_model, preference_data[0])
    assert saved["chosen"][:24] == pytest.approx(chosen, abs=1e-4)
    assert saved["rejected"][:24] == pytest.approx(rejected, abs=1e-4)


@pytest.mark.slow
def test_smollm2_reward_model_beats_chance_on_held_out_pairs(ray_cluster, tmp_path):
    from rayalign.pipelines.reward_model import run_reward_model

    report = run_reward_model(load_config("reward_model", [f"output_dir={tmp_path}", "train.max_steps=30",
                                                           "data.max_train_samples=240", "rm.stats_samples=64",
                                                           "train.eval_every=0", "train.save_every=0",
                                                           "logging.progress=false"]))
    print(f"SmolLM2 RM, 30 steps: held-out accuracy {report['eval_accuracy_before']:.3f} -> "
          f"{report['eval_accuracy_after']:.3f}")
    assert report["eval_accuracy_after"] >= 0.80  # measured: 0.688 -> 0.984


@pytest.mark.slow
def test_smollm2_dpo_raises_held_out_preference_accuracy(ray_cluster, tmp_path):
    from rayalign.pipelines.dpo import run_dpo

    report = run_dpo(load_config("dpo", [f"output_dir={tmp_path}", "train.max_steps=20", "train.eval_every=0",
                                         "train.save_every=0", "data.max_train_samples=160",
                                         "logging.progress=false"]))
    print(f"SmolLM2 DPO, 20 steps: held-out accuracy {report['eval_accuracy_before']:.3f} -> "
          f"{report['eval_accuracy_after']:.3f}")
    assert report["eval_accuracy_after"] >= 0.75  # measured: 0.500 -> 0.977
