"""Reports of runs as self-contained HTML pages (plots embedded, nothing loaded from the net).

    write_run_report(run_dir)        runs/<name>/report.html: what was trained, figures,
                                     held-out results, sample answers, training curves
    write_comparison(runs, out)      several runs side by side on each held-out set

`rayalign report RUN [RUN ...]` calls them; every run writes its own report when it ends.
"""

from rayalign.reporting.comparison import default_comparison_path, write_comparison
from rayalign.reporting.run_report import write_run_report

__all__ = ["default_comparison_path", "write_comparison", "write_run_report"]
