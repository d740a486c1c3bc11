"""The filter chain of synthetic data generation and its yield table.

`FilterChain(filters)` takes items one at a time and runs the filters in the order given,
stopping at the first that rejects (each filter may first `prepare` a chunk of items at once:
the embedding filter embeds them in batches); an item that passes them all is kept, and only then do
the stateful filters (novelty, near-duplicates) remember it, so an item rejected later in
the chain never blocks its neighbours. Each item gets a `Decision`: kept or the filter that
rejected it, the reason, and the scores the filters that ran gave it. `yield_table()` counts
per filter how many items came in, were rejected and went on; the rows add up (in = rejected
+ out; each row's in is the previous row's out), and `yield_markdown()` renders them for a
dataset card.

`default_filters()` lists the filters in the recommended order: the cheap rule checks first,
then the verifier, then deduplication against what was kept, and the model-based quality
score last, so the judge scores only what survived everything else. The optional embedding
filter (paraphrases: rayalign/data/sdg_embed.py) follows the lexical deduplication, which is
cheaper, so its row in the yield table counts the paraphrases those missed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice

from rayalign.data.sdg_dedup import NearDuplicateFilter, NoveltyFilter
from rayalign.data.sdg_filters import (
    BlacklistFilter,
    Filter,
    FormatFilter,
    LengthFilter,
    MarginFilter,
    QualityFilter,
    RefusalFilter,
    RepetitionFilter,
    VerifyFilter,
)


@dataclass(frozen=True)
class Decision:
    """What the chain did with one item (`index`: its position in the order seen)."""

    index: int
    kept: bool
    filter: str | None = None  # the filter that rejected it; None when kept
    reason: str = ""
    scores: dict[str, float] = field(default_factory=dict)  # filter name -> score, where given


@dataclass(frozen=True)
class YieldRow:
    filter: str
    n_in: int
    rejected: int
    n_out: int


class FilterChain:
    """`chunk`: how many items `run` and `prime` hand to each filter's `prepare` at a time."""

    def __init__(self, filters: Sequence[Filter], chunk: int = 256):
        names = [f.name for f in filters]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"filter names must be unique; repeated: {', '.join(duplicated)}")
        self.filters = list(filters)
        self.chunk = chunk
        self.decisions: list[Decision] = []

    def _prepared_chunks(self, items: Iterable[dict]) -> Iterator[list[dict]]:
        iterator = iter(items)
        while chunk := list(islice(iterator, self.chunk)):
            for f in self.filters:
                f.prepare(chunk)
            yield chunk

    def prime(self, items: Iterable[dict]) -> None:
        """Make the stateful filters remember items without counting them: the seed tasks,
        or the kept items of an earlier run that this one continues."""
        for chunk in self._prepared_chunks(items):
            for item in chunk:
                for f in self.filters:
                    f.remember(item)

    def restore(self, items: Sequence[dict], decisions: Sequence[Decision]) -> None:
        """Take back the decisions made on `items` by an earlier run of the same chain (a
        resumed run): they count in the yield table, and the kept items are remembered."""
        self.prime([item for item, decision in zip(items, decisions) if decision.kept])
        for decision in decisions:
            self.decisions.append(Decision(len(self.decisions), decision.kept, decision.filter, decision.reason,
                                           decision.scores))

    def apply(self, item: dict) -> Decision:
        if not isinstance(item, dict):
            raise TypeError(f"item {len(self.decisions)} is {type(item).__name__}, not a dict")
        scores: dict[str, float] = {}
        decision = None
        for f in self.filters:
            verdict = f.check(item)
            if verdict.score is not None:
                scores[f.name] = verdict.score
            if not verdict.passed:
                decision = Decision(len(self.decisions), False, f.name, verdict.reason, scores)
                break
        if decision is None:
            for f in self.filters:
                f.remember(item)
            decision = Decision(len(self.decisions), True, scores=scores)
        self.decisions.append(decision)
        return decision

    def run(self, items: Iterable[dict]) -> list[dict]:
        """Apply the chain to each item; return the kept ones, in order."""
        return [item for chunk in self._prepared_chunks(items) for item in chunk if self.apply(item).kept]

    @property
    def kept(self) -> int:
        return sum(d.kept for d in self.decisions)

    def yield_table(self) -> list[YieldRow]:
        rejected = {f.name: 0 for f in self.filters}
        for d in self.decisions:
            if not d.kept:
                rejected[d.filter] += 1
        rows, n = [], len(self.decisions)
        for f in self.filters:
            rows.append(YieldRow(f.name, n, rejected[f.name], n - rejected[f.name]))
            n -= rejected[f.name]
        return rows

    def yield_markdown(self) -> str:
        """The yield table as Markdown, with each filter's share of what reached it."""
        lines = ["| filter | in | rejected | out | rejected (% of in) |", "|---|---:|---:|---:|---:|"]
        for row in self.yield_table():
            share = f"{100 * row.rejected / row.n_in:.1f}" if row.n_in else "-"
            lines.append(f"| {row.filter} | {row.n_in} | {row.rejected} | {row.n_out} | {share} |")
        total = len(self.decisions)
        kept = f"{self.kept} of {total} items ({100 * self.kept / total:.1f}%)" if total else "0 of 0 items"
        return "\n".join(lines) + f"\n\nKept {kept}.\n"


def default_filters(*, novelty: float = 0.7, near_duplicate: float = 0.5,
                    length: LengthFilter | None = None, blacklist: Iterable[str] | None = None,
                    verify: Callable[[dict], bool | None] | None = None, verify_required: bool = False,
                    quality: Callable[[dict], float] | None = None, quality_threshold: float = 0.5,
                    quality_key: str | None = None, ranked: bool = False,
                    embedding: float | None = None) -> list[Filter]:
    """The standard chain, cheapest first. `verify` and the quality filter are included only
    when given (`quality`: a score function; or `quality_key`: scores already in the items);
    the margin filter when preference items were `ranked` by a score; the embedding filter
    only with its cosine threshold (`embedding=0.9`: sdg_embed.py)."""
    filters: list[Filter] = [
        FormatFilter(),
        length or LengthFilter(),
        BlacklistFilter() if blacklist is None else BlacklistFilter(blacklist),
        RefusalFilter(),
        RepetitionFilter(),
    ]
    if verify is not None:
        filters.append(VerifyFilter(verify, required=verify_required))
    if ranked:
        filters.append(MarginFilter())
    filters += [NearDuplicateFilter(threshold=near_duplicate), NoveltyFilter(threshold=novelty)]
    if embedding is not None:
        # Imported here: torch and sentence-transformers load only when the filter is asked for.
        from rayalign.data.sdg_embed import EmbeddingFilter

        filters.append(EmbeddingFilter(threshold=embedding))
    if quality is not None or quality_key is not None:
        filters.append(QualityFilter(quality, quality_threshold, key=quality_key or "quality"))
    return filters
