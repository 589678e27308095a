"""The diffusion analysis's math, in three parts: Algorithm 1's projection, a measure of systematic diffusion,
and the choice of classes when the user names none.

Algorithm 1 of Chandrasegaran et al., "Revisiting Label Smoothing and Knowledge Distillation
Compatibility: What was Missing?" (ICML 2022): penultimate features of three classes, projected onto the
span of their bias-augmented classifier templates, then to 2-D by a PCA fitted on the training split.

This follows the authors' script (``alpha-LS-KD_imagenet_centroids.py``) step by step, with one fix: the
script appends ``bias[0:3]`` to the templates whatever the chosen classes; here the bias of each chosen
class is used (``bias[classes]``).

Plain numpy in float64; torch tensors are accepted anywhere an array is.

The measure of *systematic diffusion*: how much a class spreads toward one particular other class.

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

Class suggestion (``suggest_classes``), for when the user names no classes: the paper hand-picked two
semantically similar ImageNet classes (two poodles) and a dissimilar one (submarine). Without labels of
meaning, the classifier itself is the best guide: classes whose template rows point the same way are the ones
a model treats as similar.
"""

from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np

from lskd.errors import InvalidConfig

NUM_CLASSES = 3
# Relative size of QR's R diagonal below which a template is taken to lie in the span of the others.
RANK_TOLERANCE = 1e-10


def as_array(values, name: str, ndim: int) -> np.ndarray:
    """``values`` (numpy or torch) as a finite float64 array with ``ndim`` dimensions."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != ndim:
        raise InvalidConfig(f"{name} must have {ndim} dimension(s), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InvalidConfig(f"{name} contains NaN or infinite values")
    return array


def as_labels(values, name: str, length: int) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    labels = np.asarray(values)
    if labels.shape != (length,) or not np.issubdtype(labels.dtype, np.integer):
        raise InvalidConfig(
            f"{name} must be {length} integer labels (one per feature row), got shape {labels.shape} of {labels.dtype}"
        )
    return labels.astype(np.int64)


def check_classes(classes: Sequence[int], num_classes: int) -> tuple[int, ...]:
    """The three distinct classifier rows the analysis uses, each inside the classifier."""
    chosen = tuple(int(c) for c in classes)
    if len(chosen) != NUM_CLASSES or len(set(chosen)) != NUM_CLASSES:
        raise InvalidConfig(f"classes must be {NUM_CLASSES} distinct class indices, got {list(chosen)}")
    for c in chosen:
        if not 0 <= c < num_classes:
            raise InvalidConfig(f"class index {c} is outside the classifier's {num_classes} classes")
    return chosen


def augment_features(features) -> np.ndarray:
    """``[h, 1]``: the constant input that the classifier's bias multiplies."""
    features = as_array(features, "features", 2)
    return np.hstack([features, np.ones((features.shape[0], 1))])


def augmented_templates(weight, bias: Optional[object], classes: Sequence[int]) -> np.ndarray:
    """``[w_c, b_c]`` for each chosen class c, shape (3, D+1), so that ``[h, 1]·[w_c, b_c]`` is the logit
    of c. A classifier without bias (fairseq's output projection) gets zeros."""
    weight = as_array(weight, "classifier weight", 2)
    chosen = list(check_classes(classes, weight.shape[0]))
    if bias is None:
        bias = np.zeros(weight.shape[0])
    bias = as_array(bias, "classifier bias", 1)
    if bias.shape[0] != weight.shape[0]:
        raise InvalidConfig(f"classifier bias has {bias.shape[0]} entries, the weight has {weight.shape[0]} rows")
    return np.hstack([weight[chosen], bias[chosen, None]])


@dataclass(frozen=True)
class TemplateProjection:
    """Orthonormal basis Q (D+1, 3) of the span of the three augmented templates; ``project`` gives
    ``[h, 1] Q``, the coordinates of a feature's component inside that span."""

    classes: tuple[int, ...]
    templates: np.ndarray
    basis: np.ndarray

    @classmethod
    def from_classifier(cls, weight, bias, classes: Sequence[int]) -> "TemplateProjection":
        templates = augmented_templates(weight, bias, classes)
        basis, triangle = np.linalg.qr(templates.T)
        diagonal = np.abs(np.diag(triangle))
        if diagonal.min() <= RANK_TOLERANCE * diagonal.max():
            raise InvalidConfig(
                f"the augmented templates of classes {list(classes)} are linearly dependent; "
                "they do not span 3 dimensions"
            )
        return cls(classes=check_classes(classes, weight.shape[0]), templates=templates, basis=basis)

    @property
    def feature_dim(self) -> int:
        return self.basis.shape[0] - 1

    def project(self, features) -> np.ndarray:
        augmented = augment_features(features)
        if augmented.shape[1] != self.basis.shape[0]:
            raise InvalidConfig(
                f"features have {augmented.shape[1] - 1} dimensions, the classifier expects {self.feature_dim}"
            )
        return augmented @ self.basis


@dataclass(frozen=True)
class PlanePCA:
    """2-D PCA computed with numpy's SVD (not sklearn) on centred data.

    Each component's sign is fixed so that its largest-magnitude entry is positive, which makes the
    figure's orientation reproducible; up to that sign it equals ``sklearn.decomposition.PCA(2)``.
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray

    @classmethod
    def fit(cls, points) -> "PlanePCA":
        points = as_array(points, "points", 2)
        if points.shape[0] < 2 or points.shape[1] < 2:
            raise InvalidConfig(f"PCA to 2-D needs at least 2 points of at least 2 dimensions, got {points.shape}")
        mean = points.mean(axis=0)
        _, singular_values, right = np.linalg.svd(points - mean, full_matrices=False)
        components = right[:2]
        largest = np.argmax(np.abs(components), axis=1)
        components = components * np.sign(components[np.arange(2), largest])[:, None]
        variance = singular_values**2
        ratio = variance[:2] / variance.sum() if variance.sum() > 0 else np.zeros(2)
        return cls(mean=mean, components=components, explained_variance_ratio=ratio)

    def transform(self, points) -> np.ndarray:
        return (as_array(points, "points", 2) - self.mean) @ self.components.T


def select_classes(
    features, labels, classes: Sequence[int], split: str, max_per_class: Optional[int] = None
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the chosen classes (the first ``max_per_class`` of each, in order, as the authors take
    the first 150 training and 50 validation images), refusing a class with fewer than 2 rows."""
    features = as_array(features, f"{split} features", 2)
    labels = as_labels(labels, f"{split} labels", features.shape[0])
    if max_per_class is not None and max_per_class < 2:
        raise InvalidConfig(f"max_per_class must be at least 2, got {max_per_class}")
    keep = []
    for c in classes:
        rows = np.flatnonzero(labels == c)
        if rows.size < 2:
            raise InvalidConfig(f"{split} split has {rows.size} sample(s) of class {c}; at least 2 are needed")
        keep.append(rows[:max_per_class])
    rows = np.sort(np.concatenate(keep))
    return features[rows], labels[rows]


def class_centroids(points: np.ndarray, labels: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """Mean of ``points`` per class, in the order of ``classes``."""
    return np.stack([points[labels == c].mean(axis=0) for c in classes])


@dataclass(frozen=True)
class SplitProjection:
    """One split of one model: its selected penultimate features and their 3-D and 2-D images."""

    features: np.ndarray
    labels: np.ndarray
    points_3d: np.ndarray
    centroids_3d: np.ndarray
    points_2d: np.ndarray
    centroids_2d: np.ndarray


@dataclass(frozen=True)
class ModelProjection:
    """Algorithm 1 for one model: its template basis, its training-fitted PCA and both splits."""

    templates: TemplateProjection
    pca: PlanePCA
    train: SplitProjection
    valid: SplitProjection


def _project_split(templates: TemplateProjection, features, labels) -> tuple[np.ndarray, np.ndarray]:
    points_3d = templates.project(features)
    centroids_augmented = class_centroids(augment_features(features), labels, templates.classes)
    return points_3d, centroids_augmented @ templates.basis


def project_model(
    weight,
    bias,
    classes: Sequence[int],
    train_features,
    train_labels,
    valid_features,
    valid_labels,
    max_train_per_class: Optional[int] = None,
    max_valid_per_class: Optional[int] = None,
) -> ModelProjection:
    """Algorithm 1 (§4.2 of the digest): the PCA is fitted on the training points plus the three training
    centroids, all in 3-D, and reused unchanged for the validation split. The caps keep the first N
    samples of each class (the authors: 150 training and 50 validation images)."""
    templates = TemplateProjection.from_classifier(weight, bias, classes)
    splits = {}
    for split, features, labels, cap in (
        ("train", train_features, train_labels, max_train_per_class),
        ("valid", valid_features, valid_labels, max_valid_per_class),
    ):
        features, labels = select_classes(features, labels, templates.classes, split, cap)
        splits[split] = (features, labels, *_project_split(templates, features, labels))
    _, _, train_points, train_centroids = splits["train"]
    pca = PlanePCA.fit(np.vstack([train_points, train_centroids]))
    projected = {
        split: SplitProjection(features, labels, points, centroids, pca.transform(points), pca.transform(centroids))
        for split, (features, labels, points, centroids) in splits.items()
    }
    return ModelProjection(templates=templates, pca=pca, train=projected["train"], valid=projected["valid"])


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


@dataclass(frozen=True)
class SuggestedClasses:
    target: int
    similar: int
    control: int
    similar_cosine: float
    control_cosine: float

    @property
    def classes(self) -> tuple[int, int, int]:
        return self.target, self.similar, self.control


def suggest_classes(
    weight, counts: Sequence[int], min_count: int, pool_size: int = 500, excluded: Sequence[int] = ()
) -> SuggestedClasses:
    """Among the ``pool_size`` most frequent classes with at least ``min_count`` samples (``excluded``
    left out): the pair with the highest template cosine, the more frequent of the two as the target,
    and as control the class whose larger cosine to either of them is smallest."""
    weight = as_array(weight, "classifier weight", 2)
    counts = np.asarray(counts)
    if counts.shape != (weight.shape[0],):
        raise InvalidConfig(f"counts must have one entry per classifier row ({weight.shape[0]}), got {counts.shape}")
    eligible = np.flatnonzero(counts >= min_count)
    eligible = np.setdiff1d(eligible, np.asarray(excluded, dtype=np.int64))
    pool = eligible[np.argsort(-counts[eligible], kind="stable")][:pool_size]
    if pool.size < 3:
        raise InvalidConfig(
            f"only {pool.size} class(es) have at least {min_count} samples; 3 are needed "
            "(lower the minimum count or name the classes)"
        )
    norms = np.linalg.norm(weight[pool], axis=1)
    if np.any(norms == 0):
        raise InvalidConfig(f"class {int(pool[np.argmin(norms)])} has an all-zero template; its cosine is undefined")
    unit = weight[pool] / norms[:, None]
    cosine = unit @ unit.T
    np.fill_diagonal(cosine, -np.inf)
    first, second = np.unravel_index(np.argmax(cosine), cosine.shape)
    target, similar = (first, second) if counts[pool[first]] >= counts[pool[second]] else (second, first)
    closeness = np.maximum(cosine[target], cosine[similar])
    closeness[[target, similar]] = np.inf
    control = int(np.argmin(closeness))
    return SuggestedClasses(
        target=int(pool[target]),
        similar=int(pool[similar]),
        control=int(pool[control]),
        similar_cosine=float(cosine[target, similar]),
        control_cosine=float(closeness[control]),
    )
