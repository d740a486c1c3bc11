"""The `rayalign` command line: one subcommand per method, plus config and model tools."""

from __future__ import annotations

import argparse
import sys

from rayalign import console
from rayalign.cli import advise, jobs, lineage, methods, review, sdg, tools
from rayalign.config import ConfigError
from rayalign.data.openai_files import METHODS


VERBOSE_HELP = "show library output (warnings, worker logs) on the terminal instead of runs/<name>/rayalign.log"


def _add_run_arguments(parser: argparse.ArgumentParser, default_recipe: str | None = None) -> None:
    parser.add_argument("--config", "-c", required=default_recipe is None, default=default_recipe,
                        help="a recipe YAML file, or the name of a shipped recipe")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value",
                        help="dotted overrides applied over the recipe, e.g. train.lr=1e-4")
    parser.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)


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
    quickstart.set_defaults(handler=tools.quickstart)

    sft = commands.add_parser("sft", help="supervised fine-tuning: full, partial (frozen modules/layers) or LoRA")
    _add_run_arguments(sft)
    sft.set_defaults(handler=methods.sft)

    rm = commands.add_parser("rm", help="train a reward model on preference pairs (Bradley-Terry)",
                             epilog="Score a file with a trained model: rayalign rm score --model M --data F")
    _add_run_arguments(rm)
    rm.set_defaults(handler=methods.rm)

    rm_score = commands.add_parser("rm-score", description="Score rows with a trained reward model: "
                                   "prompt+completion, messages (last assistant turn) or chosen/rejected.")
    rm_score.prog = "rayalign rm score"
    rm_score.add_argument("--model", required=True, help="a reward model folder (run's final/)")
    rm_score.add_argument("--data", required=True, help="JSONL, Parquet or a datasets folder")
    rm_score.add_argument("--out", help="output JSONL (default: stdout)")
    rm_score.add_argument("--max-length", type=int, default=1024)
    rm_score.add_argument("--batch-size", type=int, default=8)
    rm_score.add_argument("--raw", action="store_true", help="raw scores, not normalised by the saved mean/std")
    rm_score.set_defaults(handler=methods.rm_score)

    dpo = commands.add_parser("dpo", help="direct preference optimisation (DPO, conservative DPO, IPO)")
    _add_run_arguments(dpo)
    dpo.set_defaults(handler=methods.dpo)

    rlhf = commands.add_parser("rlhf", help="on-policy RL: PPO, GRPO, RLOO, REINFORCE++ with reward models, "
                               "functions or remote scorers")
    _add_run_arguments(rlhf)
    rlhf.set_defaults(handler=methods.rlhf)

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
    evaluate.set_defaults(handler=tools.eval)

    prompt = commands.add_parser("prompt", help="prompting as a method: score prompt variants on a dev split, "
                                 "report the best on held-out prompts")
    _add_run_arguments(prompt)
    prompt.set_defaults(handler=methods.prompt)

    rlaif = commands.add_parser("rlaif", help="AI feedback: label preference pairs, critique and revise"
                                ).add_subparsers(dest="action", required=True, metavar="ACTION")
    label = rlaif.add_parser("label", help="a preference dataset labelled by an AI labeler, both orders, soft labels")
    _add_run_arguments(label)
    label.set_defaults(handler=methods.rlaif_label)
    revise = rlaif.add_parser("revise", help="critique and revise under a constitution: SFT data and preference pairs")
    _add_run_arguments(revise)
    revise.add_argument("--constitution", help="a constitution YAML file (replaces rlaif.constitution); format: "
                        "rayalign/data/shipped/README.md")
    revise.set_defaults(handler=methods.rlaif_revise)
    chain = rlaif.add_parser("chain", help="the RLAIF chain on the quickstart task: AI labels -> reward models "
                             "(one order, both orders, soft) -> GRPO, each step measured")
    chain.add_argument("--output-dir", default="runs/rlaif", help="where the stages' run folders go")
    chain.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    chain.add_argument("overrides", nargs="*", metavar="[stage:]key.path=value",
                       help="overrides for every stage, or one (label:, rm-single:, rm-hard:, rm-soft:, rl:)")
    chain.set_defaults(handler=methods.rlaif_chain)

    sdg.add_parser(commands, _add_run_arguments, VERBOSE_HELP)
    review.add_parser(commands)
    advise.add_parser(commands)
    lineage.add_parser(commands)
    jobs.add_parsers(commands)

    report = commands.add_parser("report", help="write a run's report.html, or a comparison of several runs")
    report.add_argument("runs", nargs="+", metavar="RUN", help="run folders (runs/<name>)")
    report.add_argument("--out", help="the HTML file to write (default: RUN/report.html for one run; "
                        "report.html in the runs' common parent folder for several)")
    report.set_defaults(handler=tools.report)

    serve = commands.add_parser("serve", help="serve tuned models, reward models and the judge "
                                "(OpenAI-compatible, Ray Serve)")
    serve.add_argument("--config", "-c", default="serve/config.yaml",
                       help="a Ray Serve config file with a `rayalign` application (default: serve/config.yaml)")
    serve.add_argument("--runs", help="the folder of run folders to serve from (replaces args.runs_dir)")
    serve.add_argument("--host", help="address to listen on (default: the file's http_options, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: the file's http_options, else 8000)")
    serve.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, a local `ray start` "
                       "cluster, else a new local one); `local` always starts a new one")
    serve.set_defaults(handler=tools.serve)

    config = commands.add_parser("config", help="inspect recipes").add_subparsers(dest="action", required=True)
    show = config.add_parser("show", help="print a recipe with defaults and overrides applied")
    show.add_argument("recipe")
    show.add_argument("overrides", nargs="*", metavar="key.path=value")
    show.set_defaults(handler=tools.config_show)

    data = commands.add_parser("data", help="data utilities").add_subparsers(dest="action", required=True)
    openai = data.add_parser("from-openai", help="check an OpenAI fine-tuning file (supervised, dpo or "
                             "reinforcement rows) and write it in the format rayalign's method reads")
    openai.add_argument("method", choices=METHODS)
    openai.add_argument("file")
    openai.add_argument("out")
    openai.set_defaults(handler=tools.data_from_openai)

    model = commands.add_parser("model", help="model utilities").add_subparsers(dest="action", required=True)
    merge = model.add_parser("merge", help="fold a LoRA adapter into its base and save a full model")
    merge.add_argument("adapter")
    merge.add_argument("out")
    merge.set_defaults(handler=tools.model_merge)
    fetch = model.add_parser("fetch", help="materialise a built-in model into the cache and print its folder")
    fetch.add_argument("name")
    fetch.set_defaults(handler=tools.model_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    from rayalign.data.readers import DataError
    from rayalign.jobs.client import JobError
    from rayalign.rewards.values import RewardError
    from rayalign.workers.cluster import ray_session
    from rayalign.workers.group import WorkerError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["rm", "score"]:
        argv = ["rm-score", *argv[2:]]
    args = build_parser().parse_args(argv)
    try:
        with ray_session():  # ended before the terminal is given back: its last worker lines go to the log
            return args.handler(args)
    except (ConfigError, DataError, FileNotFoundError, JobError) as exc:  # JobError: no job server, token, job
        return console.fail(f"rayalign: error: {exc}", 2)
    except WorkerError as exc:
        return console.fail(f"rayalign: worker failed: {exc}", 1)
    except RewardError as exc:  # a reward source or AI labeler that cannot be reached or read
        return console.fail(f"rayalign: error: {exc}", 1)
    finally:
        console.release()

