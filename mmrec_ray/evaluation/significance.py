"""The paper's significance tests (section 5.3): McNemar on per-PE hits (HR), one-way ANOVA on per-PE AP (MAP),
each model against a reference model (default Latent Feature) on the same PEs, per subset, alpha = 0.05.

Seeds. The paper tests per-PE outcomes but reports the mean of five seeds, and does not say how seeds enter the
test. Pairing seed i with seed i and pooling would count each PE five times (pseudo-replication: p-values far too
small), and models need not share seeds (Popular is deterministic; external predictions may have one seed). So
each model is first reduced to one outcome per PE over its own seeds (``consensus_per_pe``):
- hit = majority vote: a hit when more than half of the seeds hit (no ties with the usual five seeds; with an
  even count a tie counts as a miss);
- AP = the mean over seeds (so the mean over PEs equals the mean of the per-seed MAPs).
The tests then see one paired observation per PE.

McNemar's rule: with b, c the discordant counts (model hit / reference missed, and the reverse), the exact
binomial test when b + c < 25, otherwise the chi-square statistic with continuity correction,
(|b - c| - 1)^2 / (b + c) on 1 degree of freedom — the usual rule for when the chi-square approximation holds.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

from mmrec_ray.errors import MmrecError

UNION = "union"
EXACT_BELOW = 25  # McNemar: exact binomial test when the discordant pairs are fewer than this
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


@dataclass
class McNemarResult:
    statistic: float
    p_value: float
    exact: bool
    model_only: int  # b: PEs the model hits and the reference misses
    reference_only: int  # c: PEs the reference hits and the model misses


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


def consensus_per_pe(per_pe: pd.DataFrame) -> pd.DataFrame:
    """One outcome per (model, PE, k) over the model's seeds: majority-vote hit, mean AP.

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
    return rows.pivot(index="purchase_event_id", columns="model", values=["hit", "ap"])


def significance_against_reference(
    per_pe: pd.DataFrame,
    reference: str = "latent_feature",
    ks: Sequence[int] = (3,),
    alpha: float = 0.05,
    subsets: Sequence[str] = (UNION, "conversations_only", "sessions_only", "intersection"),
    n_test: int | None = None,
) -> pd.DataFrame:
    """McNemar (hr) and one-way ANOVA (map) of every model against ``reference``, per subset and k.

    Only PEs both models serve enter a test; a subset the reference (or the model) does not serve is skipped.
    Returns SIGNIFICANCE_COLUMNS; ``value``/``reference_value`` are the means of the tested per-PE outcomes
    (majority-vote hits for hr, seed-mean AP for map); ``discordant_*`` are McNemar's b and c (empty for map).
    """
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
            if wide.empty or reference not in wide["hit"].columns:
                continue
            models = [str(m) for m in wide["hit"].columns]
            hits = wide["hit"].to_numpy(dtype=np.float64)  # (PEs, models), NaN = not served
            aps = wide["ap"].to_numpy(dtype=np.float64)
            ref = models.index(reference)
            for column, model in enumerate(models):
                if model == reference:
                    continue
                both = ~np.isnan(hits[:, column]) & ~np.isnan(hits[:, ref])
                if not both.any():
                    continue
                hits_m, hits_r = hits[both, column], hits[both, ref]
                result = mcnemar_test(hits_m, hits_r)
                test = "mcnemar_exact" if result.exact else "mcnemar_chi2_cc"
                common = (model, reference, subset)
                rows.append(
                    (*common, "hr", int(k), test, int(both.sum()), hits_m.mean(), hits_r.mean())
                    + (result.statistic, result.p_value, bool(result.p_value < alpha))
                    + (result.model_only, result.reference_only)
                )
                ap_m, ap_r = aps[both, column], aps[both, ref]
                statistic, p_value = anova_test(ap_m, ap_r)
                rows.append(
                    (*common, "map", int(k), "anova_oneway", int(both.sum()), ap_m.mean(), ap_r.mean())
                    + (statistic, p_value, bool(p_value < alpha), None, None)
                )
    frame = pd.DataFrame(rows, columns=SIGNIFICANCE_COLUMNS)
    for column in ("discordant_model", "discordant_reference"):  # empty for ANOVA rows
        frame[column] = frame[column].astype("Int64")
    return frame
