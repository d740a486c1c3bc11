"""`rayalign eval`: score a model on eval sets with reward sources, on the RL engine's own workers.

    1. resolve the model: a built-in name, an HF folder, a run folder (its tuned model; a LoRA
       adapter is merged into its base once), or a prompting run (its base, asked its way)
    2. start rollout workers (vLLM or HF generate, data-parallel) and a reward worker on Ray
    3. for each data file: answer every prompt (greedy, or n samples at a temperature), score
       the answers with the reward sources, sum up with intervals (rayalign/evaluation)
    4. write each result to <run>/eval/<data>.json when there is a run folder, and return them
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import ray
import yaml

from rayalign.config import ConfigError, RewardSourceConfig, RolloutConfig
from rayalign.console import say
from rayalign.data.prompting import PromptVariant, read_prompt_run
from rayalign.data.prompts import load_prompts, with_variant
from rayalign.evaluation.evaluate import Sampling, brief, data_label, evaluate
from rayalign.models.chain import start_model
from rayalign.models.export import folder_payload, same_architecture
from rayalign.models.loading import load_tokenizer
from rayalign.models.registry import BUILTIN_MODELS
from rayalign.runs import write_atomic
from rayalign.workers.cluster import connect
from rayalign.workers.group import ActorGroup, reserve
from rayalign.workers.placement import REWARD, ROLLOUT
from rayalign.workers.reward import RewardWorker, score_on
from rayalign.workers.rollout import RolloutWorker, generate_split

RULE_CHECK = RewardSourceConfig(type="function", path="rayalign.rewards.quickstart:constraint_check")


@dataclass
class EvalRequest:
    model: str                                   # built-in name, HF folder, run folder, prompting run
    data: list[str]
    rewards: list[RewardSourceConfig] | None = None   # None: the run's own, else the rows' `check` rules
    prompt: str | None = None                    # a prompting run whose chosen prompt asks the questions
    sampling: Sampling = field(default_factory=Sampling)
    rollout: RolloutConfig = field(default_factory=lambda: RolloutConfig(cpus_per_worker=2, max_model_len=512))
    out_dir: str | None = None                   # where eval/ goes (default: the run folder, if any)
    address: str | None = None
    seed: int = 0
    timeout_s: float = 600.0


@dataclass
class Target:
    folder: str                       # what the engine loads
    label: str
    variant: PromptVariant | None     # how the questions are asked
    run_dir: Path | None              # where results are kept
    rewards: list[RewardSourceConfig]  # the run's own reward sources


def _run_rewards(run: Path) -> list[RewardSourceConfig]:
    config = yaml.safe_load((run / "config.yaml").read_text()) or {}
    return [RewardSourceConfig.model_validate(source) for source in config.get("rewards") or []]


def resolve_target(model: str, prompt: str | None) -> Target:
    """What `--model` (and `--prompt`) name: the folder to load, the prompt variant, the run folder."""
    path = Path(model).expanduser()
    prompted = read_prompt_run(path)
    if prompted is not None:
        variant, base = prompted
        return Target(start_model(base), path.name, variant, path, _run_rewards(path))
    run = path if (path / "config.yaml").is_file() else None
    label = model if model in BUILTIN_MODELS else path.resolve().name
    target = Target(start_model(model), label, None, run, _run_rewards(run) if run else [])
    if prompt is not None:
        asked = read_prompt_run(Path(prompt))
        if asked is None:
            raise ConfigError(f"--prompt {prompt}: not a prompting run folder (no prompt.json); run "
                              "`rayalign prompt --config <recipe>` first")
        target.variant, target.label = asked[0], f"{label}+{Path(prompt).name}"
        target.run_dir = target.run_dir or Path(prompt)
    return target


class EvalWorkers:
    """Rollout workers and a reward worker (none without reward sources: generation only) on one
    placement group; closing frees them."""

    def __init__(self, folder: str, rollout: RolloutConfig, rewards: list[RewardSourceConfig], seed: int,
                 timeout_s: float):
        n, cpus, gpus = rollout.num_workers, rollout.cpus_per_worker, rollout.gpus_per_worker
        self.folder, self.rollout_config, self.rewards = folder, rollout, rewards
        self.placement = reserve([{"CPU": cpus, **({"GPU": gpus} if gpus else {})}] * n, timeout_s, "evaluation")
        self.groups: list[ActorGroup] = []
        try:
            self.rollout = self._group(RolloutWorker, ROLLOUT, list(range(n)), cpus, gpus, timeout_s, lambda r: (r,))
            self.reward = self._group(RewardWorker, REWARD, [0], 0.0, 0.0, timeout_s,
                                      lambda r: (rewards,)) if rewards else None
            self.rollout.call("setup", rollout.engine, folder, rollout, seed, None)
            if self.reward is not None:
                self.reward.call("where")  # a reward source that cannot be built fails here
        except BaseException:
            self.close()
            raise

    def _group(self, actor_class, role, bundles, cpus, gpus, timeout_s, args) -> ActorGroup:
        group = ActorGroup(actor_class, role, len(bundles), cpus, gpus, timeout_s, args, placement=self.placement,
                           bundles=bundles)
        self.groups.append(group)
        return group

    def serves(self, folder: str, rollout: RolloutConfig, rewards: list[RewardSourceConfig]) -> bool:
        """Whether these workers can answer for `folder` as they are or after a weight load."""
        return rollout == self.rollout_config and rewards == self.rewards and same_architecture(folder, self.folder)

    def use_model(self, folder: str) -> None:
        """Load another model of the same architecture into the running engines: a weight reload
        (well under a second for 135M parameters), not a new engine (half a minute on CPU)."""
        if Path(folder).resolve() != Path(self.folder).resolve():
            shared = ray.put(folder_payload(folder))
            self.rollout.gather([actor.load_weights.remote(shared) for actor in self.rollout.actors],
                                f"load {folder}")
            self.folder = folder

    def generate(self, prompts: list[list[int]], n: int, greedy: bool) -> list[list]:
        return generate_split(self.rollout, prompts, n, greedy)

    def score(self, prompts: list, completions: list[str], metadata: list[dict]) -> tuple[list[float], dict]:
        return score_on(self.reward, prompts, completions, metadata)

    def close(self) -> None:
        from ray.util.placement_group import remove_placement_group

        for group in reversed(self.groups):
            if group.role == ROLLOUT:
                try:
                    group.call("shutdown")
                except Exception:  # noqa: BLE001 - a dead engine must not stop the cleanup
                    pass
            group.close()
        self.groups = []
        if self.placement is not None:
            remove_placement_group(self.placement)
            self.placement = None


def result_name(data: str, sampling: Sampling) -> str:
    """eval/<name>.json: the data's short name, and the sampling when it is not one greedy answer."""
    suffix = "" if sampling.greedy and sampling.samples == 1 else f"-n{sampling.samples}-t{sampling.temperature:g}"
    return data_label(data) + suffix


def eval_rollout(request: EvalRequest) -> RolloutConfig:
    """The rollout settings that draw the request's answers."""
    return request.rollout.model_copy(update={"max_new_tokens": request.sampling.max_new_tokens,
                                              "temperature": request.sampling.temperature or 1.0})


def run_eval(request: EvalRequest, workers: EvalWorkers | None = None) -> list[dict]:
    """Evaluate on fresh workers, or on `workers` (left running for the caller to reuse and close)
    when they can serve this model."""
    target = resolve_target(request.model, request.prompt)
    tokenizer = load_tokenizer(target.folder)
    rollout = eval_rollout(request)
    limit = rollout.max_model_len - rollout.max_new_tokens
    sets = {path: with_variant(load_prompts(path, tokenizer, limit), target.variant, tokenizer, limit)
            for path in request.data}
    rewards = request.rewards or target.rewards or default_rewards(sets)
    out_dir = Path(request.out_dir) if request.out_dir else target.run_dir
    say(f"[eval] {target.label}" + (f" asked with prompt variant {target.variant.name!r}" if target.variant else "")
        + f": {', '.join(f'{data_label(p)} ({len(s)} prompts)' for p, s in sets.items())}; rewards "
        + ", ".join(source.label for source in rewards))

    connect(request.address)
    results = []
    own = workers is None or not workers.serves(target.folder, rollout, rewards)
    if own:
        workers = EvalWorkers(target.folder, rollout, rewards, request.seed, request.timeout_s)
    try:
        workers.use_model(target.folder)
        for path, examples in sets.items():
            about = {"model": request.model, "label": target.label, "data": path, "data_label": data_label(path),
                     "prompt": request.prompt, "variant": target.variant.name if target.variant else None}
            result = evaluate(examples, workers.generate, workers.score, tokenizer, request.sampling, about)
            say(f"[eval] {target.label} on {data_label(path)}: {brief(result)}")
            if out_dir is not None:
                where = out_dir / "eval" / f"{result_name(path, request.sampling)}.json"
                write_atomic(where, json.dumps(result, indent=1) + "\n")
                result["written_to"] = str(where)
            results.append(result)
    finally:
        if own:
            workers.close()
    return results


def default_rewards(sets: dict[str, list]) -> list[RewardSourceConfig]:
    """Without --rewards and without a run's own: the rule checks that every row carries."""
    if all("check" in example.metadata for examples in sets.values() for example in examples):
        return [RULE_CHECK]
    raise ConfigError("no reward sources: pass --rewards <file.yaml> (a list of sources as under `rewards:` in a "
                      "recipe), or evaluate rows that carry a `check` rule")
