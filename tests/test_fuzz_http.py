"""The HTTP front under hostile input (issue 16): bodies over the limit, internal errors, and
schemathesis fuzzing of every documented operation.

Two parts:
- The guards in front of the routes (rayalign.serving.ingress.guard: 5xx made generic, API keys,
  body limit) on a plain FastAPI app built like the ingress (ray.serve.llm's `init()` and its
  exception middleware, our error handlers), served by uvicorn on 127.0.0.1: a Content-Length
  over the limit and one that lies, a chunked body, routes that raise Ray's errors. No Ray needed.
- The real application on Serve (tiny model, fine-tuning service on), fuzzed from its own
  /openapi.json with a valid key and without (tests/http_fuzz.py): every answer a documented
  status with OpenAI's error body, no 5xx carrying internals, bounded latency; afterwards a
  normal chat request still succeeds.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi import Request

from http_fuzz import LEAKS, fuzz, leaks, load_schema, oversize
from test_serve_app import free_port

KEY = "fuzz-key"
LIMIT = 4096


# ---------------------------------------------------------------------- the guards, in-process
class EngineRefusal(ValueError):
    """Like vLLM's VLLMValidationError: a 400 that ray.serve.llm's own middleware answers."""

    status_code = 400


def guarded_app(monkeypatch):
    import ray.exceptions
    from ray.llm._internal.serve.core.configs.openai_api_models import OpenAIHTTPException
    from ray.llm._internal.serve.core.ingress.ingress import init

    from rayalign.serving.errors import add_error_handlers
    from rayalign.serving.ingress import guard
    from rayalign.serving.settings import ServeSettings

    monkeypatch.setenv("FUZZ_TEST_KEYS", KEY)
    app = init()
    add_error_handlers(app)

    @app.post("/echo")
    async def echo(request: Request):
        return {"bytes": len(await request.body())}

    @app.get("/ray-task-error")
    async def ray_task_error():
        try:
            raise ValueError("boom in rayalign.serving.secret_module")
        except ValueError as cause:
            raise ray.exceptions.RayTaskError("score", "Traceback (most recent call last):\n  File \"/x/rayalign/y.py\""
                                              ", line 1\nValueError: boom", cause) from cause

    @app.get("/actor-died")
    async def actor_died():
        raise ray.exceptions.ActorDiedError()

    @app.get("/plain-error")
    async def plain_error():
        raise RuntimeError('File "/srv/rayalign/serving/ingress.py", line 12, in rayalign.serving.ingress')

    @app.get("/engine-400")
    async def engine_400():  # how ray.serve.llm passes on vLLM's refusal of a request
        raise OpenAIHTTPException(status_code=400, type="VLLMValidationError", message=(
            "Message: vllm.exceptions.VLLMValidationError: `tools` must not be empty (Request ID: r1), "
            "Internal exception: vllm.exceptions.VLLMValidationError: `tools` must not be empty, original "
            "exception: `tools` must not be empty"))

    @app.get("/engine-refusal")
    async def engine_refusal():
        raise EngineRefusal("`tools` must not be empty")

    guard(app, ServeSettings(auth={"keys_env": "FUZZ_TEST_KEYS"}, max_body_bytes=LIMIT))
    return app


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    app = guarded_app(monkeypatch)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the app did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)
    monkeypatch.undo()


AUTH = {"Authorization": f"Bearer {KEY}"}


def raw_request(url: str, head: bytes, body_parts=(), pause_s: float = 0.0) -> tuple[int, dict, float]:
    """Send `head` then `body_parts` on a socket; (status, JSON body, seconds to the answer)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        start = time.monotonic()
        sock.sendall(head)
        for part in body_parts:
            try:
                sock.sendall(part)
            except OSError:  # the server answered and closed: it read no more
                break
            time.sleep(pause_s)
        response = http.client.HTTPResponse(sock)
        response.begin()
        took = time.monotonic() - start
        body = response.read()
    try:
        return response.status, json.loads(body or b"{}"), took
    except ValueError:
        raise AssertionError(f"{response.status} {body[:300]!r}") from None


def head(path: str, extra: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\n{extra}\r\n").encode()


def assert_too_large(status: int, body: dict) -> None:
    assert status == 413, body
    assert body["error"]["code"] == "request_too_large" and str(LIMIT) in body["error"]["message"]
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_a_body_under_the_limit_is_read(guarded):
    answer = httpx.post(guarded + "/echo", content=b"x" * LIMIT, headers=AUTH)
    assert answer.status_code == 200 and answer.json() == {"bytes": LIMIT}


def test_a_declared_length_over_the_limit_is_413_before_any_body_is_sent(guarded):
    # the client claims 1 GiB and sends nothing: the answer cannot have waited for the body
    status, body, took = raw_request(guarded, head("/echo", f"Content-Length: {2**30}\r\n"))
    assert_too_large(status, body)
    assert took < 5


def test_a_content_length_that_lies_low_is_never_read_past_what_it_declares(guarded):
    # 10 bytes declared, 100 KiB sent: the app gets 10 bytes at most, and the HTTP server takes the
    # rest for a malformed next request (uvicorn's plain-text 400, before any app sees it)
    host, port = guarded.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(head("/echo", "Content-Length: 10\r\n") + b"y" * 100_000)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
    assert (response.status, body) in ((200, b'{"bytes":10}'), (400, b"Invalid HTTP request received."))


def test_a_chunked_body_is_cut_off_past_the_limit(guarded):
    chunk = b"z" * 1024
    parts = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 400  # 400 KiB offered, slowly
    status, body, took = raw_request(guarded, head("/echo", "Transfer-Encoding: chunked\r\n"), parts, pause_s=0.005)
    assert_too_large(status, body)
    assert took < 1.5  # answered after ~5 chunks, not after all 400 (2 s of sending)


def test_without_a_key_a_big_body_is_401_unread(guarded):
    status, body, took = raw_request(guarded, f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {2**30}\r\n\r\n"
                                     .encode())
    assert status == 401 and body["error"]["code"] == "invalid_api_key" and took < 5


@pytest.mark.parametrize("path, status, type_", [("/ray-task-error", 500, "InternalServerError"),
                                                  ("/actor-died", 503, "ServiceUnavailableError"),
                                                  ("/plain-error", 500, "InternalServerError")])
def test_internal_errors_are_5xx_without_internals(guarded, path, status, type_, caplog):
    """A replica that died under the request is a 503 to retry (Serve replaces it); anything else 500."""
    answer = httpx.get(guarded + path, headers={**AUTH, "x-request-id": "req-123"})
    assert answer.status_code == status
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == status
    assert "req-123" in error["message"] and error["type"] == type_
    assert not leaks(answer.text), answer.text
    assert "x-rayalign-public-error" not in answer.headers


def test_an_engine_refusal_reads_once_without_the_engine_class_path(guarded):
    answer = httpx.get(guarded + "/engine-400", headers={**AUTH, "x-request-id": "req-9"})
    assert answer.status_code == 400
    assert answer.json()["error"] == {"message": "`tools` must not be empty (request id req-9)",
                                      "type": "BadRequestError", "param": None, "code": 400}


def test_an_engine_refusal_answered_by_ray_middleware_is_made_plain_too(guarded):
    answer = httpx.get(guarded + "/engine-refusal", headers=AUTH)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["message"].startswith("`tools` must not be empty") and error["type"] == "BadRequestError", error
    assert "Internal exception" not in answer.text and "EngineRefusal" not in answer.text


def test_the_schema_documents_every_error_with_the_openai_body(guarded):
    schema = httpx.get(guarded + "/openapi.json", headers=AUTH).json()
    assert httpx.get(guarded + "/openapi.json").status_code == 401
    operations = [op for ops in schema["paths"].values() for op in ops.values()]
    assert operations and all({"400", "401", "413", "500"} <= set(op["responses"]) and "422" not in op["responses"]
                              for op in operations)
    assert schema["components"]["schemas"]["ErrorResponse"]["required"] == ["error"]
    assert LEAKS  # the markers the fuzzing looks for


# ---------------------------------------------------------------------- the real app, fuzzed
# The operations of issue 16 (ray.serve.llm's embeddings, score, transcriptions and tokenize
# routes are in the schema too; scripts/fuzz_http.py --all fuzzes them).
OPERATIONS = r"^/v1/(chat/completions|completions|models.*|rewards|judge|files.*|fine_tuning.*)$"


@pytest.fixture(scope="module")
def served(ray_cluster, tmp_path_factory):
    from ray import serve

    from rayalign.serving import lifecycle
    from tiny_model import build_tiny_model

    root = tmp_path_factory.mktemp("fuzz")
    model = build_tiny_model(root / "tiny-llm", hidden_size=64, heads=2)
    (root / "runs").mkdir()
    (root / "keys").write_text(f"{KEY}\n")
    args = {"runs_dir": str(root / "runs"), "models": [model], "auth": {"keys_file": str(root / "keys")},
            "engine": {"max_model_len": 256, "max_num_seqs": 8},
            "judge": {"max_tokens": 192}, "finetune": {"enabled": True, "storage": str(root / "ft")},
            "deployments": {"policy": {"ray_actor_options": {"num_cpus": 0}}}}
    url = lifecycle.start(args, port=free_port(), name="fuzz")
    try:
        yield url
    finally:
        lifecycle.stop("fuzz")
        serve.shutdown()  # so that a later module's serve.start takes its own port


# what fuzzing found (issue 16), each once by hand: all were 500s or FastAPI's {"detail": ...}
FOUND = [
    ("POST", "/v1/chat/completions", {"json": {"model": "tiny-llm", "messages": [{"content": "no role"}]}}, 400),
    ("POST", "/v1/chat/completions", {"content": b"\xc8\xae\xff", "headers": {"content-type": "application/json"}},
     400),
    ("POST", "/v1/files", {"content": b"[true]", "headers": {"content-type": "multipart/form-data; boundary=x"}},
     400),
    ("POST", "/v1/fine_tuning/jobs", {"json": {"model": ["a"], "training_file": "file-1"}}, 400),
    ("GET", "/v1/models/a%0Ab", {}, 404),
]


def test_what_fuzzing_found_is_answered_in_the_openai_format(served):
    for method, path, given, expected in FOUND:
        options = dict(given)
        answer = httpx.request(method, served + path, headers={**AUTH, **options.pop("headers", {})}, timeout=60,
                               **options)
        assert answer.status_code == expected, (path, answer.text)
        assert set(answer.json()["error"]) == {"message", "type", "param", "code"}, answer.text


def test_bodies_over_the_limit_are_413_through_the_serve_proxy(served):
    from rayalign.serving.settings import ServeSettings

    limit = ServeSettings().max_body_bytes
    result = oversize(served, KEY, limit)
    assert {r["status"] for r in result.values()} == {413}, result
    assert {r["code"] for r in result.values()} == {"request_too_large"}
    assert result["declared"]["sent_bytes"] == 0 and result["chunked"]["sent_bytes"] < 2 * limit, result


def test_fuzzing_every_operation_with_and_without_a_key(served):
    schema = load_schema(served, KEY)
    result = fuzz(schema, served, KEY, max_examples=8, operations=OPERATIONS, time_limit_s=30, model="tiny-llm")
    print("fuzz (CI):", json.dumps(result))
    assert result["cases"] > 200 and result["operations"] >= 15
    assert result["failures"] == {}, json.dumps(result["examples"], indent=1)[:6000]
    # the replicas keep serving
    answer = httpx.post(served + "/v1/chat/completions", headers=AUTH, timeout=60,
                        json={"model": "tiny-llm", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] == 4
