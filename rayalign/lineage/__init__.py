"""Model lineage: what every run came from, and how much of its training signal came from AI.

    data.py    one dataset: resolved path, sha256, records, where its records came from
    record.py  runs/<name>/lineage.json, written when a run starts (RunDir)
    tree.py    the tree down to base models and human data; the AI share of the training signal
    text.py    the tree and the share as lines of text

`rayalign lineage RUN` (rayalign/cli/lineage.py) prints them; the run report shows them.
"""

from rayalign.lineage.record import LINEAGE_FILE, record_lineage
from rayalign.lineage.tree import build_tree

__all__ = ["LINEAGE_FILE", "build_tree", "record_lineage"]
