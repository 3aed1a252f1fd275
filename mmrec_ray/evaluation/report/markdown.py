"""``report.md``: the report's blocks as Markdown (GitHub-flavoured: pipe tables, raw <details> and anchors)."""

from __future__ import annotations

import pandas as pd

from mmrec_ray.evaluation.report.document import Report


def frame_to_markdown(frame: pd.DataFrame) -> str:
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(c) for c in frame.columns) + " |",
        "|" + "|".join(["---"] * len(frame.columns)) + "|",
    ]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def vector_versions(relative: str) -> str:
    """Where the PDF and SVG of a figure are (``figures.save_figure`` writes them beside the PNG)."""
    stem = relative.rsplit(".", 1)[0]
    return f"PDF: `{stem}.pdf`, SVG: `{stem}.svg`"


def to_markdown(report: Report) -> str:
    out = [f"# {report.title}", ""]
    out.append("Contents: " + " · ".join(f"[{s.title}](#{s.anchor})" for s in report.sections))
    out.append("")
    for section in report.sections:
        out += [f'<a id="{section.anchor}"></a>', "", f"{'#' * section.level} {section.title}", ""]
        for block in section.blocks:
            kind = block[0]
            if kind == "p":
                out += [block[1], ""]
            elif kind == "md":
                out += [block[1].rstrip(), ""]
            elif kind == "table":
                out += [frame_to_markdown(block[1]), "", f"*{block[2]}*" if block[2] else "", ""]
            elif kind == "image":
                out += [f"![{block[2]}]({block[1]})", "", f"*{block[2]}* ({vector_versions(block[1])})", ""]
            elif kind == "code":
                out += [f"<details><summary>{block[2]}</summary>", "", "```", block[1].rstrip(), "```", ""]
                out += ["</details>", ""]
            elif kind == "missing":
                out += [f"> **Not available.** {block[1]}", ""]
            elif kind == "list":
                out += [f"- {item}" for item in block[1]] + [""]
    return "\n".join(out).rstrip() + "\n"
