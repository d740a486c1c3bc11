"""The handlers of the tool commands: quickstart, eval, report, serve, config and model utilities."""

from __future__ import annotations

import sys
from collections.abc import Callable

from rayalign import console
from rayalign.config import dump_config, load_config
from rayalign.console import say

def quickstart(args) -> int:
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


def eval(args) -> int:
    import json

    from rayalign.config import RolloutConfig
    from rayalign.evaluation.evaluate import Sampling
    from rayalign.pipelines.evaluate import EvalRequest, run_eval

    rewards = reward_sources(args.rewards) if args.rewards else None
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


def reward_sources(path: str) -> list:
    """The RewardSourceConfigs of a YAML file holding a list of them (or a mapping with `rewards:`)."""
    from pathlib import Path

    from pydantic import ValidationError

    from rayalign.config import ConfigError, RewardSourceConfig
    from rayalign.config.loading import validation_problems
    from rayalign.data.readers import DataError
    from rayalign.data.yaml_files import load_file

    try:
        loaded = load_file(Path(path), f"--rewards {path}")
    except OSError as exc:
        raise ConfigError(f"--rewards {path}: {exc}") from None
    except DataError as exc:  # not UTF-8, not YAML: named with the line
        raise ConfigError(str(exc)) from None
    sources = loaded.get("rewards") if isinstance(loaded, dict) else loaded
    if not isinstance(sources, list) or not all(isinstance(s, dict) for s in sources):
        raise ConfigError(f"--rewards {path}: expected a list of reward sources (type, path/url, weight, ...)")
    try:
        return [RewardSourceConfig.model_validate(source) for source in sources]
    except ValidationError as exc:
        raise ConfigError(f"--rewards {path}: {validation_problems(exc)}") from None


def report(args) -> int:
    from rayalign.reporting import default_comparison_path, write_comparison, write_run_report

    if len(args.runs) == 1:
        print(write_run_report(args.runs[0], args.out))
    else:
        print(write_comparison(args.runs, args.out or default_comparison_path(args.runs)))
    return 0


def serve(args) -> int:
    import signal

    import ray

    from rayalign.serving import lifecycle
    from rayalign.serving.settings import read_serve_config
    from rayalign.workers import cluster

    app_args, http = read_serve_config(args.config, args.runs)
    host, port = args.host or http.get("host", "127.0.0.1"), args.port or http.get("port", 8000)
    joined = ray.is_initialized()  # a connection made before is the caller's to end
    # Ctrl-C and SIGTERM both stop the server, whatever handler a library installed meanwhile.
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, _interrupt)
    status, segments = 0, lifecycle.EngineSegments()
    try:
        cluster.connect(args.address)
        say("[serve] starting on Ray (vLLM engines load in about a minute on CPU)")
        try:
            url = lifecycle.start(app_args, host=host, port=port)
            for signum in previous:
                signal.signal(signum, _interrupt)
            say(f"[serve] ready: {url}/v1 (OpenAI-compatible; /v1/rewards, /v1/judge; health {url}/-/healthz). "
                "Ctrl-C stops.")
            wait_for_interrupt(every=(SWEEP_EVERY_S, lambda: _sweep(segments)))
        except KeyboardInterrupt:
            say("[serve] Ctrl-C: stopping the application and the engines")
        except RuntimeError as exc:  # a deployment failed to start: Serve's message names it
            print(f"rayalign: serving failed: {exc}", file=sys.stderr)
            status = 1
        finally:
            cancel = _stop_within(STOP_TIMEOUT_S)
            try:
                removed = lifecycle.stop(timeout_s=STOP_TIMEOUT_S / 2, segments=segments)
                if not joined:
                    cluster.shutdown()  # a local cluster: none of its processes left
                say(f"[serve] stopped; removed {len(removed)} leftover engine shared-memory segments")
            finally:
                cancel()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return status


def wait_for_interrupt(tick_s: float = 0.5, every: tuple[float, Callable[[], None]] | None = None) -> None:
    """Sleep until KeyboardInterrupt, calling `every`'s function at its interval. In short sleeps:
    the kernel may hand SIGINT to any thread that does not block it (Ray's driver has dozens that
    do not); Python then runs the handler only when the main thread next runs Python code, which
    one long sleep would put off by an hour."""
    import time

    due = time.monotonic() + (every[0] if every else float("inf"))
    while True:
        time.sleep(tick_s)
        if every and time.monotonic() >= due:
            every[1]()
            due = time.monotonic() + every[0]


SWEEP_EVERY_S = 30.0  # how often a running server removes the segments of an engine that died


def _sweep(segments) -> None:
    removed = segments.sweep()
    if removed:
        say(f"[serve] removed {len(removed)} shared-memory segments of an engine whose replica died "
            "(Serve starts a new one)")


STOP_TIMEOUT_S = 90.0  # from Ctrl-C to the last process of a local cluster gone, at most (then SIGKILL)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _stop_within(timeout_s: float):
    """A second way out: if stopping hangs (a Serve controller that does not answer, a Ray
    shutdown that waits), SIGKILL the processes of the local cluster this command started and
    end the command, `timeout_s` from now; a second Ctrl-C does so at once. Returns the function
    that calls this off once stopping is done."""
    import os
    import signal
    import threading

    from rayalign.workers import cluster

    def force(*_) -> None:
        say(f"[serve] not stopped after {timeout_s:.0f} s (or Ctrl-C again): killing the cluster's processes")
        cluster.kill_local()
        os._exit(1)

    timer = threading.Timer(timeout_s, force)
    timer.daemon = True
    timer.start()
    signal.signal(signal.SIGINT, lambda *_: threading.Thread(target=force, daemon=True).start())

    def cancel() -> None:
        timer.cancel()
        signal.signal(signal.SIGINT, _interrupt)

    return cancel


def config_show(args) -> int:
    print(dump_config(load_config(args.recipe, args.overrides)), end="")
    return 0


def data_from_openai(args) -> int:
    from pathlib import Path

    from rayalign.data.openai_files import convert_file, write_rows

    rows = convert_file(args.file, args.method)
    write_rows(rows, Path(args.out))
    command = {"supervised": "sft", "dpo": "dpo", "reinforcement": "rlhf"}[args.method]
    say(f"[data] {len(rows)} {args.method} rows written to {args.out}; train on them with "
        f"rayalign {command} --config RECIPE data.train={args.out}")
    return 0


def model_merge(args) -> int:
    from rayalign.models.export import merge_adapter

    print(merge_adapter(args.adapter, args.out))
    return 0


def model_fetch(args) -> int:
    from rayalign.models.registry import resolve_model

    print(resolve_model(args.name))
    return 0

