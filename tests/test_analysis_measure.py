"""The diffusion measure (anisotropy, separation) on clusters whose geometry is known in closed form."""

import math

import numpy as np
import pytest

from lskd.diffusion import pair_diffusion, space_diffusion
from lskd.errors import InvalidConfig

A, B, C = 0, 1, 2
DIM, N = 8, 20000
DISTANCE = 10.0


def three_clusters(stretch_a=1.0, stretch_b=1.0, seed=0):
    """Unit-variance clusters at 0 (a), DISTANCE·e0 (b) and DISTANCE·e1 (c); a and b optionally stretched
    along e0, the line joining them."""
    rng = np.random.default_rng(seed)
    centres = {A: np.zeros(DIM), B: DISTANCE * np.eye(DIM)[0], C: DISTANCE * np.eye(DIM)[1]}
    stretches = {A: stretch_a, B: stretch_b, C: 1.0}
    points, labels = [], []
    for c in (A, B, C):
        noise = rng.normal(size=(N, DIM))
        noise[:, 0] *= stretches[c]
        points.append(centres[c] + noise)
        labels.append(np.full(N, c))
    return np.vstack(points), np.concatenate(labels)


def test_hand_computed_example():
    points = np.array([[-1, 0], [1, 0], [0, -2], [0, 2], [9, 0], [11, 0]], dtype=float)
    labels = np.array([A, A, A, A, B, B])
    measure = pair_diffusion(points, labels, A, B)
    assert measure.centroid_distance == pytest.approx(10.0)
    assert measure.sigma_parallel_target == pytest.approx(math.sqrt(0.5))  # offsets along x: ±1, 0, 0
    assert measure.sigma_perpendicular_target == pytest.approx(math.sqrt(2.0))  # along y: 0, 0, ±2; d-1 = 1
    assert measure.anisotropy == pytest.approx(0.5)
    assert measure.sigma_parallel_other == pytest.approx(1.0)
    assert measure.separation == pytest.approx(10.0 / (math.sqrt(0.5) + 1.0))


def test_isotropic_clusters_have_anisotropy_one():
    measures = space_diffusion("penultimate", *three_clusters(), target=A, similar=B, control=C)
    for pair in (measures.similar, measures.control):
        assert pair.anisotropy == pytest.approx(1.0, abs=0.03)
    assert measures.similar.separation == pytest.approx(DISTANCE / 2, rel=0.03)


def test_clusters_stretched_toward_each_other():
    stretch = 4.0
    isotropic = space_diffusion("penultimate", *three_clusters(), target=A, similar=B, control=C)
    diffused = space_diffusion("penultimate", *three_clusters(stretch, stretch), target=A, similar=B, control=C)
    assert diffused.similar.anisotropy == pytest.approx(stretch, rel=0.03)
    assert diffused.similar.separation == pytest.approx(DISTANCE / (2 * stretch), rel=0.03)
    assert diffused.similar.separation < isotropic.similar.separation / 3
    # Toward the control c (along e1), the stretched axis e0 is one of the DIM-1 orthogonal ones.
    perpendicular = math.sqrt((stretch**2 + DIM - 2) / (DIM - 1))
    assert diffused.control.anisotropy == pytest.approx(1.0 / perpendicular, rel=0.03)


def test_measure_is_invariant_to_rotation_translation_and_scale():
    points, labels = three_clusters(stretch_a=3.0, seed=1)
    rotation, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(DIM, DIM)))
    moved = 2.5 * points @ rotation + 7.0
    original = pair_diffusion(points, labels, A, B)
    transformed = pair_diffusion(moved, labels, A, B)
    assert transformed.anisotropy == pytest.approx(original.anisotropy, rel=1e-9)
    assert transformed.separation == pytest.approx(original.separation, rel=1e-9)
    assert transformed.centroid_distance == pytest.approx(2.5 * original.centroid_distance, rel=1e-9)


def test_spread_without_variance_gives_null_ratios():
    points = np.array([[0, 0], [0, 0], [1, 0], [1, 0]], dtype=float)
    measure = pair_diffusion(points, np.array([A, A, B, B]), A, B)
    assert measure.anisotropy is None and measure.separation is None


def test_coincident_centroids_are_refused():
    points = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], dtype=float)
    with pytest.raises(InvalidConfig, match="classes 0 and 1 have the same centroid"):
        pair_diffusion(points, np.array([A, A, B, B]), A, B)


def test_a_single_sample_is_refused():
    points = np.array([[0, 0], [1, 1], [5, 5]], dtype=float)
    with pytest.raises(InvalidConfig, match="class 1 has 1 sample"):
        pair_diffusion(points, np.array([A, A, B]), A, B)
