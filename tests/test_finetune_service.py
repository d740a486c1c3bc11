"""The fine-tuning service end to end, with the real `openai` client: `rayalign serve` (with
`finetune.enabled`) on a real `ray start` head (127.0.0.1, token auth), jobs run as Ray jobs
by the runner deployment on a tiny model. Upload, a supervised job polled to `succeeded`, its
events and checkpoints, chat with `fine_tuned_model`; another tenant gets 404 for all of it; a
DPO job that survives a restart of the service mid-run; a reinforcement job whose string_check
grader's reward rises; a cancelled job whose Ray job is stopped."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import openai
import pytest
import yaml

from postgres_server import PostgresServer, postgres_bin
from ray_head import ServeProcess, start_head, stop_head
from test_serve_app import free_port
from tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]
QUESTION = [{"role": "user", "content": "What is 3 + 4? Answer with just the number."}]
SFT = [{"messages": [*QUESTION, {"role": "assistant", "content": "7"}]}] * 16
DPO = [{"input": {"messages": [{"role": "user", "content": f"Is {t} real? Answer yes or no."}]},
        "preferred_output": [{"role": "assistant", "content": "Yes, it is real."}],
        "non_preferred_output": [{"role": "assistant", "content": "No, it is not."}]}
       for t in ["the sky", "water", "fire", "a cat", "the moon", "bread", "a river", "snow"]]
# What a tiny random model can learn by RL: answers that contain the row's letter. "f" is in
# about 1 in 5 of its sampled answers at first (measured on 200); calibrated on seeds 1-3 with
# these settings: the mean of the first 3 steps 0.15-0.39, of the last 10 0.49-0.65.
PROMPTS = [{"messages": [{"role": "user", "content": f"Write {what} with the letter f in it."}], "letter": "f"}
           for what in ["a word", "a name", "a sentence", "a greeting", "a color", "a number", "a city", "a verb"]]
GRADER = {"type": "string_check", "name": "has_letter", "input": "{{ sample.output_text }}",
          "reference": "{{ item.letter }}", "operation": "like"}
SMALL = ["train.warmup_steps=0", "train.lr_scheduler=constant", "train.eval_every=0", "placement.num_workers=1",
         "data.max_length=128"]


def jsonl(rows) -> io.BytesIO:
    return io.BytesIO("".join(json.dumps(r) + "\n" for r in rows).encode())


class Service:
    """`rayalign serve` with the fine-tuning service on, on the head; restartable."""

    def __init__(self, root: Path, head, model: str, database_url: str | None):
        self.root, self.port = root, free_port()
        settings = {"runs_dir": str(root / "runs"), "models": [model],
                    "auth": {"keys_file": str(root / "keys")},
                    "engine": {"max_model_len": 512, "max_num_seqs": 8},
                    "deployments": {"policy": {"ray_actor_options": {"num_cpus": 0}}},
                    "finetune": {"enabled": True, "storage": str(root / "ft"), "database_url": database_url,
                                 "ray_address": head.dashboard,
                                 "poll_s": 1.0, "max_active_jobs": 3,
                                 "score_model_url": f"http://127.0.0.1:{free_port()}",  # nothing listens there
                                 "overrides": {"supervised": [*SMALL, "train.lr=1e-2", "train.max_steps=12",
                                                              "train.save_every=6"],
                                               "dpo": [*SMALL, "train.lr=1e-2", "train.max_steps=40",
                                                       "train.save_every=10"],
                                               "reinforcement": [
                                                   "rlhf.steps=30", "rlhf.prompts_per_step=4",
                                                   "rlhf.samples_per_prompt=4", "rlhf.eval_every=0",
                                                   "rollout.engine=hf", "rollout.max_new_tokens=12",
                                                   "rollout.dtype=float32", "model.dtype=float32",
                                                   "data.max_length=64", "train.lr=2e-2",
                                                   "train.micro_batch_size=8"]}}}
        (root / "runs").mkdir(exist_ok=True)
        (root / "keys").write_text("key-a team-a\nkey-b team-b\n")  # a key and its tenant a line
        config = root / "serve.yaml"
        config.write_text(yaml.safe_dump({"applications": [{"name": "rayalign", "args": settings}]}))
        self.serve = ServeProcess(["--config", str(config), "--address", head.gcs, "--port", str(self.port)],
                                  head.client_env, ROOT)

    def start(self) -> None:
        self.serve.start()

    def stop(self) -> None:
        self.serve.stop(timeout_s=150)

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key=key, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """On PostgreSQL where initdb/pg_ctl are installed (the database for several replicas; CI
    installs it), else on the default SQLite (tests/test_finetune_api.py covers both)."""
    root = tmp_path_factory.mktemp("ft-service")
    model = build_tiny_model(root / "tiny-llm", hidden_size=64, heads=2)  # head size 32: vLLM CPU runs it
    database = PostgresServer() if postgres_bin() else None
    head = None
    try:
        if database is not None:
            database.start()
        head = start_head(num_cpus=4)
        running = Service(root, head, model, database and database.url("postgres"))
        try:
            running.start()
            yield running
        finally:
            running.stop()
    finally:
        if head is not None:
            stop_head(head)
        if database is not None:
            database.stop()


def wait_for(client, job_id: str, statuses, timeout_s: float = 420):
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        assert time.monotonic() < deadline, f"{job_id} still {job.status} after {timeout_s} s"
        time.sleep(2)


def test_upload_train_and_chat_with_the_fine_tuned_model_while_others_see_nothing(service):
    a, b = service.client("key-a"), service.client("key-b")
    before = a.chat.completions.create(model="tiny-llm", messages=QUESTION, max_tokens=4, temperature=0)
    training = a.files.create(file=("adder.jsonl", jsonl(SFT)), purpose="fine-tune")
    job = a.fine_tuning.jobs.create(model="tiny-llm", training_file=training.id, suffix="adder",
                                    method={"type": "supervised"})
    done = wait_for(a, job.id, ("succeeded", "failed", "cancelled"))
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:tiny-llm:adder:{job.id.removeprefix('ftjob-')}"
    events = list(a.fine_tuning.jobs.list_events(job.id, limit=100))
    steps = [e for e in events if e.type == "metrics"]
    assert len(steps) == 12 and steps[0].data["step"] == 12  # newest first
    losses = [e.data["train/loss"] for e in reversed(steps)]  # oldest first
    assert sum(losses[6:]) / 6 < sum(losses[:6]) / 6, losses
    assert events[0].message == "The job has successfully completed"
    checkpoints = a.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [12, 6]
    assert checkpoints[0].fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-12"

    assert done.fine_tuned_model in [m.id for m in a.models.list().data]
    reply = a.chat.completions.create(model=done.fine_tuned_model, messages=QUESTION, max_tokens=4, temperature=0)
    assert reply.model == done.fine_tuned_model
    answer, untuned = reply.choices[0].message.content, before.choices[0].message.content
    assert answer.startswith("7") and not untuned.startswith("7"), (answer, untuned)  # no EOS learned in 12 steps

    assert done.fine_tuned_model not in [m.id for m in b.models.list().data]
    for call in (lambda: b.chat.completions.create(model=done.fine_tuned_model, messages=QUESTION, max_tokens=2),
                 lambda: b.chat.completions.create(model=f"tiny-llm:ft-{job.id.removeprefix('ftjob-')}",
                                                   messages=QUESTION, max_tokens=2),
                 lambda: b.fine_tuning.jobs.retrieve(job.id), lambda: b.files.retrieve(training.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert list(b.fine_tuning.jobs.list()) == [] and list(b.files.list()) == []


def test_a_job_running_through_a_restart_of_the_service_reaches_its_end(service):
    a = service.client("key-a")
    prefs = a.files.create(file=("prefs.jsonl", jsonl(DPO)), purpose="fine-tune")
    job = a.fine_tuning.jobs.create(model="tiny-llm", training_file=prefs.id,
                                    method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}})
    wait_for(a, job.id, ("running", "succeeded", "failed"))
    service.stop()
    service.start()
    a = service.client("key-a")
    assert job.id in [j.id for j in a.fine_tuning.jobs.list()]
    done = wait_for(a, job.id, ("succeeded", "failed", "cancelled"))
    assert done.status == "succeeded", done.error
    losses = [e.data["train/loss"] for e in a.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]
    assert len(losses) == 40 and losses[0] < losses[-1]


def test_reinforcement_jobs_raise_their_graders_reward_or_fail_saying_why(service):
    """Two reinforcement jobs at once: a string_check grader's reward rises; a score_model grader
    whose chat server is down stops its run at the first reward, and the job says why."""
    a = service.client("key-a")
    prompts = a.files.create(file=("letters.jsonl", jsonl(PROMPTS)), purpose="fine-tune")
    judge = {"type": "score_model", "name": "judge", "model": "tiny-llm",
             "input": [{"role": "user", "content": "Rate from 0 to 1: {{ sample.output_text }}"}]}
    learns, fails = (a.fine_tuning.jobs.create(model="tiny-llm", training_file=prompts.id, suffix=suffix, seed=2,
                                               method={"type": "reinforcement", "reinforcement": {"grader": grader}})
                     for suffix, grader in (("letters", GRADER), ("judged", judge)))

    done = wait_for(a, learns.id, ("succeeded", "failed", "cancelled"))
    assert done.status == "succeeded", done.error
    steps = sorted((e.data for e in a.fine_tuning.jobs.list_events(learns.id, limit=100) if e.type == "metrics"),
                   key=lambda d: d["step"])
    rewards = [d["reward/has_letter_mean"] for d in steps if "reward/has_letter_mean" in d]
    assert len(rewards) == 30
    assert sum(rewards[-10:]) / 10 > sum(rewards[:3]) / 3 + 0.15, rewards
    assert done.fine_tuned_model in [m.id for m in a.models.list().data]

    failed = wait_for(a, fails.id, ("succeeded", "failed", "cancelled"))
    assert failed.status == "failed" and failed.error.code == "training_failed", failed
    assert "judge" in failed.error.message and "127.0.0.1" in failed.error.message, failed.error.message
    assert str(service.root) not in failed.error.message  # no server paths in what a tenant reads
    assert failed.fine_tuned_model is None and failed.finished_at
    assert next(iter(a.fine_tuning.jobs.list_events(fails.id))).level == "error"


def test_cancelling_a_running_job_stops_its_ray_job(service):
    a = service.client("key-a")
    training = a.files.create(file=("long.jsonl", jsonl(SFT)), purpose="fine-tune")
    job = a.fine_tuning.jobs.create(model="tiny-llm", training_file=training.id,
                                    method={"type": "supervised",
                                            "supervised": {"hyperparameters": {"n_epochs": 100}}})
    wait_for(a, job.id, ("running",))
    assert a.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    deadline = time.monotonic() + 120
    while not any(e.message.startswith("Ray job") and e.message.endswith("stopped")
                  for e in a.fine_tuning.jobs.list_events(job.id, limit=100)):
        assert time.monotonic() < deadline, "the runner did not stop the Ray job"
        time.sleep(2)
    assert a.fine_tuning.jobs.retrieve(job.id).status == "cancelled"


def test_a_paused_job_stops_and_resumed_runs_on_from_its_last_checkpoint(service):
    a = service.client("key-a")
    training = a.files.create(file=("paused.jsonl", jsonl(SFT)), purpose="fine-tune")
    job = a.fine_tuning.jobs.create(model="tiny-llm", training_file=training.id,
                                    method={"type": "supervised",
                                            "supervised": {"hyperparameters": {"n_epochs": 100}}})  # 400 steps
    deadline = time.monotonic() + 300
    while not a.fine_tuning.jobs.checkpoints.list(job.id).data:
        assert time.monotonic() < deadline, "no checkpoint yet"
        time.sleep(0.5)
    assert a.fine_tuning.jobs.pause(job.id).status == "paused"
    while not any(e.message.endswith("stopped") for e in a.fine_tuning.jobs.list_events(job.id, limit=100)):
        assert time.monotonic() < deadline, "the runner did not stop the paused job's Ray job"
        time.sleep(1)
    assert a.fine_tuning.jobs.retrieve(job.id).status == "paused"
    assert a.fine_tuning.jobs.resume(job.id).status == "queued"
    done = wait_for(a, job.id, ("succeeded", "failed", "cancelled"))
    assert done.status == "succeeded", done.error
    events = list(reversed(list(a.fine_tuning.jobs.list_events(job.id, limit=100))))  # every page, oldest first
    assert sum(e.message.startswith("Fine-tuning job resumed") for e in events) == 1
    saved = {c.step_number for c in a.fine_tuning.jobs.checkpoints.list(job.id, limit=100)}
    steps = [e.data["step"] for e in events if e.type == "metrics"]
    assert steps.count(1) == 1 and steps[-1] == 400 and set(steps) - {0} == set(range(1, 401))  # not from scratch
    drops = [i for i in range(1, len(steps)) if steps[i] <= steps[i - 1]]  # where the resumed run logs again
    assert len(drops) <= 1 and all(steps[i] - 1 in saved for i in drops), (drops, saved)
