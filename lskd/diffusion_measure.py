"""A measure of *systematic diffusion*: how much a class spreads toward one particular other class.

The paper reports a diffusion index for the student's penultimate representations, but its formula was
never published (not in the released code, and not found in any text we could read). What follows is this
project's own measure, proposed in the reference digest (§4.4); numbers from it are not comparable with
the paper's index.

For a target class a and another class b, with class means μ_a, μ_b and the unit direction
u = (μ_b − μ_a)/‖μ_b − μ_a‖ in a d-dimensional space:

* σ_∥(a) = std over x∈a of (x − μ_a)·u: spread along the line toward b;
* σ_⊥(a) = sqrt(mean over x∈a of ‖(x − μ_a) − ((x − μ_a)·u) u‖² / (d − 1)): spread per orthogonal
  dimension;
* anisotropy η = σ_∥(a)/σ_⊥(a): 1 for an isotropic cluster, ≫ 1 when a is stretched toward (or away
  from) b;
* separation = ‖μ_a − μ_b‖ / (σ_∥(a) + σ_∥(b)): centroid distance in units of the spread along that line.

Systematic diffusion is η rising and separation falling for a semantically similar pair (a, b) while a
dissimilar control pair (a, c) changes much less. A ratio whose denominator is 0 (a class without spread)
is None. Both spreads divide by n (not n − 1), so the small-sample bias of measuring around the sample
mean is the same factor in σ_∥² and σ_⊥² and cancels in η.
"""

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from lskd.errors import InvalidConfig


@dataclass(frozen=True)
class PairDiffusion:
    """Spread of ``target`` along the line to ``other``, and how far apart the two classes are."""

    target: int
    other: int
    centroid_distance: float
    sigma_parallel_target: float
    sigma_perpendicular_target: float
    anisotropy: Optional[float]
    sigma_parallel_other: float
    separation: Optional[float]


@dataclass(frozen=True)
class SpaceDiffusion:
    """The similar pair (a, b) and the control pair (a, c), measured in one space."""

    space: str
    dimension: int
    similar: PairDiffusion
    control: PairDiffusion

    def to_dict(self) -> dict:
        return asdict(self)


def _ratio(numerator: float, denominator: float) -> Optional[float]:
    """None (JSON null) where a cluster has no spread and the ratio is undefined."""
    return numerator / denominator if denominator > 0 else None


def _spread_along(points: np.ndarray, centre: np.ndarray, direction: np.ndarray) -> tuple[float, float]:
    """(σ_∥, σ_⊥) of ``points`` around ``centre`` for the unit ``direction``."""
    offsets = points - centre
    along = offsets @ direction
    across = offsets - np.outer(along, direction)
    sigma_parallel = float(np.sqrt(np.mean(along**2)))
    sigma_perpendicular = float(np.sqrt(np.mean(np.sum(across**2, axis=1)) / (points.shape[1] - 1)))
    return sigma_parallel, sigma_perpendicular


def pair_diffusion(points: np.ndarray, labels: np.ndarray, target: int, other: int) -> PairDiffusion:
    """The measure for one ordered pair of classes of ``points`` (N, d), d ≥ 2."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] < 2:
        raise InvalidConfig(f"diffusion needs points of at least 2 dimensions, got shape {points.shape}")
    groups = {}
    for c in (target, other):
        groups[c] = points[labels == c]
        if groups[c].shape[0] < 2:
            raise InvalidConfig(f"class {c} has {groups[c].shape[0]} sample(s); diffusion needs at least 2")
    mean_target, mean_other = groups[target].mean(axis=0), groups[other].mean(axis=0)
    distance = float(np.linalg.norm(mean_other - mean_target))
    if distance == 0.0:
        raise InvalidConfig(f"classes {target} and {other} have the same centroid; no direction between them")
    direction = (mean_other - mean_target) / distance
    parallel_target, perpendicular_target = _spread_along(groups[target], mean_target, direction)
    parallel_other, _ = _spread_along(groups[other], mean_other, direction)
    return PairDiffusion(
        target=int(target),
        other=int(other),
        centroid_distance=distance,
        sigma_parallel_target=parallel_target,
        sigma_perpendicular_target=perpendicular_target,
        anisotropy=_ratio(parallel_target, perpendicular_target),
        sigma_parallel_other=parallel_other,
        separation=_ratio(distance, parallel_target + parallel_other),
    )


def space_diffusion(space: str, points, labels, target: int, similar: int, control: int) -> SpaceDiffusion:
    """η and separation of (target, similar) and of the control (target, control) in one space."""
    points = np.asarray(points, dtype=np.float64)
    labels = np.asarray(labels)
    return SpaceDiffusion(
        space=space,
        dimension=int(points.shape[1]),
        similar=pair_diffusion(points, labels, target, similar),
        control=pair_diffusion(points, labels, target, control),
    )
