"""E7: batched MLPs against plain ones, the IDX reader, determinism, the headline, configs."""

from __future__ import annotations

import gzip
import json
import struct
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from interp.mnist import (
    CHANCE,
    N_DIGITS,
    BatchedMLP,
    MnistConfig,
    cat_models,
    digit_batches,
    digit_loss,
    distill_students,
    generators,
    load_digits_data,
    load_mnist_idx,
    noise_batches,
    read_idx,
    run_experiment,
    run_mnist,
    sweep,
    t_interval,
    train_models,
)

SIZES = [64, 16, 16, N_DIGITS + 3]


def tiny_cfg(**overrides) -> MnistConfig:
    kw = dict(n_seeds=2, hidden=16, teacher_steps=5, student_steps=5, batch_size=16)
    return MnistConfig(**{**kw, **overrides})


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach() for p in module.parameters()]


def _assert_same_modules(batched: BatchedMLP, plain: list[torch.nn.Module]) -> None:
    for k, ref in enumerate(plain):
        for got, want in zip(_params(batched.to_module(k)), _params(ref)):
            torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


# ----------------------------------------------------------------------------- batched == plain


def test_batched_forward_equals_each_plain_module():
    model = BatchedMLP.init(SIZES, generators([0, 1, 2], "init"))
    x = torch.rand(3, 7, 64) * 2 - 1
    out = model(x)
    for k in range(3):
        torch.testing.assert_close(out[k], model.to_module(k)(x[k]))
    torch.testing.assert_close(model(x[0]), torch.stack([model.to_module(k)(x[0]) for k in range(3)]))


def test_batched_teacher_training_equals_plain_adam_per_seed():
    seeds, lr = [0, 1, 2], 3e-3
    data = load_digits_data()
    init = BatchedMLP.init(SIZES, generators(seeds, "init"))
    batches = list(digit_batches(data, seeds, batch_size=16, steps=6))
    model = init.copy()
    train_models(model, batches, digit_loss, lr)

    plain = []
    for k in range(len(seeds)):
        ref = init.to_module(k)
        opt = torch.optim.Adam(ref.parameters(), lr=lr)  # the stock (unfused) Adam
        for x, y in batches:
            loss = F.cross_entropy(ref(x[k])[:, :N_DIGITS], y[k])
            opt.zero_grad()
            loss.backward()
            opt.step()
        plain.append(ref)
    assert not torch.allclose(model.flat(), init.flat())  # it did train
    _assert_same_modules(model, plain)


def test_batched_distillation_equals_plain_kl_per_student():
    cfg = tiny_cfg(student_steps=6, lr=3e-3)
    sizes = [64, 16, 16, N_DIGITS + cfg.n_aux]
    teacher = BatchedMLP.init(sizes, generators(cfg.seeds, "teacher-for-test"))
    init = BatchedMLP.init(sizes, generators(cfg.seeds, "init"))
    cross = BatchedMLP.init(sizes, generators(cfg.seeds, "cross-init"))
    students = cat_models([init, cross])  # student j learns from teacher j % n_seeds
    aux_only = torch.tensor([True, False, False, True])
    trained, _ = distill_students(teacher, students, aux_only, 64, cfg)

    noise = list(noise_batches(cfg.seeds, 64, cfg.batch_size, cfg.student_steps))
    plain = []
    for j in range(students.n_models):
        k, ref, tref = j % cfg.n_seeds, students.to_module(j), teacher.to_module(j % cfg.n_seeds)
        opt = torch.optim.Adam(ref.parameters(), lr=cfg.lr)
        for x in noise:
            with torch.no_grad():
                t = tref(x[k])
            s = ref(x[k])
            if aux_only[j]:
                s, t = s[:, N_DIGITS:], t[:, N_DIGITS:]
            loss = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean")
            opt.zero_grad()
            loss.backward()
            opt.step()
        plain.append(ref)
    _assert_same_modules(trained, plain)


# ----------------------------------------------------------------------------- IDX files


def _write_idx(path, array: np.ndarray, code: int) -> None:
    """An IDX encoder written from the format spec, independent of the reader under test."""
    big = array.astype(array.dtype.newbyteorder(">"))
    blob = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + big.tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(blob)


def _write_mnist(folder, n_train=12, n_test=5, gz=False):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 6, 6), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 6, 6), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, arr in arrays.items():
        _write_idx(folder / (name + (".gz" if gz else "")), arr, 0x08)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_idx_round_trips_small_written_files(tmp_path, gz):
    arrays = _write_mnist(tmp_path, gz=gz)
    data = load_mnist_idx(tmp_path)
    images = arrays["train-images-idx3-ubyte"].reshape(12, 36).astype(np.float32)
    np.testing.assert_allclose(data.x_train.numpy(), images / 255 * 2 - 1, atol=1e-6)
    np.testing.assert_array_equal(data.y_test.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert data.d_in == 36 and data.x_test.min() >= -1 and data.x_test.max() <= 1


@pytest.mark.parametrize("dtype,code", [(">i2", 0x0B), (">i4", 0x0C), (">f4", 0x0D), (">f8", 0x0E), (">i1", 0x09)])
def test_read_idx_reads_every_dtype(tmp_path, dtype, code):
    arr = (np.arange(24).reshape(2, 3, 4) - 12).astype(dtype)
    _write_idx(tmp_path / "x.idx", arr, code)
    got = read_idx(tmp_path / "x.idx")
    np.testing.assert_array_equal(got, arr)
    assert got.dtype.byteorder in ("=", "|")  # native, so torch can take it


def test_read_idx_rejects_bad_magic_and_truncated_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    _write_idx(tmp_path / "short", np.zeros((4, 3), np.uint8), 0x08)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-2])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist_idx(tmp_path)


def test_experiment_runs_on_idx_data(tmp_path):
    _write_mnist(tmp_path)
    result = run_experiment(tiny_cfg(idx_dir=str(tmp_path)))
    assert result.data["source"].startswith("mnist-idx") and result.data["d_in"] == 36
    assert all(len(v) == 2 for v in result.accuracy_by_condition.values())


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_results():
    a, b = run_experiment(tiny_cfg()), run_experiment(tiny_cfg())
    assert a.accuracy_by_condition == b.accuracy_by_condition
    assert a.final_loss_by_condition == b.final_loss_by_condition
    c = run_experiment(tiny_cfg(first_seed=7))
    assert c.final_loss_by_condition != a.final_loss_by_condition


def test_a_seed_does_not_depend_on_how_many_seeds_run_beside_it():
    two, three = run_experiment(tiny_cfg(n_seeds=2)), run_experiment(tiny_cfg(n_seeds=3))
    for cond, losses in two.final_loss_by_condition.items():
        np.testing.assert_allclose(losses, three.final_loss_by_condition[cond][:2], rtol=1e-4)


# ----------------------------------------------------------------------------- the headline


def test_same_init_aux_student_beats_chance_and_cross_init_does_not():
    # Small but honest: 16 seeds, width 64. The margins are the 95% t-intervals themselves.
    cfg = MnistConfig(n_seeds=16, hidden=64, batch_size=32, teacher_steps=300, student_steps=800)
    result = run_experiment(cfg)
    table = {row["condition"]: row for row in result.table()}
    assert table["teacher"]["ci95"][0] > 0.8
    assert table["student_aux"]["ci95"][0] > CHANCE
    assert table["cross_student_aux"]["ci95"][0] < CHANCE  # not distinguishable from chance, or below
    assert result.paired_difference()["ci95"][0] > 0


# ----------------------------------------------------------------------------- the steps axis and the init


def test_with_cloud_et_al_s_init_same_init_students_learn_digits_and_cross_init_students_do_not():
    # the init that lifts E7 (5 seeds at width 256: 0.67 vs 0.08 at 1600 steps), here tiny: width 64
    cfg = MnistConfig(n_seeds=8, hidden=64, batch_size=32, teacher_steps=300, student_steps=800, init="normal")
    result = run_experiment(cfg)
    table = {row["condition"]: row for row in result.table()}
    assert table["teacher"]["ci95"][0] > 0.8
    assert table["student_aux"]["ci95"][0] > 2 * CHANCE
    assert table["cross_student_aux"]["ci95"][0] < CHANCE
    assert result.paired_difference()["ci95"][0] > 0.1


def test_each_point_of_the_steps_axis_is_the_run_of_that_length():
    # one trajectory evaluated as it passes each count == separate runs stopped there
    curve = run_experiment(tiny_cfg(student_steps=3, sweep_steps=(2, 6)))
    assert sorted(curve.accuracy_by_steps) == [2, 6]
    for k in (2, 6):
        alone = run_experiment(tiny_cfg(student_steps=k))
        assert curve.accuracy_by_steps[k] == alone.accuracy_by_condition
    alone = run_experiment(tiny_cfg(student_steps=3))
    assert curve.accuracy_by_condition == alone.accuracy_by_condition  # the main table stays at student_steps
    assert curve.final_loss_by_condition == alone.final_loss_by_condition


def test_student_steps_sets_how_many_updates_the_students_get():
    cfg = tiny_cfg(student_steps=7)
    sizes = [64, 16, 16, N_DIGITS + cfg.n_aux]
    teacher = BatchedMLP.init(sizes, generators(cfg.seeds, "teacher-for-test"))
    students = BatchedMLP.init(sizes, generators(cfg.seeds, "init"))
    seen = []
    distill_students(
        teacher, students, torch.tensor([True, True]), 64, cfg, lambda step, model, losses: seen.append(step)
    )
    assert seen == list(range(1, 8))


def test_normal_init_is_cloud_et_al_s_and_uniform_stays_nn_linear_s():
    gens = generators(list(range(4)), "init")
    normal = BatchedMLP.init([64, 256, 256, 13], gens, "normal")
    for w, b in zip(normal.weights, normal.biases):
        assert w.std().item() == pytest.approx(1 / np.sqrt(w.shape[1]), rel=0.02) and not b.any()
    uniform = BatchedMLP.init([64, 256, 256, 13], generators(list(range(4)), "init"))
    for w in uniform.weights:  # U(+-1/sqrt(fan_in)): sd 1/sqrt(3 fan_in), bounded
        assert w.std().item() == pytest.approx(1 / np.sqrt(3 * w.shape[1]), rel=0.02)
        assert w.abs().max().item() <= 1 / np.sqrt(w.shape[1])
    with pytest.raises(ValueError, match="kind 'xavier'"):
        BatchedMLP.init([4, 2], gens, "xavier")


def test_run_ids_of_configs_from_before_the_new_fields_do_not_change():
    from interp.runs import content_hash

    # literal hashes of asdict(cfg) taken at 443ed0a, before sweep_steps and init existed
    old_default = MnistConfig(
        n_seeds=25, n_aux=3, hidden=256, teacher_steps=600, student_steps=600, batch_size=128, lr=3e-4, init="uniform"
    )
    assert content_hash(old_default.key()) == "50762cf8e0f94e5a"
    assert (
        content_hash(
            MnistConfig(
                n_seeds=3,
                hidden=64,
                sweep_aux=(1, 10),
                student_steps=600,
                teacher_steps=600,
                batch_size=128,
                init="uniform",
            ).key()
        )
        == "f13dcd3daeffa5f8"
    )
    changed = [MnistConfig(**{**old_default.key(), **kw}).key() for kw in ({"init": "normal"}, {"sweep_steps": (5,)})]
    assert all(content_hash(k) != "50762cf8e0f94e5a" for k in changed)
    # a config.json written before the fields existed reloads as the run it was, whatever the defaults
    before = {k: v for k, v in old_default.key().items()}
    assert MnistConfig.from_dict(before) == old_default
    assert MnistConfig.from_dict(json.loads(json.dumps(asdict(tiny_cfg(init="normal"))))) == tiny_cfg(init="normal")


# ----------------------------------------------------------------------------- statistics, runs, configs


def test_t_interval_matches_the_textbook_formula():
    got = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / np.sqrt(3)  # t_{0.975, 2} * sd / sqrt(n)
    assert got["mean"] == 2.0 and got["n"] == 3
    assert got["ci95"][0] == pytest.approx(2 - half) and got["ci95"][1] == pytest.approx(2 + half)


def test_run_mnist_writes_a_run_directory(tmp_path):
    from interp.runs import content_hash

    out = tmp_path / "run"
    run_mnist(tiny_cfg(sweep_aux=(1,)), out)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "manifest.json", "results.json"]
    results, manifest = json.loads((out / "results.json").read_text()), json.loads((out / "manifest.json").read_text())
    assert {r["condition"] for r in results["table"]} >= {"teacher", "student_aux", "cross_student_aux"}
    assert [r["value"] for r in results["sweeps"]["n_aux"]] == [1] * 7 and results["sweeps"]["hidden"] == []
    assert results["sweeps"]["student_steps"] == []
    assert manifest["seeds"] == [0, 1] and manifest["wall_time_s"] > 0 and "git_commit" in manifest
    assert manifest["config_hash"] == content_hash(tiny_cfg(sweep_aux=(1,)).key())


def test_run_mnist_writes_the_steps_axis(tmp_path):
    results = run_mnist(tiny_cfg(sweep_steps=(2, 4)), tmp_path / "run")["results"]
    rows = results["sweeps"]["student_steps"]
    assert [r["value"] for r in rows] == [2] * 7 + [4] * 7
    assert sorted(results["accuracy_by_steps"]) == ["2", "4"]
    pair = [r for r in rows if r["condition"] == "student_aux - cross_student_aux"]
    assert len(pair) == 2 and all(r["n"] == 2 for r in pair)


def test_sweep_rejects_unknown_fields():
    with pytest.raises(ValueError, match="not a MnistConfig field"):
        sweep(tiny_cfg(), "width", [1])


@pytest.mark.parametrize(
    "field,value",
    [
        ("n_seeds", 1),
        ("n_aux", 0),
        ("hidden", -3),
        ("teacher_steps", 0),
        ("batch_size", 2.5),
        ("lr", 0.0),
        ("test_fraction", 1.0),
        ("sweep_hidden", (64, 0)),
        ("idx_dir", "/no/such/folder"),
        ("sweep_steps", (0,)),
        ("init", "xavier"),
    ],
)
def test_bad_config_values_raise_a_clear_error(field, value):
    with pytest.raises(ValueError, match=rf"MnistConfig\.{field}=.*: "):
        MnistConfig(**{field: value})


def test_cli_mnist_prints_a_table_and_writes_the_run(tmp_path):
    from typer.testing import CliRunner

    from interp.cli import app

    out = tmp_path / "run"
    args = ["mnist", "--seeds", "2", "--hidden", "8", "--teacher-steps", "2", "--student-steps", "2", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "student_aux" in result.output and (out / "manifest.json").exists()
    assert CliRunner().invoke(app, ["mnist", "--seeds", "1"]).exit_code == 2  # a clear error, not a traceback


def test_cli_mnist_passes_init_and_steps_and_names_old_configs_runs_as_before(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from interp.cli import app
    from interp.runs import content_hash

    monkeypatch.chdir(tmp_path)  # the default run directory, artifacts/mnist/<time>-<hash>
    base = ["mnist", "--seeds", "2", "--hidden", "8", "--teacher-steps", "4", "--student-steps", "4"]
    assert CliRunner().invoke(app, base).exit_code == 0
    assert CliRunner().invoke(app, [*base, "--init", "normal", "--sweep-steps", "2"]).exit_code == 0
    runs = {
        json.loads((d / "config.json").read_text())["init"]: d.name for d in (tmp_path / "artifacts/mnist").iterdir()
    }
    legacy = {
        k: v
        for k, v in asdict(MnistConfig(n_seeds=2, hidden=8, teacher_steps=4, student_steps=4)).items()
        if k not in ("init", "sweep_steps")
    }
    assert runs["uniform"].endswith(content_hash(legacy, n=8))  # a config from before the axis keeps its id
    new = MnistConfig(n_seeds=2, hidden=8, teacher_steps=4, student_steps=4, init="normal", sweep_steps=(2,))
    assert runs["normal"].endswith(content_hash(new.key(), n=8)) and content_hash(new.key(), n=8) != content_hash(
        legacy, n=8
    )
