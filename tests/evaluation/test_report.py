"""`mmrec report`: every table and figure of a run ends up in report.md and the self-contained report.html."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import pytest
import yaml

from mmrec_ray.cli import main
from mmrec_ray.config import ExperimentConfig, dump_config
from mmrec_ray.data.tensors import PreparedData
from mmrec_ray.evaluation import analyses as A
from mmrec_ray.evaluation.aggregate import aggregate
from tests.evaluation.analysis_run import TRAINING, build_fitted_run
from tests.evaluation.helpers import tiny_prepared, write_model_predictions

FIGURES = (
    "figures/map_at_k.png",
    "figures/hr_at_k.png",
    "figures/cd_diagram.png",
    "analyses/num_events/map_by_events.png",
    "analyses/tsne/tsne_inputs.png",
    "analyses/tsne/tsne_outputs.png",
    "analyses/ablation/ablation.png",
)
SECTIONS = (
    "summary",
    "provenance",
    "table3",
    "seeds",
    "bootstrap",
    "reference-tests",
    "pairwise",
    "friedman",
    "fig6",
    "table4",
    "fig7",
    "tsne",
    "ablation",
    "sweep",
    "missing",
)


class _Collector(HTMLParser):
    """Section ids, tables (as lists of rows of cell texts) and image sources of an HTML page."""

    def __init__(self):
        super().__init__()
        self.ids, self.tables, self.images, self._cell = [], [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.ids.append(attrs.get("id"))
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "img":
            self.images.append(attrs)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def parse(html_text: str) -> _Collector:
    collector = _Collector()
    collector.feed(html_text)
    return collector


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """A fitted run with aggregate results, every analysis, a config and a manifest."""
    root = tmp_path_factory.mktemp("report_run")
    build_fitted_run(root)
    data = PreparedData.load(root / "prepared" / "tensors")
    cfg = ExperimentConfig(name="reporttest", run_dir=str(root))
    (root / "config.yaml").write_text(dump_config(cfg))
    (root / "manifest.json").write_text(
        '{"git_commit": "abc123", "seeds": [0, 1], "versions": {"torch": "x"}}'
    )
    aggregate(root, bootstrap_resamples=200, echo=None)
    names = ["keyword", "latent_feature"]
    for seed in (0, 1):
        frames = A.fit_shuffled_seed(data, names, seed, A.fitted_params(root, names, seed), TRAINING)
        A.write_shuffled_predictions(root, seed, frames)
    A.shuffle_study(root, names, data=data, echo=None)
    A.number_of_events(root, names, max_events=data.max_events, data=data, echo=None)
    A.tsne_inputs(root, A.JOINT_MODELS, max_points=60, data=data, echo=None)
    A.tsne_outputs(root, A.JOINT_MODELS, max_points=60, data=data, echo=None)
    A.modality_ablation(root, None, bootstrap_resamples=100, data=data, echo=None)
    return root


def test_report_contains_every_table_and_figure(full_run, capsys):
    assert main(["report", str(full_run)]) == 0
    assert "report:" in capsys.readouterr().out
    html_text = (full_run / "report.html").read_text()
    md = (full_run / "report.md").read_text()
    page = parse(html_text)
    assert list(page.ids) == list(SECTIONS)

    # Every figure: embedded in the HTML as a decodable PNG (self-contained), linked by relative path in the MD.
    sources = [img.get("data-source") for img in page.images]
    assert set(FIGURES) <= set(sources) and len(sources) == len(set(sources))
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,")
        payload = base64.b64decode(img["src"].split(",", 1)[1])
        assert payload == (full_run / img["data-source"]).read_bytes()
        assert img["alt"]  # a caption a reader (and a screen reader) sees
    for figure in FIGURES:
        assert f"]({figure})" in md and (full_run / figure).exists()
    assert 'src="file:' not in html_text and "http://" not in html_text and "https://" not in html_text

    # Tables: Table 3 and Table 4 rows with their values, the statistics, the ablation.
    headers = [table[0] for table in page.tables]
    table3 = next(t for t in page.tables if t[0][:2] == ["Model", "Union HR@3"])
    assert {row[0] for row in table3[1:]} >= {
        "Popular",
        "Keyword",
        "Latent Feature",
        "Relative Representation",
    }
    table4 = next(t for t in page.tables if t[0][:2] == ["Model", "Event order"])
    assert [row[1] for row in table4[1:]] == ["original", "shuffled"] * 2
    assert any("%)" in cell for cell in table4[2])
    assert any(h[:2] == ["Model", "Hidden"] for h in headers)  # ablation
    assert any("Nemenyi CD" in h for h in headers)  # Friedman
    assert any("Significant after Holm" in h for h in headers)  # pairwise
    assert any(any("±" in c for c in row) for t in page.tables for row in t)  # mean ± std
    assert any(any(re.search(r"\[\d\.\d{3}, \d\.\d{3}\]", c) for c in row) for t in page.tables for row in t)
    for name in ("table3.md", "table4.md"):
        source = (full_run / ("results" if name == "table3.md" else "analyses/shuffle") / name).read_text()
        first_row = source.splitlines()[2]
        assert first_row in md  # the table as written by its stage, verbatim in the Markdown report

    # Provenance and the automatic summary.
    assert "abc123" in html_text and "reporttest" in html_text
    summary = html_text.split('<section id="summary">')[1].split("</section>")[0]
    assert "has the highest MAP@3" in summary and "Shuffling the event order" in summary
    assert "marks of Table 3" in summary and "<li><strong>Union MAP@3</strong> vs Latent Feature: " in summary
    assert "Modality ablation on" in summary and "bootstrap CI of the change excludes zero" in summary
    # Figures for a paper: PDF and SVG beside each PNG, named in the caption.
    for figure in FIGURES:
        assert (full_run / figure).with_suffix(".pdf").exists() and (full_run / figure).with_suffix(
            ".svg"
        ).exists()
        assert f"<code>{figure[:-4]}.pdf</code>" in html_text
    assert "None: every table and figure of the report is present." in html_text


def test_report_states_missing_pieces_instead_of_failing(tmp_path):
    data = tiny_prepared(n_pes=120, n_test=60, num_items=5)
    run = tmp_path / "run"
    data.save(run / "prepared" / "tensors")
    write_model_predictions(
        data, run / "predictions", models=("popular", "keyword", "latent_feature"), seeds=(0, 1)
    )
    aggregate(run, bootstrap_resamples=100, echo=None)
    config = yaml.safe_load(dump_config(ExperimentConfig(name="partial")))
    config["analyses"]["shuffle"] = False
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    page = parse((run / "report.html").read_text())
    assert "switched off in the configuration" in md  # Table 4: shuffle = false
    assert "not run yet" in md  # the other analyses: enabled but absent
    assert "No manifest.json" in md
    assert [img.get("data-source") for img in page.images] == [
        "figures/cd_diagram.png",
        "figures/map_at_k.png",
        "figures/hr_at_k.png",
    ]
    missing = page.tables  # still renders every statistics table
    assert any(t[0][:2] == ["Model", "Union HR@3"] for t in missing)


def test_report_of_a_missing_directory_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err
