"""Direct RLAIF: the AI critic's expected score checked against a forward pass done by hand,
and the critic as a reward source inside an RL run (a tiny random model on both sides)."""

from __future__ import annotations

import pytest
import torch

from rayalign.data.prompts import encode_chat
from rayalign.models.loading import load_tokenizer
from rayalign.rewards.critic import SCORE, CriticReward, critic_messages

PROMPTS = ["What is 3 + 4? Answer with just the number.", "Write one short sentence about the sea."]
ANSWERS = ["7", "The sea is blue."]


def next_token_probabilities(model, tokenizer, chat: list[dict]) -> torch.Tensor:
    ids = torch.tensor([encode_chat(chat, tokenizer)])
    return torch.softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1)


def by_hand(model, tokenizer, rubric: str, prompt: str, answer: str) -> float:
    """The expected 1-10 score from the model's next-token distribution after "Score:" (after a
    blank token if that is the greedy one), with 10 as "1" then "0" when the vocabulary splits it."""
    chat = critic_messages(rubric, prompt, answer, rationale=False)
    prefix = SCORE
    probabilities = next_token_probabilities(model, tokenizer, chat + [{"role": "assistant", "content": prefix}])
    greedy = tokenizer.decode([int(probabilities.argmax())])
    if not greedy.strip():
        prefix += greedy
        probabilities = next_token_probabilities(model, tokenizer, chat + [{"role": "assistant", "content": prefix}])
    texts = [tokenizer.decode([i]).strip() for i in range(len(probabilities))]
    mass = {s: float(sum(p for p, t in zip(probabilities.tolist(), texts) if t == str(s))) for s in range(1, 11)}
    if mass[10] == 0:
        after_one = next_token_probabilities(model, tokenizer, chat + [{"role": "assistant", "content": prefix + "1"}])
        zero = float(sum(p for p, t in zip(after_one.tolist(), texts) if t == "0"))
        mass[1], mass[10] = mass[1] * (1 - zero), mass[1] * zero
    return sum(s * m for s, m in mass.items()) / sum(mass.values())


def test_the_critic_reads_the_expected_score_over_every_score_token(tiny_model):
    from transformers import AutoModelForCausalLM

    critic = CriticReward(path=tiny_model, engine="hf", dtype="float32", top_logprobs=512, max_model_len=512)
    scores = critic.scores(PROMPTS, ANSWERS)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    tokenizer = load_tokenizer(tiny_model)
    with torch.no_grad():
        expected = [by_hand(model, tokenizer, critic.rubric, p, a) for p, a in zip(PROMPTS, ANSWERS)]
    assert scores == pytest.approx(expected, abs=1e-4)
    rewards = critic(PROMPTS, ANSWERS)
    assert rewards == pytest.approx([2 * (s - 1) / 9 - 1 for s in expected], abs=1e-4)
    assert all(-1 <= r <= 1 for r in rewards) and critic.none_count == 0


def test_a_local_critic_is_a_reward_source_in_an_rl_run(ray_cluster, tiny_model, tmp_path):
    from conftest import RL_PROMPTS, write_jsonl
    from test_rlhf_pipeline import rewards_of, tiny_rl_config

    from rayalign.config import RewardSourceConfig
    from rayalign.pipelines.rlhf import run_rlhf

    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": [{"role": "user", "content": p}], "task": "t"}
                                                       for p in RL_PROMPTS * 2])
    config = tiny_rl_config(tmp_path, tiny_model, prompts, name="critic-rl",
                            overrides=["rlhf.steps=3", "rlhf.eval_every=0"])
    config.rewards = [RewardSourceConfig(type="critic", path=tiny_model, options={
                          "engine": "hf", "dtype": "float32", "top_logprobs": 512, "max_model_len": 512}),
                      RewardSourceConfig(type="function", path="rl_rewards:digit_share", weight=0.5)]
    run_rlhf(config)
    assert len(rewards_of(config.run_dir)) == 3
    import json

    metrics = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()]
    critic = [m["reward/critic_mean"] for m in metrics if "reward/critic_mean" in m]
    spread = [m["reward/critic_std"] for m in metrics if "reward/critic_std" in m]
    assert len(critic) == 3 and all(-1 <= c <= 1 for c in critic)
    assert any(s > 0 for s in spread)  # scores differ from answer to answer: read, not a constant
