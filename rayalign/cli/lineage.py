"""`rayalign lineage RUN`: the run's tree down to base models and human data, every dataset with
its hash and origin, and the share of its training signal that came from AI models, and from
which (the definition: rayalign/lineage/tree.py). `--json` prints the tree as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rayalign.console import say
from rayalign.lineage.text import summary_lines, tree_lines
from rayalign.lineage.tree import build_tree


def add_parser(commands) -> None:
    lineage = commands.add_parser("lineage", help="what a run came from: parent runs, base models, each dataset's "
                                  "origin and hash, and the share of its training signal from AI models",
                                  description=__doc__.split("\n\n")[0].replace("\n", " "))
    lineage.add_argument("run", metavar="RUN", help="a run folder (runs/<name>)")
    lineage.add_argument("--json", action="store_true", help="print the tree as JSON")
    lineage.set_defaults(handler=lineage_handler)


def lineage_handler(args: argparse.Namespace) -> int:
    folder = Path(args.run)
    if not folder.is_dir():
        raise FileNotFoundError(f"{args.run}: no such run folder")
    tree = build_tree(folder)
    if args.json:
        say(json.dumps(tree, indent=1))
    else:
        say("\n".join(tree_lines(tree) + [""] + summary_lines(tree)))
    return 0 if tree["kind"] == "run" else 1
