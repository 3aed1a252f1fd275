"""Significance of every model against a reference model (default Latent Feature), per subset and cut-off k, at
alpha = 0.05: the stars of Table 3 (paper, section 5.3). The reference scripts contain no significance tests; the
paper says only "for HR we use McNemar's test and for all other measures one-way ANOVA".

What the table shows. A cell of Table 3 is the mean over a model's S seeds of the per-seed HR@k (MAP@k). Every
seed scores the same N PEs, so that mean is the mean over PEs of the per-PE seed mean:

    mean_s HR_s  = (1/N) sum_i r_i,   r_i  = share of the model's seeds that hit PE i  (``hit_rate``)
    mean_s MAP_s = (1/N) sum_i ap_i,  ap_i = AP@k of PE i averaged over the seeds       (``ap``)

A test of the shown difference therefore works on the per-PE differences d_i = r_i(model) - r_i(reference) (or of
ap_i), paired by PE. The PEs are the independent units; the seeds of one PE are not (a PE one seed hits, the other
seeds of the same model mostly hit too).

HR, ``hr_test="cmh"`` (default): McNemar per seed, combined over seeds as a Cochran-Mantel-Haenszel-type test over
the strata (seed, PE), with the variance taken over PEs rather than over pairs: the clustered-matched-pairs McNemar
test of Durkalski et al. (2003). With b_is (c_is) = 1 when in seed s only the model (only the reference) hits PE i,

    numerator  sum_s (b_s - c_s) = sum_i sum_s (b_is - c_is) = S * sum_i d_i     (paired by PE within seed)
    X^2 = (sum_i d_i)^2 / sum_i d_i^2   on 1 degree of freedom,

the normal approximation of the sign-flip randomisation test of sum_i d_i, whose null is that at every PE the two
models' outcomes are exchangeable, so E[sum_i d_i] = 0: the means of per-seed HR are equal. With one seed
d_i is in {-1, 0, 1} and X^2 = (b - c)^2 / (b + c), McNemar's statistic (without continuity correction). With
fewer than 25 discordant PEs (d_i != 0; McNemar's rule) the exact sign-flip distribution is used instead:
Binomial(n, 1/2) when every discordant PE differs by the same amount (always so with one seed: McNemar's exact
test; scipy ``binomtest``), otherwise all 2^n sign patterns (scipy ``permutation_test``, for n <= 12 to bound the
cost; chi-square beyond). The seed pairing cancels within a PE, so models with different seed sets (a model run
once, external predictions) are tested the same way. Seed-to-seed spread is not part of the null — as in the
paper, the trained models are compared on the test population; ``statistics.seed_summary`` reports the spread.

Alternatives with the same numerator, not chosen:
- McNemar on the pooled counts b = sum_s b_s, c = sum_s c_s (the CMH test with every (seed, PE) pair its own
  stratum): its variance b + c treats the S pairs of one PE as independent. Seeds mostly agree, so a discordant PE
  is counted up to S times and X^2 is up to S times too large (pseudo-replication: p-values far too small). It
  equals X^2 above when no PE is discordant in more than one seed.
- statsmodels ``StratifiedTable(tables).test_null_odds()`` over per-seed 2x2 tables [[hits_model, misses_model],
  [hits_reference, misses_reference]]: its numerator is also sum_s (hits_model_s - hits_reference_s) / 2, but its
  hypergeometric variance treats the two models' hits as independent samples (the PE pairing is ignored: too
  large, since both models hit the easy PEs) and the seeds as independent strata although they share the PEs (too
  small). The two errors offset by accident, not by design.

HR, ``hr_test="mcnemar_majority"`` (this project's earlier reading of the paper): each model is reduced to a
majority vote over its seeds (a hit when more than half the seeds hit; with an even count a tie is a miss), then
McNemar on those paired hits: the exact binomial test when b + c < 25, otherwise (|b - c| - 1)^2 / (b + c) with
continuity correction (statsmodels ``mcnemar``). Its statistic is not the shown one: a model that wins by a lot in
one seed and ties in the others gets no star.

MAP, ``map_test="wilcoxon"`` (default): Wilcoxon signed-rank test of the per-PE seed-mean AP, paired by PE (zero
differences dropped). ``map_test="anova"``: the paper's one-way ANOVA of the same per-PE values as two independent
groups (it ignores that both groups are the same PEs).

Durkalski, Palesch, Lipsitz, Rust (2003), "Analysis of clustered matched-pair data", Statistics in Medicine 22.
"""

from __future__ import annotations

import typing
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

from mmrec_ray.config import EvaluationConfig
from mmrec_ray.errors import MmrecError

UNION = "union"
EXACT_BELOW = 25  # McNemar: exact binomial test when the discordant pairs are fewer than this
# Sign-flip test with mixed magnitudes: all 2^n patterns up to this n (4,096: ~0.05 s in scipy, whose enumeration
# grows ~5x per 2 PEs — 16 PEs take ~1 s, and aggregate runs hundreds of tests); beyond it the chi-square.
EXACT_SIGN_FLIPS_MAX = 12
# |d_i| below this is no difference: equal seed hit rates can differ in the last bit (e.g. 1/3 vs 2/6).
_ZERO = 1e-12

# The switches of EvaluationConfig; the defaults and allowed values are read from it (one source of truth).
HR_TESTS: tuple[str, ...] = typing.get_args(typing.get_type_hints(EvaluationConfig)["hr_test"])
MAP_TESTS: tuple[str, ...] = typing.get_args(typing.get_type_hints(EvaluationConfig)["map_test"])
DEFAULT_HR_TEST: str = EvaluationConfig.hr_test
DEFAULT_MAP_TEST: str = EvaluationConfig.map_test
# How captions and the report name each switch value (the tested per-PE quantity included).
TEST_NAMES = {
    "cmh": "McNemar over (seed, PE) pairs combined across seeds, variance clustered by PE",
    "mcnemar_majority": "McNemar on the majority vote over seeds",
    "wilcoxon": "Wilcoxon signed-rank on per-PE AP averaged over seeds",
    "anova": "one-way ANOVA on per-PE AP averaged over seeds",
}
# The ``test`` ids written to significance.csv / pairwise_tests.csv, by switch value.
_TEST_IDS = {
    "cmh": ("cmh_clustered_exact", "cmh_clustered_chi2"),
    "mcnemar_majority": ("mcnemar_exact", "mcnemar_chi2_cc"),
    "wilcoxon": ("wilcoxon",),
    "anova": ("anova_oneway",),
}
SIGNIFICANCE_COLUMNS = [
    "model",
    "reference",
    "subset",
    "metric",
    "k",
    "test",
    "n_pes",
    "value",
    "reference_value",
    "statistic",
    "p_value",
    "significant",
    "discordant_model",
    "discordant_reference",
]


def method_of(test_id: str) -> str | None:
    """The switch value (a key of TEST_NAMES) that wrote a ``test`` id of the CSVs; None if unknown."""
    for method, ids in _TEST_IDS.items():
        if test_id in ids:
            return method
    return None


def check_methods(hr_test: str | None = None, map_test: str | None = None) -> None:
    """Raise ValueError for a switch value EvaluationConfig does not allow (None = not checked)."""
    if hr_test is not None and hr_test not in HR_TESTS:
        raise ValueError(f"hr_test must be one of {HR_TESTS}, got {hr_test!r}")
    if map_test is not None and map_test not in MAP_TESTS:
        raise ValueError(f"map_test must be one of {MAP_TESTS}, got {map_test!r}")


@dataclass
class McNemarResult:
    statistic: float
    p_value: float
    exact: bool
    model_only: int  # b: PEs the model hits and the reference misses (clustered: PEs where d_i > 0)
    reference_only: int  # c: PEs the reference hits and the model misses (clustered: PEs where d_i < 0)


@dataclass
class PairedTest:
    """One model against one reference on the same PEs."""

    test: str  # the id written to the CSVs (see _TEST_IDS)
    statistic: float
    p_value: float
    value_model: float  # mean over PEs of the tested per-PE outcome
    value_reference: float
    model_better: int | None = None  # HR: PEs where the model's tested outcome is higher (McNemar's b)
    reference_better: int | None = None  # HR: ... lower (McNemar's c); None for MAP


def mcnemar_test(hits_model: np.ndarray, hits_reference: np.ndarray) -> McNemarResult:
    """McNemar's test on paired binary outcomes (n,) via statsmodels; see the module docstring for the rule."""
    a = np.asarray(hits_model).astype(bool)
    b = np.asarray(hits_reference).astype(bool)
    if a.shape != b.shape:
        raise ValueError(f"paired hits differ in shape: {a.shape} vs {b.shape}")
    table = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])
    model_only, reference_only = int(table[0, 1]), int(table[1, 0])
    exact = model_only + reference_only < EXACT_BELOW
    result = mcnemar(table, exact=exact, correction=True)
    return McNemarResult(float(result.statistic), float(result.pvalue), exact, model_only, reference_only)


def _sum(x: np.ndarray, axis: int) -> np.ndarray:
    return np.sum(x, axis=axis)


def clustered_mcnemar_test(rates_model: np.ndarray, rates_reference: np.ndarray) -> McNemarResult:
    """McNemar over (seed, PE) pairs with PEs as clusters (Durkalski et al. 2003); see the module docstring.

    rates_*: (n,) per-PE share of the model's seeds that hit. d_i = rates_model - rates_reference;
    X^2 = (sum d_i)^2 / sum d_i^2 (always returned as the statistic); p exact (sign flips) for fewer than 25
    discordant PEs where affordable, else chi-square on 1 df. One seed each: McNemar without continuity correction.
    """
    x = np.asarray(rates_model, dtype=np.float64)
    y = np.asarray(rates_reference, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired hit rates differ in shape: {x.shape} vs {y.shape}")
    diff = x - y
    diff = diff[np.abs(diff) > _ZERO]
    n = diff.size
    if n == 0:
        return McNemarResult(0.0, 1.0, True, 0, 0)
    statistic = float(diff.sum() ** 2 / np.square(diff).sum())
    model_better = int(np.sum(diff > 0))
    p_value, exact = None, False
    if n < EXACT_BELOW:
        magnitude = np.abs(diff)
        if np.allclose(magnitude, magnitude[0], rtol=1e-9, atol=0.0):
            # Equal magnitudes: the sign-flip null of the sum is Binomial(n, 1/2) on the signs.
            p_value, exact = stats.binomtest(model_better, n, 0.5).pvalue, True
        elif n <= EXACT_SIGN_FLIPS_MAX:
            # One sample + permutation_type="samples": scipy flips the signs; n_resamples=inf enumerates all 2^n.
            result = stats.permutation_test(
                (diff,), _sum, permutation_type="samples", vectorized=True, n_resamples=np.inf
            )
            p_value, exact = result.pvalue, True
    if p_value is None:
        p_value = stats.chi2.sf(statistic, 1)
    return McNemarResult(statistic, float(min(p_value, 1.0)), exact, model_better, n - model_better)


def anova_test(values_model: np.ndarray, values_reference: np.ndarray) -> tuple[float, float]:
    """One-way ANOVA (scipy.stats.f_oneway) of two groups of per-PE values. Returns (F, p).

    Both groups constant and equal: F = 0, p = 1 (scipy would return NaN: no variance to compare).
    """
    x = np.asarray(values_model, dtype=np.float64)
    y = np.asarray(values_reference, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.f_oneway(x, y)
    statistic, p_value = float(result.statistic), float(result.pvalue)
    if np.isnan(p_value):
        if np.ptp(np.concatenate([x, y])) == 0:
            return 0.0, 1.0
    return statistic, p_value


def wilcoxon_test(values_a: np.ndarray, values_b: np.ndarray) -> tuple[float, float]:
    """Wilcoxon signed-rank test of paired per-PE values (zero differences dropped). No difference at all: p = 1."""
    diff = np.asarray(values_a, dtype=np.float64) - np.asarray(values_b, dtype=np.float64)
    nonzero = diff[diff != 0]
    if not len(nonzero):
        return 0.0, 1.0
    # Exact null distribution for few untied differences; otherwise the normal approximation with tie
    # correction (as R's wilcox.test). scipy's "auto" would run a 9,999-resample permutation test on small tied
    # samples — ~50K statistic evaluations per pair, most of a small run's aggregate stage.
    untied = len(np.unique(np.abs(nonzero))) == len(nonzero)
    method = "exact" if len(nonzero) <= 25 and untied else "approx"
    result = stats.wilcoxon(nonzero, zero_method="wilcox", method=method)
    return float(result.statistic), float(result.pvalue)


def hr_significance(
    rates_model: np.ndarray, rates_reference: np.ndarray, method: str = DEFAULT_HR_TEST
) -> PairedTest:
    """HR@k test of paired per-PE seed hit rates (n,) (``hit_rate``: share of seeds that hit).

    cmh: ``clustered_mcnemar_test`` on the rates; value = mean rate = mean over seeds of per-seed HR.
    mcnemar_majority: McNemar on the majority vote (rate > 1/2); value = share of PEs the majority hits.
    """
    check_methods(hr_test=method)
    x = np.asarray(rates_model, dtype=np.float64)
    y = np.asarray(rates_reference, dtype=np.float64)
    if method == "cmh":
        result = clustered_mcnemar_test(x, y)
        value_model, value_reference = float(x.mean()), float(y.mean())
    else:
        hits_model, hits_reference = x > 0.5, y > 0.5  # as consensus_per_pe: a tie is a miss
        result = mcnemar_test(hits_model, hits_reference)
        value_model, value_reference = float(hits_model.mean()), float(hits_reference.mean())
    exact_id, chi2_id = _TEST_IDS[method]
    return PairedTest(
        exact_id if result.exact else chi2_id,
        result.statistic,
        result.p_value,
        value_model,
        value_reference,
        result.model_only,
        result.reference_only,
    )


def map_significance(
    ap_model: np.ndarray, ap_reference: np.ndarray, method: str = DEFAULT_MAP_TEST
) -> PairedTest:
    """MAP@k test of paired per-PE seed-mean AP (n,): Wilcoxon signed-rank (paired) or one-way ANOVA (the paper)."""
    check_methods(map_test=method)
    x = np.asarray(ap_model, dtype=np.float64)
    y = np.asarray(ap_reference, dtype=np.float64)
    statistic, p_value = wilcoxon_test(x, y) if method == "wilcoxon" else anova_test(x, y)
    return PairedTest(_TEST_IDS[method][0], statistic, p_value, float(x.mean()), float(y.mean()))


def consensus_per_pe(per_pe: pd.DataFrame) -> pd.DataFrame:
    """One outcome per (model, PE, k) over the model's seeds: share of seeds that hit, majority-vote hit, mean AP.

    Columns: model, purchase_event_id, subset, k, hit (0/1), hit_rate (share of seeds that hit), ap, n_seeds.
    """
    grouped = per_pe.groupby(["model", "purchase_event_id", "subset", "k"], sort=True, observed=True)
    out = grouped.agg(hit_rate=("hit", "mean"), ap=("ap", "mean"), n_seeds=("seed", "nunique")).reset_index()
    out["hit"] = (out["hit_rate"] > 0.5).astype(np.int8)
    return out[["model", "purchase_event_id", "subset", "k", "hit", "hit_rate", "ap", "n_seeds"]]


def union_models(consensus: pd.DataFrame, n_test: int | None = None) -> set[str]:
    """Models that serve every test PE (the union is reported only for them).

    Without ``n_test`` the test PEs are taken as all PEs that any model serves.
    """
    n_test = n_test if n_test is not None else consensus["purchase_event_id"].nunique()
    served = consensus.groupby("model")["purchase_event_id"].nunique()
    return {str(m) for m, n in served.items() if n == n_test}


def subset_view(consensus: pd.DataFrame, subset: str, k: int, models_in_union: set[str]) -> pd.DataFrame:
    """Wide per-PE table for one subset and cut-off: index purchase_event_id, columns (field, model)."""
    rows = consensus[consensus["k"] == k]
    if subset == UNION:
        rows = rows[rows["model"].isin(models_in_union)]
    else:
        rows = rows[rows["subset"] == subset]
    return rows.pivot(index="purchase_event_id", columns="model", values=["hit", "hit_rate", "ap"])


def significance_against_reference(
    per_pe: pd.DataFrame,
    reference: str = "latent_feature",
    ks: Sequence[int] = (3,),
    alpha: float = 0.05,
    subsets: Sequence[str] = (UNION, "conversations_only", "sessions_only", "intersection"),
    n_test: int | None = None,
    hr_test: str = DEFAULT_HR_TEST,
    map_test: str = DEFAULT_MAP_TEST,
) -> pd.DataFrame:
    """``hr_test`` (HR) and ``map_test`` (MAP) of every model against ``reference``, per subset and k.

    Only PEs both models serve enter a test; a subset the reference (or the model) does not serve is skipped.
    Returns SIGNIFICANCE_COLUMNS; ``value``/``reference_value`` are the means of the tested per-PE outcomes (cmh:
    seed hit rates, i.e. the mean of per-seed HR; mcnemar_majority: majority-vote hits; MAP: seed-mean AP);
    ``discordant_*`` are the PEs where the model's tested HR outcome is higher / lower (empty for MAP).
    """
    check_methods(hr_test, map_test)
    consensus = consensus_per_pe(per_pe)
    if reference not in set(consensus["model"]):
        raise MmrecError(
            f"reference model {reference!r} has no predictions; models present: {sorted(set(consensus['model']))}"
        )
    in_union = union_models(consensus, n_test)
    rows = []
    for subset in subsets:
        for k in ks:
            wide = subset_view(consensus, subset, int(k), in_union)
            if wide.empty or reference not in wide["hit_rate"].columns:
                continue
            models = [str(m) for m in wide["hit_rate"].columns]
            rates = wide["hit_rate"].to_numpy(dtype=np.float64)  # (PEs, models), NaN = not served
            aps = wide["ap"].to_numpy(dtype=np.float64)
            ref = models.index(reference)
            for column, model in enumerate(models):
                if model == reference:
                    continue
                both = ~np.isnan(rates[:, column]) & ~np.isnan(rates[:, ref])
                if not both.any():
                    continue
                hr = hr_significance(rates[both, column], rates[both, ref], hr_test)
                mean_ap = map_significance(aps[both, column], aps[both, ref], map_test)
                for metric, result in (("hr", hr), ("map", mean_ap)):
                    rows.append(
                        (model, reference, subset, metric, int(k), result.test, int(both.sum()))
                        + (result.value_model, result.value_reference, result.statistic, result.p_value)
                        + (bool(result.p_value < alpha), result.model_better, result.reference_better)
                    )
    frame = pd.DataFrame(rows, columns=SIGNIFICANCE_COLUMNS)
    for column in ("discordant_model", "discordant_reference"):  # empty for MAP rows
        frame[column] = frame[column].astype("Int64")
    return frame
