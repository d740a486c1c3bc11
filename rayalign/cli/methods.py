"""The handlers of the method commands: each loads its recipe, runs its pipeline, says the result."""

from __future__ import annotations

import sys

from rayalign import console
from rayalign.config import load_config
from rayalign.console import say

def _run_config(args, method: str):
    """The run's config; from here on library chatter goes to runs/<name>/rayalign.log."""
    config = load_config(args.config, args.overrides, method=method)
    console.capture(config.run_dir / "rayalign.log", verbose=args.verbose)
    return config


def sft(args) -> int:
    config = _run_config(args, "sft")
    from rayalign.pipelines.sft import run_sft

    report = run_sft(config)
    before, after = report["eval_loss_before"], report["eval_loss_after"]
    if before is not None:
        say(f"[sft] held-out loss: {before:.4f} -> {after:.4f} "
              f"(perplexity {report['eval_perplexity_before']:.2f} -> {report['eval_perplexity_after']:.2f})")
    say(f"[sft] tuned model written to {report['final']}")
    return 0


def _print_pair_figures(label: str, report: dict) -> None:
    """Held-out pairwise accuracy and mean margin, before -> after (reward models, DPO)."""
    if report["eval_accuracy_before"] is not None:
        say(f"{label}: {report['eval_accuracy_before']:.3f} -> {report['eval_accuracy_after']:.3f}; "
              f"mean margin {report['eval_margin_before']:.3f} -> {report['eval_margin_after']:.3f}")


def rm(args) -> int:
    config = _run_config(args, "rm")
    from rayalign.pipelines.reward_model import run_reward_model

    report = run_reward_model(config)
    _print_pair_figures("[rm] held-out pairwise accuracy", report)
    stats = report["reward_stats"]
    say(f"[rm] reward statistics on the training pairs: mean {stats['mean']:.4f}, std {stats['std']:.4f}")
    say(f"[rm] reward model written to {report['final']}")
    return 0


def rm_score(args) -> int:
    from rayalign.pipelines.score import score_file

    out = open(args.out, "w") if args.out else sys.stdout
    try:
        count = score_file(args.model, args.data, out, args.max_length, args.batch_size, not args.raw)
    finally:
        if args.out:
            out.close()
    print(f"[rm] scored {count} rows" + (f" into {args.out}" if args.out else ""), file=sys.stderr)
    return 0


def dpo(args) -> int:
    config = _run_config(args, "dpo")
    from rayalign.pipelines.dpo import run_dpo

    report = run_dpo(config)
    _print_pair_figures("[dpo] held-out preference accuracy of the implicit reward", report)
    say(f"[dpo] tuned model written to {report['final']}")
    return 0


def rlhf(args) -> int:
    config = _run_config(args, "rlhf")
    from rayalign.pipelines.rlhf import run_rlhf

    report = run_rlhf(config)
    before, after = report["eval_before"], report["eval_after"]
    for key in after:
        if not key.startswith("eval/task/"):
            say(f"[rlhf] held-out {key.removeprefix('eval/')}: {before.get(key, float('nan')):.3f} -> {after[key]:.3f}")
    say(f"[rlhf] tuned model written to {report['final']}")
    return 0


def prompt(args) -> int:
    config = _run_config(args, "prompt")
    from rayalign.pipelines.prompting import run_prompting

    report = run_prompting(config)
    say(f"[prompt] prompting run written to {report['final']}")
    return 0


def rlaif_label(args) -> int:
    config = _run_config(args, "rlaif_label")
    from rayalign.pipelines.rlaif_label import run_label

    report = run_label(config)
    say(f"[rlaif] preference dataset written to {report['final']} (card: {config.run_dir / 'card.md'})")
    return 0



def rlaif_revise(args) -> int:
    if args.constitution:
        args.overrides = [*args.overrides, f"rlaif.constitution={args.constitution}"]
    config = _run_config(args, "rlaif_revise")
    from rayalign.pipelines.rlaif_revise import run_revise

    report = run_revise(config)
    say(f"[revise] SFT data: {report['sft']}; preference pairs (revision over first answer): {report['pairs']}")
    return 0


def rlaif_chain(args) -> int:
    from pathlib import Path

    console.capture(Path(args.output_dir) / "rayalign.log", verbose=args.verbose)
    from rayalign.pipelines.rlaif_chain import chain_table, run_chain

    say(chain_table(run_chain(args.output_dir, args.overrides)))
    return 0
