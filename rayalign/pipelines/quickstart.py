"""`rayalign quickstart`: the whole story on the embedded default, in one command.

    1. prompt  the prompting baseline: the base model asked five ways, the best chosen on dev
    2. sft     LoRA SFT of the base model on the shipped instructions
    3. grpo    GRPO from the SFT model with a KL leash to it, paid for obeying the rule and for
               answering what was asked
    4. eval    base, best prompt, SFT and SFT+GRPO on the same two held-out splits: new items,
               and new items asked in phrasings that training never used
    5. report  one table on the terminal, the comparison in <output_dir>/report.html

Every stage is skipped when its result is there, and an interrupted one resumes from its last
checkpoint: running the command again finishes the story.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from rayalign.config import RewardSourceConfig, RunConfig, load_config
from rayalign.console import say
from rayalign.evaluation.evaluate import Sampling, data_label
from rayalign.models.chain import start_model
from rayalign.pipelines.evaluate import RULE_CHECK, EvalRequest, EvalWorkers, eval_rollout, result_name, run_eval
from rayalign.workers.cluster import connect

EVAL_SETS = ("shipped:quickstart_eval.jsonl", "shipped:quickstart_eval_phrasing.jsonl")
# Success is the rule check (the total); on_topic is reported beside it (weight 0), to show
# whether answers still say what the reference answer says.
EVAL_REWARDS = [RULE_CHECK, RewardSourceConfig(type="function", path="rayalign.rewards.quickstart:on_topic",
                                               weight=0.0)]
BASE = "base"


@dataclass
class Stage:
    name: str       # also the run folder's name
    recipe: str
    title: str


STAGES = (Stage("prompt", "quickstart_prompt", "best prompt"), Stage("sft", "quickstart", "SFT (LoRA)"),
          Stage("grpo", "quickstart_grpo", "SFT + GRPO"))


def stage_overrides(stage: Stage, overrides: list[str]) -> list[str]:
    """The overrides for one stage: `key=value` apply to every stage, `<stage>:key=value` to that one."""
    return [o.split(":", 1)[1] if ":" in o.split("=", 1)[0] else o for o in overrides
            if ":" not in o.split("=", 1)[0] or o.startswith(f"{stage.name}:")]


def stage_config(stage: Stage, root: Path, overrides: list[str]) -> RunConfig:
    """A stage's recipe in <root>/<stage>, with its overrides. GRPO always starts from the SFT
    stage's run folder."""
    chain = [f"model.name_or_path={root / 'sft'}"] if stage.name == "grpo" else []
    return load_config(stage.recipe, [f"output_dir={root}", f"name={stage.name}", *stage_overrides(stage, overrides),
                                      *chain])


def finished(run: Path) -> bool:
    """Whether a run folder holds its result: a model, a prompt, or a labelled dataset."""
    results = ("final", "prompt.json", "labels.jsonl")
    return (run / "report.json").is_file() and any((run / result).exists() for result in results)


def model_time(run: Path) -> float:
    """When a run's model was last written (0 for the base model)."""
    marks = [run / "prompt.json", run / "final"]
    return max((m.stat().st_mtime for m in marks if m.exists()), default=0.0)


def run_stage(stage: Stage, config: RunConfig, story: str = "quickstart") -> None:
    from rayalign.pipelines.prompting import run_prompting
    from rayalign.pipelines.reward_model import run_reward_model
    from rayalign.pipelines.rlaif_label import run_label
    from rayalign.pipelines.rlhf import run_rlhf
    from rayalign.pipelines.sft import run_sft

    if finished(config.run_dir):
        say(f"[{story}] {stage.name}: done already ({config.run_dir}); skipped")
        return
    say(f"[{story}] {stage.name}: {stage.title} -> {config.run_dir}")
    started = time.perf_counter()
    pipelines = {"prompt": run_prompting, "sft": run_sft, "rlhf": run_rlhf, "rm": run_reward_model,
                 "rlaif_label": run_label}
    report = pipelines[config.method](config)
    say(f"[{story}] {stage.name}: done in {minutes(time.perf_counter() - started)}; {_outcome(report)}")


def _outcome(report: dict) -> str:
    """A stage's result in a few words."""
    if report.get("eval_loss_after") is not None:
        return f"held-out loss {report['eval_loss_before']:.4f} -> {report['eval_loss_after']:.4f}"
    if report.get("chosen"):
        return f"chosen prompt {report['chosen']!r}"
    if report.get("labeling"):
        return f"{report['labeling']['labelled']} pairs labelled"
    if report.get("eval_accuracy_after") is not None:
        return f"held-out pairwise accuracy {report['eval_accuracy_before']:.3f} -> {report['eval_accuracy_after']:.3f}"
    return f"model written to {report['final']}"


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def evaluate_all(root: Path, base: str, eval_sets: tuple[str, ...], sampling: Sampling, address: str | None,
                 ) -> dict[str, dict[str, dict]]:
    """{model label: {data file: result}} for the base model and every stage, each result kept in
    the model's run folder (the base model's in <root>/base); fresh results are reused. One set
    of workers answers for every model: each model's weights are loaded into the same engines."""
    models = {BASE: (base, root / BASE), **{s.name: (str(root / s.name), root / s.name) for s in STAGES}}
    template = EvalRequest(base, list(eval_sets), EVAL_REWARDS, sampling=sampling, address=address)
    results: dict[str, dict[str, dict]] = {}
    workers = None
    connect(address)
    try:
        for label, (model, folder) in models.items():
            wanted = {data: folder / "eval" / f"{result_name(data, sampling)}.json" for data in eval_sets}
            stale = [data for data, path in wanted.items()
                     if not path.is_file() or path.stat().st_mtime < model_time(folder)]
            if stale:
                workers = workers or EvalWorkers(start_model(base), eval_rollout(template), EVAL_REWARDS,
                                                 template.seed, template.timeout_s)
                run_eval(replace(template, model=model, data=stale, out_dir=str(folder)), workers)
            else:
                say(f"[quickstart] eval {label}: done already; skipped")
            results[label] = {data: json.loads(path.read_text()) for data, path in wanted.items()}
    finally:
        if workers is not None:
            workers.close()
    return results


def run_quickstart(output_dir: str = "runs/quickstart", overrides: list[str] = (),
                   eval_sets: tuple[str, ...] = EVAL_SETS, address: str | None = None) -> dict:
    began = time.perf_counter()
    root = Path(output_dir)
    configs = {stage.name: stage_config(stage, root, list(overrides)) for stage in STAGES}
    for stage in STAGES:
        run_stage(stage, configs[stage.name])

    base = configs["prompt"].model.name_or_path
    sampling = Sampling(1, 0.0, configs["grpo"].rollout.max_new_tokens)
    say("[quickstart] eval: the base model, the best prompt, SFT and SFT + GRPO on the same held-out prompts")
    started = time.perf_counter()
    results = evaluate_all(root, base, eval_sets, sampling, address)
    say(f"[quickstart] eval: done in {minutes(time.perf_counter() - started)}")

    report_path = write_story_report(root)
    summary = {"models": {label: {data: _figures(result) for data, result in by_data.items()}
                          for label, by_data in results.items()},
               "chosen_prompt": json.loads((root / "prompt" / "report.json").read_text())["chosen"],
               "report": str(report_path) if report_path else None,
               "seconds": round(time.perf_counter() - began, 1)}
    (root / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _figures(result: dict) -> dict:
    scores = result["scores"]
    return {"success": scores[RULE_CHECK.label], "on_topic": scores.get("on_topic"),
            "tokens": result["response_length"]["mean"], "prompts": result["prompts"]}


def write_story_report(root: Path) -> Path | None:
    from rayalign.reporting import write_comparison

    runs = [root / BASE, *(root / s.name for s in STAGES)]
    return write_comparison(runs, root / "report.html")


def summary_table(summary: dict) -> str:
    """Held-out success (95% interval), on-topic share and answer length of every model, per split."""
    splits = list(next(iter(summary["models"].values())))
    titles = {BASE: "base model", **{s.name: s.title for s in STAGES}}
    titles["prompt"] += f" ({summary['chosen_prompt']})"
    header = f"{'model':<28}" + "".join(f"{data_label(split):>42}" for split in splits)
    lines = ["", "[quickstart] held-out success (rule check, 95% interval) | on-topic | tokens per answer", header]
    for label, by_split in summary["models"].items():
        cells = []
        for split in splits:
            f = by_split[split]
            s, topic = f["success"], f["on_topic"]["mean"] if f["on_topic"] else float("nan")
            cells.append(f"{s['mean']:.3f} [{s['low']:.3f}, {s['high']:.3f}] | {topic:.2f} | {f['tokens']:5.1f}")
        lines.append(f"{titles.get(label, label):<28}" + "".join(f"{c:>42}" for c in cells))
    return "\n".join(lines) + "\n"
