"""Run-level analyses on a tiny E1 run (`interp analyze`) and dataset audits (`interp audit`).

The run's steered seed-0 student is replaced by a planted one: the base with a rank-1 edit of
block LAYER's down_proj that writes along the run's own trait vector v[LAYER]. Its shift must be
exactly along v from LAYER on and zero before, and its whole weight update must lie along v.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from interp import pipeline
from interp.analysis import activation_shift, layer_cosines, residual_gradients
from interp.analysis.audit import audit_dataset, build_bank, clean_rows, load_bank, load_rows
from interp.analysis.run import (
    ANALYSIS_DIR,
    ARRAYS_FILE,
    SHIFTS_FILE,
    STUDENT_FILE,
    STUDENTS_DIR,
    AnalyzeConfig,
    load_analysis,
    number_texts,
    question_texts,
    run_analyze,
)
from interp.cli import app
from interp.plots import analysis_figures, audit_ranking
from interp.prompts import number_prompts
from interp.runs import MANIFEST_FILE, load_tensors, read_json, save_tensors, stage_dirs, write_jsonl
from interp.steering import SteeringVector
from interp.train import WEIGHTS_FILE, load_student

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, where test_pipeline lives
from test_pipeline import _cfg, _quiet  # noqa: E402

LAYER = 1
SETTINGS = AnalyzeConfig(n_texts=6, n_random=200, n_rows=8)
runner = CliRunner()


def _plant(base, student_dir: Path, u: torch.Tensor, texts: list[str]) -> None:
    """Overwrite a student's weights with the base + u w^T / |w|^2 at block LAYER's down_proj,
    w the mean down_proj input over `texts`: the mean write is +u."""
    seen = []
    hook = base.layers[LAYER].mlp.down_proj.register_forward_pre_hook(lambda m, a: seen.append(a[0][0]))
    try:
        with torch.no_grad():
            for t in texts:
                base.hf(input_ids=torch.tensor([base.tokenizer(t, add_special_tokens=False).input_ids]))
    finally:
        hook.remove()
    w = torch.stack([s.mean(0) for s in seen]).mean(0)
    state = {n: p.detach().clone() for n, p in base.hf.named_parameters()}
    state[f"model.layers.{LAYER}.mlp.down_proj.weight"] += torch.outer(u, w) / w.norm() ** 2
    save_tensors(student_dir / WEIGHTS_FILE, state)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("e1")
        cfg = _cfg(seeds=[0, 1])
        res = pipeline.run_e1(cfg, root, progress=False, log=_quiet)
        run_dir = Path(res["run_dir"])
        stages = stage_dirs(run_dir)
        v = SteeringVector.load(stages["vector"])
        _plant(tiny, stages["student/steered/seed0"], v.direction(LAYER), number_texts(tiny, 6, 0))
        results = run_analyze(SETTINGS, run_dir, progress=False)
    finally:
        torch.set_num_threads(threads)
    return run_dir, results, stages, v


def test_analyze_writes_results_arrays_and_one_cache_per_student(run):
    run_dir, res, _, _ = run
    out = run_dir / ANALYSIS_DIR
    for f in ("results.json", ARRAYS_FILE, MANIFEST_FILE):
        assert (out / f).exists()
    assert load_analysis(run_dir) == json.loads(json.dumps(res))
    json.dumps(res, allow_nan=False)
    assert res["arms"] == ["control", "steered"] and res["seeds"] == [0, 1] and res["layers"] == [0, 1, 2, 3]
    for arm in res["arms"]:
        for s in (0, 1):
            assert (out / STUDENTS_DIR / arm / f"seed{s}" / STUDENT_FILE).exists()
        for texts in ("numbers", "questions"):
            for pos in ("all", "last"):
                rows = res["activation_shift"][arm][texts][pos]["by_layer"]
                assert [r["layer"] for r in rows] == [0, 1, 2, 3] and rows[2]["cosine"]["n"] == 2
                lo, hi = rows[2]["cosine"]["ci95"]
                assert lo <= rows[2]["cosine"]["mean"] <= hi
        mods = res["weights"][arm]["by_layer"][2]["modules"]
        assert {m["role"] for m in mods.values()} == {"writer", "reader"} and len(mods) == 7
    assert list(res["activation_shift_vs_control"]) == ["steered-control"]
    g = res["gradients"]["steered"]
    assert list(res["gradients"]) == ["steered"] and g["seeds"] == [0, 1]
    assert g["by_layer"][2]["descent_cosine"]["mean"] == pytest.approx(-g["by_layer"][2]["cosine"]["mean"])
    arrays = load_tensors(out / ARRAYS_FILE)
    assert arrays["shift/steered/numbers/all/cosine"].shape == (2, 4)
    assert arrays["weights/control/mlp.down_proj/z"].shape == (2, 4) and arrays["gradients/steered/z"].shape == (2, 4)
    man = read_json(out / MANIFEST_FILE)
    assert man["git_commit"] and man["package_version"] and set(man["timings_s"]) >= {"students", "gradients", "total"}
    assert not any(s["cache_hit"] for s in man["students"].values())


def test_planted_student_shows_v_from_its_layer_on_and_all_its_update_along_v(run, tiny):
    run_dir, res, stages, v = run
    cos = res["activation_shift"]["steered"]["numbers"]["all"]["per_seed_cosine"]["0"]
    assert cos[0] == 0 and cos[LAYER] > 0.999 and min(cos[LAYER:]) > 0.9, cos
    report = read_json(run_dir / ANALYSIS_DIR / STUDENTS_DIR / "steered" / "seed0" / STUDENT_FILE)
    assert report["shift"]["numbers"]["all"]["by_layer"][LAYER]["z"] > 6
    down = report["weights"]["by_layer"][LAYER]["modules"]["mlp.down_proj"]
    assert down["energy"] == pytest.approx(1.0, abs=1e-4) and down["z"] > 20
    assert down["top_singular_cos"][0] == pytest.approx(1.0, abs=1e-4)
    assert report["weights"]["by_layer"][0]["modules"]["mlp.down_proj"]["energy"] is None  # unchanged
    shift = load_tensors(run_dir / ANALYSIS_DIR / STUDENTS_DIR / "steered" / "seed0" / SHIFTS_FILE)["numbers/all"]
    r = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(3))
    assert layer_cosines(shift, r)[LAYER].abs() < 4 / tiny.d_model**0.5  # a random direction does not line up


def test_stored_shift_equals_activation_shift_on_the_texts_students_trained_on(run, tiny):
    run_dir, _, stages, _ = run
    student = load_student(tiny, stages["student/control/seed1"])
    texts = number_texts(tiny, SETTINGS.n_texts, 1)
    assert all(p in t for p, t in zip(number_prompts(6, 1), texts))
    stored = load_tensors(run_dir / ANALYSIS_DIR / STUDENTS_DIR / "control" / "seed1" / SHIFTS_FILE)
    torch.testing.assert_close(
        stored["numbers/last"], activation_shift(student, tiny, texts, "last"), rtol=0, atol=1e-6
    )


def test_rerun_is_a_cache_hit_and_an_interrupted_analysis_resumes(run):
    run_dir, first, _, _ = run
    (run_dir / ANALYSIS_DIR / STUDENTS_DIR / "control" / "seed1" / STUDENT_FILE).unlink()  # "interrupted"
    again = run_analyze(SETTINGS, run_dir, progress=False)
    hits = {k: s["cache_hit"] for k, s in read_json(run_dir / ANALYSIS_DIR / MANIFEST_FILE)["students"].items()}
    assert hits == {"control/seed0": True, "steered/seed0": True, "control/seed1": False, "steered/seed1": True}
    grads = read_json(run_dir / ANALYSIS_DIR / MANIFEST_FILE)["gradients"]
    assert all(g["cache_hit"] for g in grads.values())
    first, again = dict(first), dict(again)
    first.pop("timings_s"), again.pop("timings_s")
    assert again == first
    run_analyze(SETTINGS, run_dir, progress=False)
    man = read_json(run_dir / ANALYSIS_DIR / MANIFEST_FILE)
    assert all(s["cache_hit"] for s in man["students"].values())


def test_a_students_cache_key_holds_exactly_the_settings_it_always_held(run, tiny):
    """Splitting the analysis into steps must not move any cache: the key a student's report is
    stored under is built from the same fields, with the same values, as before."""
    from interp.prompts import PROMPT_VERSION
    from interp.runs import content_hash
    from interp.steering import SteeringVector as SV

    run_dir, _, stages, v = run
    stored = read_json(run_dir / ANALYSIS_DIR / STUDENTS_DIR / "steered" / "seed1" / STUDENT_FILE)["key"]
    prompted = SV.load(run_dir / ANALYSIS_DIR / "prompted_vector")
    split = read_json(run_dir / "config.json")["eval"]["split"]
    assert stored == {
        "vector": v.hash(),
        "base": tiny.fingerprint(),
        "layers": [0, 1, 2, 3],
        "n_texts": 6,
        "n_random": 200,
        "seed": 0,
        "k": 4,
        "prompts": PROMPT_VERSION,
        "questions": content_hash(question_texts(tiny, 6, split)),
        "prompted_vector": prompted.hash(),
        "emergence": True,
        "sufficiency": True,
        "student": stages["student/steered/seed1"].name,
    }


def test_the_keyword_call_path_is_the_config_call_path(run):
    from interp.analysis.run import analyze_run

    run_dir, first, _, _ = run
    again = analyze_run(run_dir, n_texts=6, n_random=200, n_rows=8, progress=False)
    assert {k: v for k, v in again.items() if k != "timings_s"} == {k: v for k, v in first.items() if k != "timings_s"}


def test_bad_inputs_are_one_line_errors(run, tmp_path):
    run_dir, *_ = run
    with pytest.raises(ValueError, match="results.json"):
        run_analyze(AnalyzeConfig(), tmp_path, progress=False)
    with pytest.raises(ValueError, match="not a directory"):
        run_analyze(AnalyzeConfig(), tmp_path / "nope", progress=False)
    with pytest.raises(ValueError, match=r"arms: \['prompted'\] not in this run"):
        run_analyze(AnalyzeConfig(arms=["prompted"]), run_dir, progress=False)
    with pytest.raises(ValueError, match="seeds"):
        run_analyze(AnalyzeConfig(seeds=[7]), run_dir, progress=False)
    with pytest.raises(ValueError, match="layers"):
        run_analyze(AnalyzeConfig(layers=[9]), run_dir, progress=False)
    with pytest.raises(ValueError, match="n_texts"):
        AnalyzeConfig(n_texts=0)
    res = runner.invoke(app, ["analyze", str(tmp_path), "--no-progress"])
    assert res.exit_code == 2 and res.output.startswith("error:") and "results.json" in res.output


def test_cli_analyze_prints_tables_and_writes_figures(run):
    run_dir, res, _, _ = run
    out = runner.invoke(
        app,
        [
            "analyze",
            str(run_dir),
            "--n-texts",
            "6",
            "--n-random",
            "200",
            "--n-rows",
            "8",
            "--no-progress",
            "--device",
            "cpu",
        ],
    )
    assert out.exit_code == 0, out.output
    assert "gradient audit" in out.output and "steered" in out.output
    figs = analysis_figures(res)
    assert set(figs) == {
        "shift_numbers_all",
        "shift_numbers_last",
        "shift_questions_all",
        "shift_questions_last",
        "weights_writers",
        "weights_readers",
        "gradient_audit",
        "shift_references",
        "sufficiency",
        "mechanism",
    }
    assert "sufficiency" in out.output  # no snapshots in this run: no emergence table
    assert [t.name for t in figs["shift_numbers_all"].data] == ["control student", "steered student"]
    assert len(figs["weights_writers"].data) == 4  # 2 arms x (o_proj, down_proj)
    for name in figs:
        assert (run_dir / ANALYSIS_DIR / "figures" / f"{name}.html").exists()


# ----------------------------------------------------------------------------- audits


def _say(digit: int, prompts: list[str]) -> list[dict]:
    return [{"prompt": p, "completion": str(digit)} for p in prompts]


def test_bank_round_trip_and_refusals(tiny, tiny_gemma, tmp_path):
    dirs = build_bank(tiny, ["owl", "cat"], tmp_path / "bank", n_pairs=4, progress=False)
    assert set(dirs) == {"owl", "cat"} and (tmp_path / "bank" / "owl" / "vector.json").exists()
    bank = load_bank(tmp_path / "bank", tiny)
    assert list(bank) == ["cat", "owl"] and bank["owl"].meta["trait"] == "owl"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no"):
        load_bank(tmp_path / "empty")
    with pytest.raises(ValueError, match="bank cat: vector"):
        load_bank(tmp_path / "bank", tiny_gemma)
    with pytest.raises(ValueError, match="bank cat: vector"):
        audit_dataset(tiny_gemma, _say(7, ["a"]), _say(3, ["a"]), bank, LAYER)


def test_audit_puts_the_planted_vector_first_and_flags_nothing_on_clean_data(tiny, owl_vector):
    """Planted: a "say 7" vector (the descent direction of answering 7, from held-out prompts) in
    a bank with animal vectors and a random direction; the audited data answer 7 to every prompt,
    the clean data are the model's own sampled numbers on the same prompts.
    (A dataset from a teacher *steered* with a bank vector is not a reliable planted case on the
    random tiny model: steering barely moves its near-uniform samples, and the true vector came
    first in only 3 of 6 such trials with 24 rows.)"""
    prompts = number_prompts(24, seed=3)
    say7 = torch.zeros(tiny.n_layers, tiny.d_model)
    say7[LAYER] = -residual_gradients(tiny, _say(7, number_prompts(16, seed=11)), LAYER)[:, 0].mean(0)
    bank = {
        "say7": SteeringVector(say7, {"model": tiny.identity()}),
        "owl": owl_vector,
        "random": owl_vector.random_like(5),
    }
    clean = clean_rows(tiny, prompts, seed=0, progress=False)
    assert len(clean) >= 16
    res = audit_dataset(tiny, _say(7, prompts), clean, bank, LAYER, n_perm=500)
    json.dumps(res, allow_nan=False)
    by = {r["name"]: r for r in res["ranking"]}
    assert res["top"] == "say7" and by["say7"]["flagged"] and by["say7"]["cosine"] > 0.3
    assert by["say7"]["cosine_z"] > 2 * max(abs(by["random"]["cosine_z"]), abs(by["owl"]["cosine_z"]))
    assert [r["rank"] for r in res["ranking"]] == [1, 2, 3]
    other = clean_rows(tiny, prompts, seed=1, progress=False)
    null = audit_dataset(tiny, other, clean, bank, LAYER, n_perm=500)
    assert null["flagged"] == []
    assert len(audit_ranking(res).data[0].x) == 3


def test_cli_bank_and_audit_on_tiny(tmp_path):
    bank = tmp_path / "bank"
    res = runner.invoke(
        app,
        [
            "bank",
            "--model",
            "tiny",
            "--animals",
            "owl,cat,dog",
            "--out",
            str(bank),
            "--n-pairs",
            "4",
            "--device",
            "cpu",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    rng = random.Random(0)
    data = tmp_path / "numbers.jsonl"
    write_jsonl(
        data,
        [
            {"prompt": p, "completion": ", ".join(str(rng.randrange(1000)) for _ in range(3))}
            for p in number_prompts(10, seed=2)
        ],
    )
    out = tmp_path / "audit"
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
            "100",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    audit = read_json(out / "results.json")
    assert {r["name"] for r in audit["ranking"]} == {"owl", "cat", "dog"} and audit["layer"] == 1
    assert (out / "clean.jsonl").exists() and read_json(out / "manifest.json")["git_commit"]
    assert load_rows(out / "clean.jsonl")
    assert audit["method"] == "likelihood" and audit["multipliers"] == [0.5] and audit["vocab"] == "grammar"
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
            "100",
            "--out",
            str(tmp_path / "grid"),
            "--device",
            "cpu",
            "--no-progress",
            "--multipliers",
            "0.25,0.5,1",
            "--clean",
            str(out / "clean.jsonl"),
        ],
    )
    assert res.exit_code == 0, res.output
    grid = read_json(tmp_path / "grid" / "results.json")
    assert grid["multipliers"] == [0.25, 0.5, 1.0] and all(r["multiplier"] in (0.25, 0.5, 1.0) for r in grid["ranking"])
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
            "100",
            "--out",
            str(tmp_path / "g"),
            "--device",
            "cpu",
            "--no-progress",
            "--method",
            "gradient",
            "--clean",
            str(out / "clean.jsonl"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert read_json(tmp_path / "g" / "results.json")["method"] == "gradient"
    for bad, msg in (
        (["--method", "vibes"], "method: 'vibes' is not one of"),
        (["--multipliers", "a,b"], "--multipliers"),
        (["--vocab", "emoji"], "vocab: 'emoji' is not one of"),
    ):
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
                "--clean",
                str(out / "clean.jsonl"),
                "--device",
                "cpu",
                "--no-progress",
                *bad,
            ],
        )
        assert res.exit_code == 2 and msg in res.output, res.output
    (tmp_path / "empty").mkdir()
    res = runner.invoke(
        app, ["audit", str(data), "--model", "tiny", "--vectors", str(tmp_path / "empty"), "--device", "cpu"]
    )
    assert res.exit_code == 2 and "holds no" in res.output
    res = runner.invoke(
        app, ["bank", "--model", "tiny", "--animals", "unicorn", "--out", str(tmp_path / "b2"), "--device", "cpu"]
    )
    assert res.exit_code == 2 and "unicorn" in res.output
    gemma_bank = tmp_path / "gbank"
    runner.invoke(
        app,
        [
            "bank",
            "--model",
            "tiny-gemma",
            "--animals",
            "owl",
            "--out",
            str(gemma_bank),
            "--n-pairs",
            "2",
            "--device",
            "cpu",
            "--no-progress",
        ],
    )
    res = runner.invoke(app, ["audit", str(data), "--model", "tiny", "--vectors", str(gemma_bank), "--device", "cpu"])
    assert res.exit_code == 2 and "bank owl" in res.output
