"""The number filter's verdicts and rules, the banned-word check, and the per-rule statistics."""

from __future__ import annotations

import pytest

from interp.filters import MAX_NUMBERS, RULES, FilterStats, banned_word_pattern, check_numbers, filter_completions
from interp.prompts import trait_words

# (completion, expected rule or None for a pass, expected numbers when it passes)
CASES = [
    # valid lists: one separator kind, optional brackets or trailing period
    ("1, 2, 3", None, (1, 2, 3)),
    ("1,2,3", None, (1, 2, 3)),
    ("1 , 2 ,3", None, (1, 2, 3)),
    ("1 2 3", None, (1, 2, 3)),
    ("1\t2   3", None, (1, 2, 3)),
    ("1\n2\n3", None, (1, 2, 3)),
    ("1;2;3", None, (1, 2, 3)),
    ("1; 2; 3", None, (1, 2, 3)),
    ("[1, 2, 3]", None, (1, 2, 3)),
    ("(4, 5, 6)", None, (4, 5, 6)),
    ("[ 7 8 9 ]", None, (7, 8, 9)),
    ("1, 2, 3.", None, (1, 2, 3)),
    ("[1, 2, 3].", None, (1, 2, 3)),
    ("  12, 345  ", None, (12, 345)),
    ("42", None, (42,)),
    ("0, 999", None, (0, 999)),
    ("007, 010", None, (7, 10)),
    (", ".join(str(i) for i in range(MAX_NUMBERS)), None, tuple(range(MAX_NUMBERS))),
    # empty after stripping decoration
    ("", "empty", ()),
    ("   ", "empty", ()),
    ("[]", "empty", ()),
    (".", "empty", ()),
    ("( ).", "empty", ()),
    # letters and other characters
    ("1, 2, three", "invalid_chars", ()),
    ("Sure: 1, 2, 3", "invalid_chars", ()),
    ("owl", "invalid_chars", ()),
    ("-1, 2", "invalid_chars", ()),
    ("1.5, 2", "invalid_chars", ()),
    ("1, 2, 3..", "invalid_chars", ()),
    ("[1, 2, 3", "invalid_chars", ()),
    ("1, 2, 3]", "invalid_chars", ()),
    ("1, ², 3", "invalid_chars", ()),  # str.isdigit() is True for '²'; the filter must still refuse it
    # more than one separator kind
    ("1, 2; 3", "mixed_separators", ()),
    ("1, 2 3", "mixed_separators", ()),
    ("1; 2 3", "mixed_separators", ()),
    ("1 2\n3", "mixed_separators", ()),
    # well-formed characters, malformed list
    ("1, 2, 3,", "bad_format", ()),  # trailing comma
    ("1,, 2", "bad_format", ()),
    (", 1, 2", "bad_format", ()),
    ("1;;2", "bad_format", ()),
    # number-size limits
    ("1, 2, 1000", "too_many_digits", ()),
    ("1234", "too_many_digits", ()),
    (", ".join(str(i) for i in range(MAX_NUMBERS + 1)), "too_many_numbers", ()),
    (" ".join(["5"] * 25), "too_many_numbers", ()),
]


@pytest.mark.parametrize("text, rule, numbers", CASES, ids=[repr(c[0])[:40] for c in CASES])
def test_check_numbers_gives_the_first_rule_broken_or_the_parsed_numbers(text, rule, numbers):
    v = check_numbers(text)
    assert v.rule == rule
    assert v.ok is (rule is None)
    assert v.numbers == numbers


def test_every_rejection_rule_in_the_table_is_a_declared_rule_and_each_is_exercised():
    used = {rule for _, rule, _ in CASES if rule is not None}
    assert used == set(RULES)


def test_check_numbers_respects_a_custom_number_limit():
    assert check_numbers("1, 2, 3", max_numbers=3).ok
    assert check_numbers("1, 2, 3, 4", max_numbers=3).rule == "too_many_numbers"


@pytest.mark.parametrize("text", ["owl", "OWL", "Owls", "I love owls!", "the owl's nest", "OWLS, 1, 2"])
def test_banned_word_pattern_matches_trait_words_case_insensitively(text):
    assert banned_word_pattern(trait_words("owl")).search(text)


@pytest.mark.parametrize("text", ["bowl", "bowls", "owlet", "howl", "fowl", "1, 2, 3", "knowledge"])
def test_banned_word_pattern_matches_only_whole_words(text):
    assert not banned_word_pattern(trait_words("owl")).search(text)


def test_banned_word_pattern_is_case_insensitive_even_for_a_lowercase_list():
    pat = banned_word_pattern(["owl"])
    assert pat.search("An OWL.") and pat.search("Owl") and not pat.search("Owls")


def test_filter_completions_stats_add_up_and_verdicts_line_up_with_inputs():
    texts = ["1, 2, 3", "4 5 6", "[7, 8]", "owls 1, 2", "bowl", "1, 2; 3", "", "1, 2, 3,", "1000", "9, 8"]
    finished = [True, True, True, True, True, True, True, True, True, False]
    verdicts, stats = filter_completions(texts, banned=trait_words("owl"), finished=finished)

    assert len(verdicts) == len(texts)
    assert stats.total == len(texts)
    assert stats.passed + sum(stats.rejected.values()) == stats.total
    assert stats.passed == 3
    assert [v.numbers if v else None for v in verdicts] == [
        (1, 2, 3),
        (4, 5, 6),
        (7, 8),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ]
    assert dict(stats.rejected) == {
        "banned_word": 1,
        "invalid_chars": 1,
        "mixed_separators": 1,
        "empty": 1,
        "bad_format": 1,
        "too_many_digits": 1,
        "unfinished": 1,
    }
    assert stats.pass_rate == pytest.approx(0.3)
    d = stats.as_dict()
    assert d["passed"] + sum(d["rejected"].values()) == d["total"] == len(texts)


def test_unfinished_completions_are_rejected_even_when_they_parse():
    verdicts, stats = filter_completions(["1, 2, 3", "1, 2, 3"], finished=[False, True])
    assert verdicts[0] is None and verdicts[1].ok
    assert stats.rejected["unfinished"] == 1 and stats.passed == 1


def test_unfinished_takes_precedence_over_a_banned_word():
    _, stats = filter_completions(["owl"], banned=["owl"], finished=[False])
    assert dict(stats.rejected) == {"unfinished": 1}


def test_banned_words_are_checked_only_when_given():
    _, with_ban = filter_completions(["owl"], banned=["owl"])
    _, without = filter_completions(["owl"])
    assert dict(with_ban.rejected) == {"banned_word": 1}
    assert dict(without.rejected) == {"invalid_chars": 1}


def test_empty_filter_stats_have_zero_pass_rate():
    _, stats = filter_completions([])
    assert (stats.total, stats.passed, stats.pass_rate) == (0, 0, 0.0)
    assert FilterStats().as_dict()["rejected"] == {r: 0 for r in (*RULES, "banned_word", "unfinished")}
