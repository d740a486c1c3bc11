"""A YAML file composed into nodes (which keep their lines), every failure a DataError naming the line.

A leading UTF-8 byte-order mark is skipped; a byte that is not UTF-8, a syntax error, or nesting
deeper than MAX_DEPTH (which would exhaust the composer's recursion) names the line it is on.
The depth is measured on the scanner's tokens, which are read without recursion; an integer of
more digits than Python converts is named by its line too.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from rayalign.data.readers import DataError, decode_utf8

MAX_DEPTH = 100
# libyaml's scanner when PyYAML has it: the pure-Python one is quadratic in the depth of `[[[...`
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
OPENS = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken, yaml.FlowMappingStartToken,
         yaml.FlowSequenceStartToken)
CLOSES = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


def compose_text(text: str, source: str) -> yaml.Node | None:
    """The composed tree of `text` (None when it holds no document)."""
    try:
        depth = 0
        for token in yaml.scan(text, Loader=LOADER):
            depth += isinstance(token, OPENS) - isinstance(token, CLOSES)
            if depth > MAX_DEPTH:
                raise DataError(source, token.start_mark.line + 1, None,
                                f"not usable YAML (nested more than {MAX_DEPTH} deep)")
        return yaml.compose(text, Loader=LOADER)
    except yaml.YAMLError as exc:
        raise _named(exc, text, source) from None


def load_text(text: str, source: str) -> object:
    """The values of `text` as `yaml.safe_load` builds them, after the checks of `compose_text`;
    a tag it cannot build (`!!python/object`, `=`) is a DataError naming the line too."""
    node = compose_text(text, source)
    if node is None:
        return None
    try:
        return LOADER("").construct_document(node)  # built from the tree composed above, not parsed again
    except yaml.YAMLError as exc:
        raise _named(exc, text, source) from None
    except ValueError:  # an integer of more digits than Python converts (4300): name its line
        line = next((token.start_mark.line + 1 for token in yaml.scan(text, Loader=LOADER)
                     if isinstance(token, yaml.ScalarToken) and len(token.value) > 4000), None)
        raise DataError(source, line, None, "not usable YAML (a number with too many digits)") from None


def _named(exc: yaml.YAMLError, text: str, source: str) -> DataError:
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow: named by its position
        return DataError(source, text.count("\n", 0, exc.position) + 1, None,
                         f"not valid YAML (character #x{exc.character:04x} is not allowed)")
    mark = getattr(exc, "problem_mark", None)
    return DataError(source, mark.line + 1 if mark else None, None, f"not valid YAML ({exc})")


def compose_file(path: Path, source: str | None = None) -> yaml.Node | None:
    """The composed tree of a YAML file, named `source` (default: the path) in errors."""
    source = source or str(path)
    return compose_text(decode_utf8(path.read_bytes(), source), source)


def load_file(path: Path, source: str | None = None) -> object:
    """The values of a YAML file as `load_text` builds them, named `source` (default: the path)."""
    source = source or str(path)
    return load_text(decode_utf8(path.read_bytes(), source), source)
