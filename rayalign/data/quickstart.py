"""The shipped quickstart dataset: verifiable instruction-following tasks and their checker.

It teaches a tiny chat model (SmolLM2-135M-Instruct) to obey constraints that a rule can
verify, so the same prompts serve SFT (with the written answers) and RL (with `check` as
the reward). Every record is written by rule or taken from the hand-made banks and prompt
templates in `rayalign.data.quickstart_banks`; a fixed seed makes `generate` deterministic,
and `python -m rayalign.data.quickstart` regenerates the files in `rayalign/data/shipped/`.

A record is TRL "conversational" plus metadata:

    {"messages": [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": ANSWER}],
     "task": "capital", "check": {"type": "one_word", "answer": "Paris"}}

Check specs (`check(spec, completion)`); "cleaned" means surrounding whitespace, quotes,
backticks and asterisks and one trailing period are removed:
    {"type": "number", "answer": int}      cleaned completion is just that integer in digits
    {"type": "one_word", "answer": str}    cleaned completion is that word (any letter case)
    {"type": "include_word", "word": str}  the word occurs as a whole word (any letter case)
    {"type": "max_words", "n": int}        1 to n whitespace-separated words
    {"type": "lowercase"}                  has a letter and no uppercase letter
    {"type": "starts_with", "prefix": str} stripped completion begins with prefix as a whole word

Held-out split: each bank (and each pool of addition pairs, taken unordered) is shuffled
once with a fixed seed that does not depend on `seed`, and its first fifth is the eval
part, so no country, sentence, question or number pair of eval ever appears in train.

Held-out phrasing: the split "eval_phrasing" asks eval's items with `PHRASING_TEMPLATES`,
which no train or eval prompt uses, so it measures whether what a model learned carries
over to the same constraints worded differently.
"""

from __future__ import annotations

import json
import os
import random
import re

from rayalign.data.quickstart_banks import (
    CAPITALS, INCLUDE_BANK, LOWERCASE_BANK, MAX_WORDS_BANK, ONE_DIGIT_PAIRS, START_BANK,
    PHRASING_TEMPLATES, TEMPLATES, TWO_DIGIT_PAIRS)
from rayalign.data.readers import SHIPPED_DIR

TASKS = ("addition", "capital", "include_word", "max_words", "lowercase", "start_with")
# split -> (the part of each bank its items come from, the templates its prompts use)
SPLITS = {"train": ("train", TEMPLATES), "eval": ("eval", TEMPLATES),
          "eval_phrasing": ("eval", PHRASING_TEMPLATES)}
SHIPPED_SIZES = {"train": 800, "eval": 128}  # the quickstart records and preference pairs
PHRASING_SIZE = 128  # records in the shipped quickstart_eval_phrasing.jsonl
EVAL_FRACTION = 0.2


def _addition(pair, variant, templates):
    a, b = pair if variant < len(templates) else pair[::-1]
    return (templates[variant % len(templates)].format(a=a, b=b), str(a + b),
            {"type": "number", "answer": a + b})


def _capital(item, variant, templates):
    country, capital = item
    return (templates[variant].format(country=country, Country=country[0].upper() + country[1:]),
            capital, {"type": "one_word", "answer": capital})


def _include_word(item, variant, templates):
    topic, word, sentence = item
    return (templates[variant].format(topic=topic, word=word), sentence,
            {"type": "include_word", "word": word})


def _max_words(item, variant, templates):
    question, answer = item
    limits = range(max(3, len(answer.split())), 7)
    n = limits[variant // len(templates) % len(limits)]
    prompt = templates[variant % len(templates)].format(
        n=n, question=question, Question=question[0].upper() + question[1:])
    return prompt, answer, {"type": "max_words", "n": n}


def _lowercase(item, variant, templates):
    thing, sentence = item
    return templates[variant].format(thing=thing), sentence, {"type": "lowercase"}


def _start_with(item, variant, templates):
    question, answer = item
    return (templates[variant].format(question=question), answer,
            {"type": "starts_with", "prefix": "Yes"})


# task -> (item pools, prompt variants per template, render(item, variant, templates)):
# addition asks each pair in both orders, max_words with up to four word limits.
_FAMILIES = {
    "addition": ((ONE_DIGIT_PAIRS, TWO_DIGIT_PAIRS), 2, _addition),
    "capital": ((CAPITALS,), 1, _capital),
    "include_word": ((INCLUDE_BANK,), 1, _include_word),
    "max_words": ((MAX_WORDS_BANK,), 4, _max_words),
    "lowercase": ((LOWERCASE_BANK,), 1, _lowercase),
    "start_with": ((START_BANK,), 1, _start_with),
}

_QUOTES = "\"'`*\u201c\u201d\u2018\u2019"


def _clean(text: str) -> str:
    text = text.strip().strip(_QUOTES).strip()
    text = text[:-1] if text.endswith(".") else text
    return text.strip().strip(_QUOTES).strip()


def check(spec: dict, completion: str) -> bool:
    """Whether `completion` obeys the rule `spec` (see the module docstring for the types)."""
    kind = spec["type"]
    if kind == "number":
        answer = _clean(completion)
        return re.fullmatch(r"[0-9]+", answer) is not None and int(answer) == spec["answer"]
    if kind == "one_word":
        return _clean(completion).casefold() == spec["answer"].casefold()
    if kind == "include_word":
        pattern = r"\b" + re.escape(spec["word"]) + r"\b"
        return re.search(pattern, completion, re.IGNORECASE) is not None
    if kind == "max_words":
        return 1 <= len(completion.split()) <= spec["n"]
    if kind == "lowercase":
        return any(c.isalpha() for c in completion) and not any(c.isupper() for c in completion)
    if kind == "starts_with":
        text, prefix = completion.strip().lstrip(_QUOTES), spec["prefix"]
        return text.startswith(prefix) and re.match(r"\w", text[len(prefix):]) is None
    raise ValueError(f"unknown check type {kind!r}")


def _split_pool(task: str, index: int, pool: list, part: str) -> list:
    items = list(pool)
    random.Random(f"split:{task}:{index}").shuffle(items)
    cut = round(len(items) * EVAL_FRACTION)
    return items[:cut] if part == "eval" else items[cut:]


def _cycle(rng: random.Random, items: list, n_variants: int, k: int) -> list:
    """k (item, variant) pairs: each round uses every item once, in a new order, and
    moves each item to its next variant, so nothing repeats before it must."""
    offsets = [rng.randrange(n_variants) for _ in items]
    picks, round_ = [], 0
    while len(picks) < k:
        order = list(range(len(items)))
        rng.shuffle(order)
        picks += [(items[i], (offsets[i] + round_) % n_variants) for i in order]
        round_ += 1
    return picks[:k]


def split_items(task: str, split: str) -> list:
    """The bank items of `task` that belong to `split`, in their fixed shuffled order."""
    pools, part = _FAMILIES[task][0], SPLITS[split][0]
    return [item for index, pool in enumerate(pools)
            for item in _split_pool(task, index, pool, part)]


def _family_records(task: str, split: str, k: int, seed: int) -> list[tuple[dict, tuple]]:
    pools, per_template, render = _FAMILIES[task]
    part, templates = SPLITS[split][0], SPLITS[split][1][task]
    rng = random.Random(f"{task}:{split}:{seed}")
    records = []
    for index, pool in enumerate(pools):
        share = k // len(pools) + (index < k % len(pools))
        items = _split_pool(task, index, pool, part)
        for item, variant in _cycle(rng, items, per_template * len(templates), share):
            prompt, answer, spec = render(item, variant, templates)
            if not check(spec, answer):
                raise AssertionError(f"{task}: answer {answer!r} fails {spec} for {prompt!r}")
            records.append(({"messages": [{"role": "user", "content": prompt},
                                          {"role": "assistant", "content": answer}],
                             "task": task, "check": spec}, item))
    return records


def generate(split: str, n: int, seed: int = 0) -> list[dict]:
    """n records of `split` (a key of SPLITS), balanced over TASKS, in a seeded order."""
    return [record for record, _ in generate_with_items(split, n, seed)]


def generate_with_items(split: str, n: int, seed: int = 0) -> list[tuple[dict, tuple]]:
    """`generate`'s records, each with the bank item it was written from: an unordered
    number pair, (country, capital), (topic, word, sentence), (question, answer),
    (thing, sentence) or (yes-question, answer)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}, not {split!r}")
    records = []
    for index, task in enumerate(TASKS):
        k = n // len(TASKS) + (index < n % len(TASKS))
        records += _family_records(task, split, k, seed)
    random.Random(f"order:{split}:{seed}").shuffle(records)
    return records


def prompt_messages(record: dict) -> list[dict]:
    """The record's messages without the final assistant turn (the prompt for RL)."""
    messages = record["messages"]
    return list(messages[:-1] if messages and messages[-1]["role"] == "assistant" else messages)


def write_splits(folder: str, stem: str, make, seed: int = 0,
                 sizes: dict[str, int] = SHIPPED_SIZES) -> dict[str, str]:
    """Write {stem}_{split}.jsonl of n records from make(split, n, seed) into folder for each
    split and n in sizes (by default train and eval); returns {split: path}."""
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for split, n in sizes.items():
        paths[split] = os.path.join(folder, f"{stem}_{split}.jsonl")
        with open(paths[split], "w", encoding="utf-8", newline="\n") as f:
            for record in make(split, n, seed):
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return paths


def write_shipped(folder: str, seed: int = 0) -> dict[str, str]:
    """Write quickstart_{train,eval,eval_phrasing}.jsonl into folder; returns {split: path}."""
    sizes = {**SHIPPED_SIZES, "eval_phrasing": PHRASING_SIZE}
    return write_splits(folder, "quickstart", generate, seed, sizes)


if __name__ == "__main__":
    for split, path in write_shipped(SHIPPED_DIR).items():
        print(f"{split}: {path}")
