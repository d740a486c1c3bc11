"""Novelty + MinHash filtering of synthetic instructions: rayalign's filters vs self-instruct's
naive ROUGE-L loop.

The items: `--items` instructions made from 20 openers ("Explain", "Write a short", ...) and
6-20 words drawn (Zipf-like, exponent 1) from 5,000 made-up words, so that most are new and
the kept set grows to nearly all of them (the worst case: each item is compared with nearly
every kept one); one in `--copy-every` is a near copy of an earlier item (1-3 words replaced,
or one dropped, or two swapped). Seeded, so every run filters the same items.

- rayalign: a `FilterChain` of `NearDuplicateFilter` (MinHash-LSH, bigrams, 0.5) and
  `NoveltyFilter` (ROUGE-L < 0.7 against every kept instruction) over all the items; the
  time of each filter (check + remember) is summed apart too.
- novelty alone on the first `--subset` items, and self-instruct's loop on the same items:
  each instruction scored with rouge-score's `RougeScorer(["rougeL"]).score` against every
  kept one, kept when the highest F-measure is below 0.7. That loop is quadratic in pure
  Python, so it is run on the first `--naive-items` items only (its decisions must equal
  novelty's there) and its time per pair is extrapolated to the subset's pair count (which
  is exact: both keep the same items, so the pairs are known); `naive_extrapolated` says so.

Run:     .venv/bin/python bench/sdg_filters.py [--items 20000 --subset 2000 --naive-items 400]
Needs:   rouge-score for the baseline (.venv/bin/pip install rouge-score==0.1.2); without it
         the baseline fields are null.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time

from rayalign.data.sdg_chain import FilterChain
from rayalign.data.sdg_dedup import NearDuplicateFilter, NoveltyFilter

OPENERS = ["Explain", "Write a short", "List three", "Describe how", "Summarize", "Give an example of",
           "Compare", "Classify", "Translate into plain words", "Suggest a name for", "Rewrite",
           "What is", "Why does", "How can I", "Create a list of", "Tell me about", "Find the",
           "Plan a", "Propose", "Outline"]


def make_items(n: int, copy_every: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
    vocab = sorted({"".join(rng.choices(syllables, k=rng.randint(1, 3))) for _ in range(8000)})[:5000]
    rng.shuffle(vocab)
    weights = [1 / (rank + 1) for rank in range(len(vocab))]
    items = []
    for i in range(n):
        if i and i % copy_every == 0:
            tokens = rng.choice(items)["instruction"].split()
            edit = rng.random()
            if edit < 0.6:
                for _ in range(rng.randint(1, 3)):
                    tokens[rng.randrange(len(tokens))] = rng.choices(vocab, weights)[0]
            elif edit < 0.8 and len(tokens) > 3:
                del tokens[rng.randrange(len(tokens))]
            else:
                j = rng.randrange(len(tokens) - 1)
                tokens[j], tokens[j + 1] = tokens[j + 1], tokens[j]
            text = " ".join(tokens)
        else:
            text = rng.choice(OPENERS) + " " + " ".join(rng.choices(vocab, weights, k=rng.randint(6, 20))) + "."
        items.append({"instruction": text})
    return items


class Timed:
    """A filter with a stopwatch around its prepare, check and remember."""

    def __init__(self, inner):
        self.inner, self.name, self.seconds = inner, inner.name, 0.0

    def prepare(self, items):
        start = time.perf_counter()
        self.inner.prepare(items)
        self.seconds += time.perf_counter() - start

    def check(self, item):
        start = time.perf_counter()
        try:
            return self.inner.check(item)
        finally:
            self.seconds += time.perf_counter() - start

    def remember(self, item):
        start = time.perf_counter()
        self.inner.remember(item)
        self.seconds += time.perf_counter() - start


def run_chain(filters, items) -> tuple[float, FilterChain]:
    chain = FilterChain(filters)
    start = time.perf_counter()
    chain.run(items)
    return time.perf_counter() - start, chain


def naive_self_instruct(items: list[dict], threshold: float) -> tuple[float, list[bool], int]:
    """self-instruct's loop: every kept instruction scored with rouge-score, keep if max < threshold."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    kept, decisions, pairs = [], [], 0
    start = time.perf_counter()
    for item in items:
        scores = [scorer.score(item["instruction"], other)["rougeL"].fmeasure for other in kept]
        pairs += len(scores)
        keep = not scores or max(scores) < threshold
        decisions.append(keep)
        if keep:
            kept.append(item["instruction"])
    return time.perf_counter() - start, decisions, pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--copy-every", type=int, default=10, help="one item in this many is a near copy")
    parser.add_argument("--subset", type=int, default=2000, help="items for the novelty-vs-rouge-score comparison")
    parser.add_argument("--naive-items", type=int, default=400, help="items the rouge-score loop really runs on")
    args = parser.parse_args()

    items = make_items(args.items, args.copy_every)
    print(f"[bench] {len(items)} items; MinHash + novelty ...", file=sys.stderr)
    minhash, novelty = Timed(NearDuplicateFilter()), Timed(NoveltyFilter())
    seconds, chain = run_chain([minhash, novelty], items)
    table = {row.filter: row.rejected for row in chain.yield_table()}
    result = {
        "items": len(items), "near_copies": (len(items) - 1) // args.copy_every,
        "chain_s": round(seconds, 2), "items_per_s": round(len(items) / seconds),
        "near_duplicate_s": round(minhash.seconds, 2), "novelty_s": round(novelty.seconds, 2),
        "rejected_near_duplicate": table["near_duplicate"], "rejected_novelty": table["novelty"],
        "kept": chain.kept,
    }

    subset = items[: args.subset]
    print(f"[bench] novelty alone on {len(subset)} items ...", file=sys.stderr)
    novelty_s, novelty_chain = run_chain([NoveltyFilter()], subset)
    kept_flags = [d.kept for d in novelty_chain.decisions]
    pairs, n_kept = 0, 0  # the pairs self-instruct's loop scores: each item against all kept before it
    for keep in kept_flags:
        pairs += n_kept
        n_kept += keep
    result.update({"subset_items": len(subset), "novelty_subset_s": round(novelty_s, 3), "subset_pairs": pairs})
    if importlib.util.find_spec("rouge_score") is None:
        result.update({"naive_s": None, "speedup_over_naive": None})
    else:
        naive_n = min(args.naive_items, len(subset))
        print(f"[bench] rouge-score loop on {naive_n} items ...", file=sys.stderr)
        naive_s, naive_flags, naive_pairs = naive_self_instruct(subset[:naive_n], 0.7)
        estimate = naive_s / max(naive_pairs, 1) * pairs if naive_n < len(subset) else naive_s
        result.update({
            "naive_measured_items": naive_n, "naive_measured_s": round(naive_s, 2),
            "naive_us_per_pair": round(1e6 * naive_s / max(naive_pairs, 1), 1),
            "naive_s": round(estimate, 1), "naive_extrapolated": naive_n < len(subset),
            "naive_decisions_match": naive_flags == kept_flags[:naive_n],
            "speedup_over_naive": round(estimate / novelty_s, 1),
        })
    print(json.dumps(result))


if __name__ == "__main__":
    main()
