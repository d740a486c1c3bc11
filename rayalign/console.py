"""What a run shows a person: rayalign's own lines and progress bars on the terminal,
everything else in the run's log file.

`say` prints one of rayalign's own lines (stages, results, where things were written);
`terminal()` is the stream progress bars draw on. Library chatter is not rayalign's:
`capture(log_path)` points file descriptors 1 and 2 (and `sys.stdout`, `sys.stderr`) at
the log file, so C-level writes (DeepSpeed, vLLM, gloo), Python warnings, `logging`, and
the worker output Ray forwards to the driver all land there, while `say` and `terminal()`
keep a copy of the real terminal. `release()` puts the terminal back. `fail` reports an
error on the terminal and in the log; an exception that ends the process does the same.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO


@dataclass
class _Capture:
    log_path: Path
    terminal: TextIO  # a stream on a copy of the original fd 1
    saved_fds: tuple[int, int]  # copies of the original fds 1 and 2, put back by release()
    saved_streams: tuple[TextIO, TextIO]  # sys.stdout and sys.stderr before capture


_active: _Capture | None = None
_last_log: Path | None = None  # named after the traceback of an exception that ends the process


def terminal() -> TextIO:
    """The stream rayalign's own output and progress bars go to."""
    return _active.terminal if _active else sys.stdout


def say(*parts, **kwargs) -> None:
    """One of rayalign's own lines, on the terminal, flushed at once (and in the log while captured)."""
    print(*parts, file=terminal(), flush=True, **kwargs)
    if _active:
        print(*parts, file=sys.stdout, flush=True, **kwargs)


def capture(log_path: str | Path, verbose: bool = False) -> None:
    """Unless `verbose`, send everything but `say` and `terminal()` to `log_path` (appended,
    its folder created, one header line each time) until `release()`. No-op while captured."""
    global _active, _last_log
    if verbose or _active:
        return
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    active = _Capture(log_path, open(os.dup(1), "w", buffering=1, encoding=encoding, errors="replace"),
                      (os.dup(1), os.dup(2)), (sys.stdout, sys.stderr))
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    header = f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: {shlex.join(sys.argv)}\n"
    os.write(log, header.encode())
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    # Line-buffered streams on the descriptors themselves: prints, warnings and logging
    # (which write to sys.stderr) interleave with C-level writes in the order they happen.
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    _active, _last_log = active, log_path
    sys.excepthook = _report_uncaught


def release() -> Path | None:
    """Put the terminal back on fds 1 and 2 and sys.stdout/sys.stderr; returns the log file
    that was capturing, or None if nothing was."""
    global _active
    active, _active = _active, None
    if active is None:
        return None
    for stream in (sys.stdout, sys.stderr, active.terminal):
        stream.flush()
    active.terminal.close()  # a late write to it fails loudly instead of landing on a reused fd
    for fd, saved in zip((1, 2), active.saved_fds):
        os.dup2(saved, fd)
        os.close(saved)
    sys.stdout, sys.stderr = active.saved_streams
    return active.log_path


def fail(message: str, code: int) -> int:
    """An error for the person: on the terminal in full, in the log, then where the log is.
    Ends any capture; returns `code` (the exit status)."""
    _show_error(message, release())
    return code


def _show_error(message: str, log: Path | None) -> None:
    print(message, file=sys.stderr, flush=True)
    if log is not None:
        with open(log, "a") as out:
            out.write(message + "\n")
        print(f"rayalign: the full log is in {log}", file=sys.stderr, flush=True)


def _report_uncaught(kind, value, tb) -> None:
    """sys.excepthook once anything was captured: the traceback on the terminal and in the log."""
    log = release() or _last_log
    _show_error("".join(traceback.format_exception(kind, value, tb)).rstrip(), log)
