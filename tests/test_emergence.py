"""E2 and E9 on the tiny model: the prompted teacher's reference vector against the model's own
hidden states, training snapshots against training stopped early, the sufficiency patch against
a planted owl direction, the prompted_ablated teacher's projection, and a run-level analysis of
a run with prompted, prompted_ablated and steered teachers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from interp import pipeline
from interp.analysis.emergence import prompted_vector, resid_means, shift_trajectory, sufficiency
from interp.analysis.run import analyze_run
from interp.evaluate import animal_token_ids
from interp.hooks import record_resid
from interp.plots import analysis_figures
from interp.prompts import number_prompts, prompted_system, questions
from interp.steering import Steering, SteeringVector
from interp.teachers import Teacher
from interp.train import TrainConfig, load_snapshot, load_student, snapshot_steps, train_student

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_pipeline import _cfg, _quiet  # noqa: E402

ROWS = [{"prompt": f"Continue: {i}, {i + 3}, {i + 7}", "completion": f"{i + 9}, {i + 12}, {i + 15}"} for i in range(12)]


def _last_hidden(model, messages) -> torch.Tensor:
    """resid_post of every block at the last token, from the HF model's own hidden states."""
    ids = model.tokenizer(model.chat(messages), add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        hs = model.hf(input_ids=ids, output_hidden_states=True).hidden_states
    return torch.stack([h[0, -1] for h in hs[1:]])  # hidden_states[l + 1] = blocks.l output


def test_prompted_vector_is_the_system_prompt_difference_of_hidden_states(tiny):
    prompts = number_prompts(5, 3)
    vp = prompted_vector(tiny, "owl", prompts)
    system = [{"role": "system", "content": prompted_system("owl")}]
    want = torch.stack(
        [
            _last_hidden(tiny, system + [{"role": "user", "content": p}])
            - _last_hidden(tiny, [{"role": "user", "content": p}])
            for p in prompts
        ]
    ).mean(0)
    assert vp.vectors.shape == (tiny.n_layers, tiny.d_model)
    # HF's last hidden state has the final norm applied; block outputs before it are raw
    torch.testing.assert_close(vp.vectors[:-1], want[:-1], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="prompts"):
        prompted_vector(tiny, "owl", [])


def test_snapshot_is_the_student_at_that_step(tiny, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=2, lr=1e-3, snapshot_every=2)
    train_student(tiny, ROWS, cfg, tmp_path / "full", progress=False)
    assert snapshot_steps(tmp_path / "full") == [2, 4]  # 6 steps; the last is the final model itself
    early = train_student(
        tiny, ROWS, TrainConfig(epochs=1, batch_size=2, lr=1e-3), tmp_path / "early", progress=False, stop_after=4
    )
    snap = load_snapshot(tiny, tmp_path / "full", 4)
    base = dict(tiny.hf.named_parameters())
    for name, p in early.named_parameters():
        delta = p.detach() - base[name].detach()
        got = dict(snap.hf.named_parameters())[name] - base[name].detach()
        # the update is stored in bf16: 8 significant bits of W - W_base
        assert torch.allclose(got, delta, rtol=2**-7, atol=1e-7), name
    with pytest.raises(ValueError, match="no snapshot at step 3"):
        load_snapshot(tiny, tmp_path / "full", 3)
    assert "snapshot_every" not in TrainConfig().key()  # old student caches keep their keys


def test_trajectory_reads_each_snapshot_and_ends_at_the_final_student(tiny, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-3, snapshot_every=1)
    train_student(tiny, ROWS, cfg, tmp_path / "s", progress=False)
    texts = {"numbers": [[{"role": "user", "content": p}] for p in number_prompts(4, 0)]}
    layers = list(range(tiny.n_layers))
    v = torch.randn(tiny.n_layers, tiny.d_model, generator=torch.Generator().manual_seed(1))
    bm = resid_means(tiny, texts, layers)
    final = resid_means(load_student(tiny, tmp_path / "s"), texts, layers)
    traj = shift_trajectory(tiny, tmp_path / "s", v, texts, layers, bm, final, 3)
    assert traj["steps"] == [1, 2, 3]
    at2 = resid_means(load_snapshot(tiny, tmp_path / "s", 2), texts, layers)["numbers/all"] - bm["numbers/all"]
    want = torch.nn.functional.cosine_similarity(at2.double(), v.double(), dim=-1)
    torch.testing.assert_close(torch.tensor(traj["numbers/all"][1], dtype=torch.float64), want)
    want_final = torch.nn.functional.cosine_similarity(
        (final["numbers/last"] - bm["numbers/last"]).double(), v.double(), dim=-1
    )
    torch.testing.assert_close(torch.tensor(traj["numbers/last"][2], dtype=torch.float64), want_final)


def test_sufficiency_zero_shift_is_exact_and_a_planted_owl_direction_moves_owl(tiny):
    qs = questions("tuning")[:6]
    animals = ["owl", "cat", "dog", "lion"]
    last = tiny.n_layers - 1
    zero = sufficiency(tiny, {"zero": torch.zeros(tiny.d_model)}, last, "owl", qs, animals)["zero"]
    assert zero["trait_logprob_shift"] == 0.0 and zero["specific_shift"] == 0.0
    # The owl token's unembedding row minus the others' mean, added to the last residual, raises
    # owl against the other animals (the final norm rescales, so use a large multiple).
    w = tiny.hf.get_output_embeddings().weight.detach()
    ids = animal_token_ids(tiny.tokenizer, animals)
    d = w[ids[0]] - w[ids[1:]].mean(0)
    planted = d / d.norm() * 50.0
    r = sufficiency(tiny, {"owl": planted}, last, "owl", qs, animals, seed=3)["owl"]
    assert r["specific_shift"] > 1.0
    assert r["specific_shift"] > abs(r["random_specific_shift"]) + 0.5
    assert r["norm"] == pytest.approx(50.0, rel=1e-5)
    with pytest.raises(ValueError, match="layer"):
        sufficiency(tiny, {"owl": planted}, tiny.n_layers, "owl", qs, animals)
    with pytest.raises(ValueError, match="shape"):
        sufficiency(tiny, {"owl": planted[:3]}, last, "owl", qs, animals)


def test_prompted_ablated_teacher_has_no_component_along_v_at_its_layer(tiny):
    v = SteeringVector(torch.randn(tiny.n_layers, tiny.d_model, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="operator='project'"):
        Teacher("prompted_ablated", "owl", Steering(layer=1))
    t = Teacher("prompted_ablated", "owl", Steering(layer=1, operator="project"))
    assert t.messages("hi")[0]["role"] == "system" and t.describe()["steering"]["operator"] == "project"
    ids = tiny.tokenizer(
        tiny.chat(t.messages("Continue: 1, 2, 3")), add_special_tokens=False, return_tensors="pt"
    ).input_ids
    with record_resid(tiny.layers, [1], stop_early=False) as store, torch.no_grad():
        tiny.hf(input_ids=ids)
    before = (store[1][0] @ v.direction(1)).abs().max()
    with t.context(tiny, v)(), record_resid(tiny.layers, [1], stop_early=False) as store, torch.no_grad():
        tiny.hf(input_ids=ids)
    after = (store[1][0] @ v.direction(1)).abs().max()
    assert before > 1e-2 and after < 1e-5


@pytest.fixture(scope="module")
def mech_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2")
    cfg = _cfg(
        seeds=[0, 1],
        teacher={
            "kinds": ["control", "prompted", "steered", "prompted_ablated"],
            "layer": 1,
            "multiplier": 4.0,
            "scope": "all",
        },
        train={"epochs": 1, "batch_size": 4, "lr": 1e-3, "snapshot_every": 1},
    )
    res = pipeline.run_e1(cfg, root, progress=False, log=_quiet)
    return Path(res["run_dir"]), res


def test_run_reports_necessity_comparisons(mech_run):
    _, res = mech_run
    assert {"prompted-control", "prompted_ablated-control", "prompted-prompted_ablated", "steered-control"} <= set(
        res["transfer"]
    )


def test_analyze_reports_references_emergence_sufficiency_necessity_and_the_dose_response(mech_run):
    run_dir, run_res = mech_run
    torch.set_num_threads(1)
    res = analyze_run(run_dir, n_texts=4, n_random=100, n_rows=6, progress=False, multipliers=[0.5, 1.0, 4.0])
    arms = ["control", "prompted", "steered", "prompted_ablated"]
    assert set(res["activation_shift_prompted"]) == set(arms)
    assert len(res["reference_vectors"]["cosine_v_prompted"]) == len(res["layers"])
    for arm in arms:
        em = res["emergence"][arm]
        assert em["steps"] == sorted(em["steps"]) and len(em["steps"]) >= 2
        assert len(em["by_texts"]["questions/all"]) == len(em["steps"])
        s = res["sufficiency"][arm]
        assert s["specific_shift"]["n"] == 2 and s["norm"]["mean"] > 0
    assert "specific_minus_control" in res["sufficiency"]["steered"]
    assert set(res["necessity"]) == {k for k in run_res["transfer"] if "prompted" in k}
    tr = res["gradient_multiplier_trend"]
    assert tr["multipliers"] == [0.0, 0.5, 1.0, 4.0]
    assert all(row["n"] == 8 for row in tr["by_layer"])  # 2 seeds x 4 datasets (0 = the control data)
    # the multiplier-4.0 datasets are the run's own steered ones (cache hits): 4 kinds + 2 new per seed
    assert len(list((run_dir.parent.parent / "cache").glob("data-*"))) == 2 * (4 + 2)
    figs = analysis_figures(res)
    assert {"shift_references", "emergence", "sufficiency", "multiplier_trend"} <= set(figs)
    again = analyze_run(run_dir, n_texts=4, n_random=100, n_rows=6, progress=False, multipliers=[0.5, 1.0, 4.0])
    assert again["sufficiency"] == res["sufficiency"] and again["gradient_multiplier_trend"] == tr


def test_cli_analyze_takes_multipliers_and_switches(mech_run):
    from typer.testing import CliRunner

    from interp.cli import app

    run_dir, _ = mech_run
    out = CliRunner().invoke(
        app,
        [
            "analyze",
            str(run_dir),
            "--n-texts",
            "4",
            "--n-random",
            "100",
            "--n-rows",
            "6",
            "--multipliers",
            "0.5,4",
            "--no-emergence",
            "--no-progress",
            "--device",
            "cpu",
        ],
    )
    assert out.exit_code == 0, out.output
    assert "gradient dose-response" in out.output and "sufficiency" in out.output and "necessity" in out.output
    assert "emergence" not in out.output
    bad = CliRunner().invoke(app, ["analyze", str(run_dir), "--multipliers", "half", "--no-progress"])
    assert bad.exit_code == 2 and "multipliers" in bad.output
