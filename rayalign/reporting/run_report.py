"""`runs/<name>/report.html`: one run, readable by someone who never saw its config.

What was trained on what, the headline figures, every held-out evaluation the run holds
(before/after for RL, `rayalign eval` results, a prompting run's variants) beside the
prompting baselines found in the same parent folder, sample answers side by side, the
training curves, and its lineage (rayalign/lineage) when it has a lineage.json. Whatever the
folder lacks is left out.
"""

from __future__ import annotations

import time
from pathlib import Path

from rayalign.lineage import LINEAGE_FILE, build_tree
from rayalign.lineage.text import summary_lines, tree_lines
from rayalign.reporting.curves import training_curves
from rayalign.reporting.html import write_page
from rayalign.reporting.overview import describe, headline
from rayalign.reporting.plots import panel_image
from rayalign.reporting.results import result_block, result_set
from rayalign.reporting.run_folder import RunFolder, is_eval_result, load_run, sibling_prompt_runs

REPORT_FILE = "report.html"


def write_run_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Render the run's report to `out` (default `<run_dir>/report.html`); returns the path."""
    run = load_run(run_dir)
    about = describe(run)
    own = [(f"{run.name}: {what}", result) for what, result in run.results()]
    sets = list(dict.fromkeys(result_set(result) for _, result in own))
    baselines = [(f"prompting baseline: {sibling.name}" + ("" if what == "prompted" else f" ({what})"), result)
                 for sibling in sibling_prompt_runs(run) for what, result in sibling.results()
                 if result_set(result) in sets]
    blocks = [result_block(name, [entry for entry in baselines + own if result_set(entry[1]) == name])
              for name in sets]
    facts = dict(about["facts"])
    summary = " · ".join(filter(None, [facts.get("method"), facts.get("base model"), facts.get("training data"),
                                       facts.get("steps") and f"{facts['steps']} steps", facts.get("status")]))
    panels, constants = training_curves(run.metrics) if run.method != "prompt" else ([], [])  # steps = variants
    return write_page(
        "run.html", Path(out) if out else run.path / REPORT_FILE,
        name=run.name, summary=summary, folder=str(run.path), about=about, headline=headline(run.report),
        chosen_prompt=(run.prompt or {}).get("variant"), variants=_variants(run), blocks=blocks,
        baselines=bool(baselines), panels=[(panel.title, panel_image(panel)) for panel in panels], constants=constants,
        lineage=_lineage(run), notes=run.notes, written=time.strftime("%Y-%m-%d %H:%M"))


def _lineage(run: RunFolder) -> dict | None:
    """The lineage tree and the AI share of the training signal, as text (`rayalign lineage`)."""
    if not (run.path / LINEAGE_FILE).is_file():
        return None
    tree = build_tree(run.path)
    return {"summary": summary_lines(tree), "tree": "\n".join(tree_lines(tree))}


def _variants(run: RunFolder) -> dict | None:
    """A prompting run's variants on its dev data, as one block (the chosen one marked)."""
    dev = run.report.get("dev")
    variants = dev.get("variants") if isinstance(dev, dict) else None
    if not isinstance(variants, dict):
        return None
    chosen = run.report.get("chosen")
    entries = [(name + (" (chosen)" if name == chosen else ""), result)
               for name, result in variants.items() if is_eval_result(result)]
    return result_block(result_set(entries[0][1]), entries) if entries else None
