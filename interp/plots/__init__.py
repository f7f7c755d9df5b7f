"""Figures: pure functions from result dicts to `plotly.graph_objects.Figure`, one shared look.

Export (HTML, PNG, SVG, PDF) is separate: `interp.export.save_figure`. `run_figures(run_dir)`
builds every figure a run directory supports (what `interp plot` writes).
"""

from interp.plots._style import TEMPLATE
from interp.plots.analysis import (
    analysis_figures,
    audit_ranking,
    confusion_figure,
    gradient_audit,
    shift_cosines,
    weight_energy_z,
)
from interp.plots.e1 import animal_shifts, trait_probabilities, training_loss, transfer_summary
from interp.plots.entangle import (
    divergence_by_offset,
    entangled_numbers_bars,
    logit_lens_bars,
    number_prompting_shift,
)
from interp.plots.run_dir import FIGURES_DIR, detect_run, run_figures, student_logs
from interp.plots.steering import steering_sweep_heatmap
from interp.plots.sweep import sweep_cost, sweep_figures, sweep_ratio, sweep_transfer
from interp.plots.toy import mnist_accuracies, mnist_sweep, theorem_alignment

__all__ = [
    "FIGURES_DIR",
    "TEMPLATE",
    "analysis_figures",
    "animal_shifts",
    "audit_ranking",
    "confusion_figure",
    "detect_run",
    "divergence_by_offset",
    "entangled_numbers_bars",
    "gradient_audit",
    "logit_lens_bars",
    "mnist_accuracies",
    "mnist_sweep",
    "number_prompting_shift",
    "run_figures",
    "shift_cosines",
    "steering_sweep_heatmap",
    "student_logs",
    "sweep_cost",
    "sweep_figures",
    "sweep_ratio",
    "sweep_transfer",
    "theorem_alignment",
    "training_loss",
    "trait_probabilities",
    "transfer_summary",
    "weight_energy_z",
]
