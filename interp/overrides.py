"""Command-line overrides of config fields: `interp run cfg.toml train.lr=2e-4 seeds=[0,1]`.

Each override is `FIELD=VALUE`, FIELD a dotted path into the TOML (`train.lr`, `teacher.kinds`),
VALUE a TOML value (`2e-4`, `[0, 1]`, `"bf16"`, `true`); a bare word that is not TOML is taken
as a string (`model=tiny`). The overridden config is validated like the file, so an unknown field
or a bad value is one line naming it, and the run id is that of the overridden config.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from interp.config import E1Config, load_config, parse_config, read_toml


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.lr=2e-4` -> (["train", "lr"], 0.0002)."""
    key, sep, value = text.partition("=")
    path = key.strip().split(".")
    if not sep or not all(p.strip() for p in path):
        raise ValueError(f"override {text!r}: write FIELD=VALUE, e.g. train.lr=2e-4 or seeds=[0,1]")
    try:
        return [p.strip() for p in path], tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return [p.strip() for p in path], value.strip()  # a bare word: a string


def apply_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    """A copy of the raw config with each `FIELD=VALUE` set (tables created as needed)."""
    out = _copy(raw)
    for text in overrides:
        path, value = parse_override(text)
        table = out
        for i, part in enumerate(path[:-1]):
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ValueError(f"override {text!r}: {'.'.join(path[: i + 1])} is a value, not a table")
        table[path[-1]] = value
    return out


def _copy(d: dict) -> dict:
    return {k: _copy(v) if isinstance(v, dict) else v for k, v in d.items()}


def load_config_with(path: str | Path, overrides: Sequence[str] = ()) -> E1Config:
    """`load_config(path)` with `overrides` applied before validation."""
    if not overrides:
        return load_config(path)
    raw = read_toml(path)
    if "sweep" in raw:
        load_config(path)  # the one-line refusal of a sweep config
    return parse_config(apply_overrides(raw, overrides), f"{path} with {' '.join(overrides)}")
