"""``report.html``: one self-contained page (figures embedded as base64 PNG, no external files or network),
laid out by the Jinja2 template ``templates/report.html.j2``.

Markdown in the blocks (inline emphasis, the tables the stages write) goes through markdown-it-py (CommonMark
with GFM tables), with raw HTML disabled so that a model name or a path can never inject markup.
"""

from __future__ import annotations

import base64
from functools import cache

import jinja2
import pandas as pd
from markdown_it import MarkdownIt
from markupsafe import Markup

from mmrec_ray.evaluation.report.document import Report
from mmrec_ray.evaluation.report.markdown import frame_to_markdown

TEMPLATE = "report.html.j2"


@cache
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False}).enable("table")


@cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("mmrec_ray.evaluation.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template(TEMPLATE)


def inline(text: str) -> Markup:
    return Markup(_markdown().renderInline(text))


def block_markdown(text: str) -> Markup:
    """A Markdown table (with its caption paragraphs) as HTML; wide tables scroll instead of overflowing."""
    rendered = _markdown().render(text)
    rendered = rendered.replace("<table>", '<div class="scroll"><table>').replace(
        "</table>", "</table></div>"
    )
    return Markup(rendered.replace("<p>", '<p class="caption">'))


def frame_html(frame: pd.DataFrame) -> Markup:
    return block_markdown(frame_to_markdown(frame))


def _view(report: Report) -> list[dict]:
    """The sections as plain dicts of ready HTML fragments: the template only lays them out."""
    sections = []
    for section in report.sections:
        blocks = []
        for block in section.blocks:
            kind = block[0]
            if kind == "p":
                blocks.append({"kind": "p", "html": inline(block[1])})
            elif kind == "md":
                blocks.append({"kind": "html", "html": block_markdown(block[1])})
            elif kind == "table":
                caption = inline(block[2]) if block[2] else None
                blocks.append({"kind": "table", "html": frame_html(block[1]), "caption": caption})
            elif kind == "image":
                stem = block[1].rsplit(".", 1)[0]
                data = base64.b64encode((report.run_dir / block[1]).read_bytes()).decode("ascii")
                blocks.append(
                    {
                        "kind": "image",
                        "src": f"data:image/png;base64,{data}",
                        "source": block[1],
                        "alt": block[2],
                        "caption": inline(block[2]),
                        "files": [block[1], f"{stem}.pdf", f"{stem}.svg"],
                    }
                )
            elif kind == "code":
                blocks.append({"kind": "code", "text": block[1], "summary": block[2]})
            elif kind == "missing":
                blocks.append({"kind": "missing", "html": inline(block[1])})
            elif kind == "list":
                blocks.append({"kind": "list", "entries": [inline(item) for item in block[1]]})
        sections.append(
            {"title": section.title, "anchor": section.anchor, "level": section.level, "blocks": blocks}
        )
    return sections


def to_html(report: Report) -> str:
    return _template().render(title=report.title, sections=_view(report)).rstrip() + "\n"
