"""`mmrec report RUN_DIR`: one document a researcher can publish from — ``RUN_DIR/report.md`` and a
self-contained ``RUN_DIR/report.html`` (figures embedded as base64 PNG, no external files or network).

Contents, in order: an automatically written summary whose every significance claim is a mark of a table
(``summary``); the run's config and provenance; Table 3; mean ± std over seeds; 95 % bootstrap CIs; the tests
against the reference model (Table 3's marks); all pairwise tests with Holm correction; the Friedman test with its
critical-difference diagram; the HR@k / MAP@k curves (Fig. 6); Table 4 (event order); metrics by number of
events (Fig. 7); t-SNE of inputs and outputs (Figs. 8–9); the counterfactual modality ablation; the
hyperparameter sweep (``tune/sweep.json``: spread, importance, best configs, per-parameter scatter).

Modules by role: ``document`` (the block model, reading helpers), ``summary``, ``sections``, ``build``
(assembly, ``write_report``), ``markdown`` and ``html`` (+ ``templates/report.html.j2``) the two writers.
Everything is read from files the other stages wrote; a piece that is missing (an analysis switched off, a stage
not run yet) is stated in its place, never an error.
"""

from mmrec_ray.evaluation.report.build import build_report, write_report
from mmrec_ray.evaluation.report.document import Block, Report, Section
from mmrec_ray.evaluation.report.html import to_html
from mmrec_ray.evaluation.report.markdown import to_markdown
from mmrec_ray.evaluation.report.summary import summary_blocks

__all__ = [
    "Block",
    "Report",
    "Section",
    "build_report",
    "summary_blocks",
    "to_html",
    "to_markdown",
    "write_report",
]
