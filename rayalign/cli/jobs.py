"""`rayalign submit` and `rayalign jobs list|logs|stop`: runs as Ray jobs on a running cluster."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rayalign.console import say

# The commands that run a recipe, as typed after `rayalign`.
RUN_COMMANDS = [["sft"], ["rm"], ["dpo"], ["rlhf"], ["prompt"], ["rlaif", "label"], ["rlaif", "revise"],
                ["sdg", "generate"], ["sdg", "label"]]
ADDRESS_HELP = "the cluster's job server (dashboard) URL (default: RAY_ADDRESS, else http://127.0.0.1:8265)"


def add_parsers(commands) -> None:
    submit = commands.add_parser(
        "submit", help="send a run to a running Ray cluster as a Ray job (its recipe and local data travel "
        "with it); resubmitting a run resumes it",
        usage="rayalign submit METHOD --config RECIPE [key.path=value ...] [--address URL] [--storage DIR] "
              "[--follow] [--include PATH]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="METHOD: " + ", ".join(" ".join(words) for words in RUN_COMMANDS) + "\n\n"
        + _submit_options().format_help().split("\n", 2)[2])
    submit.add_argument("run", nargs=argparse.REMAINDER, help="the rayalign command to run, as typed locally")
    submit.set_defaults(handler=submit_run)

    jobs = commands.add_parser("jobs", help="the rayalign jobs of a cluster: list, logs, stop"
                               ).add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = jobs.add_parser("list", help="every job the cluster remembers, with its run and status")
    listing.add_argument("--address", help=ADDRESS_HELP)
    listing.set_defaults(handler=list_jobs)
    logs = jobs.add_parser("logs", help="a job's output (a submission id, or a run name: its newest job)")
    logs.add_argument("job")
    logs.add_argument("--follow", "-f", action="store_true", help="stream until the job ends; exit with its code")
    logs.add_argument("--address", help=ADDRESS_HELP)
    logs.set_defaults(handler=job_logs)
    stop = jobs.add_parser("stop", help="stop a job (its run folder keeps the last checkpoint; resubmit to resume)")
    stop.add_argument("job")
    stop.add_argument("--address", help=ADDRESS_HELP)
    stop.set_defaults(handler=stop_job)


def _submit_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(prog="rayalign submit", add_help=False)
    options.add_argument("--address", help=ADDRESS_HELP)
    options.add_argument("--storage", help="where run folders live on the cluster, for a relative output_dir "
                         "(default: RAYALIGN_STORAGE, else this folder: right for a head on this machine "
                         "or a shared filesystem)")
    options.add_argument("--follow", "-f", action="store_true",
                         help="stream the job's logs until it ends, and exit with its exit code")
    options.add_argument("--include", action="append", default=[],
                         help="another local file or folder the job needs in its working directory")
    options.add_argument("--config", "-c", required=True, help="the recipe (a file, or a shipped recipe's name)")
    return options


def submit_run(args) -> int:
    import os

    from rayalign.config import ConfigError
    from rayalign.jobs import client as jobs_api
    from rayalign.jobs.staging import stage_run

    words = next((w for w in sorted(RUN_COMMANDS, key=len, reverse=True) if args.run[: len(w)] == w), None)
    if words is None:
        raise ConfigError("rayalign submit: name the run's method first, one of: "
                          + ", ".join(" ".join(w) for w in RUN_COMMANDS))
    known, rest = _submit_options().parse_known_args(args.run[len(words):])
    overrides = [token for token in rest if "=" in token and not token.startswith("-")]
    options = [token for token in rest if token not in overrides]
    storage = known.storage or os.environ.get("RAYALIGN_STORAGE") or os.getcwd()
    jobs = jobs_api.client(known.address)
    with tempfile.TemporaryDirectory(prefix="rayalign-submit-") as folder:
        staged = stage_run(words, known.config, overrides, options, storage, Path(folder), known.include)
        job_id = jobs_api.submit(jobs, staged)
    for local, remote in staged.copied.items():
        say(f"[submit] sent {local} as {remote}")
    for path in staged.shared:
        say(f"[submit] not sent, the cluster must see it at this path: {path}")
    say(f"[submit] job {job_id}: rayalign {' '.join(staged.argv)}")
    say(f"[submit] run folder (on the cluster): {staged.run_dir}")
    if not known.follow:
        say(f"[submit] follow it: rayalign jobs logs {job_id} --follow")
        return 0
    return _report_end(jobs_api.follow(jobs, job_id))


def list_jobs(args) -> int:
    from rayalign.jobs import client as jobs_api

    found = jobs_api.list_jobs(jobs_api.client(args.address))
    if not found:
        say("[jobs] no jobs on this cluster")
        return 0
    say(f"{'job':<42} {'status':<10} {'run':<20} {'started':<17} {'took':>8}  command")
    for job in found:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(job.started)) if job.started else "-"
        took = f"{((job.ended or time.time()) - job.started) / 60:.1f} min" if job.started else "-"
        say(f"{job.id:<42} {job.status:<10} {job.run or '-':<20} {started:<17} {took:>8}  {job.command}")
    return 0


def job_logs(args) -> int:
    from rayalign.jobs import client as jobs_api

    jobs = jobs_api.client(args.address)
    job = jobs_api.find(jobs, args.job)
    if args.follow:
        return _report_end(jobs_api.follow(jobs, job.id))
    logs = jobs.get_job_logs(job.id)
    print(logs, end="" if logs.endswith("\n") or not logs else "\n")
    return 0


def stop_job(args) -> int:
    from rayalign.jobs import client as jobs_api

    jobs = jobs_api.client(args.address)
    job = jobs_api.find(jobs, args.job)
    if job.status not in jobs_api.ACTIVE:
        say(f"[jobs] {job.id} already ended: {job.status}")
        return 0
    jobs.stop_job(job.id)
    job = jobs_api.wait(jobs, job.id, timeout_s=60)
    say(f"[jobs] {job.id}: {job.status}" + (f"; resume it: resubmit run {job.run}" if job.run else ""))
    return 0


def _report_end(job) -> int:
    from rayalign.jobs.client import exit_code

    if job is None:  # detached by Ctrl-C
        return 130
    code = exit_code(job)
    reason = job.message.split(", last available logs")[0]  # the logs themselves were just streamed
    say(f"[submit] job {job.id} {job.status} (exit code {code})" + (f": {reason}" if code else ""))
    if job.run_dir:
        say(f"[submit] run folder (on the cluster): {job.run_dir}")
    return code
