"""`rayalign sdg generate` and `rayalign sdg label`: a scripted teacher on 127.0.0.1 whose tasks
and answers are known (duplicates, a blacklisted task, garbage, a refusal, a copy of the task),
so each filter's count is known; a run killed mid-round resumes without duplicating items; bad
seed files are named errors. The SmolLM2 test runs the filters on what a real model writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import send_json, write_jsonl
from rayalign.cli import main

TASKS = [
    "Describe a river in one short sentence using only lowercase letters.",
    "Describe a river in one short sentence using only lowercase letters.",          # near_duplicate
    "Please describe, a wide river, in just one very short sentence, by using only the lowercase letters.",
    "Draw a picture of a cat and describe what it looks like.",                       # blacklist
    "",                                                                               # format: garbage
    "Explain how the tides of the sea work.",                                         # refusal
    "Repeat after me: the quick brown fox jumps.",                                    # repetition
    "Name three primary colours for a young child.",
]
ANSWERS = {TASKS[5]: "I'm sorry, I cannot help with that.", TASKS[6]: "Repeat after me: the quick brown fox jumps.",
           TASKS[7]: "Red, yellow and blue are the three primary colours."}
EXPECTED = {"format": 1, "length": 0, "blacklist": 1, "refusal": 1, "repetition": 1, "near_duplicate": 1,
            "novelty": 1}


class Teacher(BaseHTTPRequestHandler):
    """A request prefilled with "Task N:" gets the next task of TASKS (cycled, each cycle's
    tasks numbered so that they stay new); any other request gets an answer. Requests after
    `hold_after` wait until `release` is set."""

    def do_POST(self):  # noqa: N802 - the http.server API
        state = self.server.state
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with state["lock"]:
            state["requests"] += 1
            count = state["requests"]
        if state["hold_after"] is not None and count > state["hold_after"]:
            state["held"].set()
            state["release"].wait()
        last = body["messages"][-1]
        if last["role"] == "assistant" and last["content"].startswith("Task"):
            with state["lock"]:
                index = state["tasks"]
                state["tasks"] += 1
            cycle, task = divmod(index, len(TASKS))
            text = " " + (task_in_cycle(TASKS[task], cycle) if TASKS[task] else " \n")
        else:  # a task's first answer is brief, a second one long-winded
            task = last["content"]
            with state["lock"]:
                state["answered"][task] = times = state["answered"].get(task, 0) + 1
            how = "given briefly." if times == 1 else "given at length, with many more words than it needs."
            text = ANSWERS.get(task.split(" (v")[0], f"Here is my answer about {task.split()[1]}, {how}")
        reply = {"choices": [{"message": {"role": "assistant", "content": text}, "logprobs": {"content": [
            {"token": text, "logprob": -0.1, "top_logprobs": [{"token": text, "logprob": -0.1}]}]}}]}
        send_json(self, reply)

    def log_message(self, *args):
        pass


def task_in_cycle(task: str, cycle: int) -> str:
    """A later cycle's version of a task, different enough to pass the novelty filters."""
    topics = ["", " (version about mountains and snow)", " (version about deserts and camels at noon)",
              " (version about libraries, quiet readers and old maps of towns)"]
    return task + topics[cycle % len(topics)] if cycle else task


@pytest.fixture
def teacher():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Teacher)
    server.state = {"requests": 0, "tasks": 0, "answered": {}, "lock": threading.Lock(), "hold_after": None,
                    "held": threading.Event(), "release": threading.Event()}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.state["release"].set()
    server.shutdown()
    server.server_close()


def seeds(tmp_path):
    return write_jsonl(tmp_path / "seeds.jsonl", [
        {"instruction": "Write one short sentence about the moon that includes the word 'night'."},
        {"instruction": "What is the capital of France? Answer with one word.", "output": "Paris"},
        {"messages": [{"role": "user", "content": "Is the sun a star? Start your answer with 'Yes'."},
                      {"role": "assistant", "content": "Yes, the sun is a star."}]},
    ])


def generate_args(tmp_path, server, *extra) -> list[str]:
    return ["sdg", "generate", "--config", "sdg_quickstart", f"output_dir={tmp_path}", "name=synth",
            f"data.train={seeds(tmp_path)}", f"teacher.url=http://127.0.0.1:{server.server_port}",
            "teacher.served_model=scripted", "teacher.concurrency=1", "sdg.answers_per_task=1", "sdg.filters.verify=null",
            "sdg.filters.verify_required=false", "sdg.requests_per_round=8", "sdg.target=1000",
            "logging.progress=false", *extra]


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_filter_counts_what_it_rejects_and_the_yield_table_adds_up(tmp_path, teacher):
    assert main(generate_args(tmp_path, teacher, "sdg.max_rounds=1")) == 0
    run = tmp_path / "synth"
    shown = read(run / "items.jsonl") + read(run / "flagged.jsonl")  # the empty task: counted, not shown
    assert sorted(i["instruction"] for i in shown) == sorted(t for t in TASKS if t)
    items = [json.loads(line) for line in (run / "candidates.jsonl").read_text().splitlines()][:-1]
    rejected = {i["filter"]: i["reason"] for i in items if not i["kept"]}
    assert {name: sum(i["filter"] == name for i in items) for name in EXPECTED} == EXPECTED, rejected
    kept = [i for i in items if i["kept"]]
    assert [i["instruction"] for i in kept] == [TASKS[0], TASKS[7]]
    assert all(i["teacher"] == f"scripted@http://127.0.0.1:{teacher.server_port}" for i in items)
    assert kept[0]["confidence"] == pytest.approx(0.9048, abs=1e-3)  # exp(-0.1)

    card = json.loads((run / "card.json").read_text())
    rows = card["yield"]
    assert rows[0]["in"] == 8 and rows[-1]["out"] == 2 == card["kept"]
    for row, following in zip(rows, rows[1:]):
        assert row["in"] == row["rejected"] + row["out"] and row["out"] == following["in"]
    assert "| novelty | 3 | 1 | 2 | 33.3 |" in (run / "card.md").read_text()

    records = read(run / "sft.jsonl")
    assert [r["messages"][0]["content"] for r in records] == [TASKS[0], TASKS[7]]
    assert records[0]["provenance"]["origin"] == "generated" and records[0]["provenance"]["model"].startswith("scripted")
    assert [r["provenance"]["scores"] for r in records] == [i["scores"] for i in kept]


def test_a_killed_run_resumes_after_its_last_finished_round_without_duplicates(tmp_path, teacher):
    """The CLI in a process of its own is killed (SIGKILL) in the middle of its second round;
    the rerun drops the unfinished round, does it again and goes on to the end."""
    teacher.state["hold_after"] = 16 + 3  # round 0: 8 tasks + 8 answers; round 1 stops after 3 requests
    command = [sys.executable, "-m", "rayalign.cli", *generate_args(tmp_path, teacher, "sdg.max_rounds=3")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert teacher.state["held"].wait(120), "the run never reached its second round"
        time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    partial = tmp_path / "synth" / "candidates.jsonl"
    assert [json.loads(line).get("round_done") for line in partial.read_text().splitlines()][-1] == 0

    teacher.state.update(hold_after=None, tasks=8)  # the teacher goes on from where the first run had it
    assert main(generate_args(tmp_path, teacher, "sdg.max_rounds=3")) == 0
    items = read(tmp_path / "synth" / "candidates.jsonl")
    items = [i for i in items if "round_done" not in i]
    ids = [i["id"] for i in items]
    assert len(ids) == 24 == len(set(ids)) and [i["round"] for i in items] == [0] * 8 + [1] * 8 + [2] * 8
    assert sum(1 for line in partial.read_text().splitlines() if "round_done" in line) == 3
    card = json.loads((tmp_path / "synth" / "card.json").read_text())
    assert card["candidates"] == 24 and card["yield"][0]["in"] == 24

    before = partial.read_text()  # finished: a rerun asks the teacher nothing and changes nothing
    requests = teacher.state["requests"]
    assert main(generate_args(tmp_path, teacher, "sdg.max_rounds=3")) == 0
    assert teacher.state["requests"] == requests and partial.read_text() == before


def test_quality_sources_score_sft_answers_and_rank_the_two_answers_of_preference_items(tmp_path, teacher):
    brevity = "sdg.filters.quality=[{type: function, path: 'reward_fns:brevity'}]"
    assert main(generate_args(tmp_path, teacher, "sdg.max_rounds=1", brevity, "sdg.filters.quality_threshold=0.12",
                              "name=scored")) == 0
    items = read(tmp_path / "scored" / "candidates.jsonl")[:-1]
    scored = [i for i in items if "quality" in i]
    assert scored and all(i["quality"] == pytest.approx(1 / len(i["answer"].split())) for i in scored)
    card = json.loads((tmp_path / "scored" / "card.json").read_text())
    assert card["yield"][-1] == {"filter": "quality", "in": 2, "rejected": 1, "out": 1}  # 8 words pass, 9 do not

    assert main(generate_args(tmp_path, teacher, "sdg.max_rounds=1", brevity, "sdg.filters.quality_threshold=0",
                              "sdg.kind=preference", "name=pairs")) == 0
    records = read(tmp_path / "pairs" / "preferences.jsonl")
    assert records and all(r["chosen"][0]["content"].endswith("given briefly.") for r in records)
    assert all(r["rejected"][0]["content"].endswith("than it needs.") for r in records)
    kept = [i for i in read(tmp_path / "pairs" / "candidates.jsonl")[:-1] if i["kept"]]
    assert kept and all(i["margin"] > 0 and i["quality"] == pytest.approx(1 / len(i["chosen"].split())) for i in kept)


@pytest.mark.parametrize("content, expected", [
    ('{"instruction": "Say hi."}\n{"instruction": "Say bye."\n', "seeds.jsonl, line 2: not valid JSON"),
    ("", "seeds.jsonl: no seed tasks: the file is empty"),
    ('{"instruction": 3}\n', "seeds.jsonl, line 1, field 'instruction': expected a string, got int"),
    ('{"topic": "rivers"}\n', "seeds.jsonl, line 1: cannot tell the format from fields ['topic']"),
])
def test_bad_seed_files_are_named_errors(tmp_path, teacher, capsys, content, expected):
    (tmp_path / "seeds.jsonl").write_text(content)
    code = main(args_with_seeds(tmp_path, teacher))
    assert code == 2
    assert expected in capsys.readouterr().err
    assert teacher.state["requests"] == 0


def args_with_seeds(tmp_path, teacher) -> list[str]:
    """generate_args, but with the seeds file the test wrote (not the default one)."""
    path = tmp_path / "seeds.jsonl"
    return ["sdg", "generate", "--config", "sdg_quickstart", f"output_dir={tmp_path}", "name=synth",
            f"data.train={path}", f"teacher.url=http://127.0.0.1:{teacher.server_port}",
            "teacher.served_model=scripted", "logging.progress=false"]


def test_an_unreachable_teacher_is_a_named_error_and_keeps_nothing_half_done(tmp_path, capsys):
    args = args_with_seeds(tmp_path, type("Closed", (), {"server_port": 9})())
    seeds(tmp_path)
    assert main(args) == 1
    error = capsys.readouterr().err
    assert "scripted@http://127.0.0.1:9" in error and "cannot connect" in error
    assert (tmp_path / "synth" / "candidates.jsonl").read_text() == ""  # no round was finished
