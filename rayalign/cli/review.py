"""`rayalign review serve` (a local web page to review synthetic items) and `rayalign review import`
(the decisions as a dataset with provenance): their arguments and handlers."""

from __future__ import annotations

import argparse
import getpass
import signal
from pathlib import Path

from rayalign.console import say


def add_parser(commands) -> None:
    review = commands.add_parser("review", help="review synthetic data by hand in a local web page, and import "
                                 "the decisions as a dataset").add_subparsers(dest="action", required=True,
                                                                             metavar="ACTION")
    serve = review.add_parser("serve", help="serve a review page for an items file (accept, edit, reject, "
                              "answer); each decision is saved the moment it is made")
    serve.add_argument("items", help="the items JSONL file (rayalign sdg generate / sdg label)")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    serve.add_argument("--reviewer", help="name recorded with each decision (default: the login name)")
    serve.add_argument("--decisions", help="the decisions JSONL file, appended to (default: "
                       "<items stem>.decisions.jsonl next to the items)")
    serve.set_defaults(handler=serve_review)

    importer = review.add_parser("import", help="write the accepted, edited and written items as an SFT or "
                                 "preference dataset, each row with its provenance")
    importer.add_argument("items", help="the items JSONL file that was reviewed")
    importer.add_argument("--decisions", help="the decisions file (default: <items stem>.decisions.jsonl)")
    importer.add_argument("--out", required=True, help="the dataset JSONL file to write")
    importer.add_argument("--format", choices=("sft", "preference", "auto"), default="auto",
                          help="the kind of rows to write (auto: the one kind the kept items share)")
    importer.set_defaults(handler=import_review)


def serve_review(args: argparse.Namespace) -> int:
    import uvicorn

    from rayalign.review.app import make_app
    from rayalign.review.items import decisions_path_for

    decisions = decisions_path_for(args.items, args.decisions)
    reviewer = args.reviewer or _login_name()
    app = make_app(args.items, decisions, reviewer)
    say(f"[review] decisions are appended to {decisions}")
    say(f"[review] open http://{args.host}:{args.port}/ to review as {reviewer}. Ctrl-C stops.")
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning"))
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again: end quietly on it.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    say("[review] stopped")
    return 0


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in the environment nor the password database
        return "unknown"


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def import_review(args: argparse.Namespace) -> int:
    from rayalign.review.items import Review, decisions_path_for
    from rayalign.review.provenance import card_path, describe_counts, import_decisions

    review = Review(args.items, decisions_path_for(args.items, args.decisions))
    counts = import_decisions(review, Path(args.out), args.format)
    say(f"[review] {describe_counts(counts)}")
    say(f"[review] written to {args.out} (card: {card_path(Path(args.out))})")
    return 0
