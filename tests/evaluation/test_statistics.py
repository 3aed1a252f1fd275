import math

import numpy as np
import pandas as pd
import pytest

from mmrec_ray.evaluation.significance import consensus_per_pe
from mmrec_ray.evaluation.statistics import (
    bootstrap_means,
    bootstrap_table,
    friedman_nemenyi,
    holm,
    nemenyi_critical_difference,
    pairwise_tests,
    seed_summary,
)


def test_holm_against_hand_computed_adjustment():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    reject, adjusted = holm(p, alpha=0.05)
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    assert reject.tolist() == [True, False, False, True]
    # Holm stops at the first non-rejection even if a later raw p is below alpha / 1
    reject, _ = holm([0.02, 0.03], alpha=0.05)  # 0.02 * 2 = 0.04 < 0.05, then 0.03 * 1 < 0.05
    assert reject.tolist() == [True, True]
    reject, _ = holm([0.03, 0.04], alpha=0.05)  # 0.03 * 2 = 0.06 > 0.05: nothing rejected
    assert reject.tolist() == [False, False]


def test_bootstrap_percentiles_on_a_hand_computed_case():
    # mean of 4 draws from {0,0,0,1} is Bin(4, 1/4)/4: P(0) = 0.316 > 2.5 %, P(>= 3/4) = 0.051, P(1) = 0.004
    low, high = bootstrap_means(np.array([0.0, 0.0, 0.0, 1.0]), n_resamples=20000, seed=1)
    assert low == 0.0
    assert high == 0.75


def test_bootstrap_is_seeded_and_exact_for_constants():
    assert bootstrap_means(np.full(7, 0.4), n_resamples=200) == pytest.approx((0.4, 0.4))
    rng = np.random.default_rng(0)
    values = rng.random((50, 3))
    first = bootstrap_means(values, n_resamples=300, seed=5)
    second = bootstrap_means(values, n_resamples=300, seed=5)
    np.testing.assert_array_equal(first[0], second[0])
    assert (first[0] <= values.mean(axis=0)).all() and (values.mean(axis=0) <= first[1]).all()


def test_nemenyi_critical_difference_matches_demsar_table():
    # Demšar (2006) Table 5(a): q_0.05 = 1.960 (k=2), 2.343 (k=3), 3.164 (k=10)
    assert nemenyi_critical_difference(3, 10) == pytest.approx(2.343 * math.sqrt(3 * 4 / 60), abs=1e-3)
    assert nemenyi_critical_difference(2, 1) == pytest.approx(1.960 * math.sqrt(1.0), abs=1e-3)
    assert nemenyi_critical_difference(10, 100) == pytest.approx(3.164 * math.sqrt(110 / 600), abs=1e-3)


def _consensus(values: dict[str, list[float]], subset="intersection") -> pd.DataFrame:
    rows = []
    for model, aps in values.items():
        for pe, ap in enumerate(aps, start=1):
            rows.append((model, 0, pe, subset, 3, int(ap > 0), ap))
    per_pe = pd.DataFrame(rows, columns=["model", "seed", "purchase_event_id", "subset", "k", "hit", "ap"])
    return consensus_per_pe(per_pe)


def test_friedman_on_a_hand_computed_ranking():
    # Same order on every one of 4 PEs: ranks 1, 2, 3; chi2 = 12N/(k(k+1)) sum R^2 - 3N(k+1) = 4*14 - 48 = 8
    consensus = _consensus(
        {"a": [0.9, 0.8, 0.7, 0.6], "b": [0.5, 0.4, 0.3, 0.2], "c": [0.1, 0.0, 0.05, 0.01]}
    )
    result = friedman_nemenyi(consensus, "intersection", "map", 3, n_test=4)
    assert result.models == ["a", "b", "c"]
    np.testing.assert_allclose(result.average_ranks, [1.0, 2.0, 3.0])
    assert result.statistic == pytest.approx(8.0)
    assert result.p_value == pytest.approx(math.exp(-4.0))  # chi-square, 2 df: sf(x) = exp(-x/2)
    assert result.critical_difference == pytest.approx(nemenyi_critical_difference(3, 4))
    assert friedman_nemenyi(_consensus({"a": [1.0], "b": [0.0]}), "intersection") is None


def test_pairwise_tests_cover_every_pair_with_holm():
    rng = np.random.default_rng(0)
    consensus = _consensus(
        {"good": list(0.5 + 0.5 * rng.random(40)), "bad": [0.0] * 40, "mid": list(0.5 * rng.random(40))}
    )
    table = pairwise_tests(consensus, ks=(3,), n_test=40)
    assert set(table["subset"]) == {"union", "intersection"}  # every PE is an intersection PE here
    maps = table[(table["metric"] == "map") & (table["subset"] == "intersection")]
    assert sorted(zip(maps["model_a"], maps["model_b"])) == [("bad", "good"), ("bad", "mid"), ("good", "mid")]
    assert (maps["p_holm"] >= maps["p_value"]).all()
    _, expected = holm(maps["p_value"].to_numpy())
    np.testing.assert_allclose(maps["p_holm"], expected)
    assert maps["significant"].all()
    assert set(table["metric"]) == {"hr", "map"}


def test_seed_summary_mean_and_std():
    metrics = pd.DataFrame(
        {
            "model": ["m"] * 3 + ["p"],
            "seed": [0, 1, 2, 0],
            "subset": ["union"] * 4,
            "metric": ["hr"] * 4,
            "k": [3] * 4,
            "value": [0.5, 0.6, 0.7, 0.3],
        }
    )
    out = seed_summary(metrics).set_index("model")
    assert out.loc["m", "mean"] == pytest.approx(0.6)
    assert out.loc["m", "std"] == pytest.approx(0.1)  # sample std, ddof = 1
    assert out.loc["p", "std"] == 0.0 and out.loc["p", "n_seeds"] == 1


def test_bootstrap_table_uses_the_seed_mean_of_hits():
    consensus = _consensus({"a": [1.0, 0.0, 1.0, 1.0], "b": [0.0, 0.0, 0.0, 1.0], "c": [0.5, 0.5, 0.5, 0.5]})
    table = bootstrap_table(consensus, ks=(3,), n_resamples=500, n_test=4)
    row = table[
        (table["model"] == "a") & (table["metric"] == "hr") & (table["subset"] == "intersection")
    ].iloc[0]
    assert row["mean"] == pytest.approx(0.75)
    assert row["ci_low"] <= 0.75 <= row["ci_high"]
    assert set(table["subset"]) == {"union", "intersection"}


def test_wilcoxon_exact_for_few_untied_differences_normal_approximation_otherwise():
    from scipy import stats

    from mmrec_ray.evaluation.statistics import wilcoxon_test

    a = np.array([0.9, 0.7, 0.65, 0.3, 0.2, 0.1, 0.05, 0.0])
    b = np.array([0.1, 0.2, 0.5, 0.25, 0.0, 0.0, 0.05, 0.0])  # 6 non-zero, untied differences
    assert wilcoxon_test(a, b)[1] == pytest.approx(stats.wilcoxon(a - b, method="exact").pvalue)
    tied_a = np.array([1.0, 1.0, 1.0, 0.5, 0.5, 0.0, 1.0, 1.0])  # AP-like values: tied differences
    tied_b = np.zeros(8)
    nonzero = (tied_a - tied_b)[tied_a != tied_b]
    expected = stats.wilcoxon(nonzero, method="approx").pvalue  # tie-corrected normal approximation
    assert wilcoxon_test(tied_a, tied_b)[1] == pytest.approx(expected)
    assert wilcoxon_test(a, a) == (0.0, 1.0)
