"""Per-row audit and score-quantile datasets on the tiny model, against ground truth."""

from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from interp.cli import app
from interp.generate import SampleConfig
from interp.row_audit import RowAuditConfig, auroc, load_scores, row_llr, run_row_audit
from interp.runs import MANIFEST_FILE, content_hash, read_json, read_jsonl
from interp.selection import quantile_indices, select_dataset
from interp.steering import Steering, SteeringVector
from interp.teachers import DataConfig, Teacher, generate_dataset

LAYER = 2


@pytest.fixture(scope="module")
def data(tiny, owl_vector, tmp_path_factory):
    """A steered and a control teacher's datasets (same prompts) and the vector's directory."""
    root = tmp_path_factory.mktemp("row_audit")
    owl_vector.save(root / "vector")
    dcfg = DataConfig(n_prompts=12, sampling=SampleConfig(constrained=True, max_new_tokens=12, batch_size=12))
    steered = Teacher("steered", "owl", Steering(LAYER, 4.0))
    generate_dataset(tiny, steered, owl_vector, dcfg, root / "steered", progress=False)
    generate_dataset(tiny, Teacher("control"), owl_vector, dcfg, root / "control", progress=False)
    return root


def _cfg(data, **kw):
    return RowAuditConfig(
        dataset=str(data / "steered"),
        vector=str(data / "vector"),
        layer=LAYER,
        multiplier=4.0,
        model="tiny",
        device="cpu",
        n_boot=200,
        **kw,
    )


def test_a_zero_vector_scores_every_row_exactly_zero(tiny, owl_vector, data):
    rows = read_jsonl(data / "steered" / "dataset.jsonl")
    zero = SteeringVector(torch.zeros_like(owl_vector.vectors), owl_vector.meta)
    llr = row_llr(tiny, rows, Teacher("steered", "owl", Steering(LAYER, 4.0)), zero, batch_size=5)
    assert len(llr) == len(rows) and torch.equal(llr, torch.zeros(len(rows), dtype=torch.float64))


def test_the_steered_teacher_scores_its_own_rows_as_the_audit_does(tiny, owl_vector, data):
    from interp.analysis.likelihood import steering_loglik

    rows = read_jsonl(data / "steered" / "dataset.jsonl")
    llr = row_llr(tiny, rows, Teacher("steered", "owl", Steering(LAYER, 4.0)), owl_vector)
    ref = steering_loglik(tiny, rows, {"owl": owl_vector}, LAYER, (4.0,), progress=False)[:, 0, 0]
    assert torch.allclose(llr, ref, atol=1e-9) and llr.abs().sum() > 0


def test_a_prompted_teacher_reads_the_system_prompt(tiny, data):
    rows = read_jsonl(data / "control" / "dataset.jsonl")[:4]
    llr = row_llr(tiny, rows, Teacher("prompted", "owl"), vocab="full")
    assert torch.isfinite(llr).all() and (llr != 0).all()


def test_auroc_of_identical_scores_is_one_half_and_of_a_planted_separation_one():
    x = torch.tensor([0.3, -1.0, 2.0, 0.3, 5.0])
    same = auroc(x, x.clone())
    assert same["auroc"] == 0.5 and same["ci95"][0] < 0.5 < same["ci95"][1]
    sep = auroc(x + 100, x)
    assert sep["auroc"] == 1.0 and sep["ci95"][1] == 1.0
    with pytest.raises(ValueError, match="at least two"):
        auroc(x[:1], x)


def test_the_runner_writes_scores_keyed_by_their_inputs_and_an_auroc(data, tmp_path):
    res = run_row_audit(_cfg(data, control=str(data / "control")), tmp_path / "ra", progress=False)
    man = read_json(tmp_path / "ra" / MANIFEST_FILE)
    rows = read_jsonl(data / "steered" / "dataset.jsonl")
    assert (
        man["inputs"]["dataset"] == content_hash(rows)
        and man["inputs"]["vector"] == SteeringVector.load(data / "vector").hash()
    )
    assert man["inputs"]["model"] and man["package_version"] and "git_commit" in man and man["config"]["layer"] == LAYER
    s = load_scores(tmp_path / "ra", data / "steered")
    assert s["llr"].shape == (len(rows),) and s["llr"].dtype == torch.float64
    assert 0 <= res["auroc"]["ci95"][0] <= res["auroc"]["auroc"] <= res["auroc"]["ci95"][1] <= 1
    # a dataset against itself does not separate
    same = run_row_audit(_cfg(data, control=str(data / "steered")), tmp_path / "same", progress=False)
    assert same["auroc"]["auroc"] == 0.5


def test_scores_for_one_dataset_are_refused_for_another_in_one_line(data, tmp_path):
    run_row_audit(_cfg(data), tmp_path / "ra", progress=False)
    with pytest.raises(ValueError, match="were computed for dataset") as e:
        load_scores(tmp_path / "ra", data / "control")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="were computed for dataset"):
        select_dataset(data / "control", tmp_path / "ra", tmp_path / "sel", "top")
    res = CliRunner().invoke(
        app, ["select", str(data / "control"), "--scores", str(tmp_path / "ra"), "--out", str(tmp_path / "sel2")]
    )
    assert res.exit_code == 2 and "were computed for dataset" in res.output


@pytest.mark.parametrize("n", [10, 13, 24])
def test_quintiles_have_equal_rows_never_overlap_and_partition_when_they_can(n):
    scores = torch.randn(n, generator=torch.Generator().manual_seed(n)).double()
    bins = [quantile_indices(scores, f"q{i}") for i in range(5)]
    k = n // 5
    assert all(len(b) == k for b in bins) and len(set().union(*bins)) == 5 * k
    if n % 5 == 0:
        assert sorted(set().union(*bins)) == list(range(n))
    assert quantile_indices(scores, "bottom") == bins[0] and quantile_indices(scores, "top") == bins[4]
    assert quantile_indices(scores, "middle") == bins[2]
    top = scores[bins[4]]
    assert top.min() >= scores[bins[3]].max() and scores[bins[0]].max() <= scores[bins[1]].min()
    rnd = quantile_indices(scores, "random", seed=1)
    assert len(rnd) == k and rnd == quantile_indices(scores, "random", seed=1)
    with pytest.raises(ValueError, match="quantile"):
        quantile_indices(scores, "q5")


def test_a_quintile_dataset_keeps_its_lineage_and_trains(tiny, data, tmp_path):
    from interp.datasets import read_rows
    from interp.train import TrainConfig, train_student

    run_row_audit(_cfg(data), tmp_path / "ra", progress=False)
    llr = load_scores(tmp_path / "ra")["llr"]
    rows = read_jsonl(data / "steered" / "dataset.jsonl")
    mans = {q: select_dataset(data / "steered", tmp_path / "ra", tmp_path / q, q) for q in ("top", "bottom", "random")}
    top = read_rows(tmp_path / "top")
    assert len(top) == len(rows) // 5 == mans["random"]["n_kept"]
    assert [r["completion"] for r in top] == [rows[r["parent_index"]]["completion"] for r in top]
    assert min(llr[[r["parent_index"] for r in top]]) >= max(
        llr[[r["parent_index"] for r in read_rows(tmp_path / "bottom")]]
    )
    m = mans["top"]
    assert (
        m["parent"]["dataset_hash"] == content_hash(rows)
        and m["selection"]["score_key"] == load_scores(tmp_path / "ra")["manifest"]["key"]
    )
    assert m["dataset_hash"] == content_hash(top) and m["teacher"]["kind"] == "steered"
    train_student(tiny, top, TrainConfig(epochs=1, batch_size=2, lr=1e-3), tmp_path / "student", progress=False)
    assert (tmp_path / "student" / MANIFEST_FILE).exists()


def test_the_row_audit_command_prints_the_auroc_and_writes_json(data, tmp_path):
    res = CliRunner().invoke(
        app,
        [
            "row-audit",
            str(data / "steered"),
            "--vector",
            str(data / "vector"),
            "--layer",
            str(LAYER),
            "--multiplier",
            "4",
            "--model",
            "tiny",
            "--control",
            str(data / "control"),
            "--out",
            str(tmp_path / "ra"),
            "--device",
            "cpu",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "AUROC" in res.output and "scores key" in res.output
    res = CliRunner().invoke(app, ["row-audit", str(data / "steered"), "--model", "tiny", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--vector" in res.output


def test_an_e1_run_trains_students_on_a_score_bin_and_leaves_other_keys_alone(tmp_path):
    from interp import pipeline
    from interp.config import parse_config
    from interp.datasets import read_rows
    from interp.plan import plan_e1
    from interp.runs import stage_dirs

    raw = {
        "experiment": "q",
        "model": "tiny",
        "seeds": [0],
        "teacher": {"kinds": ["control", "steered"], "layer": LAYER, "multiplier": 1.0},
        "data": {"n_prompts": 10, "batch_size": 10, "max_new_tokens": 12},
        "train": {"epochs": 1, "batch_size": 2, "lr": 1e-3},
        "eval": {"split": "tuning", "n_boot": 200},
    }
    plain = parse_config(raw)
    top = parse_config({**raw, "data": {**raw["data"], "select": "top"}})
    assert "select" not in plain.key()["data"] and top.key()["data"]["select"] == "top"
    with pytest.raises(ValueError, match="select"):
        parse_config({**raw, "data": {**raw["data"], "select": "q5"}})
    res = pipeline.run_e1(top, tmp_path, progress=False, log=lambda *a: None)
    dirs = stage_dirs(res["run_dir"])
    assert {"rowscore/steered/seed0", "select/steered/seed0", "select/control/seed0"} <= set(dirs)
    assert "rowscore/control/seed0" not in dirs  # control takes a random bin: no scores
    for kind in ("steered", "control"):
        sel = read_json(dirs[f"select/{kind}/seed0"] / MANIFEST_FILE)
        full = read_json(dirs[f"data/{kind}/seed0"] / MANIFEST_FILE)
        assert sel["n_kept"] == full["n_kept"] // 5 == res["datasets"][f"{kind}/seed0"]["select"]["n_kept"]
        assert sel["selection"]["quantile"] == ("top" if kind == "steered" else "random")
        assert read_json(dirs[f"student/{kind}/seed0"] / MANIFEST_FILE)["dataset_dir"] == str(
            dirs[f"select/{kind}/seed0"]
        )
    # the bin's profile: its rows' scores under the run's own rowscore stage
    from interp.selection import bin_profiles

    prof = bin_profiles([res["run_dir"]])
    assert list(prof) == ["top"] and list(prof["top"]) == ["0"]
    llr = load_scores(dirs["rowscore/steered/seed0"])["llr"]
    picked = [r["parent_index"] for r in read_rows(dirs["select/steered/seed0"])]
    assert prof["top"]["0"]["llr_mean"] == pytest.approx(float(llr[picked].mean()), abs=1e-12)
    assert prof["top"]["0"]["llr_min"] == float(llr.topk(len(picked)).values.min())
    plan = {s["name"]: s for s in plan_e1(top, tmp_path)["stages"]}
    assert plan["select/steered/seed0"]["status"] == "cached" and plan["student/steered/seed0"]["status"] == "cached"
    # the lineage of a quintile student passes through its bin to the vector
    from interp.lineage import lineage, vectors_reached

    tree = lineage(dirs["student/steered/seed0"])
    assert tree["roots"][0]["parents"][0]["kind"] == "selection"
    assert vectors_reached(tree) == [read_json(dirs["vector"] / "vector.json")["vector_hash"]]


@pytest.mark.parametrize(
    ("kind", "model", "label"),
    [
        ("finetuned", "cache/finetune-x", "teacher finetuned"),
        ("control", "cache/student-x", "teacher control on a student"),
    ],
)
def test_the_table_names_a_finetuned_teacher_as_itself_and_other_models_as_students(kind, model, label):
    from interp.tables import row_audit_table

    res = {
        "teacher": {"kind": kind, "animal": "owl"},
        "teacher_model": model,
        "llr": {"mean": 0.5, "ci95": [0.1, 0.9], "n": 80},
        "vocab": "grammar",
        "key": "k",
    }
    text = " ".join(row_audit_table(res, width=400).split())
    assert label in text and ("on a student" in text) == (kind != "finetuned")


def test_a_bins_profile_is_its_rows_scores_and_lengths(data, tmp_path):
    from interp.selection import bin_profile

    run_row_audit(_cfg(data), tmp_path / "ra", progress=False)
    llr = load_scores(tmp_path / "ra")["llr"]
    rows = read_jsonl(data / "steered" / "dataset.jsonl")
    prof = {}
    for q in ("top", "bottom", "random"):
        select_dataset(data / "steered", tmp_path / "ra" if q != "random" else None, tmp_path / q, q, seed=3)
        prof[q] = bin_profile(tmp_path / q, tmp_path / "ra")
        idx = quantile_indices(llr, q, seed=3)
        assert prof[q]["quantile"] == q and prof[q]["rows"] == len(idx) == len(rows) // 5
        assert prof[q]["llr_mean"] == pytest.approx(float(llr[idx].mean()), abs=1e-12)
        assert prof[q]["numbers_per_row"] == sum(len(rows[i]["numbers"]) for i in idx) / len(idx)
        assert prof[q]["chars_per_row"] == sum(len(rows[i]["completion"]) for i in idx) / len(idx)
    assert prof["top"]["llr_min"] >= prof["bottom"]["llr_max"]
    assert prof["top"]["parent_llr_mean"] == pytest.approx(float(llr.mean()), abs=1e-12)
    run_row_audit(replace(_cfg(data), dataset=str(data / "control")), tmp_path / "rc", progress=False)
    with pytest.raises(ValueError, match="were computed for dataset"):  # scores of other rows
        bin_profile(tmp_path / "top", tmp_path / "rc")


def test_the_bins_script_profiles_every_bin_of_a_quintile_sweep(tiny_sweep_raw, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from interp.selection import bin_profile
    from interp.sweep import parse_sweep, run_sweep

    raw = tiny_sweep_raw("q", {"data.select": ["top", "random"]}, LAYER)
    raw["teacher"]["kinds"] = ["control", "steered"]
    raw["data"]["n_prompts"] = 10
    raw["train"]["batch_size"] = 2
    raw["sweep"].update(reference={"data.select": "random"}, comparison="steered-control")
    sw = parse_sweep(raw)
    run_sweep(sw, tmp_path, progress=False, log=lambda *a, **k: None)
    script = Path(__file__).parents[1] / "experiments" / "quintile_bins.py"
    out = tmp_path / "bins.json"
    ok = subprocess.run(
        [sys.executable, str(script), str(sw.directory(tmp_path)), "--out", str(out)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    res = read_json(out)
    assert sorted(res["profiles"]) == ["random", "top"] and all(
        sorted(v) == ["0", "1"] for v in res["profiles"].values()
    )
    for seed in ("0", "1"):  # against the stages themselves: the run's select and rowscore directories
        cache = tmp_path / "cache"
        top = next(
            d
            for d in cache.glob("select-*")
            if read_json(d / "config.json")["quantile"] == "top" and read_json(d / "config.json")["seed"] == int(seed)
        )
        scores = next(
            d
            for d in cache.glob("rowscore-*")
            if read_json(d / MANIFEST_FILE)["inputs"]["dataset"]
            == read_json(top / MANIFEST_FILE)["parent"]["dataset_hash"]
        )
        assert res["profiles"]["top"][seed] == bin_profile(top, scores)
        assert res["profiles"]["random"][seed]["parent_llr_mean"] == res["profiles"]["top"][seed]["parent_llr_mean"]
    assert res["summary"]["top"]["llr_mean"] == pytest.approx(
        sum(p["llr_mean"] for p in res["profiles"]["top"].values()) / 2
    )
    assert "written:" in ok.stdout and res["git_commit"]
    bad = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "none"), "--out", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no finished job" in bad.stderr
    assert not (tmp_path / "x.json").exists()
