"""From a method to the commands that carry it out, built on the shipped recipes.

Each method is a chain of steps; the first comes from a shipped recipe with the user's model and
data as dotted overrides (`rayalign advise --write` validates it and writes it out), the others
are printed as commands. How the compute answer combines with each path (high: full
fine-tuning, low: LoRA) applies to the steps that train:

    prompting   quickstart_prompt                     (no training: compute is not asked)
    SFT         sft_full (high) | quickstart (LoRA)
    synthetic   sdg_quickstart (the teacher writes and answers new tasks; trains nothing)
                -> review serve / review import -> SFT as above on the reviewed data
    RLAIF       rlaif_label (the AI labels pairs of the policy's answers; trains nothing)
                -> rlaif_rm -> rlaif_grpo, both with LoRA (low) or every weight (high)
    RLHF        reward_model on the human-labelled pairs -> rlhf_grpo, LoRA (low) or every weight (high)

Full training of a reward model or RL policy drops the recipe's LoRA (`model.lora=null`) and
takes a full fine-tuning learning rate (FULL_LR, as sft_full's order of magnitude; the recipes'
LoRA rates would wreck every weight); full RL with a KL term also holds a reference model, which
is what the compute is for. Chains write into runs/<family>/<step> so each step finds the last.

What `Target.train` is depends on the method: few-shot examples and dev prompts (prompting),
demonstrations (SFT), seed tasks (synthetic data), prompts (RLAIF: the policy answers them, the
AI labels pairs of answers; and the RL prompts of RLAIF and RLHF). `Target.labels` holds the
human-labelled preference pairs of RLHF; `Target.teacher` the model that generates or verifies.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

FULL_LR = "train.lr=1.0e-5"


@dataclass(frozen=True)
class Target:
    """The user's own case: unset fields keep the recipe's (shipped quickstart) values."""
    model: str | None = None
    train: str | None = None
    eval: str | None = None
    teacher: str | None = None
    labels: str | None = None


@dataclass(frozen=True)
class PlanStep:
    subcommand: str               # e.g. "sft", "rlaif label", "review serve"
    recipe: str | None = None     # a shipped recipe name, for steps that run one
    overrides: list[str] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)   # for steps without a recipe

    def command(self, config: str | None = None) -> str:
        """The command line; `config` (a written recipe file) replaces the recipe and its overrides."""
        if config is not None:
            words = ["--config", config]
        else:
            words = [] if self.recipe is None else ["--config", self.recipe, *self.overrides]
        return " ".join([f"rayalign {self.subcommand}", *map(shlex.quote, words + self.arguments)])


def _set(**values: str | None) -> list[str]:
    """Overrides for the values given, in order; `data_train` stands for data.train and so on."""
    return [f"{key.replace('_', '.', 1)}={value}" for key, value in values.items() if value is not None]


def _training(compute: str) -> list[str]:
    return ["model.lora=null", FULL_LR] if compute == "high" else []


def _prompting(target: Target, compute: str | None) -> tuple[list[PlanStep], list[str]]:
    notes = ["the recipe's rewards check the quickstart task's rules: point `rewards:` at checks of your own "
             "task"] if target.train or target.eval else []
    return [PlanStep("prompt", "quickstart_prompt", _set(model_name_or_path=target.model, data_train=target.train,
                                                         data_eval=target.eval))], notes


def _sft(target: Target, compute: str | None) -> tuple[list[PlanStep], list[str]]:
    return [PlanStep("sft", _sft_recipe(compute), _set(model_name_or_path=target.model, data_train=target.train,
                                                       data_eval=target.eval))], []


def _sft_recipe(compute: str | None) -> str:
    return "sft_full" if compute == "high" else "quickstart"


def _synthetic(target: Target, compute: str | None) -> tuple[list[PlanStep], list[str]]:
    root, notes = "runs/synthetic", []
    if target.teacher is None:
        notes.append("no --teacher: the recipe's teacher stands in; set teacher.model (or teacher.url) to the "
                     "model that can write the data")
    own_seeds = ["sdg.filters.verify=null", "sdg.filters.verify_required=false"] if target.train else []
    if own_seeds:
        notes.append("the quickstart verifier is off for your seeds: set sdg.filters.verify to a check of your "
                     "task to keep only right answers")
    items, reviewed = f"{root}/sdg/items.jsonl", f"{root}/reviewed.jsonl"
    return [PlanStep("sdg generate", "sdg_quickstart", [f"output_dir={root}", "name=sdg", *own_seeds,
                                                        *_set(data_train=target.train, teacher_model=target.teacher)]),
            PlanStep("review serve", arguments=[items]),
            PlanStep("review import", arguments=[items, "--out", reviewed]),
            PlanStep("sft", _sft_recipe(compute), [f"output_dir={root}", "name=sft", f"data.train={reviewed}",
                                                   *_set(model_name_or_path=target.model, data_eval=target.eval)])
            ], notes


def _rl(recipe: str, root: str, target: Target, compute: str | None) -> PlanStep:
    """RL on the prompts, paid by the reward model of the step before."""
    reward = f"rewards=[{{type: model, path: {root}/rm/final}}]"
    return PlanStep("rlhf", recipe, [f"output_dir={root}", "name=rl", reward,
                                     *_set(model_name_or_path=target.model, data_train=target.train,
                                           data_eval=target.eval), *_training(compute)])


def _held_out(own_data: bool) -> list[str]:
    """The reward model recipes hold out quickstart pairs: no measure of a reward model for another task."""
    return ["data.eval=null"] if own_data else []


def _rlaif(target: Target, compute: str | None) -> tuple[list[PlanStep], list[str]]:
    root = "runs/rlaif"
    notes = ["no --teacher: the recipe's labeler stands in; set labeler.model (or labeler.url) to the model that "
             "can judge"] if target.teacher is None else []
    return [PlanStep("rlaif label", "rlaif_label", [f"output_dir={root}", "name=label",
                                                    *_set(model_name_or_path=target.model, data_train=target.train,
                                                          labeler_model=target.teacher)]),
            PlanStep("rm", "rlaif_rm", [f"output_dir={root}", "name=rm", f"data.train={root}/label/preferences.jsonl",
                                        *_set(model_name_or_path=target.model), *_held_out(target.train is not None),
                                        *_training(compute)]),
            _rl("rlaif_grpo", root, target, compute)], notes


def _rlhf(target: Target, compute: str | None) -> tuple[list[PlanStep], list[str]]:
    root = "runs/rlhf"
    notes = ["no --labels: the shipped quickstart pairs stand in; label pairs of your task by hand (prompt, "
             "chosen, rejected) and pass them as --labels"] if target.labels is None else []
    return [PlanStep("rm", "reward_model", [f"output_dir={root}", "name=rm",
                                            *_set(model_name_or_path=target.model, data_train=target.labels),
                                            *_held_out(target.labels is not None), *_training(compute)]),
            _rl("rlhf_grpo", root, target, compute)], notes


FAMILIES = {"prompting": _prompting, "sft": _sft, "synthetic": _synthetic, "rlaif": _rlaif, "rlhf": _rlhf}


def plan(family: str, compute: str | None, target: Target) -> tuple[list[PlanStep], list[str]]:
    """The steps of a method family (prompting, sft, synthetic, rlaif, rlhf) and notes for the user."""
    return FAMILIES[family](target, compute)
