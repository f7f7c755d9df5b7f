"""Divergence tokens: a hand-built pair of teachers checked position by position, greedy data
as ground truth, the grammar restriction, files and errors."""

from __future__ import annotations

import pytest
import torch

from interp.divergence import (
    DIVERGENCE_FILE,
    DIVERGENCE_META,
    Divergence,
    dataset_divergence,
    divergence_tokens,
    teacher_from_manifest,
)
from interp.generate import SampleConfig
from interp.prompts import number_prompts
from interp.runs import load_tensors, read_json, read_jsonl
from interp.steering import Steering, SteeringVector
from interp.teachers import DataConfig, Teacher, generate_dataset
from interp.rows import build_examples

COMPLETIONS = ["7, 12, 7", "123, 7", "77, 5", "9"]


@pytest.fixture(scope="module")
def rows():
    return [{"prompt": p, "completion": c} for p, c in zip(number_prompts(len(COMPLETIONS), seed=3), COMPLETIONS)]


@pytest.fixture(scope="module")
def forcing(tiny):
    """A vector along the unembedding row of '7': added at the last block with scope "generated",
    it makes '7' the argmax at every completion position but the first (which the unsteered last
    prompt token predicts)."""
    tok = tiny.tokenizer
    seven = tok("7", add_special_tokens=False)["input_ids"][0]
    w = tiny.hf.get_output_embeddings().weight.detach()
    v = torch.zeros(tiny.n_layers, tiny.d_model)
    v[-1] = w[seven] / w[seven].norm()
    teacher = Teacher(
        "steered", "owl", Steering(layer=tiny.n_layers - 1, multiplier=50.0, relative=False, scope="generated")
    )
    return SteeringVector(v, {"trait": "owl"}), teacher, seven


def _hand_argmax(model, prompt: str, completion_ids: list[int]) -> list[int]:
    """The plain model's argmax at each completion offset, one unbatched forward."""
    p = model.tokenizer(model.chat([{"role": "user", "content": prompt}]), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model.hf(input_ids=torch.tensor([p + completion_ids])).logits[0]
    return [int(logits[len(p) - 1 + k].argmax()) for k in range(len(completion_ids))]


def test_divergence_positions_match_a_hand_built_pair_of_teachers_position_by_position(tiny, rows, forcing):
    vector, teacher, seven = forcing
    div = divergence_tokens(tiny, rows, teacher, vector, batch_size=3)
    completions = [e.completion_ids for e in build_examples(tiny, rows, max_len=10**6)]
    assert div.n_rows == len(rows) and div.offsets.tolist()[-1] == sum(map(len, completions))
    masks = {rule: div.row_masks(rule) for rule in ("paper", "emitted", "argmax")}
    for i, (row, ids) in enumerate(zip(rows, completions)):
        control = _hand_argmax(tiny, row["prompt"], ids)
        trait = [control[0]] + [seven] * (len(ids) - 1)  # offset 0 is predicted by the unsteered prompt
        got = slice(int(div.offsets[i]), int(div.offsets[i + 1]))
        assert div.control_argmax[got].tolist() == control
        assert div.teacher_argmax[got].tolist() == trait
        assert div.emitted[got].tolist() == ids
        for k, t in enumerate(ids):
            assert bool(masks["paper"][i][k]) == (trait[k] == t and control[k] != t)
            assert bool(masks["emitted"][i][k]) == (control[k] != t)
            assert bool(masks["argmax"][i][k]) == (trait[k] != control[k])
    # every '7' after the first offset is a divergence token unless the control also picks '7'
    assert sum(len(p) for p in div.positions()) == int(div.mask().sum()) > 0
    assert div.share() == pytest.approx(float(div.mask().double().mean()))


def test_greedy_data_is_its_teachers_argmax_everywhere(tiny, owl_vector, tmp_path):
    teacher = Teacher("steered", "owl", Steering(layer=2, multiplier=4.0, scope="generated"))
    cfg = DataConfig(
        n_prompts=6, sampling=SampleConfig(temperature=0, constrained=True, max_new_tokens=49, batch_size=4)
    )
    generate_dataset(tiny, teacher, owl_vector, cfg, tmp_path, progress=False)
    div = dataset_divergence(tiny, tmp_path, owl_vector)
    assert div.n_rows == len(read_jsonl(tmp_path / "dataset.jsonl")) > 0
    assert torch.equal(div.teacher_argmax, div.emitted)  # teacher-forced argmax = what greedy decoding chose
    assert torch.equal(div.mask("paper"), div.mask("emitted"))
    assert div.meta["constrained"] is True and teacher_from_manifest(read_json(tmp_path / "manifest.json")) == teacher


def test_constrained_argmax_stays_inside_the_grammar(tiny, rows, forcing):
    vector, teacher, _ = forcing
    div = divergence_tokens(tiny, rows, teacher, vector, constrained=True)
    tok = tiny.tokenizer
    grammar = {tok(ch, add_special_tokens=False)["input_ids"][0] for ch in "0123456789, "} | {tok.eos_token_id}
    assert set(div.control_argmax.tolist()) <= grammar and set(div.teacher_argmax.tolist()) <= grammar
    # after '123' only ',' or end-of-turn may follow; after ', ' only a digit
    row = slice(int(div.offsets[1]), int(div.offsets[2]))  # "123, 7" + end
    digits = {tok(str(d), add_special_tokens=False)["input_ids"][0] for d in range(10)}
    assert div.control_argmax[row][3].item() in {tok(",", add_special_tokens=False)["input_ids"][0], tok.eos_token_id}
    assert div.control_argmax[row][5].item() in digits


def test_divergence_round_trips_through_safetensors_and_json(tiny, rows, forcing, tmp_path):
    vector, teacher, _ = forcing
    div = divergence_tokens(tiny, rows, teacher, vector)
    t_path, j_path = div.save(tmp_path, tiny.tokenizer)
    assert (t_path.name, j_path.name) == (DIVERGENCE_FILE, DIVERGENCE_META)
    t = load_tensors(t_path)
    assert t["offsets"].shape == (len(rows) + 1,) and t["mask"].dtype == torch.bool
    assert t["mask"].shape == t["emitted"].shape == (int(t["offsets"][-1]),)
    summary = read_json(j_path)
    assert summary["share"] == pytest.approx(div.share()) and summary["n_rows"] == len(rows)
    assert summary["meta"]["teacher"]["kind"] == "steered" and len(summary["share_by_offset"]) == max(
        div.offsets.diff()
    )
    back = Divergence.load(tmp_path)
    assert torch.equal(back.mask(), div.mask()) and back.positions() == div.positions()


def test_bad_inputs_raise_one_line_value_errors(tiny, rows, forcing, owl_vector, tmp_path):
    vector, teacher, _ = forcing
    cases = [
        (lambda: divergence_tokens(tiny, [], teacher, vector), "rows: the dataset is empty"),
        (lambda: divergence_tokens(tiny, [{"numbers": [1]}], teacher, vector), "rows: lack"),
        (lambda: divergence_tokens(tiny, rows, teacher, None), "vector: a steered teacher needs"),
        (lambda: divergence_tokens(tiny, rows, teacher, SteeringVector(torch.zeros(4, 32))), "vector: shape"),
        (lambda: divergence_tokens(tiny, rows, teacher, vector, rule="vibes"), "rule: 'vibes'"),
        (
            lambda: divergence_tokens(tiny, [{"prompt": "x", "completion": "12 5"}], teacher, vector, constrained=True),
            "outside the number grammar",
        ),
        (lambda: teacher_from_manifest({}), "manifest: no teacher.kind"),
    ]
    for call, msg in cases:
        with pytest.raises(ValueError, match=msg) as info:
            call()
        assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="dataset:"):
        dataset_divergence(tiny, tmp_path, owl_vector)


def test_divergence_figure_holds_the_share_by_offset(tiny, rows, forcing):
    from interp.plots import divergence_by_offset

    vector, teacher, _ = forcing
    summary = divergence_tokens(tiny, rows, teacher, vector).summary(tiny.tokenizer)
    fig = divergence_by_offset(summary)
    assert list(fig.data[0].y) == summary["share_by_offset"] and summary["top_divergence_tokens"][0][0] == "7"
