"""A sweep's mechanism report (issue 22 A): every distinct cell analysed at the steering layer, each
cell's direction and amount minus the reference cell's and its steered minus random students, paired
by seed; checked against the per-seed values each cell's own analysis wrote."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from interp.runs import MANIFEST_FILE, RESULTS_FILE, file_hash, read_json, write_json
from interp.sweep import CELLS_DIR, SWEEP_FILE, parse_sweep, run_sweep
from interp.sweep_mechanism import (
    ANALYSIS_RESULTS,
    SweepMechanismConfig,
    run_sweep_mechanism,
    sweep_cells,
    sweep_mechanism_rows,
)

LAYER = 2


def _quiet(*a, **k):
    pass


@pytest.fixture(scope="module")
def mech(tmp_path_factory, tiny_sweep_raw):
    root = tmp_path_factory.mktemp("sweep-mech")
    sw = parse_sweep(tiny_sweep_raw("mech", {"noise.sigma": [0.0, 0.5], "noise.apply": ["shared", "student"]}, LAYER))
    run_sweep(sw, root, progress=False, log=_quiet)
    d = sw.directory(root)
    cfg = SweepMechanismConfig(str(d), layer=LAYER, n_texts=8, n_rows=4)
    return d, cfg, run_sweep_mechanism(cfg, cfg.default_dir(), progress=False, log=_quiet)


def _per_seed(d: Path, cell_id: str, arm: str) -> dict:
    """A cell's per-seed mechanism values, read from its own analysis (not from the report)."""
    return read_json(d / CELLS_DIR / cell_id / ANALYSIS_RESULTS)["mechanism"][arm]["per_seed"]


def test_cells_sharing_a_config_are_one_cell_labelled_by_what_they_share(mech):
    d, _, res = mech
    grid = read_json(d / SWEEP_FILE)
    assert len(grid["cells"]) == 4 and len({c["id"] for c in grid["cells"]}) == 3  # sigma 0 ignores apply
    assert list(res["cells"]) == [
        "noise.sigma=0.0",
        "noise.apply=shared, noise.sigma=0.5",
        "noise.apply=student, noise.sigma=0.5",
    ]
    assert res["reference"] == "noise.sigma=0.0"
    assert [v["noise.apply"] for v in res["cells"]["noise.sigma=0.0"]["values"]] == ["shared", "student"]
    assert "noise.sigma=0.0" not in res["vs_reference"]["cells"]


def test_differences_from_the_reference_and_from_random_are_paired_by_seed(mech):
    d, _, res = mech
    ref_id = res["cells"][res["reference"]]["id"]
    for label, c in res["cells"].items():
        for arm in ("steered", "random", "control"):
            cell, ref = _per_seed(d, c["id"], arm), _per_seed(d, ref_id, arm)
            assert sorted(cell) == ["0", "1"]
            if label != res["reference"]:
                vs = res["vs_reference"]["cells"][label][arm]
                diffs = [cell[s]["cosine"]["numbers/all"] - ref[s]["cosine"]["numbers/all"] for s in ("0", "1")]
                assert vs["cosine"]["numbers/all"]["mean"] == pytest.approx(sum(diffs) / 2)
                dn = [cell[s]["down_proj_delta_norm"] - ref[s]["down_proj_delta_norm"] for s in ("0", "1")]
                assert vs["down_proj_delta_norm"]["mean"] == pytest.approx(sum(dn) / 2)
        steered, random = _per_seed(d, c["id"], "steered"), _per_seed(d, c["id"], "random")
        null = [steered[s]["down_proj_energy"] - random[s]["down_proj_energy"] for s in ("0", "1")]
        assert res["steered_minus_random"][label]["down_proj_energy"]["mean"] == pytest.approx(sum(null) / 2)
    # noise changes what the students start from, so the noised cells' students are not the reference's
    shared = res["cells"]["noise.apply=shared, noise.sigma=0.5"]["mechanism"]["steered"]["per_seed"]
    assert shared != res["cells"][res["reference"]]["mechanism"]["steered"]["per_seed"]


def test_the_artifact_records_config_and_each_cell_analysis_hash_and_the_table_has_a_row_per_cell(mech):
    d, cfg, res = mech
    out = cfg.default_dir()
    assert read_json(out / RESULTS_FILE)["vs_reference"] == res["vs_reference"]
    man = read_json(out / MANIFEST_FILE)
    assert man["kind"] == "sweep-mechanism" and man["config"]["layer"] == LAYER and man["git_commit"]
    for label, c in res["cells"].items():
        assert man["inputs"]["analysis_results_hash"][label] == file_hash(d / CELLS_DIR / c["id"] / ANALYSIS_RESULTS)
    rows = sweep_mechanism_rows(res)
    assert [r[0] for r in rows] == list(res["cells"])
    assert rows[0][5] == "-" and rows[1][5] != "-"  # the reference has no difference from itself


def test_a_rerun_reads_every_cell_analysis_from_its_cache(mech):
    d, cfg, res = mech
    # results.json is rewritten with new provenance; its numbers must be the cached ones
    before = {
        c["id"]: read_json(d / CELLS_DIR / c["id"] / ANALYSIS_RESULTS)["mechanism"] for c in res["cells"].values()
    }
    lines: list[str] = []
    again = run_sweep_mechanism(
        cfg, d / "again", progress=False, log=lambda *a, **k: lines.append(" ".join(map(str, a)))
    )
    assert again["vs_reference"] == res["vs_reference"]
    assert before == {
        c["id"]: read_json(d / CELLS_DIR / c["id"] / ANALYSIS_RESULTS)["mechanism"] for c in res["cells"].values()
    }
    done = [line for line in lines if line.startswith("analysis of")]
    assert len(done) == 3 and all(line.startswith("analysis of 6 students (6 cached)") for line in done), lines


def test_bad_input_is_refused_in_one_line_naming_the_field(mech, tmp_path):
    d, cfg, _ = mech
    with pytest.raises(ValueError, match=r"^sweep: .*grid\.json does not exist"):
        run_sweep_mechanism(SweepMechanismConfig(str(tmp_path)), tmp_path / "o")
    with pytest.raises(ValueError, match=r"^layer: 1 is not cell"):
        run_sweep_mechanism(SweepMechanismConfig(str(d), layer=1, n_texts=8, n_rows=4), tmp_path / "o", progress=False)
    with pytest.raises(ValueError, match=r"^arms: empty"):
        SweepMechanismConfig(str(d), arms=())
    # a sweep without a reference cell
    grid = read_json(d / SWEEP_FILE)
    noref = tmp_path / "noref"
    noref.mkdir()
    write_json(noref / SWEEP_FILE, {**grid, "sweep": {**grid["sweep"], "reference": None}})
    assert sweep_cells(noref)[1] is None
    with pytest.raises(ValueError, match=r"^sweep: .*has no sweep.reference"):
        run_sweep_mechanism(SweepMechanismConfig(str(noref)), tmp_path / "o")
    assert not (tmp_path / "o").exists()  # nothing written for a refused input


def test_the_script_prints_the_table_and_refuses_a_missing_sweep_in_one_line(mech, tmp_path):
    d, _, _ = mech
    script = Path(__file__).parents[1] / "experiments" / "sweep_mechanism.py"
    ok = subprocess.run(
        [
            sys.executable,
            str(script),
            str(d),
            "--layer",
            str(LAYER),
            "--n-texts",
            "8",
            "--n-rows",
            "4",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert "noise.apply=student," in ok.stdout and "written:" in ok.stdout  # rich wraps a label at its comma
    bad = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "grid.json does not exist" in bad.stderr
