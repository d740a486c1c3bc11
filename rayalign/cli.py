"""The `rayalign` command line: one subcommand per method, plus config and model tools."""

from __future__ import annotations

import argparse
import sys

from rayalign import console
from rayalign.config import ConfigError, dump_config, load_config
from rayalign.console import say


VERBOSE_HELP = "show library output (warnings, worker logs) on the terminal instead of runs/<name>/rayalign.log"


def _add_run_arguments(parser: argparse.ArgumentParser, default_recipe: str | None = None) -> None:
    parser.add_argument("--config", "-c", required=default_recipe is None, default=default_recipe,
                        help="a recipe YAML file, or the name of a shipped recipe")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value",
                        help="dotted overrides applied over the recipe, e.g. train.lr=1e-4")
    parser.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)


def _run_config(args, method: str):
    """The run's config; from here on library chatter goes to runs/<name>/rayalign.log."""
    config = load_config(args.config, args.overrides, method=method)
    console.capture(config.run_dir / "rayalign.log", verbose=args.verbose)
    return config


def _sft(args) -> int:
    config = _run_config(args, "sft")
    from rayalign.pipelines.sft import run_sft

    report = run_sft(config)
    before, after = report["eval_loss_before"], report["eval_loss_after"]
    if before is not None:
        say(f"[sft] held-out loss: {before:.4f} -> {after:.4f} "
              f"(perplexity {report['eval_perplexity_before']:.2f} -> {report['eval_perplexity_after']:.2f})")
    say(f"[sft] tuned model written to {report['final']}")
    return 0


def _quickstart(args) -> int:
    from pathlib import Path

    console.capture(Path(args.output_dir) / "rayalign.log", verbose=args.verbose)
    from rayalign.pipelines.quickstart import run_quickstart, summary_table

    summary = run_quickstart(args.output_dir, args.overrides, address=args.address)
    say(summary_table(summary))
    say(f"[quickstart] this run took {summary['seconds'] / 60:.1f} min (stages already done are skipped)")
    if summary["report"]:
        say(f"[quickstart] comparison report: {summary['report']}")
    say(f"[quickstart] serve the results: rayalign serve --runs {args.output_dir}  (models "
        f"smollm2-135m-instruct:prompt, smollm2-135m-instruct:sft, sft:grpo)")
    return 0


def _print_pair_figures(label: str, report: dict) -> None:
    """Held-out pairwise accuracy and mean margin, before -> after (reward models, DPO)."""
    if report["eval_accuracy_before"] is not None:
        say(f"{label}: {report['eval_accuracy_before']:.3f} -> {report['eval_accuracy_after']:.3f}; "
              f"mean margin {report['eval_margin_before']:.3f} -> {report['eval_margin_after']:.3f}")


def _rm(args) -> int:
    config = _run_config(args, "rm")
    from rayalign.pipelines.reward_model import run_reward_model

    report = run_reward_model(config)
    _print_pair_figures("[rm] held-out pairwise accuracy", report)
    stats = report["reward_stats"]
    say(f"[rm] reward statistics on the training pairs: mean {stats['mean']:.4f}, std {stats['std']:.4f}")
    say(f"[rm] reward model written to {report['final']}")
    return 0


def _rm_score(args) -> int:
    from rayalign.pipelines.score import score_file

    out = open(args.out, "w") if args.out else sys.stdout
    try:
        count = score_file(args.model, args.data, out, args.max_length, args.batch_size, not args.raw)
    finally:
        if args.out:
            out.close()
    print(f"[rm] scored {count} rows" + (f" into {args.out}" if args.out else ""), file=sys.stderr)
    return 0


def _dpo(args) -> int:
    config = _run_config(args, "dpo")
    from rayalign.pipelines.dpo import run_dpo

    report = run_dpo(config)
    _print_pair_figures("[dpo] held-out preference accuracy of the implicit reward", report)
    say(f"[dpo] tuned model written to {report['final']}")
    return 0


def _rlhf(args) -> int:
    config = _run_config(args, "rlhf")
    from rayalign.pipelines.rlhf import run_rlhf

    report = run_rlhf(config)
    before, after = report["eval_before"], report["eval_after"]
    for key in after:
        if not key.startswith("eval/task/"):
            say(f"[rlhf] held-out {key.removeprefix('eval/')}: {before.get(key, float('nan')):.3f} -> {after[key]:.3f}")
    say(f"[rlhf] tuned model written to {report['final']}")
    return 0


def _eval(args) -> int:
    import json

    from rayalign.config import RewardSourceConfig, RolloutConfig
    from rayalign.evaluation.evaluate import Sampling
    from rayalign.pipelines.evaluate import EvalRequest, run_eval

    rewards = None
    if args.rewards:
        rewards = [RewardSourceConfig.model_validate(source) for source in _reward_list(args.rewards)]
    rollout = RolloutConfig(engine=args.engine, num_workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                            max_model_len=args.max_model_len)
    request = EvalRequest(args.model, args.data, rewards, args.prompt,
                          Sampling(args.samples, args.temperature, args.max_new_tokens), rollout, args.out_dir,
                          args.address, args.seed)
    console.capture(_eval_log(args), verbose=args.verbose)
    results = run_eval(request)
    for result in results:
        for task, scores in result["by_task"].items():
            total = scores["total"]
            say(f"[eval]   {result['data_label']} {task:>14}: {total['mean']:.3f} "
                f"[{total['low']:.3f}, {total['high']:.3f}] (n={total['n']})")
        if "written_to" in result:
            say(f"[eval] written to {result['written_to']}")
    if args.out:
        with open(args.out, "w") as out:
            json.dump(results if len(results) > 1 else results[0], out, indent=1)
        say(f"[eval] written to {args.out}")
    elif not any("written_to" in result for result in results):
        say(json.dumps(results if len(results) > 1 else results[0], indent=1))
    return 0


def _eval_log(args):
    """The run folder's log when there is one (the model's, or --out-dir), else one in the temp folder."""
    import tempfile
    from pathlib import Path

    folder = args.out_dir or next((p for p in (args.model, args.prompt) if p and (Path(p) / "config.yaml").is_file()),
                                  None)
    return Path(folder) / "rayalign.log" if folder else Path(tempfile.gettempdir()) / "rayalign-eval.log"


def _reward_list(path: str) -> list[dict]:
    """A YAML file holding a list of reward sources (or a mapping with `rewards:`)."""
    import yaml

    from rayalign.config import ConfigError

    try:
        loaded = yaml.safe_load(open(path))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--rewards {path}: {exc}") from None
    sources = loaded.get("rewards") if isinstance(loaded, dict) else loaded
    if not isinstance(sources, list) or not all(isinstance(s, dict) for s in sources):
        raise ConfigError(f"--rewards {path}: expected a list of reward sources (type, path/url, weight, ...)")
    return sources


def _prompt(args) -> int:
    config = _run_config(args, "prompt")
    from rayalign.pipelines.prompting import run_prompting

    report = run_prompting(config)
    say(f"[prompt] prompting run written to {report['final']}")
    return 0


def _rlaif_label(args) -> int:
    config = _run_config(args, "rlaif_label")
    from rayalign.pipelines.rlaif_label import run_label

    report = run_label(config)
    say(f"[rlaif] preference dataset written to {report['final']} (card: {config.run_dir / 'card.md'})")
    return 0


def _report(args) -> int:
    from rayalign.reporting import default_comparison_path, write_comparison, write_run_report

    if len(args.runs) == 1:
        print(write_run_report(args.runs[0], args.out))
    else:
        print(write_comparison(args.runs, args.out or default_comparison_path(args.runs)))
    return 0


def _serve(args) -> int:
    import time

    from rayalign.serving import lifecycle
    from rayalign.serving.settings import read_serve_config
    from rayalign.workers.cluster import connect

    app_args, http = read_serve_config(args.config, args.runs)
    host, port = args.host or http.get("host", "127.0.0.1"), args.port or http.get("port", 8000)
    connect(args.address)
    say("[serve] starting on Ray (vLLM engines load in about a minute on CPU)")
    status = 0
    try:
        url = lifecycle.start(app_args, host=host, port=port)
        say(f"[serve] ready: {url}/v1 (OpenAI-compatible; /v1/rewards, /v1/judge; health {url}/-/healthz). "
            "Ctrl-C stops.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:  # a deployment failed to start: Serve's message names it
        print(f"rayalign: serving failed: {exc}", file=sys.stderr)
        status = 1
    finally:
        removed = lifecycle.stop()
        say(f"[serve] stopped; removed {len(removed)} leftover engine shared-memory segments")
    return status


def _config_show(args) -> int:
    print(dump_config(load_config(args.recipe, args.overrides)), end="")
    return 0


def _model_merge(args) -> int:
    from rayalign.models.export import merge_adapter

    print(merge_adapter(args.adapter, args.out))
    return 0


def _model_fetch(args) -> int:
    from rayalign.models.registry import resolve_model

    print(resolve_model(args.name))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rayalign", description=__doc__.split("\n")[0])
    parser.add_argument("--verbose", "-v", action="store_true", help=VERBOSE_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    quickstart = commands.add_parser("quickstart", help="the whole story on the shipped model and data: prompting "
                                     "baseline, SFT, GRPO from SFT, one eval of all, a comparison report")
    quickstart.add_argument("--output-dir", default="runs/quickstart", help="where the stages' run folders go")
    quickstart.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, a local cluster)")
    quickstart.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    quickstart.add_argument("overrides", nargs="*", metavar="[stage:]key.path=value",
                            help="overrides for every stage, or one (prompt:, sft:, grpo:), e.g. sft:train.max_steps=30")
    quickstart.set_defaults(handler=_quickstart)

    sft = commands.add_parser("sft", help="supervised fine-tuning: full, partial (frozen modules/layers) or LoRA")
    _add_run_arguments(sft)
    sft.set_defaults(handler=_sft)

    rm = commands.add_parser("rm", help="train a reward model on preference pairs (Bradley-Terry)",
                             epilog="Score a file with a trained model: rayalign rm score --model M --data F")
    _add_run_arguments(rm)
    rm.set_defaults(handler=_rm)

    rm_score = commands.add_parser("rm-score", description="Score rows with a trained reward model: "
                                   "prompt+completion, messages (last assistant turn) or chosen/rejected.")
    rm_score.prog = "rayalign rm score"
    rm_score.add_argument("--model", required=True, help="a reward model folder (run's final/)")
    rm_score.add_argument("--data", required=True, help="JSONL, Parquet or a datasets folder")
    rm_score.add_argument("--out", help="output JSONL (default: stdout)")
    rm_score.add_argument("--max-length", type=int, default=1024)
    rm_score.add_argument("--batch-size", type=int, default=8)
    rm_score.add_argument("--raw", action="store_true", help="raw scores, not normalised by the saved mean/std")
    rm_score.set_defaults(handler=_rm_score)

    dpo = commands.add_parser("dpo", help="direct preference optimisation (DPO, conservative DPO, IPO)")
    _add_run_arguments(dpo)
    dpo.set_defaults(handler=_dpo)

    rlhf = commands.add_parser("rlhf", help="on-policy RL: PPO, GRPO, RLOO, REINFORCE++ with reward models, "
                               "functions or remote scorers")
    _add_run_arguments(rlhf)
    rlhf.set_defaults(handler=_rlhf)

    evaluate = commands.add_parser("eval", help="score a model (built-in, folder, run, prompting run) on eval "
                                   "sets with reward sources, through the rollout workers")
    evaluate.add_argument("--model", required=True, help="a built-in name, an HF folder, a run folder or a "
                          "prompting run folder")
    evaluate.add_argument("--data", required=True, nargs="+", help="one or more eval files (shipped:NAME too)")
    evaluate.add_argument("--rewards", help="a YAML list of reward sources (default: the run's own, else the "
                          "rule checks the rows carry)")
    evaluate.add_argument("--prompt", help="a prompting run folder: ask the questions its way")
    evaluate.add_argument("--samples", type=int, default=1, help="answers per prompt (pass@k, mean over n)")
    evaluate.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default)")
    evaluate.add_argument("--max-new-tokens", type=int, default=64)
    evaluate.add_argument("--max-model-len", type=int, default=512)
    evaluate.add_argument("--engine", choices=("vllm", "hf"), default="vllm")
    evaluate.add_argument("--workers", type=int, default=1, help="rollout workers (data-parallel)")
    evaluate.add_argument("--cpus-per-worker", type=float, default=2)
    evaluate.add_argument("--out", help="also write the result(s) as JSON here")
    evaluate.add_argument("--out-dir", help="keep results in OUT_DIR/eval/ (default: the run folder, if any)")
    evaluate.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, a local cluster)")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    evaluate.set_defaults(handler=_eval)

    prompt = commands.add_parser("prompt", help="prompting as a method: score prompt variants on a dev split, "
                                 "report the best on held-out prompts")
    _add_run_arguments(prompt)
    prompt.set_defaults(handler=_prompt)

    rlaif = commands.add_parser("rlaif", help="AI feedback: label preference pairs, critique and revise"
                                ).add_subparsers(dest="action", required=True, metavar="ACTION")
    label = rlaif.add_parser("label", help="a preference dataset labelled by an AI labeler, both orders, soft labels")
    _add_run_arguments(label)
    label.set_defaults(handler=_rlaif_label)

    report = commands.add_parser("report", help="write a run's report.html, or a comparison of several runs")
    report.add_argument("runs", nargs="+", metavar="RUN", help="run folders (runs/<name>)")
    report.add_argument("--out", help="the HTML file to write (default: RUN/report.html for one run; "
                        "report.html in the runs' common parent folder for several)")
    report.set_defaults(handler=_report)

    serve = commands.add_parser("serve", help="serve tuned models, reward models and the judge "
                                "(OpenAI-compatible, Ray Serve)")
    serve.add_argument("--config", "-c", default="serve/config.yaml",
                       help="a Ray Serve config file with a `rayalign` application (default: serve/config.yaml)")
    serve.add_argument("--runs", help="the folder of run folders to serve from (replaces args.runs_dir)")
    serve.add_argument("--host", help="address to listen on (default: the file's http_options, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: the file's http_options, else 8000)")
    serve.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, a local `ray start` "
                       "cluster, else a new local one); `local` always starts a new one")
    serve.set_defaults(handler=_serve)

    config = commands.add_parser("config", help="inspect recipes").add_subparsers(dest="action", required=True)
    show = config.add_parser("show", help="print a recipe with defaults and overrides applied")
    show.add_argument("recipe")
    show.add_argument("overrides", nargs="*", metavar="key.path=value")
    show.set_defaults(handler=_config_show)

    model = commands.add_parser("model", help="model utilities").add_subparsers(dest="action", required=True)
    merge = model.add_parser("merge", help="fold a LoRA adapter into its base and save a full model")
    merge.add_argument("adapter")
    merge.add_argument("out")
    merge.set_defaults(handler=_model_merge)
    fetch = model.add_parser("fetch", help="materialise a built-in model into the cache and print its folder")
    fetch.add_argument("name")
    fetch.set_defaults(handler=_model_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    from rayalign.data.readers import DataError
    from rayalign.workers.cluster import ray_session
    from rayalign.workers.group import WorkerError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["rm", "score"]:
        argv = ["rm-score", *argv[2:]]
    args = build_parser().parse_args(argv)
    try:
        with ray_session():  # ended before the terminal is given back: its last worker lines go to the log
            return args.handler(args)
    except (ConfigError, DataError, FileNotFoundError) as exc:
        return console.fail(f"rayalign: error: {exc}", 2)
    except WorkerError as exc:
        return console.fail(f"rayalign: worker failed: {exc}", 1)
    finally:
        console.release()


if __name__ == "__main__":
    sys.exit(main())
