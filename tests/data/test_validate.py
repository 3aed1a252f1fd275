"""`mmrec validate`: the data-quality report on the hand-made dataset (see conftest.py for the hand counts)."""

from __future__ import annotations

import json
from pathlib import Path

from mmrec_ray.cli import main
from mmrec_ray.data.validate import validate_dataset

from .conftest import edit, write_tiny_dataset


def test_report_counts(tiny_dataset: Path):
    report = validate_dataset(tiny_dataset)
    counts = report["counts"]
    assert counts["purchase_events"] == 10 and counts["users"] == 9 and counts["user_rows"] == 17
    assert counts["items"] == 3 and counts["purchase_rows"] == 12
    assert counts["sessions_referenced"] == 4 and counts["sessions_in_file"] == 5
    assert counts["conversations_referenced"] == 3 and counts["conversation_events"] == 6
    assert counts["embedding_sentences"] == 9
    assert counts["train_pes"] == 8 and counts["test_pes"] == 2
    assert report["pe_types"] == {"conversations_only": 2, "sessions_only": 5, "intersection": 3}
    assert report["events_per_pe"] == {1: 5, 2: 4, 4: 1}
    assert report["items_per_pe"] == {1: 8, 2: 2}
    assert report["purchases_per_item"] == {2: 5, 5: 4, 7: 3}
    # Tags 1-5 and the Keyword model's 50, 52 (51: 2 of 2030 pooled rows).
    assert report["vocabulary"]["size"] == 7
    drops = report["drops"]
    assert drops["tags_under_threshold"] == 1 and drops["tag_occurrences_under_threshold"] == 1
    assert drops["sessions_unreferenced"] == 1 and drops["conversations_unreferenced"] == 1
    assert drops["embedding_sentences_of_unreferenced_conversations"] == 2
    assert report["embeddings"] == {"dim": 4, "parts": 2}


def test_threshold_is_a_share_of_training_occurrences(tiny_dataset: Path):
    # Two more occurrences of tag 77 in training: 3 per PE listing s13 (two PEs), 6 of 2024 PE-weighted action rows
    # (0.3 %), clears the 0.1 % threshold.
    edit(tiny_dataset / "data_sessions.csv", "13,1001,77\n", "13,1001,77\n13,1002,77\n13,1003,77\n")
    assert validate_dataset(tiny_dataset)["vocabulary"]["tags"]["dropped"] == 0


def test_cli_prints_report_and_exits_zero(tiny_dataset: Path, capsys):
    assert main(["validate", "--data", str(tiny_dataset)]) == 0
    out = capsys.readouterr().out
    assert "purchase events" in out and "Dropped by the protocol" in out and "tags under threshold" in out
    assert main(["validate", "--data", str(tiny_dataset), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["purchase_events"] == 10


def test_warnings_for_tolerated_oddities(tiny_dataset: Path):
    # A purchased item that is not in the PE's post-filter can never be hit: reported, not fatal.
    edit(tiny_dataset / "data_post_filter.csv", "1,2\n", "")
    report = validate_dataset(tiny_dataset)
    assert report["warnings"]["purchases_not_in_post_filter"] == 1


def test_text_only_folder_is_valid(tmp_path: Path, capsys):
    root = write_tiny_dataset(tmp_path / "d", embeddings=False, text=True)
    report = validate_dataset(root)
    assert report["embeddings"]["from_text"] == "data_conversations_text.csv"
    assert report["counts"]["text_sentences"] == 9
    assert main(["validate", "--data", str(root)]) == 0
    assert "computes them from data_conversations_text.csv" in capsys.readouterr().out


def test_missing_folder(tmp_path: Path, capsys):
    assert main(["validate", "--data", str(tmp_path / "nope")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
