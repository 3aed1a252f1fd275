"""``fidelity.keyword.row_features: reference``: model_keyword.py's duplicated-index join, checked by hand.

Ten PEs, 1-8 training, 9-10 test. data_users.csv rows in FILE order (PE 2 is listed before PE 1 on purpose: the
reference's labels follow the file, not the PE order):

row  PE  event  event id        row  PE  event  event id
r0   2   1      s2              r7   6   1      s1
r1   2   2      s2 (again)      r8   7   1      c1
r2   1   1      s1              r9   8   1      s4
r3   1   2      c1              r10  9   1      c1     test
r4   3   1      c2              r11  10  1      s3     test
r5   4   1      s3              r12  10  2      c2     test
r6   5   1      s4

Sessions: s1 = ["1,2", "1,3"], s2 = ["1,4", "4"], s3 = ["9"], s4 = ["1,5"].
Conversations: c1 = ["1,6", "", "7"], c2 = ["8"].

The reference labels the training conversation rows (r3, r4, r8, each with its sentences) 0..6 and the training
session rows (r0, r1, r2, r5, r6, r7, r9, each with its actions) 0..10:

label  sentence row        action row        joined?
L0     r3 "1,6"            r0 "1,4"          yes
L1     r3 "" (dropped)     r0 "4"            no: the sentence row is gone before the join
L2     r3 "7"              r1 "1,4"          yes
L3     r4 "8"              r1 "4"            yes
L4     r8 "1,6"            r2 "1,2"          yes
L5     r8 "" (dropped)     r2 "1,3"          no
L6     r8 "7"              r5 "9"            yes
L7-L10                     r6, r7 x2, r9     no partner

Pooled share rows = distinct (PE, conversation, session, number) among rows with ids: sentences 2 + 1 + 2, actions
2 (PE 2 lists s2 twice: the same keys) + 2 + 1 + 1 + 2 + 1 -> 14. Clean occurrences: 1: 10, 4: 4, 2, 3, 5, 6, 7:
2 each, 8, 9: 1 each. The join adds each pair's ids once more (both rows carry both): L0 1,6,1,4; L2 7,1,4;
L3 8,4; L4 1,6,1,2; L6 7,9 -> mixed: 1: 15, 2: 3, 3: 2, 4: 7, 5: 2, 6: 4, 7: 4, 8: 2, 9: 2.

At a 0.2 threshold (kept: >= 3 of 14) the mixed vocabulary is {1, 2, 4, 6, 7}, the clean one {1, 4}. Mixed events
(OR over the event's rows, each row its ids plus its partner's):
    PE1 s1 = {1,2}+{1,6} | {1,3} -> {1,2,6};   PE1 c1 = {1,6}+{1,4} | {7}+{1,4} -> {1,4,6,7}
    PE2 s2 = {1,4}+{1,6} | {4} -> {1,4,6};      PE2 s2 = {1,4}+{7} | {4}+{8} -> {1,4,7}
    PE3 c2 = {8}+{4} -> {4} (8 is filtered: the event lives on its partner's id)
    PE4 s3 = {9}+{7} -> {7} (likewise);  PE5 s4 {1};  PE6 s1 {1,2};  PE7 c1 = {1,6}+{1,2} | {7}+{9} -> {1,2,6,7};
    PE8 s4 {1}.
Test PEs stay clean: PE9 c1 = {1,6,7}; PE10's s3 and c2 hold no kept id, so PE10 has no event.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmrec_ray.cli import main
from mmrec_ray.config import ModelParams, TrainingConfig, load_config
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.layout import build_layout
from mmrec_ray.data.prepare import PrepareOptions, prepare, prepared_switches
from mmrec_ray.data.released import load_released
from mmrec_ray.data.tensors import EVENT_CONVERSATION, EVENT_SESSION, PreparedData
from mmrec_ray.data.vocabulary_fit import fit_vocabulary, reference_row_mixing
from mmrec_ray.errors import ConfigError
from tests.data.conftest import write_released_tables

USERS = [  # (user, PE, event_number, conversation, session), file order
    (2, 2, 1, None, 2),
    (2, 2, 2, None, 2),
    (1, 1, 1, None, 1),
    (1, 1, 2, 1, None),
    (3, 3, 1, 2, None),
    (4, 4, 1, None, 3),
    (5, 5, 1, None, 4),
    (6, 6, 1, None, 1),
    (7, 7, 1, 1, None),
    (8, 8, 1, None, 4),
    (9, 9, 1, 1, None),
    (10, 10, 1, None, 3),
    (10, 10, 2, 2, None),
]
SESSIONS = {1: ["1,2", "1,3"], 2: ["1,4", "4"], 3: ["9"], 4: ["1,5"]}
CONVERSATIONS = {1: ["1,6", "", "7"], 2: ["8"]}

ROWS = 14
CLEAN_COUNTS = {1: 10, 2: 2, 3: 2, 4: 4, 5: 2, 6: 2, 7: 2, 8: 1, 9: 1}
MIXED_COUNTS = {1: 15, 2: 3, 3: 2, 4: 7, 5: 2, 6: 4, 7: 4, 8: 2, 9: 2}
C, S = EVENT_CONVERSATION, EVENT_SESSION
MIXED_EVENTS = {  # PE -> [(kind, ids)] at threshold 0.2, row_features=reference
    1: [(S, {1, 2, 6}), (C, {1, 4, 6, 7})],
    2: [(S, {1, 4, 6}), (S, {1, 4, 7})],
    3: [(C, {4})],
    4: [(S, {7})],
    5: [(S, {1})],
    6: [(S, {1, 2})],
    7: [(C, {1, 2, 6, 7})],
    8: [(S, {1})],
    9: [(C, {1, 6, 7})],  # test: clean
    10: [],  # test: s3 and c2 hold no kept id when clean
}
CLEAN_EVENTS = {  # the same at row_features=own (vocabulary {1, 4})
    1: [(S, {1}), (C, {1})],
    2: [(S, {1, 4}), (S, {1, 4})],
    3: [],
    4: [],
    5: [(S, {1})],
    6: [(S, {1})],
    7: [(C, {1})],
    8: [(S, {1})],
    9: [(C, {1})],
    10: [],
}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_released_tables(tmp_path / "data", USERS, SESSIONS, CONVERSATIONS)


def _prepare(root: Path, run: Path, **options) -> PreparedData:
    # empty_sessions=keep: at 0.2 the session models' tag filter (tag 9: 1 of 9 action rows) empties s3, and
    # `drop` would take it out of every model's layout before Keyword reads it (a separate switch).
    options = {"vocab_threshold": 0.2, "empty_sessions": "keep", **options}
    prepare(root, run, options=PrepareOptions(**options), log=lambda _: None)
    return PreparedData.load(run / "prepared" / "tensors")


def _events(data: PreparedData, indices: np.ndarray | None = None) -> dict:
    """PE id -> [(kind, ids)] as the Keyword model reads them (``keyword_sequence``)."""
    store = FeatureStore(data, "cpu")
    indices = np.arange(data.num_pes) if indices is None else indices
    batch = store.batch(indices)
    columns = data.vocabulary[np.flatnonzero(data.keyword_column_mask)]
    out = {}
    for pe, steps, length in zip(
        data.purchase_event_id[indices], batch.keyword_sequence.numpy(), batch.keyword_lengths.numpy()
    ):
        out[int(pe)] = [(C if step[0] else S, set(columns[step[1:] > 0].tolist())) for step in steps[:length]]
    return out


def _kept_exactly_at(root: Path, counts: dict, **switches) -> None:
    """Each id survives the pooled filter at its own share and falls just above it."""
    ds = load_released(root)
    layout = build_layout(ds)
    for tag, count in counts.items():
        share = count / ROWS
        at = fit_vocabulary(ds, layout, share, **switches).pooled
        above = fit_vocabulary(ds, layout, float(np.nextafter(share, 2.0)), **switches).pooled
        assert at.rows == ROWS and tag in at.kept.tolist() and tag not in above.kept.tolist(), (tag, count)


# ------------------------------------------------------------------------------------------ the pairs and shares
def test_label_pairs_follow_the_file_order(dataset: Path):
    ds = load_released(dataset)
    mixing = reference_row_mixing(ds, build_layout(ds))
    assert (mixing.conversation_rows, mixing.session_rows) == (7, 11)
    # keywords-file rows: c1 = 0, 1, 2, c2 = 3; sessions-file rows: s1 = 0, 1, s2 = 2, 3, s3 = 4, s4 = 5.
    assert mixing.sentence_user.tolist() == [3, 3, 4, 8, 8]  # L0, L2, L3, L4, L6
    assert mixing.sentence.tolist() == [0, 2, 3, 0, 2]
    assert mixing.action_user.tolist() == [0, 1, 1, 2, 5]
    assert mixing.action.tolist() == [2, 2, 3, 0, 4]


def test_pooled_shares_count_the_mixed_rows(dataset: Path):
    _kept_exactly_at(dataset, MIXED_COUNTS, row_features="reference")
    _kept_exactly_at(dataset, CLEAN_COUNTS)


def test_shares_are_the_reference_scripts(dataset: Path):
    """model_keyword.py lines 27-36 and remove_low_frequent_features' share, transcribed with pandas."""
    users = pd.read_csv(dataset / "data_users.csv")
    users = users[users["purchase_event_id"] < round(users["purchase_event_id"].nunique() * 0.9)]
    conversations = pd.read_csv(dataset / "data_conversations_keyword.csv")
    sessions = pd.read_csv(dataset / "data_sessions.csv")
    part_c = users[~users["conversation_id"].isna()].merge(conversations, how="left")
    part_c = part_c.drop(["sentence_speaker"], axis=1).rename(columns={"sentence_number": "number"})
    part_s = users[~users["session_id"].isna()].merge(sessions, how="left")
    part_s = part_s.rename(columns={"action_number": "number", "action_tags": "keywords"})
    for ignore_index, counts in ((False, MIXED_COUNTS), (True, CLEAN_COUNTS)):
        frame = pd.concat([part_c, part_s], axis=0, ignore_index=ignore_index)
        frame = frame[~frame["keywords"].isna()]
        frame = frame[frame["keywords"] != ""]
        exploded = frame["keywords"].str.split(",", expand=True).stack().reset_index(level=1, drop=True)
        frame = frame.join(exploded.rename("feature"))
        total = len(frame[["purchase_event_id", "conversation_id", "session_id", "number"]].drop_duplicates())
        shares = (frame["feature"].value_counts() / total).to_dict()
        assert total == ROWS and shares == {str(k): v / ROWS for k, v in counts.items()}


# ------------------------------------------------------------------------------------------ the event vectors
def test_training_events_are_mixed_and_test_events_clean(dataset: Path, tmp_path: Path):
    data = _prepare(dataset, tmp_path / "ref", row_features="reference")
    assert data.vocabulary[np.flatnonzero(data.keyword_column_mask)].tolist() == [1, 2, 4, 6, 7]
    assert _events(data) == MIXED_EVENTS
    # The empty-event rule reads the mixed vectors: PEs 3 and 4 train on their partners' ids.
    assert data.train_indices("keyword").tolist() == list(range(8))
    mixing = data.meta["keyword_model"]["row_mixing"]
    assert mixing["mixed_pairs"] == 5 and mixing["training_events_changed"] == 7
    assert data.meta["fidelity"]["keyword"]["row_features"] == "reference"

    clean = _prepare(dataset, tmp_path / "own")
    assert clean.vocabulary[np.flatnonzero(clean.keyword_column_mask)].tolist() == [1, 4]
    assert _events(clean) == CLEAN_EVENTS
    assert clean.train_indices("keyword").tolist() == [0, 1, 4, 5, 6, 7]
    assert clean.keyword_mixed is None and clean.keyword_mixed_events is None


def test_every_event_view_and_reordered_events_keep_their_vectors(dataset: Path, tmp_path: Path):
    from mmrec_ray.evaluation.analyses import shuffle_events

    data = _prepare(dataset, tmp_path / "ref", row_features="reference")
    store = FeatureStore(data, "cpu")
    batch = store.batch(np.arange(10))
    # empty_events=keep reads every event: the same vectors here (no event is empty after mixing in training).
    lengths = batch.lengths.numpy()
    keep_all = batch.keyword_sequence_all.numpy()
    kept = batch.keyword_sequence.numpy()
    for pe in range(8):
        np.testing.assert_array_equal(keep_all[pe, : lengths[pe]], kept[pe, : lengths[pe]])

    # Events are named by (PE, kind, row, occurrence), not by step: reordered (the shuffle study), each keeps
    # its own vector — PE 1's two events swap places with their vectors.
    def as_multiset(events: list) -> list:
        return sorted((kind, sorted(ids)) for kind, ids in events)

    orders = set()
    for seed in range(6):
        shuffled = _events(shuffle_events(data, seed))
        assert {pe: as_multiset(e) for pe, e in shuffled.items()} == {
            pe: as_multiset(e) for pe, e in MIXED_EVENTS.items()
        }
        orders.add(shuffled[1][0][0])
    assert orders == {C, S}  # both orders of PE 1 were drawn


# ------------------------------------------------------------------------------------------ identity and refusal
def test_switch_is_recorded_and_other_values_refused(dataset: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    base = ["prepare", "--data", str(dataset), "--run-dir", str(run), "--vocab-threshold", "0.2"]
    reference = [*base, "--set", "fidelity.keyword.row_features=reference"]
    assert main(reference) == 0
    marker = json.loads((run / "prepared" / "prepared.json").read_text())
    assert marker["identity"]["fidelity"]["keyword"]["row_features"] == "reference"
    capsys.readouterr()
    assert main(base) == 2  # the default (own) is another folder
    assert "row_features" in capsys.readouterr().err
    assert main(reference) == 0  # up to date

    from mmrec_ray.models.keyword import KeywordRecommender

    store = FeatureStore(PreparedData.load(run / "prepared" / "tensors"), "cpu")
    params = ModelParams(units=4)
    with pytest.raises(ConfigError, match="row_features"):
        KeywordRecommender(params, TrainingConfig(device="cpu"), 0).build_network(store)
    wanted = load_config(None, ["fidelity.keyword.row_features=reference"]).training
    KeywordRecommender(params, wanted, 0).build_network(store)


def test_folders_prepared_before_the_switch_are_clean_rows(dataset: Path, tmp_path: Path):
    run = tmp_path / "run"
    _prepare(dataset, run)
    marker = run / "prepared" / "prepared.json"
    recorded = json.loads(marker.read_text())
    del recorded["identity"]["fidelity"]["keyword"]["row_features"]  # as written before the switch existed
    marker.write_text(json.dumps(recorded))
    assert prepared_switches(run)["keyword"]["row_features"] == "own"
    again = prepare(
        dataset, run, options=PrepareOptions(vocab_threshold=0.2, empty_sessions="keep"), log=lambda _: None
    )
    assert again["status"] == "up-to-date"
