"""Pre-stated contrasts between a sweep's cells (`interp.sweep_contrast`): the published quintile
trend recomputed from its record, every contrast of 23 B's file picking the cells it names on the
committed grid, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interp.e9_report import interval_text
from interp.stats import sign_flip_test, t_interval
from interp.sweep import load_sweep
from interp.sweep_contrast import load_contrasts, run_contrasts, sweep_contrasts
from tomltext import toml as toml_text

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"
QUINT = ROOT / "experiments" / "results" / "e24-quintiles-smollm2_19e5359083"
ROWS = CONFIGS / "e23_regime" / "rows_epochs.toml"


def _script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sweep_contrasts", ROOT / "experiments" / "sweep_contrasts.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_the_quintile_trend_file_recomputes_the_published_trend(tmp_path):
    script = _script()
    res = script.main(
        [str(CONFIGS / "e24_quintiles_contrasts.toml"), str(QUINT), "--out", str(tmp_path), "--format", "html"]
    )
    (c,) = res["contrasts"]
    rows = {
        r["data.select"]: r["comparisons"]["steered-control"]["per_seed"]
        for r in json.loads((QUINT / "results.json").read_text())["rows"]
    }
    by_hand = [a - b for a, b in zip(rows["top"], rows["bottom"])]
    assert c["per_seed"] == pytest.approx(by_hand, abs=0)
    assert c["diff_per_seed"] == t_interval(by_hand) and c["sign_flip"] == sign_flip_test(by_hand)
    assert (c["a"]["label"], c["b"]["label"]) == ("data.select=top", "data.select=bottom")
    assert c["reading"] == "above 0" and c["positive_seeds"] == 8
    readme = (ROOT / "README.md").read_text()  # the README's trend is this contrast
    assert f"**{interval_text(c['diff_per_seed'])}**" in readme
    assert f"8/10 seeds, sign-flip p {c['sign_flip']['p']:.3f}" in readme
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["kind"] == "sweep-contrasts" and str(QUINT / "results.json") in manifest["inputs"]
    assert (tmp_path / "figures" / "contrasts.html").stat().st_size > 1000


def _synthetic(sweep, per_cell: dict[str, list[float]]) -> dict:
    """A results.json for `sweep`'s cells with known per-seed transfer (no stage is run)."""
    key = sweep.section.grid
    return {
        "sweep": sweep.section.name,
        "comparison": "steered-random",
        "grid": key,
        "grid_keys": list(key),
        "rows": [
            {
                "cell": c.id,
                "label": c.label(),
                **c.values,
                "comparisons": {"steered-random": {"per_seed": per_cell[c.id]}},
            }
            for c in sweep.cells
        ],
    }


def test_23b_contrasts_pick_the_cells_they_name_on_the_committed_grid():
    sweep = load_sweep(ROWS)
    cfg = load_contrasts(CONFIGS / "e23_regime" / "rows_epochs_contrasts.toml")
    assert cfg.sweep_config == "experiments/configs/e23_regime/rows_epochs.toml" and len(cfg.contrasts) == 5
    # each cell's transfer encodes its (rows, epochs), so a contrast's value names the cells it read
    code = lambda c: c.config.data.n_prompts * 100 + c.config.train.epochs  # noqa: E731
    per_cell = {c.id: [code(c) + s / 10 for s in range(6)] for c in sweep.cells}
    res = sweep_contrasts(_synthetic(sweep, per_cell), cfg, {c.id: list(c.config.seeds) for c in sweep.cells})
    got = {c["name"]: c["diff_per_seed"]["mean"] for c in res["contrasts"]}
    assert got == pytest.approx(
        {
            "unique rows: 1280 x 1 - 80 x 1": 128001 - 8001,
            "rows vs repetition, 320 steps: 1280 x 1 - 80 x 16": 128001 - 8016,
            "rows vs repetition, 80 steps: 320 x 1 - 80 x 4": 32001 - 8004,
            "unique rows: 320 x 1 - 80 x 1": 32001 - 8001,
            "repetition alone: 80 x 16 - 80 x 1": 8016 - 8001,
        }
    )
    assert all(c["n_seeds"] == 6 and c["reading"] == "above 0" for c in res["contrasts"])
    assert all(c["seeds"] == list(range(3100, 3106)) for c in res["contrasts"])  # the sweep's six, in every cell


def _write(path: Path, raw: dict) -> Path:
    path.write_text(toml_text(raw))
    return path


def test_bad_contrast_files_and_mismatched_sweeps_are_refused_in_one_line(tmp_path):
    sweep = load_sweep(ROWS)
    results = _synthetic(sweep, {c.id: [0.1 * i, 0.2, 0.3] for i, c in enumerate(sweep.cells)})
    base = {"sweep_config": str(ROWS), "contrast": [{"name": "x", "a": {"train.epochs": 16}, "b": {"train.epochs": 4}}]}
    ok = load_contrasts(_write(tmp_path / "ok.toml", base))
    assert sweep_contrasts(results, ok)["contrasts"][0]["diff_per_seed"]["n"] == 3

    def refused(raw: dict, match: str, res: dict = results, ids=None):
        with pytest.raises(ValueError, match=match) as e:
            sweep_contrasts(res, load_contrasts(_write(tmp_path / "c.toml", raw)), ids)
        assert "\n" not in str(e.value)

    one = base["contrast"][0]
    joined = {"data.n_prompts,train.epochs,train.keep": [80, 16, "none"]}  # the grid's own key, whole
    assert (
        sweep_contrasts(
            results, load_contrasts(_write(tmp_path / "j.toml", {**base, "contrast": [{**one, "a": joined}]}))
        )["contrasts"][0]["per_seed"]
        == sweep_contrasts(results, ok)["contrasts"][0]["per_seed"]
    )
    refused({**base, "contrast": [{**one, "a": {"train.lr": 1e-4}}]}, r"'train.lr' is not a grid field")
    refused({**base, "contrast": [{**one, "a": {"train.epochs": 1}}]}, r"matches 3 cells, not 1")  # 80, 320, 1280 x 1
    refused({**base, "contrast": [{**one, "b": {"train.epochs": 16}}]}, r"pick the same cell")
    refused({**base, "comparison": "steered-control"}, r"comparison: 'steered-control' is not in")
    refused(base, r"cells are not this sweep's", ids={"0123456789": [0]})  # contrasts stated for another grid
    seeds = {c.id: [0, 1, 2] for c in sweep.cells}
    refused(base, r"ran on different seeds", ids={**seeds, sweep.cells[4].id: [0, 1, 3]})
    short = json.loads(json.dumps(results))
    short["rows"][4]["comparisons"]["steered-random"]["per_seed"] = [0.0, 0.0]
    refused(base, r"has 2 seeds and .* 3; a paired contrast needs the same seeds", res=short)
    for raw, match in [
        ({"contrast": base["contrast"]}, "lacks sweep_config"),
        ({"sweep_config": str(ROWS)}, r"states no \[\[contrast\]\]"),
        ({**base, "contrasts": 1}, r"unknown keys \['contrasts'\]"),
        ({**base, "contrast": [{"name": "x", "a": {"train.epochs": 16}}]}, "lacks 'b'"),
        ({**base, "contrast": [one, one]}, "names a contrast twice"),
        ({**base, "contrast": [{**one, "a": 16}]}, "a and b must be inline tables"),
    ]:
        with pytest.raises(ValueError, match=match):
            load_contrasts(_write(tmp_path / "bad.toml", raw))


def test_a_contrast_with_a_broken_base_is_not_read_and_the_sweep_file_is_found_from_anywhere(tmp_path, monkeypatch):
    sweep = load_sweep(ROWS)
    results = _synthetic(sweep, {c.id: [1.0 + i, 2.0 + 1.1 * i, 3.0 + i] for i, c in enumerate(sweep.cells)})
    results["rows"][4]["broken"] = True  # 80 x 16
    res = sweep_contrasts(results, load_contrasts(CONFIGS / "e23_regime" / "rows_epochs_contrasts.toml"))
    read = {c["name"]: c["reading"] for c in res["contrasts"]}
    assert read["repetition alone: 80 x 16 - 80 x 1"].startswith("not read: broken base in data.n_prompts")
    assert read["unique rows: 1280 x 1 - 80 x 1"] == "above 0"  # 1280 x 1 minus 80 x 1: +2, +2.2, +2
    # run from another directory: the contrast file's repository-relative sweep_config is still found
    monkeypatch.chdir(tmp_path)
    out = run_contrasts(load_contrasts(CONFIGS / "e24_quintiles_contrasts.toml"), QUINT, tmp_path / "out")
    assert out["contrasts"][0]["reading"] == "above 0"


def test_the_script_refuses_an_unfinished_sweep_in_one_line_and_writes_nothing(tmp_path, capsys):
    script = _script()
    with pytest.raises(SystemExit) as e:
        script.main(
            [str(CONFIGS / "e24_quintiles_contrasts.toml"), str(tmp_path / "no-sweep"), "--out", str(tmp_path / "out")]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: sweep: ") and "finish the sweep" in err and "\n" not in err
    assert not (tmp_path / "out").exists()
    # the quintile file against another sweep's record: its cells are not e24_quintiles.toml's
    with pytest.raises(SystemExit):
        script.main(
            [
                str(CONFIGS / "e24_quintiles_contrasts.toml"),
                str(ROOT / "experiments/results/e23-rank_73e79366d3"),
                "--out",
                str(tmp_path / "out"),
            ]
        )
    assert "cells are not this sweep's" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_interp_plot_draws_a_contrast_directory(tmp_path):
    from interp.plots.run_dir import run_figures

    run_contrasts(load_contrasts(CONFIGS / "e24_quintiles_contrasts.toml"), QUINT, tmp_path)
    kind, figs = run_figures(tmp_path)
    assert kind == "sweep-contrasts" and set(figs) == {"contrasts"}
    (bar,) = [t for t in figs["contrasts"].data if t.name.startswith("mean")]
    res = json.loads((tmp_path / "results.json").read_text())
    assert list(bar.x) == [res["contrasts"][0]["diff_per_seed"]["mean"]]
