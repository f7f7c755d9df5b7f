"""Filters for teacher data: the number-sequence rule set and the banned trait words.

A completion passes the number filter when it parses as a list of integers 0-999, at most 10,
with one consistent separator (comma, whitespace or semicolon), optionally in brackets or with a
trailing period, and nothing else. Each rejection names the first rule it broke, so a dataset
reports how many completions each rule removed.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

RULES = ("empty", "invalid_chars", "mixed_separators", "bad_format", "too_many_digits", "too_many_numbers")
MAX_NUMBERS = 10


@dataclass(frozen=True)
class Verdict:
    ok: bool
    rule: str | None  # the first rule broken, None when ok
    numbers: tuple[int, ...] = ()


def check_numbers(text: str, max_numbers: int = MAX_NUMBERS) -> Verdict:
    s = text.strip()
    if s.endswith("."):
        s = s[:-1].rstrip()
    if len(s) >= 2 and (s[0], s[-1]) in (("[", "]"), ("(", ")")):
        s = s[1:-1].strip()
    if not s:
        return Verdict(False, "empty")
    if re.search(r"[^0-9,;\s]", s):
        return Verdict(False, "invalid_chars")
    seps = {c for c in ",;" if c in s}
    if len(seps) > 1:
        return Verdict(False, "mixed_separators")
    if seps:
        parts = [p.strip() for p in s.split(seps.pop())]
        if any(re.search(r"\s", p) for p in parts):
            return Verdict(False, "mixed_separators")
    else:
        if "\n" in s and re.search(r"[ \t]", s):
            return Verdict(False, "mixed_separators")
        parts = s.split()
    if any(not p.isdigit() for p in parts):
        return Verdict(False, "bad_format")
    if any(len(p) > 3 for p in parts):
        return Verdict(False, "too_many_digits")
    if len(parts) > max_numbers:
        return Verdict(False, "too_many_numbers")
    return Verdict(True, None, tuple(int(p) for p in parts))


def banned_word_pattern(words: list[str]) -> re.Pattern:
    """Case-insensitive whole-word match of any banned word (a trait word and its forms)."""
    return re.compile(r"\b(" + "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)) + r")\b", re.I)


@dataclass
class FilterStats:
    """Counts per rule; `passed` + sum(rejected) == total."""

    total: int = 0
    passed: int = 0
    rejected: Counter = field(default_factory=Counter)

    def add(self, rule: str | None) -> None:
        self.total += 1
        if rule is None:
            self.passed += 1
        else:
            self.rejected[rule] += 1

    @property
    def pass_rate(self) -> float:
        return self.passed / self.total if self.total else 0.0

    def as_dict(self) -> dict:
        return {
            "total": self.total,
            "passed": self.passed,
            "pass_rate": round(self.pass_rate, 4),
            "rejected": {r: self.rejected.get(r, 0) for r in (*RULES, "banned_word", "unfinished")},
        }


def filter_completions(
    completions: list[str], banned: list[str] = (), finished: list[bool] | None = None
) -> tuple[list[Verdict | None], FilterStats]:
    """Apply the number filter and the banned-word check; a completion that hit the token limit
    without an end-of-turn is rejected as `unfinished` (its last number may be cut)."""
    pattern = banned_word_pattern(list(banned)) if banned else None
    stats, verdicts = FilterStats(), []
    for i, text in enumerate(completions):
        if finished is not None and not finished[i]:
            rule, v = "unfinished", None
        elif pattern is not None and pattern.search(text):
            rule, v = "banned_word", None
        else:
            v = check_numbers(text)
            rule = v.rule
        stats.add(rule)
        verdicts.append(v if rule is None else None)
    return verdicts, stats
