"""The optimization loop of one student (`interp.train.train_student`): the seeded data order,
each step's micro-batches (forward, loss on the positions that count, backward), the bf16 master
weights, the optimizer step, and the checks that refuse a diverged or collapsed student before
anything could save it. `train` decides what is trained and what is kept; this runs the steps.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor, nn

from interp.checkpoint import CHECKPOINT_DIR, save_checkpoint
from interp.distill import grammar_logits, grammar_token_ids, kd_loss
from interp.guards import CollapseGuard, check_resume
from interp.models import LoadedModel
from interp.optim import rms_nonzero, set_lr
from interp.rows import IGNORE, Example, collate, completion_hidden, completion_logits
from interp.steering import Steering, SteeringVector, steer


class TrainingDiverged(RuntimeError):
    pass


def _projection(student: LoadedModel, vector: SteeringVector | None, layers: tuple[int, ...]):
    """A context factory: the trait direction projected out at `layers` of the training copy
    (every token). Entered around each training forward and backward only, so nothing else (a
    checkpoint, the saved weights, evaluation) ever runs with the hook."""
    if not layers:
        return contextlib.nullcontext

    @contextlib.contextmanager
    def project():
        with contextlib.ExitStack() as stack:
            for l in layers:
                # strict=False: the copy's weights move away from the base the vector was built on
                stack.enter_context(steer(student, vector, Steering(layer=l, operator="project"), strict=False))
            yield

    return project


def _epoch_batches(examples: list[Example], batch_size: int, gen: torch.Generator, bucket: int = 16) -> list[list[int]]:
    """A seeded shuffle, then length bucketing: within each run of `bucket` batches, examples are
    sorted by length (little padding) and the batches are reshuffled (no short-to-long order)."""
    order = torch.randperm(len(examples), generator=gen).tolist()
    batches = []
    for start in range(0, len(order), batch_size * bucket):
        chunk = sorted(
            order[start : start + batch_size * bucket],
            key=lambda i: len(examples[i].prompt_ids) + len(examples[i].completion_ids),
        )
        group = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        batches += [group[j] for j in torch.randperm(len(group), generator=gen).tolist()]
    return batches


@torch.no_grad()
def update_rms(hf: nn.Module, base_hf: nn.Module) -> float:
    """RMS over all weights of W - W_base."""
    base = dict(base_hf.named_parameters())
    total, n = 0.0, 0
    for name, p in hf.named_parameters():  # one tensor at a time: no second copy of the weights
        total += float((p.double() - base[name].double()).pow(2).sum())
        n += p.numel()
    return math.sqrt(total / max(n, 1))


@torch.no_grad()
def weights_finite(params: list[nn.Parameter]) -> bool:
    """No inf or nan in any parameter. A tensor's sum is finite only if every element is (a nan or
    an inf anywhere makes it nan or inf), so one vectorized sum per tensor decides: 0.04 s over
    smollm2's 135M fp32 weights at one thread, where the inf-norm this replaced took 0.5 s (15% of
    a bf16 step). Large finite weights can overflow a sum, so a tensor whose sum is not finite
    gets the exact element check. The check reads the weights and changes none of them."""
    if not params:
        return True
    sums = torch.stack([p.sum().float() for p in params])
    return all(bool(torch.isfinite(params[i]).all()) for i in (~torch.isfinite(sums)).nonzero().flatten().tolist())


def trainable_state(hf: nn.Module) -> dict[str, Tensor]:
    return {n: p for n, p in hf.named_parameters() if p.requires_grad}


def _bf16_copy(hf: nn.Module) -> nn.Module:
    """The module that computes a bf16 student's forward and backward: a copy of `hf` with its
    floating-point parameters in bf16. Buffers (rotary frequencies) stay fp32, as in `weights_in`."""
    work = copy.deepcopy(hf)
    for p in work.parameters():
        if p.is_floating_point():
            p.data = p.data.to(torch.bfloat16)
    return work


@torch.no_grad()
def _copy_params(src: list[nn.Parameter], dst: list[nn.Parameter]) -> None:
    for s, d in zip(src, dst):
        d.copy_(s)


class Trainer:
    """One student's training state between optimizer steps: the fp32 student `hf` (what the
    optimizer steps and what is saved), the module that computes the forward and backward (`hf`
    itself, or its bf16 copy), the optimizer, the log, and the step reached. `hf` and `opt` come
    prepared, with a checkpoint's state already loaded at `step` (0 and [] when starting), and
    `update_rms_at` what that checkpoint measured."""

    def __init__(
        self,
        model: LoadedModel,
        hf: nn.Module,
        opt: torch.optim.Optimizer,
        examples: list[Example],
        cfg,
        out: Path,
        step: int,
        log: list,
        project_vector: SteeringVector | None = None,
        update_rms_at: dict[str, float] | None = None,
    ):
        self.model, self.hf, self.opt, self.examples, self.cfg, self.out = model, hf, opt, examples, cfg, out
        self.grammar_ids = grammar_token_ids(model.tokenizer) if cfg.objective == "kd" else None
        self.params = list(trainable_state(hf).values())
        self.masked = cfg.loss_positions != "all"
        self.per_epoch = math.ceil(len(examples) / (cfg.batch_size * cfg.grad_accum))
        self.total = self.per_epoch * cfg.epochs
        self.step, self.log = step, log
        self.resumed_at = step  # 0: started from the base
        check_resume(step, log, self.total, out / CHECKPOINT_DIR)
        self.guard = CollapseGuard(log[0]["loss"] if log else None)  # a finite loss can still be a collapse
        # after the resume: the bf16 copy starts from the checkpoint's weights
        self.work = _bf16_copy(hf) if cfg.dtype == "bf16" else hf
        self.work_params = list(trainable_state(self.work).values())
        self.grad_buffers: dict[int, Tensor] = {}  # bf16 only: the fp32 master gradients
        self.project = _projection(LoadedModel(model.name, self.work, model.tokenizer), project_vector, cfg.project_out)
        # RMS of W - W_base after step 1 ("step1"), then "final"; a resumed run gets step 1's from the checkpoint
        self.update_rms_at: dict[str, float] = dict(update_rms_at or {})
        self.tokens_seen = 0

    def pending(self) -> Iterator[tuple[int, int, list[list[int]]]]:
        """(epoch, global step, micro-batches of example indices) of every step not yet done."""
        cfg = self.cfg
        for epoch in range(cfg.epochs):
            micro = _epoch_batches(
                self.examples, cfg.batch_size, torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
            )
            for s in range(self.per_epoch):
                if epoch * self.per_epoch + s >= self.step:  # else done before the resume point
                    yield epoch, epoch * self.per_epoch + s, micro[s * cfg.grad_accum : (s + 1) * cfg.grad_accum]

    def take_step(self, epoch: int, global_step: int, group: list[list[int]]) -> None:
        """Forward and backward of the step's micro-batches, then the optimizer step; refuses a
        non-finite or collapsed loss and non-finite weights before anything could save them."""
        n_targets = sum(self.examples[i].n_counted for mb in group for i in mb)
        loss_sum, skipped = 0.0, 0
        for mb in group:
            loss, skip = self._micro_batch(mb, n_targets)
            skipped += skip
            if loss is not None:
                loss_sum += loss
        self._check_loss(loss_sum, global_step)
        if self.work is not self.hf:
            self._master_gradients()
        if skipped < len(group):
            if self.cfg.sgd_matched:
                # an all-zero gradient moves nothing whatever the rate
                set_lr(
                    self.opt, self.cfg.lr / max(rms_nonzero([p.grad for p in self.params if p.grad is not None]), 1e-30)
                )
            self.opt.step()
            if self.work is not self.hf:
                _copy_params(self.params, self.work_params)
        if global_step == 0 and self.cfg.method == "full":
            self.update_rms_at["step1"] = update_rms(self.hf, self.model.hf)
        # A finite loss can still come with an update that overflows the weights; catch it
        # here, before a checkpoint could save them as the "last good" one.
        if not weights_finite(self.params):
            raise TrainingDiverged(
                f"weights became non-finite at step {global_step + 1} (loss {loss_sum}); not "
                f"checkpointed. Last good checkpoint: {self._last_good()}; lower train.lr and rerun"
            )
        self.opt.zero_grad(set_to_none=True)
        self.step = global_step + 1
        self.log.append(
            {
                "step": self.step,
                "epoch": epoch,
                "loss": loss_sum,
                **({"skipped": skipped} if self.grammar_ids is not None or self.masked else {}),
                **({"positions": n_targets} if self.masked else {}),
                **({"lr": self.opt.param_groups[0]["lr"]} if self.cfg.sgd_matched else {}),
            }
        )

    def _micro_batch(self, mb: list[int], n_targets: int) -> tuple[float | None, bool]:
        """Forward and backward of one micro-batch: (its part of the step's loss, or None where it
        adds none; whether it was skipped)."""
        cfg, rows = self.cfg, [self.examples[i] for i in mb]
        if self.masked and not any(e.n_counted for e in rows):
            return None, True  # no position of these rows counts: no forward, no gradient
        batch, labels = collate(rows, self.model.tokenizer.pad_token_id)
        batch, labels = batch.to(self.model.device), labels.to(self.model.device)
        where = labels != IGNORE
        self.tokens_seen += int(batch.attention_mask.sum())
        with self.project():
            if cfg.objective == "kd":
                kl = kd_loss(
                    grammar_logits(self.work, completion_hidden(self.work, batch, where), self.grammar_ids),
                    torch.cat([e.counted_targets() for e in rows]),
                )
                if cfg.kd_min_kl > 0 and kl.item() / int(where.sum()) < cfg.kd_min_kl:
                    return kl.item() / n_targets, True  # teacher == student up to float noise: nothing to learn
                loss = (kl / n_targets).float()
            else:
                logits = completion_logits(self.work, batch, where)
                self.guard.observe(logits)
                loss = torch.nn.functional.cross_entropy(logits.float(), labels[where], reduction="sum") / n_targets
            loss.backward()
        return loss.item(), False

    def _check_loss(self, loss_sum: float, global_step: int) -> None:
        if not math.isfinite(loss_sum):
            raise TrainingDiverged(
                f"loss is {loss_sum} at step {global_step + 1}; weights not updated. Last good "
                f"checkpoint: {self._last_good()}; lower train.lr and rerun"
            )
        if (collapse := self.guard.check(loss_sum)) is not None:
            raise TrainingDiverged(
                f"{collapse} at step {global_step + 1}; weights not updated; lower train.lr and rerun"
            )

    def _master_gradients(self) -> None:
        """bf16: the copy's gradients become the fp32 master weights' (the optimizer steps those)."""
        for w, p in zip(self.work_params, self.params):
            if w.grad is None:
                p.grad = None  # no gradient reached it: the optimizer skips it, as in fp32
            else:  # into a buffer kept across steps: no 0.5 GB allocation per step
                p.grad = self.grad_buffers.setdefault(id(p), torch.empty_like(p))
                p.grad.copy_(w.grad)
        self.work.zero_grad(set_to_none=True)

    def _last_good(self) -> str:
        ck = self.out / CHECKPOINT_DIR
        return str(ck) if ck.exists() else "none"

    def checkpoint(self) -> None:
        save_checkpoint(
            self.out,
            trainable_state(self.hf),
            self.opt,
            self.step,
            self.log,
            asdict(self.cfg),
            {"update_rms": self.update_rms_at} if self.update_rms_at else None,
        )

    def finish(self) -> nn.Module:
        """The trained student, in eval mode, with the training copy and its buffers released."""
        self.work = self.work_params = self.grad_buffers = self.project = None
        self.hf.eval()
        return self.hf
