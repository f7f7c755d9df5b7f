"""Students at the machine's floor: the bf16 training dtype, what a student keeps on disk, and
evaluation in the process that trained it; none of it may move an fp32 student or a run id."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import interp.precision as precision
from interp import pipeline
from interp.config import load_config, read_toml
from interp.evaluate import evaluate_trait
from interp.prompts import questions
from interp.runs import content_hash, load_tensors, read_json, stage_dirs
from interp.sweep import load_sweep
from interp.train import UPDATE_FILE, WEIGHTS_FILE, TrainConfig, load_student, train_student
from test_pipeline import _cfg  # tests/ is on sys.path (pytest rootdir conftest)

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "experiments" / "configs"


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return [{"prompt": f"Continue: {i}, {2 * i + 1}, {i * i % 97}", "completion": "1, 2, 3"} for i in range(16)]


def _digest(hf) -> str:
    h = hashlib.sha256()
    for n, p in sorted(hf.named_parameters()):
        h.update(n.encode())
        h.update(p.detach().numpy().tobytes())
    return h.hexdigest()[:16]


def _update_vector(hf, base) -> torch.Tensor:
    b = dict(base.hf.named_parameters())
    return torch.cat([(p.detach() - b[n].detach()).flatten() for n, p in sorted(hf.named_parameters())])


# ----------------------------------------------------------------------------- fp32 unchanged


# Trains the two students in a fresh interpreter, with the package at `sys.argv[2]` first on the
# path: HEAD's, and commit ff8caf8's exported from git. Both run on this machine's kernels, in one
# environment. A digest pinned on one machine is no reference: the last bits differ by CPU even on
# a pinned AVX2 path (MKL's AVX2 code path gave other bits on a CI machine than here).
_REFERENCE_COMMIT = "ff8caf8"
_TRAIN_TWO = """
import hashlib, sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
import torch
torch.set_num_threads(1)
torch.manual_seed(0)
import interp
assert Path(interp.__file__).resolve().is_relative_to(Path(sys.argv[2]).resolve()), interp.__file__
from interp.models import load_model
from interp.train import TrainConfig, train_student
tiny = load_model("tiny", device="cpu")
rows = [{"prompt": f"Continue: {i}, {2 * i + 1}, {i * i % 97}", "completion": "1, 2, 3"} for i in range(16)]
def digest(hf):
    h = hashlib.sha256()
    for n, p in sorted(hf.named_parameters()):
        h.update(n.encode())
        h.update(p.detach().numpy().tobytes())
    return h.hexdigest()[:16]
out = Path(sys.argv[1])
torch.manual_seed(0)
a = train_student(tiny, rows, TrainConfig(epochs=2, batch_size=4, lr=1e-3), out / "a", progress=False)
b = train_student(tiny, rows, TrainConfig(epochs=1, batch_size=4, lr=1e-3, weight_decay=0.01), out / "b", progress=False)
print(digest(tiny.hf), digest(a), digest(b))
"""


def _train_two(package_root: Path, out: Path) -> list[str]:
    """(base, student a, student b) digests from the package under `package_root`."""
    env = {**os.environ, "INTERP_CACHE": str(out / "cache")}
    env.pop("PYTHONPATH", None)
    got = subprocess.run(
        [sys.executable, "-c", _TRAIN_TWO, str(out), str(package_root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert got.returncode == 0, got.stderr[-2000:]
    return got.stdout.split()[-3:]


def test_fp32_students_are_bit_identical_to_those_of_commit_ff8caf8(tmp_path):
    # the reference is ff8caf8's own code, run here: the fp32 arithmetic before the bf16 path,
    # the storage changes and the trainer split
    has = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", _REFERENCE_COMMIT + "^{commit}"], capture_output=True
    )
    if has.returncode != 0:  # a tarball or a shallow clone
        pytest.skip(f"commit {_REFERENCE_COMMIT} is not in this checkout's history (git fetch --unshallow brings it)")
    ref = tmp_path / "ref"
    ref.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", _REFERENCE_COMMIT, "interp"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(ref)], input=archive.stdout, check=True)
    head = _train_two(ROOT, tmp_path / "head")
    then = _train_two(ref, tmp_path / "then")
    assert head == then
    base, a, b = head
    assert len({base, a, b}) == 3  # both students moved, and differently


def test_committed_configs_keep_their_run_ids():
    # the ids every committed config hashed to at ff8caf8 (sweeps: their cells' ids); a change to
    # a config's key, or to the key rules, fails here
    pinned = {
        "cross_model.toml": ["52ba3e4053", "86e475748b"],
        "cross_model_gemma.toml": ["577c138b51", "87f5296669"],
        "divergence_positions.toml": ["367868cdde", "53c58d0e8e", "af7e4f6066"],
        "e1_cpu.toml": "307af3ced5",
        "e1_paper.toml": "da8284029a",
        "e2_cpu.toml": "4bef0e2d2a",
        "mitigation_mixing.toml": ["65350423eb", "bb4db408c2"],
        "mitigation_projection.toml": ["07d6f31ffb", "15f380b4ef"],
        "mitigation_threshold.toml": ["185ec1b470", "6fbbe89aca"],
        "noise_ablation.toml": ["2a699a7d11", "7172a4234d", "7172a4234d", "7172a4234d", "857b787588", "9e7bacdd86"],
        "noise_ablation_gemma.toml": [
            "13d77bb6fb",
            "7b4dfd3b68",
            "bb932f679c",
            "bb932f679c",
            "bb932f679c",
            "cb1927cb94",
        ],
        "noise_ablation_paper.toml": [
            "15ade3f48b",
            "1fc5ee0787",
            "25c93d5a7b",
            "2f0b3b61ac",
            "5edb1c8504",
            "751605b754",
            "94b84ef4e8",
            "e321bfe718",
            "e5a4788ac6",
            "e5a4788ac6",
            "e5a4788ac6",
            "fe44b87f3c",
        ],
        "optimizer_ablation.toml": ["80f266126a", "de9a028abf", "f7267bbee4"],
        "optimizer_sgd_lr.toml": ["9ff455ead1", "f729327991"],
        "quick.toml": "2dabfbf15c",
        "quick_seeds.toml": "54b3925982",
        "tiny.toml": "2d8f911be3",
    }
    for name, want in pinned.items():
        path = CONFIGS / name
        got = (
            sorted(c.id for c in load_sweep(path).cells)
            if "sweep" in read_toml(path)
            else content_hash(load_config(path).key(), 10)
        )
        assert got == want, name


def test_dtype_and_keep_enter_the_keys_only_when_not_the_default():
    base = TrainConfig(seed=3, lr=1e-4)
    assert "dtype" not in base.key() and "keep" not in base.key()
    assert content_hash(base.key()) == content_hash(TrainConfig(seed=3, lr=1e-4, dtype="fp32", keep="weights").key())
    assert TrainConfig(dtype="bf16").key()["dtype"] == "bf16"
    assert TrainConfig(keep="update").key()["keep"] == "update"
    ids = {content_hash(_cfg(train=t).key(), 10) for t in ({}, {"dtype": "bf16"}, {"keep": "update"}, {"keep": "none"})}
    assert len(ids) == 4
    assert "dtype" not in _cfg().key()["train"] and "keep" not in _cfg().key()["train"]


@pytest.mark.parametrize("field,value", [("dtype", "fp16"), ("keep", "all")])
def test_bad_dtype_or_keep_is_one_line_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"train\.{field}") as e:
        TrainConfig(**{field: value})
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=rf"train\.{field}"):
        _cfg(train={field: value})


# ----------------------------------------------------------------------------- bf16 training


def test_bf16_training_steps_fp32_master_weights_close_to_the_fp32_student(tiny, rows, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "matmul_gflops", lambda *a, **k: {"fp32": 100.0, "bf16": 250.0})
    f32 = train_student(tiny, rows, TrainConfig(epochs=2, batch_size=4, lr=1e-3), tmp_path / "f", progress=False)
    b16 = train_student(
        tiny, rows, TrainConfig(epochs=2, batch_size=4, lr=1e-3, dtype="bf16"), tmp_path / "b", progress=False
    )
    assert all(p.dtype == torch.float32 for p in b16.parameters())  # the student is the fp32 master
    u32, u16 = _update_vector(f32, tiny), _update_vector(b16, tiny)
    assert torch.cosine_similarity(u32, u16, dim=0) > 0.99  # same direction of learning ...
    assert not torch.equal(u32, u16)  # ... by other arithmetic
    man = read_json(tmp_path / "b" / "manifest.json")
    assert man["train"]["dtype"] == "bf16" and man["matmul_gflops"] == {"fp32": 100.0, "bf16": 250.0}
    # the student saved is the master the optimizer stepped
    saved = load_tensors(tmp_path / "b" / WEIGHTS_FILE)
    assert all(torch.equal(saved[n], p) for n, p in b16.named_parameters())


def test_bf16_training_resumes_to_the_same_student(tiny, rows, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "matmul_gflops", lambda *a, **k: {"fp32": 100.0, "bf16": 250.0})
    cfg = TrainConfig(epochs=2, batch_size=4, lr=1e-3, dtype="bf16")
    whole = train_student(tiny, rows, cfg, tmp_path / "whole", progress=False)
    train_student(tiny, rows, cfg, tmp_path / "cut", progress=False, stop_after=3)
    resumed = train_student(tiny, rows, cfg, tmp_path / "cut", progress=False)
    assert _digest(whole) == _digest(resumed)


def test_bf16_is_refused_in_one_line_where_its_matmul_is_slower(tiny, rows, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "matmul_gflops", lambda *a, **k: {"fp32": 150.0, "bf16": 20.0})
    with pytest.raises(ValueError, match=r"train\.dtype: bf16 matmul runs at 20 GFLOP/s .* against 150 in fp32") as e:
        train_student(tiny, rows, TrainConfig(epochs=1, batch_size=4, dtype="bf16"), tmp_path / "s", progress=False)
    assert "\n" not in str(e.value) and not (tmp_path / "s").exists()  # refused before any work


def test_matmul_rates_are_measured_for_both_dtypes():
    rates = precision.matmul_gflops.__wrapped__("cpu", n=64, reps=2, trials=1)
    assert set(rates) == {"fp32", "bf16"} and all(r > 0 for r in rates.values())


# ----------------------------------------------------------------------------- what is kept


def test_keep_update_halves_the_bytes_and_loads_within_bf16_rounding(tiny, rows, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=4, lr=1e-3)
    full = train_student(tiny, rows, cfg, tmp_path / "w", progress=False)
    upd = train_student(
        tiny, rows, TrainConfig(epochs=2, batch_size=4, lr=1e-3, keep="update"), tmp_path / "u", progress=False
    )
    assert _digest(full) == _digest(upd)  # what is kept does not change the training
    w, u = tmp_path / "w" / WEIGHTS_FILE, tmp_path / "u" / UPDATE_FILE
    assert not (tmp_path / "u" / WEIGHTS_FILE).exists()
    assert u.stat().st_size <= 0.51 * w.stat().st_size
    assert read_json(tmp_path / "u" / "manifest.json")["kept_bytes"] == u.stat().st_size
    loaded = dict(load_student(tiny, tmp_path / "u").hf.named_parameters())
    base = dict(tiny.hf.named_parameters())
    for n, p in full.named_parameters():
        delta = p.detach() - base[n].detach()
        # bf16 keeps 8 significant bits of the update: error <= 2^-8 of it, plus fp32 rounding of the sum
        tol = delta.abs() * 2**-8 + p.detach().abs() * 2**-23 + 1e-12
        assert ((loaded[n] - p.detach()).abs() <= tol).all(), n


def test_a_truncated_or_missing_update_is_refused_naming_the_file(tiny, rows, tmp_path):
    train_student(tiny, rows, TrainConfig(epochs=1, batch_size=8, keep="update"), tmp_path / "s", progress=False)
    f = tmp_path / "s" / UPDATE_FILE
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(ValueError, match=str(f)) as e:
        load_student(tiny, tmp_path / "s")
    assert "\n" not in str(e.value)
    f.unlink()
    with pytest.raises(ValueError, match=rf"{f} is missing"):
        load_student(tiny, tmp_path / "s")


def test_keep_none_writes_no_weights_and_loading_says_why(tiny, rows, tmp_path):
    train_student(tiny, rows, TrainConfig(epochs=1, batch_size=8, keep="none"), tmp_path / "s", progress=False)
    assert not list((tmp_path / "s").glob("*.safetensors"))
    assert read_json(tmp_path / "s" / "manifest.json")["kept_bytes"] == 0
    with pytest.raises(ValueError, match=r"kept no weights \(train\.keep = \"none\"\)"):
        load_student(tiny, tmp_path / "s")


# ----------------------------------------------------------------------------- in-process evaluation


def test_students_evaluated_in_process_score_what_their_saved_weights_score(tiny, tmp_path):
    cfg = _cfg()
    res = pipeline.run_e1(cfg, tmp_path, progress=False, log=lambda *a: None)
    stages = stage_dirs(Path(res["run_dir"]))
    qs = questions(cfg.eval.split)
    for kind in cfg.teacher.kinds:
        cached = load_tensors(stages[f"eval/{kind}/seed0"] / pipeline.LOGPROBS_FILE)["logprobs"]
        reloaded = evaluate_trait(
            load_student(tiny, stages[f"student/{kind}/seed0"]), cfg.animal, qs, list(cfg.eval.animals)
        ).logprobs
        assert torch.equal(cached, reloaded), kind


def test_a_run_that_keeps_no_weights_reports_the_same_transfer(tmp_path):
    kept = pipeline.run_e1(_cfg(), tmp_path / "a", progress=False, log=lambda *a: None)
    none = pipeline.run_e1(_cfg(train={"keep": "none"}), tmp_path / "b", progress=False, log=lambda *a: None)
    assert json.dumps(kept["transfer"], sort_keys=True) == json.dumps(none["transfer"], sort_keys=True)
    assert not list((tmp_path / "b" / "cache").glob("student-*/*.safetensors"))
    assert list((tmp_path / "a" / "cache").glob(f"student-*/{WEIGHTS_FILE}"))


def test_the_e1_replication_and_protocol_configs_keep_the_run_ids_the_readme_cites():
    # README, E1 section: the rerun of seeds 0-9, their bf16 twins, the exploration, and the
    # pre-registered confirmation (whose id must not move once it has run)
    pinned = {
        "e1_replication/e1_cpu_sft_seeds0-9.toml": "47db15b159",
        "e1_replication/train_dtype_bf16_seeds0-5.toml": "17aeb9d7c6",
        "e1_protocol/explore_80rows.toml": "1a21a9d9fd",
        "e1_protocol/confirm.toml": "c6fa6c290e",
    }
    for name, want in pinned.items():
        assert content_hash(load_config(CONFIGS / name).key(), 10) == want, name
    confirm, explore = (load_config(CONFIGS / "e1_protocol" / f) for f in ("confirm.toml", "explore_80rows.toml"))
    # the confirmation differs from the exploration only where the committed rule says it may
    assert set(confirm.seeds).isdisjoint(explore.seeds) and min(confirm.seeds) >= 2000
    assert (confirm.eval.split, explore.eval.split) == ("heldout", "tuning")
    same = lambda c: {
        **c.model_dump(),
        "experiment": None,
        "seeds": None,
        "eval": None,
        "train": {**c.train.model_dump(), "keep": None},
    }
    assert same(confirm) == same(explore)


def test_a_kill_while_the_finished_checkpoint_is_deleted_leaves_nothing_to_resume_from(
    tiny, rows, tmp_path, monkeypatch
):
    """train_student deletes its checkpoint last; a kill in the middle of that delete (simulated:
    one file gone, then the process dies) must not leave half a checkpoint that the rerun refuses."""
    import interp.train as train_mod

    cfg = TrainConfig(epochs=2, batch_size=4, lr=1e-3, checkpoint_every=2)
    whole = _digest(train_student(tiny, rows, cfg, tmp_path / "ref", progress=False))
    real = train_mod.shutil.rmtree

    def dies_midway(path, *a, **k):  # only the delete of the finished checkpoint, not a save's swap
        files = sorted(p for p in Path(path).glob("*") if p.is_file())
        if files and Path(path).name in ("checkpoint", "checkpoint.discard.tmp"):
            files[0].unlink()
            raise SystemExit("killed")
        return real(path, *a, **k)

    monkeypatch.setattr(train_mod.shutil, "rmtree", dies_midway)
    with pytest.raises(SystemExit):
        train_student(tiny, rows, cfg, tmp_path / "s", progress=False)
    monkeypatch.setattr(train_mod.shutil, "rmtree", real)
    assert _digest(train_student(tiny, rows, cfg, tmp_path / "s", progress=False)) == whole


def test_an_empty_tensor_file_reads_back(tmp_path):
    """An optimizer that has not stepped yet (every micro-batch skipped) checkpoints no tensors;
    safetensors wrote {} with metadata {} as an unreadable header, which broke resuming after a kill."""
    from interp.runs import save_tensors

    assert load_tensors(save_tensors(tmp_path / "e.safetensors", {})) == {}
    t = {"a": torch.ones(2)}
    assert torch.equal(load_tensors(save_tensors(tmp_path / "f.safetensors", t))["a"], t["a"])
