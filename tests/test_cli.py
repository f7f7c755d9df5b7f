import json

from typer.testing import CliRunner

from interp.cli import app

runner = CliRunner()


def test_models_lists_the_registry():
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0
    for name in ("smollm2-135m", "gemma3-270m", "tiny"):
        assert name in res.output


def test_steer_then_generate_on_tiny(tmp_path):
    vec = tmp_path / "vec"
    res = runner.invoke(app, ["steer", "--model", "tiny", "--out", str(vec), "--n-pairs", "4",
                              "--layers", "1,2", "--multipliers", "0.5,1", "--split", "tuning", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    sweep = json.loads((vec / "sweep.json").read_text())
    assert len(sweep["cells"]) == 4 and sweep["base_prob"] > 0
    out = tmp_path / "data"
    res = runner.invoke(app, ["generate", "--model", "tiny", "--vector", str(vec), "--layer", "2", "--n", "8",
                              "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    lines = (out / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 8 and (out / "dataset.jsonl").exists()
    assert "8/8 passed" in res.output  # grammar-constrained by default


def test_generate_steered_without_vector_is_a_one_line_error(tmp_path):
    res = runner.invoke(app, ["generate", "--model", "tiny", "--teacher", "steered", "--n", "2", "--out", str(tmp_path / "d"), "--device", "cpu"])
    assert res.exit_code == 2 and "vector" in res.output


def test_run_with_a_malformed_config_names_the_field(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('model = "tiny"\n[train]\nlr = -1\n')
    res = runner.invoke(app, ["run", str(p)])
    assert res.exit_code == 2 and "train.lr" in res.output
