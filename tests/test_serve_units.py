"""The serving pieces that need no engine: run-folder discovery and model names (prompt runs,
chained runs), API keys, request validation, prompt-run request rewriting, and the application
graph built from the settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from rayalign.config import ConfigError
from rayalign.data.prompting import PromptVariant, prompt_run_record
from rayalign.serving.auth import load_api_keys
from rayalign.serving.tenants import DEFAULT_TENANT, ApiKey, TenantKeys, check_tenant, fingerprint, read_api_keys
from rayalign.serving.discovery import base_models, discover_runs, find_run, model_name
from rayalign.serving.protocol import JudgeRequest, RewardsRequest
from rayalign.serving.settings import AuthSettings


def make_run(runs: Path, name: str, method: str, files: dict[str, str], base: str) -> None:
    final = runs / name / "final"
    final.mkdir(parents=True)
    (runs / name / "config.yaml").write_text(f"method: {method}\nmodel:\n  name_or_path: {base}\n")
    for file, text in files.items():
        (final / file).write_text(text)


def make_prompt_run(runs: Path, name: str, variant: PromptVariant, base: str) -> None:
    (runs / name).mkdir(parents=True)
    (runs / name / "config.yaml").write_text(f"method: prompt\nmodel:\n  name_or_path: {base}\n")
    (runs / name / "prompt.json").write_text(prompt_run_record(variant, base))


VARIANT = PromptVariant("terse", system="Answer in one word.", template="Q: {prompt}",
                        examples=[{"prompt": "Colour of the sky?", "answer": "Blue."}])


@pytest.fixture
def runs(tmp_path, tiny_model):
    runs = tmp_path / "runs"
    adapter = json.dumps({"base_model_name_or_path": tiny_model})
    make_run(runs, "tuned", "sft", {"adapter_config.json": adapter}, tiny_model)
    make_run(runs, "full", "sft", {"config.json": "{}"}, tiny_model)
    make_run(runs, "rm-lora", "rm", {"adapter_config.json": adapter, "reward_stats.json": "{}"}, tiny_model)
    make_run(runs, "rm-full", "rm", {"config.json": "{}"}, tiny_model)
    (runs / "unfinished" / "checkpoints").mkdir(parents=True)
    return runs


def test_runs_are_served_by_kind_under_their_names(runs, tiny_model):
    found = {r.run: r for r in discover_runs(str(runs))}
    assert sorted(found) == ["full", "rm-full", "rm-lora", "tuned"]  # no final model: not served
    assert {name: r.kind for name, r in found.items()} == {
        "full": "full", "rm-full": "reward", "rm-lora": "reward", "tuned": "adapter"}
    assert found["tuned"].base == Path(tiny_model).name
    assert base_models([], list(found.values()), str(runs)) == {Path(tiny_model).name: tiny_model}
    assert find_run(str(runs), "tuned", "adapter").path == str((runs / "tuned" / "final").resolve())
    with pytest.raises(LookupError, match="no reward run named 'tuned'.*found: rm-full, rm-lora"):
        find_run(str(runs), "tuned", "reward")
    assert discover_runs(str(runs / "missing")) == []


def test_built_in_models_keep_their_name_and_a_run_may_not_take_a_base_name(runs, tiny_model):
    assert model_name("smollm2-135m-instruct") == "smollm2-135m-instruct"
    assert model_name(tiny_model + "/") == Path(tiny_model).name
    (runs / "full").rename(runs / Path(tiny_model).name)
    with pytest.raises(ValueError, match="have the name of a base model"):
        base_models([], discover_runs(str(runs)), str(runs))


def test_api_keys_come_from_the_environment_and_a_secret_file(tmp_path, monkeypatch):
    secret = tmp_path / "keys"
    secret.write_text("file-key\n\n")
    monkeypatch.setenv("SERVE_TEST_KEYS", "a, b,")
    keys = load_api_keys(AuthSettings(keys_env="SERVE_TEST_KEYS", keys_file=str(secret)))
    assert [k.key for k in keys] == ["a", "b", "file-key"] and {k.tenant for k in keys} == {"default"}
    monkeypatch.delenv("SERVE_TEST_KEYS")
    with pytest.raises(ValueError, match="set SERVE_TEST_KEYS"):
        load_api_keys(AuthSettings(keys_env="SERVE_TEST_KEYS"))
    assert load_api_keys(AuthSettings(keys_env="SERVE_TEST_KEYS", enabled=False)) == []
    with pytest.raises(FileNotFoundError, match="auth.keys_file"):
        load_api_keys(AuthSettings(keys_file=str(tmp_path / "missing")))


def test_keys_name_their_tenant_in_the_file_and_the_environment(tmp_path, monkeypatch):
    keys_file = tmp_path / "keys"
    keys_file.write_text("sk-old\n\nsk-acme  acme\nsk-globex\tglobex\n")
    monkeypatch.setenv("FT_TEST_KEYS", "sk-env, sk-env-acme acme,")
    assert read_api_keys("FT_TEST_KEYS", str(keys_file)) == [
        ApiKey("sk-env", DEFAULT_TENANT), ApiKey("sk-env-acme", "acme"), ApiKey("sk-old", DEFAULT_TENANT),
        ApiKey("sk-acme", "acme"), ApiKey("sk-globex", "globex")]
    tenants = TenantKeys(read_api_keys("FT_TEST_KEYS", str(keys_file)))
    assert tenants.tenant_of("sk-acme") == "acme" and tenants.tenant_of(b"sk-globex") == "globex"
    assert tenants.tenant_of("sk-old") == DEFAULT_TENANT
    assert tenants.tenant_of("sk-acm") is None and tenants.tenant_of("") is None


def test_bad_key_entries_are_refused_naming_where_they_are(tmp_path, monkeypatch):
    keys_file = tmp_path / "keys"
    keys_file.write_text("sk-a acme\nsk-b Acme Corp\n")
    with pytest.raises(ValueError, match=rf"auth.keys_file {keys_file}, line 2: expected a key and optionally"):
        read_api_keys("FT_TEST_UNSET", str(keys_file))
    keys_file.write_text("sk-a acme\nsk-b ../etc\n")
    with pytest.raises(ValueError, match=r"line 2: the word after the key is not a tenant name \(1-64 characters"):
        read_api_keys("FT_TEST_UNSET", str(keys_file))
    monkeypatch.setenv("FT_TEST_KEYS", "sk-a sk-Secret-B")  # two keys, a space for a comma: neither is shown
    with pytest.raises(ValueError, match="FT_TEST_KEYS, entry 1: the word after the key") as spaced:
        read_api_keys("FT_TEST_KEYS", None)
    assert "sk-a" not in str(spaced.value) and "Secret-B" not in str(spaced.value)
    monkeypatch.setenv("FT_TEST_KEYS", "sk-secret-value acme,sk-secret-value globex")
    with pytest.raises(ValueError, match="given for two tenants: 'acme' and 'globex'") as twice:
        read_api_keys("FT_TEST_KEYS", None)
    assert "sk-secret-value" not in str(twice.value) and fingerprint("sk-secret-value") in str(twice.value)
    keys_file.write_bytes(b"\xef\xbb\xbfsk-a acme\nsk-\xffb globex\n")  # a BOM is fine; a bad byte is named, not shown
    with pytest.raises(ValueError, match=rf"auth.keys_file {keys_file}, line 2: not valid UTF-8 \(byte 0xff at column 4\)"):
        read_api_keys("FT_TEST_UNSET", str(keys_file))
    for bad in ("", "-x", "A", "a" * 65, "a/b", ".."):
        with pytest.raises(ValueError, match="a tenant is"):
            check_tenant(bad)


def test_request_bodies_are_checked():
    assert RewardsRequest(prompts=["p", [{"role": "user", "content": "q"}]], completions=["a", "b"]).model is None
    with pytest.raises(ValidationError, match="2 prompts but 1 completions"):
        RewardsRequest(prompts=["p", "q"], completions=["a"])
    with pytest.raises(ValidationError, match="1 metadata entries for 2 prompts"):
        RewardsRequest(prompts=["p", "q"], completions=["a", "b"], metadata=[{}])
    single = JudgeRequest(mode="pairwise", prompt="q", a="x", b="y")
    assert single.single and single.pairs() == (["q"], ["x"], ["y"])
    listed = JudgeRequest(mode="pairwise", prompt="q", a=["x", "z"], b=["y", "w"])
    assert not listed.single and listed.pairs() == (["q", "q"], ["x", "z"], ["y", "w"])
    for bad in ({"mode": "pointwise", "prompts": ["q"]}, {"mode": "pairwise", "a": "x", "b": "y"},
                {"mode": "pairwise", "prompt": "q", "a": "x", "b": ["y"]},
                {"mode": "pairwise", "prompts": ["q"], "a": ["x", "z"], "b": ["y", "w"]},
                {"mode": "ranking", "prompts": [], "completions": []}):
        with pytest.raises(ValidationError):
            JudgeRequest(**bad)


def test_the_application_graph_has_a_policy_per_model_and_checks_its_settings(ray_cluster, runs, tiny_model):
    """(Building reads Ray's runtime context: on the session's cluster, not one of its own.)"""
    from rayalign.serving.app import build_app

    app = build_app({"runs_dir": str(runs), "models": [], "auth": {"enabled": False}})
    policies = app._bound_deployment.init_kwargs["llm_deployments"]
    assert sorted(policies) == ["full", Path(tiny_model).name]
    base = policies[Path(tiny_model).name]._bound_deployment.init_kwargs["llm_config"]
    assert base.engine_kwargs["enable_lora"] and base.lora_config.max_num_adapters_per_replica == 4
    assert policies["full"]._bound_deployment.init_kwargs["llm_config"].lora_config is None
    assert app._bound_deployment.init_kwargs["lora_bases"] == [Path(tiny_model).name]
    plain = build_app({"runs_dir": str(runs), "models": [], "auth": {"enabled": False}, "adapters": {"enabled": False}})
    assert plain._bound_deployment.init_kwargs["lora_bases"] == []
    base = plain._bound_deployment.init_kwargs["llm_deployments"][Path(tiny_model).name]
    assert "enable_lora" not in base._bound_deployment.init_kwargs["llm_config"].engine_kwargs
    with pytest.raises(ValidationError, match="max_model_len"):
        build_app({"runs_dir": str(runs), "engine": {"max_model_len": 0}})
    with pytest.raises(ValidationError, match="judge.max_tokens=50 may cut a constrained reply short"):
        build_app({"runs_dir": str(runs), "judge": {"max_tokens": 50}})
    with pytest.raises(ValueError, match="nothing to serve"):
        build_app({"runs_dir": str(runs / "missing")})


def test_a_prompt_run_is_served_on_its_base(runs, tiny_model):
    make_prompt_run(runs, "terse", VARIANT, tiny_model)
    found = {r.run: r for r in discover_runs(str(runs))}
    prompted = found["terse"]
    assert (prompted.kind, prompted.base, prompted.path) == ("prompt", Path(tiny_model).name, str(runs / "terse"))
    assert prompted.variant == VARIANT
    assert base_models([], list(found.values()), str(runs)) == {Path(tiny_model).name: tiny_model}
    (runs / "terse" / "prompt.json").write_text('{"variant": {}}')
    with pytest.raises(ConfigError, match="terse/prompt.json: not a prompt run record"):
        discover_runs(str(runs))


def chained_runs(runs: Path, tiny_model: str) -> None:
    """`sft` (LoRA, merged into `merged/`) -> `rl`; `sftfull` (full) -> `rl-full` (its base recorded
    where the runs were before they moved) and the prompt run `asked`."""
    adapter_on = lambda base: {"adapter_config.json": json.dumps({"base_model_name_or_path": base})}  # noqa: E731
    make_run(runs, "sft", "sft", adapter_on(tiny_model), tiny_model)
    (runs / "sft" / "merged").mkdir()
    (runs / "sft" / "merged" / "config.json").write_text("{}")
    make_run(runs, "rl", "rlhf", adapter_on(str(runs / "sft" / "merged")), "runs/sft")
    make_run(runs, "sftfull", "sft", {"config.json": "{}"}, tiny_model)
    make_run(runs, "rl-full", "rlhf", adapter_on("/moved/away/runs/sftfull/final"), "runs/sftfull")
    make_prompt_run(runs, "asked", VARIANT, "runs/sftfull")


def test_chained_runs_are_served_on_their_parent_run_by_its_name(runs, tiny_model):
    chained_runs(runs, tiny_model)
    assert model_name(str(runs / "sft" / "merged")) == "sft"
    assert model_name(str(runs / "sftfull" / "final")) == "sftfull"
    assert model_name(str(runs / "tuned" / "checkpoints")) == "checkpoints"  # only merged/ and final/
    found = {r.run: r for r in discover_runs(str(runs))}
    assert {name: r.base for name, r in found.items() if r.kind in ("adapter", "prompt")} == {
        "tuned": Path(tiny_model).name, "sft": Path(tiny_model).name, "rl": "sft", "rl-full": "sftfull",
        "asked": "sftfull"}
    assert found["sftfull"].kind == "full"
    # the full fine-tune `sftfull` is also the base of `rl-full`: one model, no clash
    assert base_models([], list(found.values()), str(runs)) == {Path(tiny_model).name: tiny_model,
                                                                "sft": str(runs / "sft" / "merged"),
                                                                "sftfull": str(runs / "sftfull" / "final")}
    other = runs.parent / "elsewhere" / "sft"
    other.mkdir(parents=True)
    (other / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="two base models are both named 'sft'"):
        base_models([str(other)], list(found.values()), str(runs))


def test_a_run_started_from_an_unmerged_adapter_run_merges_it_once(runs, tiny_model):
    from peft import LoraConfig, get_peft_model

    from rayalign.models.loading import load_causal_lm, load_tokenizer

    final = runs / "tuned" / "final"   # a real adapter this time: merging reads its weights
    get_peft_model(load_causal_lm(tiny_model), LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(final)
    load_tokenizer(tiny_model).save_pretrained(final)
    make_prompt_run(runs, "asked", VARIANT, str(runs / "tuned"))
    bases = base_models([], discover_runs(str(runs)), str(runs))
    assert bases["tuned"] == str((runs / "tuned" / "merged").resolve())
    assert (runs / "tuned" / "merged" / "config.json").is_file()


def test_prompt_run_requests_are_rewritten_for_the_base_and_answers_renamed():
    from ray.llm._internal.serve.core.configs.openai_api_models import (
        ChatCompletionRequest, ChatCompletionResponse, CompletionRequest, OpenAIHTTPException)

    from rayalign.serving.prompted import answered_as, prompted_request

    question = [{"role": "system", "content": "Be kind."},
                {"role": "user", "content": [{"type": "text", "text": "Two"}, {"type": "text", "text": "parts"}]}]
    chat = prompted_request(ChatCompletionRequest(model="tiny:terse", messages=question, temperature=0.5),
                            "tiny:terse", "tiny", VARIANT)
    assert chat.model == "tiny" and chat.temperature == 0.5
    assert chat.messages == VARIANT.apply([question[0], {"role": "user", "content": "Two\nparts"}])
    assert chat.messages[0] == {"role": "system", "content": "Answer in one word.\n\nBe kind."}
    template_only = PromptVariant("q", template="Q: {prompt}\nA:")
    completion = prompted_request(CompletionRequest(model="tiny:q", prompt=["hi", "yo"]), "tiny:q", "tiny",
                                  template_only)
    assert (completion.model, completion.prompt) == ("tiny", ["Q: hi\nA:", "Q: yo\nA:"])
    for body, variant, why in [(CompletionRequest(model="tiny:terse", prompt="hi"), VARIANT, "serve chat completions"),
                               (CompletionRequest(model="tiny:q", prompt=[1, 2]), template_only, "not token ids")]:
        with pytest.raises(OpenAIHTTPException) as refused:
            prompted_request(body, body.model, "tiny", variant)
        assert refused.value.status_code == 400 and why in refused.value.message

    whole = ChatCompletionResponse(id="c", created=0, model="tiny", choices=[],
                                   usage={"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1})
    assert answered_as(whole, "tiny:terse").model == "tiny:terse"
    events = ['data: {"id":"c","model":"tiny","choices":[{"delta":{"content":"model"}}]}\n\n', "data: [DONE]\n\n"]
    renamed = answered_as(events, "tiny:terse")
    assert json.loads(renamed[0].removeprefix("data: "))["model"] == "tiny:terse" and renamed[1] == events[1]
    assert renamed[0].endswith("\n\n") and '"content":"model"' in renamed[0]


def test_chained_and_full_runs_share_one_engine_with_lora(ray_cluster, runs, tiny_model):
    from rayalign.serving.app import build_app

    chained_runs(runs, tiny_model)
    app = build_app({"runs_dir": str(runs), "models": [], "auth": {"enabled": False}})
    policies = app._bound_deployment.init_kwargs["llm_deployments"]
    assert sorted(policies) == ["full", "sft", "sftfull", Path(tiny_model).name]
    sftfull = policies["sftfull"]._bound_deployment.init_kwargs["llm_config"]
    assert sftfull.model_loading_config.model_source == str(runs / "sftfull" / "final")
    assert sftfull.engine_kwargs["enable_lora"]  # for `sftfull:rl-full`
    assert sorted(app._bound_deployment.init_kwargs["lora_bases"]) == ["sft", "sftfull", Path(tiny_model).name]


@pytest.fixture
def sigint_as_serve_has_it():
    """SIGINT handled as `rayalign serve` installs it (a KeyboardInterrupt), whatever an earlier
    test in this process left (Ray, uvicorn and others install handlers of their own)."""
    import signal

    from rayalign.cli.tools import _interrupt

    previous = signal.signal(signal.SIGINT, _interrupt)
    yield
    signal.signal(signal.SIGINT, previous)


def bounded(seconds: float):
    """An `every` task for wait_for_interrupt that fails the test instead of waiting for ever."""
    import time

    deadline = time.monotonic() + seconds

    def check() -> None:
        assert time.monotonic() < deadline, f"no KeyboardInterrupt within {seconds} s"
    return check


def test_serve_wakes_on_a_ctrl_c_that_lands_on_another_thread(sigint_as_serve_has_it):
    """`rayalign serve` waits in short sleeps: the kernel may give SIGINT to any of the driver's
    threads that do not block it (Ray starts dozens), and Python then raises KeyboardInterrupt
    only once the main thread runs Python code again (the flaky "no exit 180 s after Ctrl-C")."""
    import signal
    import threading
    import time

    from rayalign.cli.tools import wait_for_interrupt

    ready, done = threading.Event(), threading.Event()

    def other():
        ready.set()
        done.wait(30)

    thread = threading.Thread(target=other, daemon=True)
    thread.start()
    ready.wait()
    threading.Timer(0.3, lambda: signal.pthread_kill(thread.ident, signal.SIGINT)).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        wait_for_interrupt(every=(0.5, bounded(10)))
    done.set()
    assert time.monotonic() - started < 2


def test_the_wait_for_ctrl_c_runs_the_segment_sweep_at_its_interval(sigint_as_serve_has_it):
    import signal
    import threading

    from rayalign.cli.tools import wait_for_interrupt

    calls, check = [], bounded(10)

    def task() -> None:
        calls.append(1)
        check()

    threading.Timer(1.0, lambda: signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        wait_for_interrupt(tick_s=0.05, every=(0.2, task))
    assert 3 <= len(calls) <= 5, calls


def test_a_request_whose_replica_died_is_a_503_to_retry_without_ray_internals():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from ray.exceptions import ActorDiedError

    from rayalign.serving.errors import add_error_handlers
    from rayalign.serving.guards import InternalErrorShield

    app = FastAPI()
    add_error_handlers(app)
    app.add_middleware(InternalErrorShield)  # the ingress's outermost layer passes this 5xx on as written

    @app.post("/v1/chat/completions")
    async def chat():
        raise ActorDiedError()  # what a handle call raises when its replica is killed

    answer = TestClient(app).post("/v1/chat/completions", json={}, headers={"x-request-id": "r1"})
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert "x-rayalign-public-error" not in answer.headers
    error = answer.json()["error"]
    assert error["type"] == "ServiceUnavailableError" and error["code"] == 503
    assert "replica" in error["message"] and "retry" in error["message"] and "(request id r1)" in error["message"]
    assert "actor" not in error["message"].lower() and "pid" not in error["message"]
