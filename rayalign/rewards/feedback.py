"""Where AI feedback comes from: a model that continues chats greedily and reports top log-probs.

One call, `feedback.continue_chats(conversations, max_new_tokens, top_logprobs, stop,
temperature)` -> one `Continuation` per conversation (greedy unless a temperature is given),
from three places; the teacher of synthetic data generation is one of them too:

- `LocalFeedback`: a generation engine (vLLM or HF) inside this process: the AI critic on a
  reward worker.
- `WorkerFeedback`: the rollout workers on Ray, the RL rollouts' own engine: the labeler of
  `rayalign rlaif label` and the critic/reviser of `rayalign rlaif revise`.
- `EndpointFeedback`: any OpenAI-compatible /v1/chat/completions (rayalign serve, vLLM, a
  vendor's API), requests sent concurrently; `logprobs`/`top_logprobs` are asked for and
  used when the endpoint returns them.

A conversation whose last message is the assistant's is continued from that text (the reply
is prefilled, e.g. "Verdict:"), otherwise a new assistant turn starts. An endpoint continues
a prefilled reply with vLLM's `continue_final_message`; for one that cannot (`prefill:
false`), the prefilled text is left out of the request and the model writes it itself:
`prefills` says which, so a reader knows what text precedes the reply.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from rayalign.data.prompts import encode_chat
from rayalign.data.rollouts import Continuation
from rayalign.rewards.remote import JsonClient
from rayalign.rewards.values import RewardError


def prefilled(conversation: list[dict]) -> str:
    """The text already written of the reply ("" when a new assistant turn starts)."""
    return conversation[-1]["content"] if conversation[-1]["role"] == "assistant" else ""


class LocalFeedback:
    """An engine in this process and the model's tokenizer."""

    prefills = True

    def __init__(self, model: str, engine: str = "vllm", rollout=None, seed: int = 0):
        from rayalign.config import RolloutConfig
        from rayalign.engines.generation import make_engine
        from rayalign.models.chain import start_model
        from rayalign.models.loading import load_tokenizer

        folder = start_model(model)
        rollout = rollout or RolloutConfig(engine=engine, max_model_len=1024)
        self.name = model
        self.tokenizer = load_tokenizer(folder)
        self.engine = make_engine(engine, folder, rollout, seed)

    def continue_chats(self, conversations: list[list[dict]], max_new_tokens: int, top_logprobs: int = 0,
                       stop: list[str] | None = None, temperature: float = 0.0) -> list[Continuation]:
        ids = [encode_chat(c, self.tokenizer) for c in conversations]
        return self.engine.continue_text(ids, max_new_tokens, top_logprobs, stop, temperature) if ids else []


class WorkerFeedback:
    """A group of RolloutWorkers (already set up on the model) and that model's tokenizer."""

    prefills = True

    def __init__(self, group, tokenizer, name: str):
        self.group, self.tokenizer, self.name = group, tokenizer, name

    def continue_chats(self, conversations: list[list[dict]], max_new_tokens: int, top_logprobs: int = 0,
                       stop: list[str] | None = None, temperature: float = 0.0) -> list[Continuation]:
        from rayalign.workers.rollout import continue_split

        ids = [encode_chat(c, self.tokenizer) for c in conversations]
        return continue_split(self.group, ids, max_new_tokens, top_logprobs, stop, temperature) if ids else []


class EndpointFeedback(JsonClient):
    """An OpenAI-compatible chat endpoint. `url` is the server's base (…/v1 or the root);
    `model` the served model's name."""

    kind = "labeler"
    expected = 'a chat completion (a JSON object with "choices")'

    def __init__(self, url: str, model: str, api_key_env: str | None = None, timeout_s: float = 120.0,
                 prefill: bool = True, concurrency: int = 8, attempts: int = 4, backoff_s: float = 1.0):
        super().__init__(url, api_key_env, timeout_s, f"{model}@{url}", attempts, backoff_s)
        self.model, self.prefills, self.concurrency = model, prefill, concurrency

    @staticmethod
    def endpoint(url: str) -> str:
        url = url.rstrip("/")
        if url.endswith("/chat/completions"):
            return url
        return (url if url.endswith("/v1") else url + "/v1") + "/chat/completions"

    def complete(self, answer: dict) -> bool:
        return bool(answer.get("choices"))

    def continue_chats(self, conversations: list[list[dict]], max_new_tokens: int, top_logprobs: int = 0,
                       stop: list[str] | None = None, temperature: float = 0.0) -> list[Continuation]:
        if not conversations:
            return []
        with ThreadPoolExecutor(min(self.concurrency, len(conversations))) as pool:
            return list(pool.map(lambda c: self.one(c, max_new_tokens, top_logprobs, stop, temperature),
                                 conversations))

    def one(self, conversation: list[dict], max_new_tokens: int, top_logprobs: int,
            stop: list[str] | None, temperature: float = 0.0) -> Continuation:
        body = {"model": self.model, "max_tokens": max_new_tokens, "temperature": temperature}
        messages = conversation
        if prefilled(conversation) and self.prefills:
            body.update(continue_final_message=True, add_generation_prompt=False)
        elif prefilled(conversation):
            messages = conversation[:-1]
        body["messages"] = messages
        if top_logprobs:
            body.update(logprobs=True, top_logprobs=top_logprobs)
        if stop:
            body["stop"] = stop
        choice = self.post(body)["choices"][0]
        text = (choice.get("message") or {}).get("content") or ""
        content = (choice.get("logprobs") or {}).get("content") or []
        tokens = [entry["token"] for entry in content]
        tops = [{top["token"]: top["logprob"] for top in entry.get("top_logprobs") or []} for entry in content]
        return Continuation(text, tokens, tops)


RATIONALE = "Rationale:"


def replies_at(feedback, chats: list[list[dict]], marker: str, rationale: bool = False,
               rationale_max_tokens: int = 64, top_logprobs: int = 20) -> list[tuple[str, Continuation]]:
    """Each chat's reply at `marker` ("Verdict:", "Score:"), with the text in place before it.

    The reply is prefilled with the marker, after a one-line rationale generated first when
    asked (chain of thought), so its next tokens are the answer. A model that cannot be
    prefilled writes the whole reply, with nothing in place before it."""
    if not feedback.prefills:
        budget = rationale_max_tokens + 8 if rationale else 8
        return [("", reply) for reply in feedback.continue_chats(chats, budget, top_logprobs)]
    prefixes = [marker] * len(chats)
    if rationale:
        thoughts = feedback.continue_chats([c + [{"role": "assistant", "content": RATIONALE}] for c in chats],
                                           rationale_max_tokens, 0, ["\n"])
        prefixes = [f"{RATIONALE}{t.text.rstrip()}\n{marker}" for t in thoughts]
    replies = feedback.continue_chats([c + [{"role": "assistant", "content": p}] for c, p in zip(chats, prefixes)],
                                      3, top_logprobs)
    return list(zip(prefixes, replies))


def make_feedback(labeler, rollout_group=None, tokenizer=None):
    """The feedback model a `labeler:` section names: its endpoint, else the given workers."""
    if labeler.url:
        if not labeler.served_model:
            raise RewardError(f"labeler url {labeler.url}: set labeler.served_model, the model name to ask for")
        return EndpointFeedback(labeler.url, labeler.served_model, labeler.api_key_env, labeler.timeout_s,
                                labeler.prefill, labeler.concurrency)
    return WorkerFeedback(rollout_group, tokenizer, labeler.model)
