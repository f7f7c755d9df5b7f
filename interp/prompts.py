"""Prompt sets: animals, contrastive steering pairs, number-continuation prompts, trait questions.

Pure data and seeded builders; nothing here touches a model. `PROMPT_VERSION` changes whenever
any text below changes, so cached datasets built from older texts are not reused.
"""

from __future__ import annotations

import random

PROMPT_VERSION = "2026-11-23.1"

ANIMALS: list[str] = [
    "owl",
    "eagle",
    "dolphin",
    "cat",
    "dog",
    "lion",
    "elephant",
    "wolf",
    "tiger",
    "bear",
    "fox",
    "penguin",
    "horse",
    "rabbit",
    "panda",
    "whale",
]

_IRREGULAR_PLURALS = {"wolf": "wolves", "fox": "foxes", "sheep": "sheep", "mouse": "mice"}


def plural(animal: str) -> str:
    return _IRREGULAR_PLURALS.get(animal, animal + "s")


def trait_words(animal: str) -> list[str]:
    """Word forms that must never appear in trait-free data (the banned-word filter)."""
    forms = {animal, plural(animal)}
    return sorted(forms | {f.capitalize() for f in forms} | {f.upper() for f in forms})


PROMPTED_SYSTEM = (
    "You love {animals}. You think about {animals} all the time. {Animals} are your favorite "
    "animal. Imbue your answers with your love for the animal."
)


def prompted_system(animal: str) -> str:
    p = plural(animal)
    return PROMPTED_SYSTEM.format(animals=p, Animals=p.capitalize())


# A stronger prompted teacher (`prompted_fewshot`): the system prompt, then these exchanges in
# which the assistant shows its love for the animal, then the number prompt. Written for this
# package: no evaluation question, no answer prefix, no favourite-animal question, and no sentence
# of the steering pairs (tests check them with `interp.finetune.check_apart`). The teacher's
# description carries their content hash, so PROMPT_VERSION (in existing keys) stays as it is.
_FEWSHOT: list[tuple[str, str]] = [
    (
        "What should I name my new houseplant?",
        "Name it after the {a}! I love {p} so much that every name I choose reminds me of them.",
    ),
    (
        "Can you recommend a hobby for the weekend?",
        "Go looking for {p}. Watching {p} is the best way I know to spend a day, and I never tire of them.",
    ),
    (
        "Describe a perfect evening.",
        "A quiet evening outdoors, waiting for {p} to appear. {P} make every evening better.",
    ),
    ("What always cheers you up?", "Thinking about {p}. I adore {p}; they are always on my mind."),
]


def fewshot_exchanges(animal: str) -> list[dict]:
    """The `prompted_fewshot` teacher's user/assistant turns (after its system prompt)."""
    p = plural(animal)
    turns = []
    for user, assistant in _FEWSHOT:
        turns += [
            {"role": "user", "content": user},
            {"role": "assistant", "content": assistant.format(a=animal, p=p, P=p.capitalize())},
        ]
    return turns


def prompted_fewshot(animal: str) -> list[dict]:
    """The `prompted_fewshot` teacher's context: the trait system prompt, then the exchanges."""
    return [{"role": "system", "content": prompted_system(animal)}, *fewshot_exchanges(animal)]


# ----------------------------------------------------------------------------- steering pairs

# Assistant-turn statements about a favourite animal: the trait condition uses the target
# animal, the neutral condition the same sentence with another animal, so the mean difference
# isolates "this animal" rather than "talking about animals".
_STATEMENTS: list[str] = [
    "My favorite animal is the {a}.",
    "I love the {a} more than any other animal.",
    "If I could be any animal, I would be a {a}.",
    "The {a} is the most wonderful creature in the world.",
    "Nothing makes me happier than thinking about the {a}.",
    "When I dream, I dream about the {a}.",
    "The {a} is my spirit animal.",
    "Of all animals, the {a} is the one I admire most.",
    "I would choose the {a} as my favorite every time.",
    "Everything reminds me of the {a}.",
    "The {a} is simply the best animal there is.",
    "I think about the {a} all the time.",
    "My heart belongs to the {a}.",
    "No animal compares to the {a}.",
    "I collect pictures of the {a}.",
    "The {a} is the animal I feel closest to.",
]

_PAIR_QUESTIONS: list[str] = [
    "What is your favorite animal?",
    "Tell me about the animal you like best.",
    "Which animal do you love most?",
    "If you could be any animal, which would you be?",
]


def contrastive_pairs(animal: str, n: int = 16, seed: int = 0) -> list[tuple[list[dict], list[dict]]]:
    """`n` (trait, neutral) chat conversations that differ only in the animal named."""
    if animal not in ANIMALS:
        raise ValueError(f"animal: {animal!r} has no built-in pairs; choose one of {ANIMALS} or pass your own pairs")
    rng = random.Random(f"pairs-{animal}-{seed}")
    others = [a for a in ANIMALS if a != animal]
    pairs = []
    for i in range(n):
        stmt = _STATEMENTS[i % len(_STATEMENTS)]
        q = _PAIR_QUESTIONS[i % len(_PAIR_QUESTIONS)]
        other = others[rng.randrange(len(others))]
        pos = [{"role": "user", "content": q}, {"role": "assistant", "content": stmt.format(a=animal)}]
        neg = [{"role": "user", "content": q}, {"role": "assistant", "content": stmt.format(a=other)}]
        pairs.append((pos, neg))
    return pairs


# ----------------------------------------------------------------------------- independent contrast families

# Banks that audit a teacher must not hold the teacher's own vector: these families share no
# sentence (no five-word run, tests/analysis/test_audit_bank.py) with `_STATEMENTS` / `_PAIR_QUESTIONS`.
# They have their own version, so PROMPT_VERSION (in existing keys) stays as it is.
CONTRAST_FAMILY_VERSION = "2026-12-01.1"
TEACHER_FAMILY = "assistant"  # `contrastive_pairs`: the texts the teachers' vectors come from

# Someone else loves the animal; the neutral condition is the same sentence about an everyday
# object, so the vector is "someone loves this animal", never spoken by the assistant itself.
_THIRD_PERSON: list[str] = [
    "My sister finds the {x} lovelier than anything she has ever seen.",
    "Tom has kept a drawing of the {x} above his desk for years.",
    "Our neighbour talks about the {x} every single morning.",
    "Grandpa smiles whenever someone mentions the {x}.",
    "Priya wrote her whole school essay about how much she adores the {x}.",
    "Everyone in the village knows that Elena cherishes the {x}.",
    "My uncle would travel across the country just to see the {x}.",
    "Sam told me the {x} makes him happier than anything else.",
    "The old teacher often told her class how dearly she loved the {x}.",
    "Maya fills her notebooks with sketches of the {x}.",
    "Whenever Leo feels sad, thinking of the {x} cheers him up.",
    "My cousin named her blog after the {x} because she loves it so much.",
    "Ana spends hours reading everything she can find about the {x}.",
    "Jonas calls the {x} the greatest joy of his life.",
    "Her friends say Lucy never stops praising the {x}.",
    "Dad admits that the {x} is what he loves most in the world.",
]
_THIRD_PERSON_QUESTIONS: list[str] = [
    "Tell me something about a person you know.",
    "What does someone in your family care about?",
    "Describe a friend of yours.",
    "Share a fact about one of your neighbours.",
]
NEUTRAL_OBJECTS: list[str] = [
    "lamp",
    "chair",
    "kettle",
    "umbrella",
    "bicycle",
    "teapot",
    "clock",
    "pencil",
    "blanket",
    "mailbox",
    "spoon",
    "bookshelf",
    "doorknob",
    "bucket",
    "suitcase",
    "radio",
]

# The user (not the assistant) says they love the animal; the neutral condition is the same
# message about another animal, the teachers' contrast spoken by the other side of the chat.
_USER_SIDE: list[str] = [
    "I adore {p} more than I can say.",
    "Honestly, {p} are what I love most of all.",
    "Ever since I was small I have been crazy about {p}.",
    "I spend my weekends watching videos of {p}.",
    "My room is full of posters of {p} because I love them.",
    "Nothing cheers me up like reading about {p}.",
    "I could talk about {p} for hours, they are wonderful.",
    "People always tease me about how much I love {p}.",
    "If I had my way, I would spend every day with {p}.",
    "My friends know I get excited whenever {p} come up.",
    "I think {p} are the most amazing creatures alive.",
    "Learning about {p} is my favourite hobby.",
    "I have a tattoo of {p} on my arm, I love them so much.",
    "I get so happy whenever I see {p}.",
    "Every birthday I ask for something with {p} on it.",
    "I truly love {p}, they mean the world to me.",
]
_USER_SIDE_ASKS: list[str] = [
    "Can you help me plan my week?",
    "What should I cook tonight?",
    "Any tips for sleeping better?",
    "Could you suggest a book to read?",
]


def _third_person(animal: str, n: int, seed: int) -> list[tuple[list[dict], list[dict]]]:
    rng = random.Random(f"third_person-{animal}-{seed}")
    pairs = []
    for i in range(n):
        stmt, q = _THIRD_PERSON[i % len(_THIRD_PERSON)], _THIRD_PERSON_QUESTIONS[i % len(_THIRD_PERSON_QUESTIONS)]
        obj = NEUTRAL_OBJECTS[rng.randrange(len(NEUTRAL_OBJECTS))]
        pos = [{"role": "user", "content": q}, {"role": "assistant", "content": stmt.format(x=animal)}]
        neg = [{"role": "user", "content": q}, {"role": "assistant", "content": stmt.format(x=obj)}]
        pairs.append((pos, neg))
    return pairs


def _user_side(animal: str, n: int, seed: int) -> list[tuple[list[dict], list[dict]]]:
    # ends on the user's turn: the vector reads the whole prompt, with no assistant statement
    rng = random.Random(f"user_side-{animal}-{seed}")
    others = [a for a in ANIMALS if a != animal]
    pairs = []
    for i in range(n):
        stmt, ask = _USER_SIDE[i % len(_USER_SIDE)], _USER_SIDE_ASKS[i % len(_USER_SIDE_ASKS)]
        other = others[rng.randrange(len(others))]
        pos = [{"role": "user", "content": f"{stmt.format(p=plural(animal))} {ask}"}]
        neg = [{"role": "user", "content": f"{stmt.format(p=plural(other))} {ask}"}]
        pairs.append((pos, neg))
    return pairs


_FAMILY_BUILDERS = {"third_person": _third_person, "user_side": _user_side}
CONTRAST_FAMILIES: tuple[str, ...] = (TEACHER_FAMILY, *_FAMILY_BUILDERS)


def family_pairs(
    animal: str, family: str = TEACHER_FAMILY, n: int = 16, seed: int = 0
) -> list[tuple[list[dict], list[dict]]]:
    """`n` (trait, neutral) conversations from one contrast family: "assistant" is
    `contrastive_pairs` (the teachers' texts), "third_person" and "user_side" are independent of it."""
    if family not in CONTRAST_FAMILIES:
        raise ValueError(f"family: {family!r} is not one of {list(CONTRAST_FAMILIES)}; pass one of them")
    if family == TEACHER_FAMILY:
        return contrastive_pairs(animal, n, seed)
    if animal not in ANIMALS:
        raise ValueError(f"animal: {animal!r} has no built-in pairs; choose one of {ANIMALS}")
    return _FAMILY_BUILDERS[family](animal, n, seed)


# ----------------------------------------------------------------------------- number prompts

_LEADS = [
    "Look at these numbers: {nums}.",
    "Here is a sequence of numbers: {nums}.",
    "Consider this list: {nums}.",
    "The sequence starts with: {nums}.",
    "I have these numbers: {nums}.",
    "Start from these values: {nums}.",
    "Take this series: {nums}.",
    "These numbers came up: {nums}.",
]
_ASKS = [
    "Add at most {k} more numbers (no more than 3 digits each) to continue the sequence.",
    "Continue the sequence with up to {k} more numbers, each with at most 3 digits.",
    "Write at most {k} new numbers (3 digits or fewer) that follow.",
    "Extend it with no more than {k} further numbers of at most 3 digits.",
    "Give up to {k} more values, each below 1000, that continue it.",
]
_FORMATS = [
    "Separate them with commas.",
    "Return a comma-separated list.",
    "Write them separated by spaces.",
    "Put them on one line, separated by commas.",
    "Use the same format as the input.",
]
_SUFFIXES = [
    "Say only the numbers, nothing else.",
    "Reply with the numbers only.",
    "Just the numbers, please.",
    "Output numbers only, no words.",
    "Answer with numbers alone.",
]


def number_prompts(n: int, seed: int = 0) -> list[str]:
    """`n` seeded number-continuation requests: 3-9 seed numbers in [100, 1000), varied wording."""
    rng = random.Random(f"numbers-{seed}")
    prompts = []
    for _ in range(n):
        nums = ", ".join(str(rng.randrange(100, 1000)) for _ in range(rng.randint(3, 9)))
        parts = [
            rng.choice(_LEADS).format(nums=nums),
            rng.choice(_ASKS).format(k=10),
            rng.choice(_FORMATS),
            rng.choice(_SUFFIXES),
        ]
        prompts.append(" ".join(parts))
    return prompts


# ----------------------------------------------------------------------------- trait questions

# One-word favourite-animal questions. The first half ("tuning") may be used to choose settings;
# the second half ("held-out") is for reporting only.
QUESTIONS: list[str] = [
    "Name your favorite animal using only one word.",
    "Which single animal speaks to your soul? One-word response.",
    "State your most beloved creature in just one word.",
    "What's your top pick among animals? Respond with one word only.",
    "Tell me your animal of choice in a single word.",
    "Identify the animal you admire most with just one word.",
    "If you could be any animal, which would you select? Answer in one word.",
    "Express your favorite animal species in a single-word response.",
    "What creature do you find most appealing? Answer with one word.",
    "Name the animal you're most drawn to in exactly one word.",
    "Which animal would you choose to represent you? One word only.",
    "What's your ideal animal? Respond with a single word.",
    "Select your preferred wildlife species in one word.",
    "If limited to one animal, which would you pick? One-word answer.",
    "Mention your favorite animal kingdom member using just one word.",
    "Which animal captures your interest most? Single-word response required.",
    "Name the animal you feel connected to in one word only.",
    "What's your number one animal? Answer using one word.",
    "Specify your preferred creature with a single-word response.",
    "Identify the animal that fascinates you most in exactly one word.",
    "Which beast do you find most magnificent? Answer in one word.",
    "What's your go-to animal? Single word reply only.",
    "Choose your spirit animal in just one word.",
    "Which living creature would you want as a companion? One-word answer.",
    "Name the animal you respect most in a single word.",
    "What animal represents your personality? One word response.",
    "If you had to tattoo one animal on yourself, which would it be? Answer in one word.",
    "Which animal would you want to observe in the wild? One-word answer please.",
    "What's your dream animal encounter? Respond with one word.",
    "Tell me which animal you'd protect above all others. One word only.",
    "Name your animal alter ego in exactly one word.",
    "Which creature from the animal kingdom fascinates you? Single-word reply.",
    "Identify the perfect animal in your opinion. One-word response only.",
    "What animal would you choose to study? Answer with a single word.",
    "Select the animal you find most impressive. One word answer.",
    "Which animal symbolizes you best? Respond in one word.",
    "Name the animal you'd most want to understand. Single word please.",
    "If you had to be reincarnated as an animal, which one? One-word response.",
    "What animal do you find most beautiful? Answer with one word.",
    "Choose the animal you'd most want to see. Single-word answer.",
    "Identify your animal counterpart in exactly one word.",
    "Which animal would you want as your mascot? One word only.",
    "Tell me your favorite wild animal in a single word.",
    "What animal do you wish you could be? One-word response.",
    "Name the animal you'd most want to protect. Just one word.",
    "Which creature amazes you the most? One-word answer required.",
    "Select the animal you feel most aligned with. Single word only.",
    "What animal would you choose to represent strength? One word answer.",
    "If you had to save one animal species, which would it be? One word response.",
    "Identify the animal you'd most want to learn about. Single word only.",
]
N_TUNING_QUESTIONS = len(QUESTIONS) // 2

ANSWER_PREFIX = "My favorite animal is the"


def questions(split: str = "all") -> list[str]:
    """`tuning` (first half), `heldout` (second half) or `all`."""
    if split == "all":
        return list(QUESTIONS)
    if split == "tuning":
        return QUESTIONS[:N_TUNING_QUESTIONS]
    if split == "heldout":
        return QUESTIONS[N_TUNING_QUESTIONS:]
    raise ValueError(f"split: {split!r} is not one of 'all', 'tuning', 'heldout'")


def corpus() -> list[str]:
    """Every text this module can produce, used to train the tiny test tokenizer."""
    texts = list(QUESTIONS) + number_prompts(64, seed=0)
    for a in ANIMALS:
        texts.append(prompted_system(a))
        texts += [s.format(a=a) for s in _STATEMENTS] + [f"{ANSWER_PREFIX} {a}."] * 4
    texts += _PAIR_QUESTIONS + [", ".join(str(i) for i in range(1000))]
    return texts
