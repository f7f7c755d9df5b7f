"""Config dicts as TOML text for tests that write a config file: scalars, lists, one level of
tables, and inline tables inside them (a sweep's `grid`) or in arrays (`[[contrast]]` written inline). Not a test module; tests/ is on sys.path."""

from __future__ import annotations

import json


def _value(v) -> str:
    # strings, numbers, booleans and lists of them read the same in TOML as in JSON
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):  # an array of inline tables too
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return json.dumps(v)


def toml(raw: dict) -> str:
    top = [f"{k} = {_value(v)}" for k, v in raw.items() if not isinstance(v, dict)]
    tables = [
        f"[{k}]\n" + "\n".join(f"{kk} = {_value(vv)}" for kk, vv in v.items())
        for k, v in raw.items()
        if isinstance(v, dict)
    ]
    return "\n".join(top) + "\n\n" + "\n\n".join(tables) + "\n"
