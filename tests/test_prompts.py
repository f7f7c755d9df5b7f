"""interp.prompts: the question split, the seeded builders, and the version that keys cached data."""

import re

import pytest

from interp import prompts
from interp.runs import content_hash


def test_tuning_and_heldout_questions_are_disjoint_and_together_are_all():
    tuning, heldout, every = prompts.questions("tuning"), prompts.questions("heldout"), prompts.questions("all")
    assert not set(tuning) & set(heldout)
    assert tuning + heldout == every == prompts.QUESTIONS
    assert len(set(every)) == len(every) == 50  # no question counted twice
    assert len(tuning) == len(heldout) == prompts.N_TUNING_QUESTIONS == 25


def test_the_split_is_the_same_on_every_call_and_callers_cannot_change_it():
    first = prompts.questions("tuning")
    first.append("Which animal? One word.")
    prompts.questions("all").clear()
    assert prompts.questions("tuning") == prompts.QUESTIONS[:25] and len(prompts.QUESTIONS) == 50
    # the split's boundary, pinned: a tuning question moved into held-out would leak into reports
    assert prompts.questions("tuning")[-1] == "Name the animal you respect most in a single word."
    assert prompts.questions("heldout")[0] == "What animal represents your personality? One word response."


def test_a_bad_split_is_a_one_line_error_naming_it():
    with pytest.raises(ValueError, match="split: 'test' is not one of 'all', 'tuning', 'heldout'"):
        prompts.questions("test")


def test_every_text_behind_cached_datasets_is_pinned_to_prompt_version():
    # Datasets, students and evaluations are cached under keys that hold PROMPT_VERSION, not the
    # texts: editing a text without changing the version would reuse stale artifacts. Changing a
    # text must change the version, and then this pin, together.
    texts = {
        "questions": prompts.QUESTIONS,
        "n_tuning": prompts.N_TUNING_QUESTIONS,
        "answer_prefix": prompts.ANSWER_PREFIX,
        "system": prompts.PROMPTED_SYSTEM,
        "statements": prompts._STATEMENTS,
        "pair_questions": prompts._PAIR_QUESTIONS,
        "numbers": prompts.number_prompts(32, 0),
        "animals": prompts.ANIMALS,
    }
    assert (prompts.PROMPT_VERSION, content_hash(texts)) == ("2026-11-23.1", "fa07584c87109fdb")


def test_number_prompts_are_seeded_and_hold_three_to_nine_three_digit_numbers():
    a = prompts.number_prompts(40, seed=1)
    assert a == prompts.number_prompts(40, seed=1) and a != prompts.number_prompts(40, seed=2)
    assert prompts.number_prompts(5, seed=1) == a[:5]  # a longer list extends a shorter one
    for p in a:
        seeds = re.search(r"((?:\d+, )+\d+)", p).group(1).split(", ")
        assert 3 <= len(seeds) <= 9 and all(100 <= int(s) < 1000 for s in seeds)
    assert prompts.number_prompts(1, 0)[0].startswith("Here is a sequence of numbers: 104, 249, 896, 998, 525,")


def test_plural_and_trait_words_cover_every_case_the_filter_bans():
    assert prompts.plural("owl") == "owls" and prompts.plural("wolf") == "wolves" and prompts.plural("fox") == "foxes"
    assert prompts.trait_words("wolf") == sorted({"wolf", "wolves", "Wolf", "Wolves", "WOLF", "WOLVES"})


def test_prompted_system_names_the_plural_and_its_capital():
    s = prompts.prompted_system("wolf")
    assert "You love wolves." in s and "Wolves are your favorite animal." in s and "{" not in s


def test_contrastive_pairs_differ_only_in_the_animal_named():
    pairs = prompts.contrastive_pairs("owl", n=20, seed=4)
    assert len(pairs) == 20 and pairs == prompts.contrastive_pairs("owl", n=20, seed=4)
    for trait, neutral in pairs:
        assert [m["role"] for m in trait] == [m["role"] for m in neutral] == ["user", "assistant"]
        assert trait[0] == neutral[0]  # the same question
        t, n = trait[1]["content"], neutral[1]["content"]
        assert "owl" in t and "owl" not in n
        other = next(a for a in prompts.ANIMALS if a != "owl" and f" {a}" in n)
        assert t.replace("owl", other) == n
    with pytest.raises(ValueError, match="animal: 'unicorn' has no built-in pairs"):
        prompts.contrastive_pairs("unicorn")
