import pandas as pd
import pytest

from mmrec_ray.evaluation.tables import build_table3, order_models


def _metrics(values: dict[tuple[str, str, str], list[float]]) -> pd.DataFrame:
    rows = []
    for (model, subset, metric), per_seed in values.items():
        for seed, value in enumerate(per_seed):
            rows.append((model, seed, subset, metric, 3, value))
    return pd.DataFrame(rows, columns=["model", "seed", "subset", "metric", "k", "value"])


def _table():
    metrics = _metrics(
        {
            ("popular", "union", "hr"): [0.40, 0.40],
            ("neutral_imputation", "union", "hr"): [0.60, 0.62],
            ("late_fusion", "union", "hr"): [0.64, 0.64],
            ("latent_feature", "union", "hr"): [0.70, 0.72],
            ("keyword", "union", "hr"): [0.66, 0.66],
            ("conversation", "conversations_only", "hr"): [0.5, 0.5],
            ("latent_feature", "conversations_only", "hr"): [0.55, 0.55],
            ("external", "union", "hr"): [0.1, 0.1],
        }
    )
    significance = pd.DataFrame(
        {
            "model": ["popular", "keyword", "conversation"],
            "reference": ["latent_feature"] * 3,
            "subset": ["union", "union", "conversations_only"],
            "metric": ["hr"] * 3,
            "k": [3] * 3,
            "p_value": [0.001, 0.2, 0.01],
            "significant": [True, False, True],
        }
    )
    return metrics, significance


def test_table3_cells_marks_best_and_relative_change():
    metrics, significance = _table()
    table = build_table3(metrics, significance, "latent_feature", k=3)
    assert table.models == [
        "popular",
        "conversation",
        "late_fusion",
        "neutral_imputation",
        "keyword",
        "latent_feature",
        "external",
    ]
    lf = table.cells[("latent_feature", "union", "hr")]
    assert lf.mean == pytest.approx(0.71) and lf.best and lf.significant is None
    # strongest baseline on this column: Late Fusion 0.64
    assert lf.relative_change == pytest.approx((0.71 - 0.64) / 0.64 * 100)
    assert table.cells[("popular", "union", "hr")].significant
    assert table.cells[("popular", "union", "hr")].relative_change is None  # baselines get no brackets
    assert table.cells[("external", "union", "hr")].relative_change is None
    assert ("conversation", "union", "hr") not in table.cells

    md = table.to_markdown()
    lines = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert set(lines) >= {
        "Popular",
        "Conversation",
        "Late Fusion",
        "Neutral Imputation",
        "Keyword",
        "Latent Feature",
    }
    # Marks show their direction: Popular is significantly worse than Latent Feature.
    assert "0.4000▼" in lines["Popular"] and "0.5000▼" in lines["Conversation"]
    assert "**0.7100** (+10.94%)" in lines["Latent Feature"]
    assert "0.6600 (+3.13%)" in lines["Keyword"]
    assert lines["Conversation"].split(" | ")[1] == "-"  # union not served
    assert "**0.5500**" in lines["Latent Feature"]
    tex = table.to_latex()
    assert r"\textbf{0.7100}{\scriptsize$\pm$0.0141} (+10.94\%)" in tex
    assert r"0.4000{\scriptsize$\pm$0.0000}$^{\blacktriangledown}$" in tex
    frame = table.to_frame()
    assert frame.loc[frame["model"] == "latent_feature", "union_hr@3_std"].iloc[0] == pytest.approx(
        0.0141421, abs=1e-6
    )
    assert bool(frame.loc[frame["model"] == "popular", "union_hr@3_significant"].iloc[0])
    assert frame.loc[frame["model"] == "popular", "union_hr@3_direction"].iloc[0] == "worse"


def test_fixed_strongest_baseline_as_in_the_paper():
    metrics, significance = _table()
    table = build_table3(metrics, significance, "latent_feature", strongest_baseline="neutral_imputation")
    assert table.cells[("latent_feature", "union", "hr")].relative_change == pytest.approx(
        (0.71 - 0.61) / 0.61 * 100
    )
    assert "Neutral Imputation" in table.to_markdown()


def test_unknown_models_follow_the_paper_order():
    assert order_models(["zzz", "latent_feature", "popular", "abc"]) == [
        "popular",
        "latent_feature",
        "abc",
        "zzz",
    ]
