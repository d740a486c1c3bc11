"""`rayalign rlaif label` against a scripted OpenAI-compatible endpoint on 127.0.0.1 whose
log-probs are known: a labeler that prefers the first answer shown, soft labels by hand, a
reply with no verdict, an endpoint that fails mid-way (labelling resumes), bad input."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import send_json, write_jsonl
from rayalign.cli import main


class Scripted(BaseHTTPRequestHandler):
    """P(the first answer shown wins) is 0.9 when it says "good", 0.4 when the second one does,
    else 0.8: a position-biased labeler. A prompt saying UNPARSEABLE gets no verdict."""

    def do_POST(self):  # noqa: N802 - the http.server API
        state = self.server.state
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        state["bodies"].append(body)
        if state["fail_after"] is not None and len(state["bodies"]) > state["fail_after"]:
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"scripted failure")
            return
        question = body["messages"][-2]["content"]
        if "UNPARSEABLE" in question:
            content, top = " maybe", {" maybe": -0.05}
        else:
            first = question.split("<answer_a id=")[1].split("</answer_a")[0]
            second = question.split("<answer_b id=")[1].split("</answer_b")[0]
            p_first = 0.9 if "good" in first else 0.4 if "good" in second else 0.8
            content = " A" if p_first > 0.5 else " B"
            top = {" A": math.log(p_first), " B": math.log(1 - p_first)}
        answer = {"choices": [{"message": {"role": "assistant", "content": content}, "logprobs": {"content": [
            {"token": content, "logprob": top[content],
             "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top.items()]}]}}]}
        send_json(self, answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    server.state = {"bodies": [], "fail_after": None}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def pairs_file(tmp_path, extra=()):
    rows = [{"prompt": f"Name fruit number {i}.", "chosen": f"Fruit {i} is an apple.", "rejected": f"No idea {i}."}
            for i in range(6)]
    rows.append({"prompt": "Which is right?", "chosen": "good answer", "rejected": "bad answer"})
    return write_jsonl(tmp_path / "pairs.jsonl", rows + list(extra))


def label(tmp_path, url, data, *extra) -> int:
    return main(["rlaif", "label", "--config", "rlaif_label", f"output_dir={tmp_path}", "name=labels",
                 f"labeler.url={url}", "labeler.served_model=scripted", f"data.train={data}", "rlaif.chunk=2",
                 "logging.progress=false", *extra])


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_orders_turn_a_position_bias_into_ties_and_soft_labels_match_the_log_probs(tmp_path, endpoint):
    url = f"http://127.0.0.1:{endpoint.server_port}/v1"
    data = pairs_file(tmp_path, [{"prompt": "UNPARSEABLE question", "chosen": "x", "rejected": "y"}])
    assert label(tmp_path, url, data) == 0
    run = tmp_path / "labels"
    rows = {row["index"]: row for row in read(run / "labels.jsonl")}
    assert len(rows) == 8 and rows[7]["skipped"]                      # no verdict in either order
    for index in range(6):                                          # 0.8 first in both orders: a tie
        assert rows[index]["p_a"] == pytest.approx(0.5) and rows[index]["consistent"] is False
        assert [j["choice"] for j in rows[index]["judgements"]] == ["first", "first"]
    good = rows[6]  # P(good wins) = (0.9 + (1 - 0.4)) / 2 = 0.75, whichever order it was shown in first
    assert good["p_a"] == pytest.approx(0.75 if good["a"] == "good answer" else 0.25)
    assert good["consistent"] is True

    single = read(run / "preferences_single.jsonl")                 # one order: the position decides
    assert [r["chosen"] for r in single[:6]] == [rows[i]["a"] for i in range(6)]
    assert single[6]["chosen"] == "good answer"                      # the labeler did see it the right way
    hard = read(run / "preferences_hard.jsonl")
    assert [r["soft_label"] for r in hard] == [0.5] * 6 + [1.0]
    soft = read(run / "preferences.jsonl")
    assert soft[6]["chosen"] == "good answer" and soft[6]["soft_label"] == pytest.approx(0.75)
    assert all(r["labeler"] == f"scripted@{url}" and r["position_consistent"] is not None for r in soft)

    figures = json.loads((run / "report.json").read_text())["labeling"]
    assert figures["first_position_wins"] == pytest.approx(13 / 14)  # every judgement but good shown second
    assert figures["position_consistency"] == pytest.approx(1 / 7) and figures["skipped"] == 1
    assert figures["agreement_both_orders_hard"]["ties"] == 6
    assert "position bias" in (run / "card.md").read_text()
    assert "first_position_wins" in (run / "report.html").read_text()    # the run report shows the figures
    asked = endpoint.state["bodies"][0]
    assert asked["continue_final_message"] is True and asked["messages"][-1] == {"role": "assistant",
                                                                                 "content": "Verdict:"}
    assert asked["logprobs"] is True and asked["top_logprobs"] == 20 and asked["temperature"] == 0.0


def test_an_endpoint_failing_mid_way_keeps_the_labels_made_and_a_rerun_resumes(tmp_path, endpoint, capsys):
    url = f"http://127.0.0.1:{endpoint.server_port}"
    data = pairs_file(tmp_path)
    endpoint.state["fail_after"] = 4  # one chunk: 2 pairs x 2 orders
    assert label(tmp_path, url, data) == 1
    error = capsys.readouterr().err
    assert "HTTP 500" in error and f"{url}/v1/chat/completions" in error
    partial = read(tmp_path / "labels" / "labels.partial.jsonl")
    assert [row["index"] for row in partial] == [0, 1]

    endpoint.state.update(bodies=[], fail_after=None)
    assert label(tmp_path, url, data) == 0
    assert len(endpoint.state["bodies"]) == 2 * 5                   # only the 5 pairs left were asked
    rows = read(tmp_path / "labels" / "labels.jsonl")
    assert [row["index"] for row in rows] == list(range(7)) and rows[:2] == partial


def test_an_unreachable_endpoint_and_bad_examples_are_named_errors(tmp_path, capsys):
    data = pairs_file(tmp_path)
    assert label(tmp_path, "http://127.0.0.1:9/v1", data) == 1
    assert "cannot connect" in capsys.readouterr().err

    examples = write_jsonl(tmp_path / "shots.jsonl", [{"prompt": "p", "a": "x", "b": "y", "verdict": "C"}])
    assert label(tmp_path, "http://127.0.0.1:9/v1", data, f"labeler.examples={examples}") == 2
    error = capsys.readouterr().err
    assert "shots.jsonl" in error and "line 1" in error and "'verdict'" in error


def test_prompts_are_answered_by_the_policy_and_labelled_on_the_rollout_workers(ray_cluster, tiny_model, tmp_path):
    """Prompts only: the policy writes three answers a prompt on the rollout workers (every two a
    pair), the rule check gives reference labels, a local labeler judges on the same workers."""
    assert main(["rlaif", "label", "--config", "rlaif_label", f"output_dir={tmp_path}", "name=local",
                 f"model.name_or_path={tiny_model}", f"labeler.model={tiny_model}",
                 "data.train=shipped:quickstart_train.jsonl", "rlaif.max_pairs=4", "rlaif.answers_per_prompt=3",
                 "rlaif.reference=[{type: function, path: 'rayalign.rewards.quickstart:constraint_check'}]",
                 "rollout.engine=hf", "rollout.cpus_per_worker=1", "rollout.max_new_tokens=8",
                 "rollout.max_model_len=512", "logging.progress=false"]) == 0
    run = tmp_path / "local"
    answers = read(run / "answers.jsonl")
    assert len(answers) == 4 * 3 and {a["metadata"]["task"] for a in answers}       # 3 pairs of each prompt
    assert all(a["reference"] in (0.0, 1.0, None) for a in answers)
    rows = read(run / "labels.jsonl")
    assert len(rows) == 4                                                             # capped at max_pairs
    for row, pair in zip(rows, answers):
        assert (row["a"], row["b"], row["reference"]) == (pair["a"], pair["b"], pair["reference"])
        assert row["skipped"] or len(row["judgements"]) == 2
    report = json.loads((run / "report.json").read_text())
    assert report["labeler"] == tiny_model and report["labeling"]["pairs"] == 4
