"""Partial freezing, LoRA, saving/loading adapters, merging, and model name resolution."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch

from rayalign.config import FreezeConfig, LoraConfig, ModelConfig
from rayalign.models import (
    BUILTIN_MODELS,
    apply_freeze,
    apply_lora,
    build_trainable,
    count_parameters,
    load_causal_lm,
    load_tokenizer,
    merge_adapter,
    resolve_model,
    save_trained,
)
from rayalign.models.adapt import parse_layers

LORA = LoraConfig(r=4, alpha=8, target_modules=["q_proj", "v_proj"])
INPUT = torch.tensor([[1, 5, 9, 20, 33, 7, 41, 2]])


@pytest.fixture
def model(tiny_model):
    return load_causal_lm(tiny_model)


def _trainable(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def _all(model) -> set[str]:
    return {name for name, _ in model.named_parameters()}


def _logits(model) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(INPUT).logits


def _lora_model(tiny_model):
    """A LoRA model whose adapter changes the output (B is zero at init)."""
    model = apply_lora(load_causal_lm(tiny_model), LORA)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return model


def test_tiny_model_has_the_expected_layout(model):
    names = _all(model)
    assert "model.embed_tokens.weight" in names and "model.norm.weight" in names
    assert {int(m.group(1)) for n in names if (m := re.search(r"layers\.(\d+)\.", n))} == {0, 1}
    assert _trainable(model) == names


# ---------------------------------------------------------------- freezing


def test_freeze_modules_pattern(model):
    apply_freeze(model, FreezeConfig(modules=["embed_tokens", r"mlp\.down_proj"]))
    frozen = _all(model) - _trainable(model)
    assert frozen == {"model.embed_tokens.weight",
                      "model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight"}


def test_freeze_layers_as_a_list(model):
    apply_freeze(model, FreezeConfig(layers=[1]))
    frozen = _all(model) - _trainable(model)
    assert frozen == {n for n in _all(model) if n.startswith("model.layers.1.")}
    assert len(frozen) == 9


def test_freeze_layers_as_a_range_string(model):
    apply_freeze(model, FreezeConfig(layers="0-0"))
    frozen = _all(model) - _trainable(model)
    assert frozen == {n for n in _all(model) if n.startswith("model.layers.0.")}


def test_freeze_all_layers_by_range_leaves_embeddings_and_norm(model):
    apply_freeze(model, FreezeConfig(layers="0-1"))
    assert _trainable(model) == {"model.embed_tokens.weight", "model.norm.weight"}


def test_train_only(model):
    apply_freeze(model, FreezeConfig(train_only=[r"self_attn\.q_proj", r"^model\.norm\."]))
    assert _trainable(model) == {"model.layers.0.self_attn.q_proj.weight",
                                 "model.layers.1.self_attn.q_proj.weight", "model.norm.weight"}


def test_train_only_then_layers_and_modules_freeze_within_it(model):
    apply_freeze(model, FreezeConfig(train_only=["self_attn"], layers=[0], modules=["k_proj"]))
    assert _trainable(model) == {f"model.layers.1.self_attn.{p}_proj.weight" for p in ("q", "v", "o")}


def test_freeze_counts_match(model):
    total = count_parameters(model)[1]
    apply_freeze(model, FreezeConfig(modules=["embed_tokens"]))
    embed = model.get_input_embeddings().weight.numel()
    assert count_parameters(model) == (total - embed, total)


def test_a_pattern_that_matches_nothing_is_an_error(model):
    with pytest.raises(ValueError, match=r"^freeze.modules pattern 'no_such_module' matches no parameter$"):
        apply_freeze(model, FreezeConfig(modules=["no_such_module"]))


def test_train_only_that_matches_nothing_is_an_error(model):
    with pytest.raises(ValueError, match=r"freeze.train_only \['nothing_here'\] matches no parameter"):
        apply_freeze(model, FreezeConfig(train_only=["nothing_here"]))


@pytest.mark.parametrize("layers, missing", [([2], "[2]"), ("1-3", "[2, 3]")])
def test_a_layer_out_of_range_is_an_error(model, layers, missing):
    with pytest.raises(ValueError) as info:
        apply_freeze(model, FreezeConfig(layers=layers))
    assert str(info.value) == f"freeze.layers {missing} not in the model (it has 0-1)"


def test_parse_layers():
    assert parse_layers("0-2,5") == {0, 1, 2, 5}
    assert parse_layers(" 3 , 0-1 ") == {0, 1, 3}
    assert parse_layers("4") == {4}
    assert parse_layers([3, 1]) == {1, 3}
    assert parse_layers("") == set() and parse_layers([]) == set()


@pytest.mark.parametrize("spec", ["a-b", "1-", "-1", "1..3", "1-2-3"])
def test_parse_layers_rejects_malformed_specs(spec):
    with pytest.raises(ValueError, match="freeze.layers: .* is not an index or an a-b range"):
        parse_layers(spec)


def test_parse_layers_rejects_a_reversed_range():
    with pytest.raises(ValueError):
        parse_layers("3-1")


# ---------------------------------------------------------------- LoRA


def test_lora_trains_only_the_adapter(model):
    total_before = count_parameters(model)[1]
    peft_model = apply_lora(model, LORA)
    trainable = _trainable(peft_model)
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert {re.sub(r".*layers\.(\d+)\.self_attn\.(\w+)\.lora_([AB]).*", r"\1\2\3", n) for n in trainable} == {
        f"{layer}{proj}{ab}" for layer in (0, 1) for proj in ("q_proj", "v_proj") for ab in "AB"}
    # q_proj: 32 -> 32, v_proj: 32 -> 16 (2 kv heads of 8); A is r x in, B is out x r
    expected = 2 * ((4 * 32 + 32 * 4) + (4 * 32 + 16 * 4))
    assert count_parameters(peft_model) == (expected, total_before + expected)


def test_fresh_lora_does_not_change_the_output(tiny_model):
    base = _logits(load_causal_lm(tiny_model))
    assert torch.equal(_logits(apply_lora(load_causal_lm(tiny_model), LORA)), base)


def test_saved_adapter_reloads_with_identical_logits(tiny_model, tmp_path):
    model = _lora_model(tiny_model)
    expected = _logits(model)
    assert not torch.allclose(expected, _logits(load_causal_lm(tiny_model)), atol=1e-3), "adapter is a no-op"

    folder = tmp_path / "adapter"
    assert save_trained(model, load_tokenizer(tiny_model), folder) == str(folder)
    assert (folder / "adapter_config.json").is_file()
    assert not (folder / "config.json").exists()
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == tiny_model
    assert config["r"] == 4 and sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    assert os.listdir(tmp_path) == ["adapter"]  # no staging folder left behind

    reloaded = load_causal_lm(str(folder))
    assert type(reloaded).__name__.startswith("PeftModel")
    assert not _trainable(reloaded)  # loaded for inference
    got = _logits(reloaded)
    assert torch.equal(got, expected) or torch.allclose(got, expected, atol=1e-6, rtol=0)
    # the tokenizer travels with the adapter
    assert load_tokenizer(str(folder)).get_vocab() == load_tokenizer(tiny_model).get_vocab()


def test_adapter_reloads_trainable_when_asked(tiny_model, tmp_path):
    save_trained(_lora_model(tiny_model), load_tokenizer(tiny_model), tmp_path / "adapter")
    model = load_causal_lm(str(tmp_path / "adapter"), trainable_adapter=True)
    trainable = _trainable(model)
    assert trainable and all("lora_" in n for n in trainable)


def test_save_trained_replaces_an_existing_folder(tiny_model, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "stale.txt").write_text("old")
    save_trained(load_causal_lm(tiny_model), load_tokenizer(tiny_model), folder)
    assert not (folder / "stale.txt").exists()
    assert (folder / "config.json").is_file()
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert torch.equal(_logits(load_causal_lm(str(folder))), _logits(load_causal_lm(tiny_model)))


def test_merge_adapter_gives_a_plain_model_with_the_same_logits(tiny_model, tmp_path):
    model = _lora_model(tiny_model)
    expected = _logits(model)
    save_trained(model, load_tokenizer(tiny_model), tmp_path / "adapter")

    out = merge_adapter(str(tmp_path / "adapter"), str(tmp_path / "merged"))
    assert out == str(tmp_path / "merged")
    assert (tmp_path / "merged" / "config.json").is_file()
    assert not (tmp_path / "merged" / "adapter_config.json").exists()

    merged = load_causal_lm(out)
    assert type(merged).__name__ == "LlamaForCausalLM"
    assert not any("lora" in n for n in _all(merged))
    torch.testing.assert_close(_logits(merged), expected, atol=1e-5, rtol=0)
    assert load_tokenizer(out).chat_template == load_tokenizer(tiny_model).chat_template


def test_merge_adapter_of_a_full_model_is_an_error(tiny_model, tmp_path):
    with pytest.raises(ValueError, match=r"no adapter_config.json, nothing to merge"):
        merge_adapter(tiny_model, str(tmp_path / "merged"))
    assert not (tmp_path / "merged").exists()


# ---------------------------------------------------------------- build_trainable


def _counts_line(model) -> str:
    trainable, total = count_parameters(model)
    return f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)"


def test_build_trainable_with_lora(tiny_model):
    model, line = build_trainable(ModelConfig(name_or_path=tiny_model, lora=LORA))
    assert line == _counts_line(model)
    assert re.fullmatch(r"trainable parameters: 896 of [\d,]+ \(\d+\.\d\d%\)", line)
    assert all("lora_" in n for n in _trainable(model))


def test_build_trainable_with_freeze(tiny_model):
    model, line = build_trainable(ModelConfig(name_or_path=tiny_model, freeze=FreezeConfig(layers="0-0")))
    assert line == _counts_line(model)
    assert not any(n.startswith("model.layers.0.") for n in _trainable(model))
    assert any(n.startswith("model.layers.1.") for n in _trainable(model))


def test_build_trainable_full(tiny_model):
    model, line = build_trainable(ModelConfig(name_or_path=tiny_model))
    total = count_parameters(model)[1]
    assert line == f"trainable parameters: {total:,} of {total:,} (100.00%)"


def test_build_trainable_from_an_adapter_folder_continues_the_adapter(tiny_model, tmp_path):
    save_trained(_lora_model(tiny_model), load_tokenizer(tiny_model), tmp_path / "adapter")
    model, line = build_trainable(ModelConfig(name_or_path=str(tmp_path / "adapter")))
    assert line == _counts_line(model)
    assert count_parameters(model)[0] == 896


def test_build_trainable_with_gradient_checkpointing(tiny_model):
    model, _ = build_trainable(ModelConfig(name_or_path=tiny_model, lora=LORA, gradient_checkpointing=True))
    assert model.config.use_cache is False
    assert model.base_model.model.is_gradient_checkpointing


# ---------------------------------------------------------------- names


def test_resolve_model_of_an_unknown_name_lists_the_builtins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        resolve_model("no-such-model")
    message = str(info.value)
    assert message.startswith("model 'no-such-model': not a built-in name (")
    for name in BUILTIN_MODELS:
        assert name in message
    assert "smollm2-135m-instruct" in message


def test_resolve_model_of_a_folder_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a folder with config.json"):
        resolve_model(str(tmp_path / "empty"))


def test_resolve_model_of_model_and_adapter_folders(tiny_model, tmp_path):
    assert resolve_model(tiny_model) == tiny_model
    save_trained(_lora_model(tiny_model), load_tokenizer(tiny_model), tmp_path / "adapter")
    assert resolve_model(str(tmp_path / "adapter")) == str(tmp_path / "adapter")


def test_load_causal_lm_of_an_unknown_name_fails_the_same_way():
    with pytest.raises(FileNotFoundError, match="not a built-in name"):
        load_causal_lm("definitely-not-a-model")
