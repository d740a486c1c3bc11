"""`rayalign serve` as a user runs it, on the shipped SmolLM2 with serve/config.yaml: the load test
with the real `openai` client, the AI critic on a real model, the AI labeler served and local
agreeing, and Ctrl-C stopping cleanly (the
engine's shared-memory segments removed). Slow: the engine loads in about a minute."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from listeners import alive, exposed, listening, session_dir, tree
from rayalign.serving.load import chat_load

ROOT = Path(__file__).parent.parent
KEY = "smollm2-test-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from test_serve_app import free_port

    port = free_port()
    # a user's environment: without the test session's RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER (conftest)
    env = {**{k: v for k, v in os.environ.items() if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")},
           "RAYALIGN_API_KEYS": KEY, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    command = [sys.executable, "-m", "rayalign.cli", "serve", "--address", "local", "--port", str(port),
               "--runs", str(tmp_path_factory.mktemp("no-runs"))]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
    deadline = time.monotonic() + 480
    while not any(line.startswith("[serve] ready") for line in lines):
        assert process.poll() is None and time.monotonic() < deadline, "".join(lines[-40:])
        time.sleep(1)
    yield {"url": f"http://127.0.0.1:{port}", "process": process, "lines": lines}
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)


def post(server, path: str, body: dict) -> dict:
    answer = httpx.post(server["url"] + path, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=300)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.slow
def test_smollm2_load_200_requests_at_concurrency_16(server):
    prompts = [f"Question {i}: name a colour and a number between 1 and {i + 2}." for i in range(200)]
    result = asyncio.run(chat_load(server["url"] + "/v1", KEY, "smollm2-135m-instruct", prompts, 16, 32))
    print(f"load test (SmolLM2, rayalign serve): {json.dumps(result)}")
    assert result["errors"] == 0, result["first_errors"]
    assert result["completion_tokens"] == 200 * 32


@pytest.mark.slow
def test_smollm2_judge_returns_parsed_verdicts(server):
    pointwise = post(server, "/v1/judge", {"mode": "pointwise",
                                           "prompts": ["What is the capital of France?"] * 2,
                                           "completions": ["The capital of France is Paris.", "Bananas."]})
    assert all(1 <= score <= 10 for score in pointwise["verdicts"]) and all(pointwise["rationales"])
    pairwise = post(server, "/v1/judge", {"mode": "pairwise", "prompt": "What is the capital of France?",
                                          "a": "The capital of France is Paris.", "b": "Bananas."})
    assert pairwise["verdict"] in ("a", "b", "tie") and None not in pairwise["order_verdicts"][0]
    print(f"SmolLM2 judge: pointwise {pointwise['verdicts']}, pairwise {pairwise['verdict']} "
          f"(orders {pairwise['order_verdicts'][0]})")


LOCAL_LABELS = """
import json, sys
from rayalign.config import RolloutConfig
from rayalign.rewards.feedback import LocalFeedback
from rayalign.rewards.labeler import Ask, label_pairs
pairs = json.load(sys.stdin)
local = LocalFeedback("smollm2-135m-instruct", "vllm", RolloutConfig(dtype="bfloat16", max_model_len=1024))
labels = label_pairs(local, Ask(), *pairs)
print(json.dumps([[[j.choice, j.p_first] for j in label.orders] for label in labels]))
"""


@pytest.mark.slow
def test_labels_from_the_served_model_agree_with_a_local_labeler(server, monkeypatch):
    """The same model, greedy: the AI labeler through rayalign serve (continue_final_message,
    top_logprobs) and on a local vLLM engine read the same choice-token probabilities. The local
    engine runs in a process of its own, gone before the server is stopped."""
    from rayalign.rewards.feedback import EndpointFeedback
    from rayalign.rewards.labeler import Ask, label_pairs

    monkeypatch.setenv("LABELER_KEY", KEY)
    rows = [json.loads(line) for line in open(ROOT / "rayalign/data/shipped/quickstart_prefs_eval.jsonl")][:6]
    pairs = [r["prompt"] for r in rows], [r["chosen"] for r in rows], [r["rejected"] for r in rows]
    served = label_pairs(EndpointFeedback(server["url"] + "/v1", "smollm2-135m-instruct", "LABELER_KEY"), Ask(), *pairs)
    local = subprocess.run([sys.executable, "-c", LOCAL_LABELS], input=json.dumps(pairs), capture_output=True,
                           text=True, timeout=300, cwd=ROOT)
    assert local.returncode == 0, local.stderr[-3000:]
    here = json.loads(local.stdout.strip().splitlines()[-1])
    for remote, mine in zip(served, here):
        assert remote.soft and [j.choice for j in remote.orders] == [choice for choice, _ in mine]
        assert [j.p_first for j in remote.orders] == pytest.approx([p for _, p in mine], abs=0.01)
    print(f"SmolLM2 labels, served vs local: {[[round(j.p_first, 4) for j in x.orders] for x in served]} vs {here}")


@pytest.mark.slow
def test_every_listener_of_the_served_cluster_is_on_loopback(server):
    procs = tree(server["process"].pid)
    sockets = listening(procs)
    print(f"rayalign serve listens on: {sockets}")
    assert any(port == int(server["url"].rsplit(":", 1)[1]) for *_, port in sockets), sockets
    assert exposed(procs) == [], exposed(procs)


@pytest.mark.slow
def test_api_keys_never_appear_in_logs_or_error_bodies(server):
    """Requests with a wrong key, no key, a key in the wrong scheme, and the right key (a bad
    request and a good one): no answer and no log of the run (Ray's session logs, Serve's logs,
    the command's output) holds either key."""
    wrong = "sk-wrong-" + os.urandom(8).hex()
    url = server["url"]
    answers = [httpx.get(url + "/v1/models", headers=headers, timeout=60) for headers in (
        {"Authorization": f"Bearer {wrong}"}, {}, {"Authorization": f"Basic {KEY}"}, {"Authorization": wrong})]
    assert [a.status_code for a in answers] == [401] * 4
    good = {"Authorization": f"Bearer {KEY}"}
    answers.append(httpx.post(url + "/v1/chat/completions", headers=good, timeout=120,
                              json={"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}))
    answers.append(httpx.post(url + "/v1/chat/completions", headers=good, timeout=120, json={"model": 3}))
    answers.append(httpx.post(url + "/v1/chat/completions", headers=good, timeout=120, json={
        "model": "smollm2-135m-instruct", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}))
    assert [a.status_code >= 400 for a in answers[4:]] == [True, True, False], [a.text for a in answers]
    for answer in answers:
        assert KEY not in answer.text and wrong not in answer.text, answer.text
        assert not any(KEY in v or wrong in v for v in answer.headers.values()), answer.headers
    time.sleep(3)  # Serve writes its access and replica logs asynchronously
    session = session_dir(tree(server["process"].pid))
    assert session, "no Ray session folder on the command lines of the server's processes"
    logs = [path for path in Path(session).rglob("*") if path.is_file() and "sockets" not in path.parts]
    assert any("serve" in path.parts for path in logs), logs[:20]
    leaks = [str(path) for path in logs for secret in (KEY, wrong) if secret.encode() in path.read_bytes()]
    output = "".join(server["lines"])
    assert leaks == [] and KEY not in output and wrong not in output, leaks
    assert "key refused" in "".join(p.read_text(errors="replace") for p in logs if "serve" in p.parts)


@pytest.mark.slow
def test_ctrl_c_stops_the_server_and_removes_the_engine_segments(server):
    """Ctrl-C: the command says so, exits within a bound, removes the engines' segments and leaves
    no process of its Ray cluster, so the ports it held are free: its dashboard agent's is Ray's
    fixed default (52365), which a head started right after needs (a lingering one made that head
    refuse every job: 'No available agent to submit job')."""
    process = server["process"]
    procs = tree(process.pid)[1:]
    raylet = next(" ".join(p.cmdline()) for p in procs if p.name() == "raylet")
    agent_port = int(re.search(r"--listen-port=(\d+)", raylet).group(1))
    # another cluster on this machine may hold the fixed port already (then this one's agent went without)
    agent_held = agent_port in [port for *_, port in listening(procs)]
    started = time.monotonic()
    process.send_signal(signal.SIGINT)  # Ctrl-C to the CLI
    try:
        code = process.wait(timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail("no exit 180 s after Ctrl-C; the server's last lines:\n" + "".join(server["lines"][-40:]))
    print(f"rayalign serve stopped {time.monotonic() - started:.1f} s after Ctrl-C")
    assert code == 0, "".join(server["lines"][-40:])
    assert any(line.startswith("[serve] Ctrl-C") for line in server["lines"]), server["lines"][-40:]
    stopped = [line for line in server["lines"] if line.startswith("[serve] stopped")]
    assert stopped and "removed 2 leftover" in stopped[0], stopped
    assert alive(procs) == [], "processes of the server's Ray cluster left after it exited"
    if agent_held:
        with socket.socket() as probe:  # as the next head's agent binds it (aiohttp sets SO_REUSEADDR)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", agent_port))
    else:
        print(f"the agent port {agent_port} was held by another cluster on this machine: not checked")
