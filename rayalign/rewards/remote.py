"""Reward sources behind HTTP: any scorer that speaks a small JSON protocol, and rayalign's judge,
on one JSON client that also carries the AI labeler's chat requests (rewards/feedback.py).

`HttpReward` POSTs {"prompts", "completions", "metadata"} (plus the source's `options` as
extra fields) and reads {"rewards": [number or null, ...]}. `JudgeReward` asks rayalign
serve's AI critic, POST /v1/judge {"mode": "pointwise", "prompts", "completions"}, and reads
"rewards" the same way. A bearer token comes from the environment variable `api_key_env`.

Connection errors, 5xx and 429 answers are retried with exponential backoff; any other
4xx fails at once. Errors name the source, the URL, the status and the start of the body.
"""

from __future__ import annotations

import os
import time

import requests

from rayalign.rewards.values import RewardError, to_rewards

BODY_EXCERPT = 500  # characters of a response body quoted in an error


class JsonClient:
    """POSTs JSON to one URL and reads a JSON object back, retrying transient failures;
    one `requests.Session` (and so one connection pool) per client."""

    kind = "http"

    def __init__(self, url: str, api_key_env: str | None = None, timeout_s: float = 120.0,
                 name: str | None = None, attempts: int = 4, backoff_s: float = 1.0):
        self.url, self.name, self.timeout_s = self.endpoint(url), name or self.kind, timeout_s
        self.attempts, self.backoff_s = attempts, backoff_s
        self.session = requests.Session()
        if api_key_env:
            token = os.environ.get(api_key_env)
            if not token:
                raise RewardError(f"{self.describe()}: environment variable {api_key_env!r} (api_key_env) is not "
                                  f"set; it should hold the API key for {self.url}")
            self.session.headers["Authorization"] = f"Bearer {token}"

    @staticmethod
    def endpoint(url: str) -> str:
        return url

    def describe(self) -> str:
        return f"{self.kind} source {self.name!r} (POST {self.url})"

    def post(self, body: dict) -> dict:
        """The JSON object answered to `body`, after retrying transient failures."""
        for attempt in range(1, self.attempts + 1):
            transient = attempt < self.attempts
            try:
                response = self.session.post(self.url, json=body, timeout=self.timeout_s)
            except requests.ConnectionError as exc:
                if transient:
                    self.wait(attempt)
                    continue
                raise RewardError(f"{self.describe()}: cannot connect after {attempt} attempts: {exc}") from exc
            except requests.Timeout as exc:
                raise RewardError(f"{self.describe()}: no answer within timeout_s={self.timeout_s}") from exc
            if response.ok:
                return self.parse(response)
            if transient and (response.status_code >= 500 or response.status_code == 429):
                self.wait(attempt)
                continue
            raise RewardError(f"{self.describe()}: HTTP {response.status_code} after {attempt} "
                              f"attempt(s): {response.text[:BODY_EXCERPT]}")

    expected = "a JSON object"

    def parse(self, response: requests.Response) -> dict:
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not self.complete(answer):
            raise RewardError(f"{self.describe()}: expected {self.expected}, got: {response.text[:BODY_EXCERPT]}")
        return answer

    def complete(self, answer: dict) -> bool:
        return True

    def wait(self, attempt: int) -> None:
        time.sleep(self.backoff_s * 2 ** (attempt - 1))


class HttpReward(JsonClient):
    """One remote scorer."""

    reserved = ("prompts", "completions", "metadata")
    expected = 'a JSON object with "rewards"'

    def __init__(self, url: str, api_key_env: str | None = None, timeout_s: float = 120.0,
                 name: str | None = None, options: dict | None = None, attempts: int = 4,
                 backoff_s: float = 1.0):
        super().__init__(url, api_key_env, timeout_s, name, attempts, backoff_s)
        self.options = dict(options or {})
        clash = [key for key in self.options if key in self.reserved]
        if clash:
            raise RewardError(f"reward source {self.name!r}: options may not be named {clash} "
                              "(they are fields of the request)")
        self.none_count = 0

    def body(self, prompts: list, completions: list, metadata: list[dict] | None) -> dict:
        return {**self.options, "prompts": prompts, "completions": completions,
                "metadata": metadata if metadata is not None else [{}] * len(prompts)}

    def __call__(self, prompts: list, completions: list, metadata: list[dict] | None = None) -> list[float]:
        if not prompts:
            return []
        answer = self.post(self.body(prompts, completions, metadata))
        rewards, nones = to_rewards(answer.get("rewards"), len(prompts), self.describe())
        self.none_count += nones
        return rewards

    def describe(self) -> str:
        return f"reward source {self.name!r} (POST {self.url})"

    def complete(self, answer: dict) -> bool:
        return "rewards" in answer


class JudgeReward(HttpReward):
    """rayalign's AI critic, pointwise. `url` is the server (/v1/judge is added) or the endpoint."""

    kind = "judge"
    reserved = ("mode", "prompts", "completions")

    @staticmethod
    def endpoint(url: str) -> str:
        return url if url.rstrip("/").endswith("/v1/judge") else url.rstrip("/") + "/v1/judge"

    def body(self, prompts: list, completions: list, metadata: list[dict] | None) -> dict:
        return {**self.options, "mode": "pointwise", "prompts": prompts, "completions": completions}
