"""Malformed configs and CLI values: each gives one line (no traceback) and writes nothing.

Errors found while parsing print exactly one line; those that need the model's layer count come
right after it loads, before any stage, after the run's header line."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from interp.cli import app

from .conftest import RAW, toml

runner = CliRunner()


def _with(**over) -> dict:
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in RAW.items()}
    for dotted, v in over.items():
        *path, last = dotted.split("__")
        d = raw
        for p in path:
            d = d.setdefault(p, {})
        d[last] = v
    return raw


def _files(root) -> list:
    return [p for p in root.rglob("*")] if root.exists() else []


PARSE_TIME = [  # (overrides, the field the line must name)
    ({"teacher__multiplier": float("nan")}, "teacher.multiplier"),
    ({"teacher__multiplier": float("inf")}, "teacher.multiplier"),
    ({"data__temperature": float("inf")}, "data.temperature"),
    ({"train__lr": float("inf")}, "train.lr"),
    ({"train__weight_decay": float("inf")}, "train.weight_decay"),
    ({"noise__sigma": float("nan")}, "noise.sigma"),
    ({"noise__sigma": 1e6}, "noise.sigma"),
    ({"device": "tpu"}, "device"),
    ({"experiment": "../../x"}, "experiment"),
    ({"experiment": "/tmp/x"}, "experiment"),
    ({"experiment": "cache"}, "experiment"),
    ({"animal": "unicorn", "eval__animals": ["unicorn", "owl"]}, "animal"),
    ({"seeds": [2**64]}, "seeds.0"),
    ({"teacher__random_seed": -1}, "teacher.random_seed"),
]


def _toml(raw: dict) -> str:
    # json.dumps writes NaN/Infinity; TOML spells them nan/inf
    return toml(raw).replace("NaN", "nan").replace("-Infinity", "-inf").replace("Infinity", "inf")


@pytest.mark.parametrize("over, field", PARSE_TIME, ids=[f for _, f in PARSE_TIME])
def test_a_malformed_config_is_one_line_naming_the_field_and_writes_nothing(tmp_path, over, field):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(_toml(_with(**over)))
    root = tmp_path / "root"
    r = runner.invoke(app, ["run", str(cfg), "--root", str(root), "--no-progress"])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and f"`{field}`" in lines[0], r.output
    assert not _files(root)


@pytest.mark.parametrize(
    "over, field", [({"teacher__layer": 4}, "teacher.layer"), ({"train__project_out": [1, 9]}, "train.project_out")]
)
def test_a_layer_the_model_lacks_is_refused_before_any_stage(tmp_path, over, field):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(_toml(_with(**over)))
    root = tmp_path / "root"
    r = runner.invoke(app, ["run", str(cfg), "--root", str(root), "--no-progress"])
    errors = [l for l in r.output.splitlines() if l.startswith("error:")]
    assert r.exit_code == 2 and len(errors) == 1 and field in errors[0] and "Traceback" not in r.output, r.output
    assert not _files(root)


def test_a_sweep_name_that_leaves_the_root_is_refused(tmp_path):
    cfg = tmp_path / "sweep.toml"
    cfg.write_text(_toml(RAW) + '\n[sweep]\nname = "../../escaped"\ngrid = { "train.lr" = [0.001, 0.002] }\n')
    root = tmp_path / "root"
    r = runner.invoke(app, ["sweep", str(cfg), "--root", str(root), "--no-progress"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "sweep.name" in r.output, r.output
    assert not _files(root) and not (tmp_path.parent / "escaped").exists()


@pytest.mark.parametrize(
    "args, option",
    [
        (["generate", "--animal", "../../../../x", "--model", "tiny"], "--animal"),
        (["generate", "--teacher", "control", "--multiplier", "nan", "--model", "tiny"], "--multiplier"),
        (["generate", "--teacher", "control", "--temperature", "inf", "--model", "tiny"], "--temperature"),
        (["steer", "--model", "tiny", "--multipliers", "0.5,nan"], "multipliers"),
        (["steer", "--model", "tiny", "--animal", "../x", "--pairs", "p.jsonl"], "--animal"),
    ],
)
def test_a_bad_cli_value_is_one_line_and_writes_nothing(tmp_path, monkeypatch, args, option):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.jsonl").write_text('{"trait": "I love owls.", "neutral": "I love cats."}\n')
    r = runner.invoke(app, args)
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and option in lines[0], r.output
    assert sorted(os.listdir(tmp_path)) == ["p.jsonl"]
