"""OpenAI's `python` grader, run isolated: someone else's code, scored in a process of its own.

The grader's `source` defines `grade(sample, item) -> float` (OpenAI's contract: `sample` has
`output_text` and `output_json`, `item` is the row's fields). A batch of (sample, item) pairs
goes to one fresh `python -I` process that:

- has no network: it starts in a new network namespace (`unshare --net`; `--map-root-user`
  when not root), where not even loopback is up; a machine that refuses namespaces refuses
  python graders, with that reason, rather than running them unisolated;
- has limits: CPU seconds and address space (RLIMIT_CPU, RLIMIT_AS), no files written
  (RLIMIT_FSIZE 0), a wall-clock timeout, an empty environment and a temporary working folder;
- answers one JSON line: the scores, or the first failure with its row.

It still sees the file system as the worker's user does; operators who need that closed too
run the workers in containers (the service keeps python graders off unless enabled).
"""

from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile

from rayalign.rewards.values import RewardError

CPU_S = 10            # CPU seconds for a batch
MEMORY_BYTES = 1 << 30
WALL_S = 30.0

RUNNER = r"""
import json, sys
request = json.loads(sys.stdin.read())
namespace = {"__name__": "grader"}
try:
    exec(compile(request["source"], "<python grader>", "exec"), namespace)
    grade = namespace["grade"]
except BaseException as exc:
    print(json.dumps({"error": f"the source does not load: {type(exc).__name__}: {exc}"}))
    sys.exit(0)
scores = []
for index, (sample, item) in enumerate(request["pairs"]):
    try:
        value = float(grade(sample, item))
    except MemoryError:
        print(json.dumps({"error": f"row {index}: over the memory limit", "row": index}))
        sys.exit(0)
    except BaseException as exc:
        print(json.dumps({"error": f"row {index}: {type(exc).__name__}: {exc}", "row": index}))
        sys.exit(0)
    scores.append(value)
print(json.dumps({"scores": scores}))
"""


@functools.lru_cache(maxsize=1)
def netless_prefix() -> tuple[str, ...]:
    """The command prefix that starts a process without network; RewardError if there is none."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise RewardError("python graders run without network, in a namespace of their own, and `unshare` "
                          "(util-linux) is not installed here")
    prefix = (unshare, "--net") if os.geteuid() == 0 else (unshare, "--net", "--map-root-user")
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        raise RewardError("python graders run without network, in a namespace of their own, and this machine "
                          f"refuses one ({' '.join(prefix)}: {probe.stderr.strip() or probe.returncode})")
    return prefix


def _limits() -> None:  # in the child, before it runs the grader
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_S, CPU_S))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def sample_of(completion: str) -> dict:
    """OpenAI's `sample` for a completion: its text, and its JSON when it parses."""
    try:
        parsed = json.loads(completion)
    except ValueError:
        parsed = None
    return {"output_text": completion, "output_json": parsed}


def run_python_grader(source: str, completions: list[str], rows: list[dict], where: str) -> list[float]:
    """`grade(sample, item)` for each completion and row, in one isolated process."""
    request = json.dumps({"source": source, "pairs": [[sample_of(c), r] for c, r in zip(completions, rows)]})
    with tempfile.TemporaryDirectory(prefix="grader-") as folder:
        try:
            done = subprocess.run([*netless_prefix(), sys.executable, "-I", "-c", RUNNER], input=request,
                                  capture_output=True, text=True, timeout=WALL_S, cwd=folder,
                                  env={"PATH": "/usr/bin:/bin", "HOME": folder}, preexec_fn=_limits)
        except subprocess.TimeoutExpired:
            raise RewardError(f"{where}: took more than {WALL_S:.0f} s for {len(completions)} rows") from None
    lines = done.stdout.strip().splitlines()
    if not lines:
        if done.returncode in (-9, -24, 137, 152):  # SIGKILL / SIGXCPU: the CPU limit
            raise RewardError(f"{where}: over the CPU limit of {CPU_S} s for {len(completions)} rows")
        raise RewardError(f"{where}: the grader's process ended ({done.returncode}) without an answer: "
                          f"{done.stderr.strip()[-300:]}")
    answer = json.loads(lines[-1])
    if "error" in answer:
        raise RewardError(f"{where}: {answer['error']}")
    return answer["scores"]
