"""Schemathesis over the serving app's own OpenAPI schema (its /openapi.json), shared by
tests/test_fuzz_http.py (a few examples per operation) and scripts/fuzz_http.py (many).

Each operation is fuzzed with a valid key and without one, with data that fits the schema
(positive) and data that does not (negative). Every answer is checked, and a failing case is
recorded (not raised, so that one run counts everything):
- `status`, `content_type`, `response_schema`: schemathesis' conformance checks (a documented
  status, a documented content type, a body that fits the documented schema);
- `error_body`: a 4xx/5xx is OpenAI's `{"error": {message, type, param, code}}`;
- `server_error`: any 5xx (documented, but an input the server fails on is a bug);
- `internals`: a 5xx names nothing of the server (traceback, file, Ray or rayalign);
- `no_key`: without a key, a 401;
- `slow`: an answer later than `time_limit_s`, or none (`transport`).
A 4xx whose message names internals (vLLM's validation messages may) is counted apart, in
`4xx_naming_internals`, not as a failure.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict

# markers of server internals: a traceback, a source file, a module path of Ray, vLLM or rayalign,
# a Ray exception class, an exception's "Name: message" rendering
LEAKS = (r"Traceback", r'File "', r"\b(?:ray|vllm|rayalign)\.\w", r"\bRay\w*Error\b", r"site-packages", r"\.py\b",
         r"\w+(?:Error|Exception): ")


def leaks(text: str) -> list[str]:
    """The markers of server internals found in a response body."""
    return [m for m in LEAKS if re.search(m, text)]


def auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def load_schema(url: str, key: str):
    import schemathesis

    return schemathesis.openapi.from_url(url + "/openapi.json", headers=auth(key), timeout=60)


def _error_body_problem(response) -> str | None:
    try:
        body = response.json()
    except Exception:
        return "not JSON"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or set(error) != {"message", "type", "param", "code"}:
        return f"not OpenAI's error body: {str(body)[:200]}"
    if not isinstance(error["message"], str) or not isinstance(error["type"], str):
        return "message and type must be strings"
    return None


def check(case, response, keyed: bool, elapsed: float, time_limit_s: float) -> list[tuple[str, str]]:
    """(kind, detail) of every problem with `response` to `case`."""
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    problems = []
    for kind, rule in (("status", status_code_conformance), ("content_type", content_type_conformance),
                       ("response_schema", response_schema_conformance)):
        try:
            case.validate_response(response, checks=[rule])
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup, or one failure
            first = exc.exceptions[0] if isinstance(exc, BaseExceptionGroup) else exc
            problems.append((kind, f"{getattr(first, 'title', type(first).__name__)}: "
                                   f"{getattr(first, 'message', str(first))}"[:300]))
    status = response.status_code
    if status >= 400:
        problem = _error_body_problem(response)
        if problem:
            problems.append(("error_body", problem))
    if status >= 500:
        problems.append(("server_error", f"{status}"))
    if status >= 500 and leaks(response.text):
        problems.append(("internals", f"{leaks(response.text)} in {response.text[:300]}"))
    if not keyed and status != 401:
        problems.append(("no_key", f"answered {status} without a key"))
    if elapsed > time_limit_s:
        problems.append(("slow", f"{elapsed:.1f} s"))
    return problems


def fuzz(schema, url: str, key: str, *, max_examples: int, operations: str | None = None,
         modes: tuple[str, ...] = ("positive", "negative"), time_limit_s: float = 30.0, seed: int = 0,
         keep: int = 20, model: str | None = None) -> dict:
    """Fuzz the operations whose path matches `operations` (a regex; None: all); with `model`,
    every other positive case that names a model names this one instead. The counts:
    {"cases", "operations", "per_operation": {"POST /v1/...": {"key": n, "no_key": n}},
     "statuses": {...}, "failures": {kind: n}, "examples": [the first `keep` failing cases], "seconds"}."""
    import hypothesis
    from hypothesis import HealthCheck, Phase
    from schemathesis import GenerationMode

    per_operation: dict[str, Counter] = defaultdict(Counter)
    statuses, failures, examples, notes, note_examples, served = Counter(), Counter(), [], Counter(), {}, Counter()
    settings = hypothesis.settings(max_examples=max_examples, deadline=None, database=None,
                                   phases=[Phase.explicit, Phase.generate], print_blob=False,
                                   suppress_health_check=list(HealthCheck))

    def one_case(case, who: str, headers: dict, mode: str, label: str) -> None:
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        if model and mode == "positive" and isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
            served[label] += 1
            if served[label] % 2:  # every other case names a served model: past the 404, into the handler
                case.body["model"] = model
        began = time.monotonic()
        try:
            response = case.call(base_url=url, headers=headers, timeout=time_limit_s)
        except Exception as exc:  # no answer at all (timeout, connection closed)
            problems, status = [("transport", f"{type(exc).__name__}: {str(exc)[:200]}")], "none"
        else:
            status = response.status_code
            problems = check(case, response, who == "key", time.monotonic() - began, time_limit_s)
            if 400 <= status < 500 and leaks(response.text):  # noted, not a failure: see the module doc
                notes[label] += 1
                note_examples.setdefault(label, response.text[:300])
        per_operation[label][who] += 1
        statuses[f"{label} {who} {status}"] += 1
        for kind, detail in problems:
            failures[kind] += 1
            if len(examples) < keep:
                examples.append({"kind": kind, "operation": label, "who": who, "mode": mode, "status": status,
                                 "detail": detail, "request": {"path": case.formatted_path, "query": case.query,
                                                               "body": _short(case.body)}})

    start = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operations and not re.match(operations, operation.path):
            continue
        label = f"{operation.method.upper()} {operation.path}"
        for who, headers in (("key", auth(key)), ("no_key", {})):
            for mode in modes:
                run = _operation_test(operation.as_strategy(generation_mode=GenerationMode(mode)), settings, seed,
                                      lambda case, who=who, headers=headers, mode=mode, label=label:
                                      one_case(case, who, headers, mode, label))
                run()
    return {"cases": sum(sum(c.values()) for c in per_operation.values()), "operations": len(per_operation),
            "per_operation": {k: dict(v) for k, v in per_operation.items()}, "statuses": dict(statuses),
            "failures": dict(failures), "examples": examples, "seconds": round(time.monotonic() - start, 1),
            "4xx_naming_internals": {"counts": dict(notes), "examples": note_examples}}


def _operation_test(strategy, settings, seed: int, body):
    """A Hypothesis test running `body` on each case `strategy` draws (seeded: a run repeats)."""
    import hypothesis

    @hypothesis.seed(seed)
    @settings
    @hypothesis.given(case=strategy)
    def run(case):
        body(case)

    return run


def _short(body) -> str:
    text = repr(body)
    return text if len(text) < 400 else text[:400] + "..."


def oversize(url: str, key: str, limit: int, path: str = "/v1/chat/completions") -> dict:
    """Bodies over `limit` bytes sent to `path`: a declared Content-Length with no body behind it,
    and a chunked body sent slowly; for each, the status, OpenAI error code and seconds to the
    answer (a server that read the body whole could not answer the first at all, nor the second
    before the client finished sending)."""
    import http.client
    import json
    import select
    import socket

    host, port = url.removeprefix("http://").split(":")
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\n")
    chunk = b"x" * 65536
    cases = {"declared": (head + f"Content-Length: {limit * 4}\r\n\r\n").encode(),
             "chunked": (head + "Transfer-Encoding: chunked\r\n\r\n").encode()}
    result = {}
    for name, request in cases.items():
        with socket.create_connection((host, int(port)), timeout=60) as sock:
            start = time.monotonic()
            sock.sendall(request)
            sent = 0
            while name == "chunked" and sent < 4 * limit:
                try:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except OSError:  # the server answered and closed
                    break
                sent += len(chunk)
                if select.select([sock], [], [], 0.01)[0]:
                    break  # an answer is there: stop sending
            else:
                if name == "chunked":  # all sent, no answer yet: end the body (a server reading it whole answers now)
                    sock.sendall(b"0\r\n\r\n")
            response = http.client.HTTPResponse(sock)
            response.begin()
            body = response.read()
        try:
            code = json.loads(body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = body[:100].decode(errors="replace")
        result[name] = {"status": response.status, "code": code, "seconds": round(time.monotonic() - start, 2),
                        "sent_bytes": sent}
    return result
