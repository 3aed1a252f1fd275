"""Bad input that used to give silently altered data or a traceback (issue #12): each case is now one DataError
naming the file, row and column, and `mmrec validate` prints it as one line with exit code 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmrec_ray.cli import main
from mmrec_ray.data.embedding_csv import iter_embedding_chunks
from mmrec_ray.data.layout import build_layout
from mmrec_ray.data.released import load_released
from mmrec_ray.data.validate import validate_dataset
from mmrec_ray.errors import DataError

from .conftest import edit, write_tiny_dataset

PART_1 = "data_conversations_embedding/data_conversations_embedding_1.csv"
PART_2 = "data_conversations_embedding/data_conversations_embedding_2.csv"
BIG = 2**53 + 1  # the first integer that float64 cannot hold: it used to come back as 2**53
INT64_MAX = 2**63 - 1


def _edit_bytes(path: Path, old: bytes, new: bytes) -> None:
    content = path.read_bytes()
    assert old in content, f"{old!r} not in {path}"
    path.write_bytes(content.replace(old, new, 1))


def _assert_one_line_error(
    root: Path, name: str, row: int, column: str | None, words: str, capsys
) -> DataError:
    with pytest.raises(DataError) as info:
        validate_dataset(root)
    error = info.value
    assert Path(error.file).name == name, str(error)
    assert error.row == row, str(error)
    assert error.column == column, str(error)
    assert words in str(error), str(error)
    capsys.readouterr()
    assert main(["validate", "--data", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert name in err and f"row {row}" in err and words in err, err
    if column:
        assert f"column '{column}'" in err, err
    return error


# --------------------------------------------------------------------------------------------------- 1: integers
def test_large_ids_round_trip_exactly(tiny_dataset: Path):
    users = tiny_dataset / "data_users.csv"
    edit(users, "9,10,1,", f"{INT64_MAX},{BIG},1,")
    edit(users, "9,10,2,", f"{INT64_MAX},{BIG},2,")
    # Two event numbers one apart above 2**53 were one float: a false "duplicate key", or a silent reorder.
    edit(users, "7,8,1,,10.0", f"7,8,{BIG - 1},,10.0")
    edit(users, "7,8,2,,11.0", f"7,8,{BIG},,11.0")
    edit(tiny_dataset / "data_purchase_events.csv", "\n10,2\n", f"\n{BIG},2\n")
    edit(tiny_dataset / "data_post_filter.csv", "10,2\n10,5\n", f"{BIG},2\n{BIG},5\n")
    edit(tiny_dataset / "data_sessions.csv", '14,1,"1,2"', f'{BIG},1,"1,{BIG}"')
    edit(tiny_dataset / "data_conversations_keyword.csv", "103,1,user,50", f"{BIG},1,user,{BIG}")
    edit(tiny_dataset / PART_2, "103,1,user", f"{BIG},1,user")

    ds = load_released(tiny_dataset)
    for array in (
        ds.users.user_id,
        ds.users.purchase_event_id,
        ds.users.event_number,
        ds.purchases.purchase_event_id,
        ds.post_filter.purchase_event_id,
        ds.sessions.session_id,
        ds.sessions.action_tags.values,
        ds.keywords.conversation_id,
        ds.keywords.keywords.values,
    ):
        assert array.dtype == np.int64
    assert ds.users.user_id[-1] == INT64_MAX and ds.users.purchase_event_id[-1] == BIG
    assert ds.users.event_number[11] == BIG - 1 and ds.users.event_number[12] == BIG
    assert BIG in ds.purchases.purchase_event_id.tolist() and BIG in ds.post_filter.purchase_event_id.tolist()
    assert BIG in ds.sessions.session_id.tolist() and BIG in ds.sessions.action_tags.values.tolist()
    assert BIG in ds.keywords.conversation_id.tolist() and BIG in ds.keywords.keywords.values.tolist()
    embedded = np.concatenate([c.conversation_id for c in iter_embedding_chunks(ds.embedding_parts)])
    assert embedded.dtype == np.int64 and BIG in embedded.tolist()

    layout = build_layout(ds)
    assert layout.purchase_event_id.tolist()[-1] == BIG and layout.user_id.tolist()[-1] == INT64_MAX
    assert layout.is_test.tolist()[-2:] == [True, True]
    # PE 8's events stay in event_number order: session 10, then 11.
    pe8 = layout.purchase_event_id.tolist().index(8)
    assert layout.session_id[layout.event_row[pe8, :2]].tolist() == [10, 11]
    validate_dataset(tiny_dataset)  # the whole chain accepts it


def test_large_ids_survive_prepare(tiny_dataset: Path, tmp_path: Path):
    import pyarrow.parquet as pq

    from mmrec_ray.data.prepare import prepare
    from mmrec_ray.data.tensors import PreparedData

    edit(tiny_dataset / "data_users.csv", "9,10,1,", f"{INT64_MAX},{BIG},1,")
    edit(tiny_dataset / "data_users.csv", "9,10,2,", f"{INT64_MAX},{BIG},2,")
    edit(tiny_dataset / "data_purchase_events.csv", "\n10,2\n", f"\n{BIG},2\n")
    edit(tiny_dataset / "data_post_filter.csv", "10,2\n10,5\n", f"{BIG},2\n{BIG},5\n")
    prepare(tiny_dataset, tmp_path / "run", log=lambda _: None)
    data = PreparedData.load(tmp_path / "run" / "prepared" / "tensors")
    assert data.purchase_event_id.tolist()[-1] == BIG and data.user_id.tolist()[-1] == INT64_MAX
    assert data.is_test.tolist()[-2:] == [True, True]
    users = pq.read_table(tmp_path / "run" / "prepared" / "parquet" / "users.parquet")
    assert users.column("purchase_event_id").to_pylist()[-1] == BIG


def test_integral_float_literals_are_accepted_exactly(tiny_dataset: Path):
    # The released users file writes its optional ids as floats; any id may be written "123.0".
    edit(tiny_dataset / "data_users.csv", "1,1,1,,10.0", "1.0,1.00,1.,,10.000")
    edit(tiny_dataset / "data_users.csv", "2,2,1,100.0,", "2.0,2,1.0,100.0,")
    edit(tiny_dataset / "data_purchase_events.csv", "1,2\n", "1.0,2.0\n")
    edit(tiny_dataset / "data_sessions.csv", '10,1,"1,2"', '10.0,1,"1.0, 2.00"')
    ds = load_released(tiny_dataset)
    assert ds.users.user_id[:2].tolist() == [1, 2] and ds.users.purchase_event_id[:2].tolist() == [1, 2]
    assert ds.users.event_number[:2].tolist() == [1, 1]
    assert ds.users.session_id[0] == 10.0 and ds.users.conversation_id[1] == 100.0
    assert ds.purchases.item_id[0] == 2 and ds.purchases.item_id.dtype == np.int64
    tags = ds.sessions.action_tags
    assert tags.values[tags.offsets[0] : tags.offsets[1]].tolist() == [1, 2]


# (file, old text, new text, expected row, expected column, words expected in the message)
NOT_INTEGERS = {
    "PE id 1e300": ("data_users.csv", "5,6,1,101.0,", "5,1e300,1,101.0,", 11, "purchase_event_id", "'1e300'"),
    "event number 1e300": (
        "data_users.csv",
        "1,4,4,101.0,",
        "1,4,1e300,101.0,",
        9,
        "event_number",
        "'1e300'",
    ),
    "item id beyond int64": (
        "data_purchase_events.csv",
        "5,7\n",
        "5,99999999999999999999\n",
        7,
        "item_id",
        "64-bit",
    ),
    "PE id beyond int64 in post-filter": (
        "data_post_filter.csv",
        "\n2,2\n",
        "\n9223372036854775808,2\n",
        4,
        "purchase_event_id",
        "64-bit",
    ),
    "nan id": ("data_purchase_events.csv", "5,7\n", "5,nan\n", 7, "item_id", "'nan' is not an integer"),
    "inf id": ("data_users.csv", "4,5,1,,13.0", "inf,5,1,,13.0", 10, "user_id", "'inf' is not an integer"),
    "exponent id": ("data_users.csv", "3,3,2,101.0,", "3,3,2,1.01e2,", 4, "conversation_id", "'1.01e2'"),
    "optional id beyond 2**53": (
        "data_users.csv",
        "5,6,1,101.0,",
        f"5,6,1,{BIG}.0,",
        11,
        "conversation_id",
        str(BIG),
    ),
    "tag 1e300": ("data_sessions.csv", '11,2,"4,5"', '11,2,"4,1e300"', 6, "action_tags", "'1e300'"),
    "keyword beyond int64": (
        "data_conversations_keyword.csv",
        "101,1,agent,52",
        "101,1,agent,99999999999999999999",
        5,
        "keywords",
        "64-bit",
    ),
    "embedding conversation id 1e300": (
        PART_2,
        "103,1,user",
        "1e300,1,user",
        6,
        "conversation_id",
        "'1e300'",
    ),
    "embedding sentence number fraction": (
        PART_1,
        "100,2,agent",
        "100,2.5,agent",
        3,
        "sentence_number",
        "'2.5'",
    ),
}


@pytest.mark.parametrize("case", sorted(NOT_INTEGERS))
def test_ids_must_be_exact_integers(tiny_dataset: Path, case: str, capsys):
    file, old, new, row, column, words = NOT_INTEGERS[case]
    edit(tiny_dataset / file, old, new)
    _assert_one_line_error(tiny_dataset, Path(file).name, row, column, words, capsys)


# --------------------------------------------------------------------------------------------------- 2: cut files
CUT_QUOTES = {
    "tags cut at end of file": ("data_sessions.csv", '14,1,"1,2"\n', '14,1,"1,', 1011, "action_tags"),
    "tags cut before the last newline": (
        "data_sessions.csv",
        '14,1,"1,2"\n',
        '14,1,"1,2\n',
        1011,
        "action_tags",
    ),
    "keywords cut": ("data_conversations_keyword.csv", "103,2,agent,51\n", '103,2,agent,"51', 10, "keywords"),
}


@pytest.mark.parametrize("case", sorted(CUT_QUOTES))
def test_file_cut_inside_a_quoted_field(tiny_dataset: Path, case: str, capsys):
    file, old, new, row, column = CUT_QUOTES[case]
    edit(tiny_dataset / file, old, new)
    _assert_one_line_error(tiny_dataset, file, row, column, "never closed", capsys)


def test_text_file_cut_inside_a_quoted_sentence(tmp_path: Path):
    root = write_tiny_dataset(tmp_path / "d", text=True)
    edit(root / "data_conversations_text.csv", "103,2,agent,Goodbye\n", '103,2,agent,"Good')
    with pytest.raises(DataError, match="never closed") as info:
        load_released(root)
    assert info.value.row == 10 and info.value.column == "text"


def test_stray_quote_inside_an_unquoted_cell_is_not_a_cut(tmp_path: Path):
    # An odd number of quote characters alone is no proof: a quote inside an unquoted cell is literal text.
    root = write_tiny_dataset(tmp_path / "d", text=True)
    edit(root / "data_conversations_text.csv", "100,2,agent,Of course", '100,2,agent,Of "course')
    ds = load_released(root)
    assert ds.text.text[1] == 'Of "course'


# --------------------------------------------------------------------------------------------------- 3: items
def test_unknown_purchased_item(tiny_dataset: Path, capsys):
    edit(tiny_dataset / "data_purchase_events.csv", "5,7\n", "5,99\n")
    error = _assert_one_line_error(tiny_dataset, "data_purchase_events.csv", 7, "item_id", "item 99", capsys)
    assert "data_post_filter.csv" in str(error) and "2, 5, 7" in str(error)


def test_negative_item(tiny_dataset: Path, capsys):
    edit(tiny_dataset / "data_purchase_events.csv", "5,7\n", "5,-7\n")
    _assert_one_line_error(tiny_dataset, "data_purchase_events.csv", 7, "item_id", "-7", capsys)


def test_item_list_in_messages_is_bounded(tiny_dataset: Path):
    # Thousands of known items must not turn the one-line error into a page.
    filters = tiny_dataset / "data_post_filter.csv"
    filters.write_text(filters.read_text() + "".join(f"1,{item}\n" for item in range(1000, 6000)))
    purchases = tiny_dataset / "data_purchase_events.csv"
    purchases.write_text(purchases.read_text() + "".join(f"2,{item}\n" for item in range(1000, 6000)))
    edit(purchases, "5,7\n", "5,99\n")
    with pytest.raises(DataError, match="item 99") as info:
        load_released(tiny_dataset)
    assert len(str(info.value)) < 400


# --------------------------------------------------------------------------------------------------- 4: encoding
NOT_UTF8 = {
    "users id": ("data_users.csv", b"5,6,1,101.0,", b"5\xff,6,1,101.0,", 11, "user_id", "byte 0xFF"),
    "session tags": ("data_sessions.csv", b'11,2,"4,5"', b'11,2,"4,\xe95"', 6, "action_tags", "byte 0xE9"),
    "embedding speaker": (PART_1, b"101,1,agent", b"101,1,ag\xe9nt", 4, "sentence_speaker", "byte 0xE9"),
    # Past the first 8 KB, which the header read decodes, it was a UnicodeDecodeError traceback.
    "past the first 8 KB": (
        "data_sessions.csv",
        b"13,1000,1\n",
        b"13,1000,\xe91\n",
        1009,
        "action_tags",
        "byte 0xE9 at character 1",
    ),
}


@pytest.mark.parametrize("case", sorted(NOT_UTF8))
def test_non_utf8_byte(tiny_dataset: Path, case: str, capsys):
    file, old, new, row, column, words = NOT_UTF8[case]
    _edit_bytes(tiny_dataset / file, old, new)
    error = _assert_one_line_error(tiny_dataset, Path(file).name, row, column, words, capsys)
    assert "UTF-8" in str(error)


def test_non_utf8_sentence_text(tmp_path: Path):
    root = write_tiny_dataset(tmp_path / "d", text=True)
    _edit_bytes(root / "data_conversations_text.csv", b"The car was damaged", b"The car was d\xe9maged")
    with pytest.raises(DataError, match=r"byte 0xE9 at character 14") as info:
        load_released(root)
    assert info.value.row == 6 and info.value.column == "text"


def test_non_utf8_header(tiny_dataset: Path, capsys):
    _edit_bytes(tiny_dataset / "data_users.csv", b"purchase_event_id", b"purchase_\xe9vent_id")
    with pytest.raises(DataError, match="UTF-8") as info:
        load_released(tiny_dataset)
    assert info.value.row == 1


# --------------------------------------------------------------------------------------------------- 5: long fields
def _long_sentence(root: Path, characters: int) -> str:
    sentence = ("word " * (characters // 5 + 1))[:characters]
    edit(root / "data_conversations_text.csv", "100,2,agent,Of course", f"100,2,agent,{sentence}")
    return sentence


@pytest.mark.parametrize("characters", [200_000, 3_000_000])
def test_long_sentence_is_accepted(tmp_path: Path, characters: int):
    # 200 KB passed the standard library's 128 KB field limit; 3 MB is over pyarrow's 1 MB block.
    root = write_tiny_dataset(tmp_path / "d", text=True)
    sentence = _long_sentence(root, characters)
    assert load_released(root).text.text[1] == sentence


def test_long_sentence_then_a_ragged_row(tmp_path: Path):
    # The slow path that locates the bad row reads the long field with the standard library.
    root = write_tiny_dataset(tmp_path / "d", text=True)
    _long_sentence(root, 200_000)
    edit(root / "data_conversations_text.csv", "103,1,user,Hello", "103,1,user,Hello,again")
    with pytest.raises(DataError, match="expected 4 fields, found 5") as info:
        load_released(root)
    assert info.value.row == 9


@pytest.mark.parametrize("ragged", [False, True])
def test_absurdly_long_field_is_rejected(tmp_path: Path, monkeypatch, ragged: bool):
    from mmrec_ray.data import csvparse

    monkeypatch.setattr(csvparse, "MAX_FIELD_CHARS", 100_000)
    root = write_tiny_dataset(tmp_path / "d", text=True)
    _long_sentence(root, 150_000)
    if ragged:  # the field is found by the standard-library scan rather than after pyarrow's read
        edit(root / "data_conversations_text.csv", "103,1,user,Hello", "103,1,user,Hello,again")
    with pytest.raises(DataError, match="150,000 characters") as info:
        load_released(root)
    assert info.value.row == 3 and info.value.column == "text"
    assert "100,000" in str(info.value)


def test_cell_with_a_line_break_stays_one_line(tiny_dataset: Path, capsys):
    edit(tiny_dataset / "data_conversations_keyword.csv", "101,1,agent,52", '101,1,agent,"52\nx"')
    _assert_one_line_error(
        tiny_dataset,
        "data_conversations_keyword.csv",
        5,
        "keywords",
        "'52\\nx' is not a comma-separated",
        capsys,
    )


@pytest.mark.parametrize("limit", [None, 1000])
def test_quote_opened_mid_file_and_never_closed(tmp_path: Path, monkeypatch, limit: int | None):
    # pyarrow takes the rest of the file as the sentence; the row where the quote opens is the one to fix.
    from mmrec_ray.data import csvparse

    root = write_tiny_dataset(tmp_path / "d", text=True)
    text = root / "data_conversations_text.csv"
    text.write_text(text.read_text() + "".join(f"104,{n},user,Hello there\n" for n in range(1, 200)))
    edit(text, "100,2,agent,Of course", '100,2,agent,"Of course')
    if limit:  # a run-on quote is stopped once it passes any accepted cell, not read to the end of the file
        monkeypatch.setattr(csvparse, "MAX_FIELD_CHARS", limit)
    with pytest.raises(
        DataError, match="never closed" if limit is None else "runs on for more than 4,000 bytes"
    ) as info:
        load_released(root)
    assert info.value.row == 3 and info.value.column == "text"
