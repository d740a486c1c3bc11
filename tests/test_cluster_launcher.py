"""The GPU cluster-launcher config and its guide, offline: the config against the JSON schema of
the Ray that rayalign pins (and Ray's own checks, as `ray up` runs them), the image and Ray
version against pyproject.toml, token auth, the shared /data mount and NCCL settings; the guide's
recipe keys against rayalign's config schema, its commands loaded as configs, the files it names."""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import sys
import tomllib
import types
import typing
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from pydantic import BaseModel

from rayalign.config import RunConfig, load_config, resolve_recipe
from rayalign.workers.placement import plan_placement

ROOT = Path(__file__).parent.parent
CONFIG = ROOT / "cluster" / "gpu-cluster.yaml"
GUIDE = ROOT / "cluster" / "README.md"
RAY_SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
METHODS = ("sft", "rm", "dpo", "rlhf", "prompt")
COMMAND_LISTS = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                 "head_start_ray_commands", "worker_start_ray_commands")


def launcher_config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def guide() -> str:
    return GUIDE.read_text()


def pins() -> tuple[str, str]:
    """(rayalign's version, the Ray version pyproject.toml pins)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ray_pin = next(re.fullmatch(r"ray\[[^\]]*\]==(\S+)", d)[1] for d in project["dependencies"] if d.startswith("ray["))
    return project["version"], ray_pin


def docker_env(config: dict) -> dict[str, str]:
    """The environment variables every container gets from `docker.run_options`."""
    env = {}
    for option in config["docker"]["run_options"]:
        flag, _, value = option.partition(" ")
        if flag in ("--env", "-e"):
            key, _, val = value.partition("=")
            env[key] = val
    return env


def code_lines(text: str) -> list[str]:
    """The guide's indented code blocks as logical lines (backslash continuations joined)."""
    lines, current = [], ""
    for raw in text.splitlines():
        if not raw.startswith("    "):
            current = ""
            continue
        line = raw.strip()
        current = f"{current} {line[:-1].strip()}" if line.endswith("\\") else f"{current} {line}"
        if not line.endswith("\\"):
            lines.append(current.strip())
            current = ""
    return lines


# ------------------------------------------------------------------------------- the launcher config
def test_the_config_fits_the_schema_of_the_pinned_ray():
    config = launcher_config()
    jsonschema.validate(config, json.loads(RAY_SCHEMA.read_text()))
    # What `ray up` does before launching anything: merge the AWS defaults, then Ray's own checks.
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(config))


def test_a_broken_config_fails_the_schema():
    schema = json.loads(RAY_SCHEMA.read_text())
    config = launcher_config()
    config["docker"]["gpus"] = "all"        # not a launcher key
    with pytest.raises(jsonschema.ValidationError, match="gpus"):
        jsonschema.validate(config, schema)
    config = launcher_config()
    config["available_node_types"]["gpu-g5"]["resources"]["GPU"] = 0.5   # resources are integers
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, schema)


def test_every_node_runs_the_image_of_this_version_with_the_pinned_ray():
    version, ray_pin = pins()
    config = launcher_config()
    assert ray.__version__ == ray_pin          # the schema above is the pinned Ray's, `ray up` too
    assert config["docker"]["image"] == f"ghcr.io/example/rayalign:{version}-gpu"
    assert not {"head_image", "worker_image"} & set(config["docker"])
    assert all("docker" not in node for node in config["available_node_types"].values())
    # setup_commands refuse an image whose Ray is not the pin; the check passes on the pinned Ray here.
    check = next(c for c in config["setup_commands"] if "ray.__version__" in c)
    assert f"'{ray_pin}'" in check and check.startswith("python -c ")
    run = subprocess.run(["bash", "-c", shlex.quote(sys.executable) + check.removeprefix("python")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def test_token_auth_on_every_node_and_the_dashboard_behind_it():
    config = launcher_config()
    assert docker_env(config)["RAY_AUTH_MODE"] == "token"
    assert config["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}
    assert "disabled" not in CONFIG.read_text()
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--head" in head_start and "--dashboard-host=0.0.0.0" in head_start
    assert "--address=$RAY_HEAD_IP:6379" in " ".join(config["worker_start_ray_commands"])
    assert "IpPermissions" not in CONFIG.read_text()   # no port opened beyond the launcher's SSH rule


def test_a_cpu_head_gpu_workers_and_data_shared_on_every_node():
    config = launcher_config()
    nodes = config["available_node_types"]
    assert nodes[config["head_node_type"]]["resources"] == {"CPU": 0}
    workers = {name: node for name, node in nodes.items() if name != config["head_node_type"]}
    assert workers and all(node["resources"]["GPU"] > 0 for node in workers.values())
    assert all(0 <= node["min_workers"] <= node["max_workers"] <= config["max_workers"] for node in workers.values())
    assert "--volume /data:/data" in config["docker"]["run_options"]
    init = " ".join(config["initialization_commands"])
    assert "nfs4" in init and "mount /data" in init
    assert any("stat -f -c %T /data" in c for c in config["setup_commands"])
    assert config["provider"]["cache_stopped_nodes"] is False   # a restarted node would skip the mount
    assert docker_env(config)["RAYALIGN_CACHE"].startswith("/data/")


def test_nccl_settings_are_set_and_explained():
    env = docker_env(launcher_config())
    assert env["NCCL_SOCKET_IFNAME"] == "^lo,docker" and env["NCCL_IB_DISABLE"] == "1"
    assert env["NCCL_DEBUG"] == "WARN"
    for name in ("NCCL_SOCKET_IFNAME", "NCCL_IB_DISABLE", "NCCL_DEBUG=INFO", "NCCL_P2P_DISABLE"):
        assert name in guide()


def test_every_command_is_valid_bash():
    config = launcher_config()
    commands = [c for key in COMMAND_LISTS for c in config.get(key, [])]
    assert commands
    for command in commands:
        check = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
        assert check.returncode == 0, f"{command}\n{check.stderr}"


def test_every_placeholder_is_explained_in_the_guide():
    placeholders = set(re.findall(r"REPLACE_WITH_\w+", CONFIG.read_text()))
    assert placeholders == {"REPLACE_WITH_AMI_ID", "REPLACE_WITH_EFS_ID"}
    assert all(p in guide() for p in placeholders)


# ------------------------------------------------------------------------------- the guide
def schema_has(path: list[str]) -> bool:
    """Whether a dotted key exists in RunConfig (anything goes below a dict field: train.deepspeed)."""
    model: type[BaseModel] = RunConfig
    for i, part in enumerate(path):
        if part not in model.model_fields:
            return False
        annotation = model.model_fields[part].annotation
        union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        options = typing.get_args(annotation) if union else (annotation,)
        sub = next((o for o in options if isinstance(o, type) and issubclass(o, BaseModel)), None)
        if sub is None:
            return i == len(path) - 1 or any(typing.get_origin(o) is dict or o is dict for o in options)
        model = sub
    return True


def named_keys(text: str) -> set[str]:
    """Every dotted recipe key the guide names: in backticks or as an override `key=value`."""
    sections = "|".join(RunConfig.model_fields)
    return set(re.findall(rf"(?<![\w./-])((?:{sections})(?:\.\w+)+)(?=[=`:\s]|$)", text))


def test_every_recipe_key_the_guide_names_exists():
    keys = named_keys(guide())
    assert {"placement.num_workers", "rollout.gpu_memory_utilization", "train.zero_stage",
            "train.deepspeed.zero_optimization.offload_optimizer.device"} <= keys
    missing = sorted(key for key in keys if not schema_has(key.split(".")))
    assert not missing, f"cluster/README.md names keys rayalign/config does not have: {missing}"


def test_the_schema_walk_rejects_what_does_not_exist():
    assert schema_has(["model", "lora", "r"]) and schema_has(["train", "deepspeed", "anything", "below"])
    assert not schema_has(["rollout", "tensor_parallel"]) and not schema_has(["placement", "gpus"])


def guide_commands() -> list[tuple[str, str, list[str]]]:
    """(method, recipe, overrides) of each `rayalign [submit] METHOD --config RECIPE ...` in the guide;
    a comment line right after one ("on one p5 instead: ...") is a variant with its overrides on top."""
    commands, variant = [], False
    for line in code_lines(guide()):
        if line.startswith("#") and commands:      # a variant may go on over several comment lines
            extra = [t for t in line.lstrip("# ").split() if re.match(r"^[a-z_]+(\.\w+)+=", t)]
            if extra:
                method, recipe, overrides = commands.pop() if variant else commands[-1]
                commands.append((method, recipe, overrides + extra))
                variant = True
            continue
        variant = False
        if not line.startswith("rayalign "):
            continue
        words = shlex.split(line, comments=True)
        words = words[2:] if words[1] == "submit" else words[1:]
        if words and words[0] in METHODS and "--config" in words:
            recipe = words[words.index("--config") + 1]
            commands.append((words[0], recipe, [w for w in words if re.match(r"^[a-z_]+(\.\w+)+=", w)
                                                or re.match(r"^(name|output_dir)=", w)]))
    return commands


def test_the_guides_runs_load_as_valid_configs_and_place():
    commands = guide_commands()
    assert len(commands) >= 6 and {m for m, _, _ in commands} == {"sft", "rlhf"}
    for method, recipe, overrides in commands:
        config = load_config(recipe, overrides, method=method)
        assert config.output_dir.startswith("/data/"), f"{recipe} {overrides}: output_dir not on /data"
        if config.placement.gpus_per_worker or config.rollout.gpus_per_worker:
            assert config.model.dtype == "bfloat16", f"{recipe} {overrides}: GPU run in {config.model.dtype}"
        if method == "rlhf":
            bundles, _ = plan_placement(config)   # colocation constraints hold
            gpus = sum(b.get("GPU", 0) for b in bundles)
            assert gpus in (4, 8), f"{overrides}: {gpus} GPUs, not one g5.12xlarge/two or one p5"


def test_the_guides_offload_override_loads():
    line = next(l for l in guide().splitlines() if "offload_optimizer.device=cpu" in l)
    overrides = re.findall(r"[a-z_]+(?:\.\w+)+=\S+?(?=`|\s|$)", line)
    config = load_config("sft_full", overrides, method="sft")
    assert config.train.zero_stage == 3
    assert config.train.deepspeed == {"zero_optimization": {"offload_optimizer": {"device": "cpu"}},
                                      "zero_force_ds_cpu_optimizer": False}


def test_files_and_recipes_the_guide_names_exist():
    text = guide()
    paths = set(re.findall(r"(?<![\w/.-])((?:cluster|rayalign|tests|k8s|serve|bench|scripts)/[\w./-]*\w)", text))
    assert "cluster/gpu-cluster.yaml" in paths and "cluster/start-head.sh" in paths
    assert not [p for p in paths if not (ROOT / p).exists()]
    for recipe in set(re.findall(r"--config (\w+)", text)):
        resolve_recipe(recipe)


def test_the_guides_memory_one_liner_runs(tmp_path, capsys):
    """On a two-tensor weight folder: the estimator reads only shapes and config.json."""
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"model.layers.0.self_attn.q_proj.weight": np.zeros((8, 8), np.float32),
               "lm_head.weight": np.zeros((16, 8), np.float32)}, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8, "num_hidden_layers": 1, "vocab_size": 16}))
    line = next(l.strip() for l in guide().splitlines() if l.strip().startswith('python -c "from rayalign.advisor'))
    code = line.removeprefix('python -c "').removesuffix('"')
    exec(re.sub(r"'/data/models/[^']+'", repr(str(tmp_path)), code), {})
    figures = ast.literal_eval(capsys.readouterr().out.strip())
    assert set(figures) == {"full", "lora", "activations"} and figures["full"] >= figures["lora"] > 0
