"""What a run shows a person: rayalign's own lines and progress bars on the terminal.

`say` prints one of rayalign's own lines (stages, results, where things were written);
`terminal()` is the stream progress bars draw on. Library chatter is not rayalign's.
"""

from __future__ import annotations

import sys


def terminal():
    """The stream rayalign's own output and progress bars go to."""
    return sys.stdout


def say(*parts, **kwargs) -> None:
    """One of rayalign's own lines, on the terminal, flushed at once."""
    print(*parts, file=terminal(), flush=True, **kwargs)
