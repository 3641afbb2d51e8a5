"""Detection metrics against hand-computed values."""

import numpy as np

from train.metrics import accuracy_threshold, balanced_threshold, detection_metrics, roc_auc


def test_roc_auc_matches_pair_counting_with_ties():
    scores = np.array([0.9, 0.8, 0.8, 0.3, 0.2, 0.8])
    labels = np.array([1, 1, 0, 1, 0, 0])
    # Pairs (pos, neg): 0.9 beats all 3; 0.8 beats 0.2, ties 0.8 twice; 0.3 beats 0.2 -> (3 + 1 + 1 + 1) / 9.
    assert roc_auc(scores, labels) == (3 + 1 + 0.5 + 0.5 + 1) / 9
    assert roc_auc(np.array([0.1, 0.9]), np.array([0, 1])) == 1.0
    assert np.isnan(roc_auc(np.array([0.1, 0.2]), np.array([1, 1])))


def test_detection_metrics_at_a_threshold():
    scores = np.array([0.9, 0.6, 0.4, 0.7, 0.1, 0.2])
    labels = np.array([1, 1, 1, 0, 0, 0])
    m = detection_metrics(scores, labels, threshold=0.5)
    assert m["frr"] == 1 / 3 and m["far"] == 1 / 3 and m["accuracy"] == 4 / 6
    assert m["positives"] == 3 and m["negatives"] == 3


def test_balanced_threshold_separates_separable_scores():
    scores = np.array([0.95, 0.9, 0.85, 0.3, 0.2, 0.1])
    labels = np.array([1, 1, 1, 0, 0, 0])
    threshold = balanced_threshold(scores, labels)
    assert 0.3 < threshold <= 0.85
    assert detection_metrics(scores, labels, threshold)["accuracy"] == 1.0


def test_the_accuracy_threshold_counts_errors_where_the_balanced_one_weighs_rates():
    # 2 keyword clips and 6 others: accepting the keyword at 0.2 costs two false accepts (2/6 FAR) to save one
    # false reject (1/2 FRR). The balanced rule takes that trade, the accuracy rule does not.
    scores = np.array([0.9, 0.2, 0.25, 0.22, 0.1, 0.05, 0.03, 0.01])
    labels = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    balanced, accurate = balanced_threshold(scores, labels), accuracy_threshold(scores, labels)
    assert balanced < 0.2 and accurate > 0.25
    assert detection_metrics(scores, labels, balanced)["accuracy"] == 6 / 8
    assert detection_metrics(scores, labels, accurate)["accuracy"] == 7 / 8
    assert accuracy_threshold(scores, np.ones(8)) == 0.5
