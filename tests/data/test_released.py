"""Reading the released format: every bad-input case gives one DataError naming file, row and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmrec_ray.cli import main
from mmrec_ray.data.embedding_csv import iter_embedding_chunks
from mmrec_ray.data.released import load_released
from mmrec_ray.data.validate import validate_dataset
from mmrec_ray.errors import DataError

from .conftest import edit

PART_1 = "data_conversations_embedding/data_conversations_embedding_1.csv"
PART_2 = "data_conversations_embedding/data_conversations_embedding_2.csv"


def test_reads_files_unchanged(tiny_dataset: Path):
    ds = load_released(tiny_dataset)
    assert np.isnan(ds.users.conversation_id[0]) and ds.users.session_id[0] == 10.0
    assert ds.users.conversation_id[1] == 100.0 and np.isnan(ds.users.session_id[1])
    tags = ds.sessions.action_tags
    assert tags.values[tags.offsets[0] : tags.offsets[1]].tolist() == [1, 2]
    # Session 12's second action has an empty tag cell: an empty list, not an error.
    row = int(np.flatnonzero((ds.sessions.session_id == 12) & (ds.sessions.action_number == 2))[0])
    assert tags.offsets[row + 1] - tags.offsets[row] == 0
    assert ds.embedding_dim == 4
    assert [p.name for p in ds.embedding_parts] == [
        "data_conversations_embedding_1.csv",
        "data_conversations_embedding_2.csv",
    ]


def test_parts_sorted_by_number_not_name(tiny_dataset: Path):
    folder = tiny_dataset / "data_conversations_embedding"
    (folder / "data_conversations_embedding_2.csv").rename(folder / "data_conversations_embedding_10.csv")
    ds = load_released(tiny_dataset)
    assert [p.name for p in ds.embedding_parts][-1] == "data_conversations_embedding_10.csv"


def test_chunked_stream_equals_one_chunk(tiny_dataset: Path):
    ds = load_released(tiny_dataset)
    whole = list(iter_embedding_chunks(ds.embedding_parts, chunk_bytes=1 << 20))
    small = list(iter_embedding_chunks(ds.embedding_parts, chunk_bytes=1))  # clamps to the 1 KiB minimum
    tiny_block = list(iter_embedding_chunks(ds.embedding_parts, chunk_bytes=1024))
    assert len(whole) == 2
    for chunks in (small, tiny_block):
        assert np.array_equal(
            np.concatenate([c.embedding for c in chunks]), np.concatenate([c.embedding for c in whole])
        )
        assert np.array_equal(
            np.concatenate([c.conversation_id for c in chunks]),
            np.concatenate([c.conversation_id for c in whole]),
        )


def test_chunks_carry_their_spreadsheet_rows(tmp_path: Path, tiny_dataset: Path):
    # A long part streamed in 1 KiB blocks: a bad cell far down is still reported on its true row.
    part = tiny_dataset / PART_2
    lines = part.read_text().splitlines()
    body = [f"103,{k},user,0.5,0.25,0.125,1.0" for k in range(3, 203)]
    body[150] = "103,153,user,0.5,nan,0.125,1.0"
    part.write_text("\n".join(lines + body) + "\n")
    ds = load_released(tiny_dataset)
    with pytest.raises(DataError) as info:
        for _ in iter_embedding_chunks(ds.embedding_parts, chunk_bytes=1024):
            pass
    assert info.value.row == len(lines) + 151 and info.value.column == "embedding_2"
    assert "not finite" in str(info.value)
    assert "data_conversations_embedding_2.csv" in info.value.file


# (file, old text, new text, expected row, expected column, words expected in the message)
BAD_CASES = {
    "missing column": ("data_users.csv", "session_id\n", "sessionid\n", 1, "session_id", "missing column"),
    "non-numeric id": (
        "data_users.csv",
        "5,6,1,101.0,",
        "5,six,1,101.0,",
        11,
        "purchase_event_id",
        "not a number",
    ),
    "fractional id": ("data_purchase_events.csv", "5,7\n", "5,7.5\n", 7, "item_id", "not an integer"),
    "both ids": ("data_users.csv", "2,2,1,100.0,\n", "2,2,1,100.0,10.0\n", 3, "conversation_id", "both"),
    "neither id": ("data_users.csv", "2,2,1,100.0,\n", "2,2,1,,\n", 3, "conversation_id", "neither"),
    "duplicate event": ("data_users.csv", "1,4,4,101.0,", "1,4,3,101.0,", 9, "event_number", "duplicate key"),
    "duplicate action": ("data_sessions.csv", "11,3,", "11,2,", 7, "action_number", "duplicate key"),
    "duplicate sentence": (
        "data_conversations_keyword.csv",
        "101,2,user",
        "101,1,user",
        6,
        "sentence_number",
        "duplicate",
    ),
    "duplicate purchase": ("data_purchase_events.csv", "3,7\n", "3,2\n", 5, "item_id", "duplicate key"),
    "dangling session": ("data_users.csv", "4,5,1,,13.0", "4,5,1,,99.0", 10, "session_id", "session 99"),
    "dangling conversation": (
        "data_users.csv",
        "5,6,1,101.0,",
        "5,6,1,999.0,",
        11,
        "conversation_id",
        "conversation 999",
    ),
    "item outside item set": (
        "data_post_filter.csv",
        "1,5\n",
        "1,24\n",
        3,
        "item_id",
        "outside the item set",
    ),
    "unknown PE in purchases": (
        "data_purchase_events.csv",
        "10,2\n",
        "10,2\n11,2\n",
        14,
        "purchase_event_id",
        "purchase event 11",
    ),
    "bad tag list": ("data_sessions.csv", '11,2,"4,5"', '11,2,"4,x"', 6, "action_tags", "comma-separated"),
    "bad keyword list": (
        "data_conversations_keyword.csv",
        "101,1,agent,52",
        "101,1,agent,5 2",
        5,
        "keywords",
        "comma-separated",
    ),
    "PE owned by two users": (
        "data_users.csv",
        "7,8,2,,11.0",
        "70,8,2,,11.0",
        14,
        "user_id",
        "more than one user",
    ),
    "ragged row": ("data_sessions.csv", "11,1,2\n", "11,1,2,9\n", 5, None, "fields"),
    "nan embedding": (PART_1, "101,1,agent,0.0,4.0", "101,1,agent,0.0,nan", 4, "embedding_2", "not finite"),
    "inf embedding": (
        PART_2,
        "102,2,agent,3.0,3.0,3.0,3.0",
        "102,2,agent,3.0,3.0,3.0,inf",
        5,
        "embedding_4",
        "not finite",
    ),
    "text in embedding": (PART_2, "102,1,user,1.0", "102,1,user,abc", 4, "embedding_1", "not a number"),
    "empty embedding cell": (PART_1, "100,2,agent,3.0,", "100,2,agent,,", 3, "embedding_1", "empty"),
    "duplicate sentence across parts": (
        PART_2,
        "100,3,user",
        "100,2,user",
        2,
        "sentence_number",
        "first seen on data_conversations_embedding_1.csv row 3",
    ),
}


def _apply(dataset: Path, case: str) -> tuple[str, int, str | None, str]:
    file, old, new, row, column, words = BAD_CASES[case]
    edit(dataset / file, old, new)
    return Path(file).name, row, column, words


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_gives_one_line_error(tiny_dataset: Path, case: str, capsys):
    name, row, column, words = _apply(tiny_dataset, case)
    with pytest.raises(DataError) as info:
        validate_dataset(tiny_dataset)
    error = info.value
    assert Path(error.file).name == name
    assert error.row == row
    assert error.column == column
    assert words in str(error)
    # The CLI turns it into exit code 2 and exactly one line on stderr, no traceback.
    capsys.readouterr()
    assert main(["validate", "--data", str(tiny_dataset)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert name in err and f"row {row}" in err and words in err
    if column:
        assert f"column '{column}'" in err


def test_missing_file(tiny_dataset: Path, capsys):
    (tiny_dataset / "data_post_filter.csv").unlink()
    assert main(["validate", "--data", str(tiny_dataset)]) == 2
    err = capsys.readouterr().err
    assert "data_post_filter.csv: file not found" in err


def test_pe_without_items(tiny_dataset: Path):
    edit(tiny_dataset / "data_purchase_events.csv", "6,2\n", "")
    with pytest.raises(DataError, match=r"purchase event 6 \(data_users.csv row 11\) has no purchased items"):
        load_released(tiny_dataset)


def test_inconsistent_embedding_widths(tiny_dataset: Path):
    part = tiny_dataset / PART_2
    lines = part.read_text().splitlines()
    part.write_text("\n".join([lines[0] + ",embedding_5"] + [line + ",0.0" for line in lines[1:]]) + "\n")
    with pytest.raises(DataError, match="all parts must have the same width") as info:
        load_released(tiny_dataset)
    assert info.value.row == 1 and "data_conversations_embedding_2.csv" in info.value.file


def test_gap_in_embedding_columns(tiny_dataset: Path):
    edit(tiny_dataset / PART_1, "embedding_3,", "embedding_9,")
    with pytest.raises(DataError) as info:
        load_released(tiny_dataset)
    assert info.value.column == "embedding_3" and info.value.row == 1


def test_conversation_without_embeddings(tiny_dataset: Path):
    edit(tiny_dataset / PART_2, "102,1,user,1.0,1.0,1.0,1.0\n102,2,agent,3.0,3.0,3.0,3.0\n", "")
    with pytest.raises(DataError, match="conversation 102 has no sentence embeddings") as info:
        validate_dataset(tiny_dataset)
    assert info.value.row == 15 and info.value.column == "conversation_id"


def test_empty_text(tmp_path: Path):
    from .conftest import write_tiny_dataset

    root = write_tiny_dataset(tmp_path / "d", text=True)
    edit(root / "data_conversations_text.csv", "101,2,user,The car was damaged", "101,2,user,  ")
    with pytest.raises(DataError) as info:
        load_released(root)
    assert info.value.row == 6 and info.value.column == "text" and "empty sentence text" in str(info.value)


def test_no_embeddings_and_no_text(tiny_dataset: Path):
    import shutil

    shutil.rmtree(tiny_dataset / "data_conversations_embedding")
    with pytest.raises(DataError, match="no embedding parts"):
        load_released(tiny_dataset)


def test_missing_keyword_file_without_text(tiny_dataset: Path):
    (tiny_dataset / "data_conversations_keyword.csv").unlink()
    with pytest.raises(DataError, match="data_conversations_keyword.csv: file not found"):
        load_released(tiny_dataset)
