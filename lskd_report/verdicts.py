"""The paper's testable claims (reference notes §5, 1-5) checked on a grid's student cells, with seed noise.

Every claim is a set of *comparisons*, each a difference of cell means that the claim says is positive
(higher scores are better: top-1, BLEU). A comparison's standard error is sqrt(Σ c² s² / n) over its cells
(c its coefficient, s the cell's sample standard deviation over seeds, n its seeds); the difference *counts*
when it lies beyond ``factor`` standard errors of 0. A claim holds when every comparison counts in the
claimed direction, does not hold when any counts against it, and is not distinguishable from seed noise
otherwise. A cell with a single seed has no noise estimate: its comparisons go by the sign of the
difference alone and are labelled so.
"""

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

from lskd.errors import InvalidConfig

HOLDS = "holds"
FAILS = "does not hold"
NOISE = "not distinguishable from seed noise"
UNTESTABLE = "not testable"
SINGLE_SEED = "single seed: no noise estimate"
NOISE_FACTOR = 2.0
TIE = 1e-9  # relative: differences this small are float rounding of equal scores


def rule_text(factor: float) -> str:
    return (
        f"a difference d of cell means counts when |d| > {factor:g} × sqrt(Σ s²/n) (s: the sample standard "
        "deviation of a cell's seeds, n: its seeds); inside that band it is not distinguishable from seed noise. "
        "A claim holds when each difference it needs counts in its direction, does not hold when one counts "
        "against it, and is not distinguishable otherwise. A cell with one seed has no noise estimate: such "
        "comparisons follow the sign of d and are marked single seed (equal means are not distinguishable). "
        "Higher scores are better."
    )


@dataclass(frozen=True)
class Estimate:
    """One cell's mean over n seeds and their sample standard deviation (None below two seeds)."""

    mean: float
    sd: Optional[float]
    n: int

    def text(self) -> str:
        spread = "" if self.sd is None else f" ± {self.sd:.3f}"
        return f"{self.mean:.3f}{spread} ({self.n})"


def cell_name(alpha: str, temperature: str) -> str:
    return f"α {alpha} T {temperature}"


@dataclass(frozen=True)
class Comparison:
    """``Σ coefficient · mean`` over ``terms`` ((coefficient, cell name, Estimate)), claimed to be > 0."""

    terms: tuple
    factor: float

    @property
    def difference(self) -> float:
        return sum(c * e.mean for c, _, e in self.terms)

    @property
    def standard_error(self) -> Optional[float]:
        if any(e.sd is None for _, _, e in self.terms):
            return None
        return math.sqrt(sum(c * c * e.sd * e.sd / e.n for c, _, e in self.terms))

    @property
    def outcome(self) -> str:
        d, se = self.difference, self.standard_error
        if abs(d) <= TIE * max(abs(e.mean) for _, _, e in self.terms):
            return NOISE  # equal means (up to rounding): no difference to see, with or without seeds
        if se is None:
            return HOLDS if d > 0 else FAILS
        band = self.factor * se
        return HOLDS if d > band else FAILS if d < -band else NOISE

    def expression(self, values: bool = False) -> str:
        """``α 0.1 T 1 − α 0.0 T 1``; with ``values``, each cell's mean ± sd (n) beside its name."""
        parts = []
        for c, name, estimate in self.terms:
            term = f"{name} [{estimate.text()}]" if values else name
            parts.append(f"{'+' if c > 0 else '−'} {term}" if parts or c < 0 else term)
        return " ".join(parts)

    def text(self) -> str:
        se = self.standard_error
        band = SINGLE_SEED if se is None else f"band {self.factor:g}·SE = {self.factor * se:.3f}"
        return f"{self.expression(values=True)} = {self.difference:+.3f} ({band})"

    def to_dict(self) -> dict:
        se = self.standard_error
        return {
            "expression": self.expression(),
            "difference": self.difference,
            "standard_error": se,
            "band": None if se is None else self.factor * se,
            "outcome": self.outcome,
            "cells": {name: {"mean": e.mean, "sd": e.sd, "n": e.n} for _, name, e in self.terms},
        }


@dataclass(frozen=True)
class Verdict:
    claim: str
    paper_item: int
    verdict: str
    comparisons: tuple = ()
    note: str = ""
    cells: dict = field(default_factory=dict)  # cell name -> Estimate, the numbers the claim used

    @property
    def single_seed(self) -> bool:
        return any(c.standard_error is None for c in self.comparisons)

    def deciding(self) -> list[Comparison]:
        """The comparisons that decide the verdict: those against it, those in the noise band, or (when it
        holds) both of two, or the closest call of more."""
        if not self.comparisons:
            return []
        chosen = [c for c in self.comparisons if c.outcome == self.verdict]
        if self.verdict == HOLDS and len(chosen) > 2:
            return [min(chosen, key=lambda c: c.difference - c.factor * (c.standard_error or 0.0))]
        return chosen

    def label(self) -> str:
        if self.verdict in (HOLDS, FAILS) and self.single_seed:
            return f"{self.verdict} ({SINGLE_SEED})"
        return self.verdict

    def to_dict(self) -> dict:
        return {
            "claim": self.claim,
            "paper_item": self.paper_item,
            "verdict": self.verdict,
            "single_seed": self.single_seed,
            "note": self.note,
            "cells": {name: {"mean": e.mean, "sd": e.sd, "n": e.n} for name, e in self.cells.items()},
            "comparisons": [c.to_dict() for c in self.comparisons],
        }


def combine(comparisons: Sequence[Comparison]) -> str:
    outcomes = {c.outcome for c in comparisons}
    return FAILS if FAILS in outcomes else NOISE if NOISE in outcomes else HOLDS


class Students:
    """Student cells of one KD mode, by (α, T) keys as the tables spell them."""

    def __init__(self, estimates: Mapping[tuple, Optional[Estimate]], temperatures: Sequence[str], factor: float):
        self.estimates, self.temperatures, self.factor = estimates, temperatures, factor

    def missing(self, cells: Sequence[tuple]) -> list[str]:
        return [cell_name(*c) for c in cells if self.estimates.get(c) is None]

    def compare(self, *terms: tuple) -> Comparison:
        """``terms``: (coefficient, α, T)."""
        return Comparison(tuple((c, cell_name(a, t), self.estimates[(a, t)]) for c, a, t in terms), self.factor)

    def verdict(self, claim: str, item: int, cells: Sequence[tuple], build) -> Verdict:
        missing = self.missing(cells)
        if missing:
            return Verdict(claim, item, UNTESTABLE, note=f"no score for {', '.join(missing)}")
        comparisons = tuple(build())
        used = {cell_name(*c): self.estimates[c] for c in cells}
        return Verdict(claim, item, combine(comparisons), comparisons, cells=used)


def check_claims(students: Students, ls_alpha: str, base_alpha: Optional[str]) -> list[Verdict]:
    """Claims 1-5 for the LS teacher ``ls_alpha`` against the non-LS teacher ``base_alpha`` (α = 0)."""
    temperatures = list(students.temperatures)
    low, high = temperatures[0], temperatures[-1]
    pair = (ls_alpha, base_alpha)
    ls = f"the LS teacher's (α {ls_alpha})"
    claims = [
        f"best student is {ls} at T {low}",
        f"at T {low} {ls} student beats the non-LS teacher's",
        f"with {ls}, students get worse at every step of T ({' → '.join(temperatures)})",
        f"higher T hurts {ls} students more than the non-LS teacher's",
        f"{ls} advantage at T {low} becomes a deficit at T {high}",
    ]
    if base_alpha is None:
        untestable = "the grid has no non-LS teacher (α = 0.0)"
    elif len(temperatures) < 2:
        untestable = "the grid has one temperature"
    else:
        untestable = ""
    verdicts = []
    others = [(a, t) for a in (ls_alpha, base_alpha) if a is not None for t in temperatures]
    best = (ls_alpha, low)
    if len(others) < 2:
        verdicts.append(Verdict(claims[0], 1, UNTESTABLE, note="the grid has a single student cell"))
    else:
        verdicts.append(
            students.verdict(
                claims[0],
                1,
                others,
                lambda: [students.compare((1, *best), (-1, *other)) for other in others if other != best],
            )
        )
    if base_alpha is None:
        verdicts.append(Verdict(claims[1], 2, UNTESTABLE, note=untestable))
    else:
        verdicts.append(
            students.verdict(
                claims[1], 2, [best, (base_alpha, low)], lambda: [students.compare((1, *best), (-1, base_alpha, low))]
            )
        )
    if len(temperatures) < 2:
        verdicts.append(Verdict(claims[2], 3, UNTESTABLE, note="the grid has one temperature"))
    else:
        steps = list(zip(temperatures, temperatures[1:]))
        verdicts.append(
            students.verdict(
                claims[2],
                3,
                [(ls_alpha, t) for t in temperatures],
                lambda: [students.compare((1, ls_alpha, a), (-1, ls_alpha, b)) for a, b in steps],
            )
        )
    if untestable:
        verdicts += [
            Verdict(claims[3], 4, UNTESTABLE, note=untestable),
            Verdict(claims[4], 5, UNTESTABLE, note=untestable),
        ]
        return verdicts
    all_cells = [(a, t) for a in pair for t in temperatures]
    verdicts.append(
        students.verdict(
            claims[3],
            4,
            all_cells,
            lambda: [
                students.compare((1, ls_alpha, low), (-1, ls_alpha, t), (-1, base_alpha, low), (1, base_alpha, t))
                for t in temperatures[1:]
            ],
        )
    )
    ends = [(a, t) for a in pair for t in (low, high)]
    verdicts.append(
        students.verdict(
            claims[4],
            5,
            ends,
            lambda: [
                students.compare((1, ls_alpha, low), (-1, base_alpha, low)),
                students.compare((1, base_alpha, high), (-1, ls_alpha, high)),
            ],
        )
    )
    return verdicts


def check_grid(
    estimates: Mapping[tuple, Optional[Estimate]],
    alphas: Sequence[str],
    temperatures: Sequence[str],
    factor: float = NOISE_FACTOR,
) -> list[Verdict]:
    """Claims 1-5 for every LS teacher (α > 0) of the grid against its α = 0 teacher; ``alphas`` and
    ``temperatures`` are keys in increasing order, ``estimates`` maps (α, T) to a cell (None: no score).
    No claim without an LS teacher or a tempered student."""
    if not factor > 0:
        raise InvalidConfig(f"noise factor must be > 0, got {factor}")
    if not temperatures:
        return []
    students = Students(estimates, temperatures, factor)
    base = next((a for a in alphas if float(a) == 0.0), None)
    verdicts = []
    for ls_alpha in (a for a in alphas if float(a) > 0.0):
        verdicts += check_claims(students, ls_alpha, base)
    return verdicts
