"""Runs that start from runs: an SFT run folder as `model.name_or_path` for DPO, RL and more
SFT, its LoRA adapter merged once into `<run>/merged` (or continued), on a tiny model."""

from __future__ import annotations

import json
import os

import pytest
import torch

from conftest import write_jsonl
from rayalign.config import ConfigError, load_config
from rayalign.models.chain import merged_folder, start_model
from rayalign.models.loading import adapter_base, load_causal_lm

CHAT = [{"role": "user", "content": "What is 3 + 4? Answer with just the number."}]
PAIRS = [{"prompt": [{"role": "user", "content": f"Is {t} real? Answer yes or no."}],
          "chosen": [{"role": "assistant", "content": "Yes, it is real."}],
          "rejected": [{"role": "assistant", "content": "No, it is not."}]}
         for t in ["the sky", "water", "fire", "a cat", "the moon", "bread", "a river", "snow"]]


def common(tmp_path, model):
    return [f"output_dir={tmp_path / 'runs'}", f"model.name_or_path={model}", "data.eval=null",
            "train.warmup_steps=0", "train.lr_scheduler=constant", "train.eval_every=0", "train.save_every=0",
            "logging.progress=false", "placement.num_workers=1", "logging.tensorboard=false"]


@pytest.fixture(scope="module")
def sft_run(ray_cluster, tiny_model, tmp_path_factory):
    """A LoRA SFT run folder of the tiny model."""
    from rayalign.pipelines.sft import run_sft

    root = tmp_path_factory.mktemp("chain")
    data = write_jsonl(root / "sft.jsonl", [{"messages": [*CHAT, {"role": "assistant", "content": "7"}]}] * 8)
    run_sft(load_config("quickstart", [*common(root, tiny_model), "name=sft", f"data.train={data}",
                                       "train.lr=3e-2", "train.max_steps=6"]))
    return root / "runs" / "sft"


def test_a_run_folder_resolves_to_its_model_and_an_adapter_merges_once(sft_run, tiny_model):
    final = sft_run / "final"
    assert start_model(str(sft_run), "continue") == str(final)
    merged = start_model(str(sft_run))
    assert merged == str(sft_run / "merged") == str(merged_folder(final.resolve()))
    stamp = os.stat(os.path.join(merged, "config.json")).st_mtime
    assert start_model(str(sft_run)) == merged and os.stat(os.path.join(merged, "config.json")).st_mtime == stamp
    # the merged weights are the adapter folded into the base: same outputs
    ids = torch.tensor([[1, 5, 9, 12, 3]])
    with torch.no_grad():
        folded = load_causal_lm(merged)(ids).logits
        adapted = load_causal_lm(str(sft_run))(ids).logits
    assert torch.allclose(folded, adapted, atol=1e-5)
    unfinished = sft_run.parent / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text((sft_run / "config.yaml").read_text())
    with pytest.raises(FileNotFoundError, match="without a final model"):
        start_model(str(unfinished))


def test_dpo_from_an_sft_run_folder(sft_run, tmp_path):
    from rayalign.pipelines.dpo import run_dpo

    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS * 2)
    report = run_dpo(load_config("dpo", [*common(tmp_path, sft_run), "name=dpo", f"data.train={data}",
                                         "train.lr=1e-2", "train.max_steps=4"]))
    adapter = tmp_path / "runs" / "dpo" / "final"
    assert adapter_base(str(adapter)) == str(sft_run.resolve() / "merged")   # the reference was the SFT model
    assert report["steps"] == 4
    assert load_config(str(tmp_path / "runs" / "dpo" / "config.yaml")).model.name_or_path == str(sft_run)


def test_rl_from_an_sft_run_folder_with_a_kl_leash(sft_run, tmp_path):
    from rayalign.pipelines.rlhf import run_rlhf

    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": CHAT, "task": "t"}] * 8)
    recipe = tmp_path / "rl.yaml"
    recipe.write_text(json.dumps({
        "method": "rlhf", "name": "rl", "output_dir": str(tmp_path / "runs"),
        "model": {"name_or_path": str(sft_run), "lora": {"r": 4, "alpha": 8}},
        "data": {"train": prompts, "eval": prompts, "max_length": 64},
        "rlhf": {"algorithm": "grpo", "steps": 2, "prompts_per_step": 2, "samples_per_prompt": 2, "kl_coef": 0.1,
                 "eval_samples": 2},
        "rollout": {"engine": "hf", "max_new_tokens": 6, "dtype": "float32"},
        "rewards": [{"type": "function", "path": "rl_rewards:digit_share"}],
        "train": {"micro_batch_size": 4, "lr": 1e-3},
        "placement": {"num_workers": 1, "cpus_per_worker": 1, "colocate": True, "timeout_s": 120},
        "logging": {"progress": False, "tensorboard": False}}))
    report = run_rlhf(load_config(str(recipe)))
    assert report["steps"] == 2 and report["held_out_after"]["prompts"] == 2
    assert adapter_base(str(tmp_path / "runs" / "rl" / "final")) == str(sft_run.resolve() / "merged")
    kl = [json.loads(line).get("train/kl") for line in (tmp_path / "runs" / "rl" / "metrics.jsonl").open()]
    assert any(value is not None for value in kl)
    with pytest.raises(ConfigError, match="model.parent: merge"):
        run_rlhf(load_config(str(recipe), ["model.parent=continue", "model.lora=null", "name=rl2"]))


def test_sft_continues_the_parent_adapter(sft_run, tmp_path, tiny_model):
    from rayalign.pipelines.sft import run_sft

    data = write_jsonl(tmp_path / "sft.jsonl", [{"messages": [*CHAT, {"role": "assistant", "content": "7"}]}] * 8)
    run_sft(load_config("quickstart", [*common(tmp_path, sft_run), "name=more", f"data.train={data}",
                                       "model.lora=null", "model.parent=continue", "train.max_steps=2"]))
    assert adapter_base(str(tmp_path / "runs" / "more" / "final")) == tiny_model   # the same adapter, trained on
    with pytest.raises(ConfigError, match="leave lora and freeze unset"):
        load_config("quickstart", ["model.parent=continue"])
