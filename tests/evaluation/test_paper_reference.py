"""The paper-vs-ours calibration table (issue 11): every cell beside the paper's value, ✓ only inside our CI."""

from __future__ import annotations

import pandas as pd

from mmrec_ray.evaluation import paper_reference as ref
from tests.evaluation.helpers import bootstrap_row


def _boot(tmp_path, rows):
    results = tmp_path / "results"
    results.mkdir()
    frame = pd.DataFrame([bootstrap_row(m, s, v, v - 0.02, v + 0.02, 100, metric=t) for m, s, t, v in rows])
    frame.to_csv(results / "bootstrap_ci.csv", index=False)


def test_every_cell_is_compared_and_only_cis_holding_the_paper_value_are_ticked(tmp_path):
    _boot(
        tmp_path,
        [
            ("popular", "union", "hr", 0.46),  # paper 0.4595: inside [0.44, 0.48]
            ("popular", "union", "map", 0.20),  # paper 0.2742: outside
            ("conversation", "conversations_only", "hr", 0.66),  # paper 0.6623: inside
            ("my_model", "union", "hr", 0.9),  # not in the paper: no row
        ],
    )
    text = ref.table3_comparison(tmp_path)
    assert "| Popular | 0.460 [0.440, 0.480] / 0.460 ✓ | 0.200 [0.180, 0.220] / 0.274 |" in text
    conversation = next(line for line in text.splitlines() if line.startswith("| Conversation |"))
    assert conversation.split(" | ")[1:3] == ["-", "-"]  # Conversation does not serve the union
    assert "0.660 [0.640, 0.680] / 0.662 ✓" in conversation
    assert "my_model" not in text and "2 of 3 cells" in text
    assert ref.table4_comparison(tmp_path) is None  # no shuffle study in this run


def test_paper_tables_hold_the_published_best_and_shuffle_drops():
    union_hr = {
        m: cells[("union", "hr")] for m, cells in ref.PAPER_TABLE3.items() if ("union", "hr") in cells
    }
    assert max(union_hr, key=union_hr.get) == "latent_feature" and union_hr["latent_feature"] == 0.6872
    assert ref.PAPER_TABLE4["latent_feature"][("intersection", "map")] == -7.71  # the paper's largest drop
