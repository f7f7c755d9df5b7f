"""Teacher-forced rows: prompt and completion tokens, labels only where a completion token is
predicted, and logits computed only at those positions."""

from __future__ import annotations

import pytest
import torch

from interp.rows import IGNORE, Example, build_examples, collate, completion_logits


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return [{"prompt": f"Continue: {i}, {2 * i + 1}, {i * i % 97}", "completion": "1, 2, 3"} for i in range(4)]


def test_collate_puts_targets_only_on_completion_positions():
    examples = [Example([10, 11, 12], [20, 21, 2]), Example([10, 11], [22, 2])]
    batch, targets = collate(examples, pad_id=2)
    assert batch.input_ids.tolist() == [[10, 11, 12, 20, 21, 2], [10, 11, 22, 2, 2, 2]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]
    # position t is trained to predict token t+1, and only when t+1 is a completion token
    assert targets.tolist() == [[-100, -100, 20, 21, 2, -100], [-100, 22, 2, -100, -100, -100]]


def test_collate_targets_are_the_next_completion_tokens_on_real_data(tiny, rows):
    examples = build_examples(tiny, rows[:4], max_len=192)
    batch, targets = collate(examples, tiny.tokenizer.pad_token_id)
    for i, e in enumerate(examples):
        t = targets[i]
        assert (t[: len(e.prompt_ids) - 1] == IGNORE).all()  # every prompt position is ignored
        assert (t[len(e.prompt_ids) + len(e.completion_ids) - 1 :] == IGNORE).all()
        kept = (t != IGNORE).nonzero().squeeze(-1)
        assert batch.input_ids[i, kept + 1].tolist() == t[kept].tolist() == e.completion_ids


def test_build_examples_renders_the_chat_prompt_and_ends_the_completion(tiny, rows):
    tok = tiny.tokenizer
    (e,) = build_examples(tiny, rows[:1], max_len=192)
    assert tok.decode(e.prompt_ids) == tiny.chat([{"role": "user", "content": rows[0]["prompt"]}])
    assert e.completion_ids[-1] == tok.eos_token_id
    assert tok.decode(e.completion_ids[:-1]) == "1, 2, 3"
    (cut,) = build_examples(tiny, rows[:1], max_len=20)
    assert len(cut.prompt_ids) + len(cut.completion_ids) == 20
    assert cut.prompt_ids == e.prompt_ids[-len(cut.prompt_ids) :]  # cut from the left
    with pytest.raises(ValueError, match="max_len"):
        build_examples(tiny, rows[:1], max_len=len(e.completion_ids))


def test_completion_logits_equal_the_full_forward_at_completion_positions(tiny, rows):
    batch, targets = collate(build_examples(tiny, rows[:3], 192), tiny.tokenizer.pad_token_id)
    where = targets != IGNORE
    with torch.no_grad():
        got = completion_logits(tiny.hf, batch, where)
        full = tiny.hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    torch.testing.assert_close(got, full[where], atol=1e-5, rtol=1e-5)


def test_the_positions_that_count_follow_the_loss_mask():
    e = Example(
        [1, 2], [5, 6, 7], teacher_logprobs=torch.arange(6.0).reshape(3, 2), loss_mask=torch.tensor([True, False, True])
    )
    assert e.n_counted == 2 and Example([1], [5, 6]).n_counted == 2
    assert e.counted_targets().tolist() == [[0.0, 1.0], [4.0, 5.0]]
    _, labels = collate([e], pad_id=0)
    assert labels.tolist() == [[IGNORE, 5, IGNORE, 7, IGNORE]]  # the masked position predicts nothing
