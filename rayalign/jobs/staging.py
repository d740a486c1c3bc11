"""What travels with a submitted run: its recipe, resolved, and the local files it names.

A run on a cluster cannot read the submitter's files, and a relative path means nothing
there. So the recipe is loaded here (errors name file, line and key before anything is
sent), every local file it names is copied into the job's working directory and named
relatively, and the run folder moves to storage the cluster keeps. The job then runs
exactly the config that was checked here, from `recipe.yaml` in its working directory.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from rayalign.config import RunConfig, dump_config, load_config

RECIPE = "rayalign-job.yaml"  # the resolved recipe, in the job's working directory
INPUTS = "inputs"
# Keys whose strings are never paths to stage.
_NOT_PATHS = {"method", "name", "output_dir"}
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass
class StagedRun:
    """A working directory ready to upload, and the command the job runs in it."""

    workdir: Path
    config: RunConfig
    argv: list[str]                                   # rayalign's arguments in the job
    copied: dict[str, str] = field(default_factory=dict)        # local path -> path in the job
    shared: list[str] = field(default_factory=list)  # folders the cluster must see at that path

    @property
    def run_dir(self) -> str:
        return str(self.config.run_dir)


def stage_run(words: list[str], recipe: str, overrides: list[str], options: list[str], storage: str,
              workdir: Path, include: list[str] = ()) -> StagedRun:
    """Load `recipe` with `overrides` for the command `words` (e.g. ["rlaif", "label"]), put
    it and its local files into `workdir`, and give the run folder a home under `storage`."""
    config = load_config(recipe, overrides, method="_".join(words))
    staged = StagedRun(workdir, config, [])
    workdir.mkdir(parents=True, exist_ok=True)
    tree = config.model_dump(mode="json")
    tree["output_dir"] = str(_kept(config.output_dir, storage))
    tree = _stage_paths(tree, staged, key=None)
    for path in include:
        _copy(path, staged, into=Path(path).name)
    staged.config = RunConfig.model_validate(tree)
    (workdir / RECIPE).write_text(dump_config(staged.config))
    staged.argv = [*words, "--config", RECIPE, *(_stage_option(o, staged) for o in options)]
    return staged


def _kept(output_dir: str, storage: str) -> Path:
    """The run folder's parent on the cluster: absolute as given, else under `storage`."""
    path = Path(output_dir)
    return path if path.is_absolute() else Path(storage).absolute() / path


def _stage_paths(node, staged: StagedRun, key):
    if isinstance(node, dict):
        return {k: (v if k in _NOT_PATHS else _stage_paths(v, staged, k))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_stage_paths(item, staged, key) for item in node]
    if isinstance(node, str) and node and not node.startswith("shipped:"):
        module = _local_module(node)
        if module:
            _copy(module, staged, into=Path(module).name)
            return node
        return _stage_option(node, staged)
    return node


def _stage_option(value: str, staged: StagedRun) -> str:
    """A local file is copied and renamed into the job; a local folder (a model, a run) is too
    big to upload: it is named absolutely, for a cluster that shares this filesystem."""
    path = Path(value)
    try:
        is_file, is_dir = path.is_file(), path.is_dir()
    except OSError:  # a string too long to be a path
        return value
    if is_file:  # a path under this folder keeps its name, so that errors in the job name it as typed
        inside = not path.is_absolute() and ".." not in path.parts
        return _copy(value, staged, into=str(path) if inside else f"{INPUTS}/{path.name}")
    if is_dir and value not in (".", ""):
        staged.shared.append(str(path.absolute()))
        return str(path.absolute())
    return value


def _copy(source: str, staged: StagedRun, into: str) -> str:
    """Copy once; a second file of the same name gets a numbered folder."""
    key = str(Path(source).absolute())
    if key in staged.copied:
        return staged.copied[key]
    target, n = Path(into), 1
    while (staged.workdir / target).exists():
        target = Path(into).parent / str(n) / Path(into).name
        n += 1
    (staged.workdir / target).parent.mkdir(parents=True, exist_ok=True)
    if Path(source).is_dir():
        shutil.copytree(source, staged.workdir / target, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        shutil.copy2(source, staged.workdir / target)
    staged.copied[key] = str(target)
    return str(target)


def _local_module(value: str) -> str | None:
    """For an import path `module:fn` (a reward function, a verifier) whose module is a file or
    package in this folder: that file. The job's working directory is on its import path."""
    if not _IMPORT_PATH.match(value):
        return None
    top = value.split(":")[0].split(".")[0]
    if Path(f"{top}.py").is_file():
        return f"{top}.py"
    if (Path(top) / "__init__.py").is_file():
        return top
    return None
