"""lskd core: loss and analysis formulas in plain torch, shared by every front-end."""
from lskd.losses import (
    InvalidConfig,
    KDObjective,
    KDTerms,
    check_kd_weight,
    check_smoothing,
    check_temperature,
    distillation_terms,
    fairseq_epsilon,
    kd_objective,
    label_smoothed_nll,
    topk_teacher,
)

__all__ = [
    "InvalidConfig",
    "KDObjective",
    "KDTerms",
    "check_kd_weight",
    "check_smoothing",
    "check_temperature",
    "distillation_terms",
    "fairseq_epsilon",
    "kd_objective",
    "label_smoothed_nll",
    "topk_teacher",
]
