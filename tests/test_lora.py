"""LoRA students (issue 23): which layers an adapter covers, and the settings refused before any
data is made (a rank above a layer's width, target names the model lacks, nonsense rank/alpha)."""

from __future__ import annotations

import math

import pytest
from torch import nn

import interp.train as train_mod
from interp import pipeline
from interp.config import parse_config
from interp.models import decoder_layers
from interp.train import ALL_LINEAR, LORA_TARGETS, TrainConfig, check_lora, lora_modules, train_student, trainable_state

ROWS = [{"prompt": f"Continue: {i}, {i + 1}", "completion": "1, 2, 3"} for i in range(4)]


def _decoder_linears(m) -> set[str]:
    """Ground truth: the path (within its block) of every nn.Linear of every decoder block."""
    return {
        f"{i}.{n}"
        for i, layer in enumerate(decoder_layers(m.hf))
        for n, mod in layer.named_modules()
        if isinstance(mod, nn.Linear)
    }


@pytest.mark.parametrize("which", ["tiny", "tiny_gemma"])
def test_the_default_targets_are_every_linear_layer_of_the_decoder(which, request):
    m = request.getfixturevalue(which)
    truth = _decoder_linears(m)
    default = lora_modules(m.hf, LORA_TARGETS)
    # the default names adapt exactly the decoder's linear layers: not the output head, not one fewer
    assert {n.split("layers.", 1)[1] for n in default} == truth
    assert {n.split("layers.", 1)[1] for n in lora_modules(m.hf, (ALL_LINEAR,))} == truth


@pytest.mark.parametrize("which", ["tiny", "tiny_gemma"])
def test_all_linear_gives_the_adapter_of_the_default_list(which, request):
    m = request.getfixturevalue(which)
    prep = lambda targets: train_mod._prepare(m, TrainConfig(method="lora", lora_rank=4, lora_targets=targets))
    a, b = trainable_state(prep(LORA_TARGETS)), trainable_state(prep((ALL_LINEAR,)))
    assert sorted(a) == sorted(b) and len(a) == 2 * len(_decoder_linears(m))  # one A and one B per layer
    assert all((a[n] == b[n]).all() for n in a)  # the same seeded initialisation


def test_a_rank_above_a_targeted_layers_width_is_refused_naming_the_field(tiny, tmp_path):
    # tiny: d_model 64, 2 kv heads of 16 -> k_proj and v_proj are 64 -> 32, the narrowest layers
    widths = {n: min(m.in_features, m.out_features) for n, m in lora_modules(tiny.hf, LORA_TARGETS).items()}
    narrow = min(widths.values())
    assert narrow == 32
    assert check_lora(tiny, TrainConfig(method="lora", lora_rank=narrow)) == list(LORA_TARGETS)
    out = tmp_path / "student"
    with pytest.raises(
        ValueError, match=r"^train\.lora_rank: 33 is above .*k_proj \(64 -> 32\); use lora_rank <= 32"
    ) as e:
        train_student(tiny, ROWS, TrainConfig(method="lora", lora_rank=33), out, progress=False)
    assert "\n" not in str(e.value) and not out.exists()  # refused before anything was written
    # leaving the narrow layers out makes the same rank fit
    wide = TrainConfig(
        method="lora", lora_rank=33, lora_targets=("q_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    )
    assert check_lora(tiny, wide)
    # a full fine-tune ignores the LoRA settings
    assert check_lora(tiny, TrainConfig(method="full", lora_rank=1000)) == []


@pytest.mark.parametrize(
    "targets, bad", [(("q_proj", "qkv_proj"), "qkv_proj"), (("mlp",), "mlp"), (("embed_tokens",), "embed_tokens")]
)
def test_unknown_or_non_linear_targets_are_refused_naming_the_field(tiny, targets, bad):
    with pytest.raises(
        ValueError, match=rf"^train\.lora_targets: \['{bad}'\] name no linear layer of tiny .*'all-linear'"
    ) as e:
        check_lora(tiny, TrainConfig(method="lora", lora_rank=4, lora_targets=targets))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "field, value",
    [
        ("lora_rank", 0),
        ("lora_rank", -4),
        ("lora_rank", 2.5),
        ("lora_alpha", 0),
        ("lora_alpha", -1.0),
        ("lora_alpha", math.nan),
        ("lora_targets", ()),
        ("lora_targets", ("q_proj", "q_proj")),
        ("lora_targets", (ALL_LINEAR, "q_proj")),
        ("lora_targets", ("",)),
    ],
)
def test_nonsense_lora_settings_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^train\.{field}: ") as e:
        TrainConfig(method="lora", **{field: value})
    assert "\n" not in str(e.value)


def _raw(**train) -> dict:
    return {
        "experiment": "t",
        "model": "tiny",
        "seeds": [0],
        "teacher": {"kinds": ["control", "steered"], "layer": 2, "multiplier": 1.0},
        "data": {"n_prompts": 8, "batch_size": 8, "max_new_tokens": 12},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3, **train},
        "eval": {"split": "tuning", "n_boot": 200},
    }


def test_lora_targets_in_a_config_leave_default_keys_unchanged_and_reach_the_student():
    plain = parse_config(_raw())
    assert "lora_targets" not in plain.key()["train"]
    assert parse_config(_raw(lora_targets=list(LORA_TARGETS))).key() == plain.key()
    allin = parse_config(_raw(method="lora", lora_targets="all-linear"))
    assert allin.key()["train"]["lora_targets"] == "all-linear"
    assert allin.train_config(0).lora_targets == (ALL_LINEAR,)
    assert parse_config(_raw(lora_targets=["q_proj", "v_proj"])).train_config(0).lora_targets == ("q_proj", "v_proj")
    with pytest.raises(ValueError, match=r"field `train.lora_targets`"):
        parse_config(_raw(lora_targets=["q_proj", "all-linear"]))


@pytest.mark.parametrize("train, field", [({"lora_rank": 64}, "lora_rank"), ({"lora_targets": ["wq"]}, "lora_targets")])
def test_run_e1_refuses_a_lora_setting_the_model_cannot_take_before_any_stage(tmp_path, train, field):
    cfg = parse_config(_raw(method="lora", **train))
    with pytest.raises(ValueError, match=rf"^train\.{field}: ") as e:
        pipeline.run_e1(cfg, tmp_path, progress=False, log=lambda *a, **k: None)
    assert "\n" not in str(e.value) and not (tmp_path / "cache").exists()  # no vector, no data
