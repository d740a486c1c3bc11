"""The DeepSpeed training engine on its own: no Ray, one process, gloo on CPU."""

import pytest
import torch

from rayalign.config import ModelConfig, TrainConfig
from rayalign.engines.training import TrainingEngine, deepspeed_config


def test_deepspeed_config_merges_user_overrides():
    train = TrainConfig(micro_batch_size=2, gradient_accumulation_steps=3, zero_stage=1,
                        deepspeed={"zero_optimization": {"overlap_comm": True}, "gradient_clipping": 0.5})
    config = deepspeed_config(train, world_size=2, dtype="bfloat16")
    assert config["train_batch_size"] == 12
    assert config["zero_optimization"] == {"stage": 1, "overlap_comm": True}
    assert config["gradient_clipping"] == 0.5
    assert config["bf16"] == {"enabled": True}


@pytest.fixture(scope="module")
def process_group():
    """One process group for the module: DeepSpeed keeps its data-parallel group across engines."""
    from rayalign.engines.distributed import close_process_group, init_process_group

    assert init_process_group(0, 1, "127.0.0.1", backend="auto") == "gloo"
    yield
    close_process_group()


def test_engine_steps_accumulates_and_checkpoints(tiny_model, tmp_path, process_group):
    from rayalign.models.adapt import build_trainable
    from rayalign.workers.objectives import sft_objective

    torch.manual_seed(0)
    model, counts = build_trainable(ModelConfig(name_or_path=tiny_model))
    assert "100.00%" in counts
    train = TrainConfig(micro_batch_size=2, gradient_accumulation_steps=2, lr=1e-2, zero_stage=2,
                        lr_scheduler="constant")
    engine = TrainingEngine(model, train, total_steps=10, world_size=1)
    ids = torch.randint(3, 100, (2, 12))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}

    with pytest.raises(ValueError, match="expected gradient_accumulation_steps=2"):
        engine.train_step([batch], sft_objective)
    first = engine.train_step([batch, batch], sft_objective)
    losses = [engine.train_step([batch, batch], sft_objective)["loss"] for _ in range(5)]
    assert losses[-1] < first["loss"]  # it memorises one batch
    assert first["tokens"] == 22 and first["lr"] == 1e-2

    engine.save_checkpoint(str(tmp_path))
    weights = {k: v.clone() for k, v in engine.module.state_dict().items()}
    engine.train_step([batch, batch], sft_objective)
    assert any(not torch.equal(weights[k], v) for k, v in engine.module.state_dict().items())
    engine.load_checkpoint(str(tmp_path))
    assert all(torch.equal(weights[k], v) for k, v in engine.module.state_dict().items())
    stats = engine.evaluate([batch], sft_objective)
    assert stats[0]["tokens"] == 22


def test_optimizer_states_offloaded_and_reloaded_train_on_unchanged(tiny_model, process_group):
    """What a colocated trainer does while the engine generates (rollout.sleep): on CPU the
    states move CPU to CPU, so this checks that the round trip keeps training exact."""
    from rayalign.models.adapt import build_trainable
    from rayalign.workers.objectives import sft_objective

    ids = torch.randint(3, 100, (2, 12), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    losses = []
    for offload in (False, True):
        torch.manual_seed(0)
        model, _ = build_trainable(ModelConfig(name_or_path=tiny_model))
        engine = TrainingEngine(model, TrainConfig(micro_batch_size=2, lr=1e-2, zero_stage=2, lr_scheduler="constant"),
                                total_steps=2, world_size=1)
        run = []
        for _ in range(2):
            if offload:
                engine.offload_optimizer_states()
                assert {s.value for s in engine.optimizer.offloaded_states} >= {"optim_states", "hp_params"}
                engine.reload_optimizer_states()
            run.append(engine.train_step([batch], sft_objective)["loss"])
        losses.append(run)
    assert losses[0] == losses[1] and losses[0][-1] < losses[0][0]


def test_autocast_trains_bfloat16_forwards_over_float32_master_weights(tiny_model, process_group):
    from rayalign.models.adapt import build_trainable
    from rayalign.workers.objectives import sft_objective

    torch.manual_seed(0)
    model, _ = build_trainable(ModelConfig(name_or_path=tiny_model))
    train = TrainConfig(micro_batch_size=2, lr=1e-2, lr_scheduler="constant", autocast="bfloat16")
    with pytest.raises(ValueError, match="needs float32 master weights"):
        TrainingEngine(model, train, total_steps=10, world_size=1, dtype="bfloat16")
    engine = TrainingEngine(model, train, total_steps=10, world_size=1)
    ids = torch.randint(3, 100, (2, 12))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    forward_dtypes = []

    def recording_objective(model, batch):
        forward_dtypes.append(model(input_ids=batch["input_ids"]).logits.dtype)
        return sft_objective(model, batch)

    losses = [engine.train_step([batch], recording_objective)["loss"] for _ in range(6)]
    engine.evaluate([batch], recording_objective)
    assert losses[-1] < losses[0]  # it memorises one batch
    assert set(forward_dtypes) == {torch.bfloat16}  # training and evaluation forwards ran in bf16
    assert {p.dtype for p in engine.module.parameters()} == {torch.float32}
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in engine.module.parameters())
