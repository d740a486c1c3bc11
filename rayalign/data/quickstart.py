"""The shipped quickstart dataset: verifiable instruction-following tasks and their checker.

It teaches a tiny chat model (SmolLM2-135M-Instruct) to obey constraints that a rule can
verify, so the same prompts serve SFT (with the written answers) and RL (with `check` as
the reward). Every record is written by rule or taken from the hand-made banks below; a
fixed seed makes `generate` deterministic, and `python -m rayalign.data.quickstart`
regenerates the files in `rayalign/data/shipped/`.

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
"""

from __future__ import annotations

import json
import os
import random
import re

from rayalign.data.readers import SHIPPED_DIR

TASKS = ("addition", "capital", "include_word", "max_words", "lowercase", "start_with")
SHIPPED_SIZES = {"train": 800, "eval": 128}
EVAL_FRACTION = 0.2

_ADDITION_TEMPLATES = (
    "What is {a} + {b}? Answer with just the number.",
    "Compute {a} + {b}. Reply with only the number.",
    "{a} + {b} = ? Give just the number.",
    "Add {a} and {b}. Answer with just the number.",
)
# Half the addition records use one-digit pairs, half pairs with a two-digit number.
_ONE_DIGIT_PAIRS = [(a, b) for a in range(1, 10) for b in range(a, 10)]
_TWO_DIGIT_PAIRS = [(a, b) for a in range(1, 100) for b in range(max(a, 10), 100)]

_CAPITAL_TEMPLATES = (
    "What is the capital of {country}? Answer with one word.",
    "Name the capital city of {country}. Answer with one word.",
    "Which city is the capital of {country}? Reply with one word only.",
)
_CAPITALS = [  # only capitals that are one word, plainly spelled
    ("the United Kingdom", "London"), ("France", "Paris"), ("Germany", "Berlin"),
    ("Italy", "Rome"), ("Spain", "Madrid"), ("Portugal", "Lisbon"), ("Ireland", "Dublin"),
    ("Greece", "Athens"), ("Austria", "Vienna"), ("Hungary", "Budapest"), ("Poland", "Warsaw"),
    ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"), ("Belgium", "Brussels"), ("the Netherlands", "Amsterdam"),
    ("Switzerland", "Bern"), ("the Czech Republic", "Prague"), ("Romania", "Bucharest"),
    ("Bulgaria", "Sofia"), ("Serbia", "Belgrade"), ("Croatia", "Zagreb"),
    ("Estonia", "Tallinn"), ("Latvia", "Riga"), ("Lithuania", "Vilnius"),
    ("Slovakia", "Bratislava"), ("Russia", "Moscow"), ("Belarus", "Minsk"),
    ("Georgia", "Tbilisi"), ("Armenia", "Yerevan"), ("Turkey", "Ankara"), ("Egypt", "Cairo"),
    ("Morocco", "Rabat"), ("Algeria", "Algiers"), ("Tunisia", "Tunis"), ("Kenya", "Nairobi"),
    ("Nigeria", "Abuja"), ("Ghana", "Accra"), ("Senegal", "Dakar"), ("Uganda", "Kampala"),
    ("Rwanda", "Kigali"), ("Zimbabwe", "Harare"), ("Japan", "Tokyo"), ("China", "Beijing"),
    ("South Korea", "Seoul"), ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"),
    ("Indonesia", "Jakarta"), ("the Philippines", "Manila"), ("Bangladesh", "Dhaka"),
    ("Nepal", "Kathmandu"), ("Pakistan", "Islamabad"), ("Afghanistan", "Kabul"),
    ("Iran", "Tehran"), ("Iraq", "Baghdad"), ("Saudi Arabia", "Riyadh"),
    ("Lebanon", "Beirut"), ("Jordan", "Amman"), ("Qatar", "Doha"), ("Canada", "Ottawa"),
    ("Australia", "Canberra"), ("New Zealand", "Wellington"), ("Peru", "Lima"),
    ("Chile", "Santiago"), ("Venezuela", "Caracas"), ("Cuba", "Havana"),
    ("Ecuador", "Quito"), ("Uruguay", "Montevideo"), ("Jamaica", "Kingston"),
]

_INCLUDE_TEMPLATES = (
    "Write one short sentence about {topic} that includes the word '{word}'.",
    "Write a short sentence about {topic}. Use the word '{word}' in it.",
    "Give me one short sentence about {topic} containing the word '{word}'.",
)
_INCLUDE_BANK = [  # (topic, word, sentence)
    ("the ocean", "blue", "The ocean looks deep blue on a sunny day."),
    ("cats", "sleep", "Cats sleep for most of the day."),
    ("dogs", "loyal", "Dogs are loyal friends to their owners."),
    ("winter", "snow", "Winter often brings cold winds and snow."),
    ("summer", "beach", "In summer many families go to the beach."),
    ("coffee", "morning", "Many people drink coffee every morning."),
    ("the moon", "night", "The moon lights up the sky at night."),
    ("rain", "umbrella", "I carry an umbrella when it looks like rain."),
    ("bread", "oven", "Fresh bread comes out of the oven warm and soft."),
    ("music", "dance", "Good music makes people want to dance."),
    ("trees", "shade", "Tall trees give cool shade in the summer."),
    ("books", "library", "You can borrow books from the library for free."),
    ("birds", "sing", "Birds sing loudly early in the morning."),
    ("the sun", "warm", "The sun keeps our planet warm."),
    ("apples", "red", "Ripe apples can be red, green or yellow."),
    ("bicycles", "wheels", "A bicycle has two wheels and a chain."),
    ("mountains", "climb", "It takes hours to climb a high mountain."),
    ("a garden", "flowers", "Her garden is full of bright flowers."),
    ("the city", "traffic", "The city is loud with traffic at rush hour."),
    ("trains", "station", "The train stops at every station on the line."),
    ("chocolate", "sweet", "Milk chocolate tastes sweet and creamy."),
    ("friendship", "trust", "A strong friendship is built on trust."),
    ("the forest", "quiet", "The forest is quiet early in the morning."),
    ("a river", "flows", "The river flows slowly toward the sea."),
    ("school", "teacher", "Our teacher makes every school day interesting."),
    ("soccer", "goal", "Every soccer team wants to score a goal."),
    ("cooking", "kitchen", "I love cooking dinner in a warm kitchen."),
    ("the stars", "bright", "The stars look bright on a clear night."),
    ("horses", "fast", "Horses can run very fast across open fields."),
    ("fish", "water", "Fish breathe through gills under the water."),
    ("autumn", "leaves", "In autumn the leaves turn orange and fall."),
    ("spring", "green", "In spring the grass turns green again."),
    ("the desert", "dry", "The desert is hot and dry during the day."),
    ("a computer", "keyboard", "I type on my computer with a small keyboard."),
    ("phones", "call", "You can use a phone to call a friend."),
    ("tea", "cup", "She drinks a hot cup of tea before bed."),
    ("the farm", "cows", "The farm has cows, pigs and chickens."),
    ("a birthday", "cake", "We ate chocolate cake at my birthday party."),
    ("the weekend", "rest", "The weekend is a good time to rest."),
    ("exercise", "healthy", "Regular exercise keeps your body healthy."),
    ("the sky", "clouds", "White clouds drifted across the sky."),
    ("a candle", "light", "A small candle gave a soft light in the room."),
    ("snow", "cold", "Snow feels cold and wet in your hands."),
    ("pizza", "cheese", "My favorite pizza has lots of melted cheese."),
    ("the library", "silent", "Everyone stays silent in the library."),
    ("airplanes", "fly", "Airplanes fly high above the clouds."),
    ("the park", "children", "Children play on the swings in the park."),
    ("honey", "bees", "Honey is made by bees from flower nectar."),
    ("the beach", "sand", "The beach has soft white sand."),
    ("a lake", "calm", "The lake was calm and still at dawn."),
    ("painting", "colors", "She mixed bright colors for her painting."),
    ("the night", "dark", "The night was dark and full of stars."),
    ("a storm", "thunder", "We heard loud thunder during the storm."),
    ("gardening", "seeds", "Gardening starts with planting small seeds."),
    ("history", "past", "History teaches us about the past."),
    ("the zoo", "lions", "We saw lions and zebras at the zoo."),
    ("rabbits", "carrots", "Rabbits love to eat fresh carrots."),
    ("a journey", "map", "Bring a map on a long journey."),
    ("ice cream", "melts", "Ice cream melts quickly on a hot day."),
    ("mathematics", "numbers", "Mathematics is the study of numbers and shapes."),
    ("the wind", "strong", "A strong wind blew the hat off his head."),
]

_MAX_WORDS_TEMPLATES = (
    "In at most {n} words, {question}",
    "{Question} Answer in at most {n} words.",
    "Using no more than {n} words, {question}",
)
_MAX_WORDS_BANK = [  # (question, answer of at most 6 words)
    ("what is the sun?", "A star at our center."),
    ("what is water made of?", "Hydrogen and oxygen."),
    ("what do bees make?", "Honey."),
    ("why is the sky blue?", "Air scatters blue light most."),
    ("what is the largest ocean?", "The Pacific Ocean."),
    ("what is the tallest mountain on Earth?", "Mount Everest."),
    ("what is photosynthesis?", "Plants turning sunlight into food."),
    ("what do plants need to grow?", "Sunlight, water and soil."),
    ("who wrote Romeo and Juliet?", "William Shakespeare."),
    ("what is a shadow?", "A dark shape blocking light."),
    ("what is the largest planet in our solar system?", "Jupiter."),
    ("how many days are in a week?", "Seven days."),
    ("what is a noun?", "A word naming a thing."),
    ("what does a thermometer measure?", "Temperature."),
    ("what is gravity?", "The force that pulls objects together."),
    ("how many legs does a spider have?", "Eight legs."),
    ("what is the freezing point of water?", "Zero degrees Celsius."),
    ("what gas do humans breathe out?", "Carbon dioxide."),
    ("what is a volcano?", "A mountain that erupts lava."),
    ("what does a caterpillar become?", "A butterfly or moth."),
    ("what is the main language of Brazil?", "Portuguese."),
    ("how many continents are there?", "Seven continents."),
    ("what is the opposite of hot?", "Cold."),
    ("what color do you get by mixing blue and yellow?", "Green."),
    ("what is the moon?", "Earth's natural satellite."),
    ("what is a rainbow?", "Sunlight split into colors."),
    ("why do we sleep?", "To rest body and brain."),
    ("what is an island?", "Land surrounded by water."),
    ("what does a doctor do?", "Treats sick people."),
    ("what is the fastest land animal?", "The cheetah."),
    ("what is the largest mammal?", "The blue whale."),
    ("how many hours are in a day?", "Twenty-four hours."),
    ("what is ice?", "Frozen water."),
    ("what is a library?", "A place for borrowing books."),
    ("what do you call a baby dog?", "A puppy."),
    ("what is the hardest natural substance?", "Diamond."),
    ("which planet is known as the Red Planet?", "Mars."),
    ("what is the longest river in Africa?", "The Nile."),
    ("what instrument has 88 keys?", "The piano."),
    ("what is a triangle?", "A shape with three sides."),
    ("what causes ocean tides?", "The moon's gravity."),
    ("what is a desert?", "A very dry region."),
    ("what do pandas eat?", "Mostly bamboo."),
    ("what is the speed of light?", "About 300,000 kilometers per second."),
    ("what is an atom?", "A tiny building block of matter."),
    ("what is democracy?", "Rule by the people."),
    ("what is the heart's job?", "Pumping blood through the body."),
    ("what are clouds made of?", "Tiny water droplets or ice."),
    ("who painted the Mona Lisa?", "Leonardo da Vinci."),
    ("what is a verb?", "A word for an action."),
    ("what is the chemical symbol for gold?", "Au."),
    ("how many sides does a hexagon have?", "Six sides."),
    ("what is the closest star to Earth?", "The Sun."),
    ("what is the main ingredient in guacamole?", "Avocado."),
    ("what is a calendar for?", "Tracking days and dates."),
    ("what is erosion?", "Wearing away of land."),
    ("what does a compass show?", "Which way is north."),
    ("why do leaves fall in autumn?", "Trees shed them for winter."),
    ("what shape is the Earth?", "Roughly a sphere."),
    ("what language is mostly spoken in Mexico?", "Spanish."),
    ("what is a bridge for?", "Crossing rivers or roads."),
]

_LOWERCASE_TEMPLATES = (
    "Describe {thing} in one short sentence using only lowercase letters.",
    "Using only lowercase letters, describe {thing} in one short sentence.",
    "Write one short sentence about {thing}. Use only lowercase letters, no capitals.",
)
_LOWERCASE_BANK = [  # (thing, all-lowercase sentence)
    ("a cat", "a cat is a small furry pet that likes to nap."),
    ("the ocean", "the ocean is a vast body of salty water."),
    ("a rainy day", "a rainy day is gray, wet and cozy indoors."),
    ("the moon", "the moon glows softly in the night sky."),
    ("a forest", "a forest is a quiet place full of tall trees."),
    ("coffee", "coffee is a hot, bitter drink that wakes you up."),
    ("a city at night", "a city at night sparkles with bright lights."),
    ("a dog", "a dog is a loyal and playful animal."),
    ("winter", "winter is cold, dark and often snowy."),
    ("a library", "a library is a calm room filled with books."),
    ("the desert", "the desert is hot, dry and sandy."),
    ("a sunset", "a sunset paints the sky orange and pink."),
    ("an apple", "an apple is a crisp, sweet fruit."),
    ("a bicycle", "a bicycle is a two-wheeled vehicle you pedal."),
    ("a garden", "a garden is full of flowers, bees and green leaves."),
    ("the wind", "the wind is moving air you can feel but not see."),
    ("a mountain", "a mountain is a huge rocky hill that reaches the clouds."),
    ("a birthday party", "a birthday party is full of cake, games and friends."),
    ("snow", "snow is soft, white and cold."),
    ("a thunderstorm", "a thunderstorm brings loud thunder and heavy rain."),
    ("the beach", "the beach has warm sand and gentle waves."),
    ("a candle", "a candle gives a small, flickering light."),
    ("a river", "a river is fresh water flowing toward the sea."),
    ("bread", "bread is a soft food baked from flour and water."),
    ("a train", "a train is a long vehicle that runs on rails."),
    ("a butterfly", "a butterfly is an insect with bright, delicate wings."),
    ("the sun", "the sun is a bright star that warms the earth."),
    ("a pillow", "a pillow is a soft cushion for your head."),
    ("a kitchen", "a kitchen is the room where meals are cooked."),
    ("a guitar", "a guitar is a stringed instrument you strum."),
    ("an owl", "an owl is a quiet bird that hunts at night."),
    ("a park", "a park is a green space for walking and play."),
    ("chocolate", "chocolate is a sweet treat made from cocoa."),
    ("a clock", "a clock is a device that shows the time."),
    ("the stars", "the stars are distant suns that twinkle at night."),
    ("a lemon", "a lemon is a sour yellow fruit."),
    ("a snowman", "a snowman is a figure built from packed snow."),
    ("a school", "a school is a place where children learn."),
    ("the rain", "the rain falls in soft drops from gray clouds."),
    ("a bridge", "a bridge lets people cross over water or roads."),
    ("a volcano", "a volcano is a mountain that can erupt with lava."),
    ("a cup of tea", "a cup of tea is warm, calming and fragrant."),
    ("a lighthouse", "a lighthouse shines a bright light to guide ships."),
    ("autumn", "autumn is the season of falling orange leaves."),
    ("a fish tank", "a fish tank is a glass box of water for pet fish."),
    ("a rainbow", "a rainbow is an arc of colors after rain."),
    ("a piano", "a piano is an instrument with black and white keys."),
    ("a horse", "a horse is a strong animal that can gallop fast."),
    ("a busy market", "a busy market is loud, crowded and full of food."),
    ("the night sky", "the night sky is dark and dotted with stars."),
    ("an island", "an island is land with water all around it."),
    ("a campfire", "a campfire crackles and keeps people warm at night."),
]

_START_TEMPLATES = (
    "{question} Start your answer with 'Yes'.",
    "{question} Begin your reply with the word 'Yes'.",
    "Answer this question, starting with 'Yes': {question}",
)
_START_BANK = [  # (question whose true answer is yes, answer)
    ("Does water boil at 100 degrees Celsius at sea level?",
     "Yes, water boils at 100 degrees Celsius at sea level."),
    ("Is the Earth round?", "Yes, the Earth is roughly a sphere."),
    ("Do cats have whiskers?", "Yes, cats have whiskers that help them sense their surroundings."),
    ("Is the Atlantic Ocean between Europe and America?",
     "Yes, the Atlantic Ocean lies between Europe and the Americas."),
    ("Do plants need sunlight to grow?", "Yes, most plants need sunlight to make their food."),
    ("Does ice float on water?", "Yes, ice floats because it is less dense than liquid water."),
    ("Can birds fly?", "Yes, most birds can fly, though some, like penguins, cannot."),
    ("Is Antarctica covered mostly by ice?",
     "Yes, most of Antarctica is covered by a thick sheet of ice."),
    ("Do humans need oxygen to live?", "Yes, humans need oxygen to breathe and stay alive."),
    ("Is the sun much larger than the Earth?", "Yes, the sun is far larger than the Earth."),
    ("Are whales mammals?", "Yes, whales are mammals that breathe air."),
    ("Does a week have seven days?", "Yes, a week has seven days."),
    ("Is a tomato a fruit?", "Yes, botanically a tomato is a fruit."),
    ("Do insects have six legs?", "Yes, insects have six legs."),
    ("Is gold a metal?", "Yes, gold is a metal."),
    ("Does the moon orbit the Earth?", "Yes, the moon orbits the Earth about once a month."),
    ("Is Saturn known for its rings?", "Yes, Saturn is famous for its bright rings."),
    ("Do birds lay eggs?", "Yes, all birds lay eggs."),
    ("Is a square a rectangle?", "Yes, a square is a rectangle with four equal sides."),
    ("Can water turn into steam?", "Yes, water turns into steam when it boils."),
    ("Is English written with the Latin alphabet?", "Yes, English uses the Latin alphabet."),
    ("Do fish live in water?", "Yes, fish live in water and breathe through gills."),
    ("Is seven a prime number?", "Yes, seven is a prime number."),
    ("Is the heart a muscle?", "Yes, the heart is a muscle that pumps blood."),
    ("Do trees produce oxygen?", "Yes, trees release oxygen through photosynthesis."),
    ("Is ten greater than five?", "Yes, ten is greater than five."),
    ("Are penguins birds?", "Yes, penguins are birds, even though they cannot fly."),
    ("Does sound travel faster in water than in air?",
     "Yes, sound travels faster in water than in air."),
    ("Is Africa a continent?", "Yes, Africa is one of the seven continents."),
    ("Do bats use echolocation?", "Yes, many bats use echolocation to find their way."),
    ("Is a year usually 365 days long?", "Yes, a common year has 365 days."),
    ("Do camels live in deserts?", "Yes, many camels live in hot, dry deserts."),
    ("Can you see the moon during the day?", "Yes, the moon is often visible during the day."),
    ("Do snakes shed their skin?", "Yes, snakes shed their skin as they grow."),
    ("Is salt water denser than fresh water?", "Yes, salt water is denser than fresh water."),
    ("Can an octopus change color?", "Yes, an octopus can change its color to blend in."),
    ("Does light travel faster than sound?", "Yes, light travels much faster than sound."),
    ("Is chess played on a board with 64 squares?", "Yes, a chessboard has 64 squares."),
    ("Do leaves change color in autumn?",
     "Yes, many leaves turn red, orange or yellow in autumn."),
    ("Is the Sahara a desert?", "Yes, the Sahara is a large desert in Africa."),
    ("Is two plus two equal to four?", "Yes, two plus two equals four."),
    ("Do humans have two lungs?", "Yes, humans have two lungs."),
    ("Is Mercury the closest planet to the sun?", "Yes, Mercury is the closest planet to the sun."),
    ("Do frogs start life as tadpoles?", "Yes, most frogs begin life as tadpoles in water."),
    ("Is the Amazon River in South America?", "Yes, the Amazon River flows through South America."),
    ("Is iron attracted to magnets?", "Yes, iron is attracted to magnets."),
    ("Does a cube have six faces?", "Yes, a cube has six square faces."),
    ("Does the Earth orbit the sun?", "Yes, the Earth orbits the sun once a year."),
    ("Is exercise good for your health?", "Yes, regular exercise is good for your health."),
    ("Do cows eat grass?", "Yes, cows mainly eat grass."),
    ("Is the piano a musical instrument?", "Yes, the piano is a musical instrument."),
    ("Can elephants swim?", "Yes, elephants are good swimmers."),
]


def _addition(pair, variant):
    a, b = pair if variant < 4 else pair[::-1]
    return (_ADDITION_TEMPLATES[variant % 4].format(a=a, b=b), str(a + b),
            {"type": "number", "answer": a + b})


def _capital(item, variant):
    country, capital = item
    return (_CAPITAL_TEMPLATES[variant].format(country=country), capital,
            {"type": "one_word", "answer": capital})


def _include_word(item, variant):
    topic, word, sentence = item
    return (_INCLUDE_TEMPLATES[variant].format(topic=topic, word=word), sentence,
            {"type": "include_word", "word": word})


def _max_words(item, variant):
    question, answer = item
    limits = range(max(3, len(answer.split())), 7)
    n = limits[variant // 3 % len(limits)]
    prompt = _MAX_WORDS_TEMPLATES[variant % 3].format(
        n=n, question=question, Question=question[0].upper() + question[1:])
    return prompt, answer, {"type": "max_words", "n": n}


def _lowercase(item, variant):
    thing, sentence = item
    return _LOWERCASE_TEMPLATES[variant].format(thing=thing), sentence, {"type": "lowercase"}


def _start_with(item, variant):
    question, answer = item
    return (_START_TEMPLATES[variant].format(question=question), answer,
            {"type": "starts_with", "prefix": "Yes"})


# task -> (item pools, number of prompt variants per item, render(item, variant))
_FAMILIES = {
    "addition": ((_ONE_DIGIT_PAIRS, _TWO_DIGIT_PAIRS), 8, _addition),
    "capital": ((_CAPITALS,), 3, _capital),
    "include_word": ((_INCLUDE_BANK,), 3, _include_word),
    "max_words": ((_MAX_WORDS_BANK,), 12, _max_words),
    "lowercase": ((_LOWERCASE_BANK,), 3, _lowercase),
    "start_with": ((_START_BANK,), 3, _start_with),
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


def _split_pool(task: str, index: int, pool: list, split: str) -> list:
    items = list(pool)
    random.Random(f"split:{task}:{index}").shuffle(items)
    cut = round(len(items) * EVAL_FRACTION)
    return items[:cut] if split == "eval" else items[cut:]


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
    pools = _FAMILIES[task][0]
    return [item for index, pool in enumerate(pools)
            for item in _split_pool(task, index, pool, split)]


def _family_records(task: str, split: str, k: int, seed: int) -> list[tuple[dict, tuple]]:
    pools, n_variants, render = _FAMILIES[task]
    rng = random.Random(f"{task}:{split}:{seed}")
    records = []
    for index, pool in enumerate(pools):
        share = k // len(pools) + (index < k % len(pools))
        for item, variant in _cycle(rng, _split_pool(task, index, pool, split), n_variants, share):
            prompt, answer, spec = render(item, variant)
            if not check(spec, answer):
                raise AssertionError(f"{task}: answer {answer!r} fails {spec} for {prompt!r}")
            records.append(({"messages": [{"role": "user", "content": prompt},
                                          {"role": "assistant", "content": answer}],
                             "task": task, "check": spec}, item))
    return records


def generate(split: str, n: int, seed: int = 0) -> list[dict]:
    """n records of `split` ("train" or "eval"), balanced over TASKS, in a seeded order."""
    return [record for record, _ in generate_with_items(split, n, seed)]


def generate_with_items(split: str, n: int, seed: int = 0) -> list[tuple[dict, tuple]]:
    """`generate`'s records, each with the bank item it was written from: an unordered
    number pair, (country, capital), (topic, word, sentence), (question, answer),
    (thing, sentence) or (yes-question, answer)."""
    if split not in SHIPPED_SIZES:
        raise ValueError(f"split must be 'train' or 'eval', not {split!r}")
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


def write_splits(folder: str, stem: str, make, seed: int = 0) -> dict[str, str]:
    """Write {stem}_{train,eval}.jsonl from make(split, n, seed) into folder; returns {split: path}."""
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for split, n in SHIPPED_SIZES.items():
        paths[split] = os.path.join(folder, f"{stem}_{split}.jsonl")
        with open(paths[split], "w", encoding="utf-8", newline="\n") as f:
            for record in make(split, n, seed):
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return paths


def write_shipped(folder: str, seed: int = 0) -> dict[str, str]:
    """Write quickstart_{train,eval}.jsonl into folder; returns {split: path}."""
    return write_splits(folder, "quickstart", generate, seed)


if __name__ == "__main__":
    for split, path in write_shipped(SHIPPED_DIR).items():
        print(f"{split}: {path}")
