"""The HTTP front: ray.serve.llm's OpenAI ingress, plus what rayalign adds to it.

- /v1/models also lists the adapters and prompt runs of run folders (`<base>:<run>`), found at
  request time; a request for an adapter or prompt run that no run folder holds is a 404 here,
  before any engine is asked.
- A request for a prompt run goes to its base model's engine with the run's prompt variant
  applied (rayalign.serving.prompted), through `_get_response`, the one call every chat,
  completion and judge request of ray.serve.llm's ingress makes to an engine.
- /v1/rewards scores with a trained reward model (the reward deployment).
- /v1/judge runs the AI critic (rayalign.rewards.judge) on a served policy model, through
  the same deployment handles as chat requests: no second copy of the engine.
- With the fine-tuning service on (rayalign.serving.finetune_api): OpenAI's files and
  fine-tuning jobs routes, and each tenant's fine-tuned models `ft:<base>:<suffix>:<id>` in
  /v1/models and answering chat, as the job's adapter on its base's engine. Another tenant's
  fine-tuned model is a 404 like an unknown one.
- API keys and the request log (rayalign.serving.auth) wrap the whole app; the key's tenant is
  `current_tenant` for the request. Inside them, bodies over `max_body_bytes` are a 413 before they
  are read whole; outside them, every 5xx is made generic (rayalign.serving.errors). The OpenAPI
  schema at /openapi.json documents each route's statuses (rayalign.serving.openapi).
"""

from __future__ import annotations

import asyncio
import time

from fastapi import FastAPI, Request, status
from ray.llm._internal.serve.core.configs.openai_api_models import (
    ChatCompletionRequest,
    ErrorResponse,
    ModelCard,
    ModelList,
    OpenAIHTTPException,
)
from ray.llm._internal.serve.core.ingress.ingress import DEFAULT_ENDPOINTS, init
from ray.serve.llm.ingress import OpenAiIngress, make_fastapi_ingress
from starlette.responses import JSONResponse

from rayalign.data.readers import DataError
from rayalign.finetune.errors import NotFound
from rayalign.rewards import judge
from rayalign.serving import openapi
from rayalign.serving.auth import ApiKeyMiddleware, load_api_keys
from rayalign.serving.discovery import ServedRun, discover_runs
from rayalign.serving.errors import add_error_handlers
from rayalign.serving.guards import BodyLimit, InternalErrorShield
from rayalign.serving.finetune_api import FineTuning, add_finetune_routes, service
from rayalign.serving.prompted import answered_as, prompted_request
from rayalign.serving.protocol import JudgeRequest, RewardsRequest
from rayalign.serving.settings import ServeSettings
from rayalign.serving.tenants import current_tenant

RESCAN_S = 5.0  # how long a listing of the run folders is reused


class RayalignIngress(OpenAiIngress):
    def __init__(self, llm_deployments, model_cards, *, rewards, settings: dict, lora_bases: list[str],
                 tune_bases: dict[str, str] | None = None, runner=None):
        super().__init__(llm_deployments, model_cards)
        self.lora_bases = set(lora_bases)  # the base models whose engines take adapters
        self.settings = ServeSettings.model_validate(settings)
        load_api_keys(self.settings.auth)  # no keys with auth on: fail the deployment, not the requests
        self.rewards_handle = rewards
        self._runs: tuple[float, list[ServedRun]] = (0.0, [])
        self.fine_tuning: FineTuning | None = (service(self.settings.finetune, tune_bases or {})
                                               if self.settings.finetune.enabled else None)
        self.runner_handle = runner  # bound so that the runner is deployed with the app

    # ------------------------------------------------------------------ fine-tuned models
    def tuned_adapter(self, model: str) -> str | None:
        """For a fine-tuned model name `ft:...`, its adapter id (404 if not the tenant's); else None."""
        if self.fine_tuning is None or not model.startswith("ft:"):
            return None
        try:
            return self.fine_tuning.adapter_for(current_tenant.get(), model)
        except NotFound:
            raise OpenAIHTTPException(status_code=status.HTTP_404_NOT_FOUND, type="NotFoundError",
                                      message=f"model {model!r} does not exist") from None

    def tuned_models(self) -> dict[str, str]:
        """The tenant's fine-tuned models: name -> base."""
        if self.fine_tuning is None:
            return {}
        return {name: base for name, base in self.fine_tuning.served(current_tenant.get()).items()
                if base in self._model_cards}

    # ------------------------------------------------------------------ run folders
    def runs(self, kind: str) -> dict[str, ServedRun]:
        stamp, runs = self._runs
        if time.monotonic() - stamp > RESCAN_S:
            runs = discover_runs(self.settings.runs_dir)
            self._runs = (time.monotonic(), runs)
        return {r.run: r for r in runs if r.kind == kind}

    def adapter_ids(self) -> list[str]:
        return [f"{r.base}:{r.run}" for r in self.runs("adapter").values() if r.base in self.lora_bases]

    def prompt_runs(self) -> dict[str, ServedRun]:
        """`<base>:<run>` -> the prompt run, for those whose base model is served."""
        return {f"{r.base}:{r.run}": r for r in self.runs("prompt").values() if r.base in self._model_cards}

    async def _get_model_id(self, model):
        model_id = await super()._get_model_id(model)
        if (":" in model_id and model_id not in self.adapter_ids() and model_id not in self.prompt_runs()
                and not (self.fine_tuning and self.fine_tuning.owns_adapter(current_tenant.get(), model_id))):
            raise OpenAIHTTPException(
                status_code=status.HTTP_404_NOT_FOUND, type="NotFoundError",
                message=f"model {model_id!r} is not served; adapters: {', '.join(self.adapter_ids()) or 'none'}; "
                        f"prompt runs: {', '.join(self.prompt_runs()) or 'none'}")
        return model_id

    async def _get_response(self, *, body, call_method: str, raw_request: Request | None = None):
        """The engine's answers to `body`; for a prompt run, its base's answers to the prompted request."""
        check_roles(body)
        model = body.model or ""
        run = self.prompt_runs().get(model) if ":" in model else None
        if run is not None:
            body = prompted_request(body, model, run.base, run.variant)
        adapter = self.tuned_adapter(model)
        if adapter is not None:
            body = body.model_copy(update={"model": adapter})
        renamed = run is not None or adapter is not None
        async for response in super()._get_response(body=body, call_method=call_method, raw_request=raw_request):
            yield answered_as(response, model) if renamed else response

    async def model(self, model_id: str) -> ModelCard | None:
        if model_id in self._model_cards:
            return self._model_cards[model_id]
        base, _, run = model_id.partition(":")
        if model_id in self.adapter_ids():
            return self._derived_card(model_id, base, adapter_path=self.runs("adapter")[run].path)
        if model_id in self.prompt_runs():
            return self._derived_card(model_id, base, prompt_run=self.runs("prompt")[run].path)
        tuned = self.tuned_models()
        if model_id in tuned:
            return self._derived_card(model_id, tuned[model_id], fine_tuned=True)
        return None

    def _derived_card(self, model_id: str, base: str, **metadata) -> ModelCard:
        card = self._model_cards[base]
        return ModelCard(id=model_id, object="model", owned_by=card.owned_by, permission=list(card.permission),
                         metadata={**card.metadata, "model_id": model_id, "base_model_id": base, **metadata})

    async def models(self) -> ModelList:
        ids = [*self._model_cards, *self.adapter_ids(), *self.prompt_runs(), *self.tuned_models()]
        return ModelList(data=[await self.model(i) for i in ids])

    # ------------------------------------------------------------------ /v1/rewards
    async def rewards(self, body: RewardsRequest) -> JSONResponse:
        names = sorted(self.runs("reward"))
        if body.model is None and len(names) != 1:
            raise OpenAIHTTPException(status_code=status.HTTP_400_BAD_REQUEST, type="BadRequestError",
                                      message=f"name the reward model in 'model': one of {names}")
        model = body.model or names[0]
        if model not in names:
            raise OpenAIHTTPException(status_code=status.HTTP_404_NOT_FOUND, type="NotFoundError",
                                      message=f"no reward model {model!r}; reward models: {names or 'none'}")
        handle = self.rewards_handle.options(multiplexed_model_id=model)
        try:
            scores = await handle.score.remote(body.prompts, body.completions, body.metadata)
        except DataError as exc:  # e.g. a prompt too long for the reward model's max_length
            raise OpenAIHTTPException(status_code=status.HTTP_400_BAD_REQUEST, type="BadRequestError",
                                      message=f"reward model {model!r}: {exc}") from exc
        return JSONResponse({"model": model, "rewards": scores})

    # ------------------------------------------------------------------ /v1/judge
    async def _chat_text(self, model: str, messages: list[dict], grammar: str | None, request: Request) -> str:
        settings = self.settings.judge
        extra = {"structured_outputs": {"regex": grammar}} if grammar else {}
        body = ChatCompletionRequest(model=model, messages=messages, max_tokens=settings.max_tokens,
                                     temperature=settings.temperature, **extra)
        async for response in self._get_response(body=body, call_method="chat", raw_request=request):
            if isinstance(response, ErrorResponse):
                raise OpenAIHTTPException(status_code=response.error.code, type=response.error.type,
                                          message=f"judge model {model!r}: {response.error.message}")
            return response.choices[0].message.content or ""
        raise OpenAIHTTPException(status_code=status.HTTP_502_BAD_GATEWAY, type="JudgeError",
                                  message=f"judge model {model!r} returned nothing")

    async def judge(self, body: JudgeRequest, request: Request) -> JSONResponse:
        model = await self._get_model_id(body.model or self.settings.judge.model or next(iter(self._model_cards)))
        constrained = self.settings.judge.constrained

        def generate_with(grammar: str):
            async def generate(conversations):
                return await asyncio.gather(*(self._chat_text(model, c, grammar if constrained else None, request)
                                              for c in conversations))
            return generate

        if body.mode == "pointwise":
            result = await judge.judge_pointwise(generate_with(judge.POINTWISE_GRAMMAR), body.prompts,
                                                 body.completions)
            return JSONResponse({"model": model, "rewards": result.rewards, "verdicts": result.scores,
                                 "rationales": result.rationales})
        result = await judge.judge_pairwise(generate_with(judge.PAIRWISE_GRAMMAR), *body.pairs())
        answer = {"model": model, "verdicts": result.verdicts, "rationales": [list(r) for r in result.rationales],
                  "order_verdicts": [list(v) for v in result.order_verdicts]}
        if body.single:
            answer.update(verdict=result.verdicts[0], rationale=list(result.rationales[0]))
        return JSONResponse(answer)


def check_roles(body) -> None:
    """A 400 for a chat message without a role: vLLM's request schema lets one through, and its
    chat renderer then fails on it (a KeyError in the engine replica, a 500)."""
    for i, message in enumerate(getattr(body, "messages", None) or []):
        role = message.get("role") if isinstance(message, dict) else getattr(message, "role", None)
        if not isinstance(role, str) or not role:
            raise OpenAIHTTPException(status_code=status.HTTP_400_BAD_REQUEST, type="BadRequestError",
                                      message=f"messages[{i}]: each message needs a 'role'")


ENDPOINTS = {**DEFAULT_ENDPOINTS,
             "rewards": lambda app: app.post("/v1/rewards"),
             "judge": lambda app: app.post("/v1/judge")}


def ingress_class(settings: ServeSettings, tune_bases: dict[str, str] | None = None):
    """The ingress as a Serve deployment class, with the API-key middleware outermost;
    `tune_bases`: what fine-tuning jobs may start from (served name -> name or folder)."""
    app = init()
    add_error_handlers(app)
    if settings.finetune.enabled:
        add_finetune_routes(app, settings.finetune, tune_bases or {})
    guard(app, settings)
    return make_fastapi_ingress(RayalignIngress, endpoint_map=ENDPOINTS, app=app)


def guard(app: FastAPI, settings: ServeSettings) -> None:
    """The layers in front of the routes, outermost first: 5xx made generic, API keys, body limit;
    and the documented OpenAPI schema."""
    uploads = {}
    if settings.finetune.enabled:  # an upload of max_file_bytes, with room for the multipart framing
        uploads[("POST", "/v1/files")] = max(settings.max_body_bytes, settings.finetune.max_file_bytes + 2**20)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, limits=uploads)
    app.add_middleware(ApiKeyMiddleware, settings=settings.auth)
    app.add_middleware(InternalErrorShield)  # added last: outermost
    openapi.publish(app)
