"""Figures: pure functions from result dicts to `plotly.graph_objects.Figure`, one shared look.

Export (HTML, PNG, SVG, PDF) is separate: `interp.export.save_figure`. `run_figures(run_dir)`
builds every figure a run directory supports (what `interp plot` writes).
"""

from interp.plots._style import TEMPLATE
from interp.plots.e1 import animal_shifts, trait_probabilities, training_loss, transfer_summary
from interp.plots.run_dir import FIGURES_DIR, detect_run, run_figures, student_logs
from interp.plots.steering import steering_sweep_heatmap
from interp.plots.toy import mnist_accuracies, mnist_sweep, theorem_alignment

__all__ = [
    "FIGURES_DIR", "TEMPLATE", "animal_shifts", "detect_run", "mnist_accuracies", "mnist_sweep", "run_figures",
    "steering_sweep_heatmap", "student_logs", "theorem_alignment", "trait_probabilities", "training_loss",
    "transfer_summary",
]
