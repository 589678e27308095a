"""Every check of a setting's value, in one place (stdlib only): the front-ends, the recipes and the core share
these, so a range or an error's wording is never written twice.

- Range checks of a number (``check_smoothing``, ``check_temperature``, ``check_open_unit``...): the loss
  functions call them, the fairseq criteria and ``lskd-vision`` call them before training starts, and the
  recipes through ``through``.
- ``check_choice``: a value among fixed names (``--device``, a run's kind, a KD mode).
- Checks of a setting's text (a recipe's environment variable or flag): ``integer``, ``number``, ``choice``,
  ``optional``, ``existing``, ``through`` each make a ``check(text)``.
- Space-separated lists of a grid axis (``words``, ``numbers``, ``seeds``, ``members``): each value checked and
  none repeated; the parsed values are returned.
"""

import math
import os
import re
from typing import Callable, Sequence

from lskd.errors import InvalidConfig

# The KD term is T² times a cross-entropy summed over a batch's tokens. T² = 1e24 leaves a factor 1e14 of
# float32's range (3.4e38) for that sum (tokens × nats), more than any batch needs; the paper stops at 64.
MAX_TEMPERATURE = 1e12

TextCheck = Callable[[str], None]


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
    """A divergence's β and skew weigh two distributions; 0 and 1 are the plain KLs, which have their own
    names (``lskd.divergences``)."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 < value < 1.0):
        raise InvalidConfig(f"{name} must be in (0, 1) exclusive, got {value}")


def check_at_least(flag: str, value: float, minimum: float) -> None:
    """A count or rate with a floor (a beam, a batch's tokens, epochs); ``flag`` names where it came from."""
    if value < minimum:
        raise InvalidConfig(f"{flag} must be >= {minimum}, got {value}")


def check_choice(what: str, value: str, options: Sequence[str]) -> None:
    """``what`` names the value in the error: a flag (``--device``) or a description (``run kind``)."""
    if value not in options:
        raise InvalidConfig(f"{what} {value!r}: expected one of {', '.join(options)}")


# Checks of a setting's text; the recipes prefix each error with the setting and its value.


def integer(minimum: int) -> TextCheck:
    def check(text: str) -> None:
        if not re.fullmatch(r"-?[0-9]+", text) or int(text) < minimum:
            raise InvalidConfig(f"expected an integer >= {minimum}")

    return check


def number(low: float, high: float = math.inf, high_open: bool = False) -> TextCheck:
    def check(text: str) -> None:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (low <= value and (value < high if high_open else value <= high)):
            raise InvalidConfig(f"expected a number in [{low:g}, {high:g}{')' if high_open else ']'}")

    return check


def choice(*options: str) -> TextCheck:
    def check(text: str) -> None:
        if text not in options:
            raise InvalidConfig(
                f"expected {' or '.join(options) if len(options) < 3 else 'one of: ' + ' '.join(options)}"
            )

    return check


def optional(inner: TextCheck) -> TextCheck:
    """``''`` means "not set" and passes; any other text must pass ``inner``."""

    def check(text: str) -> None:
        if text:
            inner(text)

    return check


def existing(kind: str, what: str) -> TextCheck:
    """``kind``: ``folder`` or ``file``; ``what`` says which one the error expected."""

    def check(text: str) -> None:
        if not (os.path.isdir(text) if kind == "folder" else os.path.isfile(text)):
            raise InvalidConfig(f"no such {kind} (expected {what})")

    return check


def through(core_check: Callable[[float], None]) -> TextCheck:
    """A range check of a number applied to a setting's text."""

    def check(text: str) -> None:
        try:
            value = float(text)
        except ValueError:
            raise InvalidConfig("expected a number") from None
        core_check(value)

    return check


smoothing = through(check_smoothing)
kd_weight = through(check_kd_weight)


# Space-separated lists (a grid's axes); ``name`` is the setting the text came from.


def words(name: str, text: str) -> list[str]:
    values = text.split()
    if not values:
        raise InvalidConfig(f"{name} is empty: expected a space-separated list")
    if len(set(values)) != len(values):
        raise InvalidConfig(f"{name} {text!r}: a value is repeated")
    return values


def numbers(name: str, text: str, check: Callable[[float], None], what: str) -> tuple[float, ...]:
    """Finite numbers, each passing ``check``; ``what`` describes one for a value that is no number."""
    values = []
    for token in words(name, text):
        try:
            value = float(token)
        except ValueError:
            raise InvalidConfig(f"{name} value {token!r}: expected {what}") from None
        if not math.isfinite(value):
            raise InvalidConfig(f"{name} value {token!r}: expected {what}")
        try:
            check(value)
        except InvalidConfig as error:
            raise InvalidConfig(f"{name} value {token!r}: {error}") from None
        values.append(value)
    if len(set(values)) != len(values):
        raise InvalidConfig(f"{name} {text!r}: two values are the same number")
    return tuple(values)


def seeds(name: str, text: str) -> tuple[int, ...]:
    values = []
    for token in words(name, text):
        try:
            integer(0)(token)
        except InvalidConfig as error:
            raise InvalidConfig(f"{name} value {token!r}: {error} (a training seed)") from None
        values.append(int(token))
    if len(set(values)) != len(values):
        raise InvalidConfig(f"{name} {text!r}: two values are the same seed")
    return tuple(values)


def members(name: str, text: str, options: Sequence[str]) -> tuple[str, ...]:
    chosen = words(name, text)
    for value in chosen:
        check_choice(f"{name} value", value, options)
    return tuple(chosen)
