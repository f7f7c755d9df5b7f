"""Mechanism analyses: activation shifts (E2, E9), weight deltas (E3), gradient and likelihood audits (E4).

Each compares a student, its update or its training signal with a steering vector v, and judges
the number against isotropic random directions of the same dimension.
"""

from interp.analysis.activations import (
    Null,
    activation_shift,
    layer_cosines,
    load_shift,
    random_cosine_null,
    random_directions,
    save_shift,
    shift_report,
)
from interp.analysis.audit import (
    CLEAN,
    audit_confusion,
    audit_dataset,
    build_bank,
    clean_rows,
    confusion_tensors,
    load_bank,
    load_rows,
    save_confusion,
)
from interp.analysis.gradients import (
    PooledAlignment,
    coefficient_trend,
    gradient_alignment,
    load_gradients,
    pooled_alignment,
    residual_gradients,
    save_gradients,
    score_vectors,
)
from interp.analysis.likelihood import score_likelihood, steering_loglik
from interp.analysis.weights import (
    energy_along,
    energy_null,
    layer_of,
    residual_readers,
    residual_side,
    residual_writers,
    top_singular_alignment,
    weight_deltas,
    weight_report,
)

__all__ = [
    "CLEAN",
    "audit_confusion",
    "audit_dataset",
    "build_bank",
    "clean_rows",
    "confusion_tensors",
    "load_bank",
    "load_rows",
    "save_confusion",
    "Null",
    "activation_shift",
    "layer_cosines",
    "load_shift",
    "random_cosine_null",
    "random_directions",
    "save_shift",
    "shift_report",
    "PooledAlignment",
    "coefficient_trend",
    "gradient_alignment",
    "load_gradients",
    "pooled_alignment",
    "residual_gradients",
    "save_gradients",
    "score_vectors",
    "score_likelihood",
    "steering_loglik",
    "energy_along",
    "energy_null",
    "layer_of",
    "residual_readers",
    "residual_side",
    "residual_writers",
    "top_singular_alignment",
    "weight_deltas",
    "weight_report",
]
