import numpy as np
import pandas as pd
import pytest

from mmrec_ray.errors import DataError, MmrecError
from mmrec_ray.evaluation.predictions import (
    COLUMNS,
    frame_to_matrix,
    load_matrices,
    read_predictions,
    scores_to_frame,
    write_predictions,
)
from tests.evaluation.helpers import model_scores, tiny_prepared


def test_scores_to_frame_drops_unserved_rows():
    scores = np.array([[0.1, 0.2], [np.nan, np.nan], [0.3, 0.4]])
    frame = scores_to_frame("conversation", 2, np.array([7, 8, 9]), np.array([11, 12]), scores)
    assert list(frame.columns) == list(COLUMNS)
    assert frame["purchase_event_id"].tolist() == [7, 7, 9, 9]
    assert frame["item_id"].tolist() == [11, 12, 11, 12]
    assert frame["score"].tolist() == [0.1, 0.2, 0.3, 0.4]
    assert set(frame["seed"]) == {2} and set(frame["model"]) == {"conversation"}


def test_round_trip_through_parquet_aligns_to_test_pes(tmp_path):
    data = tiny_prepared()
    scores = model_scores(data, "conversation", 0, 0.5)
    test_ids = data.purchase_event_id[data.test_indices()]
    frame = scores_to_frame("conversation", 0, test_ids, data.item_ids, scores)
    # Shuffle rows: alignment must come from the ids, not the row order.
    frame = frame.sample(frac=1.0, random_state=1)
    path = write_predictions(tmp_path / "p.parquet", frame)
    back = read_predictions(path)
    matrices = frame_to_matrix(back, data)
    assert list(matrices) == [("conversation", 0)]
    np.testing.assert_array_equal(np.isnan(matrices[("conversation", 0)]), np.isnan(scores))
    np.testing.assert_allclose(matrices[("conversation", 0)], scores)


def test_training_pes_are_ignored():
    data = tiny_prepared()
    train_id = int(data.purchase_event_id[0])
    frame = scores_to_frame("popular", 0, np.array([train_id]), data.item_ids, np.ones((1, data.num_items)))
    matrix = frame_to_matrix(frame, data)[("popular", 0)]
    assert np.isnan(matrix).all()


def _one_pe_frame(data, pe_id=None, item_ids=None):
    pe_id = int(data.purchase_event_id[data.test_indices()[0]]) if pe_id is None else pe_id
    item_ids = data.item_ids if item_ids is None else np.asarray(item_ids)
    return scores_to_frame("popular", 0, np.array([pe_id]), item_ids, np.arange(len(item_ids))[None, :] * 1.0)


def test_unknown_purchase_event_is_an_error_naming_it():
    data = tiny_prepared()
    frame = pd.concat([_one_pe_frame(data), _one_pe_frame(data, pe_id=9999)], ignore_index=True)
    with pytest.raises(MmrecError, match="unknown purchase_event_id 9999") as info:
        frame_to_matrix(frame, data, source="preds.parquet")
    assert info.value.column == "purchase_event_id"
    assert info.value.row == data.num_items + 2  # first row of the bad PE; header is row 1
    assert "preds.parquet" in str(info.value)


def test_unknown_item_is_an_error_naming_it():
    data = tiny_prepared()
    frame = _one_pe_frame(data, item_ids=[11, 12, 13, 99])
    with pytest.raises(DataError, match="unknown item_id 99") as info:
        frame_to_matrix(frame, data)
    assert info.value.column == "item_id"


def test_duplicate_prediction_is_an_error():
    data = tiny_prepared()
    frame = pd.concat([_one_pe_frame(data), _one_pe_frame(data).iloc[[2]]], ignore_index=True)
    pe_id = int(data.purchase_event_id[data.test_indices()[0]])
    with pytest.raises(
        DataError,
        match=f"duplicate prediction for model 'popular' seed 0 purchase_event_id {pe_id} item_id 13",
    ):
        frame_to_matrix(frame, data)


def test_same_pe_in_different_seeds_is_not_a_duplicate():
    data = tiny_prepared()
    a = _one_pe_frame(data)
    b = a.assign(seed=1)
    matrices = frame_to_matrix(pd.concat([a, b]), data)
    assert sorted(matrices) == [("popular", 0), ("popular", 1)]


def test_served_pe_without_every_item_is_an_error():
    data = tiny_prepared()
    frame = _one_pe_frame(data).iloc[:-1]
    with pytest.raises(DataError, match="item_id\\(s\\) \\[14\\]"):
        frame_to_matrix(frame, data)


def test_missing_column_and_bad_values_name_file_and_column(tmp_path):
    data = tiny_prepared()
    path = tmp_path / "bad.parquet"
    _one_pe_frame(data).drop(columns=["score"]).to_parquet(path)
    with pytest.raises(DataError, match="bad.parquet, column 'score': missing column") as info:
        read_predictions(path)
    assert info.value.file == str(path)
    frame = _one_pe_frame(data).astype({"seed": object})
    frame.loc[1, "seed"] = "x"
    with pytest.raises(DataError, match="row 3, column 'seed'"):
        frame_to_matrix(frame, data)
    with pytest.raises(DataError, match="not found"):
        read_predictions(tmp_path / "missing.parquet")


def test_same_model_and_seed_in_two_files_is_an_error(tmp_path):
    data = tiny_prepared()
    first = write_predictions(tmp_path / "a.parquet", _one_pe_frame(data))
    second = write_predictions(tmp_path / "b.parquet", _one_pe_frame(data))
    with pytest.raises(DataError, match="already has predictions in .*a.parquet"):
        load_matrices([first, second], data)


def test_duplicate_on_a_training_pe_is_an_error_too():
    data = tiny_prepared()
    train_frame = _one_pe_frame(data, pe_id=1)
    with pytest.raises(DataError, match="duplicate prediction .* purchase_event_id 1 item_id 11"):
        frame_to_matrix(pd.concat([train_frame, train_frame.iloc[[0]]], ignore_index=True), data)
