"""The embedding near-duplicate filter (all-MiniLM-L6-v2, rayalign/data/sdg_embed.py) over a few
thousand English instructions: items/s, and what it catches that MinHash and novelty pass.

The items: 20 task templates ("Write a short poem about {t}.", "Explain {t} to a ten-year-old.",
...) times 152 topics; `--items` of them, where one in `--paraphrase-every` is instead a
paraphrase of an earlier item: the same topic in the template's hand-written rewording
("Compose a brief poem on {t}.", "Describe {t} in words a child would understand.", ...), which
shares few words with it. Seeded, so every run filters the same items.

- embedding alone, with a threshold above 1 (nothing rejected): seconds and items/s (embedded in
  batches per chunk of 256, then checked one by one against all earlier items), and from each
  item's highest cosine with the earlier ones, how many paraphrases and how many other items
  would be rejected at 0.85, 0.9 and 0.95;
- the same on the first `--single-items` items with chunks of one item (embedded one at a time);
- each paraphrase against its own original: how many pairs MinHash's bigram Jaccard (>= 0.5),
  novelty's ROUGE-L (>= 0.7) and the cosine (>= 0.9) would reject, and how many only the cosine.
  (The chain of all three is not timed here: the originals share a template with 151 others, so
  MinHash alone rejects most of them; the lexical filters' speed is bench/sdg_filters.py's.)

On a shared CPU, torch's threads spin against other processes, which hits one-at-a-time
embedding hardest: `--threads 1` there. `torch_threads` and `load_average` are in the output.

Run:     .venv/bin/python bench/sdg_embed.py [--items 3000 --paraphrase-every 10 --single-items 100]
Needs:   the embed extra (scripts/setup.sh installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

import torch
from sdg_filters import run_chain

from rayalign.data.sdg_chain import FilterChain
from rayalign.data.sdg_dedup import rouge_l, shingles
from rayalign.data.sdg_embed import EmbeddingFilter, load_minilm

TEMPLATES = [
    ("Write a short poem about {t}.", "Compose a brief poem on {t}."),
    ("Explain {t} to a ten-year-old.", "Describe {t} in words a child would understand."),
    ("List three interesting facts about {t}.", "Give me three fun facts on {t}."),
    ("Summarize the history of {t} in one paragraph.", "Give a one-paragraph overview of how {t} developed."),
    ("What are the pros and cons of {t}?", "List the advantages and disadvantages of {t}."),
    ("Suggest a catchy name for a blog about {t}.", "Come up with a memorable title for a blog on {t}."),
    ("Write a tweet announcing a workshop on {t}.", "Draft a short social media post promoting a {t} workshop."),
    ("Give five quiz questions about {t}.", "Create a five-question quiz on {t}."),
    ("What do people often get wrong about {t}?", "Explain the most common misconceptions about {t}."),
    ("Write a dialogue between two friends arguing about {t}.", "Script a conversation where two friends debate {t}."),
    ("Recommend three books for a beginner interested in {t}.", "Which three books would you suggest to a newcomer to {t}?"),
    ("How has {t} changed in the last twenty years?", "Describe how {t} has evolved over the past two decades."),
    ("Write an opening sentence for an essay on {t}.", "Draft the first line of an essay about {t}."),
    ("Give a one-sentence definition of {t}.", "Define {t} in a single sentence."),
    ("Propose a research question about {t}.", "Suggest a question a researcher could study about {t}."),
    ("Write a limerick about {t}.", "Compose a funny five-line rhyme on the subject of {t}."),
    ("What careers are related to {t}?", "Name some jobs connected to {t}."),
    ("Outline a beginner's lesson plan on {t}.", "Draft a lesson plan that introduces {t} to novices."),
    ("Why is {t} important for society?", "Explain the significance of {t} to society."),
    ("Write a haiku about {t}.", "Compose a haiku on the theme of {t}."),
]

TOPICS = """volcanoes, honeybees, black holes, the printing press, urban gardening, solar energy, chess,
jazz music, the Roman Empire, photosynthesis, machine learning, coral reefs, the stock market, origami,
marathon running, coffee, climate change, the human heart, medieval castles, electric cars, sourdough
bread, the Olympic Games, glaciers, cryptography, penguins, the French Revolution, recycling, yoga,
quantum computing, the Amazon rainforest, vaccines, board games, the Moon landing, tea ceremonies,
earthquakes, public libraries, wind turbines, the Silk Road, octopuses, podcasts, meditation, the
Renaissance, desert ecosystems, 3D printing, sleep, volunteering, the water cycle, ancient Egypt,
skateboarding, bird migration, minimalism, the immune system, street food, renewable energy, the
internet, sign language, comets, beekeeping, bicycles, the Great Wall of China, mushrooms, video games,
opera, tornadoes, the periodic table, friendship, remote work, lighthouses, dinosaurs, knitting, rivers,
antibiotics, the Industrial Revolution, poetry slams, hot air balloons, bamboo, space stations, rainbows,
glassblowing, language learning, kindness, wolves, submarines, chocolate, democracy,
fireflies, pottery, trains, the blues, thunderstorms, elephants, typography, the Sahara, mountaineering,
wetlands, jellyfish, robotics, fairy tales, the Arctic, ballet, windmills, honey, the Milky Way, sharks,
city planning, photography, tides, the violin, soil, cheese making, the Vikings, carnivorous plants,
nutrition, cartography, the Panama Canal, sea turtles, stand-up comedy, public transport, owls,
calligraphy, hurricanes, the Beatles, rock climbing, tulips, the brain, sustainable fashion, kites,
gravity, the samurai, whales, graphic novels, camping, solar eclipses, spices, the Nile, first aid,
bridges, bonsai trees, the theory of evolution, astronauts, rice farming, mosaics, time zones,
dolphins, cloud computing, folk dances, the Titanic, bats, fermentation, museums, ants, lightning""".split(",")
TOPICS = [" ".join(t.split()) for t in TOPICS]


def make_items(n: int, paraphrase_every: int, seed: int = 0) -> list[dict]:
    """`n` items; one in `paraphrase_every` paraphrases an earlier original (`paraphrase` marks it)."""
    rng = random.Random(seed)
    combos = [(i, t) for i in range(len(TEMPLATES)) for t in TOPICS]
    rng.shuffle(combos)
    originals, items = iter(combos), []
    for i in range(n):
        if i and i % paraphrase_every == 0:
            template, topic = rng.choice([it["combo"] for it in items if not it["paraphrase"]])
            items.append({"instruction": TEMPLATES[template][1].format(t=topic), "combo": (template, topic),
                          "paraphrase": True})
        else:
            template, topic = next(originals)
            items.append({"instruction": TEMPLATES[template][0].format(t=topic), "combo": (template, topic),
                          "paraphrase": False})
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--paraphrase-every", type=int, default=10)
    parser.add_argument("--single-items", type=int, default=100, help="items embedded one at a time")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.items - (args.items - 1) // args.paraphrase_every > len(TEMPLATES) * len(TOPICS):
        parser.error(f"at most {len(TEMPLATES) * len(TOPICS)} originals")
    if args.threads:
        torch.set_num_threads(args.threads)

    items = make_items(args.items, args.paraphrase_every)
    is_paraphrase = [it["paraphrase"] for it in items]
    start = time.perf_counter()
    model = load_minilm()
    result = {"items": len(items), "paraphrases": sum(is_paraphrase), "load_s": round(time.perf_counter() - start, 2),
              "device": str(model.device), "torch_threads": torch.get_num_threads(),
              "load_average": round(os.getloadavg()[0], 2)}

    print(f"[bench] {len(items)} items; embedding alone ...", file=sys.stderr)
    seconds, chain = run_chain([EmbeddingFilter(threshold=2.0, model=model)], items)
    best = [d.scores.get("embedding", 0.0) for d in chain.decisions]
    result.update({"embedding_s": round(seconds, 2), "embedding_items_per_s": round(len(items) / seconds)})
    for t in (0.85, 0.9, 0.95):
        result[f"at_{t:g}_paraphrases_rejected"] = sum(b >= t for b, p in zip(best, is_paraphrase) if p)
        result[f"at_{t:g}_others_rejected"] = sum(b >= t for b, p in zip(best, is_paraphrase) if not p)

    single = items[: args.single_items]
    print(f"[bench] {len(single)} items embedded one at a time ...", file=sys.stderr)
    start = time.perf_counter()
    FilterChain([EmbeddingFilter(threshold=2.0, model=model)], chunk=1).run(single)
    result["single_items_per_s"] = round(len(single) / (time.perf_counter() - start), 1)

    print("[bench] each paraphrase against its original ...", file=sys.stderr)
    pairs = [(TEMPLATES[it["combo"][0]][0].format(t=it["combo"][1]), it["instruction"]) for it in items if it["paraphrase"]]
    embedder = EmbeddingFilter(model=model)
    cosine = (embedder.embed([a for a, _ in pairs]) * embedder.embed([b for _, b in pairs])).sum(dim=1).tolist()
    minhash = [len(shingles(a, 2) & shingles(b, 2)) / len(shingles(a, 2) | shingles(b, 2)) >= 0.5 for a, b in pairs]
    novelty = [rouge_l(a, b) >= 0.7 for a, b in pairs]
    embedding = [c >= 0.9 for c in cosine]
    result.update({
        "pairs_minhash_0.5": sum(minhash), "pairs_novelty_0.7": sum(novelty), "pairs_embedding_0.9": sum(embedding),
        "pairs_embedding_only": sum(e and not (m or n) for e, m, n in zip(embedding, minhash, novelty)),
        "pairs_cosine_median": round(sorted(cosine)[len(cosine) // 2], 3),
    })
    print(json.dumps(result))


if __name__ == "__main__":
    main()
