"""The learning rate per training mode, chosen by held-out loss on the control teacher's data
(issue 23), and issue 23's committed configs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from interp.cli import app
from interp.lr_select import (
    heldout_loss,
    load_lr_select,
    parse_lr_select,
    run_lr_select,
    split_rows,
    summarize_lr_select,
)
from interp.rows import build_examples
from interp.runs import MANIFEST_FILE, content_hash, read_json
from interp.sweep import load_sweep
from interp.train import LORA_TARGETS, TrainConfig, load_student

CONFIGS = Path(__file__).resolve().parent.parent / "experiments" / "configs"
REGIME = CONFIGS / "e23_regime"
RECORD = CONFIGS.parent / "results" / "e23-lr-select_62cc674ffd"
QUIET = lambda *a, **k: None  # noqa: E731


def _raw(**lr_select) -> dict:
    return {
        "experiment": "t",
        "model": "tiny",
        "seeds": [0],
        "teacher": {"kinds": ["control", "steered"], "layer": 2, "multiplier": 1.0},
        "data": {"n_prompts": 8, "batch_size": 8, "max_new_tokens": 12},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3},
        "eval": {"split": "tuning", "n_boot": 200},
        "lr_select": {
            "name": "lrs",
            "lrs": [1e-3, 3e-2],
            "heldout_fraction": 0.25,
            "modes": [
                {"name": "full", "method": "full"},
                {"name": "lora-r4", "method": "lora", "lora_rank": 4, "lora_alpha": 4, "lrs": [1e-3, 1e-2]},
            ],
            **lr_select,
        },
    }


def test_split_is_disjoint_complete_seeded_and_refuses_an_empty_half():
    train, held = split_rows(80, 0.25, 3000)
    assert len(held) == 20 and sorted(train + held) == list(range(80)) and not set(train) & set(held)
    assert split_rows(80, 0.25, 3000) == (train, held) and split_rows(80, 0.25, 3001)[1] != held
    with pytest.raises(ValueError, match=r"^lr_select.heldout_fraction: 0.1 of 4 rows leaves no held-out rows"):
        split_rows(4, 0.1, 0)
    with pytest.raises(ValueError, match=r"leaves no training rows"):
        split_rows(2, 0.9, 0)


def test_the_lowest_mean_loss_is_chosen_ties_to_the_smaller_lr_diverged_never():
    cfg = parse_lr_select(
        _raw(
            lrs=[1e-4, 1e-3, 1e-2],
            modes=[{"name": "a", "method": "full"}, {"name": "b", "method": "full"}, {"name": "c", "method": "full"}],
        )
        | {"seeds": [0, 1]}
    )
    losses = {
        "a": {1e-4: [2.0, 2.2], 1e-3: [1.9, 2.1], 1e-2: [1.0, None]},  # 1e-2 diverged on one seed
        "b": {1e-4: [1.5, 1.5], 1e-3: [1.0, 2.0], 1e-2: [1.5, 1.5]},  # all three tie at 1.5: the smallest lr
        "c": {1e-4: [None, None], 1e-3: [None, 3.0], 1e-2: [None, None]},
    }
    trials = [
        {"mode": m, "lr": lr, "seed": s, "heldout_loss": v[i]}
        for m, g in losses.items()
        for lr, v in g.items()
        for i, s in enumerate([0, 1])
    ]
    res = summarize_lr_select(cfg, trials)
    assert res["chosen"] == {"a": 1e-3, "b": 1e-4, "c": None}
    a = {g["lr"]: g for g in res["modes"]["a"]["grid"]}
    assert a[1e-3]["mean"] == pytest.approx(2.0) and a[1e-2]["mean"] is None and a[1e-2]["diverged_seeds"] == 1


def test_heldout_loss_is_the_mean_cross_entropy_of_the_completion_tokens(tiny):
    rows = [{"prompt": "Continue: 3, 7", "completion": "4, 5, 6"}, {"prompt": "More: 1", "completion": "12, 9"}]
    cfg = TrainConfig(batch_size=2)
    loss, n = heldout_loss(tiny, rows, cfg)
    # ground truth: one unbatched forward per row, cross-entropy at the positions predicting the completion
    total, count = 0.0, 0
    for e in build_examples(tiny, rows, cfg.max_len):
        ids = torch.tensor([e.prompt_ids + e.completion_ids])
        with torch.no_grad():
            logits = tiny.hf(input_ids=ids).logits[0].double()
        start = len(e.prompt_ids)
        total += float(torch.nn.functional.cross_entropy(logits[start - 1 : -1], ids[0, start:], reduction="sum"))
        count += len(e.completion_ids)
    assert n == count and loss == pytest.approx(total / count, rel=1e-5)


def test_a_selection_on_the_tiny_model_records_its_split_trials_and_choice(tmp_path, tiny):
    cfg = parse_lr_select(_raw())
    res = run_lr_select(cfg, tmp_path, progress=False, log=QUIET)
    run_dir = Path(res["run_dir"])
    saved = read_json(run_dir / "results.json")
    assert saved["chosen"] == res["chosen"] and len(saved["trials"]) == 4
    for mode, m in saved["modes"].items():  # the chosen lr is the grid's lowest mean loss
        best = min((g for g in m["grid"] if g["mean"] is not None), key=lambda g: (g["mean"], g["lr"]))
        assert saved["chosen"][mode] == best["lr"]
    assert saved["modes"]["lora-r4"]["lora_targets"] == list(LORA_TARGETS)
    split = saved["split"]["0"]
    assert split["n_train"] + len(split["heldout_rows"]) == split["n_rows"] and len(split["heldout_rows"]) == round(
        0.25 * split["n_rows"]
    )
    man = read_json(run_dir / MANIFEST_FILE)
    assert man["kind"] == "lr-select" and man["config_hash"] == content_hash(cfg.key())
    assert man["inputs"]["control_datasets"]["0"] == split["dataset_hash"]
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", man["git_commit"]) and man["package_version"]
    assert "<- chosen" in (run_dir / "table.txt").read_text()
    # the control teacher's own data stage, shared with an E1 run on the same seed
    data = [s for s in man["stages"] if s["name"] == "data/control/seed0"]
    assert data and read_json(tmp_path / data[0]["dir"] / MANIFEST_FILE)["dataset_hash"] == split["dataset_hash"]
    # a LoRA trial's recorded loss is its kept adapter's loss on the held-out rows, recomputed here
    lora = next(t for t in saved["trials"] if t["mode"] == "lora-r4")
    sdir = tmp_path / "cache" / lora["stage"]
    student_man = read_json(sdir / MANIFEST_FILE)
    assert student_man["n_examples"] == split["n_train"] and student_man["train"]["lr"] == lora["lr"]
    from interp.datasets import read_rows

    rows = read_rows(tmp_path / data[0]["dir"])
    held = [rows[i] for i in split["heldout_rows"]]
    loss, _ = heldout_loss(
        load_student(tiny, sdir),
        held,
        TrainConfig(**{**student_man["train"], "lora_targets": tuple(student_man["train"]["lora_targets"])}),
    )
    assert loss == pytest.approx(lora["heldout_loss"], rel=1e-4)
    # a rerun computes nothing and chooses the same
    again = run_lr_select(cfg, tmp_path, progress=False, log=QUIET)
    assert all(s["cache_hit"] for s in read_json(run_dir / MANIFEST_FILE)["stages"])
    assert again["chosen"] == res["chosen"] and again["trials"] == res["trials"]


def test_bad_lr_select_settings_are_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"field `lr_select.modes`"):
        parse_lr_select(_raw(modes=[{"name": "a", "method": "full"}, {"name": "a", "method": "lora"}]))
    with pytest.raises(ValueError, match=r"field `lr_select.lrs`"):
        parse_lr_select(_raw(lrs=[0.0]))
    with pytest.raises(ValueError, match=r"has no \[lr_select\] table"):
        parse_lr_select({k: v for k, v in _raw().items() if k != "lr_select"})
    with pytest.raises(ValueError, match=r"field `lr_select.modes.0.lora_alpha`"):
        parse_lr_select(_raw(modes=[{"name": "r0", "method": "lora", "lora_alpha": 0}]))
    with pytest.raises(ValueError, match=r"mode 'dup': train.lora_targets"):
        parse_lr_select(_raw(modes=[{"name": "dup", "method": "lora", "lora_targets": ["q_proj", "q_proj"]}]))
    # a rank the model cannot take: refused after the model loads, before any stage
    cfg = parse_lr_select(_raw(modes=[{"name": "r64", "method": "lora", "lora_rank": 64}]))
    with pytest.raises(ValueError, match=r"^lr_select.modes \(r64\): train.lora_rank: 64 is above"):
        run_lr_select(cfg, tmp_path, progress=False, log=QUIET)
    assert not (tmp_path / "cache").exists()


# ----------------------------------------------------------------------------- the committed configs


def _seeds(path: Path) -> set[int]:
    return set(tomllib.loads(path.read_text()).get("seeds", []))


def test_issue23_configs_expand_to_their_cells_on_unused_seeds():
    sel = load_lr_select(REGIME / "lr_select.toml")
    assert sel.e1.seeds == [3000, 3001, 3002] and len(sel.trials()) == 60
    assert {m.name: (m.method, m.lora_rank, m.lora_alpha) for m in sel.modes if m.method == "lora"} == {
        f"lora-r{r}": ("lora", r, r) for r in (4, 16, 64)
    }
    rank = load_sweep(REGIME / "rank.toml")
    cells = {(c.config.train.method, c.config.train.lora_rank, c.config.train.lora_alpha) for c in rank.cells}
    assert cells == {("full", 8, 16), ("lora", 4, 4), ("lora", 16, 16), ("lora", 64, 64)}
    # every lr is the committed lr-select record's choice for its mode (plus full at the E1 protocol's 1e-4)
    record = read_json(RECORD / "results.json")
    assert content_hash(sel.key(), 10) == RECORD.name.split("_")[-1]  # the record is this config's run
    assert read_json(RECORD / MANIFEST_FILE)["config_hash"].startswith(RECORD.name.split("_")[-1])
    mode = lambda t: "full" if t.method == "full" else f"lora-r{t.lora_rank}"  # noqa: E731
    assert [(mode(c.config.train), c.config.train.lr) for c in rank.cells] == [
        *((m, record["chosen"][m]) for m in ("full", "lora-r4", "lora-r16", "lora-r64")),
        ("full", 1e-4),
    ]
    assert record["chosen"] == {"full": 3e-5, "lora-r4": 1e-3, "lora-r16": 1e-3, "lora-r64": 3e-4}
    assert all(c.config.train.lora_targets == list(LORA_TARGETS) for c in rank.cells)  # every linear layer
    rows = load_sweep(REGIME / "rows_epochs.toml")
    assert [(c.config.data.n_prompts, c.config.train.epochs, c.config.train.keep) for c in rows.cells] == [
        (80, 1, "update"),  # rank.toml's full cell, shared
        (320, 1, "none"),  # no weights kept: the disk (evaluated in the process that trained them)
        (1280, 1, "none"),
        (80, 4, "none"),
        (80, 16, "none"),
    ]
    ctx = load_sweep(REGIME / "context.toml")
    assert {(c.config.train.system_prompt, c.config.eval.system_prompt) for c in ctx.cells} == {
        (t, e) for t in ("default", "none") for e in ("default", "none")
    }
    transfer = set(range(3100, 3110))
    for sw in (rank, ctx):
        assert all(set(c.config.seeds) == transfer for c in sw.cells)
    assert all(c.config.seeds == list(range(3100, 3106)) for c in rows.cells)  # B: the issue's minimum of 6
    # the full 80 x 1 cell is one student setting in all three sweeps: its stages are computed once
    same = lambda c: c.config.train_config(3100).key()  # noqa: E731
    assert same(rank.cells[0]) == same(rows.cells[0]) == same(ctx.cells[0])
    # no config outside e23_regime uses these seeds
    others = set().union(*(_seeds(p) for p in CONFIGS.rglob("*.toml") if p.parent != REGIME))
    assert not others & (transfer | set(sel.e1.seeds))
    assert all(c.config.train.lr == record["chosen"]["full"] for sw in (rows, ctx) for c in sw.cells)


def test_cli_lr_select_dry_run_lists_the_trials():
    out = CliRunner().invoke(app, ["lr-select", str(REGIME / "lr_select.toml"), "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "60 trials" in out.output and "lora-r64" in out.output
    bad = CliRunner().invoke(app, ["lr-select", str(REGIME / "rank.toml")])
    assert bad.exit_code == 2 and "has no [lr_select] table" in bad.output


def test_a_joined_sweep_key_sets_its_fields_together_and_refuses_a_wrong_length():
    from interp.sweep import parse_sweep

    raw = {k: v for k, v in _raw().items() if k != "lr_select"}
    sw = parse_sweep(
        {**raw, "sweep": {"grid": {"train.lora_rank,train.lora_alpha": [[4, 4], [16, 16]], "train.lr": [1e-3, 1e-2]}}}
    )
    assert [(c.config.train.lora_rank, c.config.train.lora_alpha, c.config.train.lr) for c in sw.cells] == [
        (4, 4, 1e-3),
        (4, 4, 1e-2),
        (16, 16, 1e-3),
        (16, 16, 1e-2),
    ]  # one axis of 2, times the other
    with pytest.raises(ValueError, match=r"sets 2 fields together: each value needs 2 entries"):
        parse_sweep({**raw, "sweep": {"grid": {"train.lora_rank,train.lora_alpha": [[4, 4], [16]]}}})
