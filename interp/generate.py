"""Batched sampling: a lean KV-cache decode loop with explicit generators and positions.

Left padding with explicit position ids (a padded row samples exactly as it would alone), one
`torch.Generator` per batch seeded from (seed, batch index), only the last position's logits
computed, and an optional number grammar: decoding constrained to digits, ", " and end-of-turn,
so every sample parses and a trait can travel only through which numbers are chosen.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
from torch import Tensor
from interp.progress import tqdm

from interp import batching
from interp.models import DTYPES, LoadedModel, weights_in


@dataclass(frozen=True)
class SampleConfig:
    """max_new_tokens: tokens per completion at most (10 numbers in the grammar need 49).
    temperature: 1.0 samples the model's distribution; 0 is greedy.
    batch_size: prompts decoded together.
    constrained: restrict decoding to the number grammar (every sample passes the filter).
    max_numbers: numbers per completion allowed by the grammar.
    min_prob: drop tokens whose probability is below this floor before sampling (0 = off).
    seed: base seed; batch b uses a generator seeded with (seed, b).
    dtype: the weights' dtype while sampling: None keeps the model's own; "fp32" (the reference
      arithmetic) or "bf16" (about 1.8x faster on a CPU with bf16 matmul; other samples, the
      same distribution within a measured tolerance: README "Teachers and data") cast it for the
      call and restore it bit for bit afterwards.
    """

    max_new_tokens: int = 50
    temperature: float = 1.0
    batch_size: int = 32
    constrained: bool = False
    max_numbers: int = 10
    min_prob: float = 0.0
    seed: int = 0
    dtype: str | None = None

    def __post_init__(self) -> None:
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"dtype: {self.dtype!r} is not one of {sorted(DTYPES)}; use 'fp32' or 'bf16'")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: {self.max_new_tokens} must be >= 1")
        if self.temperature < 0:
            raise ValueError(f"temperature: {self.temperature} must be >= 0")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: {self.batch_size} must be >= 1")
        if self.max_numbers < 1:
            raise ValueError(f"max_numbers: {self.max_numbers} must be >= 1")
        if not 0 <= self.min_prob < 1:
            raise ValueError(f"min_prob: {self.min_prob} must be in [0, 1)")


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    finished: bool  # ended with an end-of-turn token before the limit
    # (len(token_ids) + 1, 13): the teacher's log-probabilities over the number-grammar tokens at
    # each step (the last row is the end-of-turn step), renormalised over those 13 tokens at
    # temperature 1; the targets of `kd` distillation. Recorded when `sample(record_grammar=True)`.
    grammar_logprobs: Tensor | None = None


def stop_token_ids(tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id}
    for t in ("<|im_end|>", "<end_of_turn>", "<|endoftext|>", "<eos>"):
        i = tokenizer.convert_tokens_to_ids(t)
        if isinstance(i, int) and i != tokenizer.unk_token_id and i is not None:
            ids.add(i)
    return sorted(i for i in ids if i is not None)


class NumberGrammar:
    """Per-row state machine over 13 tokens: '0'-'9', ',', ' ', end-of-turn.

    number := digit{1,3}; sequence := number (", " number){0,max-1} end. Sampling renormalises
    the model's distribution over the tokens the state allows.
    """

    def __init__(self, tokenizer, end_id: int, max_numbers: int = 10):
        def single(ch: str) -> int:
            ids = tokenizer(ch, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise ValueError(
                    f"constrained: {ch!r} is {len(ids)} tokens in this tokenizer; the number grammar needs single-token digits, ',' and ' '"
                )
            return ids[0]

        self.digit_ids = [single(str(d)) for d in range(10)]
        self.comma_id, self.space_id, self.end_id = single(","), single(" "), end_id
        self.token_ids = torch.tensor(self.digit_ids + [self.comma_id, self.space_id, end_id])
        self.max_numbers = max_numbers

    def start(self, batch: int) -> dict[str, Tensor]:
        z = torch.zeros(batch, dtype=torch.long)
        return {"phase": z.clone(), "digits": z.clone(), "numbers": z.clone()}  # phase 0: need digit

    def allowed(self, st: dict[str, Tensor]) -> Tensor:
        """(batch, 13) bool: which grammar tokens each row may emit next."""
        b = st["phase"].shape[0]
        a = torch.zeros(b, 13, dtype=torch.bool)
        need_digit = st["phase"] == 0
        in_num = st["phase"] == 1
        a[:, :10] = need_digit[:, None] | (in_num & (st["digits"] < 3))[:, None]
        a[:, 10] = in_num & (st["numbers"] < self.max_numbers)
        a[:, 11] = st["phase"] == 2
        a[:, 12] = in_num
        return a

    def advance(self, st: dict[str, Tensor], choice: Tensor) -> None:
        """`choice` indexes the 13 grammar tokens."""
        is_digit, is_comma, is_space = choice < 10, choice == 10, choice == 11
        st["numbers"] += (is_digit & (st["phase"] == 0)).long()
        st["digits"] = torch.where(is_digit, st["digits"] + 1, torch.zeros_like(st["digits"]))
        st["phase"] = torch.where(is_digit, 1, torch.where(is_comma, 2, torch.where(is_space, 0, st["phase"])))


# How a free (whole-vocabulary) step draws its token. 2: inverse CDF, one uniform per row.
# torch.multinomial draws an exponential for every vocabulary entry, 31 ms a step at 32 x 49k on a
# 2-core CPU (a quarter of a bf16 step); the inverse CDF takes under 2 ms and samples the same
# distribution. Grammar steps (13 tokens) keep torch.multinomial, so constrained datasets stay
# byte-identical with earlier runs; caches of free samples carry this number in their keys.
FREE_SAMPLER = 2


def _pick(logits: Tensor, cfg: SampleConfig, gen: torch.Generator, whole_vocab: bool = False) -> Tensor:
    """Sample one index per row from (batch, n) logits (-inf = forbidden)."""
    if cfg.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / cfg.temperature, dim=-1)
    if cfg.min_prob > 0:
        keep = probs >= cfg.min_prob
        keep[torch.arange(len(probs)), probs.argmax(-1)] = True  # never drop every token
        probs = probs * keep
    if whole_vocab:
        return draw_inverse_cdf(probs, gen)
    return torch.multinomial(probs, 1, generator=gen).squeeze(-1)


def draw_inverse_cdf(probs: Tensor, gen: torch.Generator) -> Tensor:
    """One index per row of (batch, n) unnormalised probabilities: the first whose cumulative sum
    (float64) exceeds a uniform draw scaled to the row's total. Exact; zero entries are never drawn."""
    cdf = probs.to(torch.float64).cumsum(-1)
    u = torch.rand(len(probs), 1, generator=gen, dtype=torch.float64, device=probs.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_max(probs.shape[-1] - 1)


@torch.no_grad()
def sample(
    model: LoadedModel,
    prompts: list[str],
    cfg: SampleConfig = SampleConfig(),
    context: Callable[[], ContextManager] | None = None,
    progress: bool = True,
    desc: str = "sampling",
    record_grammar: bool = False,
) -> tuple[list[Completion], dict]:
    """Sample one completion per rendered prompt. `context()` (e.g. a steering context) wraps each
    batch's whole decode. `record_grammar` keeps the teacher's distribution over the 13 grammar
    tokens at every step (`Completion.grammar_logprobs`), at no extra forward cost.
    Returns the completions and throughput statistics (wall time, and its split into the prompts'
    forward, `prefill_s`, and the `steps` one-token forwards with their sampling, `decode_s`)."""
    tok = model.tokenizer
    stops = torch.tensor(stop_token_ids(tok))
    end_id = stops[0].item() if tok.eos_token_id is None else tok.eos_token_id
    grammar = NumberGrammar(tok, end_id, cfg.max_numbers) if cfg.constrained or record_grammar else None
    out: list[Completion] = []
    n_tokens, t0 = 0, time.perf_counter()
    phases = {"prefill_s": 0.0, "decode_s": 0.0, "prompt_tokens": 0, "padded_prompt_tokens": 0, "steps": 0}
    bar = tqdm(total=len(prompts), desc=desc, unit="seq", disable=not progress, leave=False)
    with weights_in(model, cfg.dtype) if cfg.dtype else contextlib.nullcontext():
        for b_idx, sl in enumerate(batching.chunks(len(prompts), cfg.batch_size)):
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + b_idx)
            batch = batching.encode(tok, prompts[sl], side="left").to(model.device)
            with context() if context is not None else contextlib.nullcontext():
                rows, produced, timing = _decode(model, batch, cfg, gen, stops, grammar, record_grammar)
            for k, v in timing.items():
                phases[k] += v
            phases["prompt_tokens"] += int(batch.attention_mask.sum())
            phases["padded_prompt_tokens"] += batch.input_ids.numel()
            out += rows
            n_tokens += produced
            bar.update(len(rows))
            bar.set_postfix(tok_s=f"{n_tokens / (time.perf_counter() - t0):.0f}")
    bar.close()
    wall = time.perf_counter() - t0
    return out, {
        "new_tokens": n_tokens,
        "wall_s": round(wall, 3),
        "tokens_per_s": round(n_tokens / max(wall, 1e-9), 1),
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in phases.items()},
    }


class _Head:
    """Next-token logits at the last position; under the grammar only its 13 vocabulary rows are
    projected (the full 49k-row projection is a fifth of a SmolLM2 decoding step), so forward
    hooks on `lm_head` are not called there: edit the residual stream instead."""

    def __init__(self, hf, rows: Tensor | None):
        self.hf = hf
        self.rows = rows
        if rows is not None:
            out = hf.get_output_embeddings()
            self.weight = out.weight[rows.to(out.weight.device)]
            self.bias = out.bias[rows.to(out.weight.device)] if getattr(out, "bias", None) is not None else None
            self.cap = getattr(hf.config.get_text_config(), "final_logit_softcapping", None)

    def __call__(self, ids, mask, pos, cache) -> Tensor:
        if self.rows is None:
            return self.hf(
                input_ids=ids,
                attention_mask=mask,
                position_ids=pos,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]
        h = self.hf.get_decoder()(
            input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True
        ).last_hidden_state[:, -1]
        logits = torch.nn.functional.linear(h, self.weight, self.bias)
        return torch.tanh(logits / self.cap) * self.cap if self.cap else logits


def _decode(model, batch, cfg, gen, stops, grammar, record) -> tuple[list[Completion], int, dict]:
    from transformers import DynamicCache

    hf, tok = model.hf, model.tokenizer
    bsz = batch.input_ids.shape[0]
    # A KV cache preallocated for the whole decode gave the same logits to the bit but no speed
    # here (0.95-1.05x over 2 x 8 alternating runs, 2-core CPU): attention over its strided views
    # costs what the per-step concatenation saves. So transformers' DynamicCache it is.
    cache = DynamicCache()
    mask = batch.attention_mask
    pos = batch.position_ids[:, -1:]
    head = _Head(hf, grammar.token_ids if cfg.constrained else None)
    t0 = time.perf_counter()
    logits = head(batch.input_ids, mask, batch.position_ids, cache)
    t1 = time.perf_counter()
    done = torch.zeros(bsz, dtype=torch.bool)
    ended = torch.zeros(bsz, dtype=torch.bool)
    tokens = torch.full((bsz, cfg.max_new_tokens), tok.pad_token_id, dtype=torch.long)
    recorded = torch.zeros(bsz, cfg.max_new_tokens, 13) if record else None
    state = grammar.start(bsz) if cfg.constrained else None
    produced = 0
    for step in range(cfg.max_new_tokens):
        logits = logits.float().cpu()
        if record:
            rows13 = logits if cfg.constrained else logits[:, grammar.token_ids]
            recorded[:, step] = torch.log_softmax(rows13, dim=-1)
        if cfg.constrained:
            sub = logits.masked_fill(~grammar.allowed(state), float("-inf"))  # logits are the 13 grammar tokens
            choice = _pick(sub, cfg, gen)
            grammar.advance(state, choice)
            nxt = grammar.token_ids[choice]
        else:
            nxt = _pick(logits, cfg, gen, whole_vocab=True)
        nxt = torch.where(done, torch.full_like(nxt, tok.pad_token_id), nxt)
        tokens[:, step] = nxt
        produced += int((~done).sum())
        is_stop = torch.isin(nxt, stops) & ~done
        ended |= is_stop
        done |= is_stop
        if done.all() or step == cfg.max_new_tokens - 1:
            break
        mask = torch.cat([mask, mask.new_ones(bsz, 1)], dim=1)  # finished rows decode on, ignored
        pos = pos + 1
        logits = head(nxt[:, None].to(model.device), mask, pos, cache)
    timing = {"prefill_s": t1 - t0, "decode_s": time.perf_counter() - t1, "steps": step + 1}
    rows = []
    for i in range(bsz):
        ids = tokens[i].tolist()
        cut = next((k for k, t in enumerate(ids) if t in stops.tolist()), None)
        body = ids[:cut] if cut is not None else [t for t in ids if t != tok.pad_token_id]
        lp = recorded[i, : len(body) + 1].clone() if record else None
        rows.append(Completion(tok.decode(body, skip_special_tokens=True), body, bool(ended[i]), lp))
    return rows, produced, timing
