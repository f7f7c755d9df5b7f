"""`interp sweep`: grid expansion, noise conditions, resume after interruption, and the same table
whichever executor ran the jobs (this process, a process pool, submitit's debug and local executors),
and the cluster options' mapping to #SBATCH lines."""

from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path

import pytest
import torch

import interp.pipeline
from interp.config import load_config, parse_config
from interp.models import load_model
from interp.runs import MANIFEST_FILE, RESULTS_FILE, read_json, stage_dirs
from interp.sweep import (
    CELLS_DIR,
    JOBS_DIR,
    SUBMITIT_DIR,
    load_sweep,
    make_executor,
    parse_sweep,
    run_sweep,
    slurm_options,
)

RAW = {
    "experiment": "t",
    "model": "tiny",
    "seeds": [0, 1],
    "teacher": {"kinds": ["control", "steered"], "layer": 2, "multiplier": 1.0},
    "data": {"n_prompts": 8, "batch_size": 8, "max_new_tokens": 12},
    "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3},
    "eval": {"split": "tuning", "n_boot": 200},
    "sweep": {
        "name": "sw",
        "grid": {"noise.sigma": [0.0, 0.5], "noise.apply": ["shared", "teacher", "student"]},
        "reference": {"noise.sigma": 0.0},
        "n_boot": 200,
    },
}


def _raw(**sweep) -> dict:
    raw = copy.deepcopy(RAW)
    raw["sweep"].update(sweep)
    return raw


def _quiet(*a, **k):
    pass


def _table(res: dict) -> list[tuple]:
    return [(r["label"], r["cell"], r["per_seed"], r["transfer"], r["vs_reference"]) for r in res["rows"]]


SMALL = {"grid": {"noise.sigma": [0.0, 0.5]}}  # 2 cells x 2 seeds: the executor and resume tests


@contextlib.contextmanager
def _one_thread():
    # Module fixtures run before the autouse one-thread fixture. The tables they are compared
    # with come from one-thread jobs, and on some CPUs (AVX-512 here) a 2-thread reduction
    # differs from a 1-thread one in the last bits, so both sides get one thread.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep-a")
    with _one_thread():
        return root, run_sweep(parse_sweep(_raw()), root, progress=False, log=_quiet)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep-small")
    with _one_thread():
        return run_sweep(parse_sweep(_raw(**SMALL)), root, progress=False, log=_quiet)


def test_grid_expands_and_sigma_zero_cells_share_one_run():
    sw = parse_sweep(_raw())
    assert len(sw.cells) == 6
    ids = [c.id for c in sw.cells]
    assert len(set(ids[:3])) == 1  # sigma 0: `apply` changes nothing
    assert len(set(ids)) == 4
    assert len(sw.jobs()) == 4 * 2
    assert [s for _, s in sw.jobs()] == [0] * 4 + [1] * 4  # seeds outermost
    assert sw.reference_cell() is sw.cells[0]


def test_bad_sweep_input_gives_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match=r"noise\.sigme"):
        parse_sweep(_raw(grid={"noise.sigme": [0.1]}))
    with pytest.raises(ValueError, match=r"noise\.sigma.*greater than or equal to 0"):
        parse_sweep(_raw(grid={"noise.sigma": [-1.0]}))
    with pytest.raises(ValueError, match="sweep.reference"):
        parse_sweep(_raw(reference={"noise.sigma": 0.7}))
    with pytest.raises(ValueError, match="sweep.grid"):
        parse_sweep(_raw(grid={}))
    with pytest.raises(ValueError, match="distinct values"):
        parse_sweep(_raw(grid={"noise.sigma": [0.1, 0.1]}))
    with pytest.raises(ValueError, match="noise.pattern.*regular expression"):
        parse_config({"model": "tiny", "noise": {"pattern": "(", "sigma": 0.1}})
    p = tmp_path / "s.toml"
    p.write_text('model = "tiny"\n[sweep]\ngrid = { "noise.sigma" = [0.0, 0.1] }\n')
    with pytest.raises(ValueError, match="interp sweep"):
        load_config(p)  # `interp run` on a sweep file points to `interp sweep`
    assert len(load_sweep(p).cells) == 2
    p.write_text('model = "tiny"\n')
    with pytest.raises(ValueError, match=r"no \[sweep\] table"):
        load_sweep(p)


def test_noise_conditions_noise_the_right_model(in_process):
    """shared: teacher and student both noised (one base); teacher: data from the noised base,
    students from the clean one; student: the clean teacher's datasets (cache hits of sigma 0),
    students from the noised base."""
    root, res = in_process
    clean = load_model("tiny", device="cpu").fingerprint()
    rows = {r["noise.apply"]: r for r in res["rows"] if r["noise.sigma"] == 0.5}
    ref = res["rows"][0]

    def stages(row):
        return {name: {"dir": str(d)} for name, d in stage_dirs(row["run_dir"]).items()}

    def student_base(row, kind="steered"):
        return read_json(Path(stages(row)[f"student/{kind}/seed0"]["dir"]) / "config.json")["base"]

    def data_dir(row, kind="steered"):
        return stages(row)[f"data/{kind}/seed0"]["dir"]

    assert student_base(ref) == clean
    assert student_base(rows["teacher"]) == clean
    assert student_base(rows["shared"]) != clean
    assert student_base(rows["student"]) == student_base(rows["shared"])  # the same draw for seed 0
    assert data_dir(rows["student"]) == data_dir(ref)
    assert data_dir(rows["teacher"]) == data_dir(rows["shared"]) != data_dir(ref)
    # each seed draws its own noise (per_seed): seed 1's noised base differs from seed 0's
    s1 = read_json(Path(stages(rows["shared"])["student/steered/seed1"]["dir"]) / "config.json")["base"]
    assert s1 not in (clean, student_base(rows["shared"]))
    # the table: one row per grid cell; sigma 0's three rows are the reference itself
    assert [r["noise.apply"] for r in res["rows"]] == ["shared", "teacher", "student"] * 2
    for r in res["rows"][:3]:
        assert r["vs_reference"]["ratio"] == pytest.approx(1.0) and r["vs_reference"]["diff"] == 0
    for r in res["rows"]:
        x = r["per_seed"]
        assert r["transfer"]["mean"] == pytest.approx(sum(x) / len(x))
        lo, hi = r["vs_reference"]["diff_ci95"]
        assert lo <= r["vs_reference"]["diff"] <= hi
        paired = r["vs_reference"]["diff_paired_by_seed"]  # same seeds in every cell: paired by seed
        assert paired["n"] == 2
        assert paired["mean"] == pytest.approx(sum(x) / 2 - sum(ref["per_seed"]) / 2)


def test_same_table_from_a_process_pool_and_from_submitit(small, tmp_path, capfd):
    sw = parse_sweep(_raw(**SMALL, workers=2, threads=1))
    b = run_sweep(sw, tmp_path / "pool", progress=False, log=_quiet)
    assert _table(b) == _table(small)
    # without a progress bar the workers' stage lines reach the log (stderr: stdout is --json's),
    # each named by its job
    captured = capfd.readouterr()
    out = captured.err.splitlines()
    assert "done in" not in captured.out
    for c, s in sw.jobs():
        job = f"{c.id}-seed{s}: "
        assert any(ln.startswith(job) and f"student/steered/seed{s}" in ln and " in " in ln for ln in out), job
    pytest.importorskip("submitit")
    c = run_sweep(
        parse_sweep(_raw(**SMALL, executor="submitit", slurm={"cluster": "debug"})),
        tmp_path / "submitit",
        progress=False,
        log=_quiet,
    )
    assert _table(c) == _table(small)


def test_an_interrupted_sweep_resumes_its_student_from_a_timed_checkpoint(tmp_path, kill_training):
    raw = _raw(**SMALL)
    raw["train"]["epochs"] = 2  # two steps a student: room to be killed between them
    clean = run_sweep(parse_sweep(raw), tmp_path / "clean", progress=False, log=_quiet)
    kill_training(1)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(parse_sweep(raw), tmp_path / "crash", progress=False, log=_quiet, checkpoint_minutes=0)
    cks = [read_json(p)["step"] for p in (tmp_path / "crash" / "cache").glob("student-*/checkpoint/trainer.json")]
    assert cks == [1]  # the job's option reached the student: it checkpointed after step 1
    lines = []
    resumed = run_sweep(parse_sweep(raw), tmp_path / "crash", progress=False, log=lines.append)
    assert "0 done before, 4 to run" in lines[0]
    assert _table(resumed) == _table(clean)
    manifests = [read_json(d / MANIFEST_FILE) for d in (tmp_path / "crash" / "cache").glob("student-*")]
    assert sum(m.get("resumed_at_step") == 1 for m in manifests) == 1


@pytest.mark.slow  # starts 5 fresh interpreters (torch imports): `make test-fast` skips it, CI runs it
def test_submitit_local_executor_real_subprocesses_same_table(small, tmp_path):
    """submitit's local executor: each job in its own interpreter (pickled by reference, run from
    this cwd, logging into the sweep's folder). A job that fails is one line naming its cell and
    log; the rerun runs only it, and the table is the in-process one, value for value, built from
    the stages the subprocesses computed."""
    pytest.importorskip("submitit")
    sw = parse_sweep(_raw(**SMALL, executor="submitit", threads=1, slurm={"cluster": "local"}))
    noised = next(c for c in sw.cells if c.values["noise.sigma"] == 0.5)
    blocker = sw.directory(tmp_path) / JOBS_DIR / f"{noised.id}-seed1"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")  # the job cannot write its run directory: it fails, in its subprocess
    lines = []
    with pytest.raises(RuntimeError) as err:
        run_sweep(sw, tmp_path, progress=False, log=lines.append)
    msg = str(err.value)
    assert "\n" not in msg and "1 of 4 jobs failed" in msg and "rerun" in msg
    assert f"cell sigma=0.5 [{noised.id}] seed 1 (job " in msg and "Error:" in msg, msg
    folder = sw.directory(tmp_path).resolve() / SUBMITIT_DIR
    assert f"submitit on local, logs in {folder}" in lines[0]
    log = Path(msg.split("(log: ")[1].split(")")[0])
    assert log.parent == folder and log.exists()
    outs = [p.read_text() for p in folder.glob("*_log.err")]  # stage lines go to stderr
    starts = [line for o in outs for line in o.splitlines() if line.startswith("job ")]
    assert len(starts) == 4 and all(f"cwd {os.getcwd()}" in line for line in starts)  # 4 interpreters, this cwd
    assert all(str(tmp_path.resolve()) in line for line in starts)  # absolute paths
    assert sum(" done in " in o or " cached in " in o for o in outs) == 3  # the 3 that ran logged their stages
    blocker.unlink()
    lines = []
    res = run_sweep(sw, tmp_path, progress=False, log=lines.append)
    assert "3 done before, 1 to run" in lines[0]
    assert _table(res) == _table(small)
    for c in {c.id for c in sw.cells}:  # the table read what the jobs computed: no stage ran in this process
        stages = read_json(sw.directory(tmp_path) / CELLS_DIR / c / MANIFEST_FILE)["stages"]
        assert stages and all(s["cache_hit"] for s in stages), c


def test_cluster_options_map_to_sbatch_lines(tmp_path, monkeypatch):
    """`interp sweep --partition --time --cpus --mem-gb --gpus` -> submitit's SLURM parameters ->
    the #SBATCH lines, without a cluster (a stand-in `srun` on PATH makes submitit's SLURM
    executor constructible; nothing is submitted)."""
    pytest.importorskip("submitit")
    from typer.testing import CliRunner

    import interp.sweep
    from interp.cli import app

    seen = {}

    def capture(*a, **k):
        seen.update(k)
        raise ValueError("captured")

    monkeypatch.setattr(interp.sweep, "run_sweep", capture)
    p = tmp_path / "s.toml"
    p.write_text(
        'model = "tiny"\n[sweep]\nname = "x"\ngrid = { "noise.sigma" = [0.0, 0.1] }\n'
        'slurm = { slurm_account = "lab", mem_gb = 8 }\n'
    )
    r = CliRunner().invoke(
        app,
        [
            "sweep",
            str(p),
            "--partition",
            "gpu",
            "--time",
            "120",
            "--cpus",
            "8",
            "--mem-gb",
            "32",
            "--gpus",
            "1",
            "--root",
            str(tmp_path),
        ],
    )
    assert "captured" in r.output, r.output
    assert seen["slurm"] == {
        "slurm_partition": "gpu",
        "timeout_min": 120,
        "cpus_per_task": 8,
        "mem_gb": 32,
        "gpus_per_node": 1,
    }
    assert slurm_options() == {}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    sw = load_sweep(p)
    ex = make_executor(tmp_path / "submitit", {**sw.section.slurm, **seen["slurm"], "cluster": "slurm"}, "interp-x")
    sbatch = ex._executor._make_submission_file_text("python -m job", "uid")
    for line in (
        "--partition=gpu",
        "--time=120",
        "--cpus-per-task=8",
        "--mem=32GB",
        "--gpus-per-node=1",
        "--account=lab",
        "--job-name=interp-x",
    ):
        assert f"#SBATCH {line}\n" in sbatch, line
    # no time given: a default that a real job fits in (submitit's own is 5 minutes)
    ex = make_executor(tmp_path / "submitit", {"cluster": "slurm"})
    assert "#SBATCH --time=240\n" in ex._executor._make_submission_file_text("x", "uid")
    with pytest.raises(ValueError, match=r"sweep\.slurm: .*slurm_partitio"):
        make_executor(tmp_path / "submitit", {"cluster": "slurm", "slurm_partitio": "gpu"})
    with pytest.raises(ValueError, match="apply to --executor submitit"):
        interp.sweep.run_jobs(sw, tmp_path, executor="local", slurm={"slurm_partition": "gpu"}, log=_quiet)


def test_interrupted_sweep_resumes_to_the_same_table(small, tmp_path, monkeypatch):
    real = interp.pipeline.run_e1
    calls = {"n": 0}

    def dies_on_third_job(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if the machine went away mid-sweep
        return real(*a, **k)

    monkeypatch.setattr(interp.pipeline, "run_e1", dies_on_third_job)
    sw = parse_sweep(_raw(**SMALL))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sw, tmp_path, progress=False, log=_quiet)
    jobs = sorted(p.name for p in (sw.directory(tmp_path) / JOBS_DIR).iterdir() if (p / RESULTS_FILE).exists())
    assert len(jobs) == 2  # what finished is kept
    monkeypatch.setattr(interp.pipeline, "run_e1", real)
    lines = []
    res = run_sweep(sw, tmp_path, progress=False, log=lines.append)
    assert "2 done before, 2 to run" in lines[0]
    # without a progress bar, one line per finished job: a sweep logging to a file shows where it is
    jobs_logged = [ln for ln in lines if ln.startswith("job ")]
    assert [ln.split(" done in ")[0] for ln in jobs_logged] == ["job 1/2", "job 2/2"]
    assert all("seed" in ln and " s into this run)" in ln for ln in jobs_logged)
    assert _table(res) == _table(small)


def test_failed_job_is_reported_after_the_others_ran(tmp_path, monkeypatch):
    real = interp.pipeline.run_e1

    def fails_when_noised(cfg, *a, **k):
        if cfg.noise.sigma > 0:
            raise ValueError("boom")
        return real(cfg, *a, **k)

    monkeypatch.setattr(interp.pipeline, "run_e1", fails_when_noised)
    sw = parse_sweep(_raw(**SMALL))
    lines = []
    with pytest.raises(RuntimeError, match=r"2 of 4 jobs failed.*boom.*rerun"):
        run_sweep(sw, tmp_path, progress=False, log=lines.append)
    failed = [ln for ln in lines if ln.startswith("job ") and "FAILED: " in ln]
    assert len(failed) == 2 and all("boom" in ln and "sigma=0.5" in ln for ln in failed)
    done = [p for p in (sw.directory(tmp_path) / JOBS_DIR).iterdir() if (p / RESULTS_FILE).exists()]
    assert len(done) == 2


def test_cross_model_students_train_from_the_other_base(tmp_path):
    cfg = parse_config({**{k: v for k, v in RAW.items() if k != "sweep"}, "seeds": [0], "student_model": "tiny-gemma"})
    res = interp.pipeline.run_e1(cfg, tmp_path, progress=False, log=_quiet)
    gemma = load_model("tiny-gemma", device="cpu").fingerprint()
    stages = {name: {"dir": str(d)} for name, d in stage_dirs(res["run_dir"]).items()}
    assert read_json(Path(stages["student/steered/seed0"]["dir"]) / "config.json")["base"] == gemma
    # the datasets are the tiny teacher's, the same ones a same-model run uses
    same = interp.pipeline.run_e1(
        parse_config({**cfg.model_dump(), "student_model": None}), tmp_path, progress=False, log=_quiet
    )
    same_stages = {name: {"dir": str(d)} for name, d in stage_dirs(same["run_dir"]).items()}
    assert stages["data/steered/seed0"]["dir"] == same_stages["data/steered/seed0"]["dir"]
    assert "steered-control" in res["transfer"]
    with pytest.raises(ValueError, match="kd.*student_model"):
        parse_config({**cfg.model_dump(), "train": {**cfg.model_dump()["train"], "objectives": ["sft", "kd"]}})


def test_run_ids_without_noise_or_student_model_are_unchanged():
    """Adding [noise] and student_model must not move existing runs to new directories."""
    cfg = parse_config({"model": "tiny"})
    assert "noise" not in cfg.key() and "student_model" not in cfg.key()
    assert "noise" in parse_config({"model": "tiny", "noise": {"sigma": 0.1}}).key()


def test_sweep_cli_dry_run_lists_cells(tmp_path):
    from typer.testing import CliRunner

    from interp.cli import app

    p = tmp_path / "s.toml"
    p.write_text('model = "tiny"\nseeds = [0, 1]\n[sweep]\nname = "x"\ngrid = { "noise.sigma" = [0.0, 0.1] }\n')
    r = CliRunner().invoke(app, ["sweep", str(p), "--dry-run", "--root", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "4 jobs" in r.output and "sigma=0.1" in r.output
    r = CliRunner().invoke(app, ["run", str(p)])
    assert r.exit_code != 0 and "interp sweep" in r.output


def test_noise_ablation_configs_parse():
    configs = Path(__file__).resolve().parent.parent / "experiments" / "configs"
    for name in (
        "noise_ablation.toml",
        "noise_ablation_gemma.toml",
        "optimizer_ablation.toml",
        "cross_model.toml",
        "cross_model_gemma.toml",
        "noise_ablation_paper.toml",
        "optimizer_sgd_lr.toml",
    ):
        sw = load_sweep(configs / name)
        assert sw.jobs() and sw.reference_cell() is not None, name


def test_sweep_directory_plots_from_its_results_file(in_process):
    """`interp plot` on a sweep directory: the grid's first field on the x axis (JSON sorts keys,
    so the order is kept in `grid_keys`), one series per `apply`, t-interval bars."""
    from interp.plots import run_figures

    root, res = in_process
    kind, figs = run_figures(Path(res["rows"][0]["run_dir"]).parent.parent)
    fig = figs["sweep_transfer"]
    assert kind == "sweep" and fig.layout.xaxis.title.text == "noise.sigma"
    names = [t.name for t in fig.data if t.showlegend is not False]
    assert names == ["noise.apply=shared", "noise.apply=teacher", "noise.apply=student"]
    shared = fig.data[0]
    rows = [r for r in res["rows"] if r["noise.apply"] == "shared"]
    assert list(shared.y) == [r["transfer"]["mean"] for r in rows]
    assert list(shared.error_y.array) == pytest.approx(
        [r["transfer_per_seed"]["ci95"][1] - r["transfer"]["mean"] for r in rows]
    )
