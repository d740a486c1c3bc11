"""The terminal a person reads: rayalign's own lines there, library chatter in runs/<name>/rayalign.log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

from conftest import write_jsonl
from rayalign.cli import build_parser

CHATTER = ["Setting accelerator", "Setting ds_accelerator", "DeprecationWarning", "FutureWarning",
           "Token authentication", "Loading weights", "pid="]
WORKER_LINE = re.compile(r"\(\w*Trainer pid=\d+\)")


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


def test_verbose_is_global_and_accepted_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["--verbose", "sft", "-c", "r.yaml"]).verbose
    assert parser.parse_args(["sft", "-c", "r.yaml", "--verbose"]).verbose
    assert not parser.parse_args(["sft", "-c", "r.yaml"]).verbose
    assert not parser.parse_args(["config", "show", "quickstart"]).verbose


def rayalign(*args, timeout=600):
    env = {**os.environ, "RAY_ADDRESS": "local"}
    return subprocess.run([sys.executable, "-m", "rayalign.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def sft_args(tiny_model, tmp_path, name, data):
    return ["sft", "--config", "quickstart", f"name={name}", f"output_dir={tmp_path}",
            f"model.name_or_path={tiny_model}", f"data.train={data}", "data.eval=null", "train.max_steps=2",
            "train.eval_every=0", "placement.num_workers=1"]


def test_a_run_shows_its_own_lines_and_logs_the_rest(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "the quick brown fox jumps over the lazy dog"}] * 16)

    quiet = rayalign(*sft_args(tiny_model, tmp_path, "quiet", data))
    shown = quiet.stdout + quiet.stderr
    assert quiet.returncode == 0, shown
    assert "[sft] 16 training examples" in shown and "[sft] tuned model written to" in shown
    for chatter in CHATTER:
        assert chatter not in shown, chatter
    log = (tmp_path / "quiet" / "rayalign.log").read_text()
    assert WORKER_LINE.search(log) and "Setting accelerator to CPU" in log
    assert "[sft] tuned model written to" in log

    loud = rayalign(*sft_args(tiny_model, tmp_path, "loud", data), "--verbose")
    assert loud.returncode == 0, loud.stderr
    assert WORKER_LINE.search(loud.stdout + loud.stderr) and "[sft] tuned model written to" in loud.stdout
    assert not (tmp_path / "loud" / "rayalign.log").exists()


def test_a_data_error_reaches_the_terminal_with_the_log_named(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "bad.jsonl", [{"text": "fine"}, "{not json"])
    result = rayalign(*sft_args(tiny_model, tmp_path, "bad", data), timeout=120)
    assert result.returncode == 2
    log = tmp_path / "bad" / "rayalign.log"
    assert re.search(rf"rayalign: error: {re.escape(data)}, line 2\b", result.stderr)
    assert result.stderr.rstrip().endswith(f"rayalign: the full log is in {log}")
    assert f"{data}, line 2" in log.read_text()
