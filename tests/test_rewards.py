"""Reward sources: Python functions, HTTP scorers and the judge, the weighted mix, quickstart rewards."""

from __future__ import annotations

import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
import reward_fns

from rayalign.config import RewardSourceConfig
from rayalign.rewards.function import FunctionReward
from rayalign.rewards.mix import RewardMix, build_rewards
from rayalign.rewards.quickstart import constraint_check, graded, hedges
from rayalign.rewards.remote import HttpReward, JudgeReward
from rayalign.rewards.values import RewardError

PROMPTS = ["p0", "p1", "p2"]
COMPLETIONS = ["c0", "c1", "c2"]


# ---------------------------------------------------------------- function rewards


def test_function_gets_metadata_columns_and_options():
    reward_fns.seen.clear()
    metadata = [{"score": 1, "task": "a"}, {"score": None}, {"score": 3, "extra": True}]
    reward = FunctionReward("reward_fns:scaled", {"factor": 2.0})
    assert reward(PROMPTS, COMPLETIONS, metadata) == [2.0, 0.0, 6.0]
    assert reward_fns.seen == [{"prompts": PROMPTS, "completions": COMPLETIONS, "score": [1, None, 3],
                                "factor": 2.0, "task": ["a", None, None], "extra": [None, None, True]}]
    assert reward.none_count == 1


@pytest.mark.parametrize("path, message", [
    ("no_such_module_xyz:fn", "cannot import module 'no_such_module_xyz': ModuleNotFoundError"),
    ("reward_fns:missing", "module 'reward_fns' has no attribute 'missing'"),
    ("reward_fns:NOT_CALLABLE", "'NOT_CALLABLE' is a int, not callable"),
    ("reward_fns", "expected an import path 'pkg.module:function'"),
])
def test_function_import_errors_name_the_path(path, message):
    with pytest.raises(RewardError, match=f"reward function '{path}'") as error:
        FunctionReward(path)
    assert message in str(error.value)


@pytest.mark.parametrize("fn, message", [
    ("too_short", "returned 2 rewards for 3 completions"),
    ("text_reward", "returned 2 rewards for 3 completions"),
    ("not_a_list", "returned float; expected a list of 3 numbers"),
    ("broken", "raised KeyError: 'label' (called with: prompts, completions, score)"),
])
def test_function_bad_returns_are_errors(fn, message):
    with pytest.raises(RewardError, match="reward_fns:" + fn) as error:
        FunctionReward(f"reward_fns:{fn}")(PROMPTS, COMPLETIONS, [{"score": 1}] * 3)
    assert message in str(error.value)


def test_function_wrong_type_names_the_row():
    with pytest.raises(RewardError, match=r"reward_fns:text_reward'?: row 1: reward 'good' \(str\)"):
        FunctionReward("reward_fns:text_reward")(PROMPTS[:2], COMPLETIONS[:2])


def test_function_rejects_nan_and_clashing_names():
    with pytest.raises(RewardError, match="row 0: reward nan"):
        FunctionReward("reward_fns:scaled")(["p"], ["c"], [{"score": float("nan")}])
    with pytest.raises(RewardError, match=r"metadata fields \['factor'\] clash"):
        FunctionReward("reward_fns:scaled", {"factor": 2})(["p"], ["c"], [{"score": 1, "factor": 3}])
    with pytest.raises(RewardError, match=r"options may not be named \['prompts'\]"):
        FunctionReward("reward_fns:scaled", {"prompts": 1})


# ---------------------------------------------------------------- HTTP rewards


class _Scorer(BaseHTTPRequestHandler):
    """Answers each POST with the next scripted (status, body); records what it was sent."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        status, answer = self.server.script.pop(0)
        data = (answer if isinstance(answer, str) else json.dumps(answer)).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def scorer():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scorer)
    server.script, server.received = [], []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_http_posts_everything_with_the_token(scorer, monkeypatch):
    monkeypatch.setenv("TEST_REWARD_KEY", "s3cret")
    scorer.script = [(200, {"rewards": [0.5, None, -1]})]
    reward = HttpReward(scorer.url + "/score", api_key_env="TEST_REWARD_KEY", options={"rubric": "short"})
    assert reward(PROMPTS, COMPLETIONS, [{"k": 1}, {}, {}]) == [0.5, 0.0, -1.0]
    assert scorer.received == [{"path": "/score", "auth": "Bearer s3cret", "body": {
        "rubric": "short", "prompts": PROMPTS, "completions": COMPLETIONS, "metadata": [{"k": 1}, {}, {}]}}]
    assert reward.none_count == 1


def test_http_retries_transient_failures(scorer):
    scorer.script = [(503, "busy"), (429, "slow down"), (200, {"rewards": [1, 2, 3]})]
    reward = HttpReward(scorer.url, backoff_s=0.01)
    assert reward(PROMPTS, COMPLETIONS) == [1.0, 2.0, 3.0]
    assert len(scorer.received) == 3 and scorer.received[0]["auth"] is None


def test_http_gives_up_after_the_last_attempt(scorer):
    scorer.script = [(500, "down")] * 2
    with pytest.raises(RewardError, match=r"'grader' \(POST http://.*\): HTTP 500 after 2 attempt\(s\): down"):
        HttpReward(scorer.url, name="grader", attempts=2, backoff_s=0.01)(PROMPTS, COMPLETIONS)


def test_http_client_error_fails_at_once_with_the_body(scorer):
    scorer.script = [(400, {"detail": "completions must be strings"}), (200, {"rewards": [0, 0, 0]})]
    with pytest.raises(RewardError, match="HTTP 400 after 1 attempt.*completions must be strings"):
        HttpReward(scorer.url, backoff_s=0.01)(PROMPTS, COMPLETIONS)
    assert len(scorer.received) == 1


def test_http_bad_answers_are_errors(scorer):
    scorer.script = [(200, "not json"), (200, {"rewards": [1]})]
    reward = HttpReward(scorer.url)
    with pytest.raises(RewardError, match='expected a JSON object with "rewards", got: not json'):
        reward(PROMPTS, COMPLETIONS)
    with pytest.raises(RewardError, match="returned 1 rewards for 3 completions"):
        reward(PROMPTS, COMPLETIONS)


def test_http_connection_refused_is_retried_then_named():
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(RewardError, match="cannot connect after 2 attempts"):
        HttpReward(url, attempts=2, backoff_s=0.01)(PROMPTS, COMPLETIONS)


def test_http_missing_key_variable_fails_at_construction(monkeypatch):
    monkeypatch.delenv("TEST_REWARD_KEY", raising=False)
    with pytest.raises(RewardError, match="environment variable 'TEST_REWARD_KEY' .* is not set"):
        HttpReward("http://127.0.0.1:9/score", api_key_env="TEST_REWARD_KEY")


def test_judge_asks_pointwise_at_v1_judge(scorer):
    scorer.script = [(200, {"rewards": [0.25, 0.75, 1.0]})] * 2
    assert JudgeReward(scorer.url)(PROMPTS, COMPLETIONS, [{"k": 1}] * 3) == [0.25, 0.75, 1.0]
    assert JudgeReward(scorer.url + "/v1/judge").url == scorer.url + "/v1/judge"
    assert scorer.received[0]["path"] == "/v1/judge"
    assert scorer.received[0]["body"] == {"mode": "pointwise", "prompts": PROMPTS, "completions": COMPLETIONS}


# ---------------------------------------------------------------- the mix


def test_mix_weights_and_keeps_each_source():
    mix = RewardMix([("a", 2.0, lambda p, c, m: [1.0, 0.0, -1.0]),
                     ("b", -0.5, lambda p, c, m: [4.0, 2.0, 0.0])])
    total, per_source = mix.score(PROMPTS, COMPLETIONS, [{}] * 3)
    assert total == [0.0, -1.0, -2.0]
    assert per_source == {"a": [1.0, 0.0, -1.0], "b": [4.0, 2.0, 0.0]}


def test_mix_rejects_duplicate_labels_and_mismatched_batches():
    source = lambda p, c, m: [0.0] * len(p)  # noqa: E731
    with pytest.raises(RewardError, match=r"share the labels \['x'\]; give each a distinct `name`"):
        RewardMix([("x", 1.0, source), ("y", 1.0, source), ("x", 1.0, source)])
    with pytest.raises(RewardError, match="3 prompts, 2 completions"):
        RewardMix([("x", 1.0, source)]).score(PROMPTS, COMPLETIONS[:2])


def test_build_rewards_from_configs(scorer):
    scorer.script = [(200, {"rewards": [1, 1, 1]}), (200, {"rewards": [0, 0.5, 1]})]
    mix = build_rewards([
        RewardSourceConfig(type="function", path="reward_fns:scaled", options={"factor": 10}, weight=0.1),
        RewardSourceConfig(type="http", url=scorer.url, weight=2.0),
        RewardSourceConfig(type="judge", name="critic", url=scorer.url, weight=-1.0),
    ])
    assert mix.labels == ["scaled", "http", "critic"]
    total, per_source = mix.score(PROMPTS, COMPLETIONS, [{"score": 1}, {"score": 2}, {"score": 3}])
    assert per_source == {"scaled": [10.0, 20.0, 30.0], "http": [1.0, 1.0, 1.0], "critic": [0.0, 0.5, 1.0]}
    assert total == pytest.approx([3.0, 3.5, 4.0])
    assert [r["path"] for r in scorer.received] == ["/", "/v1/judge"]


def test_build_rewards_errors():
    with pytest.raises(RewardError, match="needs at least one reward source under `rewards:`"):
        build_rewards([])
    with pytest.raises(RewardError, match=r"\['scaled'\]"):
        build_rewards([RewardSourceConfig(type="function", path="reward_fns:scaled"),
                       RewardSourceConfig(type="function", path="reward_fns:scaled")])


class _FakeScorer:
    def __init__(self, path: str, batch_size: int = 8):
        self.path, self.batch_size = path, batch_size

    def __call__(self, prompts, completions, metadata=None):
        return [float(self.batch_size)] * len(prompts)


def test_build_rewards_wires_a_reward_model(monkeypatch):
    """The model source is RewardModelScorer(path, **options); a stand-in spares loading torch."""
    monkeypatch.setitem(sys.modules, "rayalign.rewards.reward_model", SimpleNamespace(RewardModelScorer=_FakeScorer))
    mix = build_rewards([RewardSourceConfig(type="model", path="runs/rm/final", options={"batch_size": 2})])
    assert mix.labels == ["model"] and mix.sources[0][2].path == "runs/rm/final"
    assert mix.score(["p"], ["c"]) == ([2.0], {"model": [2.0]})
    with pytest.raises(RewardError, match=r"'model': options \['temperature'\] do not fit _FakeScorer\(path"):
        build_rewards([RewardSourceConfig(type="model", path="runs/rm/final", options={"temperature": 1})])


# ---------------------------------------------------------------- quickstart rewards


CASES = [  # (check spec, a completion that obeys it, one that does not)
    ({"type": "number", "answer": 12}, " **12.** ", "12 apples"),
    ({"type": "one_word", "answer": "Paris"}, "paris.", "It is Paris"),
    ({"type": "include_word", "word": "moon"}, "The Moon rose.", "The moonlight rose."),
    ({"type": "max_words", "n": 3}, "Blue sky today", "The sky is blue"),
    ({"type": "lowercase"}, "a cat sat.", "A cat sat."),
    ({"type": "starts_with", "prefix": "Yes"}, "\"Yes, it is.", "Yesterday it was."),
]


def test_constraint_check_on_every_check_type():
    specs = [spec for spec, _, _ in CASES] * 2 + [None]
    completions = [good for _, good, _ in CASES] + [bad for _, _, bad in CASES] + ["anything"]
    assert constraint_check(["p"] * 13, completions, specs) == [1.0] * 6 + [0.0] * 6 + [None]


def test_graded_scale_and_hedges():
    spec = {"type": "include_word", "word": "moon"}
    completions = ["The moon is bright.", "I think the moon is bright.",
                   "Maybe the sun is bright.", "The sun is bright.", "x"]
    assert graded(["p"] * 5, completions, [spec] * 4 + [None]) == [1.0, 0.5, -0.5, -2.0, None]
    assert graded(["p"], ["probably the sun"], [spec], wrong_unsure=-0.1) == [-0.1]
    assert [hedges(t) for t in ["I'm NOT  sure", "it is unlikely", "Perhaps.", "I thinker"]] == [True, False, True, False]


def test_quickstart_reward_by_path_from_a_recipe():
    mix = build_rewards([RewardSourceConfig(type="function", path="rayalign.rewards.quickstart:graded")])
    metadata = [{"task": "capital", "check": {"type": "one_word", "answer": "Rome"}, "reference": "Rome"}] * 2
    assert mix.score(["q", "q"], ["Rome", "Milan"], metadata)[0] == [1.0, -2.0]
