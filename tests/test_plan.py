"""The dry-run plans of `interp sweep` and `interp lr-select` as library data, and the lines they print."""

from __future__ import annotations

from pathlib import Path

from interp.lr_select import load_lr_select
from interp.plan import plan_lr_select, plan_sweep
from interp.sweep import load_sweep
from interp.tables import lr_select_plan_text

REGIME = Path(__file__).resolve().parent.parent / "experiments" / "configs" / "e23_regime"


def test_plan_sweep_lists_every_cell_and_job_and_writes_nothing(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('model = "tiny"\nseeds = [0, 1, 2]\n[sweep]\nname = "x"\ngrid = { "noise.sigma" = [0.0, 0.1] }\n')
    root = tmp_path / "root"
    plan = plan_sweep(load_sweep(p), root)
    assert plan["sweep"] == "x" and plan["n_jobs"] == 6  # 2 cells x 3 seeds
    assert [(c["label"], c["seeds"]) for c in plan["cells"]] == [
        ("noise.sigma=0.0", [0, 1, 2]),
        ("noise.sigma=0.1", [0, 1, 2]),
    ]
    assert Path(plan["directory"]).parent == root / "x" and not root.exists()  # <root>/<sweep name>/<id>
    assert plan["n_done"] == 0 and all(c["done"] == [] for c in plan["cells"])


def test_plan_sweep_shows_which_jobs_have_finished(tmp_path):
    """A sweep spanning sessions: the dry run counts the jobs whose run finished (results.json in
    the job's directory, what `run_sweep` skips), per cell and in all."""
    from interp.sweep import JOBS_DIR, _jobs
    from interp.tables import sweep_plan_table

    p = tmp_path / "s.toml"
    p.write_text('model = "tiny"\nseeds = [0, 1, 2]\n[sweep]\nname = "x"\ngrid = { "noise.sigma" = [0.0, 0.1] }\n')
    sw, root = load_sweep(p), tmp_path / "root"
    cell = sw.cells[1]
    job = sw.job_directory(root, cell, 2)
    assert job == sw.directory(root) / JOBS_DIR / f"{cell.id}-seed2"
    # the directory run_sweep gives that job, whose results.json it checks before running it
    assert (
        Path(next(a[3] for _, a in _jobs(sw, root, None) if a[1] == 2 and a[0] == cell.config.model_dump()))
        == job.resolve()
    )
    job.mkdir(parents=True)
    (job / "results.json").write_text("{}")
    (sw.job_directory(root, sw.cells[0], 0)).mkdir(parents=True)  # started, not finished
    plan = plan_sweep(sw, root)
    assert plan["n_done"] == 1 and [c["done"] for c in plan["cells"]] == [[], [2]]
    assert [c["started"] for c in plan["cells"]] == [[0], []]
    table = sweep_plan_table(plan, 120)
    assert "6 jobs, 1 done, 1 started" in table and "1/3" in table and "0/3" in table
    rows = {line.split("│")[1].strip(): line.split("│")[2:6] for line in table.splitlines() if "│" in line}
    assert [x.strip() for x in rows[sw.cells[0].id]] == ["sigma=0.0", "0-2", "0/3", "0"]
    assert [x.strip() for x in rows[cell.id]] == ["sigma=0.1", "0-2", "1/3", "-"]


def test_sweep_plan_table_fits_joint_fields_in_80_columns():
    """Fields set together are spread out by their last part, so an 80-column terminal shows
    which cell is which (the joint key alone filled the column); a shared last part keeps the
    dotted name."""
    from interp.tables import sweep_plan_table

    sw = load_sweep(REGIME / "rows_epochs.toml")
    labels = [c.short_label() for c in sw.cells]
    assert labels[0] == "n_prompts=80 epochs=1 keep=update" and labels[4] == "n_prompts=80 epochs=16 keep=none"
    table = sweep_plan_table(plan_sweep(sw, "/nonexistent-root"), 80)
    assert all(label in table for label in labels) and "3100-3105" in table
    cell = load_sweep(REGIME / "rows_epochs.toml").cells[0]
    cell.values = {"data.dtype,train.dtype": ["bf16", "fp32"]}
    assert cell.short_label() == "data.dtype=bf16 train.dtype=fp32"


def test_seed_span_shortens_only_consecutive_seeds():
    from interp.tables_runs import seed_span

    assert seed_span([3100, 3101, 3102]) == "3100-3102"
    assert seed_span([0, 2, 3]) == "0, 2, 3" and seed_span([4, 5]) == "4, 5" and seed_span([]) == "-"


def test_plan_lr_select_lists_the_modes_and_trials(tmp_path):
    cfg = load_lr_select(REGIME / "lr_select.toml")
    plan = plan_lr_select(cfg, tmp_path / "root")
    assert plan["name"] == cfg.name and plan["n_trials"] == 60
    assert plan["n_trials"] == sum(len(m["lrs"]) for m in plan["modes"].values()) * len(cfg.e1.seeds)  # 20 x 3
    assert plan["modes"]["lora-r64"] == {"method": "lora", "lrs": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]}
    assert not (tmp_path / "root").exists()
    lines = lr_select_plan_text(plan).splitlines()
    assert len(lines) == len(plan["modes"]) == 4
    assert lines[-1] == "  lora-r64     lora  lr 0.0001, 0.0003, 0.001, 0.003, 0.01"
