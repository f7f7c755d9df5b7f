import pytest

from interp.overrides import apply_overrides, parse_override


def test_override_values_are_toml_and_a_bare_word_is_a_string():
    assert parse_override("train.lr=2e-4") == (["train", "lr"], 2e-4)
    assert parse_override("seeds=[0, 1]") == (["seeds"], [0, 1])
    assert parse_override('data.dtype="bf16"') == (["data", "dtype"], "bf16")
    assert parse_override("model=tiny") == (["model"], "tiny")
    assert parse_override("eval.sampled=true") == (["eval", "sampled"], True)


def test_apply_overrides_sets_nested_fields_without_touching_the_input():
    raw = {"model": "tiny", "train": {"lr": 1e-3, "epochs": 1}}
    out = apply_overrides(raw, ["train.lr=2e-4", "teacher.layer=3"])
    assert out == {"model": "tiny", "train": {"lr": 2e-4, "epochs": 1}, "teacher": {"layer": 3}}
    assert raw == {"model": "tiny", "train": {"lr": 1e-3, "epochs": 1}}


@pytest.mark.parametrize("text", ["train.lr", "=1", "train..lr=1"])
def test_an_override_without_a_field_says_how_to_write_one(text):
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        apply_overrides({}, [text])
