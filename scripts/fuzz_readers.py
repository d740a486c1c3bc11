"""A bounded atheris (libFuzzer) run over every reader of a user's file (issue 16, item 1).

The targets and the property are those of the hypothesis tests (tests/fuzz_targets.py): any
bytes load, or raise the reader's own error naming the file and the line; anything else (another
exception, a message without file or line, an input slower than -timeout, memory over
-rss_limit_mb) is a failure, whose input libFuzzer saves as crash-*/timeout-*/oom-* in --out.

atheris is not a dependency of rayalign; install it once with

    .venv/bin/pip install atheris==3.0.0

Usage (each target runs in its own process, seeded with a valid file of its kind):

    python scripts/fuzz_readers.py --seconds 60                 # every target, 60 s each
    python scripts/fuzz_readers.py --runs 20000 recipe sft      # two targets, 20000 inputs each
    python scripts/fuzz_readers.py --list

The last line printed is one JSON object: inputs tried and failures per target.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
DONE = re.compile(r"Done (\d+) (?:runs )?in (\d+) second")


def fuzz_one(name: str) -> None:
    """In the child: libFuzzer drives the target with the arguments left in sys.argv."""
    import atheris

    with atheris.instrument_imports(include=["rayalign", "yaml", "fuzz_targets"]):
        from fuzz_targets import check_target, TARGETS

    path = Path(tempfile.mkdtemp(prefix="fuzz-readers-")) / f"fuzzed-{name}{TARGETS[name].suffix}"

    def one_input(data: bytes) -> None:
        path.write_bytes(data)
        check_target(name, path)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


def run_target(name: str, args, out: Path) -> dict:
    """One target in a child process; its inputs tried and failures, from libFuzzer's output."""
    from fuzz_targets import TARGETS

    corpus = out / "corpus" / name
    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / "valid").write_bytes(TARGETS[name].valid_bytes())
    artifacts = out / "artifacts" / name
    artifacts.mkdir(parents=True, exist_ok=True)
    limit = [f"-atheris_runs={args.runs}"] if args.runs else [f"-max_total_time={args.seconds}"]
    command = [sys.executable, __file__, "--child", name, *limit, f"-timeout={args.timeout}",
               f"-rss_limit_mb={args.rss_limit_mb}", f"-max_len={args.max_len}", f"-artifact_prefix={artifacts}/",
               "-print_final_stats=1", str(corpus)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    log = done.stdout + done.stderr
    (out / f"{name}.log").write_text(log)
    counts = DONE.findall(log)
    stats = re.findall(r"stat::number_of_executed_units: (\d+)", log)
    tried = int(counts[-1][0]) if counts else int(stats[-1]) if stats else None
    failures = sorted(str(p) for p in artifacts.iterdir())
    if counts and done.returncode == -signal.SIGALRM:  # libFuzzer's -timeout alarm, left armed after "Done"
        done.returncode = 0
    found = [line for line in log.splitlines() if "Error" in line or "AssertionError" in line][:5]
    return {"inputs": tried, "seconds": int(counts[-1][1]) if counts else None, "exit": done.returncode,
            "failures": failures, "first_error_lines": found if done.returncode else []}


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        name = sys.argv.pop(2)
        sys.argv.pop(1)
        fuzz_one(name)
        return 0
    from fuzz_targets import TARGETS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help=f"default: all ({', '.join(TARGETS)})")
    parser.add_argument("--seconds", type=int, default=60, help="libFuzzer's -max_total_time per target")
    parser.add_argument("--runs", type=int, default=0, help="inputs per target instead (-atheris_runs)")
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take")
    parser.add_argument("--rss-limit-mb", type=int, default=2048)
    parser.add_argument("--max-len", type=int, default=4096, help="largest input in bytes")
    parser.add_argument("--out", help="corpus, logs and failing inputs (default: a new temporary folder)")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    if args.list:
        print("\n".join(TARGETS))
        return 0
    if importlib.util.find_spec("atheris") is None:
        print("atheris is not installed: .venv/bin/pip install atheris==3.0.0", file=sys.stderr)
        return 2
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {unknown}; see --list")
    out = Path(args.out or tempfile.mkdtemp(prefix="fuzz-readers-")).resolve()
    results = {}
    for name in args.targets or TARGETS:
        results[name] = run_target(name, args, out)
        print(f"{name}: {results[name]['inputs']} inputs, {len(results[name]['failures'])} failures",
              file=sys.stderr, flush=True)
    summary = {"inputs": {n: r["inputs"] for n, r in results.items()},
               "total_inputs": sum(r["inputs"] or 0 for r in results.values()),
               "failures": {n: r["failures"] for n, r in results.items() if r["failures"] or r["exit"]},
               "errors": {n: r["first_error_lines"] for n, r in results.items() if r["first_error_lines"]},
               "out": str(out)}
    print(json.dumps(summary))
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
