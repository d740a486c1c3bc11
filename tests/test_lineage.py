"""Model lineage on fabricated run folders (no training): the chain "SFT on synthetic data ->
RLAIF reward model -> RL with it" names every ancestor and every dataset's origin, and its AI
share of the training signal matches numbers worked out by hand; shipped data is human; a
missing parent is reported, not raised; hashes follow the data; recording never fails a run."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import write_jsonl
from rayalign.cli import main
from rayalign.config import load_config
from rayalign.lineage import build_tree, record_lineage
from rayalign.lineage.data import summarise_dataset
from rayalign.lineage.text import summary_lines, tree_lines
from rayalign.runs import RunDir

SMOL = "smollm2-135m-instruct"
JUDGE = "judge-7b@http://judge:8000/v1"
RULE = "rayalign.rewards.quickstart:constraint_check"


def start_run(recipe: str, name: str, *overrides: str):
    """A run folder as every pipeline starts one: config.yaml and lineage.json (through RunDir)."""
    config = load_config(recipe, [f"name={name}", "output_dir=runs", *overrides])
    RunDir(config, tensorboard=False)
    return config.run_dir


def sdg_record(origin: str, reviewer: str | None = None) -> dict:
    provenance = {"origin": origin, "model": SMOL, "item_id": "r001-0001", "scores": {}, "filter": None,
                  "confidence": 0.9, **({"reviewer": reviewer, "reviewed_at": "2025-01-01"} if reviewer else {})}
    return {"messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "hi"}],
            "provenance": provenance}


@pytest.fixture
def chain(tmp_path, monkeypatch):
    """sdg (teacher smollm2) -> sft on its 8 records: 6 generated (2 of them accepted by a reviewer),
    1 edited and 1 written by a person; label (labeler judge-7b, remote) -> rm on its 4 AI labels;
    rl from sft, paid by the rm (weight 1) and the rule check (weight 0.5)."""
    monkeypatch.chdir(tmp_path)
    sdg = start_run("sdg_quickstart", "sdg")
    write_jsonl(sdg / "sft.jsonl", [sdg_record("generated")] * 4 + [sdg_record("generated", "ann")] * 2
                + [sdg_record("edited", "ann"), sdg_record("written", "bob")])
    (sdg / "card.json").write_text(json.dumps({"teacher": SMOL}))
    start_run("sft_full", "sft", "data.train=runs/sdg/sft.jsonl")

    label = start_run("rlaif_label", "label", "labeler.url=http://judge:8000/v1", "labeler.served_model=judge-7b")
    pair = {"prompt": "2+2?", "chosen": "4", "rejected": "5", "soft_label": 0.9, "labeler": JUDGE}
    write_jsonl(label / "preferences.jsonl", [pair] * 4)
    (label / "card.json").write_text(json.dumps({"labeler": JUDGE}))
    rm = start_run("rlaif_rm", "rm", "data.train=runs/label/preferences.jsonl")
    (rm / "final").mkdir()
    (rm / "final" / "adapter_config.json").write_text("{}")
    return start_run("rlaif_grpo", "rl", "model.name_or_path=runs/sft",
                     f"rewards=[{{type: model, path: runs/rm/final}}, {{type: function, path: '{RULE}', weight: 0.5}}]")


def runs_in(node: dict) -> dict:
    """Every run node under `node`, by name."""
    found = {node["name"]: node} if node.get("kind") == "run" else {}
    for child in node.get("parents", []) + node.get("datasets", []):
        if "tree" in child:
            found.update(runs_in(child["tree"]))
    return found


def dataset(run: dict, role: str = "data.train") -> dict:
    return next(d for d in run["datasets"] if d["role"] == role)


def test_lineage_json_records_parents_base_model_and_data(chain):
    lineage = json.loads((chain / "lineage.json").read_text())
    assert lineage["run"] == "rl" and lineage["method"] == "rlhf" and lineage["base_model"] == SMOL
    start, rm, rule = lineage["parents"]
    assert start["role"] == "start" and start["kind"] == "run" and start["run"] == str((chain.parent / "sft").resolve())
    assert rm["kind"] == "run" and rm["run"].endswith("/runs/rm") and rm["weight"] == 1.0
    assert rule == {"role": "reward", "ref": RULE, "kind": "rule", "type": "function", "label": "constraint_check",
                    "weight": 0.5}
    sft = json.loads((chain.parent / "sft" / "lineage.json").read_text())
    data = dataset(sft)
    assert data["records"] == 8 and len(data["sha256"]) == 64 and data["run"].endswith("/runs/sdg")
    assert data["origin"] == {"origins": {"generated": 6, "edited": 1, "written": 1}, "ai": {SMOL: 6}, "human": 2,
                              "unknown": 0, "reviewed": 4, "from": "records"}
    sdg = json.loads((chain.parent / "sdg" / "lineage.json").read_text())
    assert sdg["base_model"] is None and sdg["parents"] == [{"role": "teacher", "ref": SMOL, "kind": "built-in"}]
    asks = json.loads((start_run("rlaif_label", "asks", "data.train=shipped:quickstart_train.jsonl")
                       / "lineage.json").read_text())
    assert [p["role"] for p in asks["parents"]] == ["policy", "labeler"]  # prompts: the policy answers them


def test_the_chain_names_every_ancestor_and_every_datasets_origin(chain):
    tree = build_tree(chain)
    runs = runs_in(tree)
    assert set(runs) == {"rl", "sft", "sdg", "rm", "label"}
    assert {p["role"]: p["ref"] for p in runs["label"]["parents"]} == {"labeler": JUDGE}  # pairs: no policy asked
    assert runs["sdg"]["parents"][0]["ref"] == SMOL and runs["sft"]["base_model"] == SMOL
    seeds = dataset(runs["sdg"])["origin"]
    assert seeds["origins"] == {"shipped": 800} and seeds["human"] == 800 and "hand-made" in seeds["from"]
    labels = dataset(runs["rm"])["origin"]
    assert labels["origins"] == {"ai-labelled": 4} and labels["ai"] == {JUDGE: 4}
    assert dataset(runs["label"])["origin"]["origins"] == {"shipped": 800}
    text = "\n".join(tree_lines(tree))
    for line in ("rl (rlhf)", "sft (sft)", "sdg (sdg_generate)", "rm (rm)", "label (rlaif_label)",
                 f"teacher: {SMOL} [built-in]", f"labeler: {JUDGE} [remote]",
                 "6 generated, 1 edited, 1 written (4 reviewed)", "4 ai-labelled", "800 shipped"):
        assert line in text, line


def test_the_ai_share_matches_the_numbers_worked_by_hand(chain):
    runs = runs_in(build_tree(chain))
    assert runs["sft"]["signal"] == {"ai": {SMOL: 0.75}, "human": 0.25, "unknown": 0.0}
    assert runs["rm"]["signal"] == {"ai": {JUDGE: 1.0}, "human": 0.0, "unknown": 0.0}
    assert runs["sdg"]["signal"] is None and runs["label"]["signal"] is None  # they train nothing
    rl = runs["rl"]
    assert rl["signal"]["ai"] == {JUDGE: pytest.approx(2 / 3)} and rl["signal"]["human"] == pytest.approx(1 / 3)
    assert [stage["run"] for stage in rl["stages"]] == ["rl", "sft"]
    # the chain: the mean of rl (2/3 judge, 1/3 rule) and sft (3/4 smollm2, 1/4 people)
    assert rl["chain"]["ai"] == {JUDGE: pytest.approx(1 / 3), SMOL: pytest.approx(0.375)}
    assert rl["chain"]["human"] == pytest.approx((1 / 3 + 0.25) / 2) and rl["chain"]["unknown"] == 0
    assert summary_lines(rl)[0] == f"Training signal: 71% AI ({SMOL} 38%, {JUDGE} 33%), 29% human or rules"


def test_the_command_prints_the_tree_and_the_share_and_json(chain, capsys):
    assert main(["lineage", "runs/rl"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("rl (rlhf)") and "Training signal: 71% AI" in printed
    assert "reward (model, weight 1): runs/rm/final [run]" in printed
    assert main(["lineage", "runs/rl", "--json"]) == 0
    tree = json.loads(capsys.readouterr().out)
    assert set(runs_in(tree)) == {"rl", "sft", "sdg", "rm", "label"}


def test_shipped_data_counts_as_human(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tree = build_tree(start_run("sft_full", "plain"))
    assert dataset(tree)["origin"]["from"].startswith("shipped with rayalign")
    assert tree["chain"] == {"ai": {}, "human": 1.0, "unknown": 0.0}


def test_a_missing_parent_is_reported_not_raised(chain, capsys):
    shutil.rmtree(chain.parent / "sft")
    tree = build_tree(chain)
    start = tree["parents"][0]
    assert start["tree"]["kind"] == "missing" and start["tree"]["note"] == "no such folder"
    assert tree["stages"][1] == {"run": "runs/sft", "method": None, "signal": {"ai": {}, "human": 0.0, "unknown": 1.0},
                                 "note": "no such folder"}
    assert main(["lineage", "runs/rl"]) == 0
    assert "MISSING" in capsys.readouterr().out
    gone = start_run("sft_full", "orphan", "model.name_or_path=runs/gone", "data.train=runs/gone.jsonl")
    lineage = json.loads((gone / "lineage.json").read_text())
    assert lineage["parents"][0]["kind"] == "missing" and lineage["datasets"][0] == {
        "role": "data.train", "path": "runs/gone.jsonl", "missing": True}
    assert "NOT FOUND" in "\n".join(tree_lines(build_tree(gone)))


def test_hashes_change_when_the_data_changes(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", [{"prompt": "a", "completion": "b"}])
    before = summarise_dataset("data.train", path)
    assert before["origin"]["origins"] == {"user data": 1} and before["origin"]["unknown"] == 1
    write_jsonl(tmp_path / "mine.jsonl", [{"prompt": "a", "completion": "c"}])
    after = summarise_dataset("data.train", path)
    assert after["sha256"] != before["sha256"] and after["records"] == before["records"] == 1


def test_origins_from_revised_rows_and_from_a_card(tmp_path):
    revised = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": "p", "completion": "c", "model": SMOL, "rounds": [],
                                                    "constitution": {"name": "q"}}] * 3)
    assert summarise_dataset("data.train", revised)["origin"]["origins"] == {"ai-revised": 3}
    (tmp_path / "card.json").write_text(json.dumps({"teacher": "big-teacher"}))
    plain = write_jsonl(tmp_path / "plain.jsonl", [{"prompt": "p"}] * 2)
    origin = summarise_dataset("data.train", plain)["origin"]
    assert origin["ai"] == {"big-teacher": 2} and origin["from"] == "card.json: teacher"


def test_recording_never_fails_a_run(tmp_path, monkeypatch, capsys):
    def broken(*args):
        raise OSError("disk on fire")

    monkeypatch.setattr("rayalign.lineage.record.summarise_dataset", broken)
    config = load_config("sft_full", ["name=x", f"output_dir={tmp_path}"])
    assert record_lineage(config, config.run_dir) is None
    RunDir(config, tensorboard=False)
    assert "no lineage.json" in capsys.readouterr().out and not (config.run_dir / "lineage.json").exists()


def test_the_run_report_shows_the_lineage(chain):
    from rayalign.reporting import write_run_report

    html = write_run_report(chain).read_text()
    section = html.split('<h2 id="lineage">Lineage</h2>')[1]
    assert 'href="#lineage"' in html and "Training signal: 71% AI" in section
    assert "sdg (sdg_generate)" in section and "judge-7b@http://judge:8000/v1 [remote]" in section
