"""What the student sees of the teacher: the divergences, their settings and each one's per-row formula.

Every function here takes per-row log-probabilities over the same outcomes, the student's ``log_p`` and the
teacher's ``log_q`` ([N, K], entries may be -inf), and returns the unscaled divergence per row in plain
autograd torch. These short functions are the specification: the chunked loss (``lskd.transfer_loss``)
runs them, and the tests compare them with textbook formulas written out in float64. An outcome that both
distributions give probability 0 contributes 0 (and a zero gradient), so -inf logits stay finite.

Conventions (docs/transfers.md): p = student, q = teacher, both at their temperatures.

- ``kl``: KL(q ‖ p), Hinton et al.'s and Tan et al.'s forward KL.
- ``reverse_kl``: KL(p ‖ q) (MiniLLM).
- ``jsd``: generalised Jensen–Shannon of GKD (Agarwal et al., 2024; TRL's ``generalized_jsd_loss``):
  with m = β·q + (1 − β)·p, JSD_β = β·KL(q ‖ m) + (1 − β)·KL(p ‖ m). β = 0.5 is the symmetric JSD;
  JSD_β / β → KL(q ‖ p) as β → 0 and JSD_β / (1 − β) → KL(p ‖ q) as β → 1.
- ``tvd``: ½·Σ |q − p|, in [0, 1].
- ``skew_kl``: KL(q ‖ s·q + (1 − s)·p) and ``skew_reverse_kl``: KL(p ‖ s·p + (1 − s)·q), DistiLLM's skew
  KLs (Ko et al., 2024) with skew s; s → 0 gives ``kl`` and ``reverse_kl``.

The loss multiplies each by its scale (``Transfer.scale``): T² for every KL-based divergence, whose
value and gradient shrink as 1/T² at high temperature (Hinton et al.), and T for ``tvd``, whose gradient
shrinks as 1/T; T is the student's temperature.
"""

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from lskd.checks import check_open_unit, check_temperature
from lskd.errors import InvalidConfig

DIVERGENCES = ("kl", "reverse_kl", "jsd", "tvd", "skew_kl", "skew_reverse_kl")
NEG_INF = float("-inf")


def check_divergence(divergence: str) -> None:
    if divergence not in DIVERGENCES:
        raise InvalidConfig(f"KD divergence must be one of {', '.join(DIVERGENCES)}, got {divergence!r}")


@dataclass(frozen=True)
class Transfer:
    """How the teacher's rows are turned into the KD term.

    ``teacher_temperature`` None means the student's ``temperature``; ``standardize`` z-scores each row's
    logits (Sun et al., 2024) before its temperature; ``tail`` gives a top-k teacher a (k+1)-th outcome,
    the mass outside its k tokens. ``jsd_beta`` and ``skew`` are read by ``jsd`` and the skew KLs only.
    """

    divergence: str = "kl"
    temperature: float = 1.0
    teacher_temperature: Optional[float] = None
    jsd_beta: float = 0.5
    skew: float = 0.1
    standardize: bool = False
    tail: bool = False

    def __post_init__(self) -> None:
        check_divergence(self.divergence)
        check_temperature(self.temperature)
        if self.teacher_temperature is not None:
            check_temperature(self.teacher_temperature)
        check_open_unit(self.jsd_beta, "JSD beta")
        check_open_unit(self.skew, "skew")

    @property
    def teacher_t(self) -> float:
        return self.temperature if self.teacher_temperature is None else self.teacher_temperature

    @property
    def scale(self) -> float:
        return scale_of(self.divergence, self.temperature)

    @property
    def is_plain_kl(self) -> bool:
        """Today's transfer, which the fused loss (``lskd.losses``) computes."""
        return self.divergence == "kl" and self.teacher_t == self.temperature and not self.standardize and not self.tail

    def describe(self) -> str:
        extra = {
            "jsd": f" beta={self.jsd_beta}",
            "skew_kl": f" skew={self.skew}",
            "skew_reverse_kl": f" skew={self.skew}",
        }
        text = f"{self.divergence}{extra.get(self.divergence, '')} T={self.temperature:g} teacher T={self.teacher_t:g}"
        return text + (" standardized" if self.standardize else "") + (" tail" if self.tail else "")


def scale_of(divergence: str, temperature: float) -> float:
    """What the divergence is multiplied by so its gradient keeps its size as T grows."""
    check_divergence(divergence)
    return temperature if divergence == "tvd" else temperature**2


def _weighted_log_ratio(log_a: Tensor, log_b: Tensor, zeros: bool, a: Optional[Tensor] = None) -> Tensor:
    """Σ a·(log a − log b) per row (``a`` = exp(log_a) where already computed); outcomes with a = 0 count 0
    (their -inf − log b never reaches a gradient)."""
    difference = log_a - log_b
    if zeros:
        difference = torch.where(log_a == NEG_INF, torch.zeros_like(log_a), difference)
    return ((log_a.exp() if a is None else a) * difference).sum(-1)


def log_mixture(a: Tensor, b: Tensor, weight_a: float) -> Tensor:
    """log(w·a + (1 − w)·b) per outcome of the probabilities a and b, from their exponentials that the
    divergence needs anyway (cheaper than a log-space logaddexp). The mixture is floored at the smallest
    normal float: there both a and b are below it, so the outcome weighs nothing in either KL."""
    return torch.lerp(b, a, weight_a).clamp_min(torch.finfo(a.dtype).tiny).log()


# Each divergence of student log-probabilities ``log_p`` from the teacher's ``log_q``. ``zeros`` False
# promises that no outcome has probability 0 (no -inf entry), which spares the masking passes.


def kl(log_p: Tensor, log_q: Tensor, zeros: bool = True) -> Tensor:
    return _weighted_log_ratio(log_q, log_p, zeros)


def reverse_kl(log_p: Tensor, log_q: Tensor, zeros: bool = True) -> Tensor:
    return _weighted_log_ratio(log_p, log_q, zeros)


def jsd(log_p: Tensor, log_q: Tensor, beta: float, zeros: bool = True) -> Tensor:
    p, q = log_p.exp(), log_q.exp()
    log_m = log_mixture(q, p, beta)
    return beta * _weighted_log_ratio(log_q, log_m, zeros, q) + (1.0 - beta) * _weighted_log_ratio(
        log_p, log_m, zeros, p
    )


def tvd(log_p: Tensor, log_q: Tensor, zeros: bool = True) -> Tensor:
    return 0.5 * (log_q.exp() - log_p.exp()).abs().sum(-1)


def skew_kl(log_p: Tensor, log_q: Tensor, skew: float, zeros: bool = True) -> Tensor:
    q = log_q.exp()
    return _weighted_log_ratio(log_q, log_mixture(q, log_p.exp(), skew), zeros, q)


def skew_reverse_kl(log_p: Tensor, log_q: Tensor, skew: float, zeros: bool = True) -> Tensor:
    p = log_p.exp()
    return _weighted_log_ratio(log_p, log_mixture(p, log_q.exp(), skew), zeros, p)


def divergence_rows(log_p: Tensor, log_q: Tensor, transfer: Transfer, zeros: bool = True) -> Tensor:
    """The transfer's divergence per row, unscaled."""
    name = transfer.divergence
    if name == "jsd":
        return jsd(log_p, log_q, transfer.jsd_beta, zeros)
    if name in ("skew_kl", "skew_reverse_kl"):
        return (skew_kl if name == "skew_kl" else skew_reverse_kl)(log_p, log_q, transfer.skew, zeros)
    return {"kl": kl, "reverse_kl": reverse_kl, "tvd": tvd}[name](log_p, log_q, zeros)
