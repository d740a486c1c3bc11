"""The fine-tuning API's routes with the real `openai` client over HTTP (uvicorn on 127.0.0.1),
on SQLite and on a real PostgreSQL: files, jobs, paging, tenant isolation (another tenant's id
is a 404 and lists stay apart), limits, bad input as OpenAI's 400 naming the problem, and the
state kept for a restarted service. No job runs here (tests/test_finetune_service.py runs them)."""

from __future__ import annotations

import io
import json
import threading
import time

import openai
import pytest
import uvicorn
from fastapi import FastAPI

from rayalign.serving.auth import ApiKeyMiddleware
from rayalign.serving.errors import add_error_handlers
from rayalign.serving.finetune_api import _service, add_finetune_routes
from rayalign.serving.settings import AuthSettings, FineTuneSettings
from test_serve_app import free_port

BASE = "tiny-base"
SFT = [{"messages": [{"role": "user", "content": f"What is {i} + 1?"},
                     {"role": "assistant", "content": str(i + 1)}]} for i in range(6)]
DPO = [{"input": {"messages": [{"role": "user", "content": "Say hi"}]},
        "preferred_output": [{"role": "assistant", "content": "Hi!"}],
        "non_preferred_output": [{"role": "assistant", "content": "No."}]}] * 3
RL = [{"messages": [{"role": "user", "content": "Say yes"}], "answer": "yes"}] * 3
GRADER = {"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}",
          "reference": "{{ item.answer }}", "operation": "eq"}


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


class Service:
    """The routes behind the API-key middleware, as `rayalign serve` mounts them, on a port."""

    def __init__(self, tmp_path, database_url: str, monkeypatch, **limits):
        monkeypatch.setenv("FT_API_TEST_KEYS", "key-a team-a,key-a2 team-a,key-b team-b")
        self.settings = FineTuneSettings(enabled=True, storage=str(tmp_path / "ft"), database_url=database_url,
                                         **limits)
        self.port = free_port()
        self.start()

    def start(self):
        _service.cache_clear()  # a new process would open the state anew
        app = FastAPI()
        add_error_handlers(app)
        add_finetune_routes(app, self.settings, {BASE: "/models/tiny"})
        app.add_middleware(ApiKeyMiddleware, settings=AuthSettings(keys_env="FT_API_TEST_KEYS"))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the API did not start"
            time.sleep(0.05)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key=key, max_retries=0)


@pytest.fixture
def service(tmp_path, database, monkeypatch):
    running = Service(tmp_path, database, monkeypatch)
    yield running
    running.stop()


def upload(client, rows, name="train.jsonl"):
    return client.files.create(file=(name, io.BytesIO(rows if isinstance(rows, bytes) else jsonl(rows))),
                               purpose="fine-tune")


def bad_request(call) -> dict:
    with pytest.raises(openai.BadRequestError) as caught:
        call()
    return caught.value.body


def test_files_and_jobs_through_the_openai_client(service):
    a = service.client("key-a")
    sft = upload(a, SFT)
    assert (sft.purpose, sft.bytes, sft.filename) == ("fine-tune", len(jsonl(SFT)), "train.jsonl")
    assert a.files.retrieve(sft.id).id == sft.id
    assert a.files.content(sft.id).content == jsonl(SFT)
    prefs, prompts = upload(a, DPO, "prefs.jsonl"), upload(a, RL, "prompts.jsonl")
    assert [f.id for f in a.files.list()] == [prompts.id, prefs.id, sft.id]  # newest first

    job = a.fine_tuning.jobs.create(model=BASE, training_file=sft.id, validation_file=sft.id, suffix="adder", seed=7,
                                    method={"type": "supervised",
                                            "supervised": {"hyperparameters": {"n_epochs": 2}}})
    assert (job.status, job.model, job.seed, job.training_file, job.validation_file) == \
        ("validating_files", BASE, 7, sft.id, sft.id)
    assert job.method.supervised.hyperparameters.n_epochs == 2
    dpo = a.fine_tuning.jobs.create(model=BASE, training_file=prefs.id,
                                    method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2}}})
    assert dpo.method.dpo.hyperparameters.beta == 0.2
    with pytest.raises(openai.RateLimitError, match="the limit is 2"):
        a.fine_tuning.jobs.create(model=BASE, training_file=sft.id)
    a.fine_tuning.jobs.cancel(dpo.id)
    assert a.fine_tuning.jobs.retrieve(dpo.id).status == "cancelled"
    rl = a.fine_tuning.jobs.create(model=BASE, training_file=prompts.id,
                                   method={"type": "reinforcement", "reinforcement": {"grader": GRADER}})
    assert rl.method.reinforcement.grader.type == "string_check"
    first = a.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in first.data] == [rl.id, dpo.id] and first.has_more
    assert [j.id for j in a.fine_tuning.jobs.list(limit=2, after=dpo.id).data] == [job.id]
    assert [j.id for j in a.fine_tuning.jobs.list(limit=1)] == [rl.id, dpo.id, job.id]
    assert a.fine_tuning.jobs.list_events(job.id).data == []
    assert a.fine_tuning.jobs.checkpoints.list(job.id).data == []
    assert a.files.delete(prompts.id).deleted
    with pytest.raises(openai.NotFoundError):
        a.files.retrieve(prompts.id)


def test_a_tenant_sees_only_its_own_files_and_jobs(service):
    a, a2, b = service.client("key-a"), service.client("key-a2"), service.client("key-b")
    sft = upload(a, SFT)
    job = a.fine_tuning.jobs.create(model=BASE, training_file=sft.id)
    assert a2.files.retrieve(sft.id).id == sft.id  # a second key of the same tenant
    calls = {"file": lambda: b.files.retrieve(sft.id), "content": lambda: b.files.content(sft.id),
             "delete": lambda: b.files.delete(sft.id), "job": lambda: b.fine_tuning.jobs.retrieve(job.id),
             "cancel": lambda: b.fine_tuning.jobs.cancel(job.id),
             "events": lambda: b.fine_tuning.jobs.list_events(job.id),
             "checkpoints": lambda: b.fine_tuning.jobs.checkpoints.list(job.id),
             "train on it": lambda: b.fine_tuning.jobs.create(model=BASE, training_file=sft.id)}
    for name, call in calls.items():
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert caught.value.status_code == 404, name
        assert "No such" in caught.value.body["message"], name
    unknown = "file-" + "0" * 24
    with pytest.raises(openai.NotFoundError) as theirs:
        b.files.retrieve(sft.id)
    with pytest.raises(openai.NotFoundError) as nobodys:
        b.files.retrieve(unknown)
    assert theirs.value.body["message"].replace(sft.id, unknown) == nobodys.value.body["message"]  # no tell
    assert list(b.files.list()) == [] and list(b.fine_tuning.jobs.list()) == []
    with pytest.raises(openai.AuthenticationError):
        service.client("key-c").files.list()
    assert a.fine_tuning.jobs.retrieve(job.id).status == "validating_files"


def test_bad_input_is_a_400_naming_the_problem(tmp_path, database, monkeypatch):
    service = Service(tmp_path, database, monkeypatch, max_file_bytes=4096)
    try:
        a = service.client("key-a")
        broken = jsonl(SFT[:2]) + b'{"messages": [oops\n'
        body = bad_request(lambda: upload(a, broken, "broken.jsonl"))
        assert body["param"] == "file" and body["message"].startswith("broken.jsonl, line 3"), body
        body = bad_request(lambda: upload(a, SFT[:2] + [{"messages": [{"role": "user", "content": "hi"},
                                                                     {"role": "robot", "content": "x"}]}]))
        assert "train.jsonl, line 3, field 'messages[1].role'" in body["message"], body
        body = bad_request(lambda: upload(a, b"x" * 5000))
        assert body["code"] == "file_too_large" and "4096" in body["message"]
        body = bad_request(lambda: a.files.create(file=("t.jsonl", io.BytesIO(jsonl(SFT))), purpose="batch"))
        assert body["param"] == "purpose"

        sft, prefs = upload(a, SFT), upload(a, DPO)
        body = bad_request(lambda: a.fine_tuning.jobs.create(model=BASE, training_file=sft.id,
                                                             method={"type": "dpo"}))
        assert body["param"] == "training_file" and "looks like a supervised row" in body["message"], body
        assert "train.jsonl, line 1" in body["message"]
        body = bad_request(lambda: a.fine_tuning.jobs.create(model=BASE, training_file=sft.id, validation_file=prefs.id))
        assert body["param"] == "validation_file" and "line 1: this looks like a dpo row" in body["message"], body
        body = bad_request(lambda: a.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=prefs.id))
        assert body["param"] == "model" and "gpt-4o-mini" in body["message"] and BASE in body["message"]
        grader = {**GRADER, "type": "regex_check"}
        body = bad_request(lambda: a.fine_tuning.jobs.create(
            model=BASE, training_file=sft.id, method={"type": "reinforcement", "reinforcement": {"grader": grader}}))
        assert body["param"] == "method.reinforcement.grader" and "regex_check" in body["message"], body
        python = {"type": "python", "name": "mine", "source": "def grade(sample, item): return 1.0"}
        body = bad_request(lambda: a.fine_tuning.jobs.create(
            model=BASE, training_file=sft.id, method={"type": "reinforcement", "reinforcement": {"grader": python}}))
        assert body["code"] == "python_graders_disabled" and "finetune.python_graders" in body["message"]
        body = bad_request(lambda: a.fine_tuning.jobs.create(
            model=BASE, training_file=sft.id,
            method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": -1}}}))
        assert body["param"] == "method.supervised.hyperparameters.n_epochs"
        body = bad_request(lambda: a.fine_tuning.jobs.create(model=BASE, training_file=sft.id, suffix="Bad Suffix"))
        assert body["param"] == "suffix"
        assert list(a.fine_tuning.jobs.list()) == []  # nothing half-made
    finally:
        service.stop()
    service = Service(tmp_path, database, monkeypatch, python_graders=True)  # the operator turns them on
    try:
        a = service.client("key-a")
        prompts = upload(a, RL)
        job = a.fine_tuning.jobs.create(model=BASE, training_file=prompts.id, method={
            "type": "reinforcement", "reinforcement": {"grader": {**python, "name": "mine"}}})
        assert job.method.reinforcement.grader.type == "python"
    finally:
        service.stop()


def test_files_and_jobs_outlive_the_service(service):
    a = service.client("key-a")
    sft = upload(a, SFT)
    job = a.fine_tuning.jobs.create(model=BASE, training_file=sft.id)
    service.stop()
    service.start()
    assert a.fine_tuning.jobs.retrieve(job.id).training_file == sft.id
    assert a.files.content(sft.id).content == jsonl(SFT)
