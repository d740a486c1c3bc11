"""`rayalign submit` and `rayalign jobs` against a real Ray head (`ray start --head`, token auth
on, 127.0.0.1 only): a short SFT succeeds and leaves its run folder on the cluster's storage;
bad data fails the job with the error shown and the exit code passed on; a job stopped mid-run
and resubmitted under the same name resumes, and its later steps match an uninterrupted run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import write_jsonl
from ray_head import start_head, stop_head
from test_sft_pipeline import ADDITION, _last_losses

STEPS, SAVE_EVERY = 400, 40


@pytest.fixture(scope="module")
def head():
    head = start_head()
    yield head
    stop_head(head)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_model):
    """A user's folder: data files named relatively, run folders kept in `storage`."""
    folder = tmp_path_factory.mktemp("user")
    (folder / "data").mkdir()
    write_jsonl(folder / "data" / "train.jsonl", ADDITION[:80])
    write_jsonl(folder / "data" / "eval.jsonl", ADDITION[80:])
    return folder


def rayalign(head, workspace, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "rayalign.cli", *args], cwd=workspace, env=head.client_env,
                          capture_output=True, text=True, timeout=timeout)


def sft(tiny_model, name, *extra):
    return ["submit", "sft", "--config", "quickstart", f"name={name}", "output_dir=runs",
            f"model.name_or_path={tiny_model}", "data.train=data/train.jsonl", "data.eval=data/eval.jsonl",
            f"train.max_steps={STEPS}", f"train.save_every={SAVE_EVERY}", "train.keep_last=2", "train.lr=1e-3",
            "train.lr_scheduler=constant", "train.warmup_steps=0", "logging.progress=false", *extra]


@pytest.fixture(scope="module")
def reference(head, workspace, tiny_model):
    """An uninterrupted submitted run, followed to its end."""
    done = rayalign(head, workspace, *sft(tiny_model, "reference"), "--storage", str(workspace / "kept"), "--follow")
    return done


def test_a_submitted_sft_succeeds_and_leaves_its_run_folder_on_the_clusters_storage(reference, workspace):
    assert reference.returncode == 0, reference.stdout[-3000:] + reference.stderr[-3000:]
    run = workspace / "kept" / "runs" / "reference"
    assert "[submit] sent data/train.jsonl as data/train.jsonl" in reference.stdout.replace(str(workspace) + "/", "")
    assert f"run folder (on the cluster): {run}" in reference.stdout
    assert "[sft] held-out loss:" in reference.stdout  # the job's own output, streamed
    assert "SUCCEEDED (exit code 0)" in reference.stdout
    assert (run / "final" / "adapter_model.safetensors").is_file()
    assert json.loads((run / "report.json").read_text())["steps"] == STEPS


def test_a_job_on_bad_data_fails_shows_the_error_and_exits_with_its_code(head, workspace, tiny_model):
    write_jsonl(workspace / "data" / "bad.jsonl", [*ADDITION[:3], {"messages": [{"role": "user"}]}])
    failed = rayalign(head, workspace, *sft(tiny_model, "bad", "data.train=data/bad.jsonl", "data.eval=null"),
                      "--follow")
    assert failed.returncode == 2, failed.stdout[-3000:]
    assert "data/bad.jsonl, line 4, field 'messages[0].content'" in failed.stdout
    assert "FAILED (exit code 2)" in failed.stdout

    # A recipe that does not validate is refused here, naming the key, and nothing is sent.
    refused = rayalign(head, workspace, *sft(tiny_model, "typo", "train.max_stepz=3"))
    assert refused.returncode == 2 and "train.max_stepz" in refused.stderr
    listing = rayalign(head, workspace, "jobs", "list")
    assert listing.returncode == 0 and " bad " in listing.stdout and "typo" not in listing.stdout


def test_a_client_without_the_token_is_refused(head, workspace, tmp_path):
    wrong = tmp_path / "token"
    wrong.write_text("not-the-token")
    env = {**head.client_env, "RAY_AUTH_TOKEN_PATH": str(wrong)}
    refused = subprocess.run([sys.executable, "-m", "rayalign.cli", "jobs", "list"], cwd=workspace, env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "cannot reach the Ray job server" in refused.stderr and "token" in refused.stderr.lower()


def test_a_stopped_job_resubmitted_under_its_name_resumes_and_matches_an_uninterrupted_run(
        head, workspace, tiny_model, reference):
    storage = ["--storage", str(workspace / "kept")]
    started = rayalign(head, workspace, *sft(tiny_model, "resumed"), *storage)
    assert started.returncode == 0, started.stderr[-3000:]
    run = workspace / "kept" / "runs" / "resumed"
    latest, deadline = run / "checkpoints" / "latest", time.time() + 180
    while not latest.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert latest.exists(), "no checkpoint within 3 minutes"

    twice = rayalign(head, workspace, *sft(tiny_model, "resumed"), *storage)
    assert twice.returncode == 2 and "still going as job" in twice.stderr  # one run folder, one job

    stopped = rayalign(head, workspace, "jobs", "stop", "resumed")
    assert stopped.returncode == 0 and "STOPPED" in stopped.stdout, stopped.stdout + stopped.stderr
    stopped_at = int(latest.read_text().split("-")[1])
    assert 0 < stopped_at < STEPS, "the job must be stopped mid-run"

    resumed = rayalign(head, workspace, *sft(tiny_model, "resumed"), *storage, "--follow")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert f"resumed from {run}/checkpoints/step-{stopped_at:06d}" in resumed.stdout

    expected = _last_losses(workspace / "kept" / "runs" / "reference" / "metrics.jsonl")
    got = _last_losses(run / "metrics.jsonl")
    assert sorted(got) == list(range(1, STEPS + 1))
    for step in range(stopped_at + 1, STEPS + 1):
        assert got[step] == pytest.approx(expected[step], abs=1e-5), step
    logs = rayalign(head, workspace, "jobs", "logs", "resumed")
    assert logs.returncode == 0 and "resumed from" in logs.stdout
