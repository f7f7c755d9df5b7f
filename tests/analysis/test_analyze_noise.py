"""`interp analyze` on weight-noise (E5) and cross-model runs: each student against its own base.

Ground truth is planted: a student whose weights ARE its seed's noised base (rebuilt here with
`interp.noise.noised_model`, independently of the analysis) has exactly zero shift and zero update,
which it would not have against the clean base; a student that is its base plus a rank-1 down_proj
edit along its seed's v at the steering layer has all its down_proj update along v.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from interp import pipeline
from interp.analysis import weight_deltas
from interp.analysis.aggregate import aggregate_mechanism, compare_mechanism
from interp.analysis.run import (
    ANALYSIS_DIR,
    STUDENT_FILE,
    STUDENTS_DIR,
    AnalyzeConfig,
    analyze_student,
    number_texts,
    question_texts,
    read_run,
    run_analyze,
    vector_mismatch,
)
from interp.cli import app
from interp.config import parse_config
from interp.noise import WeightNoise, noised_model
from interp.runs import MANIFEST_FILE, content_hash, read_json, save_tensors, stage_dirs, write_json
from interp.steering import SteeringVector
from interp.tables import analysis_tables
from interp.train import WEIGHTS_FILE, load_student

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, where test_pipeline lives
from test_pipeline import _cfg, _quiet  # noqa: E402

AT = 2  # _cfg's steering layer
SETTINGS = AnalyzeConfig(n_texts=6, n_random=200, n_rows=8, sufficiency=False)
NOISE = {"sigma": 0.1, "seed": 5}
runner = CliRunner()


def _save(student_dir: Path, model, edit: torch.Tensor | None = None) -> None:
    """Overwrite a student's weights with `model`'s, plus `edit` on block AT's down_proj."""
    state = {n: p.detach().clone() for n, p in model.hf.named_parameters()}
    if edit is not None:
        state[f"model.layers.{AT}.mlp.down_proj.weight"] += edit
    save_tensors(student_dir / WEIGHTS_FILE, state)


def _report(run_dir: Path, arm: str, seed: int) -> dict:
    return read_json(run_dir / ANALYSIS_DIR / STUDENTS_DIR / arm / f"seed{seed}" / STUDENT_FILE)


def _norms(report: dict) -> list[float]:
    """Every shift norm of a report (all text sets, positions and layers)."""
    return [r["shift_norm"] for t in report["shift"].values() for p in t.values() for r in p["by_layer"]]


def _delta_norms(report: dict) -> list[float]:
    return [m["delta_norm"] for r in report["weights"]["by_layer"] for m in r["modules"].values()]


def _run(root: Path, noise: dict | None = None, **over) -> tuple[Path, dict]:
    """A tiny E1 run (test_pipeline's config) with `noise` as its [noise] table."""
    cfg = _cfg(**over)
    if noise is not None:
        cfg = parse_config({**cfg.model_dump(), "noise": noise})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = pipeline.run_e1(cfg, root, progress=False, log=_quiet)
    finally:
        torch.set_num_threads(threads)
    return Path(res["run_dir"]), stage_dirs(Path(res["run_dir"]))


@pytest.fixture
def root(tmp_path_factory):
    # a cache per run: planted weights replace a stage's files, which another run sharing that
    # stage (same base, same data) would then refuse as corrupted
    return tmp_path_factory.mktemp("noise")


@pytest.fixture(scope="module")
def shared(tmp_path_factory, tiny):
    """A shared-noise run, two seeds: each seed's control student replaced by its noised base,
    seed 0's steered student by that base + u w^T along seed 0's v (its noised teacher's) at the
    steering layer. (On the noised tiny model a seed's teachers may all emit nothing the filter
    keeps: their students then share one stage, the base itself; seed 1's do here.)"""
    run_dir, stages = _run(tmp_path_factory.mktemp("shared"), seeds=[0, 1], noise={**NOISE, "apply": "shared"})
    cfg, _ = read_run(run_dir)
    noised = {s: noised_model(tiny, cfg.weight_noise(s)) for s in (0, 1)}
    assert stages["student/steered/seed0"] != stages["student/control/seed0"]
    u = SteeringVector.load(stages["vector"]).direction(AT)
    w = torch.randn(noised[0].hf.config.intermediate_size, generator=torch.Generator().manual_seed(0))
    for s in (0, 1):
        _save(stages[f"student/control/seed{s}"], noised[s])
    _save(stages["student/steered/seed0"], noised[0], torch.outer(u, w))
    results = run_analyze(SETTINGS, run_dir, progress=False)
    return run_dir, results, stages, noised, cfg


def test_noise_run_is_analysed_and_each_student_is_compared_with_its_own_noised_base(shared, tiny):
    run_dir, res, stages, noised, cfg = shared
    assert len({noised[0].fingerprint(), noised[1].fingerprint(), tiny.fingerprint()}) == 3  # one draw per seed
    for s in (0, 1):
        rep = _report(run_dir, "control", s)
        # the student IS its noised base: nothing moved, on the numbers and on the questions (whose
        # base means must not be another seed's or the clean base's)
        assert max(_norms(rep)) == 0 and max(_delta_norms(rep)) == 0, s
        assert rep["base"]["student_base"]["fingerprint"] == noised[s].fingerprint()
        # against the clean base the same student has moved
        student = load_student(noised[s], stages[f"student/control/seed{s}"])
        assert max(d.abs().max().item() for d in weight_deltas(student, tiny).values()) > 0
    rec = res["bases"]["1"]
    assert rec["student_base"]["noise"] == {
        "sigma": 0.1,
        "relative": True,
        "pattern": ".*",
        "seed": 6,
        "apply": "shared",
    }
    assert rec["teacher_base"]["fingerprint"] == noised[1].fingerprint() == rec["student_base"]["fingerprint"]
    assert rec["vector_hash"] == SteeringVector.load(stages["vector/seed1"]).hash() != res["bases"]["0"]["vector_hash"]
    assert rec["cosine_absent"] is None and res["cosine_absent"] is None
    man = read_json(run_dir / ANALYSIS_DIR / MANIFEST_FILE)
    assert man["bases"] == res["bases"]
    assert man["students"]["steered/seed0"]["student_base"]["noise"]["seed"] == 5


def test_planted_update_along_the_seeds_v_is_all_along_v_and_the_mechanism_says_so(shared):
    run_dir, res, *_ = shared
    down = next(r for r in _report(run_dir, "steered", 0)["weights"]["by_layer"] if r["layer"] == AT)["modules"][
        "mlp.down_proj"
    ]
    assert down["energy"] == pytest.approx(1.0, abs=1e-6) and down["top_singular_cos"][0] == pytest.approx(
        1.0, abs=1e-6
    )
    mech = res["mechanism"]
    assert mech["steered"]["per_seed"]["0"]["down_proj_energy"] == pytest.approx(1.0, abs=1e-6)
    assert mech["control"]["per_seed"]["0"]["down_proj_energy"] is None  # a zero update has no direction
    assert mech["control"]["per_seed"]["1"]["down_proj_delta_norm"] == 0
    assert mech["steered"]["layer"] == AT and mech["steered"]["expected_random"] == pytest.approx(1 / 64)
    e = [mech["steered"]["per_seed"][s]["down_proj_energy"] for s in ("0", "1")]
    n = sum(x is not None for x in e)  # a seed whose student did not move has no energy fraction
    assert mech["steered"]["down_proj_energy"]["n"] == n
    assert mech["steered"]["down_proj_energy"]["mean"] == pytest.approx(sum(x for x in e if x is not None) / n)
    cos = [mech["steered"]["per_seed"][s]["cosine"]["numbers/all"] for s in ("0", "1")]
    assert mech["steered"]["cosine"]["numbers/all"]["mean"] == pytest.approx(sum(cos) / 2)
    # the planted write is u (w . x) at every token: at the steering layer the shift is along +-v exactly
    assert abs(mech["steered"]["per_seed"]["0"]["cosine"]["numbers/all"]) > 0.999
    # the shift of an untouched control student has no direction: its cosine is 0 by definition
    assert mech["control"]["per_seed"]["0"]["cosine"]["questions/all"] == 0
    assert mech["steered"]["vs_control"]["seeds"] == [0, 1]


def test_cli_analyze_runs_on_a_noise_run(shared):
    run_dir, *_ = shared
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
            "--no-sufficiency",
            "--no-progress",
            "--device",
            "cpu",
        ],
    )
    assert out.exit_code == 0, out.output
    assert "direction and amount at layer 2" in out.output and "down_proj energy along v" in out.output
    man = read_json(run_dir / ANALYSIS_DIR / MANIFEST_FILE)
    assert all(s["cache_hit"] for s in man["students"].values())  # same settings: every report reused


@pytest.mark.parametrize(
    "change, msg",
    [
        ({"seed": 99}, r"stage vector: not built on seed 0's teacher base"),  # another draw: v is not its teacher's
        (
            {"apply": "teacher"},
            r"stage student/control/seed0: trained from a base with fingerprint",
        ),  # a clean student base
    ],
)
def test_a_rebuilt_base_that_is_not_the_one_trained_from_is_refused(shared, change, msg):
    """Each student's stage records the fingerprint of the base it was trained from, each vector
    the teacher it was built on: a [noise] that no longer rebuilds them is refused, never compared."""
    run_dir = shared[0]
    raw = read_json(run_dir / "config.json")
    try:
        write_json(run_dir / "config.json", {**raw, "noise": {**raw["noise"], **change}})
        with pytest.raises(ValueError, match=msg) as e:
            run_analyze(SETTINGS, run_dir, progress=False)
        assert "\n" not in str(e.value)
    finally:
        write_json(run_dir / "config.json", raw)


@pytest.mark.parametrize("apply", ["student", "teacher"])
def test_one_sided_noise_compares_students_with_the_base_they_started_from(root, tiny, apply):
    run_dir, stages = _run(root, noise={**NOISE, "apply": apply})
    cfg, _ = read_run(run_dir)
    mine = noised_model(tiny, cfg.weight_noise(0)) if apply == "student" else tiny
    _save(stages["student/control/seed0"], mine)
    res = run_analyze(SETTINGS, run_dir, progress=False)
    rep = _report(run_dir, "control", 0)
    assert max(_norms(rep)) == 0 and max(_delta_norms(rep)) == 0
    rec = res["bases"]["0"]
    assert rec["student_base"]["fingerprint"] == mine.fingerprint()
    assert (rec["student_base"]["noise"] is None) == (apply == "teacher")
    assert (rec["teacher_base"]["noise"] is None) == (apply == "student")
    # v is the teacher's: the clean model's under student-only noise, the noised teacher's otherwise
    teacher = tiny if apply == "student" else noised_model(tiny, cfg.weight_noise(0))
    assert SteeringVector.load(stages["vector"]).meta["model"]["fingerprint"] == teacher.fingerprint()
    assert rec["vector_hash"] == SteeringVector.load(stages["vector"]).hash()


@pytest.fixture(scope="module")
def cross(tmp_path_factory, tiny_gemma):
    run_dir, stages = _run(tmp_path_factory.mktemp("cross"), student_model="tiny-gemma")
    _save(stages["student/control/seed0"], tiny_gemma)
    return run_dir, stages


def test_cross_model_students_are_compared_with_the_student_model(cross, tiny, tiny_gemma):
    run_dir, stages = cross
    res = run_analyze(SETTINGS, run_dir, progress=False)
    rep = _report(run_dir, "control", 0)
    assert max(_norms(rep)) == 0 and max(_delta_norms(rep)) == 0
    rec = res["bases"]["0"]
    assert rec["student_base"] == {"model": "tiny-gemma", "fingerprint": tiny_gemma.fingerprint(), "noise": None}
    assert rec["teacher_base"]["model"] == "tiny" and rec["teacher_base"]["fingerprint"] == tiny.fingerprint()
    # the two tiny models share their shape: v's cosine is defined, and it is the teacher's v
    assert res["cosine_absent"] is None and rec["vector_hash"] == SteeringVector.load(stages["vector"]).hash()
    steered = res["activation_shift"]["steered"]["numbers"]["all"]["by_layer"][AT]["cosine"]
    assert steered is not None and -1 <= steered["mean"] <= 1
    assert res["gradients"]["steered"]["by_layer"]  # gradients on the student model, against v
    # the shift was read on texts the student model rendered, as it saw them in training
    key = _report(run_dir, "steered", 0)["key"]
    assert key["base"] == tiny_gemma.fingerprint()
    assert key["questions"] == content_hash(question_texts(tiny_gemma, SETTINGS.n_texts, "tuning"))


def test_cross_model_of_another_shape_reports_norms_and_says_why_cosines_are_absent(cross, monkeypatch, tiny):
    """No registry pair differs in shape, so the check is made to say they do: every cosine, energy
    and gradient against v must then be absent, with the reason, and the norms still reported."""
    import interp.analysis.run_inputs as inputs_mod

    run_dir, _ = cross
    reason = "v lives in another residual stream"
    # patched where the run's inputs look it up (opening the run and reading each seed)
    monkeypatch.setattr(inputs_mod, "vector_mismatch", lambda v, m: reason)
    res = run_analyze(AnalyzeConfig(n_texts=6, n_random=200, n_rows=8, seed=1), run_dir, progress=False)
    assert res["cosine_absent"] == reason and res["bases"]["0"]["cosine_absent"] == reason
    rows = res["activation_shift"]["steered"]["numbers"]["all"]["by_layer"]
    assert all(r["cosine"] is None and r["shift_norm"]["mean"] > 0 for r in rows[AT:])
    assert (
        res["activation_shift_vs_control"]["steered-control"]["numbers"]["all"]["by_layer"][AT]["cosine_diff"] is None
    )
    mech = res["mechanism"]["steered"]
    assert mech["down_proj_energy"] is None and mech["down_proj_delta_norm"]["mean"] > 0
    assert res["gradients"]["steered"] == {"by_layer": [], "per_seed": {}, "skipped": reason}
    assert res["activation_shift_prompted"] == {} and res["reference_vectors"]["cosine_v_prompted"] is None
    text = analysis_tables(res)
    assert f"no cosine with v: {reason}" in text and "direction and amount" in text
    from interp.plots import analysis_figures

    assert "shift_numbers_all" in analysis_figures(res)


def test_vector_mismatch_names_both_shapes(tiny, owl_vector):
    assert vector_mismatch(owl_vector, tiny) is None
    narrow = SteeringVector(torch.randn(4, 32), {"model": {"model": "other"}})
    msg = vector_mismatch(narrow, tiny)
    assert "d_model 32" in msg and "4 x 64" in msg and "\n" not in msg


def test_analyze_student_without_v_keeps_norms_and_drops_cosines(tiny):
    student = noised_model(tiny, WeightNoise(0.05, seed=1))
    texts = {"numbers": number_texts(tiny, 4, 0)}
    from interp.analysis.emergence import resid_means

    means = resid_means(tiny, texts, [0, 1, 2, 3])
    report, shifts = analyze_student(student, tiny, None, texts, [0, 1, 2, 3], means, n_random=50)
    rows = report["shift"]["numbers"]["all"]["by_layer"]
    assert all(r["cosine"] is None and r["z"] is None for r in rows)
    assert [r["shift_norm"] for r in rows] == pytest.approx(shifts["numbers/all"].norm(dim=-1).tolist())
    mods = [m for r in report["weights"]["by_layer"] for m in r["modules"].values()]
    assert mods and all(m["energy"] is None and m["delta_norm"] > 0 and m["null_sd"] > 0 for m in mods)


# ----------------------------------------------------------------------------- aggregation, by hand


def _fake_report(cos: float, norm: float, energy: float | None, dnorm: float) -> dict:
    row = {"layer": AT, "cosine": cos, "shift_norm": norm, "z": None, "null_sd": 0.1, "analytic_sd": 0.1}
    shift = {t: {p: {"by_layer": [row]} for p in ("all", "last")} for t in ("numbers", "questions")}
    return {
        "shift": shift,
        "weights": {
            "by_layer": [
                {
                    "layer": AT,
                    "modules": {"mlp.down_proj": {"energy": energy, "delta_norm": dnorm, "expected_random": 0.25}},
                }
            ]
        },
    }


def test_mechanism_intervals_and_cell_comparison_match_hand_computation():
    a = {
        ("control", 0): _fake_report(0.0, 1.0, 0.25, 2.0),
        ("control", 1): _fake_report(0.1, 1.0, 0.25, 2.0),
        ("steered", 0): _fake_report(0.5, 2.0, 0.5, 4.0),
        ("steered", 1): _fake_report(0.3, 2.0, 0.7, 6.0),
    }
    mech = aggregate_mechanism(a, ["control", "steered"], [0, 1], AT)
    s = mech["steered"]
    assert s["cosine"]["numbers/all"]["mean"] == pytest.approx(0.4) and s["down_proj_energy"]["mean"] == pytest.approx(
        0.6
    )
    assert s["down_proj_delta_norm"]["mean"] == pytest.approx(5.0) and s["expected_random"] == 0.25
    # paired by seed: (0.5 - 0) and (0.3 - 0.1)
    assert s["vs_control"]["cosine"]["numbers/all"]["mean"] == pytest.approx(0.35)
    assert s["vs_control"]["down_proj_energy"]["mean"] == pytest.approx(0.35)
    # a cell that only scales the update: same direction, twice the amount
    b = {
        k: _fake_report(
            r["shift"]["numbers"]["all"]["by_layer"][0]["cosine"],
            2 * r["shift"]["numbers"]["all"]["by_layer"][0]["shift_norm"],
            r["weights"]["by_layer"][0]["modules"]["mlp.down_proj"]["energy"],
            2 * r["weights"]["by_layer"][0]["modules"]["mlp.down_proj"]["delta_norm"],
        )
        for k, r in a.items()
    }
    cmp = compare_mechanism(
        {
            "sigma0": {"mechanism": mech},
            "sigma0.1": {"mechanism": aggregate_mechanism(b, ["control", "steered"], [0, 1], AT)},
        },
        "sigma0",
    )
    c = cmp["cells"]["sigma0.1"]["steered"]
    assert c["cosine"]["numbers/all"]["mean"] == 0 and c["down_proj_energy"]["mean"] == 0
    assert c["down_proj_delta_norm"]["mean"] == pytest.approx(5.0) and c["shift_norm"]["questions/last"][
        "mean"
    ] == pytest.approx(2.0)
    assert aggregate_mechanism(a, ["control", "steered"], [0, 1], at=0) == {}  # the steering layer was not read
    with pytest.raises(ValueError, match="reference"):
        compare_mechanism({"a": {}}, "b")


# ----------------------------------------------------------------------------- the fine-tuned teacher's direction


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, tiny):
    """A run with control, steered and finetuned arms: the control student replaced by the base,
    the finetuned student by the base + u w^T on block AT's down_proj, u the fine-tuned teacher's
    own residual difference from the base at AT (all tokens): its shift at AT is along u exactly."""
    from interp.finetune import finetuned_direction

    run_dir, stages = _run(
        tmp_path_factory.mktemp("finetuned"),
        teacher={"kinds": ["control", "steered", "finetuned"], "finetune": {"lr": 1e-3, "epochs": 1}},
    )
    d = finetuned_direction(run_dir, "all", [AT])[0]
    w = torch.randn(tiny.hf.config.intermediate_size, generator=torch.Generator().manual_seed(1))
    _save(stages["student/control/seed0"], tiny)
    _save(stages["student/finetuned/seed0"], tiny, torch.outer(d / d.norm(), w))
    return run_dir, run_analyze(SETTINGS, run_dir, progress=False), stages


def test_a_student_whose_shift_is_the_finetuned_teachers_direction_scores_cosine_one(finetuned):
    from interp.analysis.activations import layer_cosines
    from interp.finetune import finetuned_direction
    from interp.runs import load_tensors

    run_dir, res, stages = finetuned
    i = res["layers"].index(AT)
    ft = res["activation_shift_finetuned"]
    assert set(ft) == {"control", "steered", "finetuned"}
    assert abs(ft["finetuned"]["numbers"]["all"]["by_layer"][i]["cosine"]["mean"]) > 0.999
    assert ft["control"]["numbers"]["all"]["by_layer"][i]["cosine"]["mean"] == 0  # no shift, no direction
    # every reported cosine is the saved shift's against finetuned_direction at the same position
    for arm in ("steered", "finetuned"):
        shifts = load_tensors(run_dir / ANALYSIS_DIR / STUDENTS_DIR / arm / "seed0" / "shifts.safetensors")
        rep = _report(run_dir, arm, 0)["shift_finetuned"]
        for texts in ("numbers", "questions"):
            for pos in ("all", "last"):
                want = layer_cosines(shifts[f"{texts}/{pos}"], finetuned_direction(run_dir, pos, res["layers"]))
                got = [r["cosine"] for r in rep[texts][pos]["by_layer"]]
                assert got == pytest.approx(want.tolist(), abs=1e-9)
    # the shift along u has u's cosine with v: the three references agree on one student
    v = SteeringVector.load(stages["vector"]).vectors[AT]
    u = finetuned_direction(run_dir, "all", [AT])[0]
    cos_uv = float(torch.nn.functional.cosine_similarity(u.double(), v.double(), dim=0))
    assert abs(
        res["activation_shift"]["finetuned"]["numbers"]["all"]["by_layer"][i]["cosine"]["mean"]
    ) == pytest.approx(abs(cos_uv), abs=1e-3)
    rec = res["bases"]["0"]["finetuned_teacher"]
    assert Path(rec["stage"]) == stages["finetune"] and rec["cosine_v"][i] == pytest.approx(cos_uv, abs=1e-6)
    table = analysis_tables(res, width=200)
    assert "cos(shift, finetuned)" in table and "cos(shift, v_prompt)" in table


def test_a_run_without_a_finetuned_teacher_keeps_its_report_keys(shared):
    run_dir, res, *_ = shared
    assert "activation_shift_finetuned" not in res and "finetuned_teacher" not in res["bases"]["0"]
    assert (
        "finetuned_direction"
        not in read_json(run_dir / ANALYSIS_DIR / STUDENTS_DIR / "control" / "seed0" / STUDENT_FILE)["key"]
    )


def test_the_analysis_manifest_records_the_device(finetuned):
    man = read_json(finetuned[0] / ANALYSIS_DIR / MANIFEST_FILE)
    assert man["device"] == "cpu" and man["kind"] == "analysis"


def test_the_mechanism_figure_has_one_trace_per_arm_and_panel_with_the_results_intervals(finetuned):
    from interp.plots.analysis import MECHANISM_PANELS, analysis_figures
    from interp.plots._style import legend_entries

    run_dir, res, _ = finetuned
    fig = analysis_figures(res)["mechanism"]
    arms = ["control", "steered", "finetuned"]
    assert legend_entries(fig) == [f"{a} student" for a in arms]
    assert len(fig.data) == len(arms) * len(MECHANISM_PANELS)
    for k, (field, key, *_) in enumerate(MECHANISM_PANELS):
        axis = "" if k == 0 else str(k + 1)
        traces = [t for t in fig.data if (t.yaxis or "y") == f"y{axis}"]
        assert [t.legendgroup for t in traces] == arms
        for t in traces:
            cell = res["mechanism"][t.legendgroup][field]
            cell = cell if key is None else cell[key]
            if cell is None:  # a student whose update is zero has no energy fraction: no point
                assert len(t.y) == 0
                continue
            assert list(t.x) == [t.legendgroup] and t.y[0] == cell["mean"]
            assert cell["n"] == 1 and t.error_y.array is None  # one seed: a point, no interval drawn
    # `interp plot` on the analysis directory draws it too (through the export helper; HTML here)
    out = runner.invoke(app, ["plot", str(run_dir / ANALYSIS_DIR), "--format", "html"])
    assert out.exit_code == 0, out.output
    assert (run_dir / ANALYSIS_DIR / "figures" / "mechanism.html").is_file()


def test_the_mechanism_figure_draws_the_seed_intervals_of_the_mechanism_block():
    from interp.plots.analysis import MECHANISM_PANELS, mechanism_figure

    reports = {
        ("control", 0): _fake_report(0.0, 1.0, 0.25, 2.0),
        ("control", 1): _fake_report(0.1, 1.5, 0.2, 2.5),
        ("steered", 0): _fake_report(0.5, 2.0, 0.5, 4.0),
        ("steered", 1): _fake_report(0.3, 3.0, 0.7, 6.0),
    }
    mech = aggregate_mechanism(reports, ["control", "steered"], [0, 1], AT)
    fig = mechanism_figure({"mechanism": mech, "seeds": [0, 1]})
    assert len(fig.data) == 2 * len(MECHANISM_PANELS)
    for t, (arm, (field, key, *_)) in zip(fig.data, [(a, p) for p in MECHANISM_PANELS for a in ("control", "steered")]):
        cell = mech[arm][field] if key is None else mech[arm][field][key]
        lo, hi = cell["ci95"]
        assert t.legendgroup == arm and t.y[0] == cell["mean"] and lo < cell["mean"] < hi
        assert t.error_y.array[0] == pytest.approx(hi - cell["mean"])
        assert t.error_y.arrayminus[0] == pytest.approx(cell["mean"] - lo)
