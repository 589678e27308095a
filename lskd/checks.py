"""Range checks of the settings every front-end and recipe shares, in one place (stdlib only).

The loss functions call them, the fairseq criteria and ``lskd-vision`` call them before training starts,
and the recipes validate their grids through them, so a range is never written twice.
"""
from lskd.errors import InvalidConfig


def check_smoothing(smoothing: float) -> None:
    if not 0.0 <= smoothing < 1.0:
        raise InvalidConfig(f"label smoothing must be in [0, 1), got {smoothing}")


def check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise InvalidConfig(f"KD temperature must be > 0, got {temperature}")


def check_kd_weight(weight: float) -> None:
    if not 0.0 <= weight <= 1.0:
        raise InvalidConfig(f"KD weight must be in [0, 1], got {weight}")
