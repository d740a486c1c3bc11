"""The RL engine end to end on a tiny random model: reward rises on a learnable reward,
every algorithm runs, checkpoints resume, and bad input fails clearly."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import RL_PROMPTS, write_jsonl
from rayalign.config import dump_config, load_config
from rayalign.pipelines.rlhf import run_rlhf

def tiny_rl_config(tmp_path, tiny_model, prompt_file, name="tiny-rl", overrides=()):
    recipe = tmp_path / "tiny_rl.yaml"
    recipe.write_text(json.dumps({
        "method": "rlhf", "name": name, "output_dir": str(tmp_path / "runs"),
        "model": {"name_or_path": tiny_model},
        "data": {"train": prompt_file, "eval": prompt_file, "max_length": 64},
        "rlhf": {"algorithm": "grpo", "steps": 30, "prompts_per_step": 4, "samples_per_prompt": 4,
                 "eval_samples": 4},
        "rollout": {"engine": "hf", "max_new_tokens": 12, "dtype": "float32"},
        "rewards": [{"type": "function", "path": "rl_rewards:digit_share"}],
        "train": {"micro_batch_size": 8, "lr": 3e-3, "lr_scheduler": "constant", "zero_stage": 2},
        "placement": {"num_workers": 1, "cpus_per_worker": 1, "colocate": True, "timeout_s": 120},
        "logging": {"progress": False, "tensorboard": False},
    }))
    return load_config(str(recipe), list(overrides))


def rewards_of(run_dir) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [m["reward/total_mean"] for m in map(json.loads, lines) if "reward/total_mean" in m]


def test_grpo_raises_a_learnable_reward(ray_cluster, tiny_model, prompt_file, tmp_path):
    config = tiny_rl_config(tmp_path, tiny_model, prompt_file)
    report = run_rlhf(config)
    rewards = rewards_of(config.run_dir)
    assert len(rewards) == 30
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > first + 0.1, rewards
    assert report["eval_after"]["eval/reward"] > report["eval_before"]["eval/reward"]
    assert (config.run_dir / "final" / "model.safetensors").is_file()


@pytest.mark.parametrize("overrides, expect", [
    (["rlhf.algorithm=rloo"], []),
    (["rlhf.algorithm=reinforce_pp", "rlhf.kl_coef=0.05", "rlhf.kl_in_reward=true"], ["train/kl"]),
    (["rlhf.algorithm=ppo", "rlhf.update_epochs=2", "rlhf.mini_batches=2", "train.micro_batch_size=4"],
     ["critic/loss", "critic/explained_variance"]),
    (["rlhf.kl_coef=0.1", "rlhf.kl_estimator=k2", "model.lora.r=4"], ["train/kl"]),    # LoRA: reference = adapter off
    (["rlhf.kl_coef=0.1", "rlhf.missing_eos_penalty=-1", "rlhf.reward_clip=5"], ["train/kl"]),  # ReferenceWorker
])
def test_every_algorithm_and_kl_mode_runs(ray_cluster, tiny_model, prompt_file, tmp_path, overrides, expect):
    config = tiny_rl_config(tmp_path, tiny_model, prompt_file, overrides=["rlhf.steps=3", *overrides])
    run_rlhf(config)
    metrics = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if "reward/total_mean" in m]
    assert len(steps) == 3
    for key in ["train/loss", "train/clip_fraction", "train/entropy", "time/generate_s", "time/train_s",
                "time/sync_s", "rollout/tokens_per_s", "reward/digit_share_mean", *expect]:
        assert all(key in m for m in steps), key
    if "rlhf.update_epochs=2" in overrides:  # a reused batch: the ratio moves off 1 on the second pass
        assert any(m["train/approx_kl"] > 0 for m in steps)


def test_an_openai_grader_scores_the_rollouts_from_the_rows_fields(ray_cluster, tiny_model, prompt_file, tmp_path):
    """A `type: grader` source in the reward worker: its template reads each row's `task` field."""
    grader = {"type": "text_similarity", "name": "near", "input": "{{ sample.output_text }}",
              "reference": "{{ item.task }} {{ item.task }}", "evaluation_metric": "fuzzy_match"}
    config = tiny_rl_config(tmp_path, tiny_model, prompt_file, overrides=[
        "rlhf.steps=3", "rewards=" + json.dumps([{"type": "grader", "name": "graded", "grader": grader}])])
    run_rlhf(config)
    metrics = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()]
    graded = [m["reward/graded_mean"] for m in metrics if "reward/total_mean" in m]
    assert len(graded) == 3 and all(0.0 <= value <= 1.0 for value in graded)
    assert any(value > 0 for value in graded), graded  # "t t" shares characters with most random text


def test_killed_worker_or_driver_resumes_from_the_last_checkpoint(tiny_model, prompt_file, tmp_path):
    """Kill the rollout worker mid-run: the driver stops with an error naming the role. Rerun:
    it resumes from the last checkpoint. Kill the driver (and its local Ray) mid-run, rerun:
    it resumes again and finishes every step."""
    import psutil

    steps = 300
    config = tiny_rl_config(tmp_path, tiny_model, prompt_file, name="resumed",
                            overrides=[f"rlhf.steps={steps}", "rlhf.save_every=25"])
    recipe = tmp_path / "resumed.yaml"
    recipe.write_text(dump_config(config))
    env = {**os.environ, "RAY_ADDRESS": "local", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "rayalign.cli", "rlhf", "--config", str(recipe)]
    latest = config.run_dir / "checkpoints" / "latest"

    def start_and_wait_for_checkpoint(after: int):
        victim = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  start_new_session=True)
        deadline = time.time() + 300
        while victim.poll() is None and time.time() < deadline:
            if latest.exists() and int(latest.read_text().split("-")[1]) > after:
                return victim
            time.sleep(0.05)
        raise AssertionError(f"no checkpoint past step {after}: {victim.communicate()[0][-3000:]}")

    victim = start_and_wait_for_checkpoint(0)
    workers = [p for p in psutil.process_iter(["cmdline"]) if _session(p) == victim.pid  # Ray gives workers
               and "RolloutWorker" in " ".join(p.info["cmdline"] or [])]                # their own groups
    assert workers, "the rollout worker should be running"
    for worker in workers:
        worker.kill()
    output = victim.communicate(timeout=300)[0]
    with contextlib.suppress(ProcessLookupError):  # whatever is left of the local Ray it started
        os.killpg(victim.pid, signal.SIGKILL)
    assert victim.returncode == 1, output[-3000:]
    assert "RolloutWorker rank 0" in output
    first_kill = int(latest.read_text().split("-")[1])

    victim = start_and_wait_for_checkpoint(first_kill)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    second_kill = int(latest.read_text().split("-")[1])
    assert first_kill < second_kill < steps

    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"(step {second_kill}," in finished.stdout
    logged = [json.loads(line)["step"] for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()
              if "reward/total_mean" in line]
    assert set(logged) == set(range(1, steps + 1))
    assert json.loads((config.run_dir / "report.json").read_text())["steps"] == steps


def _session(process) -> int | None:
    try:
        return os.getsid(process.pid)
    except ProcessLookupError:
        return None


def test_ppo_with_a_critic_and_a_trained_reward_model_raises_reward(ray_cluster, tiny_model, prompt_file, tmp_path):
    """Train a reward model that prefers digits, start the critic from it, run PPO on its scores."""
    import random

    from rayalign.pipelines.reward_model import run_reward_model

    rng = random.Random(0)
    words = "the quick brown fox jumps over lazy dog sea blue".split()
    pairs = [{"prompt": [{"role": "user", "content": p}],
              "chosen": [{"role": "assistant", "content": " ".join(rng.choice("0123456789") for _ in range(6))}],
              "rejected": [{"role": "assistant", "content": " ".join(rng.choice(words) for _ in range(4))}]}
             for p in RL_PROMPTS * 16]
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    rm = run_reward_model(load_config("reward_model", [
        f"output_dir={tmp_path}", f"model.name_or_path={tiny_model}", f"data.train={data}", "data.eval=null",
        "data.eval_fraction=0.2", "model.lora=null", "rm.margin=false", "train.max_steps=30", "train.lr=3e-3", "train.eval_every=0",
        "train.save_every=0", "placement.num_workers=1", "logging.progress=false", "logging.tensorboard=false"]))
    assert rm["eval_accuracy_after"] > 0.9

    config = tiny_rl_config(tmp_path, tiny_model, prompt_file, name="ppo-rm", overrides=[
        "rlhf.algorithm=ppo", "rlhf.steps=40", "rlhf.samples_per_prompt=8", f"rewards=[{{type: model, path: {rm['final']}}}]",
        f"critic.name_or_path={rm['final']}", "critic.lr=1e-3"])
    run_rlhf(config)
    metrics = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()]
    rewards = [m["reward/model_mean"] for m in metrics if "reward/model_mean" in m]
    assert sum(rewards[-10:]) / 10 > sum(rewards[:10]) / 10 + 0.3, " ".join(f"{r:.2f}" for r in rewards)
    assert all("critic/loss" in m for m in metrics if "reward/model_mean" in m)


def test_bad_input_fails_early_and_names_the_place(ray_cluster, tiny_model, prompt_file, tmp_path):
    from rayalign.data.readers import DataError
    from rayalign.workers.group import WorkerError

    long_prompt = write_jsonl(tmp_path / "long.jsonl", [{"prompt": "hello"}, {"prompt": "word " * 200}])
    with pytest.raises(DataError, match=r"long.jsonl, line 2, field 'prompt': \d+ tokens"):
        run_rlhf(tiny_rl_config(tmp_path, tiny_model, prompt_file, overrides=[f"data.train={long_prompt}"]))

    missing = tiny_rl_config(tmp_path, tiny_model, prompt_file, name="missing-reward",
                             overrides=["rewards=[{type: function, path: 'rl_rewards:no_such_fn'}]"])
    with pytest.raises(WorkerError, match="RewardWorker.*rl_rewards:no_such_fn"):
        run_rlhf(missing)
    assert not (missing.run_dir / "metrics.jsonl").exists()  # failed before any rollout


@pytest.mark.slow
def test_smollm2_grpo_raises_held_out_success_on_the_quickstart_task(ray_cluster, tmp_path):
    """The shipped recipe, shortened: measured 0.17 -> 0.55 held-out greedy success at step 40
    (0.64 at step 60) on all 128 held-out prompts in pure bf16; with the recipe's bf16 autocast
    and shared prompts, 0.19 -> 0.45 on these 64."""
    config = load_config("rlhf_grpo", [f"output_dir={tmp_path}", "rlhf.steps=40", "rlhf.eval_every=0",
                                       "rlhf.save_every=0", "rlhf.eval_samples=64", "logging.progress=false"])
    report = run_rlhf(config)
    before, after = report["eval_before"]["eval/reward"], report["eval_after"]["eval/reward"]
    assert after > before + 0.15, (before, after)
