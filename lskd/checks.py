"""Range checks of the settings every front-end and recipe shares, in one place (stdlib only).

The loss functions call them, the fairseq criteria and ``lskd-vision`` call them before training starts,
and the recipes validate their grids through them, so a range is never written twice.
"""

import math

from lskd.errors import InvalidConfig

# The KD term is T² times a cross-entropy summed over a batch's tokens. T² = 1e24 leaves a factor 1e14 of
# float32's range (3.4e38) for that sum (tokens × nats), more than any batch needs; the paper stops at 64.
MAX_TEMPERATURE = 1e12


def check_smoothing(smoothing: float) -> None:
    if not 0.0 <= smoothing < 1.0:
        raise InvalidConfig(f"label smoothing must be in [0, 1), got {smoothing}")


def check_temperature(temperature: float) -> None:
    if not math.isfinite(temperature):
        raise InvalidConfig(f"KD temperature must be a finite number, got {temperature}")
    if not temperature > 0:
        raise InvalidConfig(f"KD temperature must be > 0, got {temperature}")
    if temperature > MAX_TEMPERATURE:
        raise InvalidConfig(
            f"KD temperature must be <= {MAX_TEMPERATURE:g} (the KD term is scaled by T², and beyond that a batch's "
            f"loss can leave float32's range), got {temperature:g}"
        )


def check_kd_weight(weight: float) -> None:
    if not 0.0 <= weight <= 1.0:
        raise InvalidConfig(f"KD weight must be in [0, 1], got {weight}")


def check_topk(k: int, vocabulary: int, flag: str) -> None:
    """A top-k teacher keeps k of the target vocabulary's entries: 1 <= k <= V."""
    if not 1 <= k <= vocabulary:
        raise InvalidConfig(
            f"{flag} must be in [1, {vocabulary}] (the target vocabulary has {vocabulary} symbols), got {k}"
        )


# The transfers lskd.divergences implements, named here so that planning a grid needs no torch.
DIVERGENCES = ("kl", "reverse_kl", "jsd", "tvd", "skew_kl", "skew_reverse_kl")


def check_divergence(divergence: str) -> None:
    if divergence not in DIVERGENCES:
        raise InvalidConfig(f"KD divergence must be one of {', '.join(DIVERGENCES)}, got {divergence!r}")


def check_open_unit(value: float, name: str) -> None:
    """β and skew weigh two distributions; 0 and 1 are the plain KLs, which have their own names."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 < value < 1.0):
        raise InvalidConfig(f"{name} must be in (0, 1) exclusive, got {value}")
