"""Entangled numbers: whole-number scores against hand computations, a planted logit-space tie
recovered, subliminal prompting, the logit lens, dataset over-representation, files and errors."""

from __future__ import annotations

import pytest
import torch

from interp.entangle import (
    ENTANGLE_FILE,
    ENTANGLE_META,
    NUMBER_PREFIX,
    PROMPTING_FILE,
    PROMPTING_META,
    Entanglement,
    NumberPrompting,
    dataset_overrepresentation,
    entangled_numbers,
    logit_lens,
    number_distribution,
    number_logprobs,
    number_prompted_trait,
    number_system,
)
from interp.evaluate import animal_logprobs, animal_token_ids, question_prompts
from interp.models import load_model
from interp.prompts import prompted_system
from interp.runs import load_tensors, read_json
from interp.stats import two_proportion_interval
from interp.steering import Steering, SteeringVector, steer

Q = ["What is your favorite number?", "Which number do you like best?"]
NUMS = [0, 1, 7, 9, 10, 12, 99, 100, 123, 507, 999]
ANIMALS5 = ["owl", "cat", "dog", "fox", "bear"]


def _hand_scores(model, prompt: str, nums, edit_scope_len: bool = False) -> torch.Tensor:
    """log P(' n' | prompt) plus log P(next token does not start with a digit), one full forward each."""
    tok = model.tokenizer
    texts = tok.batch_decode([[i] for i in range(len(tok))])
    digit = torch.tensor([t[:1] in "0123456789" and t != "" for t in texts])
    n_ctx = len(tok(prompt, add_special_tokens=False)["input_ids"])
    out = []
    for n in nums:
        ids = tok(f"{prompt} {n}", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            lp = torch.log_softmax(model.hf(input_ids=torch.tensor([ids])).logits[0].double(), -1)
        s = sum(lp[p - 1, ids[p]] for p in range(n_ctx, len(ids)))
        out.append(float(s + lp[-1, : len(tok)][~digit].logsumexp(0)))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("name", ["tiny", "tiny-gemma"])
def test_number_logprobs_match_a_hand_computation_over_the_whole_sequence(name, tiny, tiny_gemma):
    model = tiny if name == "tiny" else tiny_gemma
    system = prompted_system("owl") * 2  # a context longer than tiny-gemma's sliding window (64)
    got = number_logprobs(model, NUMS, Q, system=system, batch_size=3)
    assert got.shape == (len(Q), len(NUMS))
    for qi, prompt in enumerate(question_prompts(model, Q, NUMBER_PREFIX, system)):
        torch.testing.assert_close(got[qi], _hand_scores(model, prompt, NUMS), rtol=0, atol=1e-4)


@pytest.mark.parametrize("scope", ["all", "generated"])
def test_number_logprobs_under_steering_match_a_steered_hand_computation(tiny, owl_vector, scope):
    s = Steering(layer=2, multiplier=2.0, scope=scope)
    got = number_logprobs(tiny, NUMS, Q[:1], context=lambda: steer(tiny, owl_vector, s))
    prompt = question_prompts(tiny, Q[:1], NUMBER_PREFIX)[0]
    with steer(tiny, owl_vector, s) as edit:
        # the prompt's own positions are unsteered under "generated", as when the teacher samples
        edit.set_prompt_lengths(len(tiny.tokenizer(prompt, add_special_tokens=False)["input_ids"]))
        want = _hand_scores(tiny, prompt, NUMS)
    torch.testing.assert_close(got[0], want, rtol=0, atol=1e-4)
    assert not torch.allclose(got[0], number_logprobs(tiny, NUMS, Q[:1])[0])


def test_whole_number_scores_form_a_sub_distribution_and_batch_size_does_not_matter(tiny):
    lp = number_logprobs(tiny, range(1000), Q[:1], batch_size=64)
    assert float(lp.exp().sum()) < 1.0
    assert float(number_distribution(lp).logsumexp(0)) == pytest.approx(0.0, abs=1e-9)
    torch.testing.assert_close(number_logprobs(tiny, range(1000), Q[:1], batch_size=7), lp, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- the planted tie


@pytest.fixture(scope="module")
def planted():
    """A fresh tiny model whose unembedding row for '7' points along ' owl', and per animal a
    vector along that animal's unembedding row (a "say <animal>" direction)."""
    model = load_model("tiny", device="cpu")
    tok = model.tokenizer
    ids = animal_token_ids(tok, ANIMALS5)
    w = model.hf.get_output_embeddings().weight
    with torch.no_grad():
        w[tok("7", add_special_tokens=False)["input_ids"][0]] = 3 * w[ids[0]]
    vectors = {}
    for a, i in zip(ANIMALS5, ids):
        v = torch.zeros(model.n_layers, model.d_model)
        v[-1] = w[i].detach() / w[i].norm()
        vectors[a] = SteeringVector(v, {"trait": a})
    return model, vectors, Steering(layer=model.n_layers - 1, multiplier=20.0, relative=False)


def test_a_planted_tie_between_a_digit_and_the_trait_word_ranks_its_number_first(planted):
    model, vectors, s = planted
    e = entangled_numbers(
        model, "owl", "vector", steering=s, vectors=vectors, animals=ANIMALS5, questions=Q[:1], progress=False
    )
    top = e.top(3)
    assert top[0]["number"] == 777  # '7' lifted at every digit: the all-7 three-digit number
    assert top[0]["percentile"] == 1.0 and top[0]["z"] > 3 and top[0]["effect"] > top[0]["null_max"]
    assert all("7" in str(r["number"]) for r in top)
    shuffled = e.shuffled_top(5)
    assert shuffled["rank"] == 1 and shuffled["target"] > 2 * max(
        v for a, v in shuffled["by_animal"].items() if a != "owl"
    )
    other = entangled_numbers(
        model, "cat", "vector", steering=s, vectors=vectors, animals=ANIMALS5, questions=Q[:1], progress=False
    )
    assert 777 not in [r["number"] for r in other.top(10)]


def test_the_logit_lens_of_the_planted_vector_singles_out_the_tied_digit(planted):
    model, vectors, _ = planted
    lens = logit_lens(model, vectors["owl"], layer=model.n_layers - 1, n_random=64)
    z = dict(zip(lens.tokens, lens.z.tolist()))
    assert max(z, key=z.get) == "7" and z["7"] > 5
    assert lens.top_tokens[0][0] == "7" and lens.top_tokens[1][0] == " owl"
    rows = {r["token"]: r for r in lens.summary()["tokens"]}
    assert rows["7"]["z_vs_random"] > 3 and rows["7"]["percentile"] > 0.99
    cat = logit_lens(model, vectors["cat"], layer=model.n_layers - 1, n_random=64)
    # '7' has a 3x longer row, so any direction moves it more: compare with random directions
    assert abs({r["token"]: r for r in cat.summary()["tokens"]}["7"]["z_vs_random"]) < 3
    # a raw tensor gives the same lens as the vector's direction
    raw = logit_lens(model, vectors["owl"].vectors[-1], n_random=64)
    torch.testing.assert_close(raw.z, lens.z)


# ----------------------------------------------------------------------------- prompt condition, files


@pytest.fixture(scope="module")
def prompt_entanglement(tiny):
    return entangled_numbers(
        tiny, "owl", "prompt", animals=["owl", "cat", "dog"], questions=Q, numbers=range(40), progress=False
    )


def test_prompt_condition_effects_are_the_trait_prompt_minus_neutral_distributions(tiny, prompt_entanglement):
    e = prompt_entanglement
    assert e.logprobs.shape == (3, len(Q), 40) and e.neutral.shape == (len(Q), 40)
    owl = number_logprobs(tiny, range(40), Q, system=prompted_system("owl"))
    torch.testing.assert_close(e.logprobs[0], owl)
    want = number_distribution(owl) - number_distribution(number_logprobs(tiny, range(40), Q))
    torch.testing.assert_close(e.effects()[0], want, rtol=0, atol=1e-5)  # float32 logits, computed in other batches
    torch.testing.assert_close(e.specific(), e.effects()[0] - e.effects()[1:].mean(0))
    top = e.top(5)
    assert [r["specific"] for r in top] == sorted((r["specific"] for r in top), reverse=True)


def test_entanglement_round_trips_through_safetensors_and_json(tmp_path, prompt_entanglement):
    e = prompt_entanglement
    t_path, j_path = e.save(tmp_path, k=5)
    assert t_path.name == ENTANGLE_FILE and j_path.name == ENTANGLE_META
    t = load_tensors(t_path)
    assert t["effects"].shape == (3, 40) and t["logprobs"].shape == (3, len(Q), 40)
    summary = read_json(j_path)
    assert summary["animal"] == "owl" and len(summary["top"]) == 5 and summary["meta"]["questions"] == Q
    back = Entanglement.load(tmp_path)
    assert back.animals == e.animals and back.condition == "prompt"
    torch.testing.assert_close(back.effects(), e.effects())


# ----------------------------------------------------------------------------- number -> trait


def test_number_prompting_scores_the_number_prompt_against_neutral_and_random_numbers(tiny):
    r = number_prompted_trait(tiny, 87, "owl", Q, animals=ANIMALS5, null_numbers=3, seed=1)
    assert r.prompted.shape == (len(Q), 5) and r.null.shape == (3, len(Q), 5)
    assert 87 not in r.null_numbers and len(set(r.null_numbers)) == 3
    assert (
        r.null_numbers
        == number_prompted_trait(tiny, 87, "owl", Q, animals=ANIMALS5, null_numbers=3, seed=1).null_numbers
    )
    torch.testing.assert_close(r.prompted, animal_logprobs(tiny, Q, ANIMALS5, system=number_system(87)).double())
    torch.testing.assert_close(r.neutral, animal_logprobs(tiny, Q, ANIMALS5).double())
    s = r.summary(n_boot=200)
    shift = (r.prompted[:, 0] - r.neutral[:, 0]).mean()
    assert s["shift"]["value"]["mean"] == pytest.approx(float(shift))
    assert len(s["shift"]["null"]) == 3 and 0 <= s["shift"]["percentile"] <= 1
    assert s["ratio"] == pytest.approx(s["prob_prompted"]["mean"] / s["prob_neutral"]["mean"])
    assert "87" in number_system(87)


def test_number_prompting_and_the_lens_round_trip_through_their_files(tiny, tiny_gemma, owl_vector, tmp_path):
    r = number_prompted_trait(tiny, 87, "owl", Q, animals=ANIMALS5, null_numbers=2)
    t_path, j_path = r.save(tmp_path)
    assert (t_path.name, j_path.name) == (PROMPTING_FILE, PROMPTING_META)
    back = NumberPrompting.load(tmp_path)
    assert back.null_numbers == r.null_numbers and torch.equal(back.null, r.null) and back.animals == ANIMALS5
    assert read_json(j_path)["shift"]["value"]["mean"] == pytest.approx(r.summary()["shift"]["value"]["mean"])
    lens = logit_lens(tiny, owl_vector, layer=2, n_random=8)
    saved = read_json(lens.save(tmp_path))
    assert [t["token"] for t in saved["tokens"]] == lens.tokens and saved["layer"] == 2
    # Gemma's final norm and tied unembedding are found the same way
    g = logit_lens(tiny_gemma, torch.randn(tiny_gemma.d_model), n_random=8)
    assert g.z.shape == (len(g.tokens),) and torch.isfinite(g.z).all()


# ----------------------------------------------------------------------------- datasets and intervals


def test_two_proportion_interval_matches_newcombes_worked_example():
    r = two_proportion_interval(56, 70, 48, 80)  # Newcombe (1998), method 10: 0.0524 to 0.3339
    assert r["mean"] == pytest.approx(0.2)
    assert r["ci95"][0] == pytest.approx(0.0524, abs=1e-4) and r["ci95"][1] == pytest.approx(0.3339, abs=1e-4)
    with pytest.raises(ValueError, match="k_b, n_b"):
        two_proportion_interval(1, 10, 5, 0)


def test_dataset_overrepresentation_counts_each_number_among_all_numbers():
    rows = [{"numbers": [87, 87, 3]}, {"completion": "87, 5, 6"}]
    control = [{"numbers": [1, 2, 3, 4]}, {"numbers": [87, 9]}]
    r = dataset_overrepresentation(rows, control, [87, 3], n_boot=200)
    assert r["n_numbers"] == 6 and r["n_numbers_control"] == 6
    n87 = r["per_number"][0]
    assert (n87["k_a"], n87["k_b"]) == (3, 1) and n87["mean"] == pytest.approx(3 / 6 - 1 / 6)
    assert r["pooled"]["k_a"] == 4 and r["pooled"]["k_b"] == 2
    lo, hi = r["pooled"]["diff_ci95_row_bootstrap"]
    assert lo <= r["pooled"]["mean"] <= hi
    with pytest.raises(ValueError, match="control_rows: the dataset is empty"):
        dataset_overrepresentation(rows, [], [87])


# ----------------------------------------------------------------------------- errors


def test_bad_inputs_raise_one_line_value_errors(tiny, owl_vector):
    s = Steering(layer=2)
    cases = [
        (lambda: entangled_numbers(tiny, "unicorn", numbers=range(3)), "animal: 'unicorn'"),
        (lambda: entangled_numbers(tiny, "owl", "dream", numbers=range(3)), "condition: 'dream'"),
        (lambda: entangled_numbers(tiny, "owl", "vector", numbers=range(3)), "steering: the vector condition"),
        (
            lambda: entangled_numbers(
                tiny, "owl", "vector", steering=s, vectors={"owl": owl_vector}, animals=ANIMALS5, numbers=range(3)
            ),
            "vectors: no vector for",
        ),
        (
            lambda: entangled_numbers(
                tiny,
                "owl",
                "vector",
                steering=s,
                animals=["owl", "cat", "dog"],
                numbers=range(3),
                vectors={a: SteeringVector(torch.zeros(4, 32)) for a in ("owl", "cat", "dog")},
            ),
            "vector: shape",
        ),
        (lambda: number_logprobs(tiny, []), "numbers: empty"),
        (lambda: number_logprobs(tiny, [3, -1]), "numbers: must be"),
        (lambda: logit_lens(tiny, torch.zeros(32)), "vector: has 32 entries"),
        (lambda: logit_lens(tiny, SteeringVector(torch.zeros(4, 32)), layer=1), "vector: shape"),
        (lambda: logit_lens(tiny, owl_vector), "layer: pass"),
        (lambda: logit_lens(tiny, owl_vector, layer=9), "layer: pass"),
        (lambda: logit_lens(tiny, owl_vector, ["owl owl owl"], layer=1), "tokens: 'owl owl owl'"),
        (lambda: number_prompted_trait(tiny, 5, "unicorn", Q), "animal: 'unicorn'"),
        (lambda: dataset_overrepresentation([], [{"numbers": [1]}], [1]), "rows: the dataset is empty"),
    ]
    for call, msg in cases:
        with pytest.raises(ValueError, match=msg) as info:
            call()
        assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- figures


def test_figures_hold_the_summaries_numbers(planted, prompt_entanglement, tiny):
    from interp.plots import entangled_numbers_bars, logit_lens_bars, number_prompting_shift
    from interp.plots._style import TEMPLATE

    summary = prompt_entanglement.summary(k=5)
    fig = entangled_numbers_bars(summary)
    assert list(fig.data[0].x) == [str(r["number"]) for r in summary["top"]]
    assert list(fig.data[0].y) == [r["effect"] for r in summary["top"]]
    assert list(fig.data[1].error_y.array) == pytest.approx([r["null_max"] - r["null_mean"] for r in summary["top"]])
    model, vectors, _ = planted
    lens = logit_lens(model, vectors["owl"], layer=model.n_layers - 1, n_random=16).summary()
    fig2 = logit_lens_bars(lens)
    assert list(fig2.data[0].y) == [r["z"] for r in lens["tokens"]] and "7" in list(fig2.data[0].x)
    prompting = number_prompted_trait(tiny, 87, "owl", Q, animals=ANIMALS5, null_numbers=2).summary(n_boot=100)
    fig3 = number_prompting_shift(prompting)
    assert (
        fig3.data[0].y[0] == prompting["shift"]["value"]["mean"] and list(fig3.data[1].y) == prompting["shift"]["null"]
    )
    for f in (fig, fig2, fig3):
        assert f.layout.template.layout.font.family.startswith("Inter") and f.layout.xaxis.title.text
    assert TEMPLATE == "interp"
