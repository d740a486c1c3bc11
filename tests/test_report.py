"""The run report and the comparison page: a real short SFT run writes its report.html;
fabricated RL, prompting and incomplete runs check the structure; `rayalign report`; and
the page rendered in a real headless Chromium (skipped where Chromium is not installed)."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest

from conftest import write_jsonl
from report_fixtures import SCRIPT_ANSWER, eval_result, prompt_run, rl_run, sft_run, write_run
from rayalign.cli import main
from rayalign.config import load_config
from rayalign.reporting import default_comparison_path, write_comparison, write_run_report
from rayalign.reporting.results import pick_indices
from test_sft_pipeline import ADDITION, tiny_overrides

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def pngs(html: str) -> list[bytes]:
    """The embedded plots, decoded."""
    return [base64.b64decode(data) for data in re.findall(r'<img[^>]* src="data:image/png;base64,([^"]+)"', html)]


def assert_self_contained(html: str) -> None:
    """Every src/href is an embedded image or a link within the page: nothing is fetched."""
    targets = re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', html)
    assert targets and all(t.startswith(("data:image/png;base64,", "#")) for t in targets), targets
    assert "@import" not in html and "url(" not in html
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000 for png in pngs(html))


def samples(html: str) -> list[str]:
    """The side-by-side answer blocks, one per prompt."""
    return html.split('<div class="sample">')[1:]


def test_a_real_sft_run_writes_its_report(ray_cluster, tiny_model, tmp_path):
    from rayalign.pipelines.sft import run_sft

    data = (write_jsonl(tmp_path / "train.jsonl", ADDITION[:80]), write_jsonl(tmp_path / "eval.jsonl", ADDITION[80:]))
    run_sft(load_config("quickstart", tiny_overrides(tiny_model, data, tmp_path / "runs", "short",
                                                     "train.max_steps=4", "train.eval_every=2")))
    page = tmp_path / "runs" / "short" / "report.html"
    html = page.read_text()  # written by the run itself, when it closed
    for section in ('id="trained"', 'id="figures"', 'id="curves"'):
        assert section in html, section
    assert "supervised fine-tuning" in html and tiny_model in html
    assert "train.jsonl (80 rows)" in html and "eval.jsonl (20 rows)" in html
    assert "a LoRA adapter" in html and "trainable parameters" in html
    assert "<td>eval loss</td>" in html and "<td>eval perplexity</td>" in html  # before -> after
    assert 'alt="Loss over steps"' in html
    assert len(pngs(html)) >= 1
    assert_self_contained(html)


def test_rl_report_has_curves_held_out_results_per_task_and_answers_side_by_side(tmp_path):
    prompt_run(tmp_path)  # a prompting baseline in the same folder, scored on the same data
    html = write_run_report(rl_run(tmp_path)).read_text()
    assert_self_contained(html)
    for title in ("Loss", "Reward per source (mean ± std over samples)", "train/kl", "train/entropy",
                  "response/length_mean", "Seconds per phase (stacked)"):
        assert f'alt="{title} over steps"' in html, title
    assert "train/clip_fraction</code> 0.05" in html  # constant all run: listed, not drawn
    assert "on-policy reinforcement learning: GRPO" in html and "constraint_check: function" in html
    # before -> after: the per-task table with 95% intervals (the flat means would repeat it)
    assert "<h3>median seconds</h3>" in html and "<td>reward</td>" not in html
    for task in ("addition", "capital", "lowercase"):
        assert f"<th>task: {task}</th>" in html
    assert '0.70<span class="ci">0.62 – 0.78</span>' in html and '0.20<span class="ci">0.12 – 0.28</span>' in html
    assert html.index("prompting baseline: prompting") < html.index("<td>grpo: before training</td>") \
        < html.index("<td>grpo: after training</td>")
    assert 'alt="mean score per task on quickstart_eval, with 95% intervals"' in html
    blocks = samples(html)
    assert 6 <= len(blocks) <= 8
    for block in blocks:
        assert block.count('<div class="answer">') == 3
        assert "prompting baseline: prompting" in block and "before training" in block and "after training" in block
    # an answer is text, never markup
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more" in html
    assert SCRIPT_ANSWER not in html and "<script" not in html


def test_an_rl_report_without_evaluation_results_shows_its_flat_held_out_means(tmp_path):
    folder = rl_run(tmp_path)
    report = json.loads((folder / "report.json").read_text())
    del report["held_out_before"], report["held_out_after"]
    (folder / "report.json").write_text(json.dumps(report))
    html = write_run_report(folder).read_text()
    assert "<td>reward</td>" in html and "<td>task/capital</td>" in html and "+0.5" in html
    assert 'id="held-out"' not in html


def test_prompting_run_report_shows_its_variants_and_the_chosen_prompt(tmp_path):
    html = write_run_report(prompt_run(tmp_path)).read_text()
    assert_self_contained(html)
    assert "Prompt variants on the dev data" in html and "<td>terse (chosen)<span class=\"tag\">prompt: terse</span></td>" in html
    assert "Answer in as few words as the question allows." in html
    assert 'id="figures"' not in html  # no before -> after: nothing was trained
    assert 'id="curves"' not in html  # a prompting run has no training steps


def test_an_incomplete_run_gets_a_report_of_what_it_has(tmp_path):
    folder = write_run(tmp_path / "stopped", {"method": "sft", "name": "stopped", "data": {"train": "gone.jsonl"}},
                       [{"step": s, "time": 1.0 + s, "train/loss": 3.0 - 0.1 * s} for s in range(1, 6)], None)
    with open(folder / "metrics.jsonl", "a") as out:
        out.write('{"step": 6, "train/lo')  # killed mid-write
    html = write_run_report(folder).read_text()
    assert "incomplete: no report.json" in html and "gone.jsonl" in html
    assert 'alt="Loss over steps"' in html and 'id="held-out"' not in html
    assert "metrics.jsonl, line 6: not valid JSON, skipped" in html


def test_comparison_of_runs_on_each_held_out_set(tmp_path):
    parent = tmp_path / "quickstart"
    runs = [prompt_run(parent), sft_run(parent), rl_run(parent)]
    (runs[1] / "eval" / "quickstart_eval_phrasing.json").write_text(
        json.dumps(eval_result("sft", 0.4, data_label="quickstart_eval_phrasing")))
    sampled = eval_result("grpo", 0.6)
    sampled.update(sampling={"samples": 4, "temperature": 1.0, "max_new_tokens": 48},
                   pass_at_k={"constraint_check": {"1": 0.6, "4": 0.8}})
    (runs[2] / "eval").mkdir()
    (runs[2] / "eval" / "quickstart_eval-n4-t1.json").write_text(json.dumps(sampled))
    out = write_comparison(runs, default_comparison_path(runs))
    assert out.resolve() == (parent / "report.html").resolve()
    html = out.read_text()
    assert_self_contained(html)
    main_set = html.split('<section id="set-1">')[1].split("</section>")[0]
    assert "<h3>quickstart_eval <" in main_set
    rows = re.findall(r"<tr><td>(\w+)", main_set)
    assert rows == ["prompting", "sft", "grpo"]  # in the order given, named by run name
    assert "0.27 – 0.43" in main_set and "0.42 – 0.58" in main_set and "0.62 – 0.78" in main_set
    assert "<h3>quickstart_eval_phrasing " in html  # only sft has it: a block of one row
    assert "<h3>quickstart_eval (4 samples at temperature 1) " in html  # compared only with like sampling
    assert "grpo: constraint_check: pass@1 0.60, pass@4 0.80" in html
    assert len(pngs(html)) == 3
    answered = samples(main_set)
    indices = [re.search(r'<span class="tag">#(\d+)</span>', block).group(1) for block in answered]
    assert len(indices) == 8 and len(set(indices)) == 8
    for block in answered:  # the same prompt answered by every run
        assert [re.search(r'<div class="who">(\w+)', part).group(1) for part in block.split('<div class="answer">')[1:]] \
            == ["prompting", "sft", "grpo"]


def test_sample_prompts_are_spread_over_tasks():
    answers = [{"index": i, "task": ["a", "b", "c"][i // 10]} for i in range(30)]  # tasks in blocks of ten
    picked = pick_indices(answers, 8)
    assert len(picked) == 8 and picked == sorted(picked)
    assert [sum(1 for i in picked if answers[i]["task"] == t) for t in "abc"] == [3, 3, 2]
    assert pick_indices(answers[:3], 8) == [0, 1, 2]


def test_report_command_one_run_and_several(tmp_path, capsys):
    runs = [sft_run(tmp_path / "q"), rl_run(tmp_path / "q")]
    assert main(["report", str(runs[0])]) == 0
    assert capsys.readouterr().out.strip() == str(runs[0] / "report.html")
    assert main(["report", *map(str, runs)]) == 0
    assert Path(capsys.readouterr().out.strip()).resolve() == (tmp_path / "q" / "report.html").resolve()
    assert main(["report", *map(str, runs), "--out", str(tmp_path / "both.html")]) == 0
    assert "Comparison of 2 runs" in (tmp_path / "both.html").read_text()
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_a_report_that_fails_to_render_does_not_fail_the_run(tmp_path, monkeypatch, capsys):
    import rayalign.reporting
    from rayalign.runs import RunDir

    def broken(run_dir):
        raise RuntimeError("no fonts today")

    monkeypatch.setattr(rayalign.reporting, "write_run_report", broken)
    config = load_config("sft_full", [f"output_dir={tmp_path}", "name=failing", "data.train=x.jsonl"])
    RunDir(config, tensorboard=False).close()
    said = capsys.readouterr().out  # one of rayalign's own lines: on the terminal, not in the log
    assert "warning: no report.html" in said and "(RuntimeError: no fonts today)" in said


def test_report_renders_in_headless_chromium(tmp_path):
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip("chromium not installed: apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed: pip install selenium")
    from PIL import Image

    prompt_run(tmp_path)
    page = write_run_report(rl_run(tmp_path))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        driver.get(page.resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images, i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
        shot = driver.get_screenshot_as_png()
    finally:
        driver.quit()
    assert len(images) == len(pngs(page.read_text())) >= 6
    assert all(complete and width > 100 and height > 100 for _, complete, width, height in images), images
    screenshot = Image.open(io.BytesIO(shot))
    assert screenshot.format == "PNG" and screenshot.width >= 1000
    low, high = screenshot.convert("L").getextrema()
    assert high - low > 100  # text and plots on a white page, not a blank one
