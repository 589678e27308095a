"""The paper's testable claims (reference notes §5, 1-5) checked on a grid's student cells, over seeds.

Every claim is a set of *comparisons*, each a contrast ``Σ c · cell`` of student cells that the claim says is
positive (higher scores are better: top-1, BLEU). The grid's design pairs its cells by seed: the student of
seed s distils from the teacher of seed s, so students that share a seed share that seed's luck, and each
comparison is taken within a seed first. Where the cells share at least two seeds, the per-seed contrasts
give a mean, a sample sd and a two-sided t interval with n - 1 degrees of freedom at the stated level
(the paired t test). Cells whose seeds do not pair fall back to Welch's unpaired interval (Welch-Satterthwaite
degrees of freedom). A comparison *holds* when its interval lies above 0, *fails* when it lies below, and is
*undecided* otherwise; its half-width is the smallest difference the grid could have told from 0. Fewer than
two seeds give no interval, hence no verdict.

A claim holds when every comparison holds (an intersection-union test: its false "holds" rate is at most
(1 - level) / 2), does not hold when any comparison fails, needs seeds when one has no interval, and is
undecided otherwise. The paper's published numbers are single values: their verdicts go by sign alone.
"""

import math
import statistics
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from typing import Mapping, Optional, Sequence

from scipy import stats

from lskd.errors import InvalidConfig

HOLDS = "holds"
FAILS = "does not hold"
UNDECIDED = "undecided"
NEEDS_SEEDS = "needs ≥ 2 seeds"
UNTESTABLE = "not testable"
CONFIDENCE = 0.95

PAIRED = "paired t"
WELCH = "Welch t"
NO_INTERVAL = "none"
BY_SIGN = "sign of published values"

SEED_COUNTS = (2, 3, 5, 10, 20)  # the seed counts the "how many seeds" table shows
POWER = 0.8
TIE = 1e-9  # relative: differences this small are float rounding of equal scores


@lru_cache(maxsize=1024)
def t_quantile(level: float, dof: float) -> float:
    """The two-sided ``level`` quantile of Student's t with ``dof`` degrees of freedom."""
    return float(stats.t.ppf(0.5 + level / 2, dof))


def sample_sd(values: Sequence[float]) -> float:
    """The sample standard deviation (n − 1), in plain floats (``statistics.stdev`` is exact and slow)."""
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def check_level(level: float, name: str = "--confidence") -> float:
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise InvalidConfig(f"{name} {level}: expected a confidence level between 0 and 1, such as 0.95")
    return float(level)


def percent(level: float) -> str:
    return f"{100 * level:g} %"


def rule_text(level: float) -> str:
    return (
        f"each difference is taken within a seed where its cells share ≥ 2 seeds (paired), with a two-sided "
        f"{percent(level)} t interval for its mean (n − 1 degrees of freedom); cells whose seeds do not pair use "
        "Welch's unpaired interval. A difference counts when its interval excludes 0; the interval's half-width "
        "(± below) is the smallest difference this grid could detect. A claim holds when each difference it needs "
        "counts in its direction, does not hold when one counts against it, and is undecided otherwise; with fewer "
        "than 2 seeds there is no interval and no verdict. Higher scores are better."
    )


@dataclass(frozen=True)
class Interval:
    """A difference's estimate: its mean, and (with ≥ 2 seeds) the two-sided t interval at ``level``.

    ``per_seed``: the within-seed differences of a paired estimate; ``sd``: their sample sd (paired) or None;
    ``standard_error`` and ``dof`` are None where there is no interval (``method`` NO_INTERVAL or BY_SIGN)."""

    method: str
    mean: float
    level: float
    n: int
    standard_error: Optional[float] = None
    dof: Optional[float] = None
    sd: Optional[float] = None
    per_seed: dict = field(default_factory=dict)
    seeds_per_cell: tuple = ()

    @cached_property
    def half_width(self) -> Optional[float]:
        """The smallest |mean| whose interval would exclude 0: the grid's detectable difference."""
        if self.standard_error is None:
            return None
        if self.standard_error == 0.0:
            return 0.0
        return t_quantile(self.level, self.dof) * self.standard_error

    @property
    def low(self) -> Optional[float]:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> Optional[float]:
        return None if self.half_width is None else self.mean + self.half_width

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "level": self.level,
            "mean": self.mean,
            "n": self.n,
            "sd": self.sd,
            "standard_error": self.standard_error,
            "dof": self.dof,
            "interval": None if self.half_width is None else [self.low, self.high],
            "half_width": self.half_width,
            "per_seed": {str(s): d for s, d in sorted(self.per_seed.items())},
            "seeds_per_cell": list(self.seeds_per_cell),
        }


def paired_interval(per_seed: Mapping, level: float) -> Interval:
    """The one-sample t interval of the mean of ``per_seed`` (seed -> difference), at least two of them."""
    values = list(per_seed.values())
    n = len(values)
    sd = sample_sd(values)
    return Interval(PAIRED, math.fsum(values) / n, level, n, sd / math.sqrt(n), n - 1, sd, dict(per_seed))


def mean_interval(values: Mapping, level: float) -> Optional[Interval]:
    """The t interval of a cell's mean over its seeds (None below two): the score plot's error bars."""
    return paired_interval(values, level) if len(values) >= 2 else None


def welch_interval(terms: Sequence[tuple], level: float) -> Interval:
    """``Σ c · mean`` over ``terms`` ((coefficient, values), each with ≥ 2 values) with the Welch-Satterthwaite
    degrees of freedom of its unpooled standard error."""
    parts = [(c * c * sample_sd(v) ** 2 / len(v), len(v)) for c, v in terms]
    variance = sum(p for p, _ in parts)
    denominator = sum(p * p / (n - 1) for p, n in parts)
    dof = variance * variance / denominator if denominator > 0 else sum(n - 1 for _, n in parts)
    mean = sum(c * math.fsum(v) / len(v) for c, v in terms)
    counts = tuple(len(v) for _, v in terms)
    return Interval(WELCH, mean, level, min(counts), math.sqrt(variance), dof, seeds_per_cell=counts)


def estimate(terms: Sequence[tuple], level: float, by_sign: bool = False) -> Interval:
    """``terms``: (coefficient, {seed: value}). Paired over the seeds every cell has when there are ≥ 2 of
    them, else Welch's interval when every cell has ≥ 2 seeds, else the difference of means alone."""
    scale = max(abs(v) for _, values in terms for v in values.values())
    tie = TIE * max(scale, 1.0)
    counts = tuple(len(values) for _, values in terms)
    means = sum(c * math.fsum(values.values()) / len(values) for c, values in terms)
    means = 0.0 if abs(means) <= tie else means
    if by_sign:
        return Interval(BY_SIGN, means, level, min(counts), seeds_per_cell=counts)
    shared = set.intersection(*(set(values) for _, values in terms))
    if len(shared) >= 2:
        per_seed = {}
        for seed in sorted(shared):
            d = sum(c * values[seed] for c, values in terms)
            per_seed[seed] = 0.0 if abs(d) <= tie else d
        return paired_interval(per_seed, level)
    if min(counts) >= 2:
        interval = welch_interval([(c, list(values.values())) for c, values in terms], level)
        return interval if abs(interval.mean) > tie else replace(interval, mean=0.0)
    return Interval(NO_INTERVAL, means, level, min(counts), seeds_per_cell=counts)


def cell_name(alpha: str, temperature: str) -> str:
    return f"α {alpha} T {temperature}"


def signed(value: float, digits: int = 3) -> str:
    return f"{value:+.{digits}f}"


@dataclass(frozen=True)
class Comparison:
    """``Σ coefficient · cell`` over ``terms`` ((coefficient, cell name, {seed: value})), claimed to be > 0."""

    terms: tuple
    level: float
    by_sign: bool = False

    @cached_property
    def interval(self) -> Interval:
        return estimate([(c, values) for c, _, values in self.terms], self.level, self.by_sign)

    @property
    def difference(self) -> float:
        return self.interval.mean

    @property
    def outcome(self) -> str:
        i = self.interval
        if i.method == NO_INTERVAL:
            return NEEDS_SEEDS
        if i.method == BY_SIGN:
            return HOLDS if i.mean > 0 else FAILS if i.mean < 0 else UNDECIDED
        return HOLDS if i.low > 0 else FAILS if i.high < 0 else UNDECIDED

    def expression(self) -> str:
        """``α 0.1 T 1 − α 0.0 T 1``."""
        parts = []
        for c, name, _ in self.terms:
            parts.append(f"{'+' if c > 0 else '−'} {name}" if parts or c < 0 else name)
        return " ".join(parts)

    def text(self) -> str:
        """The difference with its interval, method and n, and the smallest difference the grid could detect."""
        i = self.interval
        head = f"{self.expression()} = {signed(i.mean)}"
        if i.method == NO_INTERVAL:
            return f"{head} ({NEEDS_SEEDS}: {'/'.join(map(str, i.seeds_per_cell))} seeds per cell, no interval)"
        if i.method == BY_SIGN:
            return head
        bounds = f"{percent(i.level)} CI [{signed(i.low)}, {signed(i.high)}], ± {i.half_width:.3f}"
        if i.method == PAIRED:
            seeds = " ".join(signed(d, 2) for _, d in sorted(i.per_seed.items()))
            return f"{head}, {bounds} (paired over {i.n} seeds: {seeds})"
        counts = "/".join(map(str, i.seeds_per_cell))
        return f"{head}, {bounds} (Welch, unpaired: {counts} seeds per cell, {i.dof:.1f} dof)"

    def to_dict(self) -> dict:
        return {
            "expression": self.expression(),
            "difference": self.difference,
            "outcome": self.outcome,
            **self.interval.to_dict(),
            "cells": {name: cell_summary(values) for _, name, values in self.terms},
        }


def cell_summary(values: Mapping) -> dict:
    numbers = list(values.values())
    return {
        "seeds": {str(s): v for s, v in sorted(values.items())},
        "mean": statistics.mean(numbers),
        "sd": statistics.stdev(numbers) if len(numbers) >= 2 else None,
        "n": len(numbers),
    }


@dataclass(frozen=True)
class Verdict:
    claim: str
    paper_item: int
    verdict: str
    comparisons: tuple = ()
    note: str = ""
    cells: dict = field(default_factory=dict)  # cell name -> {seed: value}, the numbers the claim used

    def deciding(self) -> list[Comparison]:
        """The comparisons that decide the verdict: those against it, without seeds, or undecided; when it
        holds, both of two, or the closest call (lowest interval bound) of more."""
        chosen = [c for c in self.comparisons if c.outcome == self.verdict]
        if self.verdict == HOLDS and len(chosen) > 2:
            return [min(chosen, key=lambda c: c.interval.low if c.interval.low is not None else c.difference)]
        return chosen

    @property
    def methods(self) -> list[str]:
        return sorted({c.interval.method for c in self.comparisons})

    def to_dict(self) -> dict:
        return {
            "claim": self.claim,
            "paper_item": self.paper_item,
            "verdict": self.verdict,
            "methods": self.methods,
            "note": self.note,
            "cells": {name: cell_summary(values) for name, values in self.cells.items()},
            "comparisons": [c.to_dict() for c in self.comparisons],
        }


def combine(comparisons: Sequence[Comparison]) -> str:
    outcomes = {c.outcome for c in comparisons}
    for verdict in (FAILS, NEEDS_SEEDS, UNDECIDED):
        if verdict in outcomes:
            return verdict
    return HOLDS


class Students:
    """Student cells of one KD mode, by (α, T) keys as the tables spell them: {seed: value}, or None."""

    def __init__(self, cells: Mapping[tuple, Optional[dict]], temperatures: Sequence[str], level: float, by_sign: bool):
        self.cells, self.temperatures, self.level, self.by_sign = cells, temperatures, level, by_sign

    def missing(self, cells: Sequence[tuple]) -> list[str]:
        return [cell_name(*c) for c in cells if not self.cells.get(c)]

    def compare(self, *terms: tuple) -> Comparison:
        """``terms``: (coefficient, α, T)."""
        named = tuple((c, cell_name(a, t), self.cells[(a, t)]) for c, a, t in terms)
        return Comparison(named, self.level, self.by_sign)

    def verdict(self, claim: str, item: int, cells: Sequence[tuple], build) -> Verdict:
        missing = self.missing(cells)
        if missing:
            return Verdict(claim, item, UNTESTABLE, note=f"no score for {', '.join(missing)}")
        comparisons = tuple(build())
        used = {cell_name(*c): self.cells[c] for c in cells}
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
    cells: Mapping[tuple, Optional[dict]],
    alphas: Sequence[str],
    temperatures: Sequence[str],
    level: float = CONFIDENCE,
    by_sign: bool = False,
) -> list[Verdict]:
    """Claims 1-5 for every LS teacher (α > 0) of the grid against its α = 0 teacher; ``alphas`` and
    ``temperatures`` are keys in increasing order, ``cells`` maps (α, T) to {seed: score} (None or empty: no
    score). ``by_sign``: the cells are published single values, judged by the sign of each difference.
    No claim without an LS teacher or a tempered student."""
    check_level(level)
    if not temperatures:
        return []
    students = Students(cells, temperatures, level, by_sign)
    base = next((a for a in alphas if float(a) == 0.0), None)
    verdicts = []
    for ls_alpha in (a for a in alphas if float(a) > 0.0):
        verdicts += check_claims(students, ls_alpha, base)
    return verdicts


def paired_spread(verdicts: Sequence[Verdict]) -> tuple[Optional[float], int]:
    """The median sample sd of the per-seed differences between two cells over a grid's paired comparisons,
    and how many distinct comparisons it is the median of; (None, 0) without any."""
    spreads = {
        c.expression(): c.interval.sd
        for v in verdicts
        for c in v.comparisons
        if c.interval.method == PAIRED and len(c.terms) == 2
    }
    return (statistics.median(spreads.values()), len(spreads)) if spreads else (None, 0)


def detectable(sd: float, n: int, level: float, power: Optional[float] = None) -> float:
    """The difference n paired seeds tell from 0 at per-seed spread ``sd``: the interval's half-width (an
    observed mean beyond it counts), or with ``power`` the true difference found that often, approximately
    (t(level) + t(power)) · sd / √n."""
    quantile = t_quantile(level, n - 1) + (float(stats.t.ppf(power, n - 1)) if power else 0.0)
    return quantile * sd / math.sqrt(n)
