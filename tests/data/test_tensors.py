import numpy as np
import pytest
import torch

from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.tensors import (
    EVENT_CONVERSATION,
    EVENT_SESSION,
    SUBSET_CONVERSATIONS_ONLY,
    SUBSET_INTERSECTION,
    SUBSET_SESSIONS_ONLY,
    PreparedData,
    subset_labels,
    test_mask,
)


def test_split_sizes_of_the_released_dataset():
    mask = test_mask(np.arange(1, 62402))
    assert (~mask).sum() == 56_160
    assert mask.sum() == 6_241
    assert mask[np.arange(1, 62402) >= 56161].all()


def test_split_uses_rank_not_array_order():
    ids = np.array([50, 10, 40, 20, 30, 60, 70, 80, 90, 100])
    mask = test_mask(ids)
    # round(0.9 * 10) = 9: ranks 9 and 10, i.e. the two largest ids, whatever their array position
    assert sorted(ids[mask].tolist()) == [90, 100]
    expected = np.argsort(np.argsort(ids)) + 1 >= round(0.9 * len(ids))
    assert (mask == expected).all()


def test_subset_labels():
    has_c = np.array([True, False, True])
    has_s = np.array([False, True, True])
    assert subset_labels(has_c, has_s).tolist() == [
        SUBSET_CONVERSATIONS_ONLY,
        SUBSET_SESSIONS_ONLY,
        SUBSET_INTERSECTION,
    ]


def tiny_prepared() -> PreparedData:
    # PE0: conv0, sess1, conv1 ; PE1: sess0 ; PE2: conv1
    kinds = np.array([[1, 2, 1], [2, 0, 0], [1, 0, 0]], dtype=np.int8)
    rows = np.array([[0, 1, 1], [0, -1, -1], [1, -1, -1]], dtype=np.int32)
    conv = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    has_c = np.array([True, False, True])
    has_s = np.array([True, True, False])
    return PreparedData(
        purchase_event_id=np.array([1, 2, 3]),
        user_id=np.array([7, 8, 7]),
        item_ids=np.array([1, 2]),
        vocabulary=np.array([5, 6, 9]),
        event_kind=kinds,
        event_row=rows,
        n_events=np.array([3, 1, 1], dtype=np.int16),
        conversation_id=np.array([100, 101]),
        conversation_embedding=conv,
        conversation_keywords=np.array([[1, 0, 0], [0, 0, 1]], dtype=np.uint8),
        conversation_n_sentences=np.array([4, 6], dtype=np.int32),
        session_id=np.array([200, 201]),
        session_tags=np.array([[0, 1, 0], [1, 1, 0]], dtype=np.uint8),
        pe_conversation_embedding=np.array([[0.4, 1.2], [0, 0], [0, 2.0]], dtype=np.float32),
        has_conversation=has_c,
        has_session=has_s,
        targets=np.array([[1, 0], [0, 1], [1, 1]], dtype=np.uint8),
        post_filter=np.ones((3, 2), dtype=bool),
        is_test=np.array([False, False, True]),
        subset=subset_labels(has_c, has_s),
        meta={"note": "tiny"},
    )


def test_save_load_round_trip(tmp_path):
    data = tiny_prepared()
    data.save(tmp_path / "t")
    loaded = PreparedData.load(tmp_path / "t")
    assert loaded.meta == {"note": "tiny"}
    np.testing.assert_array_equal(loaded.event_row, data.event_row)
    assert loaded.num_pes == 3 and loaded.vocab_size == 3 and loaded.embedding_dim == 2


def test_load_without_meta_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="mmrec prepare"):
        PreparedData.load(tmp_path)


def test_modality_rows_keep_order_and_left_align():
    data = tiny_prepared()
    rows, lengths = data.modality_rows(EVENT_CONVERSATION)
    assert rows.tolist() == [[0, 1, -1], [-1, -1, -1], [1, -1, -1]]
    assert lengths.tolist() == [2, 0, 1]
    rows, lengths = data.modality_rows(EVENT_SESSION)
    assert rows.tolist() == [[1, -1, -1], [0, -1, -1], [-1, -1, -1]]


def test_train_indices_and_validation_split():
    data = tiny_prepared()
    assert data.train_indices("all").tolist() == [0, 1]
    assert data.train_indices("conversation").tolist() == [0]
    assert data.train_indices("both").tolist() == [0]
    train, val = data.split_validation(np.array([1, 0]), fraction=0.5)
    assert train.tolist() == [0] and val.tolist() == [1]  # the LAST PE by id is validation


def test_feature_store_gathers_modalities_and_zero_pads():
    store = FeatureStore(tiny_prepared())
    batch = store.batch(np.array([0, 1]))
    assert batch.event_conversation.shape == (2, 3, 2)
    torch.testing.assert_close(batch.event_conversation[0, 0], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(batch.event_conversation[0, 1], torch.zeros(2))  # a session step
    torch.testing.assert_close(batch.event_session[0, 1], torch.tensor([1.0, 1.0, 0.0]))
    torch.testing.assert_close(batch.event_session[1, 1], torch.zeros(3))  # padding
    # keyword view: conversation keywords at conversation steps, session tags at session steps
    torch.testing.assert_close(batch.event_keywords[0], torch.tensor([[1.0, 0, 0], [1, 1, 0], [0, 0, 1]]))
    torch.testing.assert_close(batch.session_sequence[0, 0], torch.tensor([1.0, 1.0, 0.0]))
    assert batch.session_lengths.tolist() == [1, 1]
    assert batch.step_mask.tolist() == [[True, True, True], [True, False, False]]
    assert batch.is_conversation.tolist() == [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]


def test_iterate_is_seeded_and_covers_everything():
    store = FeatureStore(tiny_prepared())
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = [b.index.tolist() for b in store.iterate(np.arange(3), 2, shuffle=True, generator=g1)]
    b = [b.index.tolist() for b in store.iterate(np.arange(3), 2, shuffle=True, generator=g2)]
    assert a == b
    assert sorted(sum(a, [])) == [0, 1, 2]
