"""Significance over seeds (issue item 9): the stars test the mean over seeds of per-seed HR / MAP that Table 3
shows; the earlier convention (majority vote for HR, the paper's one-way ANOVA for MAP) stays behind switches."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mmrec_ray.evaluation.report import Report, Section, summary_blocks, to_markdown
from mmrec_ray.evaluation.significance import (
    HR_TESTS,
    MAP_TESTS,
    clustered_mcnemar_test,
    consensus_per_pe,
    mcnemar_test,
    significance_against_reference,
)
from mmrec_ray.evaluation.statistics import pairwise_tests
from mmrec_ray.evaluation.tables import build_table3

COLUMNS = ["model", "seed", "purchase_event_id", "subset", "k", "hit", "ap"]


def _per_pe(outcomes: dict[str, list[list[float]]], field: str = "hit") -> pd.DataFrame:
    """outcomes[model][pe][seed] -> long per-PE rows (every PE an intersection PE, k = 3).

    field="hit": the values are hits (ap = hit); field="ap": the values are APs (hit = ap > 0).
    """
    rows = []
    for model, per_pe in outcomes.items():
        for pe, per_seed in enumerate(per_pe, start=1):
            for seed, value in enumerate(per_seed):
                hit = int(value > 0) if field == "ap" else int(value)
                rows.append((model, seed, pe, "intersection", 3, hit, float(value)))
    return pd.DataFrame(rows, columns=COLUMNS)


def _hr_union(table: pd.DataFrame, model: str = "m") -> pd.Series:
    rows = table[(table["model"] == model) & (table["subset"] == "union") & (table["metric"] == "hr")]
    assert len(rows) == 1
    return rows.iloc[0]


def _per_seed_mean_hr(per_pe: pd.DataFrame, model: str) -> float:
    """What Table 3 shows: HR per seed, then the mean over seeds."""
    rows = per_pe[per_pe["model"] == model]
    return float(rows.groupby("seed")["hit"].mean().mean())


# Hand-made table: 6 PEs x 3 seeds; hits of model m and reference r.
#   PE   m (s0 s1 s2)  r (s0 s1 s2)  hit rate m - r = d_i   3 d_i
#   1     1  1  1       0  0  0       1     - 0   =  1        3
#   2     1  1  0       0  0  0       2/3   - 0   =  2/3      2
#   3     1  0  0       0  0  0       1/3   - 0   =  1/3      1
#   4     0  0  0       1  0  0       0     - 1/3 = -1/3     -1
#   5     1  1  1       1  1  1       0                        0
#   6     0  0  0       0  0  0       0                        0
TABLE = {
    "m": [[1, 1, 1], [1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1], [0, 0, 0]],
    "r": [[0, 0, 0], [0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0]],
}


def test_cmh_on_a_hand_made_three_seed_table():
    per_pe = _per_pe(TABLE)
    row = _hr_union(significance_against_reference(per_pe, "r", ks=(3,), n_test=6))
    # Per-seed HR of m: 4/6, 3/6, 2/6 -> mean 1/2; of r: 2/6, 1/6, 1/6 -> mean 2/9 (Table 3's cells).
    assert row["value"] == pytest.approx(0.5) == _per_seed_mean_hr(per_pe, "m")
    assert row["reference_value"] == pytest.approx(2 / 9) == _per_seed_mean_hr(per_pe, "r")
    # In units of 1/3: sum 3 d_i = 3 + 2 + 1 - 1 = 5 = 6 PEs * 3 seeds * (1/2 - 2/9); sum (3 d_i)^2 = 9+4+1+1 = 15.
    # X^2 = 5^2 / 15 = 5/3.
    assert row["statistic"] == pytest.approx(5 / 3)
    # 4 discordant PEs (< 25) with unequal magnitudes {3, 2, 1, 1}: exact sign flips, 2^4 = 16 patterns. A pattern
    # negating magnitudes summing to m gives 7 - 2m; |7 - 2m| >= 5 iff m <= 1 ({}, {1}, {1'}) or m >= 6 (their
    # complements): 6 of 16 patterns -> p = 6/16 = 0.375.
    assert row["test"] == "cmh_clustered_exact"
    assert row["p_value"] == pytest.approx(6 / 16)
    assert (row["discordant_model"], row["discordant_reference"]) == (3, 1)  # PEs with d_i > 0 / < 0
    assert not row["significant"]
    # For comparison (not asserted as behaviour): McNemar on pooled pairs would use b = 3+2+1 = 6, c = 1, X^2 =
    # 25/7 — PE 1 counted three times; our variance counts PEs, not (seed, PE) pairs.


def test_cmh_chi_square_on_the_table_repeated_ten_times():
    per_pe = _per_pe({model: rows * 10 for model, rows in TABLE.items()})
    row = _hr_union(significance_against_reference(per_pe, "r", ks=(3,), n_test=60))
    # 40 discordant PEs (>= 25): chi-square. X^2 = (10 * 5)^2 / (10 * 15) = 2500 / 150 = 50/3;
    # chi-square on 1 df: P(X > x) = erfc(sqrt(x / 2)) = erfc(sqrt(25/3)).
    assert row["test"] == "cmh_clustered_chi2"
    assert row["statistic"] == pytest.approx(50 / 3)
    assert row["p_value"] == pytest.approx(math.erfc(math.sqrt(25 / 3)))
    assert row["significant"]


def test_old_convention_majority_vote_on_the_hand_made_table():
    per_pe = _per_pe(TABLE)
    table = significance_against_reference(per_pe, "r", ks=(3,), n_test=6, hr_test="mcnemar_majority")
    row = _hr_union(table)
    # Majority vote (at least 2 of 3 seeds): m hits PEs 1, 2, 5; r hits PE 5. b = 2 (PEs 1, 2), c = 0.
    # Exact McNemar: 2 * P(X <= 0), X ~ Bin(2, 1/2) = 2 * 1/4 = 1/2. Value = majority hits: 3/6 and 1/6.
    assert row["test"] == "mcnemar_exact"
    assert (row["discordant_model"], row["discordant_reference"]) == (2, 0)
    assert row["p_value"] == pytest.approx(0.5)
    assert (row["value"], row["reference_value"]) == (pytest.approx(3 / 6), pytest.approx(1 / 6))


def test_a_model_that_wins_big_in_one_seed_gets_a_star_from_the_per_seed_means_only():
    # 30 PEs: m hits every PE in seed 0 and none in seeds 1, 2; r never hits. Per-seed HR of m: 1, 0, 0 -> mean
    # 1/3; of r: 0. The majority vote (1 of 3 seeds) is a miss everywhere: b = c = 0, p = 1, no star.
    per_pe = _per_pe({"m": [[1, 0, 0]] * 30, "r": [[0, 0, 0]] * 30})
    default = _hr_union(significance_against_reference(per_pe, "r", ks=(3,), n_test=30))
    majority = _hr_union(
        significance_against_reference(per_pe, "r", ks=(3,), n_test=30, hr_test="mcnemar_majority")
    )
    assert majority["p_value"] == pytest.approx(1.0) and not majority["significant"]
    assert majority["value"] == 0.0
    # Default: d_i = 1/3 on 30 PEs; X^2 = (30/3)^2 / (30/9) = 100 / (10/3) = 30; p = erfc(sqrt(15)) ~ 4.3e-8.
    assert default["value"] == pytest.approx(1 / 3) == _per_seed_mean_hr(per_pe, "m")
    assert default["statistic"] == pytest.approx(30.0)
    assert default["p_value"] == pytest.approx(math.erfc(math.sqrt(15.0)))
    assert default["significant"]


def test_identical_seeds_count_once():
    # b = 3 PEs only the model hits, c = 10 only the reference, 27 concordant; the same outcomes in every seed.
    model = np.array([1] * 20 + [1] * 3 + [0] * 10 + [0] * 7, dtype=float)
    reference = np.array([1] * 20 + [0] * 3 + [1] * 10 + [0] * 7, dtype=float)
    one_seed = clustered_mcnemar_test(model, reference)
    # Five identical seeds: hit rates are the same 0/1 vector, so the test is unchanged (pooling pairs would see
    # b = 15, c = 50 and a p-value far too small).
    per_pe = _per_pe({"m": [[h] * 5 for h in model], "r": [[h] * 5 for h in reference]})
    row = _hr_union(significance_against_reference(per_pe, "r", ks=(3,), n_test=40))
    assert row["p_value"] == pytest.approx(one_seed.p_value)
    # One seed = McNemar's exact test: 2 * P(X <= 3), X ~ Bin(13, 1/2) = 378/4096.
    assert one_seed.exact and one_seed.p_value == pytest.approx(378 / 4096)
    assert one_seed.p_value == pytest.approx(mcnemar_test(model, reference).p_value)
    pooled = mcnemar_test(np.repeat(model, 5), np.repeat(reference, 5))
    assert pooled.p_value < one_seed.p_value / 100


def test_one_seed_chi_square_is_mcnemar_without_continuity_correction():
    model = np.array([1] * 30 + [0] * 10 + [1] * 50 + [0] * 40, dtype=float)
    reference = np.array([0] * 30 + [1] * 10 + [1] * 50 + [0] * 40, dtype=float)
    result = clustered_mcnemar_test(model, reference)
    assert not result.exact and (result.model_only, result.reference_only) == (30, 10)
    assert result.statistic == pytest.approx((30 - 10) ** 2 / 40)  # 10
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(10 / 2)))


def test_models_with_different_seed_counts_compare_their_seed_means():
    # m has two seeds, r one: d_i = rate_m - rate_r = 1/2 on PEs 1-2, -1 on PE 3, 1 on PE 4.
    per_pe = pd.concat(
        [
            _per_pe({"m": [[1, 0], [0, 1], [0, 0], [1, 1]]}),
            _per_pe({"r": [[0], [0], [1], [0]]}),
        ]
    )
    row = _hr_union(significance_against_reference(per_pe, "r", ks=(3,), n_test=4))
    # sum d = 1/2 + 1/2 - 1 + 1 = 1; sum d^2 = 1/4 + 1/4 + 1 + 1 = 5/2; X^2 = 2/5.
    assert row["statistic"] == pytest.approx(0.4)
    # Exact sign flips over magnitudes {1/2, 1/2, 1, 1} (total 3): negating magnitudes summing to m gives 3 - 2m,
    # and |3 - 2m| >= 1 unless m = 3/2, i.e. one 1/2 and one 1 negated (2 * 2 = 4 patterns): p = 12/16.
    assert row["p_value"] == pytest.approx(12 / 16)
    assert row["value"] == pytest.approx(0.5) and row["reference_value"] == pytest.approx(0.25)


# MAP: 6 PEs x 3 seeds; r has AP 0 except PE 6 (0.3 in seed 0). Seed-mean differences:
#   0.6, 0.5, 0.4, 0.3, 0.2, -0.1  -> ranks of |d| 6, 5, 4, 3, 2, 1; W+ = 20, W- = 1.
MAP_TABLE = {
    "m": [[0.6] * 3, [0.5] * 3, [0.4] * 3, [0.3] * 3, [0.2] * 3, [0.0] * 3],
    "r": [[0.0] * 3] * 5 + [[0.3, 0.0, 0.0]],
}


def _map_union(table: pd.DataFrame) -> pd.Series:
    rows = table[(table["model"] == "m") & (table["subset"] == "union") & (table["metric"] == "map")]
    return rows.iloc[0]


def test_map_default_is_wilcoxon_on_seed_mean_ap_by_hand():
    per_pe = _per_pe(MAP_TABLE, field="ap")
    row = _map_union(significance_against_reference(per_pe, "r", ks=(3,), n_test=6))
    # Exact two-sided: 2 * P(W- <= 1) = 2 * #{subsets of {1..6} with sum <= 1} / 2^6 = 2 * 2/64 = 1/16.
    assert row["test"] == "wilcoxon"
    assert row["statistic"] == pytest.approx(1.0)
    assert row["p_value"] == pytest.approx(1 / 16)
    assert row["value"] == pytest.approx(2.0 / 6) and row["reference_value"] == pytest.approx(0.1 / 6)


def test_map_anova_switch_is_the_papers_one_way_anova_on_seed_mean_ap():
    per_pe = _per_pe(MAP_TABLE, field="ap")
    row = _map_union(significance_against_reference(per_pe, "r", ks=(3,), n_test=6, map_test="anova"))
    expected = stats.f_oneway([0.6, 0.5, 0.4, 0.3, 0.2, 0.0], [0, 0, 0, 0, 0, 0.1])
    assert row["test"] == "anova_oneway"
    assert row["statistic"] == pytest.approx(expected.statistic)
    assert row["p_value"] == pytest.approx(expected.pvalue)


def test_pairwise_tests_follow_the_switches():
    consensus = consensus_per_pe(_per_pe({model: rows * 10 for model, rows in TABLE.items()}))
    default = pairwise_tests(consensus, ks=(3,), n_test=60).set_index(["subset", "metric"])
    assert default.loc[("union", "hr"), "test"] == "cmh_clustered_chi2"
    assert default.loc[("union", "hr"), "statistic"] == pytest.approx(50 / 3)
    assert default.loc[("union", "map"), "test"] == "wilcoxon"
    old = pairwise_tests(consensus, ks=(3,), n_test=60, hr_test="mcnemar_majority", map_test="anova")
    old = old.set_index(["subset", "metric"])
    assert old.loc[("union", "hr"), "test"] == "mcnemar_exact"  # majority-vote pairs: b = 20, c = 0
    assert old.loc[("union", "map"), "test"] == "anova_oneway"
    # Either way the values are the table's: mean of per-seed HR (m: 1/2, r: 2/9 — sorted pair is (m, r)).
    for frame in (default, old):
        assert frame.loc[("union", "hr"), "value_a"] == pytest.approx(0.5)
        assert frame.loc[("union", "hr"), "value_b"] == pytest.approx(2 / 9)


def test_unknown_switch_values_are_refused():
    assert HR_TESTS == ("cmh", "mcnemar_majority") and MAP_TESTS == ("wilcoxon", "anova")
    with pytest.raises(ValueError, match="hr_test"):
        significance_against_reference(_per_pe(TABLE), "r", hr_test="mcnemar")
    with pytest.raises(ValueError, match="map_test"):
        pairwise_tests(consensus_per_pe(_per_pe(TABLE)), map_test="ttest")


def _metrics() -> pd.DataFrame:
    rows = [
        (model, 0, "union", metric, 3, 0.5)
        for model in ("keyword", "latent_feature")
        for metric in ("hr", "map")
    ]
    return pd.DataFrame(rows, columns=["model", "seed", "subset", "metric", "k", "value"])


def test_table3_caption_names_the_tests_used():
    default = build_table3(_metrics(), None, "latent_feature").to_markdown()
    assert "HR: McNemar over (seed, PE) pairs combined across seeds, variance clustered by PE" in default
    assert "MAP: Wilcoxon signed-rank on per-PE AP averaged over seeds" in default
    assert "ANOVA" not in default
    old = build_table3(_metrics(), None, "latent_feature", hr_test="mcnemar_majority", map_test="anova")
    caption = old.to_latex()
    assert "HR: McNemar on the majority vote over seeds" in caption
    assert "MAP: one-way ANOVA on per-PE AP averaged over seeds" in caption


def test_report_summary_names_the_tests_of_the_csvs(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    pd.DataFrame(
        {"model": ["latent_feature", "keyword"], "subset": "union", "metric": "map", "k": 3}
        | {"mean": [0.5, 0.4], "std": 0.01, "n_seeds": 5}
    ).to_csv(results / "seed_summary.csv", index=False)
    pd.DataFrame(
        {"model": ["keyword"] * 2, "reference": "latent_feature", "subset": "union", "metric": ["hr", "map"]}
        | {"k": 3, "test": ["cmh_clustered_chi2", "wilcoxon"], "p_value": 0.01, "significant": True}
        | {"value": [0.3, 0.4], "reference_value": [0.6, 0.5]}
    ).to_csv(results / "significance.csv", index=False)
    text = to_markdown(Report("t", tmp_path, [Section("s", "s", summary_blocks(tmp_path, 3, 0.05))]))
    assert "HR: McNemar over (seed, PE) pairs combined across seeds, variance clustered by PE" in text
    assert "MAP: Wilcoxon signed-rank on per-PE AP averaged over seeds" in text
    assert "ANOVA" not in text and "majority" not in text
    assert "**Union MAP@3** vs Latent Feature: ▼ significantly worse: Keyword." in text


def test_many_discordant_pes_with_mixed_magnitudes_use_the_chi_square():
    # 13 discordant PEs (more than the 12 whose 2^n sign patterns are enumerated), magnitudes 1/3 and 2/3:
    # 9 PEs +1/3, 4 PEs -2/3 -> sum d = 3 - 8/3 = 1/3, sum d^2 = 9/9 + 16/9 = 25/9, X^2 = (1/9) / (25/9) = 1/25.
    model = np.array([1 / 3] * 9 + [0.0] * 4 + [0.5] * 3)
    reference = np.array([0.0] * 9 + [2 / 3] * 4 + [0.5] * 3)
    result = clustered_mcnemar_test(model, reference)
    assert not result.exact
    assert result.statistic == pytest.approx(1 / 25)
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(1 / 50)))
    # 12 of them: all 2^12 patterns enumerated (exact).
    assert clustered_mcnemar_test(model[1:], reference[1:]).exact
