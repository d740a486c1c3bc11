"""RL forwards that run each distinct prompt of a micro-batch once (`rlhf.share_prompts`): the
collated layout, and the same log-probs, loss and gradients as running every row whole."""

import pytest
import torch

from rayalign.config import LoraConfig, ModelConfig
from rayalign.data.rollout_batch import RolloutPart, StepData
from rayalign.data.rollouts import Sample
from rayalign.workers.rl_objectives import policy_objective, response_logprobs

PAD = 2


def _rows(prompts: list[list[int]], samples: int, seed: int = 0) -> list[Sample]:
    """`samples` responses of random lengths (1 to 9 tokens) to each prompt, prompt by prompt."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for prompt in prompts:
        for _ in range(samples):
            length = int(torch.randint(1, 10, (1,), generator=generator))
            response = torch.randint(3, 300, (length,), generator=generator).tolist()
            rows.append(Sample(prompt_ids=prompt, response_ids=response, logprobs=[-1.0] * length,
                               finished=True))
    return rows


def _collate(samples: list[Sample], rows: list[int], share: bool, fields: tuple[str, ...] = ()) -> dict:
    from rayalign.data.rollout_batch import StepRows

    part = RolloutPart.from_samples(samples, [""] * len(samples))
    data = StepData.of_parts([part], [len(samples)], max(len(s.response_ids) for s in samples), PAD)
    if fields:
        width = data.width
        data.add("advantages", [0], [torch.linspace(-1, 1, len(samples)).unsqueeze(1).expand(-1, width).clone()])
    layout, blocks = data.for_workers(fields, share_prompts=share)
    return StepRows(layout, tuple(blocks)).collate(rows, fields)


def test_collate_lists_each_distinct_prompt_once_and_which_one_each_row_answers():
    prompts = [[5, 6, 7, 8], [9, 10], [PAD, 11]]   # the last one starts with the pad token's id
    samples = _rows(prompts, 2)
    batch = _collate(samples, [0, 1, 2, 3, 4, 5], share=True)
    assert batch["prompt_rows"].tolist() == [0, 0, 1, 1, 2, 2]
    assert batch["prompt_ids"].tolist() == [[5, 6, 7, 8], [PAD, PAD, 9, 10], [PAD, PAD, PAD, 11]]
    assert batch["prompt_mask"].tolist() == [[1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]]
    assert torch.equal(batch["input_ids"][:, :4], batch["prompt_ids"][batch["prompt_rows"]])
    # a prompt whose padded tokens equal another's but whose length differs is a prompt of its own
    tricky = _collate(_rows([[PAD, 11], [11]], 2), [0, 1, 2, 3], share=True)
    assert tricky["prompt_rows"].tolist() == [0, 0, 1, 1]
    # nothing to share, or sharing not asked for: the plain layout
    assert "prompt_rows" not in _collate(samples, [0, 2, 4], share=True)
    assert "prompt_rows" not in _collate(samples, [0, 1, 2, 3], share=False)


@pytest.fixture(scope="module")
def lora_policy(tiny_model):
    from rayalign.models.adapt import build_trainable

    torch.manual_seed(0)
    model, _ = build_trainable(ModelConfig(name_or_path=tiny_model, lora=LoraConfig(r=4, alpha=8, dropout=0.0,
                                                                                    target_modules=["q_proj", "v_proj"])))
    for name, parameter in model.named_parameters():   # peft starts lora_B at 0: give the adapter an effect
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.05)
    return model


@pytest.mark.parametrize("autocast", [False, True])
def test_shared_prompts_give_the_plain_log_probs_loss_and_gradients(lora_policy, autocast):
    """Three prompts of different lengths x 4 samples of different lengths, shuffled so a prompt's
    samples are not adjacent: log-probs, the clipped policy loss and every LoRA gradient agree."""
    samples = _rows([[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [15, 16, 17, 18, 19]], 4, seed=1)
    rows = [7, 0, 11, 3, 1, 8, 5, 10, 2, 4, 9, 6]
    plain, shared = (_collate(samples, rows, share, ("advantages",)) for share in (False, True))
    assert shared["prompt_rows"].tolist() == [0, 1, 2, 1, 1, 2, 0, 2, 1, 0, 2, 0]
    objective = policy_objective(clip_range=0.2)
    trainable = [p for p in lora_policy.parameters() if p.requires_grad]
    results = []
    for batch in (plain, shared):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logprobs = response_logprobs(lora_policy, batch)[1]["logprobs"]
            loss, stats = objective(lora_policy, batch)
        results.append((logprobs, loss, torch.autograd.grad(loss, trainable)))
    (logp_a, loss_a, grads_a), (logp_b, loss_b, grads_b) = results
    tolerance = 5e-2 if autocast else 1e-5   # bf16 matmuls round differently in a different grouping
    assert torch.allclose(logp_a, logp_b, atol=tolerance)
    assert (logp_a[plain["response_mask"] == 0] == 0).all() and (logp_b[shared["response_mask"] == 0] == 0).all()
    assert torch.allclose(loss_a, loss_b, atol=tolerance)
    for a, b in zip(grads_a, grads_b):
        assert torch.allclose(a, b, atol=tolerance * max(a.abs().max().item(), 1e-3), rtol=0)
    assert max(g.abs().max().item() for g in grads_a) > 0


def test_micro_batches_keep_a_prompts_samples_together_ordered_by_their_longest_response():
    from rayalign.pipelines.rlhf import micro_batch_order

    lengths = [3, 9, 2, 2, 1, 4, 5, 1]          # two samples per prompt: prompts 0..3
    prompts = [10, 10, 20, 20, 30, 30, 10, 10]  # prompt lengths
    sizes = [p + r for p, r in zip(prompts, lengths)]
    shared = sorted(range(8), key=micro_batch_order(lengths, sizes, 2, share_prompts=True))
    assert shared == [2, 3, 4, 5, 7, 6, 0, 1]    # longest responses 2, 4, 5, 9
    plain = sorted(range(8), key=micro_batch_order(lengths, sizes, 2, share_prompts=False))
    assert plain == [7, 0, 6, 1, 2, 3, 4, 5]     # by prompt + response length alone


def test_a_model_that_keeps_no_cache_is_an_error_not_a_silent_wrong_answer(tiny_model):
    """Gradient checkpointing makes HF's layers drop the cache (rl_roles.shares_prompts turns
    sharing off with it); were it ever on anyway, the forward says so."""
    from rayalign.models.loading import load_causal_lm

    model = load_causal_lm(tiny_model)
    model.gradient_checkpointing_enable()
    model.train()
    batch = _collate(_rows([[5, 6, 7], [8, 9]], 2), [0, 1, 2, 3], share=True)
    with pytest.raises(RuntimeError, match="rlhf.share_prompts=false"):
        response_logprobs(model, batch)


def test_sharing_is_on_by_default_and_off_under_gradient_checkpointing_or_when_asked():
    from rayalign.config import load_config
    from rayalign.pipelines.rl_roles import shares_prompts

    assert shares_prompts(load_config("rlhf_grpo"))
    assert not shares_prompts(load_config("rlhf_grpo", ["model.gradient_checkpointing=true"]))
    assert not shares_prompts(load_config("rlhf_grpo", ["rlhf.share_prompts=false"]))
