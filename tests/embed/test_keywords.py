import pytest

from mmrec_ray.embed.keywords import extract_keywords, load_keyword_mapping
from mmrec_ray.errors import DataError

MAPPING = {"claim": 17, "car": 4, "vehicle": 4, "policy": 9, "travel": 31, "insure": 2, "cover": 5, "the": 99}


def test_extract_keywords_hand_made():
    texts = [
        "I want to report a Claim for my CAR.",
        "Two claims, two policies: the vehicle and the car!",
        "We were travelling; is it insured and covered?",
        "nothing relevant here",
        "",
        "claim-car/policy123travel",
    ]
    assert extract_keywords(texts, MAPPING) == [
        [17, 4],
        [17, 9, 4],  # car and vehicle share id 4: listed once, order of first appearance
        [31, 2, 5],
        [],
        [],
        [17, 4, 9, 31],  # non-letters split tokens
    ]


def test_stop_words_are_never_keywords():
    assert extract_keywords(["the the THE"], MAPPING) == [[]]


def test_load_keyword_mapping(tmp_path):
    path = tmp_path / "keyword_mapping.csv"
    path.write_text("word,keyword_id\nclaim,17\ncar,4\nvehicle,4\n")
    assert load_keyword_mapping(path) == {"claim": 17, "car": 4, "vehicle": 4}


@pytest.mark.parametrize(
    "body, row, column",
    [
        ("word,keyword_id\nclaim,17\nclaim,3\n", 3, "word"),
        ("word,keyword_id\nclaim,x\n", 2, "keyword_id"),
        ("word,keyword_id\nclaim,0\n", 2, "keyword_id"),
        ("word,keyword_id\nTwo Words,1\n", 2, "word"),
        ("term,keyword_id\nclaim,1\n", None, "word"),
    ],
)
def test_bad_mapping_names_row_and_column(tmp_path, body, row, column):
    path = tmp_path / "keyword_mapping.csv"
    path.write_text(body)
    with pytest.raises(DataError) as info:
        load_keyword_mapping(path)
    assert info.value.row == row
    assert info.value.column == column
    assert "keyword_mapping.csv" in str(info.value)


def test_missing_mapping_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_keyword_mapping(tmp_path / "nope.csv")
