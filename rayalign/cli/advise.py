"""`rayalign advise`: the four questions of the framework, answered by flags or at prompts, and the
method they lead to with its reasoning, the command to run and (`--write`) a runnable recipe.

On a terminal, each question the flags leave open on the path is asked, its reasoning shown
first; otherwise a missing answer is an error naming its flag. The decision itself lives in
rayalign/advisor/framework.py.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from rayalign.advisor.framework import QUESTION, QUESTIONS, Answer, Answers, Question, Recommendation, path, \
    next_question, recommend
from rayalign.advisor.plans import Target
from rayalign.advisor.thresholds import Thresholds
from rayalign import console
from rayalign.config import ConfigError, dump_config, load_config
from rayalign.console import say


def add_parser(commands) -> None:
    advise = commands.add_parser("advise", help="which method fits: the framework's four questions (flags or "
                                 "prompts), the reasoning, the command, a recipe to run",
                                 description="Walk the four questions of the framework and recommend prompting, "
                                 "SFT, synthetic data, RLAIF or RLHF, full or LoRA. Questions not answered by a "
                                 "flag are asked on a terminal.")
    for question in QUESTIONS:
        advise.add_argument(question.flag, dest=question.key, choices=question.choices, help=question.text)
    advise.add_argument("--model", help="the model to tune (a built-in name, HF folder or run folder)")
    advise.add_argument("--train", help="your training data: demonstrations (SFT), seed tasks (synthetic data), "
                        "prompts (RLAIF, RL), few-shot examples and dev prompts (prompting)")
    advise.add_argument("--eval", help="your held-out eval data")
    advise.add_argument("--teacher", help="the existing model that generates or verifies the data")
    advise.add_argument("--labels", help="human-labelled preference pairs (RLHF's reward model)")
    advise.add_argument("--write", metavar="RECIPE.yaml", help="write the first step's recipe here, validated")
    advise.add_argument("--run", action="store_true", help="then run the plan's steps, up to one that needs a "
                        "person (the review of synthetic data)")
    measured = advise.add_argument_group("measure", "answer the questions the flags leave open from measurements of "
                                         "your case (each a real run under --out); thresholds: "
                                         "rayalign/advisor/thresholds.py")
    measured.add_argument("--measure", action="store_true", help="measure instead of asking (needs --model, --eval)")
    measured.add_argument("--rewards", help="a YAML list of reward sources scoring the eval answers and judging the "
                          "synthetic batch (default: the eval rows' own `check` rules)")
    measured.add_argument("--verify", metavar="PKG.MODULE:FN", help="a check of a synthetic item (item -> True/False/"
                          "None) for the generate measurement")
    measured.add_argument("--samples", type=int, default=64, help="dev prompts, labelled pairs and synthetic "
                          "requests per measurement (default 64)")
    measured.add_argument("--out", default="runs/advise", help="where the measurement runs go (default runs/advise)")
    measured.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, a local cluster)")
    for flag, default in Thresholds.flags().items():
        measured.add_argument(flag, type=type(default), default=default, help=f"(default {default:g})")
    advise.set_defaults(handler=advise_handler)


def ask(question: Question) -> Answer:
    """One question on the terminal, its reasoning first; asked again until the answer is a choice."""
    say(f"\n{question.text}\n  {question.why}")
    for choice, outcome in question.outcomes.items():
        say(f"    {choice:<9} {outcome}")
    while True:
        try:
            typed = input(f"  [{'/'.join(question.choices)}] > ")
        except EOFError:
            raise ConfigError(f"{question.flag}: no answer (input ended)") from None
        value = question.parse(typed)
        if value is not None:
            return Answer(value, source="prompt")
        say(f"  answer one of: {', '.join(question.choices)}")


def complete(answers: Answers, interactive: bool) -> Answers:
    """Ask (or, off a terminal, demand) every question on the path the answers leave open."""
    while (question := next_question(answers)) is not None:
        if not interactive:
            raise ConfigError(f"{question.flag} is missing ({question.text}); stdin is not a terminal, so it "
                              f"cannot be asked: pass {question.flag} {'|'.join(question.choices)}")
        answers = answers.with_answer(question.key, ask(question))
    return answers


def render(recommendation: Recommendation, unused: list[str], config: str | None = None) -> str:
    lines = [f"Recommended: {recommendation.method}", ""]
    for number, step in enumerate(recommendation.steps, 1):
        lines.append(f"  {number}. {step.question.text}  {step.answer.value} ({step.answer.source})")
        lines.append(f"     -> {step.reasoning}")
        if step.answer.evidence:
            lines.append(f"     evidence: {step.answer.evidence}")
    if unused:
        lines.append("  Not on this path, so not used:")
        lines += [f"    {line}" for line in unused]
    lines += ["", "Run:", f"  {recommendation.plan[0].command(config)}"]
    if recommendation.next_commands:
        lines += ["Then:", *(f"  {command}" for command in recommendation.next_commands)]
    if recommendation.notes:
        lines += ["Notes:", *(f"  - {note}" for note in recommendation.notes)]
    return "\n".join(lines)


def measured(args: argparse.Namespace, answers: Answers) -> Answers:
    from rayalign.advisor.measure import Case, measure, require_inputs
    from rayalign.cli.tools import reward_sources

    if not args.model or not args.eval:
        raise ConfigError("--measure needs --model (the model to tune) and --eval (held-out prompts of your task)")
    rewards = tuple(reward_sources(args.rewards)) if args.rewards else ()
    case = Case(args.model, args.eval, args.train, args.labels, rewards, args.teacher, args.verify, args.samples,
                args.out, args.address)
    require_inputs(case)
    console.capture(Path(args.out) / "rayalign.log", verbose=args.verbose)   # the runs' chatter
    limits = Thresholds(**{key: getattr(args, key) for key in Thresholds.__dataclass_fields__})
    answers, figures = measure(case, answers, limits)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "evidence.json").write_text(json.dumps({
        "answers": {key: None if answers.value(key) is None else asdict(getattr(answers, key)) for key in QUESTION},
        "figures": figures, "thresholds": asdict(limits)}, indent=1) + "\n")
    return answers


def run_plan(recommendation: Recommendation, config: str | None) -> int:
    """Each step with a recipe, in order, as its own command would; stops before one a person must do."""
    from rayalign.cli import build_parser

    for number, step in enumerate(recommendation.plan):
        if step.recipe is None:
            say(f"\n[advise] next is for a person: {step.command()}; the steps after it are printed above")
            return 0
        command = step.command(config if number == 0 else None)
        say(f"\n[advise] running: {command}")
        args = build_parser().parse_args(shlex.split(command)[1:])
        console.release()          # each step logs into its own run folder
        code = args.handler(args)
        if code:
            return code
    return 0


def advise_handler(args: argparse.Namespace) -> int:
    answers = Answers(**{question.key: Answer(getattr(args, question.key)) for question in QUESTIONS
                         if getattr(args, question.key) is not None})
    if args.measure:
        answers = measured(args, answers)
    answers = complete(answers, interactive=sys.stdin.isatty())
    recommendation = recommend(answers, Target(args.model, args.train, args.eval, args.teacher, args.labels))
    walked = {question.key for question in path(answers)}
    unused = [f"{QUESTION[key].flag} {answers.value(key)} ({getattr(answers, key).source})"
              + (f": {getattr(answers, key).evidence}" if getattr(answers, key).evidence else "")
              for key in QUESTION if key not in walked and answers.value(key) is not None]
    if args.write:
        config = load_config(recommendation.recipe, recommendation.overrides)
        header = f"# rayalign advise: {recommendation.method}\n# run: {recommendation.plan[0].command(args.write)}\n"
        Path(args.write).write_text(header + dump_config(config))
    say(render(recommendation, unused, args.write))
    if args.write:
        say(f"\nWrote {args.write} (from the shipped {recommendation.recipe} recipe, validated)")
    return run_plan(recommendation, args.write) if args.run else 0
