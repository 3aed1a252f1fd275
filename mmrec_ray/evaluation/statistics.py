"""Statistics beyond the paper (issue 5): seed spread, bootstrap confidence intervals, all-pairs tests with Holm
correction (the tests of Table 3's stars, ``significance``), and a Friedman test with the Nemenyi critical
difference for a CD diagram.

All work on the seed consensus of ``significance.consensus_per_pe`` (one outcome per model and PE): for HR the
share of seeds that hit (``hit_rate``; its mean over PEs is the mean of the per-seed HRs), for MAP the mean AP
over seeds. A subset's comparison uses the models that serve the whole subset (the union: models that serve every
test PE), so every model is measured on the same PEs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from mmrec_ray.evaluation.significance import (
    DEFAULT_HR_TEST,
    DEFAULT_MAP_TEST,
    UNION,
    check_methods,
    hr_significance,
    map_significance,
    union_models,
    wilcoxon_test,
)

SUBSETS = (UNION, "conversations_only", "sessions_only", "intersection")
VALUE_FIELD = {"hr": "hit_rate", "map": "ap"}  # which consensus column carries each metric


# ------------------------------------------------------------------------------------------- seed spread
def seed_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample standard deviation (ddof = 1; 0 for a single seed) of the per-seed metrics.

    metrics: METRICS_COLUMNS of ``evaluate``. Returns model, subset, metric, k, mean, std, n_seeds.
    """
    grouped = metrics.groupby(["model", "subset", "metric", "k"], sort=False)
    out = grouped["value"].agg(mean="mean", std="std", n_seeds="count").reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


# ------------------------------------------------------------------------------------------- bootstrap
def bootstrap_means(
    values: np.ndarray,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 250,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of the mean of each column of ``values`` (n, M) — or of a vector (n,).

    PEs are resampled with replacement (the same resamples for every column, so columns stay paired); the CI is
    the (1 - confidence)/2 and (1 + confidence)/2 percentiles of the resampled means. Seeded: deterministic.
    Returns (low, high), each (M,) — or scalars for a vector input.
    """
    values = np.asarray(values, dtype=np.float64)
    vector = values.ndim == 1
    matrix = values[:, None] if vector else values
    n = matrix.shape[0]
    if n == 0:
        nan = np.full(matrix.shape[1], np.nan)
        return (nan[0], nan[0]) if vector else (nan, nan)
    rng = np.random.default_rng(seed)
    means = np.empty((n_resamples, matrix.shape[1]))
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        # Counts of each PE in each resample: equivalent to drawing n indices with replacement.
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=size)
        means[start : start + size] = counts @ matrix / n
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail], axis=0)
    return (float(low[0]), float(high[0])) if vector else (low, high)


def bootstrap_table(
    consensus: pd.DataFrame,
    ks: Sequence[int] = (3,),
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    n_test: int | None = None,
) -> pd.DataFrame:
    """95 % (default) bootstrap CIs of HR@k and MAP@k per model and subset.

    Returns model, subset, metric, k, n_pes, mean, ci_low, ci_high, confidence.
    """
    in_union = union_models(consensus, n_test)
    rows = []
    for subset in SUBSETS:
        for k in ks:
            for metric, field in VALUE_FIELD.items():
                wide = _wide(consensus, subset, int(k), field, in_union)
                if wide.empty:
                    continue
                low, high = bootstrap_means(wide.to_numpy(), n_resamples, confidence, seed)
                for c, model in enumerate(wide.columns):
                    rows.append(
                        (model, subset, metric, int(k), len(wide), float(wide[model].mean()), low[c], high[c])
                    )
    out = pd.DataFrame(rows, columns=["model", "subset", "metric", "k", "n_pes", "mean", "ci_low", "ci_high"])
    out["confidence"] = confidence
    return out


def _wide(consensus: pd.DataFrame, subset: str, k: int, field: str, in_union: set[str]) -> pd.DataFrame:
    """(PEs, models) table of one value for the models that serve every PE of the subset."""
    rows = consensus[consensus["k"] == k]
    rows = rows[rows["model"].isin(in_union)] if subset == UNION else rows[rows["subset"] == subset]
    if rows.empty:
        return pd.DataFrame()
    wide = rows.pivot(index="purchase_event_id", columns="model", values=field)
    return wide.dropna(axis=1, how="any")


# ------------------------------------------------------------------------------------------- all pairs + Holm
def holm(p_values: Sequence[float], alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down correction (statsmodels ``multipletests``). Returns (reject (m,) bool, adjusted p (m,))."""
    p_values = np.asarray(p_values, dtype=np.float64)
    if p_values.size == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    reject, adjusted, _, _ = multipletests(p_values, alpha=alpha, method="holm")
    return reject, adjusted


def pairwise_tests(
    consensus: pd.DataFrame,
    ks: Sequence[int] = (3,),
    alpha: float = 0.05,
    n_test: int | None = None,
    hr_test: str = DEFAULT_HR_TEST,
    map_test: str = DEFAULT_MAP_TEST,
) -> pd.DataFrame:
    """Every pair of models on every subset, with the tests of Table 3's stars (``significance``): ``hr_test`` on
    the per-PE seed hit rates (default cmh; mcnemar_majority: McNemar on majority hits), ``map_test`` on the per-PE
    seed-mean AP (default Wilcoxon signed-rank; anova: one-way ANOVA).

    Holm's correction runs over all pairs of one (subset, metric, k) — the family of comparisons a reader makes
    when reading one column of Table 3. ``value_a``/``value_b`` are the means the table shows (HR: mean seed hit
    rate = mean of per-seed HR; MAP: mean seed-mean AP), for either test. Returns subset, metric, k, model_a,
    model_b, test, n_pes, value_a, value_b, statistic, p_value, p_holm, significant.
    """
    check_methods(hr_test, map_test)
    in_union = union_models(consensus, n_test)
    rows = []
    for subset in SUBSETS:
        for k in ks:
            rates = _wide(consensus, subset, int(k), "hit_rate", in_union)
            aps = _wide(consensus, subset, int(k), "ap", in_union)
            for metric, wide in (("hr", rates), ("map", aps)):
                if wide.shape[1] < 2:
                    continue
                family = []
                for model_a, model_b in combinations(sorted(wide.columns), 2):
                    a, b = wide[model_a].to_numpy(), wide[model_b].to_numpy()
                    if metric == "hr":
                        result = hr_significance(a, b, hr_test)
                    else:
                        result = map_significance(a, b, map_test)
                    family.append(
                        [
                            subset,
                            metric,
                            int(k),
                            model_a,
                            model_b,
                            result.test,
                            len(wide),
                            float(a.mean()),
                            float(b.mean()),
                            result.statistic,
                            result.p_value,
                        ]
                    )
                reject, adjusted = holm([row[-1] for row in family], alpha)
                for row, p_holm, significant in zip(family, adjusted, reject):
                    rows.append((*row, float(p_holm), bool(significant)))
    columns = [
        "subset",
        "metric",
        "k",
        "model_a",
        "model_b",
        "test",
        "n_pes",
        "value_a",
        "value_b",
        "statistic",
        "p_value",
        "p_holm",
        "significant",
    ]
    return pd.DataFrame(rows, columns=columns)


# ------------------------------------------------------------------------------------------- Friedman + Nemenyi
def nemenyi_critical_difference(n_models: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Nemenyi CD = q_alpha * sqrt(k (k + 1) / (6 N)), q_alpha = studentized range quantile(k, inf) / sqrt(2).

    (Demšar 2006; e.g. q_0.05 = 1.960 for k = 2, 2.344 for k = 3, 3.164 for k = 10.)
    """
    q_alpha = stats.studentized_range.ppf(1.0 - alpha, n_models, np.inf) / np.sqrt(2.0)
    return float(q_alpha * np.sqrt(n_models * (n_models + 1) / (6.0 * n_blocks)))


@dataclass
class FriedmanResult:
    subset: str
    metric: str
    k: int
    models: list[str]
    average_ranks: np.ndarray  # (k_models,), 1 = best
    n_blocks: int  # PEs
    statistic: float
    p_value: float
    critical_difference: float
    alpha: float

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "subset": self.subset,
                "metric": self.metric,
                "k": self.k,
                "model": self.models,
                "average_rank": self.average_ranks,
                "n_pes": self.n_blocks,
                "friedman_statistic": self.statistic,
                "friedman_p_value": self.p_value,
                "critical_difference": self.critical_difference,
                "alpha": self.alpha,
            }
        )


def friedman_nemenyi(
    consensus: pd.DataFrame,
    subset: str = UNION,
    metric: str = "map",
    k: int = 3,
    alpha: float = 0.05,
    n_test: int | None = None,
) -> FriedmanResult | None:
    """Friedman test over the models that serve the subset, PEs as blocks; ranks: 1 = best (ties averaged).

    None when fewer than three models serve the subset (Friedman needs three).
    """
    wide = _wide(consensus, subset, int(k), VALUE_FIELD[metric], union_models(consensus, n_test))
    if wide.shape[1] < 3:
        return None
    values = wide.to_numpy()
    ranks = stats.rankdata(-values, axis=1, method="average")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.friedmanchisquare(*values.T)
    statistic, p_value = float(result.statistic), float(result.pvalue)
    if np.isnan(statistic):  # every PE ties every model: no evidence of a difference
        statistic, p_value = 0.0, 1.0
    return FriedmanResult(
        subset=subset,
        metric=metric,
        k=int(k),
        models=[str(m) for m in wide.columns],
        average_ranks=ranks.mean(axis=0),
        n_blocks=len(wide),
        statistic=statistic,
        p_value=p_value,
        critical_difference=nemenyi_critical_difference(wide.shape[1], len(wide), alpha),
        alpha=alpha,
    )


def friedman_all(
    consensus: pd.DataFrame, metric: str = "map", k: int = 3, alpha: float = 0.05, n_test: int | None = None
) -> list[FriedmanResult]:
    """Friedman + Nemenyi on every subset that at least three models serve."""
    results = [friedman_nemenyi(consensus, s, metric, k, alpha, n_test) for s in SUBSETS]
    return [r for r in results if r is not None]


__all__ = [
    "FriedmanResult",
    "bootstrap_means",
    "bootstrap_table",
    "friedman_all",
    "friedman_nemenyi",
    "holm",
    "nemenyi_critical_difference",
    "pairwise_tests",
    "seed_summary",
    "wilcoxon_test",
]
