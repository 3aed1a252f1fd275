import numpy as np
import pytest

from mmrec_ray.evaluation.metrics import per_pe_metrics, rank_items


def test_hr_and_ap_on_a_hand_computed_multi_item_purchase():
    # Ranking: columns 0,1,2,3,4; purchased: columns 1 and 3 -> rel = 0,1,0,1,0
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    targets = np.array([[0, 1, 0, 1, 0]])
    out = per_pe_metrics(scores, targets, ks=(1, 2, 3, 4, 5))
    assert out.hits[0].tolist() == [0, 1, 1, 1, 1]
    # AP@2 = P@2 * 1 / min(2, 2) = (1/2)/2; AP@4 = (1/2 + 2/4)/2; AP@5 denominator min(5, 2) = 2
    np.testing.assert_allclose(out.ap[0], [0.0, 0.25, 0.25, 0.5, 0.5])


def test_denominator_is_min_of_k_and_number_purchased():
    # Three purchased items ranked 1..3: perfect at every k, because the denominator is min(k, 3), not k.
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    targets = np.array([[1, 1, 1, 0, 0, 0]])
    out = per_pe_metrics(scores, targets, ks=(1, 2, 3, 4, 5))
    np.testing.assert_allclose(out.ap[0], [1.0] * 5)
    # One purchased item at rank 2: AP@k = (1/2) / min(k, 1) for k >= 2
    out = per_pe_metrics(np.array([[3.0, 2.0, 1.0]]), np.array([[0, 1, 0]]), ks=(1, 2, 3))
    np.testing.assert_allclose(out.ap[0], [0.0, 0.5, 0.5])
    assert out.hits[0].tolist() == [0, 1, 1]


def test_map_and_hr_are_means_over_pes():
    scores = np.array([[0.9, 0.1, 0.0], [0.9, 0.1, 0.0]])
    targets = np.array([[1, 0, 0], [0, 0, 1]])
    out = per_pe_metrics(scores, targets, ks=(1, 3))
    np.testing.assert_allclose(out.hr(), [0.5, 1.0])
    # PE 2: its item at rank 3 -> AP@3 = (1/3)/1
    np.testing.assert_allclose(out.map(), [0.5, (1.0 + 1.0 / 3.0) / 2])


def test_post_filter_ranks_non_purchasable_items_last():
    scores = np.array([[0.9, 0.1, 0.5]])
    targets = np.array([[0, 1, 0]])
    without = per_pe_metrics(scores, targets, ks=(1, 2))
    assert without.hits[0].tolist() == [0, 0]  # ranking 0, 2, 1
    purchasable = np.array([[False, True, True]])
    with_filter = per_pe_metrics(scores, targets, purchasable, ks=(1, 2))
    assert rank_items(scores, purchasable)[0].tolist() == [2, 1, 0]
    assert with_filter.hits[0].tolist() == [0, 1]
    np.testing.assert_allclose(with_filter.ap[0], [0.0, 0.5])


def test_post_filter_works_for_negative_scores_and_minus_infinity():
    # "Multiply by the mask" would fail for logits; the filter must still put purchasable items first.
    scores = np.array([[-1.0, -5.0, -np.inf, -3.0]])
    purchasable = np.array([[False, True, True, True]])
    assert rank_items(scores, purchasable)[0].tolist() == [3, 1, 2, 0]


def test_ties_are_broken_by_lower_item_column():
    scores = np.zeros((1, 5))
    assert rank_items(scores)[0].tolist() == [0, 1, 2, 3, 4]
    assert per_pe_metrics(scores, np.array([[1, 0, 0, 0, 0]]), ks=(1,)).hits[0, 0] == 1
    assert per_pe_metrics(scores, np.array([[0, 0, 0, 0, 1]]), ks=(3,)).hits[0, 0] == 0
    # partial tie: columns 1 and 3 share the top score
    assert rank_items(np.array([[0.1, 0.7, 0.2, 0.7]]))[0].tolist() == [1, 3, 2, 0]


def test_cut_off_beyond_the_number_of_items():
    out = per_pe_metrics(np.array([[0.2, 0.1]]), np.array([[0, 1]]), ks=(5,))
    assert out.hits[0, 0] == 1
    np.testing.assert_allclose(out.ap[0, 0], 0.5)


def test_vectorized_metrics_match_a_plain_loop():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, (200, 7)).astype(float)  # many ties
    targets = (rng.random((200, 7)) < 0.25).astype(np.uint8)
    targets[np.arange(200), rng.integers(0, 7, 200)] = 1
    purchasable = rng.random((200, 7)) < 0.8
    out = per_pe_metrics(scores, targets, purchasable, ks=(1, 2, 3, 4, 5))
    for i in range(200):
        order = sorted(range(7), key=lambda j: (not purchasable[i, j], -scores[i, j], j))
        for c, k in enumerate((1, 2, 3, 4, 5)):
            rel = [targets[i, j] for j in order[:k]]
            precision_sum = sum(sum(rel[: j + 1]) / (j + 1) for j in range(k) if rel[j])
            assert out.hits[i, c] == int(any(rel))
            assert out.ap[i, c] == pytest.approx(precision_sum / min(k, targets[i].sum()))


def test_nan_scores_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        per_pe_metrics(np.array([[np.nan, 1.0]]), np.array([[1, 0]]))
