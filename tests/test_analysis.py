"""Algorithm 1 (template-span projection + train-fitted PCA) against hand-written numpy and torch's Linear."""

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from lskd.diffusion import (
    PlanePCA,
    TemplateProjection,
    augmented_templates,
    project_model,
    select_classes,
)
from lskd.errors import InvalidConfig

CLASSES = (5, 7, 9)
NUM_CLASSES, DIM = 10, 12


@pytest.fixture
def classifier():
    torch.manual_seed(0)
    layer = torch.nn.Linear(DIM, NUM_CLASSES)
    with torch.no_grad():
        layer.bias.copy_(torch.arange(NUM_CLASSES, dtype=torch.float32) * 1.5 - 4.0)  # all distinct
    return layer


def clusters(rng, weight, n_per_class, classes=CLASSES, scale=1.0, extra_class=0):
    """Gaussian clusters around 3·w_c, plus a few rows of a class the analysis must ignore."""
    labels = np.repeat(list(classes) + [extra_class], n_per_class)
    features = 3 * weight[labels] + scale * rng.normal(size=(labels.size, weight.shape[1]))
    order = rng.permutation(labels.size)
    return features[order], labels[order]


def test_templates_carry_the_bias_of_each_chosen_class(classifier):
    weight, bias = classifier.weight.detach().numpy(), classifier.bias.detach().numpy()
    templates = augmented_templates(classifier.weight, classifier.bias, CLASSES)
    np.testing.assert_array_equal(templates[:, -1], bias[[5, 7, 9]])
    assert not np.allclose(templates[:, -1], bias[:3])  # the authors' script's bias[0:3]
    np.testing.assert_array_equal(templates[:, :-1], weight[[5, 7, 9]])


def test_augmented_dot_product_is_the_logit(classifier):
    features = torch.randn(20, DIM)
    logits = classifier(features).detach().double().numpy()
    projection = TemplateProjection.from_classifier(classifier.weight, classifier.bias, CLASSES)
    augmented = np.hstack([features.double().numpy(), np.ones((20, 1))])
    np.testing.assert_allclose(augmented @ projection.templates.T, logits[:, CLASSES], rtol=1e-5, atol=1e-5)
    # The templates lie in the span, so the 3-D coordinates alone still give the three logits.
    coordinates_of_templates = projection.templates @ projection.basis
    np.testing.assert_allclose(
        projection.project(features) @ coordinates_of_templates.T, logits[:, CLASSES], rtol=1e-5, atol=1e-5
    )


def span_projector(templates):
    """Independent reference: the orthogonal projector onto the templates' row span, T^T (T T^T)^-1 T, in float64."""
    templates = np.asarray(templates, dtype=np.float64)
    return templates.T @ np.linalg.solve(templates @ templates.T, templates)


def test_basis_is_orthonormal_and_spans_the_templates(classifier):
    projection = TemplateProjection.from_classifier(classifier.weight, classifier.bias, CLASSES)
    assert projection.basis.shape == (DIM + 1, 3)
    np.testing.assert_allclose(projection.basis.T @ projection.basis, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(projection.basis @ projection.basis.T, span_projector(projection.templates), atol=1e-12)


def test_projection_keeps_exactly_the_component_inside_the_template_span(classifier):
    """The coordinates are those of the feature's orthogonal projection onto the span (the basis is checked above)."""
    projection = TemplateProjection.from_classifier(classifier.weight, classifier.bias, CLASSES)
    features = np.random.default_rng(1).normal(size=(7, DIM))
    inside = np.column_stack([features, np.ones(7)]) @ span_projector(projection.templates)
    coordinates = projection.project(features)
    np.testing.assert_allclose(np.linalg.norm(coordinates, axis=1), np.linalg.norm(inside, axis=1), atol=1e-10)
    np.testing.assert_allclose(coordinates @ projection.basis.T, inside, atol=1e-10)


def test_classifier_without_bias_gets_zero_bias(classifier):
    templates = augmented_templates(classifier.weight, None, CLASSES)
    np.testing.assert_array_equal(templates[:, -1], np.zeros(3))


@pytest.mark.parametrize(
    "classes, message",
    [
        ((5, 7, 10), "class index 10 is outside the classifier's 10 classes"),
        ((5, 5, 9), "3 distinct class indices"),
        ((5, 7), "3 distinct class indices"),
    ],
)
def test_bad_classes_are_named(classifier, classes, message):
    with pytest.raises(InvalidConfig, match=message):
        TemplateProjection.from_classifier(classifier.weight, classifier.bias, classes)


def test_linearly_dependent_templates_are_refused():
    weight = np.zeros((4, 3))
    weight[0], weight[1], weight[2] = [1, 0, 0], [0, 1, 0], [1, 1, 0]
    with pytest.raises(InvalidConfig, match="linearly dependent"):
        TemplateProjection.from_classifier(weight, np.zeros(4), (0, 1, 2))


def test_feature_width_must_match_the_classifier(classifier):
    projection = TemplateProjection.from_classifier(classifier.weight, classifier.bias, CLASSES)
    with pytest.raises(InvalidConfig, match="features have 11 dimensions, the classifier expects 12"):
        projection.project(np.zeros((3, 11)))


def test_plane_pca_matches_sklearn_up_to_sign():
    points = np.random.default_rng(2).normal(size=(50, 3)) * [5.0, 2.0, 0.5]
    ours = PlanePCA.fit(points)
    reference = PCA(n_components=2).fit(points)
    signs = np.sign(np.sum(ours.components * reference.components_, axis=1))
    np.testing.assert_allclose(ours.components, reference.components_ * signs[:, None], atol=1e-10)
    np.testing.assert_allclose(ours.transform(points), reference.transform(points) * signs, atol=1e-10)
    np.testing.assert_allclose(ours.explained_variance_ratio, reference.explained_variance_ratio_, atol=1e-10)


def model_projection(classifier, valid_scale=1.0, caps=(None, None)):
    rng = np.random.default_rng(3)
    weight = classifier.weight.detach().double().numpy()
    train = clusters(rng, weight, 40)
    valid = clusters(rng, weight, 15, scale=valid_scale)
    result = project_model(classifier.weight, classifier.bias, CLASSES, *train, *valid, *caps)
    return result, train, valid


def test_pca_is_fitted_on_train_points_and_centroids(classifier):
    result, (features, labels), _ = model_projection(classifier)
    basis = result.templates.basis
    augmented = np.column_stack([features, np.ones(len(features))])
    keep = np.isin(labels, CLASSES)
    centroids = np.stack([augmented[labels == c].mean(axis=0) for c in CLASSES]) @ basis
    fitted_on = np.vstack([augmented[keep] @ basis, centroids])
    np.testing.assert_allclose(result.train.centroids_3d, centroids, atol=1e-12)
    np.testing.assert_allclose(result.pca.mean, fitted_on.mean(axis=0), atol=1e-12)
    reference = PCA(n_components=2).fit(fitted_on)
    signs = np.sign(np.sum(result.pca.components * reference.components_, axis=1))
    np.testing.assert_allclose(result.train.points_2d, reference.transform(augmented[keep] @ basis) * signs, atol=1e-10)


def test_validation_reuses_the_train_fitted_pca(classifier):
    result, (train_features, train_labels), (features, labels) = model_projection(classifier, valid_scale=4.0)
    basis = result.templates.basis
    train_keep, keep = np.isin(train_labels, CLASSES), np.isin(labels, CLASSES)
    train_3d = np.column_stack([train_features[train_keep], np.ones(train_keep.sum())]) @ basis
    centroids = np.stack([train_3d[train_labels[train_keep] == c].mean(axis=0) for c in CLASSES])
    reference = PCA(n_components=2).fit(np.vstack([train_3d, centroids]))
    valid_3d = np.column_stack([features[keep], np.ones(keep.sum())]) @ basis
    signs = np.sign(np.sum(result.pca.components * reference.components_, axis=1))
    np.testing.assert_allclose(result.valid.points_2d, reference.transform(valid_3d) * signs, atol=1e-10)
    own_pca = PlanePCA.fit(np.vstack([result.valid.points_3d, result.valid.centroids_3d]))
    assert not np.allclose(own_pca.transform(result.valid.points_3d), result.valid.points_2d, atol=1e-3)
    assert not np.allclose(own_pca.mean, result.pca.mean, atol=1e-3)


def test_first_samples_of_each_class_are_kept_in_order():
    labels = np.array([5, 0, 7, 5, 9, 5, 7, 9, 7, 5, 9])
    features = np.arange(labels.size, dtype=float)[:, None] * np.ones((1, 2))
    kept, kept_labels = select_classes(features, labels, CLASSES, "train", max_per_class=2)
    np.testing.assert_array_equal(kept[:, 0], [0, 2, 3, 4, 6, 7])
    np.testing.assert_array_equal(kept_labels, [5, 7, 5, 9, 7, 9])


def test_each_split_has_its_own_cap(classifier):
    result, _, _ = model_projection(classifier, caps=(12, 5))
    assert [int(np.sum(result.train.labels == c)) for c in CLASSES] == [12, 12, 12]
    assert [int(np.sum(result.valid.labels == c)) for c in CLASSES] == [5, 5, 5]


def test_a_class_with_one_sample_is_refused(classifier):
    rng = np.random.default_rng(4)
    train_labels, valid_labels = np.array([5, 5, 7, 7, 9, 9]), np.array([5, 5, 7, 7, 9])
    with pytest.raises(InvalidConfig, match=r"valid split has 1 sample\(s\) of class 9"):
        project_model(
            classifier.weight,
            classifier.bias,
            CLASSES,
            rng.normal(size=(6, DIM)),
            train_labels,
            rng.normal(size=(5, DIM)),
            valid_labels,
        )
