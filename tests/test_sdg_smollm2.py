"""The filters on what a real model writes: SmolLM2-135M-Instruct as the self-instruct teacher on
vLLM rollout workers. Greedy tasks from three seeds shown two at a time (six distinct requests
for 24 tasks) repeat themselves, so the near-duplicate and novelty filters must act; what they keep is checked against rouge-score's
own ROUGE-L and exact shingle Jaccard; a blacklist is run over the same real items."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import write_jsonl
from rayalign.config import load_config
from rayalign.data.sdg_chain import FilterChain
from rayalign.data.sdg_filters import BlacklistFilter, words


def read(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def shingles(text: str) -> set:
    tokens = words(text)
    return set(zip(tokens, tokens[1:]))


@pytest.mark.slow
def test_smollm2_items_through_novelty_minhash_and_a_blacklist(ray_cluster, tmp_path):
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer", reason="rouge-score not installed (test extra)")
    from rayalign.pipelines.sdg_generate import run_generate

    seeds = write_jsonl(tmp_path / "seeds.jsonl", [
        {"instruction": "Write one short sentence about a river using only lowercase letters."},
        {"instruction": "What is the capital of Japan? Answer with one word."},
        {"instruction": "Is ice cold? Start your answer with 'Yes'."}])
    config = load_config("sdg_quickstart", [
        f"output_dir={tmp_path}", "name=real", f"data.train={seeds}", "teacher.temperature=0",
        "sdg.answers_per_task=1", "sdg.requests_per_round=24", "sdg.max_rounds=1", "sdg.in_context=2",
        "sdg.generated_in_context=0", "sdg.filters.verify=null", "sdg.filters.verify_required=false",
        "logging.progress=false"])
    report = run_generate(config)
    items = [i for i in read(tmp_path / "real" / "candidates.jsonl") if "round_done" not in i]
    assert len(items) == 24 and all(i["teacher"] == "smollm2-135m-instruct" for i in items)
    table = report["yield"]
    assert table[0]["in"] == 24 and table[-1]["out"] == report["dataset"]["kept"] == sum(i["kept"] for i in items)
    for row, following in zip(table, table[1:]):
        assert row["in"] == row["rejected"] + row["out"] and row["out"] == following["in"]
    rejected = Counter(i["filter"] for i in items if not i["kept"])
    assert rejected["near_duplicate"] + rejected["novelty"] > 0, rejected  # greedy repeats itself

    kept = [i["instruction"] for i in items if i["kept"]]
    seen = kept + [s["instruction"] for s in read(seeds)]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    for a, b in itertools.combinations(seen, 2):
        assert scorer.score(a, b)["rougeL"].fmeasure < 0.7, (a, b)
        union = shingles(a) | shingles(b)
        assert not union or len(shingles(a) & shingles(b)) / len(union) < 0.5, (a, b)

    # A blacklist over the same real tasks: the most common word of them rejects exactly the
    # tasks that contain it, and the table still adds up.
    tasks = [{"instruction": i["instruction"], "answer": i["answer"]} for i in items if i["instruction"]]
    word, _ = Counter(w for t in tasks for w in set(words(t["instruction"])) if len(w) > 3).most_common(1)[0]
    chain = FilterChain([BlacklistFilter([word])])
    survivors = chain.run(tasks)
    assert [t for t in tasks if word not in words(t["instruction"])] == survivors
    assert chain.yield_table()[0].rejected == len(tasks) - len(survivors) > 0
