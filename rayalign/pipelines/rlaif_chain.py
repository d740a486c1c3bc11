"""`rayalign rlaif chain`: the whole RLAIF chain on the quickstart task, each step measured.

    1. label      SmolLM2 labels quickstart preference pairs whose rule labels it does not see,
                  in both orders, with soft labels (recipe rlaif_label): its agreement with the
                  rule labels with and without the swap, its position bias
    2. rm-single  reward models on the AI labels of one order alone (letters),
       rm-hard    of both orders (letters; disagreeing orders are ties),
       rm-soft    of both orders, soft (recipe rlaif_rm); each one's held-out accuracy on pairs
                  the rule labelled: what the order swap and the soft labels change
    3. rl         GRPO paid by rm-soft with a KL leash to the base model (recipe rlaif_grpo); the
                  rule check rides along at weight 0 to say whether answers got better
    4. summary    a table on the terminal, summary.json and a comparison report

Stages already finished are skipped; an interrupted one resumes (labels by chunk, training
from its checkpoint). Overrides apply to every stage (`key=value`) or one (`rm-soft:key=value`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rayalign.config import load_config
from rayalign.pipelines.quickstart import Stage, minutes, run_stage, stage_overrides

RM_VARIANTS = {"rm-single": ("preferences_single.jsonl", "one order, letters"),
               "rm-hard": ("preferences_hard.jsonl", "both orders, letters"),
               "rm-soft": ("preferences.jsonl", "both orders, soft labels")}
STAGES = (Stage("label", "rlaif_label", "AI labels"),
          *(Stage(name, "rlaif_rm", f"reward model on {title}") for name, (_, title) in RM_VARIANTS.items()),
          Stage("rl", "rlaif_grpo", "GRPO paid by the soft-label reward model"))


def chain_overrides(stage: Stage, root: Path) -> list[str]:
    """What ties a stage to the ones before it."""
    if stage.name in RM_VARIANTS:
        return [f"data.train={root / 'label' / RM_VARIANTS[stage.name][0]}"]
    if stage.name == "rl":
        return [f"rewards=[{{type: model, path: {root / 'rm-soft' / 'final'}}}, {{type: function, "
                "path: 'rayalign.rewards.quickstart:constraint_check', weight: 0.0}]"]
    return []


def run_chain(output_dir: str = "runs/rlaif", overrides: list[str] = ()) -> dict:
    began = time.perf_counter()
    root = Path(output_dir)
    for stage in STAGES:
        config = load_config(stage.recipe, [f"output_dir={root}", f"name={stage.name}",
                                            *stage_overrides(stage, overrides), *chain_overrides(stage, root)])
        run_stage(stage, config, "rlaif")

    reports = {stage.name: json.loads((root / stage.name / "report.json").read_text()) for stage in STAGES}
    summary = {"labeling": reports["label"]["labeling"],
               "reward_models": {name: {"labels": title, "pairs": reports["label"]["datasets"].get(file),
                                        "accuracy_before": reports[name]["eval_accuracy_before"],
                                        "accuracy_after": reports[name]["eval_accuracy_after"]}
                                 for name, (file, title) in RM_VARIANTS.items()},
               "rl": {"before": reports["rl"]["eval_before"], "after": reports["rl"]["eval_after"]},
               "seconds": round(time.perf_counter() - began, 1)}
    (root / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    summary["report"] = str(_report(root))
    return summary


def _report(root: Path) -> Path:
    from rayalign.reporting import write_comparison

    return write_comparison([root / s.name for s in STAGES if s.name != "label"], root / "report.html")


def chain_table(summary: dict) -> str:
    """What each step measured, as lines for the terminal."""
    def share(value):
        return "n/a" if value is None else f"{value:.3f}"

    label = summary["labeling"]
    lines = ["", f"[rlaif] 1. AI labels ({label['labelled']} pairs): first position wins "
             f"{share(label['first_position_wins'])} (0.5 = no bias), position consistency "
             f"{share(label['position_consistency'])}",
             "[rlaif]    agreement with the rule labels: one order " + share(label["agreement_single_order"]["agreement"])
             + ", both orders (letters) " + share(label["agreement_both_orders_hard"]["agreement"])
             + ", both orders (soft) " + share(label["agreement_both_orders_soft"]["agreement"]),
             "[rlaif] 2. reward models, held-out accuracy on rule-labelled pairs (before -> after training):"]
    for name, rm in summary["reward_models"].items():
        lines.append(f"[rlaif]    {name:<10} {rm['labels']:<26} {share(rm['accuracy_before'])} -> "
                     f"{share(rm['accuracy_after'])}  ({rm['pairs']} pairs)")
    before, after = summary["rl"]["before"], summary["rl"]["after"]
    lines.append("[rlaif] 3. GRPO on rm-soft, held-out (before -> after):")
    for key in ("eval/constraint_check", "eval/reward", "eval/response_length"):
        if key in after:
            lines.append(f"[rlaif]    {key.removeprefix('eval/'):<18} {before.get(key, float('nan')):.3f} -> "
                         f"{after[key]:.3f}")
    lines.append(f"[rlaif] took {minutes(summary['seconds'])}; report: {summary['report']}")
    return "\n".join(lines) + "\n"
