"""The filters of synthetic data generation on hand-made items: each filter's decisions and
reasons, ROUGE-L against a hand computation (and rouge-score, where installed), the hooks for a
judge score and a verifier, and the chain's yield table (the rows add up)."""

from __future__ import annotations

import math
import random

import pytest

from rayalign.data.sdg_chain import Decision, FilterChain, default_filters
from rayalign.data.sdg_dedup import NearDuplicateFilter, NoveltyFilter, rouge_l, shingles
from rayalign.data.sdg_filters import (
    BlacklistFilter,
    FormatFilter,
    LengthFilter,
    QualityFilter,
    RefusalFilter,
    RepetitionFilter,
    VerifyFilter,
    words,
)


def item(instruction, answer=None, **extra):
    out = {"instruction": instruction, **extra}
    if answer is not None:
        out["answer"] = answer
    return out


# ---- ROUGE-L and novelty ----------------------------------------------------------------

def test_words_are_rouge_score_tokens():
    assert words("Hello, World! It's 3pm -- naïve") == ["hello", "world", "it", "s", "3pm", "na", "ve"]


def test_rouge_l_by_hand():
    # "the cat sat on the mat" vs "the cat lay on a mat": 6 and 6 words,
    # LCS = "the cat on mat" (4 words) -> F = 2*4 / (6+6) = 2/3.
    assert rouge_l("The cat sat on the mat.", "the cat lay on a mat") == pytest.approx(2 / 3)
    # "write a poem about the sea" (6) vs "write a short poem about the ocean" (7):
    # LCS = "write a poem about the" (5) -> F = 2*5 / 13.
    assert rouge_l("Write a poem about the sea.", "Write a short poem about the ocean!") == pytest.approx(10 / 13)
    # Reversed order: the LCS is one word -> 2*1 / 8.
    assert rouge_l("a b c d", "d c b a") == pytest.approx(0.25)
    assert rouge_l("", "anything") == 0.0


def test_rouge_l_matches_rouge_score():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pairs = [("Give three tips for staying healthy.", "What are three tips to stay healthy?"),
             ("Explain photosynthesis to a child", "Explain to a child how photosynthesis works"),
             ("List the planets in order", "the the the planets planets order"),
             ("Sort 5, 3 and 9 ascending", "Sort 9, 3, 5 in descending order")]
    for a, b in pairs:
        assert rouge_l(a, b) == pytest.approx(scorer.score(a, b)["rougeL"].fmeasure)


def test_novelty_rejects_a_paraphrase_and_keeps_a_new_task():
    novelty = NoveltyFilter()
    novelty.remember(item("Write a short poem about the sea and the moon."))
    # 10 vs 10 words, LCS 9 ("write a short poem about the sea and the"): F = 18/20 = 0.9.
    verdict = novelty.check(item("Write a short poem about the sea and the stars."))
    assert not verdict.passed and verdict.score == pytest.approx(0.9)
    assert "ROUGE-L 0.90 >= 0.7" in verdict.reason and "the moon" in verdict.reason
    assert novelty.check(item("Explain how vaccines train the immune system.")).passed


def test_novelty_threshold_is_strict():
    novelty = NoveltyFilter(threshold=0.7)
    novelty.remember(item("a b c d e f g h i j"))
    assert not novelty.check(item("a b c d e f g x y z")).passed  # LCS 7 of 10+10: F = 0.7
    assert novelty.check(item("a b c d e f u v x y")).passed  # LCS 6: F = 0.6


def test_novelty_prefilter_loses_nothing():
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(60)]
    items = [item(" ".join(rng.choices(vocab, k=rng.randint(3, 12)))) for _ in range(300)]
    for i in range(0, 300, 7):  # near copies: one word replaced
        tokens = items[i // 2]["instruction"].split()
        tokens[rng.randrange(len(tokens))] = "zz"
        items[i] = item(" ".join(tokens))
    fast, full = NoveltyFilter(), NoveltyFilter(prefilter=False)
    kept = []
    for it in items:
        brute = all(rouge_l(it["instruction"], k) < 0.7 for k in kept)
        assert fast.check(it).passed == full.check(it).passed == brute
        if brute:
            kept.append(it["instruction"])
            fast.remember(it)
            full.remember(it)
    assert 30 < len(kept) < 290  # both kinds of decision were exercised


# ---- near-duplicates ------------------------------------------------------------------

def test_minhash_catches_a_near_copy():
    original = ("Summarize the main causes of the French Revolution in three short bullet points "
                "that a high school student can remember before the exam")
    near = ("Summarize the main reasons for the French Revolution in three short bullet points "
            "that a high school student could remember before the exam")
    # 23 words, 22 distinct bigrams each; 3 words changed (causes/of next to each other, can)
    # kill 3 + 2 bigrams: 17 shared of 22 + 5 = 27, Jaccard 17/27 = 0.63.
    a, b = shingles(original, 2), shingles(near, 2)
    assert len(a) == len(b) == 22 and len(a & b) / len(a | b) == pytest.approx(17 / 27)
    dedup = NearDuplicateFilter()
    dedup.remember(item(original))
    verdict = dedup.check(item(near))
    assert not verdict.passed and verdict.score == pytest.approx(17 / 27)
    assert "Jaccard 0.63" in verdict.reason
    assert not dedup.check(item(original.upper() + "!")).passed  # same words: Jaccard 1
    assert dedup.check(item("Write a haiku about autumn leaves falling on a quiet pond")).passed


def test_minhash_threshold_and_fields_are_configurable():
    strict = NearDuplicateFilter(threshold=0.9, fields=("instruction", "answer"))
    strict.remember(item("Name a primary colour", "Red is a primary colour of paint"))
    # Same instruction, another answer: the joined text differs enough at 0.9.
    assert strict.check(item("Name a primary colour", "Blue is one of them")).passed
    assert not strict.check(item("Name a primary colour", "Red is a primary colour of paint")).passed


# ---- rule filters ---------------------------------------------------------------------

def test_blacklist():
    blacklist = BlacklistFilter()
    assert "'draw'" in blacklist.check(item("Draw a cat sitting on a sofa")).reason
    assert "'go to'" in blacklist.check(item("Tell me how to go  to the station")).reason
    assert not blacklist.check(item("Describe this IMAGE in detail")).passed
    assert blacklist.check(item("Explain the word mapping to a child")).passed  # whole words only
    assert BlacklistFilter(["sql"]).check(item("Draw a cat")).passed
    assert not BlacklistFilter(["sql"]).check(item("Write SQL for this")).passed


def test_refusal():
    refusal = RefusalFilter()
    assert not refusal.check(item("Tell me a joke", "I'm sorry, but I cannot do that.")).passed
    assert not refusal.check(item("Tell me a joke", "I\u2019m sorry, no.")).passed  # curly apostrophe
    assert "As an AI" in refusal.check(item("Tell me a joke", "As an AI language model, I ...")).reason
    assert refusal.check(item("Tell me a joke", "Why did the chicken cross the road?")).passed
    assert refusal.check(item("Tell me a joke", "x " * 150 + "I cannot stop laughing")).passed  # past the window
    pair = {"instruction": "Tell me a joke", "chosen": "A pun.", "rejected": "I cannot help with that."}
    assert refusal.check(pair).passed  # a refusing rejected answer is a fine negative
    assert "chosen refuses" in refusal.check({**pair, "chosen": "As an AI, no."}).reason


def test_repetition():
    repetition = RepetitionFilter()
    verdict = repetition.check(item("Name three rivers in Europe.", "name three rivers in europe"))
    assert not verdict.passed and "equals the instruction" in verdict.reason
    # 5 of the answer's 6 words are an in-order copy of the instruction: 83% >= 80%.
    copy = repetition.check(item("Name three rivers in Europe.", "Name three rivers in Europe, please."))
    assert copy.reason == "answer is 83% a copy of the instruction" and copy.score == pytest.approx(5 / 6)
    assert repetition.check(item("Name three rivers in Europe.",
                                 "Three rivers in Europe are the Danube, the Rhine and the Seine.")).passed


def test_length():
    length = LengthFilter(max_answer_words=5)
    assert length.check(item("Name three rivers", "Danube")).reason == "instruction: 3 words < 4"
    assert length.check(item("word " * 151, "ok")).reason == "instruction: 151 words > 150"
    assert length.check(item("Name three rivers please", "   ")).reason == "answer: 0 words < 1"
    assert length.check(item("Name three rivers please", "a b c d e f")).reason == "answer: 6 words > 5"
    assert length.check(item("Name three rivers please", "Danube, Rhine, Seine")).passed
    pair = {"instruction": "Name three rivers please", "chosen": "Danube", "rejected": ""}
    assert length.check(pair).reason == "rejected: 0 words < 1"


def test_format():
    fmt = FormatFilter()
    assert "no instruction" in fmt.check({"answer": "x"}).reason
    assert "no instruction" in fmt.check(item("   ")).reason
    assert fmt.check(item("Say hi", 3)).reason == "answer is int, not a string"
    assert "both chosen and rejected" in fmt.check(item("Say hi", chosen="hi")).reason
    assert fmt.check(item("Say hi", "hi")).passed


# ---- hooks ----------------------------------------------------------------------------

def test_quality_hook():
    judge = QualityFilter(lambda it: len(it["answer"]) / 10, threshold=0.5, name="judge")
    assert judge.name == "judge"
    low = judge.check(item("Say hi", "hi"))
    assert not low.passed and low.score == pytest.approx(0.2) and low.reason == "score 0.2 < 0.5"
    high = judge.check(item("Say hi", "hello there"))
    assert high.passed and high.score == pytest.approx(1.1)
    precomputed = QualityFilter(threshold=3, key="judge_score")
    assert precomputed.check(item("Say hi", judge_score=4)).passed
    assert not precomputed.check(item("Say hi", judge_score=2)).passed
    assert precomputed.check(item("Say hi", judge_score=math.nan)).reason == "score is NaN"
    with pytest.raises(KeyError, match="judge_score"):
        precomputed.check(item("Say hi"))


def test_verify_hook():
    def starts_with_yes(it):
        if "prefix" not in it:
            return None  # not verifiable
        return it["answer"].startswith(it["prefix"])

    verify = VerifyFilter(starts_with_yes)
    assert verify.check(item("Is water wet?", "Yes, it is.", prefix="Yes")).passed
    assert verify.check(item("Is water wet?", "No.", prefix="Yes")).reason == "verifier returned False"
    assert verify.check(item("Is water wet?", "No.")).passed
    broken = VerifyFilter(lambda it: it["missing"], name="rules")
    assert broken.check(item("x")).reason == "verifier raised KeyError: 'missing'"


# ---- the chain and its yield table ----------------------------------------------------

def test_chain_yield_table_adds_up():
    filters = default_filters(verify=lambda it: it.get("ok"), quality_key="q", quality_threshold=0.5)
    chain = FilterChain(filters)
    items = [
        item("Give three tips for staying healthy this winter", "Sleep, eat well, move.", q=0.9),
        item("Give three tips for staying healthy this winter", "Sleep more.", q=0.9),  # near copy
        # bigram Jaccard 3/13 with the first (MinHash passes it), ROUGE-L 14/18 (novelty does not)
        item("Give me three good tips for staying healthy during winter", "Walk daily.", q=0.9),
        item("Draw a map of your town", "...", q=0.9),  # blacklist
        item("Explain how tides work on Earth", "I'm sorry, I cannot.", q=0.9),  # refusal
        item("Explain how tides work on Earth", "Explain how tides work on Earth.", q=0.9),  # repetition
        item("Hi there", "Hello!", q=0.9),  # length
        {"answer": "orphan"},  # format
        item("Explain how tides work on Earth", "The moon's gravity pulls the oceans.", q=0.1),  # quality
        item("Explain how tides work on Earth", "Wind.", q=0.9, ok=False),  # verify
        item("Explain how tides work on Earth", "The moon's gravity pulls the oceans.", q=0.8),  # kept
        item("List four prime numbers below twenty", "2, 3, 5, 7", q=0.7),  # kept
    ]
    kept = chain.run(items)
    assert [it["answer"] for it in kept] == [
        "Sleep, eat well, move.", "The moon's gravity pulls the oceans.", "2, 3, 5, 7"]
    assert [d.filter for d in chain.decisions] == [
        None, "near_duplicate", "novelty", "blacklist", "refusal", "repetition", "length", "format",
        "quality", "verify", None, None]
    assert all(isinstance(d, Decision) and d.index == i for i, d in enumerate(chain.decisions))
    assert chain.decisions[8].scores["quality"] == pytest.approx(0.1)

    table = chain.yield_table()
    assert [row.filter for row in table] == [f.name for f in filters]
    assert table[0].n_in == len(items) and table[-1].n_out == chain.kept == len(kept)
    for row, following in zip(table, table[1:]):
        assert row.n_in == row.rejected + row.n_out and following.n_in == row.n_out
    assert sum(row.rejected for row in table) == len(items) - len(kept)
    markdown = chain.yield_markdown()
    assert "| filter | in | rejected | out |" in markdown
    assert "| format | 12 | 1 | 11 | 8.3 |" in markdown and "| blacklist | 10 | 1 | 9 | 10.0 |" in markdown
    assert markdown.rstrip().endswith("Kept 3 of 12 items (25.0%).")


def test_only_kept_items_are_remembered():
    chain = FilterChain([NoveltyFilter(), QualityFilter(key="q")])
    first = chain.apply(item("Explain how tides work on Earth", q=0.1))
    again = chain.apply(item("Explain how tides work on Earth", q=0.9))
    assert first.filter == "quality" and again.kept  # the rejected one blocks nothing
    assert chain.apply(item("Explain how tides work on Earth", q=0.9)).filter == "novelty"


def test_prime_remembers_seeds_without_counting_them():
    chain = FilterChain(default_filters())
    chain.prime([item("Write a limerick about a cat who loves jazz", "...")])
    decision = chain.apply(item("Write a limerick about a cat who loves jazz", "There once was a cat."))
    assert decision.filter == "near_duplicate"
    assert chain.yield_table()[0].n_in == 1
    assert FilterChain(default_filters()).yield_markdown().rstrip().endswith("Kept 0 of 0 items.")


def test_chain_rejects_bad_setup():
    with pytest.raises(ValueError, match="repeated: quality"):
        FilterChain([QualityFilter(key="a"), QualityFilter(key="b")])
    with pytest.raises(TypeError, match="item 0 is str"):
        FilterChain(default_filters()).apply("just a string")
