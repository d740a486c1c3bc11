"""What travels with a submitted run (no cluster needed): the resolved recipe, the local files
it names, local reward modules; folders named absolutely; the run folder under the storage."""

from __future__ import annotations

import pytest
import yaml

from conftest import write_jsonl
from rayalign.config import ConfigError, load_config
from rayalign.jobs.staging import RECIPE, stage_run

ROW = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


@pytest.fixture
def user(tmp_path, monkeypatch):
    folder = tmp_path / "user"
    (folder / "data").mkdir(parents=True)
    write_jsonl(folder / "data" / "train.jsonl", [ROW])
    write_jsonl(tmp_path / "elsewhere.jsonl", [ROW])
    (folder / "my_rewards.py").write_text("def short(prompts, completions, **_):\n    return [1.0] * len(prompts)\n")
    (folder / "model").mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_local_files_travel_under_the_names_typed_and_the_run_folder_goes_to_storage(user, tmp_path):
    staged = stage_run(["rlhf"], "rlhf_grpo", ["name=r", "data.train=data/train.jsonl",
                                          f"data.eval={tmp_path / 'elsewhere.jsonl'}", "model.name_or_path=model",
                                          "rewards=[{type: function, path: 'my_rewards:short'}]"],
                       ["--verbose"], storage="/shared/kept", workdir=tmp_path / "job")
    job = tmp_path / "job"
    assert (job / "data" / "train.jsonl").read_text() == (user / "data" / "train.jsonl").read_text()
    assert (job / "inputs" / "elsewhere.jsonl").is_file()  # outside this folder: under inputs/
    assert (job / "my_rewards.py").is_file()                # imports in the job's working directory
    assert staged.shared == [str(user / "model")]            # a folder is not uploaded: named absolutely
    sent = load_config(str(job / RECIPE))
    assert sent.data.train == "data/train.jsonl" and sent.data.eval == "inputs/elsewhere.jsonl"
    assert sent.model.name_or_path == str(user / "model")
    assert sent.output_dir == "/shared/kept/runs" and staged.run_dir == "/shared/kept/runs/r"
    assert staged.argv == ["rlhf", "--config", RECIPE, "--verbose"]
    assert yaml.safe_load((job / RECIPE).read_text())["rewards"][0]["path"] == "my_rewards:short"


def test_an_absolute_output_dir_is_kept_and_shipped_data_is_left_to_the_package(user, tmp_path):
    staged = stage_run(["sft"], "quickstart", ["name=s", "output_dir=/data/runs"], [], storage=str(user),
                       workdir=tmp_path / "job")
    assert staged.run_dir == "/data/runs/s"
    assert staged.config.data.train.startswith("shipped:") and staged.copied == {}


def test_a_recipe_that_does_not_validate_names_its_key_and_stages_nothing(user, tmp_path):
    with pytest.raises(ConfigError, match="train.max_stepz"):
        stage_run(["sft"], "quickstart", ["train.max_stepz=3"], [], storage=str(user), workdir=tmp_path / "job")
    assert not (tmp_path / "job").exists()
    with pytest.raises(ConfigError, match="method is 'sft', but this command runs 'dpo'"):
        stage_run(["dpo"], "quickstart", [], [], storage=str(user), workdir=tmp_path / "job")
