"""A constitution: named principles, each a critique request, a revision request and, for an AI
labeler, one sentence of what to prefer.

    name: quickstart            # required
    principles:                 # required, a non-empty list
      - name: follows-format    # required, unique
        critique: "..."         # required: asked after an answer ("Does the answer ...?")
        revision: "..."         # required: asked after the critique ("Rewrite the answer ...")
        preference: "..."       # optional: "Prefer the answer that ..." (the labeler's preamble)

`rayalign rlaif revise` critiques and revises answers under principles drawn at random;
`rayalign rlaif label` shows the labeler `Constitution.preamble()`. The file is read with
`yaml.compose`, so every error (a missing or unknown key, a value that is not text, an empty
list, a name used twice) is a DataError naming the file, the line and the field. `shipped:NAME`
is a constitution shipped with rayalign (rayalign/data/shipped/).
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from rayalign.data.readers import DataError, resolve_data_path
from rayalign.data.yaml_files import compose_file

TEXT = "tag:yaml.org,2002:str"
NULL = "tag:yaml.org,2002:null"
TOP_KEYS = ("name", "principles")
PRINCIPLE_KEYS = ("name", "critique", "revision", "preference")
REQUIRED = ("name", "critique", "revision")


@dataclass(frozen=True)
class Principle:
    name: str
    critique: str                # the critique request, a user turn after the answer
    revision: str                # the revision request, a user turn after the critique
    preference: str | None = None


@dataclass(frozen=True)
class Constitution:
    name: str
    path: str                    # as given: a file or shipped:NAME
    principles: tuple[Principle, ...]

    def preamble(self) -> str:
        """What an AI labeler is told before the two answers: every principle's preference
        sentence (else its critique request), numbered."""
        lines = [f"{number}. {p.preference or p.critique}" for number, p in enumerate(self.principles, start=1)]
        return "Judge the answers by these principles:\n" + "\n".join(lines)


class _Reader:
    """Reads the composed YAML tree of one file, raising DataErrors that name its lines."""

    def __init__(self, source: str):
        self.source = source

    def error(self, node: yaml.Node, field: str | None, message: str) -> DataError:
        return DataError(self.source, node.start_mark.line + 1, field, message)

    def mapping(self, node: yaml.Node, field: str | None, known: tuple[str, ...]) -> dict[str, tuple]:
        """{key: (key node, value node)}; a key not in `known`, or given twice, is an error."""
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, field, f"expected a mapping with keys {', '.join(known)}")
        entries: dict[str, tuple] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            where = f"{field}.{key}" if field else key
            if key not in known:
                raise self.error(key_node, where, f"unknown key (expected one of: {', '.join(known)})")
            if key in entries:
                raise self.error(key_node, where, f"given twice (first on line {entries[key][0].start_mark.line + 1})")
            entries[key] = (key_node, value_node)
        return entries

    def text(self, parent: yaml.Node, entries: dict, key: str, field: str | None, required: bool = True
             ) -> str | None:
        where = f"{field}.{key}" if field else key
        if key not in entries or entries[key][1].tag == NULL:
            if required:
                raise self.error(entries[key][0] if key in entries else parent, where, "missing")
            return None
        key_node, value = entries[key]
        if not isinstance(value, yaml.ScalarNode) or value.tag != TEXT:
            kind = {yaml.MappingNode: "a mapping", yaml.SequenceNode: "a list"}.get(type(value))
            raise self.error(key_node, where, f"expected text, got {kind or value.tag.rpartition(':')[2]}")
        if not value.value.strip():
            raise self.error(key_node, where, "empty text")
        return value.value.strip()


def load_constitution(path: str) -> Constitution:
    """Read and validate a constitution file (a path or shipped:NAME)."""
    resolved = resolve_data_path(path)
    reader = _Reader(path)
    root = compose_file(resolved, path)
    if root is None:
        raise DataError(path, None, None, "empty file; a constitution has a name and principles")
    top = reader.mapping(root, None, TOP_KEYS)
    name = reader.text(root, top, "name", None)
    if "principles" not in top:
        raise reader.error(root, "principles", "missing")
    key_node, listed = top["principles"]
    if not isinstance(listed, yaml.SequenceNode) or not listed.value:
        raise reader.error(key_node, "principles", "expected a non-empty list of principles")
    principles, first_seen = [], {}
    for index, node in enumerate(listed.value):
        field = f"principles[{index}]"
        entries = reader.mapping(node, field, PRINCIPLE_KEYS)
        values = {key: reader.text(node, entries, key, field, key in REQUIRED) for key in PRINCIPLE_KEYS}
        if values["name"] in first_seen:
            raise reader.error(entries["name"][1], f"{field}.name", f"{values['name']!r} is also the name of "
                               f"{first_seen[values['name']]}; principle names must be unique")
        first_seen[values["name"]] = field
        principles.append(Principle(**values))
    return Constitution(name, path, tuple(principles))
