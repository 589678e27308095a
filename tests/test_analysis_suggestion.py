"""Automatic choice of (target, similar, control) classes from classifier templates and class counts."""

import numpy as np
import pytest

from lskd.diffusion import suggest_classes
from lskd.errors import InvalidConfig


def templates_at(angles_degrees, norms=None):
    """2-D templates at the given angles, so every cosine is known by hand."""
    radians = np.deg2rad(angles_degrees)
    rows = np.column_stack([np.cos(radians), np.sin(radians)])
    return rows * (np.ones(len(rows)) if norms is None else np.asarray(norms))[:, None]


def test_most_similar_frequent_pair_and_least_similar_control():
    # rows 0/1: identical but rare; rows 3/4: 10 degrees apart; row 6 at 250 is at least 140 degrees from
    # both of them, farther than row 5 (75 degrees from row 4) or row 2 (40 degrees from row 3).
    weight = templates_at([0, 0, 60, 100, 110, 185, 250], norms=[1, 1, 1, 3, 0.5, 1, 1])
    counts = np.array([5, 5, 50, 40, 90, 60, 70])
    suggestion = suggest_classes(weight, counts, min_count=20)
    assert suggestion.classes == (4, 3, 6)  # class 4 is the more frequent of the pair
    assert suggestion.similar_cosine == pytest.approx(np.cos(np.deg2rad(10)))
    assert suggestion.control_cosine == pytest.approx(np.cos(np.deg2rad(140)))  # 250 vs 110


def test_excluded_classes_are_never_suggested():
    weight = templates_at([0, 5, 60, 100, 110, 185])
    counts = np.full(6, 100)
    assert suggest_classes(weight, counts, min_count=1).classes[:2] in ((0, 1), (1, 0))
    assert set(suggest_classes(weight, counts, min_count=1, excluded=[0]).classes[:2]) == {3, 4}


def test_pool_keeps_the_most_frequent_classes():
    weight = templates_at([0, 1, 60, 100, 110, 185])
    counts = np.array([30, 30, 100, 90, 80, 70])
    assert 0 not in suggest_classes(weight, counts, min_count=1, pool_size=4).classes


def test_too_few_frequent_classes_are_refused():
    with pytest.raises(InvalidConfig, match="only 2 class.es. have at least 10 samples"):
        suggest_classes(templates_at([0, 10, 20]), np.array([10, 50, 3]), min_count=10)


def test_counts_must_match_the_classifier():
    with pytest.raises(InvalidConfig, match=r"counts must have one entry per classifier row \(3\)"):
        suggest_classes(templates_at([0, 10, 20]), np.array([10, 50]), min_count=1)
