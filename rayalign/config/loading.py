"""Recipes: YAML files (or shipped names) with dotted overrides, validated into a RunConfig.

Unknown keys and wrong types raise `ConfigError` naming the file, the line and the key.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from rayalign.config.run import ConfigError, RunConfig
from rayalign.data.readers import DataError, decode_utf8
from rayalign.data.yaml_files import compose_text, load_text

RECIPES_DIR = Path(__file__).parent.parent / "recipes"


def resolve_recipe(name_or_path: str) -> Path:
    """A path to a YAML file, or the name of a shipped recipe (with or without .yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = path.name.removesuffix(".yaml").removesuffix(".yml")
    shipped = RECIPES_DIR / f"{stem}.yaml"
    if shipped.is_file():
        return shipped
    known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
    raise ConfigError(f"{name_or_path}: no such file, and no shipped recipe of that name (shipped: {known})")


def apply_override(tree: dict, override: str) -> None:
    """Set `a.b.c=value` in a nested dict; the value is parsed as YAML (numbers, lists...)."""
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r}: expected key.path=value")
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
        node = child
    try:  # a syntax error, a hostile depth or a tag YAML cannot build, named
        node[parts[-1]] = load_text(raw, f"override {override!r}") if raw != "" else ""
    except DataError as exc:
        raise ConfigError(str(exc)) from None


def _key_origins(node: yaml.Node, source: str, prefix: tuple = (), seen: set | None = None) -> dict[tuple, str]:
    """Map each key path of a composed YAML mapping to "file, line N". A node reached again
    through an alias is not walked again (aliases of aliases would make the walk exponential)."""
    origins: dict[tuple, str] = {}
    seen = set() if seen is None else seen
    if isinstance(node, yaml.MappingNode) and id(node) not in seen:
        seen.add(id(node))
        for key_node, value_node in node.value:
            path = prefix + (key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value),)
            origins[path] = f"{source}, line {key_node.start_mark.line + 1}"
            origins.update(_key_origins(value_node, source, path, seen))
    return origins


def validation_problems(error: ValidationError) -> str:
    """A pydantic error as one line: each problem's dotted key and message."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in error.errors())


def _describe(error: ValidationError, source: str, origins: dict[tuple, str]) -> str:
    messages = []
    for item in error.errors():
        loc = tuple(str(p) for p in item["loc"])
        key = ".".join(loc) or "(top level)"
        where = next((origins[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in origins), source)
        messages.append(f"{where}: {key}: {item['msg']}")
    return "\n".join(messages)


def load_config(recipe: str, overrides: list[str] = (), method: str | None = None) -> RunConfig:
    """Read a recipe, apply dotted overrides, validate. Errors name file, line and key."""
    path = resolve_recipe(recipe)
    try:  # not UTF-8, not YAML, nested too deeply: named with the line
        text = decode_utf8(path.read_bytes(), str(path))
        root = compose_text(text, str(path))
        tree = load_text(text, str(path)) or {}
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    origins = _key_origins(root, str(path)) if tree else {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections, got {type(tree).__name__}")
    for override in overrides:
        apply_override(tree, override)
        key = tuple(override.partition("=")[0].split("."))
        origins = {path: where for path, where in origins.items() if path[: len(key)] != key}
        origins[key] = f"override {override!r}"
    if method is not None:
        tree.setdefault("method", method)
        if tree["method"] != method:
            raise ConfigError(f"{path}: method is {tree['method']!r}, but this command runs {method!r}")
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(path), origins)) from None


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def save_config(config: RunConfig, path: str | os.PathLike) -> None:
    Path(path).write_text(dump_config(config))
