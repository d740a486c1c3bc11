"""The fine-tuning service's state layer, on SQLite and on a real PostgreSQL: tenants see only
their own files, jobs, events and checkpoints; limits; the job lifecycle under concurrent
writers; OpenAI's paging; everything still there for a new Store (a restarted service)."""

from __future__ import annotations

import threading

import pytest
from openai.types import FileObject
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

from rayalign.finetune.errors import LimitReached, NotFound, ServiceError
from rayalign.finetune.objects import (checkpoint_object, event_object, file_object, fine_tuned_name, job_object,
                                       list_object)
from rayalign.finetune.store import Limits, Store

SUPERVISED = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}
ROWS = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'


def make_store(database, tmp_path, **limits) -> Store:
    return Store(database, tmp_path / "storage", Limits(**limits))


def test_files_are_stored_listed_read_and_deleted_per_tenant(database, tmp_path):
    store = make_store(database, tmp_path)
    row = store.create_file("team-a", "train.jsonl", "fine-tune", ROWS)
    assert FileObject.model_validate(file_object(row)).bytes == len(ROWS)
    assert store.file_content("team-a", row.id) == ROWS
    assert [p.name for p in (tmp_path / "storage" / "files" / "team-a").iterdir()] == [f"{row.id}.jsonl"]  # no temp left
    for call in (lambda: store.get_file("team-b", row.id), lambda: store.file_content("team-b", row.id),
                 lambda: store.delete_file("team-b", row.id)):
        with pytest.raises(NotFound, match=f"No such File object: {row.id}") as caught:
            call()
        assert caught.value.status == 404 and caught.value.body()["error"]["param"] == "id"
    assert store.list_files("team-b").items == []
    assert [f.id for f in store.list_files("team-a").items] == [row.id]
    store.delete_file("team-a", row.id)
    with pytest.raises(NotFound):
        store.get_file("team-a", row.id)
    assert not (tmp_path / "storage" / "files" / "team-a" / f"{row.id}.jsonl").exists()


def test_file_size_and_stored_bytes_limits(database, tmp_path):
    store = make_store(database, tmp_path, max_file_bytes=100, max_stored_bytes=150)
    with pytest.raises(ServiceError, match="101 bytes; the limit is 100") as caught:
        store.create_file("team-a", "big.jsonl", "fine-tune", b"x" * 101)
    assert (caught.value.status, caught.value.code, caught.value.param) == (400, "file_too_large", "file")
    store.create_file("team-a", "a.jsonl", "fine-tune", b"x" * 100)
    with pytest.raises(LimitReached, match="limit of 150 \\(now 100\\)") as caught:
        store.create_file("team-a", "b.jsonl", "fine-tune", b"x" * 60)
    assert caught.value.status == 429
    store.create_file("team-b", "b.jsonl", "fine-tune", b"x" * 60)  # another tenant's bytes are its own
    with pytest.raises(ValueError, match="tenant"):
        store.create_file("../etc", "x.jsonl", "fine-tune", b"x")


def test_a_job_moves_through_openais_lifecycle_and_its_objects_parse(database, tmp_path):
    store = make_store(database, tmp_path)
    training = store.create_file("team-a", "train.jsonl", "fine-tune", ROWS)
    job = store.create_job("team-a", "smollm2-135m-instruct", training.id, SUPERVISED, suffix="faq", seed=7)
    parsed = FineTuningJob.model_validate(job_object(job))
    assert (parsed.status, parsed.seed, parsed.hyperparameters.n_epochs, parsed.method.type) == \
        ("validating_files", 7, 2, "supervised")
    assert parsed.hyperparameters.batch_size == "auto"
    with pytest.raises(ServiceError, match="is validating_files; it cannot become succeeded"):
        store.move(job.id, "succeeded")
    store.move(job.id, "queued")
    store.move(job.id, "running")
    store.add_event(job.id, "step 10/20: loss 1.25", data={"step": 10, "train_loss": 1.25})
    store.add_checkpoint(job.id, 10, {"step": 10, "train_loss": 1.25}, f"{fine_tuned_name(job)}:ckpt-step-10",
                         "/runs/x/checkpoints/step-10")
    done = store.move(job.id, "succeeded", fine_tuned_model=fine_tuned_name(job), trained_tokens=1234)
    parsed = FineTuningJob.model_validate(job_object(done))
    assert parsed.fine_tuned_model == f"ft:smollm2-135m-instruct:faq:{job.id.removeprefix('ftjob-')}"
    assert parsed.finished_at >= parsed.created_at and parsed.trained_tokens == 1234
    [event] = store.list_events("team-a", job.id).items
    assert FineTuningJobEvent.model_validate(event_object(event)).type == "metrics"
    [checkpoint] = store.list_checkpoints("team-a", job.id).items
    assert FineTuningJobCheckpoint.model_validate(checkpoint_object(checkpoint)).step_number == 10
    with pytest.raises(ServiceError, match="already succeeded") as caught:
        store.cancel_job("team-a", job.id)
    assert caught.value.code == "job_finished"


def test_a_running_job_pauses_and_resumes_and_the_runner_is_told_to_stop_it(database, tmp_path):
    store = make_store(database, tmp_path)
    training = store.create_file("team-a", "train.jsonl", "fine-tune", ROWS)
    job = store.create_job("team-a", "smollm2-135m-instruct", training.id, SUPERVISED)
    with pytest.raises(ServiceError, match="only a running job can be paused"):
        store.pause_job("team-a", job.id)
    store.move(job.id, "queued")
    store.move(job.id, "running")
    store.note(job.id, ray_job="rayalign-ft-1", run_dir="/runs/ft-1", stopped=False)
    assert store.pause_job("team-a", job.id).status == "paused"
    assert [j.id for j in store.to_stop()] == [job.id] and store.active_jobs() == []
    with pytest.raises(NotFound):
        store.resume_job("team-b", job.id)
    store.note(job.id, stopped=True)
    assert store.to_stop() == []
    assert store.resume_job("team-a", job.id).status == "queued"
    with pytest.raises(ServiceError, match="only a paused job can be resumed"):
        store.resume_job("team-a", job.id)
    assert store.cancel_job("team-a", job.id).status == "cancelled"


def test_another_tenant_sees_none_of_a_job(database, tmp_path):
    store = make_store(database, tmp_path)
    training = store.create_file("team-a", "train.jsonl", "fine-tune", ROWS)
    with pytest.raises(NotFound, match="No such File object") as caught:
        store.create_job("team-b", "smollm2-135m-instruct", training.id, SUPERVISED)
    assert caught.value.param == "training_file"
    job = store.create_job("team-a", "smollm2-135m-instruct", training.id, SUPERVISED)
    store.add_event(job.id, "queued")
    for call in (store.get_job, store.list_events, store.list_checkpoints, store.cancel_job):
        with pytest.raises(NotFound, match=f"No such fine-tuning job: {job.id}"):
            call("team-b", job.id)
    assert store.list_jobs("team-b").items == []
    assert store.get_job("team-a", job.id).status == "validating_files"


def test_the_concurrent_job_limit_counts_only_unfinished_jobs(database, tmp_path):
    store = make_store(database, tmp_path, max_active_jobs=2)
    training = store.create_file("team-a", "train.jsonl", "fine-tune", ROWS)
    first, _ = (store.create_job("team-a", "m", training.id, SUPERVISED) for _ in range(2))
    with pytest.raises(LimitReached, match="2 jobs validating, queued, running or paused; the limit is 2"):
        store.create_job("team-a", "m", training.id, SUPERVISED)
    store.cancel_job("team-a", first.id)
    store.create_job("team-a", "m", training.id, SUPERVISED)


def test_two_replicas_creating_at_once_stay_within_the_tenants_limits(database, tmp_path):
    """Eight creators (two Stores, as two replicas) at once: exactly the limit's worth succeed."""
    stores = [make_store(database, tmp_path, max_active_jobs=2, max_stored_bytes=3 * len(ROWS)) for _ in range(2)]
    training = stores[0].create_file("team-a", "train.jsonl", "fine-tune", ROWS)
    outcomes, barrier = {"job": [], "file": []}, threading.Barrier(8)

    def create(store, kind):
        barrier.wait()
        try:
            if kind == "job":
                store.create_job("team-a", "m", training.id, SUPERVISED)
            else:
                store.create_file("team-a", "more.jsonl", "fine-tune", ROWS)
            outcomes[kind].append("created")
        except LimitReached:
            outcomes[kind].append("limit")

    threads = [threading.Thread(target=create, args=(stores[i % 2], ("job", "file")[i // 4])) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes["job"]) == ["created"] * 2 + ["limit"] * 2, outcomes
    assert sorted(outcomes["file"]) == ["created"] * 2 + ["limit"] * 2, outcomes  # 1 + 2 files of 3


def test_concurrent_writers_move_a_job_once(database, tmp_path):
    """Eight writers (two Stores, as two replicas) race to start one queued job: one wins."""
    stores = [make_store(database, tmp_path) for _ in range(2)]
    training = stores[0].create_file("team-a", "train.jsonl", "fine-tune", ROWS)
    job = stores[0].create_job("team-a", "m", training.id, SUPERVISED)
    stores[1].move(job.id, "queued")
    outcomes, barrier = [], threading.Barrier(8)

    def start(store):
        barrier.wait()
        try:
            store.move(job.id, "running")
            outcomes.append("moved")
        except ServiceError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=start, args=(stores[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert outcomes.count("moved") == 1 and len(outcomes) == 8, outcomes
    assert set(outcomes) <= {"moved", "conflict", "invalid_status_change"}


def test_lists_page_newest_first_with_after(database, tmp_path):
    store = make_store(database, tmp_path, max_active_jobs=10)
    training = store.create_file("team-a", "train.jsonl", "fine-tune", ROWS)
    jobs = [store.create_job("team-a", "m", training.id, SUPERVISED).id for _ in range(5)]
    seen, after = [], None
    while True:
        page = store.list_jobs("team-a", limit=2, after=after)
        seen += [job.id for job in page.items]
        if not page.has_more:
            break
        after = page.items[-1].id
    assert seen == jobs[::-1]
    listed = list_object(store.list_jobs("team-a", limit=2), job_object)
    assert (listed["object"], listed["has_more"], listed["first_id"]) == ("list", True, jobs[-1])
    with pytest.raises(NotFound) as caught:
        store.list_jobs("team-b", after=jobs[0])  # another tenant's id is no cursor either
    assert caught.value.param == "after"
    with pytest.raises(ServiceError, match="between 1 and 100"):
        store.list_jobs("team-a", limit=0)


def test_a_new_store_on_the_same_database_and_storage_sees_everything(database, tmp_path):
    store = make_store(database, tmp_path)
    training = store.create_file("team-a", "train.jsonl", "fine-tune", ROWS)
    job = store.create_job("team-a", "m", training.id, SUPERVISED)
    store.move(job.id, "queued")
    store.move(job.id, "running")
    store.add_event(job.id, "running")
    store.engine.dispose()

    restarted = make_store(database, tmp_path)
    assert restarted.file_content("team-a", training.id) == ROWS
    assert [j.id for j in restarted.active_jobs()] == [job.id]  # the runner picks it up again
    assert [e.message for e in restarted.list_events("team-a", job.id).items] == ["running"]
    assert restarted.move(job.id, "failed", error={"code": "worker_died", "message": "x", "param": None}).error[
        "code"] == "worker_died"
