"""The review web app: server-rendered pages, plain HTML forms, one item at a time.

    GET  /              the first item not reviewed yet (a returning reviewer continues there)
    GET  /items         every item with its status
    GET  /item/N        item N (1-based, in file order): texts, scores, verdicts, decision, actions
    POST /item/N        record a decision (accept, edit, reject), then go on to the next item
                        not reviewed yet (303 redirect); an invalid one shows the page again

Each decision is on disk before the redirect is sent (see `rayalign.review.items`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Form, HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from rayalign.review.items import InvalidDecision, Review


@lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(loader=PackageLoader("rayalign.review"), autoescape=select_autoescape(["html"]),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def make_app(items_path: str | Path, decisions_path: Path, reviewer: str) -> FastAPI:
    review = Review(items_path, decisions_path)
    app = FastAPI(title="rayalign review", docs_url=None, redoc_url=None, openapi_url=None)

    def page(template: str, status_code: int = 200, **context) -> HTMLResponse:
        html = environment().get_template(template).render(
            items_file=review.items_path.name, progress=review.progress(), reviewer=reviewer, **context)
        return HTMLResponse(html, status_code=status_code)

    def item_page(index: int, error: str | None = None) -> HTMLResponse:
        item = review.items[index]
        decision = review.decision(item)
        edited = decision if decision and decision["action"] == "edit" else None
        return page("item.html", status_code=422 if error else 200, item=item, number=index + 1,
                    count=len(review.items), status=review.status(item), decision=decision,
                    stale=review.stale_decision(item), error=error,
                    draft_instruction=(edited or item.record)["instruction"],
                    draft_texts={field: (edited or item.texts)[field] for field in item.answer_fields})

    def index_of(number: int) -> int:
        if not 1 <= number <= len(review.items):
            raise HTTPException(404, f"no item {number}; there are {len(review.items)}")
        return number - 1

    @app.get("/")
    def landing() -> RedirectResponse:
        index = review.next_undecided()
        return RedirectResponse("/items" if index is None else f"/item/{index + 1}", status_code=303)

    @app.get("/items", response_class=HTMLResponse)
    def items() -> HTMLResponse:
        rows = [(number, item, review.status(item)) for number, item in enumerate(review.items, start=1)]
        return page("items.html", rows=rows)

    @app.get("/item/{number}", response_class=HTMLResponse)
    def show(number: int) -> HTMLResponse:
        return item_page(index_of(number))

    @app.post("/item/{number}")
    def decide(number: int, action: Annotated[str, Form()], instruction: Annotated[str | None, Form()] = None,
               answer: Annotated[str, Form()] = "", chosen: Annotated[str, Form()] = "",
               rejected: Annotated[str, Form()] = "", note: Annotated[str, Form()] = ""):
        index = index_of(number)
        item = review.items[index]
        texts = {"answer": answer, "chosen": chosen, "rejected": rejected} if action == "edit" else None
        try:
            review.record(item, action, reviewer, instruction if action == "edit" else None, texts, note)
        except InvalidDecision as exc:
            return item_page(index, error=str(exc))
        following = review.next_undecided(after=index)
        return RedirectResponse("/items" if following is None else f"/item/{following + 1}", status_code=303)

    return app
