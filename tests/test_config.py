"""Recipes load into the typed schema; overrides are typed; errors name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from rayalign.config import (
    RECIPES_DIR,
    ConfigError,
    FreezeConfig,
    LoraConfig,
    ModelConfig,
    RunConfig,
    apply_override,
    load_config,
    resolve_recipe,
    save_config,
)

SHIPPED = sorted(RECIPES_DIR.glob("*.yaml"))

# A minimal valid recipe; tests append or change lines and know where each one lands.
BASE = [
    "method: sft",            # line 1
    "name: probe",            # line 2
    "data:",                  # line 3
    "  train: a.jsonl",       # line 4
    "train:",                 # line 5
    "  lr: 1.0e-4",           # line 6
    "  micro_batch_size: 2",  # line 7
]


def _recipe(tmp_path: Path, lines: list[str], name: str = "recipe.yaml") -> str:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# ---------------------------------------------------------------- shipped recipes


def test_there_are_shipped_recipes():
    assert {p.stem for p in SHIPPED} >= {"quickstart", "sft_full", "sft_partial"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_recipe_loads(path):
    config = load_config(str(path))
    assert isinstance(config, RunConfig)
    assert config.method == yaml.safe_load(path.read_text())["method"]
    # by file path, by name, and by name with the suffix: the same recipe
    assert load_config(path.stem) == config
    assert load_config(path.name) == config
    assert load_config(path.stem, method=config.method) == config


def test_shipped_recipes_carry_their_training_setup():
    quick = load_config("quickstart")
    assert quick.model.lora == LoraConfig(r=16, alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    assert quick.model.freeze is None
    assert quick.train.lr == pytest.approx(3e-4) and isinstance(quick.train.lr, float)
    assert quick.train.max_steps == 60
    assert quick.data.train == "shipped:quickstart_train.jsonl"

    partial = load_config("sft_partial")
    assert partial.model.lora is None
    assert partial.model.freeze == FreezeConfig(modules=["embed_tokens"], layers="0-19")

    full = load_config("sft_full")
    assert full.model.lora is None and full.model.freeze is None


def test_saved_config_loads_back_equal(tmp_path):
    config = load_config("quickstart", ["train.lr=1e-3", "name=copy"])
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(str(tmp_path / "saved.yaml")) == config


# ---------------------------------------------------------------- overrides


def test_dotted_override_of_a_float_is_a_float():
    config = load_config("quickstart", ["train.lr=1e-3"])
    assert config.train.lr == 1e-3
    assert type(config.train.lr) is float


def test_overrides_of_ints_bools_and_strings_are_typed():
    config = load_config("quickstart", ["train.micro_batch_size=8", "data.completion_only=false",
                                        "name=other-run", "seed=7"])
    assert config.train.micro_batch_size == 8 and type(config.train.micro_batch_size) is int
    assert config.data.completion_only is False
    assert config.name == "other-run"
    assert config.seed == 7


def test_list_override_replaces_the_list():
    config = load_config("quickstart", ["model.lora.target_modules=[q_proj]"])
    assert config.model.lora.target_modules == ["q_proj"]
    assert config.model.lora.r == 16  # the rest of the section is kept


def test_null_override_removes_a_section():
    config = load_config("quickstart", ["model.lora=null"])
    assert config.model.lora is None


def test_override_can_create_a_section_the_recipe_lacks():
    config = load_config("sft_full", ["model.lora.r=4"])
    assert config.model.lora == LoraConfig(r=4)


def test_later_override_wins():
    config = load_config("quickstart", ["train.lr=1e-3", "train.lr=2e-3"])
    assert config.train.lr == 2e-3


def test_apply_override_parses_values_as_yaml():
    tree: dict = {"train": {"lr": 1.0}}
    apply_override(tree, "train.lr=0.5")
    apply_override(tree, "model.lora.target_modules=[a, b]")
    apply_override(tree, "data.eval=")
    assert tree == {"train": {"lr": 0.5}, "model": {"lora": {"target_modules": ["a", "b"]}}, "data": {"eval": ""}}


@pytest.mark.parametrize("override", ["train.lr", "=3"])
def test_override_without_key_or_value_sign_is_rejected(override):
    with pytest.raises(ConfigError, match="expected key.path=value") as info:
        load_config("quickstart", [override])
    assert repr(override) in str(info.value)


def test_override_into_a_scalar_is_rejected():
    with pytest.raises(ConfigError) as info:
        load_config("quickstart", ["name.x=1"])
    assert "'name.x=1'" in str(info.value) and "'name' is not a section" in str(info.value)


# ---------------------------------------------------------------- errors: file, line, key


def test_unknown_key_in_a_file_names_file_line_and_key(tmp_path):
    path = _recipe(tmp_path, BASE + ["  lr_sheduler: cosine"])  # line 8, a typo
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}, line 8: train.lr_sheduler:")
    assert "Extra inputs are not permitted" in message
    assert message.count("\n") == 0  # only this one problem


def test_unknown_top_level_key_names_its_line(tmp_path):
    lines = BASE[:2] + ["ouptut_dir: runs"] + BASE[2:]  # line 3
    path = _recipe(tmp_path, lines)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}, line 3: ouptut_dir:")


def test_unknown_key_in_a_nested_section_names_the_full_dotted_key(tmp_path):
    lines = BASE + ["model:", "  lora:", "    r: 8", "    alhpa: 16"]  # line 11
    path = _recipe(tmp_path, lines)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}, line 11: model.lora.alhpa:")


def test_wrong_type_in_a_file_names_file_line_and_key(tmp_path):
    lines = list(BASE)
    lines[6] = "  micro_batch_size: lots"  # line 7
    path = _recipe(tmp_path, lines)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}, line 7: train.micro_batch_size:")
    assert "valid integer" in message


def test_out_of_range_value_names_its_line(tmp_path):
    lines = list(BASE)
    lines[5] = "  lr: -1.0"  # line 6
    path = _recipe(tmp_path, lines)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}, line 6: train.lr:")
    assert "greater than 0" in str(info.value)


def test_wrong_literal_names_its_line(tmp_path):
    path = _recipe(tmp_path, BASE + ["  zero_stage: 4"])  # line 8
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}, line 8: train.zero_stage:")


def test_every_problem_is_reported(tmp_path):
    lines = list(BASE)
    lines[5] = "  lr: fast"  # line 6
    lines.append("  epochz: 2")  # line 8
    path = _recipe(tmp_path, lines)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    reported = str(info.value).splitlines()
    assert len(reported) == 2
    assert any(line.startswith(f"{path}, line 6: train.lr:") for line in reported)
    assert any(line.startswith(f"{path}, line 8: train.epochz:") for line in reported)


def test_missing_required_field_names_the_file(tmp_path):
    path = _recipe(tmp_path, ["method: sft", "name: probe"])
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: data:")
    assert "Field required" in str(info.value)


def test_missing_key_inside_a_section_points_at_the_section(tmp_path):
    path = _recipe(tmp_path, ["method: sft", "name: probe", "data:", "  eval: b.jsonl"])
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}, line 3: data.train: Field required")


def test_unknown_key_in_an_override_names_the_override():
    with pytest.raises(ConfigError) as info:
        load_config("quickstart", ["train.lrr=3"])
    message = str(info.value)
    assert message.startswith("override 'train.lrr=3': train.lrr:")
    assert "Extra inputs are not permitted" in message
    assert "quickstart.yaml" not in message


def test_wrong_type_in_an_override_names_the_override():
    with pytest.raises(ConfigError) as info:
        load_config("quickstart", ["model.lora.r=bad"])
    assert str(info.value).startswith("override 'model.lora.r=bad': model.lora.r:")


def test_override_of_a_key_the_file_also_sets_names_the_override():
    # train.lr is on a line of quickstart.yaml; the bad value came from the override
    with pytest.raises(ConfigError) as info:
        load_config("quickstart", ["train.lr=slow"])
    assert str(info.value).startswith("override 'train.lr=slow': train.lr:")


def test_error_inside_an_overridden_section_names_the_override():
    with pytest.raises(ConfigError) as info:
        load_config("quickstart", ["model.lora={r: bad}"])
    assert str(info.value).startswith("override 'model.lora={r: bad}': model.lora.r:")


# ---------------------------------------------------------------- method, lora+freeze


def test_method_mismatch_is_an_error():
    with pytest.raises(ConfigError) as info:
        load_config("quickstart", method="rm")
    message = str(info.value)
    assert "quickstart.yaml" in message
    assert "method is 'sft', but this command runs 'rm'" in message


def test_method_is_filled_in_when_the_recipe_omits_it(tmp_path):
    path = _recipe(tmp_path, BASE[1:])
    assert load_config(path, method="sft").method == "sft"
    with pytest.raises(ConfigError, match="method: Field required"):
        load_config(path)


def test_method_override_is_checked_against_the_command():
    with pytest.raises(ConfigError, match="method is 'rm', but this command runs 'sft'"):
        load_config("quickstart", ["method=rm"], method="sft")


def test_lora_and_freeze_together_is_an_error(tmp_path):
    lines = BASE + ["model:", "  lora: {r: 4}", "  freeze:", "    layers: 0-1"]  # model: line 8
    path = _recipe(tmp_path, lines)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}, line 8: model:")
    assert "set either lora or freeze, not both" in message


def test_freeze_override_on_a_lora_recipe_is_an_error():
    with pytest.raises(ConfigError, match="set either lora or freeze, not both"):
        load_config("quickstart", ["model.freeze.layers=0-1"])
    # dropping lora in the same command makes it valid
    config = load_config("quickstart", ["model.lora=null", "model.freeze.layers=0-1"])
    assert config.model.freeze.layers == "0-1" and config.model.lora is None


def test_model_config_rejects_lora_with_freeze_directly():
    with pytest.raises(ValidationError, match="set either lora or freeze"):
        ModelConfig(lora=LoraConfig(), freeze=FreezeConfig())


# ---------------------------------------------------------------- recipe files


def test_resolve_recipe_of_an_unknown_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError) as info:
        resolve_recipe("no_such_recipe")
    message = str(info.value)
    assert message.startswith("no_such_recipe: no such file")
    shipped = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
    assert f"shipped: {shipped}" in message


def test_resolve_recipe_prefers_an_existing_file(tmp_path):
    path = _recipe(tmp_path, BASE, name="quickstart.yaml")
    assert resolve_recipe(path) == Path(path)
    assert resolve_recipe("quickstart") == RECIPES_DIR / "quickstart.yaml"
    assert resolve_recipe("quickstart.yaml") == RECIPES_DIR / "quickstart.yaml"


def test_malformed_yaml_names_the_file(tmp_path):
    path = _recipe(tmp_path, ["method: sft", "name: probe", "  data: [a"])
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}, line 3: not valid YAML")


def test_a_recipe_that_is_not_a_mapping_is_an_error(tmp_path):
    path = _recipe(tmp_path, ["- sft", "- probe"])
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: a recipe is a mapping of sections, got list"


def test_an_empty_recipe_reports_the_required_fields(tmp_path):
    path = _recipe(tmp_path, [])
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    for field in ("method", "name", "data"):
        assert f"{path}: {field}: Field required" in message


def test_autocast_needs_float32_master_weights():
    config = load_config("rlhf_grpo", ["model.dtype=float32", "train.autocast=bfloat16"])
    assert config.train.autocast == "bfloat16" and config.model.dtype == "float32"
    with pytest.raises(ConfigError) as info:
        load_config("rlhf_grpo", ["model.dtype=bfloat16", "train.autocast=bfloat16"])
    assert "train.autocast=bfloat16" in str(info.value) and "model.dtype=float32" in str(info.value)
    with pytest.raises(ConfigError, match="train.autocast"):
        load_config("rlhf_grpo", ["model.dtype=float32", "train.autocast=float16"])
