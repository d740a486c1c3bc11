"""Prompt runs served as models: a request for `<base>:<prompt-run>` becomes a request for the
base model with the run's prompt variant applied (rayalign.data.prompting, the same function
that scored it), and the answers name the prompt run again. The base model's engine serves it
as it is: no adapter, no LoRA.

    chat completions: messages -> variant.apply(messages) (system prompt, few-shot turns, template)
    completions:      the raw prompt inside the template, when the variant is a template only;
                      a system prompt and few-shot turns exist only in a chat: otherwise a 400
"""

from __future__ import annotations

import json

from fastapi import status
from ray.llm._internal.serve.core.configs.openai_api_models import (
    ChatCompletionRequest,
    CompletionRequest,
    OpenAIHTTPException,
)

from rayalign.data.prompting import PromptVariant


def _refused(model: str, why: str) -> OpenAIHTTPException:
    return OpenAIHTTPException(status_code=status.HTTP_400_BAD_REQUEST, type="BadRequestError",
                               message=f"model {model!r} is a prompt run: {why}")


def _text(content, model: str) -> str | None:
    """A message's content as text; a list of text parts is joined by newlines, as vLLM does."""
    if content is None or isinstance(content, str):
        return content
    parts = list(content)
    if not all(isinstance(p, dict) and p.get("type") == "text" for p in parts):
        raise _refused(model, "its template wraps text, so system and user messages must be text")
    return "\n".join(p["text"] for p in parts)


def prompted_request(body, model: str, base: str, variant: PromptVariant):
    """The request `body` for prompt run `model`, rewritten for its base model's engine."""
    if isinstance(body, ChatCompletionRequest):
        messages = [m if isinstance(m, dict) else m.model_dump() for m in body.messages]
        texts = [{**m, "content": _text(m.get("content"), model)} if m.get("role") in ("system", "user") else m
                 for m in messages]
        return body.model_copy(update={"model": base, "messages": variant.apply(texts)})
    if isinstance(body, CompletionRequest):
        if variant.system or variant.examples:
            raise _refused(model, "its system prompt and few-shot examples are chat turns, which a raw completion "
                                  "prompt has not; prompt runs serve chat completions (/v1/chat/completions)")
        prompt = body.prompt
        if isinstance(prompt, str):
            return body.model_copy(update={"model": base, "prompt": variant.wrap(prompt)})
        if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            return body.model_copy(update={"model": base, "prompt": [variant.wrap(p) for p in prompt]})
        raise _refused(model, "its template wraps text; send the prompt as text, not token ids")
    raise _refused(model, "it serves chat completions (and completions, for a template-only variant)")


def _renamed_events(text: str, model: str) -> str:
    events = []
    for event in text.split("\n\n"):
        if event.startswith("data: {"):
            data = json.loads(event.removeprefix("data: "))
            if "model" in data:
                event = "data: " + json.dumps({**data, "model": model}, separators=(",", ":"))
        events.append(event)
    return "\n\n".join(events)


def answered_as(response, model: str):
    """A response of the base model's engine, naming `model` instead: a whole answer, or streamed
    server-sent events ("data: {json}\\n\\n", one or a batch). Errors pass as they are."""
    if isinstance(response, list):
        return [answered_as(r, model) for r in response]
    if isinstance(response, str):
        return _renamed_events(response, model)
    if "model" in getattr(type(response), "model_fields", {}):
        return response.model_copy(update={"model": model})
    return response
