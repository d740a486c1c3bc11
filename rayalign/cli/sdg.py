"""`rayalign sdg`: synthetic data generation (self-instruct with filters) and model-assisted labelling."""

from __future__ import annotations

import argparse

from rayalign.console import say


def add_parser(commands, add_run_arguments, verbose_help: str) -> None:
    sdg = commands.add_parser("sdg", help="synthetic data: self-instruct with filters, model-assisted labelling"
                              ).add_subparsers(dest="action", required=True, metavar="ACTION")
    generate = sdg.add_parser("generate", help="a teacher writes tasks from seed tasks and answers them; filters "
                              "keep the new, good ones; a card with the yield table")
    add_run_arguments(generate)
    generate.set_defaults(handler=generate_handler)
    label = sdg.add_parser("label", help="the teacher drafts answers (or preferences) for your own data, "
                           "with confidences, for review")
    label.add_argument("--data", required=True, help="your unlabelled prompts or answer pairs (JSONL, Parquet)")
    label.add_argument("--config", "-c", default="sdg_label", help="a recipe (default: the shipped sdg_label)")
    label.add_argument("overrides", nargs="*", metavar="key.path=value")
    label.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help=verbose_help)
    label.set_defaults(handler=label_handler)


def generate_handler(args) -> int:
    from rayalign.cli.methods import _run_config

    config = _run_config(args, "sdg_generate")
    from rayalign.pipelines.sdg_generate import run_generate

    report = run_generate(config)
    dataset = report["dataset"]
    say(f"[sdg] kept {dataset['kept']} of {dataset['candidates']} candidates; training set {report['final']}; "
        f"card {config.run_dir / 'card.md'}; review: rayalign review serve {config.run_dir / 'items.jsonl'}")
    return 0


def label_handler(args) -> int:
    from rayalign.cli.methods import _run_config

    args.overrides = [f"data.train={args.data}", *args.overrides]
    config = _run_config(args, "sdg_label")
    from rayalign.pipelines.sdg_label import run_sdg_label

    report = run_sdg_label(config)
    figures = report["labelling"]
    say(f"[sdg] {figures['items']} suggestions, mean confidence {figures['mean_confidence']}: {report['final']}; "
        f"review: rayalign review serve {report['final']}")
    return 0
