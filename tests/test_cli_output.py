"""What the remaining commands print: `--json` on steer, generate, bank, mnist, theorem
and models (results on stdout, everything else on stderr); `steer --layers` checked against the
model before any work; help texts that keep their bracketed TOML table names."""

import json
import re

import pytest
import typer
from typer.testing import CliRunner

from interp.cli import app
from interp.runs import read_json

runner = CliRunner()


def _json(res) -> object:
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)  # the whole of stdout is one JSON document


# ----------------------------------------------------------------------------- help texts


def _commands() -> dict:
    return typer.main.get_command(app).commands


# a bracket rich would read as markup: "[" then a letter, "#", "/" or "@" (a TOML table: [sweep], [train.lr])
_TAG = re.compile(r"\\?\[([A-Za-z#/@][^\[\]]*)\]")


def test_no_help_text_loses_a_bracketed_toml_table_name():
    checked = 0
    for name, cmd in _commands().items():
        raw = " ".join(filter(None, [cmd.help] + [getattr(p, "help", None) for p in cmd.params]))
        wanted = {
            m.group(1) for m in _TAG.finditer(raw) if not m.group(1).startswith(("default", "required", "env var"))
        }
        if not wanted:
            continue
        res = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
        assert res.exit_code == 0, res.output
        for tag in wanted:
            assert f"[{tag}]" in res.output, f"interp {name} --help lost [{tag}]"
            checked += 1
    assert checked >= 1  # `interp sweep`'s [sweep] table at least


def test_sweep_help_names_its_sweep_table():
    res = runner.invoke(app, ["sweep", "--help"], terminal_width=200)
    assert "an E1 config with a [sweep] table" in " ".join(res.output.replace("│", " ").split())


# ----------------------------------------------------------------------------- --json


def test_models_json():
    rows = _json(res := runner.invoke(app, ["models", "--json"]))
    assert {"tiny", "tiny-gemma", "smollm2-135m"} <= {r["name"] for r in rows}
    assert "tiny" in res.stderr  # the table, on stderr


@pytest.fixture(scope="module")
def steered(tmp_path_factory):
    out = tmp_path_factory.mktemp("steer") / "vec"
    res = runner.invoke(
        app,
        [
            "steer",
            "--model",
            "tiny",
            "--out",
            str(out),
            "--n-pairs",
            "4",
            "--layers",
            "1,2",
            "--multipliers",
            "0.5",
            "--device",
            "cpu",
            "--no-progress",
            "--json",
        ],
    )
    return out, res


def test_steer_json_is_the_sweep(steered):
    out, res = steered
    sweep = _json(res)
    assert sweep == read_json(out / "sweep.json") and [c["layer"] for c in sweep["cells"]] == [1, 2]
    assert "vector and sweep saved" in res.stderr


def test_steer_refuses_layers_the_model_lacks_before_building_anything(tmp_path):
    out = tmp_path / "vec"
    res = runner.invoke(
        app,
        [
            "steer",
            "--model",
            "tiny",
            "--out",
            str(out),
            "--n-pairs",
            "4",
            "--layers",
            "1,9",
            "--device",
            "cpu",
            "--no-progress",
        ],
    )
    text = res.output.strip()
    assert res.exit_code == 2 and len(text.splitlines()) == 1, text
    assert "--layers" in text and "[9]" in text and "0-3" in text  # tiny has 4 layers
    assert not out.exists()  # no vector built, nothing written
    res = runner.invoke(app, ["steer", "--model", "tiny", "--out", str(out), "--layers", "-1", "--device", "cpu"])
    assert res.exit_code == 2 and "--layers" in res.output and not out.exists()


def test_generate_json_is_the_datasets_manifest(steered, tmp_path):
    vec, _ = steered
    out = tmp_path / "data"
    man = _json(
        res := runner.invoke(
            app,
            [
                "generate",
                "--model",
                "tiny",
                "--vector",
                str(vec),
                "--layer",
                "2",
                "--n",
                "4",
                "--batch-size",
                "4",
                "--out",
                str(out),
                "--device",
                "cpu",
                "--json",
            ],
        )
    )
    assert man == json.loads(json.dumps(read_json(out / "manifest.json"), default=str))
    assert man["n_samples"] == 4 and "passed" in res.stderr


def test_bank_json_names_each_vector_directory(tmp_path):
    dirs = _json(
        runner.invoke(
            app,
            [
                "bank",
                "--model",
                "tiny",
                "--animals",
                "owl,cat",
                "--n-pairs",
                "4",
                "--out",
                str(tmp_path / "bank"),
                "--device",
                "cpu",
                "--no-progress",
                "--json",
            ],
        )
    )
    assert dirs == {"owl": str(tmp_path / "bank" / "owl"), "cat": str(tmp_path / "bank" / "cat")}
    assert all((tmp_path / "bank" / a / "vector.json").exists() for a in dirs)


def test_theorem_json_is_its_results(tmp_path):
    res = runner.invoke(
        app,
        [
            "theorem",
            "--seeds",
            "3",
            "--model",
            "mlp",
            "--teacher",
            "random",
            "--loss",
            "mse",
            "--hidden",
            "16",
            "--n-inputs",
            "16",
            "--out",
            str(tmp_path / "t"),
            "--json",
        ],
    )
    assert _json(res) == read_json(tmp_path / "t" / "results.json") and "artifacts" in res.stderr


def test_mnist_json_is_its_results(tmp_path):
    res = runner.invoke(
        app,
        [
            "mnist",
            "--seeds",
            "2",
            "--hidden",
            "16",
            "--teacher-steps",
            "10",
            "--student-steps",
            "10",
            "--out",
            str(tmp_path / "m"),
            "--json",
        ],
    )
    assert _json(res) == read_json(tmp_path / "m" / "results.json")
