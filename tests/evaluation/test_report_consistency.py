"""The report never contradicts its tables (issue 13, item 4), checked on a crafted run whose significant
differences, and their directions, are known by construction.

The crafted inputs deliberately disagree where the old report went wrong: the all-pairs Holm tests call
Relative Representation significantly better than Latent Feature on union HR@3 while the reference tests (the
marks of Table 3) do not; the ablation's stored ``significant`` column says "none" while three CIs exclude zero.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest

from mmrec_ray.evaluation import report
from mmrec_ray.evaluation.analyses import Table4, ablation_markdown
from mmrec_ray.evaluation.statistics import seed_summary
from mmrec_ray.evaluation.tables import build_table3

UP, DOWN = "▲", "▼"
REFERENCE = "latent_feature"

# (model, subset) -> (HR@3 per seed, MAP@3 per seed); Late Fusion equals Conversation on conversations-only.
METRICS = {
    ("popular", "union"): ([0.30, 0.32], [0.20, 0.21]),
    ("late_fusion", "union"): ([0.40, 0.42], [0.25, 0.26]),
    ("keyword", "union"): ([0.45, 0.47], [0.27, 0.28]),
    ("latent_feature", "union"): ([0.44, 0.46], [0.27, 0.29]),
    ("relative_representation", "union"): ([0.50, 0.52], [0.31, 0.33]),
    ("popular", "conversations_only"): ([0.20, 0.20], [0.10, 0.10]),
    ("conversation", "conversations_only"): ([0.35, 0.37], [0.22, 0.23]),
    ("late_fusion", "conversations_only"): ([0.35, 0.37], [0.22, 0.23]),
    ("keyword", "conversations_only"): ([0.33, 0.35], [0.21, 0.22]),
    ("latent_feature", "conversations_only"): ([0.36, 0.38], [0.24, 0.25]),
    ("relative_representation", "conversations_only"): ([0.40, 0.41], [0.26, 0.27]),
}
# (model, subset, metric) -> significant against Latent Feature; the direction follows the values.
SIGNIFICANT = {
    ("popular", "union", "hr"): True,
    ("late_fusion", "union", "hr"): False,
    ("keyword", "union", "hr"): False,
    ("relative_representation", "union", "hr"): False,
    ("popular", "union", "map"): True,
    ("late_fusion", "union", "map"): False,
    ("keyword", "union", "map"): False,
    ("relative_representation", "union", "map"): True,
    ("popular", "conversations_only", "hr"): True,
    ("conversation", "conversations_only", "hr"): False,
    ("late_fusion", "conversations_only", "hr"): False,
    ("keyword", "conversations_only", "hr"): False,
    ("relative_representation", "conversations_only", "hr"): False,
    ("popular", "conversations_only", "map"): True,
    ("conversation", "conversations_only", "map"): True,
    ("late_fusion", "conversations_only", "map"): True,
    ("keyword", "conversations_only", "map"): False,
    ("relative_representation", "conversations_only", "map"): True,
}
NAMES = {
    "popular": "Popular",
    "conversation": "Conversation",
    "late_fusion": "Late Fusion",
    "keyword": "Keyword",
    "latent_feature": "Latent Feature",
    "relative_representation": "Relative Representation",
}
COLUMN = {
    ("union", "hr"): "Union HR@3",
    ("union", "map"): "Union MAP@3",
    ("conversations_only", "hr"): "Conversations-only HR@3",
    ("conversations_only", "map"): "Conversations-only MAP@3",
}


def _mean(model: str, subset: str, metric: str) -> float:
    hr, mean_ap = METRICS[(model, subset)]
    values = hr if metric == "hr" else mean_ap
    return sum(values) / len(values)


def _expected_marks() -> set[tuple[str, str, str]]:
    marks = set()
    for (model, subset, metric), significant in SIGNIFICANT.items():
        if significant:
            better = _mean(model, subset, metric) > _mean(REFERENCE, subset, metric)
            marks.add((NAMES[model], COLUMN[(subset, metric)], UP if better else DOWN))
    return marks


def _metrics() -> pd.DataFrame:
    rows = []
    for (model, subset), (hr, mean_ap) in METRICS.items():
        for seed in (0, 1):
            rows.append((model, seed, subset, "hr", 3, hr[seed]))
            rows.append((model, seed, subset, "map", 3, mean_ap[seed]))
    return pd.DataFrame(rows, columns=["model", "seed", "subset", "metric", "k", "value"])


def _significance() -> pd.DataFrame:
    rows = []
    for (model, subset, metric), significant in SIGNIFICANT.items():
        rows.append(
            {
                "model": model,
                "reference": REFERENCE,
                "subset": subset,
                "metric": metric,
                "k": 3,
                "test": "cmh_clustered_chi2" if metric == "hr" else "wilcoxon",
                "n_pes": 200,
                "value": _mean(model, subset, metric),
                "reference_value": _mean(REFERENCE, subset, metric),
                "statistic": 1.0,
                "p_value": 0.001 if significant else 0.4,
                "significant": significant,
            }
        )
    return pd.DataFrame(rows)


def _pairwise() -> pd.DataFrame:
    """All-pairs Holm tests that disagree with the reference tests on Relative Representation vs Latent Feature."""
    rows = []
    for subset, metric in COLUMN:
        models = sorted({m for (m, s) in METRICS if s == subset})
        for i, a in enumerate(models):
            for b in models[i + 1 :]:
                significant = {a, b} == {"relative_representation", "latent_feature"} or "popular" in (a, b)
                rows.append(
                    {
                        "subset": subset,
                        "metric": metric,
                        "k": 3,
                        "model_a": a,
                        "model_b": b,
                        "test": "cmh_clustered_chi2" if metric == "hr" else "wilcoxon",
                        "n_pes": 200,
                        "value_a": _mean(a, subset, metric),
                        "value_b": _mean(b, subset, metric),
                        "p_value": 0.0001 if significant else 0.5,
                        "p_holm": 0.001 if significant else 1.0,
                        "significant": significant,
                    }
                )
    return pd.DataFrame(rows)


# (model, hidden, metric) -> (delta, ci_low, ci_high); the stored `significant` says none is (old Holm rule).
ABLATION = {
    ("keyword", "conversation", "map"): (-0.05, -0.08, -0.02),
    ("keyword", "session", "map"): (0.01, -0.01, 0.03),
    ("latent_feature", "conversation", "map"): (-0.04, -0.07, -0.01),
    ("latent_feature", "session", "map"): (0.03, 0.005, 0.06),
    ("keyword", "conversation", "hr"): (-0.02, -0.05, 0.01),
    ("keyword", "session", "hr"): (0.0, -0.02, 0.02),
    ("latent_feature", "conversation", "hr"): (-0.03, -0.06, 0.004),
    ("latent_feature", "session", "hr"): (0.01, -0.02, 0.04),
}


def _ablation() -> pd.DataFrame:
    rows = []
    for (model, hidden, metric), (delta, low, high) in ABLATION.items():
        rows.append(
            {
                "model": model,
                "hidden": hidden,
                "metric": metric,
                "k": 3,
                "n_pes": 40,
                "n_seeds": 2,
                "full": 0.3,
                "ablated": 0.3 + delta,
                "delta": delta,
                "ci_low": low,
                "ci_high": high,
                "test": "wilcoxon",
                "p_value": 0.02,
                "p_holm": 0.2,
                "significant": False,
                "note": "",
            }
        )
    return pd.DataFrame(rows)


def _table4_rows() -> pd.DataFrame:
    rows = []
    # Keyword gets significantly worse when shuffled; Latent Feature changes a little, not significantly.
    for model, original, shuffled, significant in (
        ("keyword", 0.28, 0.25, True),
        ("latent_feature", 0.28, 0.285, False),
    ):
        for subset in ("union", "conversations_only"):
            for metric in ("hr", "map"):
                for order, mean in (("original", original), ("shuffled", shuffled)):
                    is_shuffled = order == "shuffled"
                    rows.append(
                        {
                            "model": model,
                            "order": order,
                            "subset": subset,
                            "metric": metric,
                            "k": 3,
                            "mean": mean,
                            "std": 0.01,
                            "n_seeds": 2,
                            "relative_change_pct": (shuffled - original) / original * 100
                            if is_shuffled
                            else None,
                            "p_value": (0.01 if significant else 0.6) if is_shuffled else None,
                            "significant": significant and is_shuffled,
                        }
                    )
    return pd.DataFrame(rows)


@pytest.fixture
def crafted_run(tmp_path):
    run = tmp_path / "run"
    results = run / "results"
    results.mkdir(parents=True)
    metrics, significance = _metrics(), _significance()
    table = build_table3(metrics, significance, REFERENCE, k=3)
    (results / "table3.md").write_text(table.to_markdown())
    (results / "table3.tex").write_text(table.to_latex())
    metrics.to_csv(results / "metrics.csv", index=False)
    significance.to_csv(results / "significance.csv", index=False)
    seed_summary(metrics).to_csv(results / "seed_summary.csv", index=False)
    _pairwise().to_csv(results / "pairwise_tests.csv", index=False)
    ablation_dir = run / "analyses" / "ablation"
    ablation_dir.mkdir(parents=True)
    _ablation().to_csv(ablation_dir / "ablation.csv", index=False)
    (ablation_dir / "ablation.md").write_text(ablation_markdown(_ablation(), 0.05, 40))
    shuffle_dir = run / "analyses" / "shuffle"
    shuffle_dir.mkdir(parents=True)
    rows = _table4_rows()
    rows.to_csv(shuffle_dir / "table4.csv", index=False)
    (shuffle_dir / "table4.md").write_text(Table4(3, ["keyword", "latent_feature"], rows).to_markdown())
    report.write_report(run, echo=None)
    return run


# ------------------------------------------------------------------------------------------------ parsing
def _section(md: str, anchor: str) -> str:
    return md.split(f'<a id="{anchor}"></a>')[1].split('<a id="')[0]


def _table_rows(text: str) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    split = [[c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))] for line in lines]
    return split[0], split[2:]


def _mark(cell: str) -> str | None:
    """▲ / ▼ of a cell; '?' for a mark without direction (a bare star), None for none."""
    if UP in cell:
        return UP
    if DOWN in cell:
        return DOWN
    return "?" if "*" in cell.replace("**", "") else None


def _table_marks(table_md: str) -> tuple[set, set]:
    """(marked cells, unmarked served cells) of Table 3 as (model, column[, mark])."""
    header, rows = _table_rows(table_md)
    marked, unmarked = set(), set()
    for row in rows:
        model = row[0]
        for column, cell in zip(header[1:], row[1:]):
            if cell == "-":
                continue
            mark = _mark(cell)
            if mark:
                marked.add((model, column, mark))
            else:
                unmarked.add((model, column))
    return marked, unmarked


CLAIM_PHRASE = re.compile(
    r"significantly (better|worse|different)|(is|are) (not )?significant|none of its differences",
    re.IGNORECASE,
)
CLAIM_ITEM = re.compile(r"^- \*\*(?P<column>[^*]+)\*\*[^:]*: (?P<rest>.+)$")
CLAIM_PART = re.compile(
    r"^(?P<kind>▲ significantly better|▼ significantly worse|no significant difference)(?: \([^)]*\))?: "
    r"(?P<models>.+?)\.?$"
)


def _names(text: str) -> list[str]:
    return [n.strip() for n in re.split(r", | and ", text) if n.strip()]


def _summary_claims(summary: str) -> tuple[set, set, list[str]]:
    """(significance claims (model, column, mark), non-significance claims (model, column), unparsed lines
    that still make a significance claim)."""
    marked, unmarked, unparsed = set(), set(), []
    for line in summary.splitlines():
        if line.startswith(("Modality ablation", "Shuffling the event order")):
            continue  # checked against their own tables below
        item = CLAIM_ITEM.match(line)
        parts = [CLAIM_PART.match(p) for p in item.group("rest").split("; ")] if item else []
        if item and parts and all(parts):
            for part in parts:
                for name in _names(part.group("models")):
                    if part.group("kind").startswith(UP):
                        marked.add((name, item.group("column"), UP))
                    elif part.group("kind").startswith(DOWN):
                        marked.add((name, item.group("column"), DOWN))
                    else:
                        unmarked.add((name, item.group("column")))
        elif CLAIM_PHRASE.search(line):
            unparsed.append(line)
    return marked, unmarked, unparsed


# ------------------------------------------------------------------------------------------------ tests
def test_summary_claims_are_exactly_the_marks_of_table3(crafted_run):
    md = (crafted_run / "report.md").read_text()
    table_marks, table_unmarked = _table_marks((crafted_run / "results" / "table3.md").read_text())
    assert table_marks == _expected_marks()  # every mark carries its direction

    claims, non_claims, unparsed = _summary_claims(_section(md, "summary"))
    assert not unparsed, f"significance claims that match no mark of Table 3: {unparsed}"
    assert claims == table_marks
    reference_row = {(m, c) for (m, c) in table_unmarked if m == NAMES[REFERENCE]}
    assert non_claims == table_unmarked - reference_row


def test_table3_caption_explains_the_marks_names_the_baseline_and_the_identical_rows(crafted_run):
    table_md = (crafted_run / "results" / "table3.md").read_text()
    caption = table_md.split("\n\n", 1)[1]
    assert UP in caption and DOWN in caption and "Latent Feature" in caption
    percent = caption.split("(%)", 1)[1].split("- =", 1)[0]
    assert "Late Fusion" in percent and "Conversation" in percent  # the union / conversations-only baselines

    header, rows = _table_rows(table_md)
    late_fusion = next(r for r in rows if r[0] == "Late Fusion")
    conversation = next(r for r in rows if r[0] == "Conversation")
    footnoted = {c for c, cell in zip(header[1:], late_fusion[1:]) if re.search(r"[ᵃ-ᶻ]|\^", cell)}
    assert footnoted == {"Conversations-only HR@3", "Conversations-only MAP@3"}
    assert not any(re.search(r"[ᵃ-ᶻ]", cell) for cell in conversation[1:])  # the original stays unmarked
    assert re.search(r"identical to Conversation on Conversations-only", table_md)


def test_ablation_summary_counts_what_its_table_marks(crafted_run):
    md = (crafted_run / "report.md").read_text()
    section = _section(md, "ablation")
    header, rows = _table_rows(section)
    column = next(i for i, h in enumerate(header) if h.startswith("Δ MAP"))
    marked = [r for r in rows if _mark(r[column])]
    # The criterion: the 95 % bootstrap CI excludes zero; ▲ / ▼ its side.
    expected = {
        (NAMES[m], h): (UP if low > 0 else DOWN)
        for (m, h, metric), (_, low, high) in ABLATION.items()
        if metric == "map" and (low > 0 or high < 0)
    }
    assert {(r[0], r[1].rstrip("s")): _mark(r[column]) for r in marked} == expected
    caption = section.split("\n\n")[
        next(i for i, p in enumerate(section.split("\n\n")) if p.startswith("Counterfactual"))
    ]
    assert "excludes zero" in caption and "Holm" not in caption

    line = next(s for s in _section(md, "summary").splitlines() if s.startswith("Modality ablation"))
    count = re.search(r"MAP@3[^.;]*?(\d+) of (\d+)|(\d+) of (\d+)[^.;]*?MAP@3", line)
    found = [int(g) for g in count.groups() if g is not None]
    assert found == [len(expected), 4]


def test_shuffle_summary_matches_table4_marks(crafted_run):
    md = (crafted_run / "report.md").read_text()
    header, rows = _table_rows((crafted_run / "analyses" / "shuffle" / "table4.md").read_text())
    union_map = header.index("Union MAP@3")
    shuffled = {}
    model = None
    for row in rows:
        model = row[0] or model
        if row[1] == "shuffled":
            shuffled[model] = _mark(row[union_map])
    assert shuffled == {"Keyword": DOWN, "Latent Feature": None}

    line = next(s for s in _section(md, "summary").splitlines() if s.startswith("Shuffling the event order"))
    for name, mark in shuffled.items():
        segment = line.split(name, 1)[1].split(";")[0]
        if mark:
            assert mark in segment and "no significant" not in segment
        else:
            assert "no significant difference" in segment and UP not in segment and DOWN not in segment
