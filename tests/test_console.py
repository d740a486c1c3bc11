"""The terminal a person reads: rayalign's own lines there, library chatter in runs/<name>/rayalign.log."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def python(script: str, *args):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True, text=True,
                          timeout=120)


def test_capture_keeps_only_say_on_the_terminal(tmp_path):
    log = tmp_path / "runs" / "new" / "rayalign.log"  # its folder does not exist yet
    result = python("""
        import logging, os, sys, warnings
        from rayalign import console
        logging.basicConfig()  # a handler bound to stderr before the capture follows it too
        console.capture(sys.argv[1])
        console.capture(sys.argv[1])  # idempotent: still one header, the terminal still the terminal
        print("a python print")
        os.write(1, b"a C-level write to fd 1\\n")
        os.write(2, b"a C-level write to fd 2\\n")
        warnings.warn("an old API", DeprecationWarning, stacklevel=1)
        logging.getLogger("somelib").warning("a library log line")
        console.say("[test] rayalign's own line")
        console.release()
        print("after release")
    """, str(log))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[test] rayalign's own line\nafter release\n"
    assert result.stderr == ""
    text = log.read_text()
    assert text.count("==== ") == 1
    for line in ("a python print", "a C-level write to fd 1", "a C-level write to fd 2",
                 "DeprecationWarning: an old API", "WARNING:somelib:a library log line", "[test] rayalign's own line"):
        assert line in text
    assert "after release" not in text


def test_an_uncaught_exception_reaches_the_terminal_and_the_log(tmp_path):
    log = tmp_path / "rayalign.log"
    log.write_text("an earlier run\n")
    result = python("""
        import sys
        from rayalign import console
        console.capture(sys.argv[1])
        print("chatter")
        raise RuntimeError("something broke")
    """, str(log))
    assert result.returncode == 1
    assert "chatter" not in result.stdout + result.stderr
    assert "Traceback" in result.stderr and "RuntimeError: something broke" in result.stderr
    assert result.stderr.rstrip().endswith(f"rayalign: the full log is in {log}")
    text = log.read_text()
    assert text.startswith("an earlier run\n==== ")  # appended
    assert "chatter" in text and "RuntimeError: something broke" in text
