"""lskd core: loss and analysis formulas in plain torch, shared by every front-end.

The loss names are imported on first use, so that the data-preparation tools in this package start
without loading torch.
"""
import importlib

_LOSSES = (
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
)
__all__ = list(_LOSSES)


def __getattr__(name):
    if name == "InvalidConfig":
        return importlib.import_module("lskd.errors").InvalidConfig
    if name in _LOSSES:
        return getattr(importlib.import_module("lskd.losses"), name)
    raise AttributeError(f"module 'lskd' has no attribute {name!r}")
