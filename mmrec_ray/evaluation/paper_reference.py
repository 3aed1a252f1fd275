"""The paper's published numbers (Bruun et al., SIGIR 2024, Tables 3 and 4) and a run's numbers beside them.

``python -m mmrec_ray.evaluation.paper_reference RUN_DIR`` prints, as Markdown, every cell of Table 3 (HR@3 and
MAP@3 per subset: ours as mean over seeds with the 95 % bootstrap CI of ``results/bootstrap_ci.csv``, the paper's
value, and whether the paper's value lies inside our CI) and, when the run has the shuffle study, Table 4's
relative changes. This is how ``docs/calibration.md``'s calibration table is regenerated.

The paper's values are facts taken from its tables (mean over five seeds on the release's 6,241 test PEs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from mmrec_ray.evaluation.tables import SUBSET_DISPLAY, SUBSET_ORDER, display_name, order_models

# (model) -> {(subset, metric): value}; Table 3 of the paper, HR@3 and MAP@3.
_COLUMNS = [(s, m) for s in SUBSET_ORDER for m in ("hr", "map")]
_TABLE3_ROWS = {
    "popular": (0.4595, 0.2742, 0.5249, 0.3318, 0.4287, 0.2424, 0.5111, 0.3340),
    "conversation": (None, None, 0.6623, 0.4975, None, None, 0.6184, 0.4497),
    "session": (None, None, None, None, 0.6642, 0.5188, 0.6512, 0.4750),
    "late_fusion": (0.6703, 0.5179, 0.6623, 0.4975, 0.6642, 0.5188, 0.6949, 0.5287),
    "knowledge_distillation": (0.6697, 0.5168, 0.6623, 0.4975, 0.6642, 0.5188, 0.6921, 0.5235),
    "generative_imputation": (0.6685, 0.5156, 0.6582, 0.4878, 0.6635, 0.5180, 0.6910, 0.5270),
    "neutral_imputation": (0.6767, 0.5161, 0.6843, 0.5053, 0.6687, 0.5151, 0.6966, 0.5265),
    "keyword": (0.6840, 0.5250, 0.6940, 0.5198, 0.6681, 0.5141, 0.7270, 0.5629),
    "latent_feature": (0.6872, 0.5339, 0.7145, 0.5415, 0.6712, 0.5238, 0.7183, 0.5603),
    "relative_representation": (0.6846, 0.5308, 0.7105, 0.5369, 0.6696, 0.5216, 0.7138, 0.5554),
}
PAPER_TABLE3: dict[str, dict[tuple[str, str], float]] = {
    model: {column: value for column, value in zip(_COLUMNS, values) if value is not None}
    for model, values in _TABLE3_ROWS.items()
}
# Table 4: relative change (%) of the shuffled vs the original event order, same cells.
PAPER_TABLE4: dict[str, dict[tuple[str, str], float]] = {
    model: dict(zip(_COLUMNS, values))
    for model, values in {
        "keyword": (-0.95, -0.65, -0.07, -0.34, -0.54, 0.26, -2.71, -3.49),
        "latent_feature": (-2.18, -3.27, -0.14, -2.13, -1.52, -2.01, -5.45, -7.71),
        "relative_representation": (-1.03, -1.43, -1.59, -1.03, -0.49, -0.63, -2.23, -4.05),
    }.items()
}


def _header(first: str) -> list[str]:
    cells = [f"{SUBSET_DISPLAY[s]} {'HR' if m == 'hr' else 'MAP'}@3" for s, m in _COLUMNS]
    return [f"| {first} | " + " | ".join(cells) + " |", "|---|" + "---|" * len(cells)]


def table3_comparison(run_dir: str | Path) -> str:
    """Markdown: per model and cell, "ours [CI] / paper" with ✓ where the paper's value is inside our CI."""
    boot = pd.read_csv(Path(run_dir) / "results" / "bootstrap_ci.csv")
    boot = boot[boot["k"] == 3].set_index(["model", "subset", "metric"])
    lines = _header("Model (ours [95 % CI] / paper)")
    inside = total = 0
    for model in order_models([m for m in boot.index.get_level_values(0).unique() if m in PAPER_TABLE3]):
        cells = []
        for column in _COLUMNS:
            paper = PAPER_TABLE3[model].get(column)
            if paper is None or (model, *column) not in boot.index:
                cells.append("-")
                continue
            row = boot.loc[(model, *column)]
            hit = row["ci_low"] <= paper <= row["ci_high"]
            inside, total = inside + hit, total + 1
            cells.append(
                f"{row['mean']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}] / {paper:.3f}{' ✓' if hit else ''}"
            )
        lines.append(f"| {display_name(model)} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"✓ = the paper's value lies inside our 95 % bootstrap CI: {inside} of {total} cells.")
    return "\n".join(lines)


def table4_comparison(run_dir: str | Path) -> str | None:
    """Markdown: per model and cell, the shuffled-order change (%) ours / paper; None without a shuffle study."""
    path = Path(run_dir) / "analyses" / "shuffle" / "table4.csv"
    if not path.exists():
        return None
    rows = pd.read_csv(path)
    rows = rows[(rows["order"] == "shuffled") & (rows["k"] == 3)].set_index(["model", "subset", "metric"])
    lines = _header("Model: shuffled vs original, % (ours / paper)")
    for model in order_models([m for m in rows.index.get_level_values(0).unique() if m in PAPER_TABLE4]):
        cells = []
        for column in _COLUMNS:
            ours = rows["relative_change_pct"].get((model, *column))
            mark = "▼" if ours is not None and bool(rows["significant"].get((model, *column))) else ""
            cells.append(
                f"{ours:+.2f}{mark} / {PAPER_TABLE4[model][column]:+.2f}" if ours is not None else "-"
            )
        lines.append(f"| {display_name(model)} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("▼ = our shuffled order is significantly different from the original (Table 4's test).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path, help="a run directory with results/bootstrap_ci.csv")
    args = parser.parse_args(argv)
    print(table3_comparison(args.run_dir))
    table4 = table4_comparison(args.run_dir)
    if table4:
        print()
        print(table4)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
