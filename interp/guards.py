"""Training guards: a student that collapsed, or a checkpoint that cannot be the run's.

A non-finite loss is caught in `train.train_student` itself; these catch what stays finite:

- **Collapse.** A step's loss far above the first step's (`LOSS_FACTOR` x first + `LOSS_MARGIN`
  nats: a uniform output over smollm2's 49k tokens costs 10.8 nats against a first loss of
  1.2-1.5, where valid students peaked at 1.7x their first) on `LOSS_STEPS` steps in a row, since
  one hard batch is not a collapse (e4-dose's seed-4000 control student went 0.855, 1.25, 1.17,
  4.80, then 0.70 and on to 1.18 at step 40; refusing its single step had stopped the run); or
  an output that became (nearly) uniform: the mean spread of the logits over the vocabulary fell
  below `SPREAD_FLOOR` of the first step's. AdamW at lr 1e6 makes the tiny model's logits
  exactly equal after one step, at a loss (log 600) no higher than its random start, so the loss
  alone cannot see it there.
- **A checkpoint past its run.** A `trainer.json` whose step exceeds the run's total, or whose
  log does not have one entry per step, was written by another run or edited.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

LOSS_FACTOR = 3.0
LOSS_MARGIN = 1.0  # nats: keeps a kd loss that starts near 0 from tripping on float noise
LOSS_STEPS = 2  # consecutive steps above the limit: a collapsed student stays there, a hard batch does not
SPREAD_FLOOR = 1e-3


class CollapseGuard:
    """Watches one student's steps: `observe` each micro-batch's logits (sft), then `check` the
    step's loss; `check` returns why the student collapsed, or None."""

    def __init__(self, first_loss: float | None = None):
        self.first_loss = first_loss  # the first step's (kept in the log, so a resumed run has it)
        self.first_spread: float | None = None  # the first step this process saw
        self._spreads: list[float] = []
        self._high = 0  # consecutive steps above the loss limit so far

    @torch.no_grad()
    def observe(self, logits: Tensor) -> None:
        """logits: (n_positions, vocab) of one micro-batch."""
        if logits.numel():
            self._spreads.append(float((logits.amax(-1) - logits.amin(-1)).float().mean()))

    def check(self, loss: float) -> str | None:
        spread = sum(self._spreads) / len(self._spreads) if self._spreads else None
        self._spreads = []
        if not self.first_loss:  # a step with no position counted (loss 0) is no reference
            self.first_loss = loss or None
        if self.first_spread is None:
            self.first_spread = spread
        high = bool(self.first_loss and loss > LOSS_FACTOR * self.first_loss + LOSS_MARGIN)
        self._high = self._high + 1 if high else 0
        if self._high >= LOSS_STEPS:
            return (
                f"the student collapsed (loss {loss:.4g}, far above the first step's {self.first_loss:.4g} on "
                f"{self._high} steps in a row; limit {LOSS_FACTOR:g}x + {LOSS_MARGIN:g})"
            )
        if spread is not None and self.first_spread and spread < SPREAD_FLOOR * self.first_spread:
            return (
                f"the student collapsed to a uniform output (its logits span {spread:.3g} over the vocabulary, "
                f"{self.first_spread:.3g} at the first step)"
            )
        return None


def check_resume(step: int, log: list, total: int, checkpoint: Path) -> None:
    """Refuse a checkpoint whose step is not one of this run's (0 < step <= total, one log entry
    per step): resuming it would finish a different student."""
    if not isinstance(step, int) or not 0 <= step <= total or len(log) != step:
        raise ValueError(
            f"checkpoint: {checkpoint / 'trainer.json'} says step {step!r} with {len(log)} logged steps, "
            f"but this run has {total} steps; it is not this run's (edited or corrupted): delete "
            f"{checkpoint} to start over"
        )
