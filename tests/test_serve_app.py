"""The serving application end to end on a tiny model, with the real `openai` client over HTTP:
chat, streaming, completions, model listing, a LoRA adapter and a full fine-tune trained here,
prompt runs and a chained run, reward and judge endpoints, API keys and error answers, and a
bounded load test.

One application for the module (start-up is 30-60 s): vLLM serves the tiny model (head size 32,
the smallest vLLM's CPU attention runs) with the adapter multiplexed and the prompt runs on it,
and the full fine-tune with the chained run's adapter multiplexed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from pathlib import Path

import httpx
import openai
import pytest

from conftest import write_jsonl
from rayalign.config import load_config
from rayalign.data.prompting import PromptVariant, prompt_run_record
from tiny_model import build_tiny_model

KEY = "test-key-1"
QUESTION = [{"role": "user", "content": "What is 3 + 4? Answer with just the number."}]
PAIRS = [{"prompt": [{"role": "user", "content": f"Is {t} real? Answer yes or no."}],
          "chosen": [{"role": "assistant", "content": "Yes, it is real."}],
          "rejected": [{"role": "assistant", "content": "No, it is not."}],
          "score_chosen": 1.0, "score_rejected": 0.0}
         for t in ["the sky", "water", "fire", "a cat", "the moon", "bread", "a river", "snow"]]
PIRATE = PromptVariant("pirate", system="You are Captain Zed of the starship Quokka. Always answer like a pirate.",
                       examples=[{"prompt": "What is 1 + 1?", "answer": "Arr, 2 it be!"}])
TEMPLATE = PromptVariant("template", template="Question: {prompt}\nAnswer:")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def train_runs(runs: Path, model: str, data_dir: Path) -> None:
    """An SFT LoRA adapter (`tuned`), a full fine-tune (`full`) and a reward model (`rm`)."""
    from rayalign.pipelines.reward_model import run_reward_model
    from rayalign.pipelines.sft import run_sft

    sft = write_jsonl(data_dir / "sft.jsonl", [{"messages": [*QUESTION, {"role": "assistant", "content": "7"}]}] * 16)
    prefs = write_jsonl(data_dir / "prefs.jsonl", PAIRS * 2)
    common = [f"output_dir={runs}", f"model.name_or_path={model}", "data.eval=null", "train.warmup_steps=0",
              "train.lr_scheduler=constant", "train.eval_every=0", "train.save_every=0", "logging.progress=false"]
    run_sft(load_config("quickstart", [*common, "name=tuned", f"data.train={sft}", "train.lr=3e-2",
                                       "train.max_steps=12"]))
    run_sft(load_config("sft_full", [*common, "name=full", f"data.train={sft}", "train.lr=1e-2", "train.max_steps=12"]))
    run_reward_model(load_config("reward_model", [*common, "name=rm", f"data.train={prefs}", "train.lr=1e-2",
                                                  "train.max_steps=12"]))


def hand_made_runs(runs: Path, model: str) -> None:
    """Prompt runs `pirate` and `template` on the tiny model, and `rl`, chained on the full
    fine-tune (`full`): the adapter of `tuned`, recorded as an adapter of runs/full/final."""
    for variant in (PIRATE, TEMPLATE):
        (runs / variant.name).mkdir()
        (runs / variant.name / "config.yaml").write_text(f"method: prompt\nmodel:\n  name_or_path: {model}\n")
        (runs / variant.name / "prompt.json").write_text(prompt_run_record(variant, model))
    shutil.copytree(runs / "tuned" / "final", runs / "rl" / "final")
    adapter = json.loads((runs / "rl" / "final" / "adapter_config.json").read_text())
    adapter["base_model_name_or_path"] = str(runs / "full" / "final")
    (runs / "rl" / "final" / "adapter_config.json").write_text(json.dumps(adapter))
    (runs / "rl" / "config.yaml").write_text(f"method: rlhf\nmodel:\n  name_or_path: {runs / 'full'}\n")


@pytest.fixture(scope="module")
def served(ray_cluster, tmp_path_factory):
    from ray import serve

    from rayalign.serving import lifecycle

    root = tmp_path_factory.mktemp("serve")
    model = build_tiny_model(root / "tiny-llm", hidden_size=64, heads=2)  # head size 32: vLLM CPU runs it
    train_runs(root / "runs", model, root)
    hand_made_runs(root / "runs", model)
    (root / "keys").write_text(f"other-key\n{KEY}\n")
    args = {"runs_dir": str(root / "runs"), "auth": {"keys_file": str(root / "keys")},
            "engine": {"max_model_len": 1024, "max_num_seqs": 16},
            "deployments": {"policy": {"ray_actor_options": {"num_cpus": 0}}}}
    url = lifecycle.start(args, port=free_port())
    try:
        yield {"url": url, "root": root, "model": model}
    finally:
        removed = lifecycle.stop()
        serve.shutdown()  # a later module's serve.start takes its own port (a running Serve keeps its first)
        assert removed, "the engines' shared-memory segments should have been found and removed"
        assert not [p for p in removed if Path(p).exists()]


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served["url"] + "/v1", api_key=KEY, max_retries=0, timeout=120)


def chat(client, model: str, **options) -> str:
    reply = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=12, temperature=0, **options)
    return reply.choices[0].message.content


def post(served, path: str, body, key: str | None = KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(served["url"] + path, content=content, headers={**headers, "content-type": "application/json"},
                      timeout=120)


def test_models_lists_the_base_its_adapter_prompt_runs_and_the_full_fine_tune_with_its_chained_run(client):
    ids = sorted(m.id for m in client.models.list().data)
    # the reward model is not a chat model
    assert ids == ["full", "full:rl", "tiny-llm", "tiny-llm:pirate", "tiny-llm:template", "tiny-llm:tuned"]
    assert client.models.retrieve("tiny-llm:pirate").id == "tiny-llm:pirate"


def test_chat_completions_and_usage(client):
    reply = client.chat.completions.create(model="tiny-llm", messages=QUESTION, max_tokens=12, temperature=0)
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 10
    completion = client.completions.create(model="tiny-llm", prompt="the quick brown", max_tokens=8, temperature=0)
    assert completion.choices[0].text and completion.usage.completion_tokens == 8


def test_streaming_yields_the_same_text_and_ends_with_done(client, served):
    chunks = list(client.chat.completions.create(model="tiny-llm", messages=QUESTION, max_tokens=12,
                                                 temperature=0, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 2 and streamed == chat(client, "tiny-llm")
    body = {"model": "tiny-llm", "messages": QUESTION, "max_tokens": 4, "stream": True}
    with httpx.stream("POST", served["url"] + "/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and all(json.loads(e[6:]) for e in events[:-1])


def test_the_trained_adapter_is_chosen_by_name_and_answers_differently(client):
    base, tuned, full = chat(client, "tiny-llm"), chat(client, "tiny-llm:tuned"), chat(client, "full")
    assert tuned.strip().startswith("7"), tuned  # what the adapter was trained to answer
    assert tuned != base and full != base


def test_a_prompt_run_is_its_base_with_the_variant_applied(client, served):
    from transformers import AutoTokenizer

    def ask(model: str, messages: list[dict]):
        return client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0)

    prompted = ask("tiny-llm:pirate", QUESTION)
    by_hand = ask("tiny-llm", PIRATE.apply(QUESTION))
    plain = ask("tiny-llm", QUESTION)
    assert prompted.model == "tiny-llm:pirate" and prompted.choices[0].message.content
    assert prompted.choices[0].message.content == by_hand.choices[0].message.content
    tokenizer = AutoTokenizer.from_pretrained(served["model"])
    rendered = tokenizer.apply_chat_template(PIRATE.apply(QUESTION), tokenize=False, add_generation_prompt=True)
    assert "Captain Zed" in rendered and "Arr, 2 it be!" in rendered
    # what the engine read: the system prompt and the few-shot turn around the question
    tokens = len(tokenizer(rendered, add_special_tokens=False).input_ids)
    assert prompted.usage.prompt_tokens == by_hand.usage.prompt_tokens == tokens
    assert prompted.usage.prompt_tokens > plain.usage.prompt_tokens + 20

    chunks = list(client.chat.completions.create(model="tiny-llm:pirate", messages=QUESTION, max_tokens=12,
                                                 temperature=0, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == prompted.choices[0].message.content
    assert {c.model for c in chunks} == {"tiny-llm:pirate"}


def test_completions_for_a_prompt_run_wrap_the_template_or_answer_400(client, served):
    templated = client.completions.create(model="tiny-llm:template", prompt="the quick brown", max_tokens=8,
                                          temperature=0)
    by_hand = client.completions.create(model="tiny-llm", prompt=TEMPLATE.wrap("the quick brown"), max_tokens=8,
                                        temperature=0)
    assert templated.model == "tiny-llm:template" and templated.choices[0].text == by_hand.choices[0].text
    assert templated.usage.prompt_tokens == by_hand.usage.prompt_tokens
    answer = post(served, "/v1/completions", {"model": "tiny-llm:pirate", "prompt": "the quick brown"})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == 400 and error["type"] == "BadRequestError" and "chat completions" in error["message"]


def test_a_chained_run_is_served_on_its_parent_run(client):
    reply = client.chat.completions.create(model="full:rl", messages=QUESTION, max_tokens=12, temperature=0)
    assert reply.model == "full:rl" and reply.usage.completion_tokens > 0


def test_rewards_match_the_reward_model_scored_offline(served):
    from rayalign.rewards.reward_model import RewardModelScorer

    prompts = [p["prompt"] for p in PAIRS[:3]] * 2
    completions = ["Yes, it is real."] * 3 + ["No, it is not."] * 3
    answer = post(served, "/v1/rewards", {"prompts": prompts, "completions": completions,
                                          "metadata": [{}] * 6})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "rm"
    rewards = answer.json()["rewards"]
    offline = RewardModelScorer(str(served["root"] / "runs" / "rm" / "final"))(prompts, completions)
    assert rewards == pytest.approx(offline, abs=1e-4)
    assert min(rewards[:3]) > max(rewards[3:])  # the trained preference: "Yes" over "No"


def test_judge_pointwise_and_pairwise_follow_the_grammar(served):
    pointwise = post(served, "/v1/judge", {"mode": "pointwise", "prompts": ["What is 3 + 4?", QUESTION],
                                           "completions": ["7", "8"]})
    assert pointwise.status_code == 200, pointwise.text
    result = pointwise.json()
    assert result["model"] == "tiny-llm" and len(result["rewards"]) == 2
    assert all(1 <= s <= 10 for s in result["verdicts"])  # constrained decoding: always a score
    assert result["rewards"] == [pytest.approx((s - 1) / 9) for s in result["verdicts"]]
    assert all(result["rationales"])

    pairwise = post(served, "/v1/judge", {"mode": "pairwise", "prompt": "What is 3 + 4?", "a": "7", "b": "8",
                                          "model": "tiny-llm:tuned"})
    assert pairwise.status_code == 200, pairwise.text
    result = pairwise.json()
    assert result["model"] == "tiny-llm:tuned"
    assert result["verdict"] in ("a", "b", "tie") and len(result["rationale"]) == 2
    assert all(v in ("first", "second", "tie") for v in result["order_verdicts"][0])


def test_missing_or_wrong_api_key_is_401_in_the_openai_format(served):
    for key in (None, "wrong-key"):
        answer = post(served, "/v1/chat/completions", {"model": "tiny-llm", "messages": QUESTION}, key=key)
        assert answer.status_code == 401
        assert set(answer.json()["error"]) >= {"message", "type", "code"}
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=served["url"] + "/v1", api_key="wrong-key", max_retries=0).models.list()


def test_bad_requests_are_400_or_404_and_leave_the_replicas_serving(served, client):
    cases = [
        (b"{not json", 400),
        ({"model": "tiny-llm", "messages": "not a list"}, 400),
        ({"model": "no-such-model", "messages": QUESTION}, 404),
        ({"model": "tiny-llm:no-such-run", "messages": QUESTION}, 404),
        ({"model": "tiny-llm", "messages": QUESTION, "max_tokens": 100_000}, 400),
    ]
    for body, status in cases:
        answer = post(served, "/v1/chat/completions", body)
        assert answer.status_code == status, (body, answer.text)
        error = answer.json()["error"]
        assert error["code"] == status and error["message"] and error["type"], error
    assert post(served, "/v1/rewards", {"model": "nope", "prompts": ["x"], "completions": ["y"]}).status_code == 404
    assert post(served, "/v1/rewards", {"prompts": ["x", "z"], "completions": ["y"]}).status_code == 400
    assert post(served, "/v1/judge", {"mode": "pairwise", "a": "x", "b": "y"}).status_code == 400
    with pytest.raises(openai.NotFoundError):
        chat(client, "tiny-llm:no-such-run")
    assert chat(client, "tiny-llm:tuned").strip().startswith("7")  # still serving


def test_health_at_the_proxy_and_request_ids(served):
    assert httpx.get(served["url"] + "/-/healthz", timeout=10).status_code == 200  # no key needed
    answer = httpx.get(served["url"] + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert answer.status_code == 200 and answer.headers.get("x-request-id")


def test_load_200_requests_at_concurrency_16_without_errors(served):
    from rayalign.serving.load import chat_load

    prompts = [f"Request {i}: what is {i % 10} + 1?" for i in range(200)]
    result = asyncio.run(chat_load(served["url"] + "/v1", KEY, "tiny-llm:tuned", prompts, concurrency=16,
                                   max_tokens=16))
    print(f"load test (tiny model, adapter): {json.dumps(result)}")
    assert result["errors"] == 0, result["first_errors"]
    assert result["completion_tokens"] == 200 * 16
    assert result["p99_s"] >= result["p50_s"] > 0
