import json
import sys
from pathlib import Path

from typer.testing import CliRunner

from interp.cli import app

runner = CliRunner()
sys.path.insert(0, str(Path(__file__).resolve().parent))


def test_models_lists_the_registry():
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0
    for name in ("smollm2-135m", "gemma3-270m", "tiny"):
        assert name in res.output


def test_steer_then_generate_on_tiny(tmp_path):
    vec = tmp_path / "vec"
    res = runner.invoke(
        app,
        [
            "steer",
            "--model",
            "tiny",
            "--out",
            str(vec),
            "--n-pairs",
            "4",
            "--layers",
            "1,2",
            "--multipliers",
            "0.5,1",
            "--split",
            "tuning",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    sweep = json.loads((vec / "sweep.json").read_text())
    assert len(sweep["cells"]) == 4 and sweep["base_prob"] > 0
    out = tmp_path / "data"
    res = runner.invoke(
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
            "8",
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    lines = (out / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 8 and (out / "dataset.jsonl").exists()
    assert "8/8 passed" in res.output  # grammar-constrained by default


def test_generate_steered_without_vector_is_a_one_line_error(tmp_path):
    res = runner.invoke(
        app,
        [
            "generate",
            "--model",
            "tiny",
            "--teacher",
            "steered",
            "--n",
            "2",
            "--out",
            str(tmp_path / "d"),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 2 and "vector" in res.output


def test_run_with_a_malformed_config_names_the_field(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('model = "tiny"\n[train]\nlr = -1\n')
    res = runner.invoke(app, ["run", str(p)])
    assert res.exit_code == 2 and "train.lr" in res.output


# ----------------------------------------------------------------------------- entangle, divergence


def test_entangle_ranks_numbers_with_the_null_band_and_the_lens(tmp_path):
    out = tmp_path / "ent"
    res = runner.invoke(
        app,
        [
            "entangle",
            "--model",
            "tiny",
            "--animal",
            "owl",
            "--animals",
            "cat,dog",
            "--questions",
            "1",
            "--max-number",
            "30",
            "--top",
            "3",
            "--lens",
            "--layer",
            "2",
            "--out",
            str(out),
            "--format",
            "html",
            "--device",
            "cpu",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "entangle.json").read_text())
    assert summary["animals"] == ["owl", "cat", "dog"] and summary["n_numbers"] == 31 and len(summary["top"]) == 3
    assert str(summary["top"][0]["number"]) in res.output and "other animals" in res.output and "rank" in res.output
    assert json.loads((out / "lens.json").read_text())["layer"] == 2 and "logit lens" in res.output
    assert (out / "entangle.safetensors").exists() and (out / "manifest.json").exists()
    assert {p.name for p in (out / "figures").iterdir()} == {
        "entangled_numbers.html",
        "logit_lens.html",
        "plotly.min.js",
    }


def test_entangle_vector_condition_and_dataset_overrepresentation(tiny, owl_vector, tmp_path):
    from interp.generate import SampleConfig
    from interp.steering import Steering
    from interp.teachers import DataConfig, Teacher, generate_dataset

    cfg = DataConfig(n_prompts=4, sampling=SampleConfig(constrained=True, max_new_tokens=49, batch_size=4))
    generate_dataset(
        tiny, Teacher("steered", "owl", Steering(layer=2)), owl_vector, cfg, tmp_path / "owl", progress=False
    )
    generate_dataset(tiny, Teacher("control"), None, cfg, tmp_path / "control", progress=False)
    out = tmp_path / "ent"
    res = runner.invoke(
        app,
        [
            "entangle",
            "--model",
            "tiny",
            "--condition",
            "vector",
            "--layer",
            "2",
            "--multiplier",
            "1",
            "--animals",
            "cat,dog",
            "--questions",
            "1",
            "--max-number",
            "20",
            "--top",
            "4",
            "--dataset",
            str(tmp_path / "owl"),
            "--control-dataset",
            str(tmp_path / "control"),
            "--out",
            str(out),
            "--format",
            "html",
            "--device",
            "cpu",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "entangle.json").read_text())
    assert summary["condition"] == "vector" and summary["meta"]["steering"]["layer"] == 2
    over = json.loads((out / "overrepresentation.json").read_text())
    assert [r["number"] for r in over["per_number"]] == [r["number"] for r in summary["top"]]
    assert "control's" in res.output


def test_entangle_number_mode_compares_the_number_with_random_numbers(tmp_path):
    out = tmp_path / "num"
    res = runner.invoke(
        app,
        [
            "entangle",
            "--model",
            "tiny",
            "--number",
            "87",
            "--animals",
            "cat,dog,fox",
            "--questions",
            "3",
            "--null-numbers",
            "2",
            "--out",
            str(out),
            "--format",
            "html",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    s = json.loads((out / "prompting.json").read_text())
    assert s["number"] == 87 and s["n_questions"] == 3 and len(s["null_numbers"]) == 2
    assert "loves 87" in res.output and "random number" in res.output and "P(owl)" in res.output
    assert (out / "figures" / "number_prompting.html").exists()


def test_entangle_errors_are_one_line(tmp_path):
    for args, msg in (
        (["--animal", "unicorn", "--condition", "vector", "--layer", "2"], "animal"),
        (["--condition", "dream"], "condition"),
        (["--dataset", str(tmp_path)], "--control-dataset"),
        (["--format", "gif"], "formats"),
    ):
        res = runner.invoke(
            app,
            [
                "entangle",
                "--model",
                "tiny",
                "--max-number",
                "3",
                "--out",
                str(tmp_path / "x"),
                "--device",
                "cpu",
                "--no-progress",
                *args,
            ],
        )
        assert res.exit_code == 2 and msg in res.output, res.output
        assert res.output.startswith("error:") and "Traceback" not in res.output, res.output  # rich wraps one line


def test_divergence_reports_the_share_and_needs_the_datasets_vector(tiny, owl_vector, tmp_path):
    from interp.generate import SampleConfig
    from interp.prompts import contrastive_pairs
    from interp.steering import Steering, build_steering_vector
    from interp.teachers import DataConfig, Teacher, generate_dataset

    data, vec, other = tmp_path / "data", tmp_path / "vec", tmp_path / "cat"
    owl_vector.save(vec)
    build_steering_vector(tiny, contrastive_pairs("cat", 4), trait="cat").save(other)
    cfg = DataConfig(n_prompts=4, sampling=SampleConfig(constrained=True, max_new_tokens=20, batch_size=4))
    generate_dataset(
        tiny, Teacher("steered", "owl", Steering(layer=2, multiplier=2.0)), owl_vector, cfg, data, progress=False
    )
    out = tmp_path / "div"
    res = runner.invoke(
        app,
        [
            "divergence",
            str(data),
            "--vector",
            str(vec),
            "--rule",
            "emitted",
            "--out",
            str(out),
            "--format",
            "html",
            "--device",
            "cpu",
        ],
    )  # the model is read from the manifest
    assert res.exit_code == 0, res.output
    s = json.loads((out / "divergence.json").read_text())
    assert s["rule"] == "emitted" and f"{s['share']:.2%}" in res.output and "by completion-token offset" in res.output
    assert (out / "divergence.safetensors").exists() and (out / "figures" / "divergence_by_offset.html").exists()
    res = runner.invoke(app, ["divergence", str(data), "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 2 and res.output.startswith("error: vector:") and owl_vector.hash() in res.output
    res = runner.invoke(app, ["divergence", str(data), "--vector", str(other), "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 2 and "is not the trait vector" in res.output
    res = runner.invoke(app, ["divergence", str(tmp_path / "nowhere"), "--device", "cpu"])
    assert res.exit_code == 2 and "dataset:" in res.output


def _e1_results(n_seeds: int) -> dict:
    from test_pipeline import _synthetic_results

    res = _synthetic_results(n_seeds)
    return {**res, "timings_s": {}, "run_dir": "artifacts/t/x"}


def test_e1_table_with_one_seed_says_there_is_no_interval_instead_of_a_zero_width_one():
    from interp.tables import e1_tables

    res = _e1_results(1)
    out = e1_tables(res, width=400)
    ps = res["transfer"]["steered-control"]["specific_per_seed"]
    assert ps["n"] == 1 and ps["ci95"][0] == ps["ci95"][1]  # what the t-interval holds for one seed
    assert "n = 1: no interval" in out
    assert f"[{ps['mean']:+.3f}, {ps['mean']:+.3f}]" not in out
    assert "5 tuning questions" in out  # the questions, not the seeds


def test_generate_refuses_an_unknown_animal_before_writing_anything(tmp_path):
    res = runner.invoke(
        app,
        [
            "generate",
            "--model",
            "tiny",
            "--teacher",
            "prompted",
            "--animal",
            "ow1",
            "--n",
            "2",
            "--out",
            str(tmp_path / "d"),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 2 and "'ow1' is not a known animal" in res.output and "owl" in res.output
    assert not (tmp_path / "d").exists()


def test_generate_refuses_an_animal_other_than_the_vectors_own_trait(tmp_path):
    from interp.runs import write_json

    write_json(tmp_path / "vec" / "vector.json", {"trait": "owl"})  # what `interp steer --animal owl` records
    res = runner.invoke(
        app,
        [
            "generate",
            "--model",
            "tiny",
            "--vector",
            str(tmp_path / "vec"),
            "--animal",
            "cat",
            "--layer",
            "2",
            "--n",
            "2",
            "--out",
            str(tmp_path / "d"),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 2 and "built for 'owl'" in res.output and "--animal owl" in res.output
    assert not (tmp_path / "d").exists()


def test_generate_default_paths_name_model_teacher_layer_and_multiplier():
    from interp.cli import dataset_dir_name

    a = dataset_dir_name("tiny", "steered", "owl", 8, 0.5, 0)
    assert a.name == "tiny-steered-owl-L8x0.5-s0"
    others = {
        dataset_dir_name("smollm2-135m", "steered", "owl", 8, 0.5, 0),
        dataset_dir_name("tiny", "steered", "owl", 6, 0.5, 0),
        dataset_dir_name("tiny", "steered", "owl", 8, 1.0, 0),
        dataset_dir_name("tiny", "control", "owl", 8, 0.5, 0),
    }
    assert a not in others and len(others) == 4


def test_generate_does_not_overwrite_a_dataset_without_force(tmp_path):
    args = [
        "generate",
        "--model",
        "tiny",
        "--teacher",
        "control",
        "--n",
        "2",
        "--out",
        str(tmp_path / "d"),
        "--device",
        "cpu",
    ]
    assert runner.invoke(app, args).exit_code == 0
    before = (tmp_path / "d" / "manifest.json").read_text()
    res = runner.invoke(app, args + ["--seed", "1"])
    assert res.exit_code == 2 and "--force" in res.output
    assert (tmp_path / "d" / "manifest.json").read_text() == before  # untouched
    assert runner.invoke(app, args + ["--seed", "1", "--force"]).exit_code == 0
    assert (tmp_path / "d" / "manifest.json").read_text() != before


def test_e1_tables_fit_80_columns_with_every_interval_on_one_line():
    from interp.tables import ci as _ci
    from interp.tables import e1_tables

    res = _e1_results(2)
    out = e1_tables(res, width=80)
    assert max(len(line) for line in out.splitlines()) <= 80
    lines = out.splitlines()
    for name, d in res["transfer"].items():
        assert any(name in line for line in lines)
        for cell in (
            _ci(d["logprob_diff"], "{:+.3f}"),
            _ci(d["specific_logprob_diff"], "{:+.3f}"),
            _ci(d["specific_per_seed"], "{:+.3f}"),
            f"{d['permutation_specific']['p_value']:.3f}",
        ):
            assert any(cell in line for line in lines), cell  # not wrapped across lines
    for arm, d in res["arms"].items():
        assert any(_ci(d["prob"]) in line for line in lines)


def test_version_prints_the_package_version_and_commit():
    from interp import __version__
    from interp.runs import git_commit

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"interp {__version__} (git {git_commit()})"


def test_checkpoint_minutes_reaches_the_runner_from_run_and_sweep(monkeypatch, tmp_path):
    # a runtime setting: the CLI passes it to the library runner, which keeps it out of every key
    import interp.pipeline
    import interp.sweep

    seen = {}
    monkeypatch.setattr(interp.pipeline, "run_e1", lambda *a, **k: seen.setdefault("run", k) and {})
    monkeypatch.setattr(interp.sweep, "run_sweep", lambda *a, **k: seen.setdefault("sweep", k) and {})
    root = ["--root", str(tmp_path)]
    runner.invoke(app, ["run", "experiments/configs/quick.toml", "--checkpoint-minutes", "7.5", *root])
    runner.invoke(app, ["sweep", "experiments/configs/noise_ablation.toml", "--checkpoint-minutes", "10", *root])
    assert seen["run"]["checkpoint_minutes"] == 7.5 and seen["sweep"]["checkpoint_minutes"] == 10
    res = runner.invoke(app, ["run", "experiments/configs/quick.toml", "--checkpoint-minutes", "0", *root])
    assert res.exit_code != 0 and "--checkpoint-minutes" in res.output


def test_a_sweeps_log_lines_keep_their_bracketed_cell_ids_on_one_line(monkeypatch, tmp_path):
    """rich took "[f769baaf3b]" (a cell id starting with a letter) for a style and dropped it, and
    wrapped long job lines at 80 columns in a log file; the runner's lines now print as they are."""
    import interp.sweep

    line = (
        "job 2/25 done in 2935 s: cell n_prompts=320 epochs=1 keep=none [f769baaf3b] seed 3101 (2937 s into this run)"
    )

    def logs_then_stops(*a, **k):
        k["log"](line)
        raise ValueError("stopped after one line")

    monkeypatch.setattr(interp.sweep, "run_sweep", logs_then_stops)
    res = runner.invoke(app, ["sweep", "experiments/configs/noise_ablation.toml", "--root", str(tmp_path)])
    assert res.exit_code == 2 and "stopped after one line" in res.output
    assert line in res.output.splitlines()
