"""`--json`, `interp run --dry-run` and config overrides on the command line."""

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interp.cli import app
from interp.config import load_config, parse_config, read_toml
from interp.runs import MANIFEST_FILE, content_hash, read_json, write_jsonl

TINY = Path(__file__).resolve().parent.parent / "experiments" / "configs" / "tiny.toml"
runner = CliRunner()
SMALL = ["data.n_prompts=8", "data.batch_size=8", "data.max_new_tokens=12", "eval.n_boot=100"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny E1 run through the CLI: a dry run first, then the run itself with --json."""
    root = tmp_path_factory.mktemp("root") / "artifacts"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INTERP_CACHE", str(tmp_path_factory.mktemp("models")))
        before = runner.invoke(app, ["run", str(TINY), *SMALL, "--root", str(root), "--dry-run", "--json"])
        root_after_dry_run = root.exists()
        ran = runner.invoke(app, ["run", str(TINY), *SMALL, "--root", str(root), "--json", "--no-progress"])
    return root, before, root_after_dry_run, ran


def test_run_json_writes_only_the_results_on_stdout(tiny_run):
    root, _, _, ran = tiny_run
    assert ran.exit_code == 0, ran.output
    res = json.loads(ran.stdout)  # the whole of stdout is one JSON document
    assert res == read_json(Path(res["run_dir"]) / "results.json")
    assert "steered-control" in res["transfer"]
    assert "student/steered/seed0" in ran.stderr and "trait probability" in ran.stderr  # the log and tables


def test_dry_run_lists_the_stages_and_computes_nothing(tiny_run):
    root, before, root_after_dry_run, ran = tiny_run
    assert before.exit_code == 0, before.output
    plan = json.loads(before.stdout)
    assert not root_after_dry_run  # no cache, no run directory, no config.json
    by_name = {s["name"]: s for s in plan["stages"]}
    assert by_name["vector"]["status"] == "to compute" and by_name["data/control/seed0"]["status"] == "to compute"
    assert by_name["data/steered/seed0"] == {
        "name": "data/steered/seed0",
        "status": "pending",
        "dir": None,
        "waits_on": "vector",
    }
    assert by_name["student/control/seed0"]["waits_on"] == "data/control/seed0"
    res = json.loads(ran.stdout)
    assert plan["run_dir"] == res["run_dir"]


def test_dry_run_after_the_run_finds_every_stage_it_used_cached(tiny_run):
    root, _, _, ran = tiny_run
    run_dir = Path(json.loads(ran.stdout)["run_dir"])
    after = runner.invoke(app, ["run", str(TINY), *SMALL, "--root", str(root), "--dry-run", "--json"])
    assert after.exit_code == 0, after.output
    plan = json.loads(after.stdout)
    used = {(s["name"], s["dir"]) for s in read_json(run_dir / MANIFEST_FILE)["stages"]}
    assert {(s["name"], s["dir"]) for s in plan["stages"]} == used
    assert {s["status"] for s in plan["stages"]} == {"cached"}
    table = runner.invoke(app, ["run", str(TINY), *SMALL, "--root", str(root), "--dry-run"])
    assert "stages cached" in table.output and "student/steered/seed0" in table.output


def test_analyze_json_writes_the_analysis_results_on_stdout(tiny_run):
    root, _, _, ran = tiny_run
    run_dir = Path(json.loads(ran.stdout)["run_dir"])
    out = runner.invoke(
        app,
        [
            "analyze",
            str(run_dir),
            "--n-texts",
            "4",
            "--n-random",
            "50",
            "--n-rows",
            "4",
            "--no-sufficiency",
            "--no-emergence",
            "--no-progress",
            "--device",
            "cpu",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    assert res["layers"] == read_json(run_dir / "analysis" / "results.json")["layers"]
    assert "activation shift" in out.stderr


def test_overrides_set_fields_and_the_run_id_is_the_overridden_configs(tmp_path):
    res = runner.invoke(
        app,
        [
            "run",
            str(TINY),
            "train.lr=2e-4",
            "seeds=[0,1]",
            "model=tiny",
            "--root",
            str(tmp_path / "a"),
            "--dry-run",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    raw = read_toml(TINY)
    want = parse_config({**raw, "train": {**raw["train"], "lr": 2e-4}, "seeds": [0, 1]})
    plan = json.loads(res.stdout)
    assert plan["run_id"] == content_hash(want.key(), 10) != content_hash(load_config(TINY).key(), 10)
    assert {"data/control/seed0", "data/control/seed1"} <= {s["name"] for s in plan["stages"]}
    assert "seeds [0, 1]" in res.stderr


@pytest.mark.parametrize(
    "override, field",
    [
        ("train.lrr=1", "train.lrr"),
        ("train.lr=abc", "train.lr"),
        ("seeds=[0,", "seeds"),
        ("train.lr", "FIELD=VALUE"),
        ("model.x=1", "model is a value"),
    ],
)
def test_a_bad_override_is_one_line_naming_the_field(tmp_path, override, field):
    res = runner.invoke(app, ["run", str(TINY), override, "--root", str(tmp_path / "a"), "--dry-run"])
    assert res.exit_code == 2 and field in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()


def test_sweep_dry_run_json_lists_the_cells():
    cfg = Path(__file__).resolve().parent.parent / "experiments" / "configs" / "noise_ablation.toml"
    res = runner.invoke(app, ["sweep", str(cfg), "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    from interp.sweep import load_sweep

    sw = load_sweep(cfg)
    assert [c["id"] for c in out["cells"]] == [c.id for c in sw.cells] and out["n_jobs"] == len(sw.jobs()) > 0


def test_audit_json_writes_the_ranking_on_stdout(tmp_path):
    from interp.prompts import number_prompts

    bank = tmp_path / "bank"
    assert (
        runner.invoke(
            app,
            [
                "bank",
                "--model",
                "tiny",
                "--animals",
                "owl,cat",
                "--out",
                str(bank),
                "--n-pairs",
                "4",
                "--device",
                "cpu",
                "--no-progress",
            ],
        ).exit_code
        == 0
    )
    rng = random.Random(0)
    data = tmp_path / "numbers.jsonl"
    rows = [
        {"prompt": p, "completion": ", ".join(str(rng.randrange(1000)) for _ in range(3))}
        for p in number_prompts(8, seed=2)
    ]
    write_jsonl(data, rows)
    write_jsonl(tmp_path / "clean.jsonl", rows[::-1])
    res = runner.invoke(
        app,
        [
            "audit",
            str(data),
            "--model",
            "tiny",
            "--vectors",
            str(bank),
            "--layer",
            "1",
            "--n-perm",
            "50",
            "--clean",
            str(tmp_path / "clean.jsonl"),
            "--out",
            str(tmp_path / "audit"),
            "--device",
            "cpu",
            "--no-progress",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out == read_json(tmp_path / "audit" / "results.json") and {r["name"] for r in out["ranking"]} == {
        "owl",
        "cat",
    }
    assert "likelihood audit" in res.stderr
