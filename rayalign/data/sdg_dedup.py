"""Novelty and near-duplicate filters: each new item against every item kept so far.

- `NoveltyFilter`: ROUGE-L F-measure of the new instruction against each kept one must be
  below `threshold` (0.7), as in self-instruct. ROUGE-L's F-measure on word sequences of
  lengths m and n is 2·LCS/(m+n), which is exactly rapidfuzz's normalized Indel similarity
  (Indel distance = m + n - 2·LCS). So each kept instruction is stored as a string with one
  code point per distinct word (words no kept text has all map to one code point that none
  holds), and rapidfuzz's `process.extractOne` scans the candidates in C++ with a
  bit-parallel LCS and the threshold as cutoff; the best is rescored exactly with integers.
  The candidates come from a prefix filter, as in similarity joins, that loses no match:
  F >= t needs LCS >= L = ceil(t·m/(2-t)) for a query of m words whatever the other length,
  so at least L of the query's word positions are matched and any m-L+1 of them include a
  matched one; the candidates are the kept texts holding one of the query's m-L+1 rarest
  words (shortest lists in an inverted index; unseen words cost nothing).
- `NearDuplicateFilter`: MinHash-LSH (datasketch) over word n-gram shingles; LSH candidates
  are confirmed with the exact Jaccard similarity of the shingle sets, so a rejection never
  rests on an estimate. Because false candidates cost only a set intersection, the LSH bands
  are tuned for recall (datasketch's weights 0.1 on false positives, 0.9 on false negatives:
  with 128 permutations at threshold 0.5, a pair at Jaccard 0.5 is a candidate with
  probability 0.87, at 0.55 with 0.95, against 0.55 and 0.73 with the even default). LSH is
  still probabilistic: a pair near the threshold can be missed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from datasketch import MinHash, MinHashLSH
from rapidfuzz import process
from rapidfuzz.distance import Indel, LCSseq

from rayalign.data.sdg_filters import PASS, Filter, Verdict, reject, words

_UNSEEN = "\x00"  # the code point of every word no kept item has
_SURROGATES = 0xD800, 0xE000
_MAX_WORDS = 0x10FFFF - (_SURROGATES[1] - _SURROGATES[0])


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F-measure of two texts on `words()` tokens: 2·LCS/(m+n); 0 if either is empty."""
    ta, tb = words(a), words(b)
    if not ta or not tb:
        return 0.0
    return 2 * LCSseq.similarity(ta, tb) / (len(ta) + len(tb))


class _WordCodes:
    """Distinct words as code points 1, 2, ... (skipping the surrogates, which are not text)."""

    def __init__(self):
        self.codes: dict[str, str] = {}

    def encode(self, tokens: list[str], grow: bool) -> str:
        if not grow:
            return "".join([self.codes.get(t, _UNSEEN) for t in tokens])
        out = []
        for token in tokens:
            code = self.codes.get(token)
            if code is None:
                n = len(self.codes) + 1
                if n > _MAX_WORDS:
                    raise ValueError(f"more than {_MAX_WORDS} distinct words: novelty cannot encode them")
                code = chr(n if n < _SURROGATES[0] else n + _SURROGATES[1] - _SURROGATES[0])
                self.codes[token] = code
            out.append(code)
        return "".join(out)


class NoveltyFilter(Filter):
    """Rejects an item whose `field` has ROUGE-L >= `threshold` with any kept item's.
    `prefilter=False` scans every kept text (same decisions, slower)."""

    name = "novelty"

    def __init__(self, threshold: float = 0.7, field: str = "instruction", prefilter: bool = True):
        self.threshold = threshold
        self.field = field
        self.prefilter = prefilter and threshold > 0
        self._codes = _WordCodes()
        self._kept: list[str] = []  # encoded kept texts
        self._texts: list[str] = []  # the same, as written (for the reasons)
        self._index: dict[str, list[int]] = {}  # word code -> positions in _kept

    def __len__(self) -> int:
        return len(self._kept)

    def _candidates(self, query: str) -> list[int] | None:
        """Positions in _kept that can reach the threshold; None: all of them."""
        if not self.prefilter:
            return None
        t, m = self.threshold, len(query)
        need = max(math.ceil(t * m / (2 - t) - 1e-9), 1)  # the least LCS that can reach t
        lists = sorted((self._index.get(code, ()) for code in query), key=len)[: m - need + 1]
        if sum(map(len, lists)) >= len(self._kept) // 2:
            return None
        return list(set().union(*lists))

    def check(self, item: dict) -> Verdict:
        tokens = words(item[self.field])
        if not tokens or not self._kept:
            return PASS
        query = self._codes.encode(tokens, grow=False)
        positions = self._candidates(query)
        choices = self._kept if positions is None else [self._kept[i] for i in positions]
        # A hair under the threshold so float rounding cannot hide a match; rescored below.
        hit = process.extractOne(query, choices, scorer=Indel.normalized_similarity,
                                 score_cutoff=max(self.threshold - 1e-9, 0.0)) if choices else None
        if hit is None:
            return PASS  # nothing within reach of the threshold; the exact maximum is not computed
        index = hit[2] if positions is None else positions[hit[2]]
        kept = self._kept[index]
        score = 2 * LCSseq.similarity(query, kept) / (len(query) + len(kept))
        if score < self.threshold:
            return Verdict(score=score)
        return reject(f"ROUGE-L {score:.2f} >= {self.threshold:g} with kept {self._texts[index][:80]!r}", score)

    def remember(self, item: dict) -> None:
        tokens = words(item[self.field])
        if not tokens:
            return
        encoded = self._codes.encode(tokens, grow=True)
        for code in set(encoded):
            self._index.setdefault(code, []).append(len(self._kept))
        self._kept.append(encoded)
        self._texts.append(item[self.field])


def shingles(text: str, n: int) -> set[str]:
    """The set of word n-grams of `text` (`words()` tokens); a text shorter than n words is
    one shingle of all its words; an empty text has none."""
    tokens = words(text)
    if len(tokens) < n:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


class NearDuplicateFilter(Filter):
    """Rejects an item whose shingles (word `ngram`s of its `fields`, joined) have Jaccard
    similarity >= `threshold` with a kept item's. Defaults suit short instructions: bigrams
    and 0.5 (a 15-word instruction with two words changed, apart, shares 10 of 18 bigrams:
    0.56). For long texts (answers) use longer shingles (3-5 words)."""

    name = "near_duplicate"

    def __init__(self, threshold: float = 0.5, ngram: int = 2, num_perm: int = 128,
                 fields: Iterable[str] = ("instruction",), seed: int = 1,
                 lsh_weights: tuple[float, float] = (0.1, 0.9)):
        self.threshold = threshold
        self.ngram = ngram
        self.num_perm = num_perm
        self.fields = tuple(fields)
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=lsh_weights)
        self._permutations = MinHash(num_perm=num_perm, seed=seed).permutations
        self._kept: list[frozenset[str]] = []
        self._texts: list[str] = []
        self._last: tuple[dict, frozenset[str], MinHash | None] | None = None

    def __len__(self) -> int:
        return len(self._kept)

    def _text(self, item: dict) -> str:
        return "\n".join(item[f] for f in self.fields if isinstance(item.get(f), str))

    def _sketch(self, item: dict) -> tuple[frozenset[str], MinHash | None]:
        if self._last is not None and self._last[0] is item:
            return self._last[1], self._last[2]
        sh = frozenset(shingles(self._text(item), self.ngram))
        if not sh:
            return sh, None
        mh = MinHash(num_perm=self.num_perm, permutations=self._permutations, scheme="affine32")
        mh.update_batch([s.encode() for s in sh])
        self._last = (item, sh, mh)
        return sh, mh

    def check(self, item: dict) -> Verdict:
        sh, mh = self._sketch(item)
        if mh is None:
            return PASS
        best, best_index = 0.0, -1
        for index in self._lsh.query(mh):
            other = self._kept[index]
            jaccard = len(sh & other) / len(sh | other)
            if jaccard > best:
                best, best_index = jaccard, index
        if best >= self.threshold:
            return reject(f"Jaccard {best:.2f} >= {self.threshold:g} with kept {self._texts[best_index][:80]!r}", best)
        return PASS if best_index < 0 else Verdict(score=best)  # the closest LSH candidate's

    def remember(self, item: dict) -> None:
        sh, mh = self._sketch(item)
        if mh is None:
            return
        self._lsh.insert(len(self._kept), mh, check_duplication=False)
        self._kept.append(sh)
        self._texts.append(self._text(item))
        self._last = None
