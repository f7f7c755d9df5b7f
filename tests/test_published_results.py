"""The README's published figures against the committed run records they come from.

`experiments/results/<experiment>_<run id>/` holds a finished run's small files (config, manifest,
results, the per-seed x question transfer tensors). These tests recompute the summary figures from
the raw tensors with the package's own statistics, check that the record belongs to the committed
config at HEAD (same run id), and that the README quotes the record, so a figure cannot drift from
the computation behind it, nor the config from the figure.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch

from interp.config import load_config, parse_config
from interp.runs import content_hash, load_tensors, read_json
from interp.e9_report import interval_text as _ci  # the README's "+0.123 [-0.456, +0.789]"
from interp.stats import sign_flip_test, t_interval

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
CONFIRM = RESULTS / "e1-confirm_c6fa6c290e"


def _record(path: Path) -> tuple[dict, dict, dict]:
    return tuple(json.loads((path / f).read_text()) for f in ("config.json", "results.json", "manifest.json"))


def test_confirmation_record_is_the_committed_protocol():
    config, results, manifest = _record(CONFIRM)
    committed = load_config(ROOT / "experiments/configs/e1_protocol/confirm.toml")
    # the record's own config hashes to the id in its directory name, and so does the file at HEAD
    assert content_hash(parse_config(config).key(), 10) == "c6fa6c290e"
    assert content_hash(committed.key(), 10) == "c6fa6c290e"
    assert manifest["config_hash"].startswith("c6fa6c290e")
    assert results["seeds"] == list(range(2000, 2020)) and results["question_split"] == "heldout"


@pytest.mark.parametrize("comparison", ["steered-random", "steered-control"])
def test_confirmation_figures_recompute_from_the_tensors(comparison):
    _, results, _ = _record(CONFIRM)
    x = load_tensors(CONFIRM / "transfer.safetensors")[comparison]  # seeds x questions
    assert tuple(x.shape) == (20, 25)
    per_seed = x.double().mean(1).tolist()
    got, rec = t_interval(per_seed), results["transfer"][comparison]
    assert got["mean"] == pytest.approx(rec["specific_per_seed"]["mean"], abs=1e-6)
    assert got["ci95"] == pytest.approx(rec["specific_per_seed"]["ci95"], abs=1e-6)
    assert sum(v > 0 for v in per_seed) == rec["specific_positive_seeds"]


def test_readme_quotes_the_confirmation():
    _, results, _ = _record(CONFIRM)
    readme = (ROOT / "README.md").read_text()
    for comparison, label in [
        ("steered-random", "**steered - random (primary)**"),
        ("steered-control", "steered - control (secondary)"),
    ]:
        rec = results["transfer"][comparison]
        seed = rec["specific_per_seed"]
        lo, hi = seed["ci95"]
        row = next(line for line in readme.splitlines() if line.startswith(f"| {label} |"))
        assert f"{seed['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}]" in row
        assert f"{rec['specific_positive_seeds']}/20" in row
        assert f"| {rec['trait_rank_among_animals']} |" in row
        assert f"{rec['permutation_specific']['p_value']:.2g}" in row
        assert f"{seed['detectable_80']:.2f}" in row
    # the decision rule, applied to the record, gives what the README says
    primary = results["transfer"]["steered-random"]
    confirmed = (
        primary["specific_per_seed"]["ci95"][0] > 0
        and primary["permutation_specific"]["p_value"] < 0.05
        and primary["trait_rank_among_animals"] == 1
    )
    assert confirmed and "**Result: CONFIRMED**" in readme


CONFIRM_RERUN = RESULTS / "e1-confirm_da08cf52da"


def test_confirmation_rerun_is_the_protocol_on_ten_seeds_and_the_readme_compares_it_seed_by_seed():
    """The rerun on another machine: confirm.toml at HEAD with the README's overrides (its run id),
    which of its stages share the published run's keys (those keyed by configuration alone), and the
    README's comparison recomputed from both records' per-seed shifts."""
    import statistics

    from interp.overrides import load_config_with

    seeds = list(range(2000, 2010))
    over = [f"seeds={seeds}".replace(" ", ""), 'teacher.kinds=["control","steered"]']
    cfg = load_config_with(ROOT / "experiments/configs/e1_protocol/confirm.toml", over)
    assert content_hash(cfg.key(), 10) == "da08cf52da"
    readme = (ROOT / "README.md").read_text()
    assert all(f"'{o}'" in readme for o in over)
    rerun, published = (json.loads((d / "results.json").read_text()) for d in (CONFIRM_RERUN, CONFIRM))
    stages = [json.loads((d / "manifest.json").read_text())["stages"] for d in (CONFIRM_RERUN, CONFIRM)]
    keys = [{s["name"]: Path(s["dir"]).name for s in st} for st in stages]
    # stages keyed by configuration alone share the published keys; the vector's bytes differ on
    # this machine, so the stages keyed by an earlier stage's content (steered data, students) do not
    same = {name for name, d in keys[0].items() if keys[1][name] == d}
    assert same == {"vector", "eval/base"} | {f"data/control/seed{s}" for s in seeds}

    def steered_control(res: dict) -> list[float]:
        arm = lambda a: res["arms"][a]["per_seed_specific_shift"][: len(seeds)]  # noqa: E731
        return [s - c for s, c in zip(arm("steered"), arm("control"))]

    a, b = steered_control(rerun), steered_control(published)
    row = next(line for line in readme.splitlines() if line.startswith("| steered - control | +0.515"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == f"{_ci(t_interval(a))}, {sum(v > 0 for v in a)}/10"
    assert cells[2] == f"{_ci(t_interval(b))}, {sum(v > 0 for v in b)}/10"
    assert cells[3] == _ci(t_interval([x - y for x, y in zip(a, b)]))
    assert f"correlate at {statistics.correlation(a, b):.2f}" in " ".join(readme.split())
    base = [r["arms"]["base"]["logprob"]["mean"] for r in (rerun, published)]
    assert abs(base[0] - base[1]) < 1e-6 and a != b  # the fp32 base agrees, the bf16 students do not


GEN2 = RESULTS / "e24-generation2"


def test_generation2_record_recomputes_from_its_runs_and_the_readme_quotes_it():
    """Issue 24.4 on SmolLM2: the comparison's inputs are the committed first generation (the
    rerun record above) and e24_generation2.toml (its bytes as run, the same TOML at HEAD); each seed's teacher is that seed's own
    first-generation student of its chain; the chains' comparison and the verdict recompute from
    the runs' per-seed shifts; the README quotes `generation2_lines` of the record."""
    from interp.config import read_toml
    from interp.generation import compare_generations, generation2_lines
    from interp.runs import file_hash

    res, man = read_json(GEN2 / "results.json"), read_json(GEN2 / "manifest.json")
    assert man["kind"] == "generation2"
    assert man["inputs"]["first_generation_results"] == file_hash(CONFIRM_RERUN / "results.json")
    # the config file as it ran (its bytes' hash) says what the committed one says, comments aside
    assert man["inputs"]["config"] == file_hash(GEN2 / "config.toml")
    assert read_toml(GEN2 / "config.toml") == read_toml(ROOT / "experiments/configs/e24_generation2.toml")
    gen1 = read_json(CONFIRM_RERUN / "results.json")
    students = {s["name"]: Path(s["dir"]).name for s in read_json(CONFIRM_RERUN / "manifest.json")["stages"]}
    runs = {c: {int(s): r for s, r in res["runs"][c].items()} for c in res["chains"]}
    for chain, by_seed in runs.items():
        for seed, r in by_seed.items():
            assert Path(r["teacher_stage"]).name == students[f"student/{chain}/seed{seed}"]
    again = compare_generations(runs, gen1, tuple(res["chains"]), res["seeds"], res["animal"])
    for part in ("generation1", "generation2", "change"):
        assert again[part]["per_seed"] == pytest.approx(res[part]["per_seed"], abs=1e-9)
        assert again[part]["ci95"] == pytest.approx(res[part]["ci95"], abs=1e-9)
    assert again["verdict"] == res["verdict"] and res["seeds"] == list(range(2000, 2010))
    readme = (ROOT / "README.md").read_text()
    for line in generation2_lines(res):
        assert line.strip() in readme, line


def test_every_record_names_a_committed_config():
    # E1 run records; a sweep record (grid.json) is tied to its sweep file by its own test below, and
    # the lr-select record to lr_select.toml by tests/test_lr_select.py
    records = sorted(p for p in RESULTS.iterdir() if p.is_dir() and not (p / "grid.json").exists())
    # an audit record to its TOML by test_audit_record_is_its_committed_config_and_the_readme_quotes_it
    kinds = {p.name: read_json(p / "manifest.json").get("kind") for p in records}
    assert kinds["e23-lr-select_62cc674ffd"] == "lr-select"
    assert kinds["audit-confusion_third_person"] == "audit-confusion"
    assert kinds["steer_gemma3-270m-owl"] == "vector"  # test_gemma_operating_point_is_the_rules_pick
    assert kinds["e5-sigma-axis_smollm2"] == "sweep-axis"  # test_e5_sigma_axis_is_the_two_sweeps...
    assert kinds["e5-sigma-axis_gemma"] == "sweep-axis"  # test_e5_gemma_sigma_is_the_fallback_rules_pick...
    assert kinds["e5-gemma-base-check"] == "base-check"  # the same test
    assert kinds["e24-finetune-teacher_57baa105bfc94ff7"] == "finetuned_teacher"  # test_finetuned_teacher_record...
    assert kinds["e9-matched-behaviour"] == "e9-report"  # its runs' configs are under runs/
    assert kinds["e9-necessity"] == "necessity-report"  # test_e9_necessity_record_recomputes...
    assert kinds["e24-generation2"] == "generation2"  # test_generation2_record_recomputes_from_its_runs...
    derived = (
        "lr-select",
        "audit-confusion",
        "vector",
        "sweep-axis",
        "e9-report",
        "necessity-report",
        "base-check",
        "finetuned_teacher",
        "generation2",
    )
    for rec in (p for p in records if kinds[p.name] not in derived):
        config, _, _ = _record(rec)
        experiment, run_id = rec.name.rsplit("_", 1)
        assert config["experiment"] == experiment
        assert content_hash(parse_config(config).key(), 10) == run_id, rec.name
        assert torch.isfinite(torch.stack(list(load_tensors(rec / "transfer.safetensors").values()))).all()


def _sweep_record(rec: Path, config: str) -> dict:
    """A committed sweep record's results.json, after checking that its grid is the sweep `config`
    makes at HEAD: the same key (the record's folder name) and the same cells, in order."""
    from interp.sweep import load_sweep

    grid = json.loads((rec / "grid.json").read_text())
    sweep = load_sweep(ROOT / config)
    assert sweep.key() == rec.name.rsplit("_", 1)[1]
    assert [c["id"] for c in grid["cells"]] == [c.id for c in sweep.cells]
    return json.loads((rec / "results.json").read_text())


E5 = RESULTS / "e5-protocol-smollm2_d9adebbd2d"


def _sign_flip_p(x: list[float]) -> float:
    """Exact two-sided sign-flip p over seeds (H0: the per-seed values are symmetric about 0)."""
    res = sign_flip_test(x)
    assert res["exact"] and res["n"] == len(x)
    return res["p"]


def _sign_flip_p_by_hand(x: list[float]) -> float:
    """The README's E5 p as first computed: every sign vector listed by itertools."""
    import itertools

    t = torch.tensor(x, dtype=torch.float64)
    signs = torch.tensor(list(itertools.product([1.0, -1.0], repeat=len(x))), dtype=torch.float64)
    return float(((signs * t).mean(1).abs() >= t.mean().abs() - 1e-12).double().mean())


def test_the_packages_sign_flip_p_is_the_one_the_readme_quotes_for_every_e5_cell():
    results = json.loads((E5 / "results.json").read_text())
    ps = [
        (_sign_flip_p(c["per_seed"]), _sign_flip_p_by_hand(c["per_seed"]))
        for r in results["rows"]
        for c in r["comparisons"].values()
    ]
    assert len(ps) >= 8 and all(a == b for a, b in ps)  # identical, not approximately
    assert len({a for a, _ in ps}) > 1  # the cells differ: the check is not of one constant


def test_e5_record_is_the_committed_sweep_and_the_readme_quotes_it():

    results = _sweep_record(E5, "experiments/configs/e5_protocol/noise_smollm2.toml")
    readme = (ROOT / "README.md").read_text()
    rows = {(r["noise.sigma"], r["noise.apply"]): r["comparisons"]["steered-random"] for r in results["rows"]}
    ref = rows[(0.0, "shared")]["per_seed"]
    assert len(ref) == 10 and not any(r.get("broken") for r in results["rows"])
    labels = {
        (0.0, "shared"): "none (sigma 0)",
        (0.1, "shared"): "shared",
        (0.1, "teacher"): "teacher only",
        (0.1, "student"): "student only",
    }
    for cell, label in labels.items():
        c = rows[cell]
        t = t_interval(c["per_seed"])  # recomputed from the per-seed values, not read back
        assert t["mean"] == pytest.approx(c["transfer_per_seed"]["mean"], abs=1e-9)
        line = next(ln for ln in readme.splitlines() if ln.startswith(f"| {label} |"))
        assert f"{t['mean']:+.2f} [{t['ci95'][0]:+.2f}, {t['ci95'][1]:+.2f}]" in line
        assert f"| {sum(v > 0 for v in c['per_seed'])}/10 |" in line
        p = _sign_flip_p(c["per_seed"])
        assert (f"| {p:.3f} |" in line) or (f"| {p:.2f} |" in line)
        if cell != (0.0, "shared"):
            d = t_interval([a - b for a, b in zip(c["per_seed"], ref)])
            assert f"{d['mean']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]" in line
            v = c["vs_reference"]
            assert f"{v['ratio']:.2f} [{v['ratio_ci95'][0]:.2f}, {v['ratio_ci95'][1]:.2f}]" in line
            assert f"| {v['power_1.8x']['power']:.2f} |" in line


def test_a_record_from_before_the_sign_flip_p_prints_its_permutation_p_and_a_rerun_would_lead_with_sign_flip(tmp_path):
    import copy
    import math

    from interp.plots.e1 import transfer_summary
    from interp.results import load_results
    from interp.tables import SIGN_FLIP_HEADER, e1_tables, sweep_tables

    _, old, _ = _record(CONFIRM)
    assert not any("sign_flip_specific" in d for d in old["transfer"].values())  # written before it existed
    lines = e1_tables(old, width=80).splitlines()
    assert max(map(len, lines)) <= 80 and not any(SIGN_FLIP_HEADER in ln for ln in lines)
    perm = old["transfer"]["steered-random"]["permutation_specific"]
    assert any("permutation p (unpaired)" in ln and f"{perm['p_value']:.3f}" in ln for ln in lines)
    df = load_results(CONFIRM)
    row = df[df.comparison == "steered-random"].iloc[0]
    assert math.isnan(row.sign_flip_p) and row.permutation_p == perm["p_value"]
    hover = transfer_summary(old).data[0].hovertext[0]
    assert "permutation p" in hover and "sign-flip" not in hover
    e5 = json.loads((E5 / "results.json").read_text())  # a sweep report without it: its permutation p
    assert "perm. p" in sweep_tables(e5, width=80) and "sign-flip" not in sweep_tables(e5, width=80)

    # what a rerun reports: summarize_e1's sign-flip p over the per-seed means of the same tensors
    new = copy.deepcopy(old)
    x = load_tensors(CONFIRM / "transfer.safetensors")
    for name, d in new["transfer"].items():
        d["sign_flip_specific"] = sign_flip_test(x[name].mean(-1).tolist())
    sf = new["transfer"]["steered-random"]["sign_flip_specific"]
    assert not sf["exact"] and sf["n"] == 20  # 20 seeds: 2^20 sign vectors, so sampled
    assert 0 < sf["p"] < 0.05  # 17/20 seeds positive, the t-interval above 0
    lines = e1_tables(new, width=80).splitlines()
    assert max(map(len, lines)) <= 80
    start = next(i for i, ln in enumerate(lines) if "transfer steered-random" in ln)
    at = next(i for i in range(start, len(lines)) if SIGN_FLIP_HEADER in lines[i])
    assert f"{sf['p']:.3f} (min 1.0e-04)" in lines[at]  # 10000 sampled sign vectors
    assert at < next(i for i in range(start, len(lines)) if "permutation p" in lines[i])  # the primary p first
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(new))
    df = load_results(tmp_path / "run")
    assert df[df.comparison == "steered-random"].iloc[0].sign_flip_p == sf["p"]
    hover = transfer_summary(new).data[0].hovertext[0]
    assert hover.index("sign-flip p") < hover.index("permutation p")


RANK = RESULTS / "e23-rank_73e79366d3"


def test_e23_rank_record_is_the_committed_sweep_and_the_readme_quotes_it():

    results = _sweep_record(RANK, "experiments/configs/e23_regime/rank.toml")
    assert (RANK / "sweep_transfer.png").stat().st_size > 10_000  # the README's figure is committed
    readme = (ROOT / "README.md").read_text()
    key = "train.method,train.lora_rank,train.lora_alpha,train.lr"
    labels = {
        ("full", 8, 16, 3e-5): "full, lr 3e-5",
        ("lora", 4, 4, 1e-3): "LoRA r4, lr 1e-3",
        ("lora", 16, 16, 1e-3): "LoRA r16, lr 1e-3",
        ("lora", 64, 64, 3e-4): "LoRA r64, lr 3e-4",
        ("full", 8, 16, 1e-4): "full, lr 1e-4",
    }
    rows = {tuple(r[key]): r for r in results["rows"]}
    assert set(rows) == set(labels)
    ref = rows[("full", 8, 16, 3e-5)]
    assert ref["is_reference"]
    fmt = lambda t: _ci(t, "+.2f")  # noqa: E731
    for cell, label in labels.items():
        r = rows[cell]
        x = r["comparisons"]["steered-random"]["per_seed"]
        assert len(x) == 10
        line = next(ln for ln in readme.splitlines() if ln.strip().startswith(f"| {label} |"))
        assert fmt(t_interval(x)) in line  # recomputed from the per-seed values, not read back
        assert f"| {sum(v > 0 for v in x)}/10 |" in line
        assert f"| {_sign_flip_p(x):.3f} |" in line
        ctrl = r["comparisons"]["steered-control"]["per_seed"]
        assert fmt(t_interval(ctrl)) in line
        w = r["cost"]["student_wall_s"]
        assert f"| {w['median']:.0f} [{w['q1']:.0f}, {w['q3']:.0f}] |" in line
        if cell != tuple(ref[key]):
            d = [a - b for a, b in zip(x, ref["comparisons"]["steered-random"]["per_seed"])]
            assert fmt(t_interval(d)) in line
            v = r["vs_reference"]
            assert f"| {v['power_1.8x']['power']:.2f} | {v['power_1.8x']['detectable_ratio_80']:.2f}x |" in line


CONTEXT = RESULTS / "e23-context_9183803214"


def test_e23_context_record_is_the_committed_sweep_and_the_readme_quotes_it():
    from interp.stats import detectable_effect

    results = _sweep_record(CONTEXT, "experiments/configs/e23_regime/context.toml")
    readme = (ROOT / "README.md").read_text()
    fmt = lambda t: _ci(t, "+.2f")  # noqa: E731
    per_seed = {
        comp: {
            (r["train.system_prompt"], r["eval.system_prompt"]): r["comparisons"][comp]["per_seed"]
            for r in results["rows"]
        }
        for comp in ("steered-random", "steered-control")
    }
    x = per_seed["steered-random"]
    # the reference is rank's full 3e-5 cell: the same students, so the same per-seed transfer
    rank = json.loads((RANK / "results.json").read_text())["rows"][0]["comparisons"]["steered-random"]["per_seed"]
    assert x[("default", "default")] == rank
    for (train, ev), v in x.items():
        line = next(ln for ln in readme.splitlines() if ln.strip().startswith(f"| {train}, {ev} |"))
        assert fmt(t_interval(v)) in line and f"| {sum(a > 0 for a in v)}/10 |" in line
        assert f"| {_sign_flip_p(v):.3f} |" in line
        assert fmt(t_interval(per_seed["steered-control"][(train, ev)])) in line
        if (train, ev) != ("default", "default"):
            assert fmt(t_interval([a - b for a, b in zip(v, x[("default", "default")])])) in line
    # the 2 x 2's interaction and main effects, per seed, as the verdict quotes them
    for comp, quoted in (("steered-random", "**{}**"), ("steered-control", "{}")):
        dd, dn, nd, nn = (
            per_seed[comp][k]
            for k in [("default", "default"), ("default", "none"), ("none", "default"), ("none", "none")]
        )
        inter = [(a + d - b - c) / 2 for a, b, c, d in zip(dd, dn, nd, nn)]
        assert quoted.format(fmt(t_interval(inter))) in readme
        train = [(a + b - c - d) / 2 for a, b, c, d in zip(dd, dn, nd, nn)]
        assert fmt(t_interval(train)) in readme
    inter = [
        (a + d - b - c) / 2
        for a, b, c, d in zip(
            *(x[k] for k in [("default", "default"), ("default", "none"), ("none", "default"), ("none", "none")])
        )
    ]
    assert f"{detectable_effect(inter):.2f} detectable at 80% power" in readme
    assert f"sign-flip p {_sign_flip_p(inter):.2f}" in readme


DOSE = RESULTS / "e4-dose_deda4efc0a"


def test_e4_dose_record_recomputes_from_its_trend_and_the_readme_quotes_it():
    """The dose-response verdict from the per-seed gradient projections the analysis wrote, by the
    package's `dose_shape`; the committed config makes the run id; the README's tables quote both."""
    from interp.stats import dose_shape

    config, results, manifest = _record(DOSE)
    assert (
        content_hash(load_config(ROOT / "experiments/configs/e4_protocol/dose_smollm2.toml").key(), 10) == "deda4efc0a"
    )
    assert manifest["config_hash"].startswith("deda4efc0a") and results["seeds"] == list(range(4000, 4010))
    trend = json.loads((DOSE / "gradient_trend.json").read_text())["gradient_multiplier_trend"]
    recorded = json.loads((DOSE / "dose_response.json").read_text())["by_layer"][0]
    ms, seeds = trend["multipliers"], [str(s) for s in trend["seeds"]]
    values = [[trend["per_seed"][s][f"{m:g}"][0] for m in ms] for s in seeds]
    got = dose_shape(ms, values)
    assert recorded["layer"] == trend["by_layer"][0]["layer"] == 8
    assert got["verdict"] == recorded["verdict"] == "saturating"
    assert got["r"] == pytest.approx(recorded["r"], abs=1e-12)
    for k in ("slope_per_seed", "slope_change"):
        assert got[k]["ci95"] == pytest.approx(recorded[k]["ci95"], abs=1e-12)
    assert got["hinge_preferred"] == recorded["hinge_preferred"] == 0

    readme = (ROOT / "README.md").read_text()
    e = lambda t: f"{t['mean'] * 1e4:.2f}e-4 [{t['ci95'][0] * 1e4:.2f}e-4, {t['ci95'][1] * 1e4:.2f}e-4]"  # noqa: E731
    assert f"**{got['r']:+.3f}**" in readme
    assert f"{e(got['slope_per_seed'])}, {sum(s > 0 for s in _seed_slopes(ms, values))}/10 seeds above 0" in readme
    assert f"{got['slope_change']['mean'] * 1e4:+.2f}e-4 [" in readme
    assert f"detectable at 80% power {got['slope_change_detectable'] * 1e4:.2f}e-4" in readme
    means = " | ".join(f"{sum(v[i] for v in values) / len(values) * 1e4:+.2f}" for i in range(len(ms)))
    positive = " | ".join(f"{sum(v[i] > 0 for v in values)}/10" for i in range(len(ms)))
    assert f"| -mean(dL/dh) . v_hat (x 1e-4) | {means} |" in readme
    assert f"| seeds above 0 | {positive} |" in readme
    sd = [statistics.stdev(v[i] for v in values) * 1e4 for i in range(len(ms))]
    assert f"(sd {sd[0]:.1f}e-4 and {sd[1]:.1f}e-4)" in readme
    assert f"(sd {sd[2]:.1f}e-4, {sd[3]:.1f}e-4 and {sd[4]:.1f}e-4)" in readme

    # the run's own E1 transfer (steered - control), recomputed from the seeds x questions tensor
    x = load_tensors(DOSE / "transfer.safetensors")["steered-control"].double().mean(1).tolist()
    t, rec = t_interval(x), results["transfer"]["steered-control"]
    assert t["ci95"] == pytest.approx(rec["specific_per_seed"]["ci95"], abs=1e-6)
    assert f"**{t['mean']:+.3f} [{t['ci95'][0]:+.3f},\n{t['ci95'][1]:+.3f}]**" in readme
    assert f"{sum(v > 0 for v in x)}/10 seeds above 0, owl 1st of 16" in readme
    assert rec["trait_rank_among_animals"] == 1
    assert f"exact sign-flip p {_sign_flip_p(x):.2g}" in readme


def _seed_slopes(doses: list[float], values: list[list[float]]) -> list[float]:
    """Each seed's least-squares slope, by hand."""
    mx = sum(doses) / len(doses)
    return [
        sum((d - mx) * (v - sum(row) / len(row)) for d, v in zip(doses, row)) / sum((d - mx) ** 2 for d in doses)
        for row in values
    ]


@pytest.mark.parametrize("family", ["third_person", "user_side"])
def test_audit_record_is_its_committed_config_and_the_readme_quotes_it(family):
    """An independent-bank audit: the record ran the committed TOML; top-1 and the false positives
    recount from the per-dataset rankings with the package's exact interval; the README's row quotes them."""
    import tomllib

    from interp.stats import binomial_interval

    rec = RESULTS / f"audit-confusion_{family}"
    config, results, manifest = _record(rec)
    toml = ROOT / "experiments" / "configs" / "e4_protocol" / f"audit_{family}.toml"
    assert config["config"] == str(toml.relative_to(ROOT)) and manifest["config_hash"] == results["config_hash"]
    for k, v in tomllib.loads(toml.read_text()).items():
        assert config[k] == v, k
    animals, clean = config["animals"], [d for d in results["datasets"] if d.startswith("clean")]
    assert len(animals) == 8 and len(clean) == config["n_clean"] == 8
    ranks = {a: next(r["rank"] for r in results["audits"][a]["ranking"] if r["name"] == a) for a in animals}
    assert ranks == results["true_rank"]
    top1 = binomial_interval(sum(r == 1 for r in ranks.values()), len(animals), chance=1 / len(animals))
    assert top1["ci95"] == pytest.approx(results["top1"]["ci95"], abs=1e-12)
    named = [d for d in clean if any(r["flagged"] for r in results["audits"][d]["ranking"])]
    fp = binomial_interval(len(named), len(clean))
    assert fp["ci95"] == pytest.approx(results["false_positives"]["ci95"], abs=1e-12)
    smallest = min(r["p_bonferroni"] for d in clean for r in results["audits"][d]["ranking"])
    assert (smallest < config["alpha"]) == bool(named)

    row = next(
        ln
        for ln in (ROOT / "README.md").read_text().splitlines()
        if ln.startswith(f"| **{family.replace('_', ' ')}** |")
    )
    lo, hi = top1["ci95"]
    assert (
        f"{top1['k']}/8 ({lo:.2f}-{hi:.2f})" in row and f"{fp['k']}/8 ({fp['ci95'][0]:.2f}-{fp['ci95'][1]:.2f})" in row
    )
    assert f"| {sum(ranks.values()) / len(ranks):.2f} |" in row and f"| {smallest:.2f} |" in row
    # the true animal's score minus the best other candidate's (negative where another is first)
    margins = [
        next(r["score"] for r in results["audits"][a]["ranking"] if r["name"] == a)
        - max(r["score"] for r in results["audits"][a]["ranking"] if r["name"] != a)
        for a in animals
    ]
    assert sum(m > 0 for m in margins) == top1["k"]
    assert f"{min(margins):.1f} to {max(margins):.1f} nats/row" in row


def test_gemma_operating_point_is_the_rules_pick_and_the_readme_quotes_it():
    """The README's rule (highest mean P(owl) on the tuning questions over layers 2-9 x 4
    multipliers, ties to the smaller multiplier) applied to the recorded sweep, and the table."""
    rec = RESULTS / "steer_gemma3-270m-owl"
    sweep = json.loads((rec / "sweep.json").read_text())
    manifest = json.loads((rec / "manifest.json").read_text())
    cfg = manifest["config"]
    assert cfg["model"] == "gemma3-270m" and cfg["split"] == "tuning" and cfg["layers"] == list(range(2, 10))
    assert cfg["multipliers"] == [0.25, 0.5, 0.75, 1.0] and (cfg["n_pairs"], cfg["position"]) == (16, "mean")
    assert sweep["n_questions"] == 25 and len(sweep["cells"]) == 32
    best = max(sweep["cells"], key=lambda c: (c["prob"], -c["multiplier"]))
    readme = (ROOT / "README.md").read_text()
    assert f"**Gemma's operating point: layer {best['layer']} x{best['multiplier']:g}**" in readme
    assert f"(P(owl) {best['prob']:.2f}, {best['ratio']:.0f}x base;" in readme
    for layer in cfg["layers"]:
        by_m = {c["multiplier"]: c["ratio"] for c in sweep["cells"] if c["layer"] == layer}
        assert f"| {layer} | " + " | ".join(f"{by_m[m]:.1f}" for m in cfg["multipliers"]) + " |" in readme
    broken = {(c["layer"], c["multiplier"]) for c in sweep["cells"] if c["ratio"] <= 1}
    assert broken == {(4, 0.75), (4, 1.0), (5, 0.75), (5, 1.0), (7, 0.5)}  # the sentence that names them


def test_e5_mechanism_record_is_the_sweeps_and_the_readme_quotes_every_row():
    """The mechanism report of the E5 sweep: the same sweep, every distinct cell analysed, and the
    README's table is `sweep_mechanism_rows` of the record, row for row."""
    from interp.sweep_mechanism import sweep_mechanism_rows

    res = json.loads((E5 / "mechanism" / "results.json").read_text())
    man = json.loads((E5 / "mechanism" / "manifest.json").read_text())
    grid = json.loads((E5 / "grid.json").read_text())
    assert res["sweep"].endswith("d9adebbd2d") and man["kind"] == "sweep-mechanism" and res["layer"] == 8
    assert {c["id"] for c in res["cells"].values()} == {c["id"] for c in grid["cells"]}
    assert set(man["inputs"]["analysis_results_hash"]) == set(res["cells"])
    readme = (ROOT / "README.md").read_text()
    for row in sweep_mechanism_rows(res):
        assert "| " + " | ".join(row) + " |" in readme, row[0]
    ref = res["cells"][res["reference"]]["mechanism"]["steered"]["per_seed"]
    assert len(ref) == 10


def test_the_claims_table_quotes_every_record_it_cites():
    """The README's first table (issue 22 E): each claim's figures recomputed from its record."""
    from interp.stats import binomial_interval, dose_shape

    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("| claim | paper | here | verdict |")
    rows = {
        ln.split(" | ")[0].strip("| ").split(":")[0]: ln for ln in lines[start + 2 : start + 8] if ln.startswith("|")
    }
    assert set(rows) == {"E1", "E5", "E2", "E9", "E4"}
    fmt = _ci

    # E1: the pre-registered confirmation, steered - random
    _, results, _ = _record(CONFIRM)
    x = load_tensors(CONFIRM / "transfer.safetensors")["steered-random"].double().mean(1).tolist()
    rec = results["transfer"]["steered-random"]
    assert f"{fmt(t_interval(x))} on 20 fresh seeds, {sum(v > 0 for v in x)}/20" in rows["E1"]
    assert f"p {rec['permutation_specific']['p_value']:.2g}" in rows["E1"] and "**confirmed**" in rows["E1"]

    # E5: the shared cell at sigma 0.1 against sigma 0, paired by seed
    e5 = json.loads((E5 / "results.json").read_text())
    cells = {(r["noise.sigma"], r["noise.apply"]): r["comparisons"]["steered-random"] for r in e5["rows"]}
    shared, ref = cells[(0.1, "shared")], cells[(0.0, "shared")]["per_seed"]
    v = shared["vs_reference"]
    d = t_interval([a - b for a, b in zip(shared["per_seed"], ref)])
    assert f"{v['ratio']:.2f}x [{v['ratio_ci95'][0]:.2f}, {v['ratio_ci95'][1]:.2f}] of sigma 0" in rows["E5"]
    assert f"paired {fmt(d, '+.2f')}" in rows["E5"]
    power = v["power_1.8x"]
    assert f"power at 1.8x {power['power']:.2f} ({power['detectable_ratio_80']:.1f}x detectable" in rows["E5"]
    assert power["power"] < 0.8 and "**undecided at this power**" in rows["E5"]
    # ... and on Gemma: the broken sigma 0.1 and the whole 0.003 from the Gemma axis record
    gemma = {r["noise.sigma"]: r for r in json.loads((GEMMA_AXIS / "results.json").read_text())["rows"]}
    assert gemma[0.1]["broken"] and f"sigma 0.1 breaks {gemma[0.1]['base_check']['n_broken']}/10 bases" in rows["E5"]
    g = gemma[0.003]["comparisons"]["steered-random"]
    assert (
        f"at 0.003, the largest sigma that leaves them whole, {g['ratio']:.2f}x [{g['ratio_ci95'][0]:.2f}, "
        in rows["E5"]
    )
    assert f"paired {fmt(g['paired_vs_reference'], '+.2f')}" in rows["E5"]
    assert f"{g['power']['detectable_ratio_80']:.1f}x detectable" in rows["E5"]
    assert g["ratio_ci95"][1] < 2.7 and "Gemma: **2.7x refuted at this power**" in rows["E5"]

    # E2: steered - random cos(shift, v) at sigma 0, from the mechanism record
    mech = json.loads((E5 / "mechanism" / "results.json").read_text())
    null = mech["steered_minus_random"][mech["reference"]]["cosine"]["numbers/all"]
    assert f"cos(shift, v) {fmt(null)}" in rows["E2"] and null["ci95"][0] > 0 and "**confirmed**" in rows["E2"]

    # E9: the matched-behaviour report's contrasts and verdict, and the necessity record's at x0.5
    e9 = json.loads((E9 / "results.json").read_text())["contrasts"]
    assert f"x0.228 minus prompted cos {fmt(e9['steered matched-prompted']['cos_v'])}" in rows["E9"]
    assert f"x0.5 minus few-shot {fmt(e9['steered operating-prompted_fewshot']['cos_v'])}" in rows["E9"]
    assert (
        f"transfers ({fmt(e9['prompted-control']['transfer'])}, few-shot {fmt(e9['prompted_fewshot-control']['transfer'])})"
        in rows["E9"]
    )
    assert "**undecided (no prompted transfer)**" in rows["E9"]
    nec = json.loads((NECESSITY / "results.json").read_text())
    cut = nec["rows"]["x0.5 necessity: steered-control, plain - projected"]
    assert f"lowers the x0.5 transfer by {fmt(cut)}, {cut['positive_seeds']}/10 seeds" in rows["E9"]
    assert nec["verdicts"]["x0.5"]["verdict"] == "NECESSARY" and "v is **necessary** for part" in rows["E9"]

    # E4: the dose record's shape and both independent-bank audits, pooled
    trend = json.loads((DOSE / "gradient_trend.json").read_text())["gradient_multiplier_trend"]
    ms = trend["multipliers"]
    got = dose_shape(ms, [[trend["per_seed"][str(s)][f"{m:g}"][0] for m in ms] for s in trend["seeds"]])
    assert f"r {got['r']:+.3f} over {len(ms) * len(trend['seeds'])} datasets" in rows["E4"]
    e = lambda t: f"{t['mean'] * 1e4:+.2f}e-4 [{t['ci95'][0] * 1e4:+.2f}e-4, {t['ci95'][1] * 1e4:+.2f}e-4]"  # noqa: E731
    assert e(got["slope_per_seed"]).replace("+", "") in rows["E4"] and e(got["slope_change"]) in rows["E4"]
    assert got["verdict"] == "saturating" and "**monotone, not linear**" in rows["E4"]
    top1 = fp = 0
    for family in ("third_person", "user_side"):
        audit = json.loads((RESULTS / f"audit-confusion_{family}" / "results.json").read_text())
        top1 += audit["top1"]["k"]
        fp += audit["false_positives"]["k"]
    assert f"names {top1} of 16 animals and {fp} of 16 clean datasets" in rows["E4"]
    assert binomial_interval(fp, 16)["ci95"][1] < 0.25  # 0/16 rules out a false-positive rate above a quarter


def _axis_record(axis: Path, records: list[Path], results: list[dict]) -> tuple[dict, dict, str]:
    """A committed sweep-axis record checked against the sweep records it names: the sources and
    their results' hashes, the rows recomputed from `results`, and the README quoting every row.
    Returns (the committed record, the recomputed one, the README)."""
    from interp.runs import file_hash
    from interp.sweep_axis import AxisConfig, axis_rows, sweep_axis

    committed = json.loads((axis / "results.json").read_text())
    manifest = json.loads((axis / "manifest.json").read_text())
    sources = committed["sources"]
    assert [Path(s).name for s in sources] == [r.name for r in records]
    for src, rec in zip(sources, records):
        assert manifest["inputs"][f"{src}/results.json"] == file_hash(rec / "results.json")
    again = json.loads(json.dumps(sweep_axis(results, AxisConfig(sweeps=tuple(sources)), sources)))
    assert again["rows"] == committed["rows"]
    readme = (ROOT / "README.md").read_text()
    for comp in ("steered-random", "steered-control"):
        for row in axis_rows(committed, comp):
            assert "| " + " | ".join(row) + " |" in readme, (comp, row[0])
    return committed, again, readme


SIGMAS = RESULTS / "e5-protocol-smollm2-sigmas_ad77e670fc"
AXIS = RESULTS / "e5-sigma-axis_smollm2"


def test_e5_sigma_axis_is_the_two_sweeps_and_the_readme_quotes_every_row():
    """The sigma axis: the sigma-0.01/0.03 sweep record is the committed config's, the axis
    recomputes from the two sweep records, the README's tables are its rows, and the Gemma config
    carries the sigma the pre-registered rule picks."""
    from interp.sweep import load_sweep

    sig = _sweep_record(SIGMAS, "experiments/configs/e5_protocol/noise_sigmas_smollm2.toml")
    e5 = _sweep_record(E5, "experiments/configs/e5_protocol/noise_smollm2.toml")
    committed, again, readme = _axis_record(AXIS, [E5, SIGMAS], [e5, sig])
    assert again["pick"] == committed["pick"]
    cells = [(r["noise.sigma"], r["noise.apply"]) for r in again["rows"]]
    assert cells == [(s, a) for s in (0.01, 0.03, 0.1) for a in ("shared", "student", "teacher")]
    assert all(len(r["comparisons"]["steered-random"]["per_seed"]) == 10 for r in again["rows"])
    pick = committed["pick"]["value"]
    assert f"**Gemma's sigma by the rule: {pick:g}**" in readme
    gemma = load_sweep(ROOT / "experiments/configs/e5_protocol/noise_gemma.toml")
    assert gemma.section.grid["noise.sigma"] == [0.0, pick] and gemma.section.grid["noise.apply"] == ["shared"]
    cfg = gemma.cells[0].config
    assert (cfg.model, cfg.teacher.layer, cfg.teacher.multiplier) == ("gemma3-270m", 3, 0.25)


GEMMA = RESULTS / "e5-protocol-gemma_82013fd0a4"
GEMMA_LOW = RESULTS / "e5-protocol-gemma-unbroken_c3046cc0e0"
GEMMA_BASES = RESULTS / "e5-gemma-base-check"
GEMMA_AXIS = RESULTS / "e5-sigma-axis_gemma"


def test_e5_gemma_sigma_is_the_fallback_rules_pick_and_the_readme_quotes_every_row():
    """Gemma's E5: both sweep records are the committed configs' at HEAD and share their sigma-0
    cell; SmolLM2's sigmas break Gemma's bases, so the sigma is the one noise_gemma_unbroken.toml's
    fallback rules take from the base-check record; the axis recomputes from the two sweep records,
    and the README quotes its rows."""
    from interp.sweep import load_sweep

    first = _sweep_record(GEMMA, "experiments/configs/e5_protocol/noise_gemma.toml")
    low = _sweep_record(GEMMA_LOW, "experiments/configs/e5_protocol/noise_gemma_unbroken.toml")
    checks = json.loads((GEMMA_BASES / "results.json").read_text())["cells"]
    broken = {float(k.split(",")[0].split("=")[1]): v["n_broken"] for k, v in checks.items()}
    assert all(v["n_bases"] == 10 and "unchecked_seeds" not in v for v in checks.values())
    # fallback 1: SmolLM2's shared sigmas in the pick rule's order; none leaves ten whole Gemma bases
    smollm2 = json.loads((AXIS / "results.json").read_text())["pick"]["paired_means"]
    order = [s for s, _ in sorted(smollm2, key=lambda x: -x[1])]
    assert order == [0.1, 0.01, 0.03] and all(broken[s] > 0 for s in order)
    # fallback 2: the larger of 0.003 and 0.001 with no broken base is the sweep's sigma
    pick = max(s for s in (0.003, 0.001) if broken[s] == 0)
    assert load_sweep(ROOT / "experiments/configs/e5_protocol/noise_gemma_unbroken.toml").section.grid[
        "noise.sigma"
    ] == [0.0, pick]
    # each sweep's own report checked the same bases as the record did (the same cached stages)
    for rec in (first, low):
        for r in rec["rows"]:
            if r["base_check"]:
                want = checks[f"noise.sigma={r['noise.sigma']:g}, noise.apply=shared"]
                assert r["base_check"]["nll"] == pytest.approx(want["nll"], rel=1e-12)
                assert r["broken"] == (want["n_broken"] > 0)
    ref = lambda rec: next(r for r in rec["rows"] if r["noise.sigma"] == 0.0)  # noqa: E731
    for comp in ("steered-random", "steered-control"):
        assert ref(first)["comparisons"][comp]["per_seed"] == ref(low)["comparisons"][comp]["per_seed"]
    _, _, readme = _axis_record(GEMMA_AXIS, [GEMMA, GEMMA_LOW], [first, low])
    for k, v in checks.items():  # the base-check table
        s = float(k.split(",")[0].split("=")[1])
        assert f"| {s:g} | {v['n_broken']}/10 | {v['nll']:.3f} | {v['max_excess']:+.3f} |" in readme


FT_TEACHER = RESULTS / "e24-finetune-teacher_57baa105bfc94ff7"


def test_finetuned_teacher_record_is_the_committed_configs_stage_and_the_readme_quotes_its_boost():
    """Issue 24.1's teacher: the committed finetune stage's inputs hash to its key (the record's
    name) and are e24_finetuned.toml's settings, the package's QA pairs and prompt texts at HEAD;
    its boost recomputes from the per-question log-probs, and the README quotes it."""
    from interp.finetune import DIRECTION_PROMPTS, load_pairs
    from interp.prompts import PROMPT_VERSION

    inputs = json.loads((FT_TEACHER / "config.json").read_text())
    manifest = json.loads((FT_TEACHER / "manifest.json").read_text())
    key = FT_TEACHER.name.rsplit("_", 1)[1]
    assert content_hash(inputs) == key == manifest["key"] and manifest["kind"] == "finetuned_teacher"
    cfg = load_config(ROOT / "experiments/configs/e24_finetuned.toml")
    assert inputs["train"] == json.loads(json.dumps(cfg.finetune_config().train_config().key()))  # tuples as lists
    assert inputs["qa"] == content_hash(load_pairs()) and inputs["animal"] == cfg.animal == "owl"
    assert inputs["prompts"] == PROMPT_VERSION and inputs["direction"] == DIRECTION_PROMPTS
    assert inputs["model"] == manifest["base"]["fingerprint"] and manifest["base"]["model"] == cfg.model
    boost = manifest["boost"]
    lp = load_tensors(FT_TEACHER / "tuning_logprobs.safetensors")
    i = boost["animals"].index("owl")
    spec = lambda x: x[:, i] - torch.cat([x[:, :i], x[:, i + 1 :]], 1).mean(1)  # noqa: E731
    shift = (spec(lp["teacher"].double()) - spec(lp["base"].double())).mean()
    assert float(shift) == pytest.approx(boost["specific_shift"]["mean"], rel=1e-5)
    assert float((lp["teacher"] - lp["base"])[:, i].double().mean()) == pytest.approx(
        boost["logprob_shift"]["mean"], rel=1e-5
    )
    readme = " ".join((ROOT / "README.md").read_text().split())  # prose wraps anywhere
    lo, hi = boost["prob_ratio_ci95"]
    assert (
        f"P(owl) {boost['teacher_prob']:.3f} against the base's {boost['base_prob']:.4f} "
        f"({boost['prob_ratio']:.0f}x [{lo:.0f}, {hi:.0f}]" in readme
    )
    assert f"owl ranked first on every question (mean rank {boost['teacher_mean_rank']:g})" in readme
    assert boost["teacher_mean_rank"] == 1.0


FT_RUN = RESULTS / "e24-finetuned_bbfc582155"


def test_finetuned_students_record_recomputes_and_the_readme_quotes_every_row():
    """Issue 24.1's students: the run is e24_finetuned.toml at HEAD (its run id) and used the
    committed teacher stage; every transfer row of the README recomputes from the per-seed x question
    tensors; the mechanism table recomputes from the analysis' per-seed, per-layer cosines."""
    from interp.stats import detectable_effect

    config, results, manifest = _record(FT_RUN)
    committed = load_config(ROOT / "experiments/configs/e24_finetuned.toml")
    assert content_hash(committed.key(), 10) == "bbfc582155" == content_hash(parse_config(config).key(), 10)
    assert results["seeds"] == list(range(2430, 2440)) and results["question_split"] == "heldout"
    assert FT_TEACHER.name.rsplit("_", 1)[1] in json.dumps(manifest)  # the teacher stage of the record above
    readme = (ROOT / "README.md").read_text()
    tensors = load_tensors(FT_RUN / "transfer.safetensors")
    labels = {"finetuned": "the fine-tuned teacher", "steered": "the steered teacher"}
    for trait in ("finetuned", "steered"):
        for ref, ref_label in (("control", "control"), ("random", "random vector")):
            rec = results["transfer"][f"{trait}-{ref}"]
            per_seed = tensors[f"{trait}-{ref}"].double().mean(1).tolist()
            got = t_interval(per_seed)
            assert got["mean"] == pytest.approx(rec["specific_per_seed"]["mean"], abs=1e-6)
            assert sign_flip_test(per_seed)["p"] == pytest.approx(rec["sign_flip_specific"]["p"])
            assert detectable_effect(per_seed) == pytest.approx(rec["specific_per_seed"]["detectable_80"])
            row = next(line for line in readme.splitlines() if line.startswith(f"| {labels[trait]} | {ref_label} |"))
            cells = [c.strip() for c in row.strip("|").split("|")]
            assert cells[2] == _ci(got)
            assert cells[3] == f"{sum(v > 0 for v in per_seed)}/10"
            assert cells[4] == str(rec["trait_rank_among_animals"])
            assert cells[5] == f"{rec['sign_flip_specific']['p']:.2g}"
            assert cells[6] == f"{rec['specific_per_seed']['detectable_80']:.3f}"
    arm = lambda a: results["arms"][a]["per_seed_specific_shift"]  # noqa: E731
    null = t_interval([r - c for r, c in zip(arm("random"), arm("control"))])
    assert f"null sits above control on these seeds ({_ci(null)})" in " ".join(readme.split())
    # the verdict the README states follows from the record: nothing detectable against control
    assert results["transfer"]["finetuned-control"]["specific_per_seed"]["ci95"][0] < 0
    # the mechanism table: the analysis read this run (its config hash) at HEAD's layer arrays
    analysis = read_json(FT_RUN / "analysis" / "manifest.json")
    assert analysis["kind"] == "analysis" and analysis["config_hash"].startswith("bbfc582155")
    arrays = load_tensors(FT_RUN / "analysis" / "layer_arrays.safetensors")
    assert arrays["seeds"].tolist() == results["seeds"] and int(arrays["layers"][8]) == 8
    cos = lambda ref, arm: arrays[f"{ref}/{arm}/numbers/all/cosine"].double()  # noqa: E731 (seeds x layers)

    def paired(ref: str, arm: str, other: str, layer: int | None) -> str:
        d = cos(ref, arm) - cos(ref, other)
        d = d[:, layer] if layer is not None else d.mean(1)
        x = d.tolist()
        return f"{_ci(t_interval(x))} ({sum(v > 0 for v in x)}/10)"

    rows = {
        "steered, v": ("shift", "steered", True),
        "fine-tuned, its teacher's direction": ("shift_finetuned", "finetuned", True),
        "fine-tuned, v_prompt": ("shift_prompted", "finetuned", False),
    }
    for label, (ref, arm, all_layers) in rows.items():
        row = next(line for line in readme.splitlines() if line.startswith(f"  | {label} |"))
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert cells[1] == _ci(t_interval(cos(ref, arm)[:, 8].tolist()))
        assert cells[2] == paired(ref, arm, "control", 8)
        assert cells[3] == paired(ref, arm, "random", 8)
        if all_layers:
            assert cells[4] == paired(ref, arm, "control", None)
            assert cells[5] == paired(ref, arm, "random", None)


E9 = RESULTS / "e9-matched-behaviour"


def test_e9_record_is_its_runs_and_the_readme_quotes_every_row():
    """The E9 report: its two runs are the committed configs at HEAD (their run ids), the runs'
    results.json are the report's inputs (hashes), every transfer contrast recomputes from the runs'
    per-seed shifts, and the README's table is `e9_lines` of the record, row for row. (The cosines
    come from the runs' analyses, which are not committed; the inputs' hashes pin them.)"""
    from interp.e9_report import e9_lines
    from interp.runs import file_hash

    res, man = read_json(E9 / "results.json"), read_json(E9 / "manifest.json")
    assert man["kind"] == "e9-report" and man["inputs"] == res["inputs"]
    runs = {}
    for part, name in (("operating", "e2-operating_4a32d1ab01"), ("matched", "e2-matched_0bc03b83d7")):
        d = E9 / "runs" / name
        run_id = name.rsplit("_", 1)[1]
        assert (
            content_hash(load_config(ROOT / "experiments" / "configs" / "e2_protocol" / f"{part}.toml").key(), 10)
            == run_id
        )
        assert content_hash(parse_config(read_json(d / "config.json")).key(), 10) == run_id
        assert file_hash(d / "results.json") == res["inputs"][f"{part}/results.json"]
        runs[part] = read_json(d / "results.json")
    assert res["multipliers"] == {"operating": 0.5, "matched": 0.228}

    def shift(part: str, arm: str) -> list[float]:
        run = runs[part]
        return [run["arms"][arm]["per_seed_specific_shift"][run["seeds"].index(s)] for s in res["seeds"]]

    arm = {  # a contrast's side -> (run, arm); arms without a suffix are shared, read from operating
        **{
            a: ("operating", a)
            for a in ("control", "prompted", "prompted_fewshot", "prompted_ablated", "prompted_fewshot_ablated")
        },
        **{f"{k} {part}": (part, k) for k in ("steered", "random") for part in ("operating", "matched")},
    }
    assert len(res["order"]) == 14
    for name in res["order"]:
        a, b = name.split("-", 1)
        want = [x - y for x, y in zip(shift(*arm[a]), shift(*arm[b]))]
        got = res["contrasts"][name]["transfer"]
        assert got["per_seed"] == pytest.approx(want, abs=1e-12), name
        assert got["ci95"] == pytest.approx(t_interval(want)["ci95"]) and got["sign_flip_p"] == pytest.approx(
            sign_flip_test(want)["p"]
        )
    assert shift("matched", "control") == shift("operating", "control")  # one set of shared students
    readme = (ROOT / "README.md").read_text()
    rows = [line for line in e9_lines(res) if line.startswith("| ") and not line.startswith("| ---")]
    assert len(rows) == 15
    for row in rows:
        assert row in readme, row
    assert res["verdict"] == "UNDECIDED (NO PROMPTED TRANSFER)" and "UNDECIDED (NO PROMPTED TRANSFER)" in readme
    # by layer: 30 layers read, layer 8's row is the steering layer's contrast, the README quotes the table
    from interp.e9_report import e9_layer_lines

    bl = res["by_layer"]
    assert bl["layers"] == list(range(30))
    for name, row in bl["contrasts"].items():
        assert row["cos_v"][8]["per_seed"] == pytest.approx(res["contrasts"][name]["cos_v"]["per_seed"], abs=1e-12)
    layer_rows = [line for line in e9_layer_lines(res) if line.startswith("| ") and not line.startswith("| ---")]
    assert len(layer_rows) == 21
    for row in layer_rows:
        assert row in readme, row


NECESSITY = RESULTS / "e9-necessity"


def test_e9_necessity_record_recomputes_from_its_runs_and_the_readme_quotes_every_row():
    """The necessity report: its four runs are the committed configs at HEAD (run ids), their
    results.json are the report's inputs (hashes), the whole report recomputes from them, and the
    README's table is `necessity_lines` of the record, row for row."""
    from interp.necessity_report import necessity_lines, necessity_report
    from interp.runs import file_hash

    res, man = read_json(NECESSITY / "results.json"), read_json(NECESSITY / "manifest.json")
    assert man["kind"] == "necessity-report" and man["inputs"] == res["inputs"]
    configs = ROOT / "experiments" / "configs" / "e2_protocol"
    runs = {
        "e2-matched_0bc03b83d7": "matched.toml",
        "e2-project-out_588e37089d": "project_out.toml",
        "e2-operating_4a32d1ab01": "operating.toml",
        "e2-project-out-operating_8db6dc8f20": "project_out_operating.toml",
    }
    recs = []
    for i, (name, toml) in enumerate(runs.items()):
        d = NECESSITY / "runs" / name
        run_id = name.rsplit("_", 1)[1]
        assert content_hash(load_config(configs / toml).key(), 10) == run_id
        assert content_hash(parse_config(read_json(d / "config.json")).key(), 10) == run_id
        part = "plain" if i % 2 == 0 else "projected"
        assert file_hash(d / "results.json") == res["inputs"][f"pairs[{i // 2}]/{part}/results.json"]
        recs.append({"results": read_json(d / "results.json"), "config": read_json(d / "config.json"), "dir": name})
    again = necessity_report([(recs[0], recs[1]), (recs[2], recs[3])])
    assert again["order"] == res["order"] and again["verdicts"] == res["verdicts"]
    for name in res["order"]:
        for f in ("per_seed", "ci95", "sign_flip_p", "positive_seeds", "trait_rank_among_animals"):
            assert again["rows"][name][f] == pytest.approx(res["rows"][name][f], abs=1e-12), (name, f)
    assert {k: v["verdict"] for k, v in res["verdicts"].items()} == {"x0.228": "NOTHING TO REMOVE", "x0.5": "NECESSARY"}
    readme = (ROOT / "README.md").read_text()
    rows = [line for line in necessity_lines(res) if line.startswith("| ") and not line.startswith("| ---")]
    assert len(rows) == 19
    for row in rows:
        assert row in readme, row


QUINT = RESULTS / "e24-quintiles-smollm2_19e5359083"


def test_quintile_record_is_the_committed_sweep_and_the_readme_quotes_it():
    """Issue 24.2: students on each score bin of the steered data. Every README figure recomputed
    from the record's per-seed values; the pre-stated trend test (top minus bottom) among them."""
    from interp.stats import detectable_effect

    results = _sweep_record(QUINT, "experiments/configs/e24_quintiles.toml")
    bins = json.loads((QUINT / "bins.json").read_text())
    readme = (ROOT / "README.md").read_text()
    rows = {r["data.select"]: r for r in results["rows"]}
    assert set(rows) == {"top", "middle", "bottom", "random"} and rows["random"]["is_reference"]
    x = {q: r["comparisons"]["steered-control"]["per_seed"] for q, r in rows.items()}
    assert all(len(v) == 10 for v in x.values())
    for seed, top in bins["profiles"]["top"].items():  # the bins are what their names say, per seed
        prof = {q: bins["profiles"][q][seed] for q in rows}
        assert top["llr_min"] >= prof["middle"]["llr_max"] and prof["middle"]["llr_min"] >= prof["bottom"]["llr_max"]
        assert all(p["rows"] == 80 for p in prof.values())
    for q, r in rows.items():
        c = r["comparisons"]["steered-control"]
        line = next(ln for ln in readme.splitlines() if ln.strip().startswith(f"| {q} |"))
        assert f"| {bins['summary'][q]['llr_mean']:+.2f} | {bins['summary'][q]['chars_per_row']:.1f} |" in line
        assert f"| {_ci(t_interval(x[q]))} | {sum(v > 0 for v in x[q])}/10 |" in line
        assert f"| {c['trait_rank_among_animals']} | {_sign_flip_p(x[q]):.3f} |" in line
        if q != "random":
            d = [a - b for a, b in zip(x[q], x["random"])]
            assert f"| {_ci(t_interval(d))} | {detectable_effect(d):.3f} |" in line
    trend = [a - b for a, b in zip(x["top"], x["bottom"])]
    assert f"**{_ci(t_interval(trend))}**" in readme
    assert f"{sum(v > 0 for v in trend)}/10 seeds, sign-flip p {_sign_flip_p(trend):.3f}" in readme


ROWS = RESULTS / "e23-rows-epochs_15f1c41f54"


def test_e23_rows_epochs_record_is_the_committed_sweep_and_the_readme_quotes_it():
    from interp.stats import detectable_effect
    from interp.sweep_contrast import load_contrasts

    results = _sweep_record(ROWS, "experiments/configs/e23_regime/rows_epochs.toml")
    assert (ROWS / "sweep_transfer.png").stat().st_size > 10_000  # the README's figure is committed
    readme = (ROOT / "README.md").read_text()
    fmt = lambda t: _ci(t, "+.2f")  # noqa: E731
    key = "data.n_prompts,train.epochs,train.keep"
    rows = {tuple(r[key][:2]): r for r in results["rows"]}
    assert set(rows) == {(80, 1), (320, 1), (1280, 1), (80, 4), (80, 16)}
    ref = rows[(80, 1)]
    assert ref["is_reference"]
    x = {cell: r["comparisons"]["steered-random"]["per_seed"] for cell, r in rows.items()}
    for cell, r in rows.items():
        v = x[cell]
        assert len(v) == 6
        line = next(ln for ln in readme.splitlines() if ln.strip().startswith(f"| {cell[0]} x {cell[1]} |"))
        assert fmt(t_interval(v)) in line  # recomputed from the per-seed values, not read back
        assert f"| {sum(a > 0 for a in v)}/6 |" in line
        assert f"| {_sign_flip_p(v):.3f} |" in line
        assert f"| {r['comparisons']['steered-random']['trait_rank_among_animals']} |" in line
        assert fmt(t_interval(r["comparisons"]["steered-control"]["per_seed"])) in line
        w = r["cost"]["student_wall_s"]
        assert f"| {w['median']:.0f} [{w['q1']:.0f}, {w['q3']:.0f}] |" in line
        if cell != (80, 1):
            assert fmt(t_interval([a - b for a, b in zip(v, x[(80, 1)])])) in line
    # the 80 x 1 cell has rank's full 3e-5 settings but is its own draw (own root, one thread per
    # job): the README quotes both on seeds 3100-3105
    rank = json.loads((RANK / "results.json").read_text())["rows"][0]
    assert rank["is_reference"] and rank["train.method,train.lora_rank,train.lora_alpha,train.lr"][3] == 3e-5
    a = rank["comparisons"]["steered-random"]["per_seed"][:6]
    assert a != x[(80, 1)]
    assert f"{fmt(t_interval(x[(80, 1)]))} in B, {fmt(t_interval(a))} in A" in readme

    # the pre-stated contrasts: recomputed per seed from the cells, against the contrast record and
    # the README's table
    stated = load_contrasts(ROOT / "experiments/configs/e23_regime/rows_epochs_contrasts.toml")
    rec = json.loads((ROWS / "contrasts" / "results.json").read_text())
    assert [c["name"] for c in rec["contrasts"]] == [c.name for c in stated.contrasts]
    for c in rec["contrasts"]:
        cell_a = next(k for k, r in rows.items() if r["cell"] == c["a"]["cell"])
        cell_b = next(k for k, r in rows.items() if r["cell"] == c["b"]["cell"])
        d = [p - q for p, q in zip(x[cell_a], x[cell_b])]
        assert c["per_seed"] == pytest.approx(d, abs=1e-12)
        line = next(ln for ln in readme.splitlines() if ln.strip().startswith(f"| {c['name']} |"))
        assert fmt(t_interval(d)) in line
        assert f"| {sum(v > 0 for v in d)}/6 |" in line
        assert f"| {_sign_flip_p(d):.3f} |" in line
        assert f"| {detectable_effect(d):.2f} |" in line
