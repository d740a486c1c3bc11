"""OpenAI graders as a reward source: each grader type with values worked by hand, templates,
the formula evaluator, every refusal, and a score_model grader against a real local chat server."""

from __future__ import annotations

import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from rayalign.config import RewardSourceConfig
from rayalign.lineage.record import reward_ref
from rayalign.lineage.tree import reward_split
from rayalign.rewards.graders import GraderScorer, render, similarity
from rayalign.rewards.mix import build_rewards
from rayalign.rewards.values import RewardError

HYP, REF = "the cat sat on the mat", "the cat is on the mat"


def source(grader: dict, **fields) -> RewardSourceConfig:
    return RewardSourceConfig.model_validate({"type": "grader", "name": "g", "grader": grader, **fields})


def check(operation: str, reference: str = "{{ item.answer }}") -> dict:
    return {"type": "string_check", "name": "s", "input": "{{ sample.output_text }}",
            "reference": reference, "operation": operation}


def score(grader: dict, completions: list[str], rows: list[dict], **fields) -> list[float]:
    return build_rewards([source(grader, **fields)]).score(["p"] * len(completions), completions, rows)[0]


@pytest.mark.parametrize("operation, expected", [("eq", [1.0, 0.0, 0.0]), ("ne", [0.0, 1.0, 1.0]),
                                                 ("like", [1.0, 1.0, 0.0]), ("ilike", [1.0, 1.0, 1.0])])
def test_string_check(operation, expected):
    rows = [{"answer": "Paris"}] * 3
    assert score(check(operation), ["Paris", "It is Paris.", "PARIS"], rows) == expected


# Worked by hand for HYP against REF (6 words each): n-gram matches 5/6, 3/5, 1/4, 0/3.
# BLEU with method1 smoothing (0 matches -> 0.1): (5/6 * 3/5 * 1/4 * 0.1/3) ** 0.25, brevity 1.
# GLEU: all 1-4-gram matches 9 over 18 n-grams on either side. ROUGE-L: LCS 5 words of 6.
# fuzzy_match: character LCS 20 of 22 + 21 characters: 1 - 3/43.
@pytest.mark.parametrize("metric, expected", [
    ("bleu", (5 / 6 * 3 / 5 * 1 / 4 * 0.1 / 3) ** 0.25), ("gleu", 0.5), ("rouge_1", 5 / 6), ("rouge_2", 3 / 5),
    ("rouge_3", 1 / 4), ("rouge_4", 0.0), ("rouge_l", 5 / 6), ("fuzzy_match", 40 / 43)])
def test_text_similarity_values(metric, expected):
    assert similarity(metric, HYP, REF) == pytest.approx(expected)
    grader = {"type": "text_similarity", "name": "t", "input": "{{sample.output_text}}",
              "reference": "{{ item.ref }}", "evaluation_metric": metric, "pass_threshold": 0.5}
    assert score(grader, [HYP], [{"ref": REF}]) == [pytest.approx(expected)]


@pytest.mark.parametrize("metric, reason", [("cosine", "OpenAI embeddings"), ("meteor", "WordNet")])
def test_offline_metrics_refused(metric, reason):
    grader = {"type": "text_similarity", "name": "t", "input": "a", "reference": "b", "evaluation_metric": metric}
    with pytest.raises(ValidationError, match=reason):
        source(grader)


def test_templates():
    row = {"a": {"b": "deep"}, "n": 3}
    assert render("{{item.a.b}}|{{  item.n }}|{{ sample.output_text }}", "out", row, "w") == "deep|3|out"
    assert render("{{ sample.output_json.x.y }}", '{"x": {"y": "v"}}', {}, "w") == "v"
    with pytest.raises(RewardError, match=r"row 1.*item.answer.*missing 'answer'"):
        score(check("eq"), ["a", "b"], [{"answer": "a"}, {}])
    with pytest.raises(RewardError, match="not JSON"):
        render("{{ sample.output_json.x }}", "plain", {}, "w")
    with pytest.raises(ValidationError, match=r"unknown template variable \{\{ sample.text \}\}"):
        source(check("eq", "{{ sample.text }}"))


def multi(formula: str) -> dict:
    return {"type": "multi", "name": "m", "calculate_output": formula, "graders": {
        "exact": check("eq"),
        "sim": {"type": "text_similarity", "name": "t", "input": "{{ sample.output_text }}",
                "reference": "{{ item.answer }}", "evaluation_metric": "rouge_1"}}}


def test_multi_formula():
    rows = [{"answer": REF}, {"answer": REF}]
    assert score(multi("0.5 * exact + 0.5 * sim"), [REF, HYP], rows) == [1.0, pytest.approx(5 / 12)]
    assert score(multi("max(exact, sqrt(sim)) - -1 + floor(2.7) ** 2 / abs(-4)"), [HYP], rows[:1]) == \
        [pytest.approx((5 / 6) ** 0.5 + 1 + 1)]
    single = {"type": "multi", "name": "m", "calculate_output": "1 - exact", "graders": {**check("eq"), "name": "exact"}}
    assert score(single, ["x", "y"], [{"answer": "x"}] * 2) == [0.0, 1.0]
    with pytest.raises(RewardError, match="calculate_output failed"):
        score(multi("sim / exact"), [HYP], rows[:1])
    with pytest.raises(RewardError, match="calculate_output failed"):  # overflows at once, never grows unbounded
        score(multi("9 ** 9 ** 9 * exact"), [HYP], rows[:1])


@pytest.mark.parametrize("formula, message", [
    ("exact.real", "'exact.real' is not allowed"), ("__import__('os')", "call .* is not allowed"),
    ("exact if sim else 0", "is not allowed"), ("other + 1", "'other' is not one of the graders"),
    ("'a'", "is not a number"), ("exact +", "is not a formula"), ("[exact]", r"'\[exact\]' is not allowed")])
def test_formula_refusals(formula, message):
    with pytest.raises(ValidationError, match=message):
        source(multi(formula))


def test_refusals_and_error_paths():
    with pytest.raises(ValidationError, match="source must define grade"):
        source({"type": "python", "name": "p", "source": "def score(s, i): return 1"})
    with pytest.raises(ValidationError, match="source, line 1"):
        source({"type": "python", "name": "p", "source": "def grade(s, i) return 1"})
    with pytest.raises(ValidationError, match="label_model graders are not supported"):
        source({"type": "label_model", "name": "l"})
    with pytest.raises(ValidationError, match=r"grader\.multi\.graders\.exact\.string_check\.operation"):
        source({**multi("exact"), "graders": {"exact": check("gt")}})
    with pytest.raises(ValidationError, match=r"score_model\.sampling_params\.max_tokens"):
        source({"type": "score_model", "name": "j", "model": "m", "sampling_params": {"max_tokens": 5},
                "input": [{"role": "user", "content": "{{ sample.output_text }}"}]}, url="http://127.0.0.1:9")
    with pytest.raises(ValidationError, match="score_model grader needs url"):
        source({"type": "score_model", "name": "j", "model": "m", "input": [{"role": "user", "content": "x"}]})
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        source({"type": "contains", "name": "c"})
    with pytest.raises(ValidationError, match="a grader reward needs `grader:`"):
        RewardSourceConfig.model_validate({"type": "grader"})
    with pytest.raises(ValidationError, match="only it may have one"):
        RewardSourceConfig.model_validate({"type": "http", "url": "http://x", "grader": check("eq")})


class ChatServer(BaseHTTPRequestHandler):
    """Answers like /v1/chat/completions: the content is the last user message's text after 'say:'."""

    seen: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ChatServer.seen.append((self.path, body))
        said = body["messages"][-1]["content"].rpartition("say:")[2].strip()
        answer = json.dumps({"choices": [{"message": {"role": "assistant", "content": said}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ChatServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_score_model_against_a_local_chat_server(chat_url):
    grader = {"type": "score_model", "name": "judge", "model": "tiny-judge", "range": [0, 10],
              "sampling_params": {"temperature": 0, "max_completions_tokens": 8},
              "input": [{"role": "system", "content": "Grade it."},
                        {"role": "user", "content": "{{ item.q }} say: {{ sample.output_text }}"}]}
    config = source(grader, url=chat_url, timeout_s=5)
    scores = GraderScorer(config.grader, chat_url, None, 5, "judge")(
        ["p"] * 3, ["7", "Score: 42 points", "-3.5"], [{"q": "a"}, {"q": "b"}, {"q": "c"}])
    assert scores == [7.0, 10.0, 0.0]
    path, body = ChatServer.seen[-1]
    assert path == "/v1/chat/completions" and body["model"] == "tiny-judge" and body["temperature"] == 0
    assert body["max_tokens"] == 8 and "max_completions_tokens" not in body
    assert body["messages"][1]["content"] == "c say: -3.5"
    with pytest.raises(RewardError, match=r"row 0.*has no number: 'no idea'"):
        build_rewards([config]).score(["p"], ["no idea"], [{"q": "a"}])
    assert reward_split(reward_ref(config)) == {"ai": {f"tiny-judge@{chat_url}": 1.0}, "human": 0.0, "unknown": 0.0}


def test_lineage_of_a_rule_grader():
    parent = reward_ref(source(multi("exact")))
    assert parent["kind"] == "rule" and parent["ref"] == "grader:multi" and "ai" not in parent
    assert reward_split(parent) == {"ai": {}, "human": 1.0, "unknown": 0.0}


def python_grader(body: str) -> GraderScorer:
    return GraderScorer(source({"type": "python", "name": "py", "source": body}).grader, name="py")


def test_a_python_grader_scores_a_batch_in_its_own_process():
    scorer = python_grader("import os\n"
                           "def grade(sample, item):\n"
                           "    words = sample['output_text'].split()\n"
                           "    bonus = 0.5 if (sample['output_json'] or {}).get('ok') else 0.0\n"
                           "    return (item['want'] in words) + bonus + 10 * (os.getpid() == item['parent'])\n")
    rows = [{"want": "yes", "parent": os.getpid()}] * 3
    assert scorer(["p"] * 3, ["yes it is", "no", '{"ok": true}'], rows) == [1.0, 0.0, 0.5]
    inner = {"type": "python", "name": "inner", "source": "def grade(s, i): return len(s['output_text'])"}
    nested = {**multi("2 * inner"), "graders": {"inner": inner}}
    assert GraderScorer(source(nested).grader, name="m")(["p"], ["abc"], [{}]) == [6.0]


def test_a_python_grader_has_no_network_no_files_and_limits(monkeypatch):
    """Its own network namespace: a server this test runs on 127.0.0.1 cannot be reached from it."""
    from rayalign.rewards import sandbox

    monkeypatch.setattr(sandbox, "CPU_S", 2)
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # reachable from here
        reach = python_grader("import socket\n"
                              "def grade(sample, item):\n"
                              "    try:\n"
                              f"        socket.create_connection(('127.0.0.1', {port}), timeout=5).close()\n"
                              "        return 1.0\n"
                              "    except OSError:\n"
                              "        return 0.0\n")
        assert reach(["p"], ["x"], [{}]) == [0.0]
    finally:
        server.shutdown()
        server.server_close()
    write = python_grader("def grade(sample, item):\n    with open('out.txt', 'w') as out:\n"
                          "        out.write('x' * 10)\n    return 1.0\n")
    with pytest.raises(RewardError, match="row 0: OSError: .*File too large"):
        write(["p"], ["x"], [{}])
    hog = python_grader("def grade(sample, item):\n    return len(bytearray(4 << 30))\n")
    with pytest.raises(RewardError, match="grader 'py', python 'py': row 0: over the memory limit"):
        hog(["p"], ["x"], [{}])
    spin = python_grader("def grade(sample, item):\n    while True:\n        pass\n")
    with pytest.raises(RewardError, match="over the CPU limit of 2 s"):
        spin(["p"], ["x"], [{}])
    broken = python_grader("def grade(sample, item):\n    return item['missing']\n")
    with pytest.raises(RewardError, match="row 0: KeyError: 'missing'"):
        broken(["p"], ["x"], [{}])
