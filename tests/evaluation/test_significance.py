import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mmrec_ray.errors import MmrecError
from mmrec_ray.evaluation.significance import (
    anova_test,
    consensus_per_pe,
    mcnemar_test,
    significance_against_reference,
)


def _paired(both, model_only, reference_only, neither):
    a = [1] * both + [1] * model_only + [0] * reference_only + [0] * neither
    b = [1] * both + [0] * model_only + [1] * reference_only + [0] * neither
    return np.array(a), np.array(b)


def test_mcnemar_exact_for_few_discordant_pairs():
    a, b = _paired(both=20, model_only=3, reference_only=10, neither=7)
    result = mcnemar_test(a, b)
    assert result.exact and (result.model_only, result.reference_only) == (3, 10)
    # exact two-sided binomial: 2 * P(X <= 3), X ~ Bin(13, 1/2)
    expected = 2 * sum(math.comb(13, i) for i in range(4)) / 2**13
    assert result.p_value == pytest.approx(expected)
    assert result.p_value == pytest.approx(378 / 4096)


def test_mcnemar_chi_square_with_continuity_correction_for_many_discordant_pairs():
    a, b = _paired(both=50, model_only=30, reference_only=10, neither=40)
    result = mcnemar_test(a, b)
    assert not result.exact
    statistic = (abs(30 - 10) - 1) ** 2 / (30 + 10)
    assert result.statistic == pytest.approx(statistic)  # 9.025
    # chi-square with 1 df: P(X > x) = erfc(sqrt(x / 2))
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(statistic / 2)))


def test_mcnemar_without_discordant_pairs_is_not_significant():
    a, b = _paired(both=5, model_only=0, reference_only=0, neither=5)
    assert mcnemar_test(a, b).p_value == pytest.approx(1.0)


def test_one_way_anova_matches_the_formula():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([4.0, 5.0, 6.0])
    grand = np.concatenate([x, y]).mean()
    between = len(x) * (x.mean() - grand) ** 2 + len(y) * (y.mean() - grand) ** 2
    within = ((x - x.mean()) ** 2).sum() + ((y - y.mean()) ** 2).sum()
    f_value = (between / 1) / (within / (len(x) + len(y) - 2))
    statistic, p_value = anova_test(x, y)
    assert statistic == pytest.approx(f_value)
    assert p_value == pytest.approx(stats.f.sf(f_value, 1, len(x) + len(y) - 2))
    # two groups: F = t^2 of the pooled two-sample t test
    t = stats.ttest_ind(x, y)
    assert p_value == pytest.approx(t.pvalue)


def test_anova_of_identical_constant_groups_is_not_significant():
    assert anova_test(np.zeros(4), np.zeros(5)) == (0.0, 1.0)


def _per_pe(rows):
    return pd.DataFrame(rows, columns=["model", "seed", "purchase_event_id", "subset", "k", "hit", "ap"])


def test_consensus_is_majority_hit_and_mean_ap_over_seeds():
    per_pe = _per_pe(
        [
            ("m", 0, 1, "intersection", 3, 1, 1.0),
            ("m", 1, 1, "intersection", 3, 1, 0.5),
            ("m", 2, 1, "intersection", 3, 0, 0.0),
            ("m", 0, 2, "intersection", 3, 0, 0.0),
            ("m", 1, 2, "intersection", 3, 1, 1.0),
            ("m", 2, 2, "intersection", 3, 0, 0.0),
        ]
    )
    out = consensus_per_pe(per_pe).set_index("purchase_event_id")
    assert out.loc[1, "hit"] == 1 and out.loc[2, "hit"] == 0
    assert out.loc[1, "ap"] == pytest.approx(0.5)
    assert out.loc[2, "hit_rate"] == pytest.approx(1 / 3)
    assert (out["n_seeds"] == 3).all()


def _toy_per_pe():
    """Reference hits every PE; 'weak' misses most; 'conversation' serves only conversations_only PEs."""
    rows = []
    subsets = ["conversations_only"] * 30 + ["sessions_only"] * 30
    for pe, subset in enumerate(subsets, start=1):
        for seed in (0, 1):
            rows.append(("latent_feature", seed, pe, subset, 3, 1, 1.0))
            weak_hit = int(pe % 5 == 0)
            rows.append(("weak", seed, pe, subset, 3, weak_hit, 0.5 * weak_hit))
            if subset == "conversations_only":
                rows.append(("conversation", seed, pe, subset, 3, 1, 1.0))
    return _per_pe(rows)


def test_significance_against_reference_per_subset_old_convention():
    # hr_test=mcnemar_majority / map_test=anova: McNemar on majority hits, one-way ANOVA on mean AP.
    table = significance_against_reference(
        _toy_per_pe(), "latent_feature", ks=(3,), n_test=60, hr_test="mcnemar_majority", map_test="anova"
    )
    weak = table[(table["model"] == "weak") & (table["metric"] == "hr")].set_index("subset")
    assert set(weak.index) == {"union", "conversations_only", "sessions_only"}
    assert weak.loc["union", "n_pes"] == 60
    assert weak.loc["union", "discordant_reference"] == 48 and weak.loc["union", "discordant_model"] == 0
    assert weak.loc["union", "test"] == "mcnemar_chi2_cc"
    assert weak.loc["union", "statistic"] == pytest.approx((48 - 1) ** 2 / 48)
    assert weak["significant"].all()
    assert weak.loc["union", "value"] == pytest.approx(12 / 60)
    # The partial model: no union row, no sessions_only row; identical outcomes -> not significant.
    conv = table[table["model"] == "conversation"]
    assert set(conv["subset"]) == {"conversations_only"}
    assert not conv["significant"].any()
    assert set(table["test"]) == {"mcnemar_exact", "mcnemar_chi2_cc", "anova_oneway"}
    assert (table[table["metric"] == "map"]["test"] == "anova_oneway").all()


def test_significance_against_reference_per_subset_default():
    # Default (cmh / wilcoxon). Both seeds agree, so d_i = -1 on the 48 PEs weak misses: X^2 = 48^2 / 48 = 48,
    # without McNemar's continuity correction.
    table = significance_against_reference(_toy_per_pe(), "latent_feature", ks=(3,), n_test=60)
    weak = table[(table["model"] == "weak") & (table["metric"] == "hr")].set_index("subset")
    assert set(weak.index) == {"union", "conversations_only", "sessions_only"}
    assert weak.loc["union", "discordant_reference"] == 48 and weak.loc["union", "discordant_model"] == 0
    assert weak.loc["union", "test"] == "cmh_clustered_chi2"
    assert weak.loc["union", "statistic"] == pytest.approx(48.0)
    assert weak["significant"].all()
    conv = table[table["model"] == "conversation"]
    assert set(conv["subset"]) == {"conversations_only"} and not conv["significant"].any()
    assert (table[table["metric"] == "map"]["test"] == "wilcoxon").all()


def test_missing_reference_is_a_clear_error():
    with pytest.raises(MmrecError, match="reference model 'keyword' has no predictions"):
        significance_against_reference(_toy_per_pe(), "keyword")
