"""Faults in the middle of an RL run (tiny model, checkpoints every step): the reward worker
killed while it scores is a named error, and the rerun loses no checkpointed step; a checkpoint
that cannot be written (the trainer's file-size limit, a real EFBIG) stops the run with the path
and the cause, leaves the previous checkpoint as it was, and the rerun resumes from it.
(The rollout worker and driver kills: tests/test_rlhf_pipeline.py, tests/test_rl_weight_sync.py.)"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import threading
import time

import pytest

from conftest import RL_PROMPTS, write_jsonl
from rayalign.pipelines.rlhf import run_rlhf
from rayalign.runs import RunDir
from rayalign.workers.group import WorkerError
from rayalign.workers.placement import REWARD
from test_rlhf_pipeline import tiny_rl_config

STEPS = 4


def gated_config(tmp_path, tiny_model, name: str):
    """A run whose reward (tests/rl_rewards.py `gated_digit_share`) waits while `gate/hold` exists."""
    gate = tmp_path / "gate"
    gate.mkdir()
    prompts = write_jsonl(tmp_path / "gated.jsonl", [{"prompt": [{"role": "user", "content": p}], "gate": str(gate)}
                                                     for p in RL_PROMPTS * 4])
    config = tiny_rl_config(tmp_path, tiny_model, prompts, name=name, overrides=[
        f"rlhf.steps={STEPS}", "rlhf.save_every=1", "train.keep_last=2", "data.eval=null", "data.eval_fraction=0",
        "rewards=[{type: function, path: 'rl_rewards:gated_digit_share'}]"])
    return config, gate


def latest_step(config) -> int:
    return int((config.run_dir / "checkpoints" / "latest").read_text().split("-")[1])


def logged_steps(config) -> list[int]:
    return [json.loads(line)["step"] for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()
            if "reward/total_mean" in line]


def hashes(folder) -> dict:
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*")) if f.is_file()}


def after_checkpoint(monkeypatch, step: int, action) -> None:
    """Run `action()` in the driver right after checkpoint `step` is committed."""
    commit = RunDir.commit_checkpoint

    def committed(self, staging, at, state):
        final = commit(self, staging, at, state)
        if at == step:
            action()
        return final

    monkeypatch.setattr(RunDir, "commit_checkpoint", committed)


def test_a_reward_worker_killed_mid_score_is_named_and_the_rerun_loses_no_checkpointed_step(
        ray_cluster, tiny_model, tmp_path, monkeypatch):
    config, gate = gated_config(tmp_path, tiny_model, "reward-killed")
    after_checkpoint(monkeypatch, 2, lambda: (gate / "hold").touch())  # step 3's scoring will wait
    killed = {}

    def kill_the_scorer():
        deadline = time.monotonic() + 300
        while not (gate / "scoring").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)                                  # well inside the score call
        killed["checkpoint"] = latest_step(config)
        killed["at"] = time.monotonic()
        os.kill(int((gate / "scoring").read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_the_scorer, daemon=True)
    killer.start()
    with pytest.raises(WorkerError, match=rf"{REWARD} rank 0: score failed: ActorDiedError"):
        run_rlhf(config)
    failed_after = time.monotonic() - killed["at"]
    killer.join(5)
    (gate / "hold").unlink()
    assert killed["checkpoint"] == 2
    assert failed_after < 30, f"the driver took {failed_after:.1f} s to name the dead reward worker"
    assert logged_steps(config) == [1, 2]             # step 3 died in its scoring: nothing logged for it

    monkeypatch.undo()
    report = run_rlhf(config)
    assert report["steps"] == STEPS
    assert logged_steps(config) == list(range(1, STEPS + 1))   # steps 1-2 kept, 3-4 done once, none lost
    print(f"\nreward worker killed mid-score at step 3: named error after {failed_after:.2f} s; "
          f"rerun resumed at step 2 and finished {STEPS} steps")


def test_a_checkpoint_the_disk_refuses_stops_the_run_and_the_rerun_resumes_from_the_previous(
        ray_cluster, tiny_model, tmp_path, monkeypatch):
    """After checkpoint 1, the trainer's process gets a file-size limit (RLIMIT_FSIZE) below its
    checkpoint's largest file: writing checkpoint 2 meets a real EFBIG ("File too large")."""
    import psutil

    config, _ = gated_config(tmp_path, tiny_model, "disk-full")
    first = config.run_dir / "checkpoints" / "step-000001"
    limits = {}

    def limit_the_trainers():
        limit = max(f.stat().st_size for f in first.rglob("*") if f.is_file()) // 2
        trainers = [p for p in psutil.Process().children(recursive=True)  # our own Ray's, not another's
                    if (p.cmdline() or [""])[0].startswith("ray::Trainer")]      # the actor class
        assert trainers, "the policy trainer should be running"
        for trainer in trainers:
            trainer.rlimit(psutil.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        limits.update(bytes=limit, pids=[t.pid for t in trainers], hashes=hashes(first))

    after_checkpoint(monkeypatch, 1, limit_the_trainers)
    with pytest.raises(WorkerError) as failure:
        run_rlhf(config)
    message = str(failure.value)
    print(f"\ncheckpoint 2 with a {limits['bytes']}-byte file-size limit: {message}")
    assert "save_checkpoint" in message and str(config.run_dir / "checkpoints") in message
    assert "File too large" in message or "file-size limit" in message
    checkpoints = config.run_dir / "checkpoints"
    assert latest_step(config) == 1
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest", "step-000001"]  # no half-written one left
    assert hashes(first) == limits["hashes"]                      # the previous checkpoint, byte for byte
    assert logged_steps(config) == [1, 2]                        # step 2 trained; its checkpoint failed

    monkeypatch.undo()
    report = run_rlhf(config)                                    # a new trainer, no limit: resumes at 1
    assert report["steps"] == STEPS
    assert logged_steps(config) == [1, 2, *range(2, STEPS + 1)]  # step 2 again, from checkpoint 1; none lost


def test_a_failed_checkpoint_block_leaves_no_staging_folder_and_the_latest_as_it_was(tmp_path):
    from rayalign.config import load_config

    config = load_config("sft_full", [f"output_dir={tmp_path}", "name=ckpt", "data.train=x.jsonl"])
    run = RunDir(config, tensorboard=False)
    with run.checkpoint(1, {"samples_seen": 4}) as staging:
        (staging / "weights").write_text("one")
    with pytest.raises(OSError, match="disk full"), run.checkpoint(2, {"samples_seen": 8}) as staging:
        (staging / "weights").write_text("half")
        raise OSError("disk full")
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["latest", "step-000001"]
    folder, state = run.latest_checkpoint()
    assert state == {"step": 1, "samples_seen": 4} and (folder / "weights").read_text() == "one"


def test_a_torch_save_over_the_file_size_limit_is_named_with_its_folder_and_cause(tmp_path):
    """torch reports a short write as "unexpected pos"; the error says the limit instead."""
    import subprocess
    import sys

    script = f"""
import resource, torch
from rayalign.engines.training import checkpoint_writing
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
with checkpoint_writing({str(tmp_path)!r}):
    torch.save(torch.zeros(10_000), {str(tmp_path / "big.pt")!r})
"""
    failed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith(f"rayalign.engines.training.CheckpointWriteError: checkpoint {tmp_path} not written: "
                           "File too large: this process may write files of at most 4096 bytes"), last
