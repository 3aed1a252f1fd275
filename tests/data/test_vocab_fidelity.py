"""The vocabulary filter and the Keyword model's events against the reference code's rules (fidelity items 6, 7).

A hand-made dataset: ten PEs, 1-8 training, 9-10 test (round(0.9 * 10) = 9). Ids are tags and keywords.

PE  events (event_number order)   notes
1   s1
2   s1, s2
3   s2, s2                        the same session listed twice
4   c1
5   c2                            c2 has no keyword at all
6   c2, s4                        s4: one action, tag 13 only
7   c2
8   c2
9   s3                            test; s3's tag 12 is never seen in training
10  c3, s1                        test; c3's keyword 11 is never seen in training

Sessions: s1 = ["7,8", "7", ""], s2 = ["8,9"], s3 = ["12"], s4 = ["13"].
Conversations: c1 = ["8", "", "10"], c2 = [""], c3 = ["11"].

Reference share (per_row): the users rows joined to the actions, one row per (PE, session, action), an
occurrence counted once per users row listing its session:
    tag rows = PE1-s1 3 + PE2-s1 3 + PE2-s2 1 + PE3-s2 1 + PE6-s4 1 = 9;
    7: s1 twice x (PE1, PE2) = 4; 8: s1 once x 2 + s2 once x 3 users rows (PE2, PE3 twice) = 5; 9: 3; 13: 1.
Pooled (Keyword) rows leave rows without ids out: actions 2 + 2 + 1 + 1 + 1 = 7, sentences PE4-c1 2 -> 9;
    7: 4, 8: 5 + 1 = 6, 9: 3, 10: 1, 13: 1.
Today's rule (per_occurrence): each training session once -> tags 7,8,7,8,9,13: 7: 2/6, 8: 2/6, 9: 1/6, 13: 1/6.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mmrec_ray.cli import main
from mmrec_ray.config import ModelParams, TrainingConfig, load_config
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.layout import build_layout
from mmrec_ray.data.prepare import PrepareOptions, prepare
from mmrec_ray.data.released import load_released
from mmrec_ray.data.tensors import EVENT_CONVERSATION, EVENT_SESSION, PreparedData
from mmrec_ray.data.vocabulary_fit import fit_vocabulary
from mmrec_ray.errors import ConfigError
from tests.data.conftest import write_released_tables

USERS = [  # (user, PE, event_number, conversation, session)
    (1, 1, 1, None, 1),
    (2, 2, 1, None, 1),
    (2, 2, 2, None, 2),
    (3, 3, 1, None, 2),
    (3, 3, 2, None, 2),
    (4, 4, 1, 1, None),
    (5, 5, 1, 2, None),
    (6, 6, 1, 2, None),
    (6, 6, 2, None, 4),
    (7, 7, 1, 2, None),
    (8, 8, 1, 2, None),
    (9, 9, 1, None, 3),
    (10, 10, 1, 3, None),
    (10, 10, 2, None, 1),
]
SESSIONS = {1: ["7,8", "7", ""], 2: ["8,9"], 3: ["12"], 4: ["13"]}
CONVERSATIONS = {1: ["8", "", "10"], 2: [""], 3: ["11"]}

TAG_SHARES = {7: 4 / 9, 8: 5 / 9, 9: 3 / 9, 13: 1 / 9}  # per_row, the reference
POOLED_SHARES = {7: 4 / 9, 8: 6 / 9, 9: 3 / 9, 10: 1 / 9, 13: 1 / 9}
TAG_SHARES_PER_OCCURRENCE = {7: 2 / 6, 8: 2 / 6, 9: 1 / 6, 13: 1 / 6}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_released_tables(tmp_path / "data", USERS, SESSIONS, CONVERSATIONS)


def _fit(root: Path, threshold: float, **switches):
    ds = load_released(root)
    return fit_vocabulary(ds, build_layout(ds), threshold, **switches)


def _kept_exactly_at_its_share(root: Path, shares: dict, which: str, **switches) -> None:
    """kept iff share >= threshold: each id survives at its own share and falls one ulp above it."""
    for tag, share in shares.items():
        at = getattr(_fit(root, share, **switches), which).kept.tolist()
        above = getattr(_fit(root, float(np.nextafter(share, 1.0)), **switches), which).kept.tolist()
        assert tag in at and tag not in above, (tag, share)


def reference_share(root: Path) -> dict:
    """The reference's definition, written out with pandas: training users rows joined to their sessions' actions,
    the tags exploded, occurrences / distinct (PE, session, action) rows."""
    users = pd.read_csv(root / "data_users.csv")
    users = users[users["purchase_event_id"] < round(users["purchase_event_id"].nunique() * 0.9)]
    sessions = pd.read_csv(root / "data_sessions.csv", dtype={"action_tags": str})
    rows = users[users["session_id"].notna()].merge(sessions, on="session_id")
    total = len(rows[["purchase_event_id", "session_id", "action_number"]].drop_duplicates())
    tags = rows["action_tags"].dropna().str.split(",").explode().astype(int)
    return (tags.value_counts() / total).to_dict()


# ------------------------------------------------------------------------------------------ the share (item 7)
def test_per_row_share_is_the_reference_definition(dataset: Path):
    assert reference_share(dataset) == TAG_SHARES
    vocab = _fit(dataset, 0.001)
    assert (
        vocab.share == "per_row" and vocab.tags.rows == 9
    )  # PE-weighted action rows, empty actions included
    _kept_exactly_at_its_share(dataset, TAG_SHARES, "tags")


def test_pooled_keyword_filter_counts_nonempty_sentences_and_actions(dataset: Path):
    assert _fit(dataset, 0.001).pooled.rows == 9
    _kept_exactly_at_its_share(dataset, POOLED_SHARES, "pooled")


def test_per_occurrence_is_the_previous_rule(dataset: Path):
    vocab = _fit(dataset, 0.001, share="per_occurrence")
    assert vocab.tags.rows == 6  # every training session once, all tag occurrences
    _kept_exactly_at_its_share(dataset, TAG_SHARES_PER_OCCURRENCE, "tags", share="per_occurrence")
    # At 0.3 the rules part: tag 9 is 3/9 per row but 1/6 per occurrence.
    assert _fit(dataset, 0.3).tags.kept.tolist() == [7, 8, 9]
    assert _fit(dataset, 0.3, share="per_occurrence").tags.kept.tolist() == [7, 8]


def test_keyword_vocabulary_pooled_or_separate(dataset: Path):
    # Keyword 10: 1 of 9 pooled rows, but 1 of 7 sentence rows (PE4-c1 x 3, PE5..8-c2 x 1) for a keyword filter.
    pooled = _fit(dataset, 0.12)
    separate = _fit(dataset, 0.12, keyword_filter="separate")
    assert pooled.keyword_ids.tolist() == [7, 8, 9]
    assert separate.keyword_ids.tolist() == [7, 8, 9, 10]  # tags 7, 8, 9 united with keywords 8, 10
    assert pooled.tags.kept.tolist() == separate.tags.kept.tolist() == [7, 8, 9]
    assert pooled.ids.tolist() == [7, 8, 9] and separate.ids.tolist() == [7, 8, 9, 10]


# ------------------------------------------------------------------------------------------ prepare end to end
def _prepare(root: Path, run: Path, **options) -> PreparedData:
    prepare(root, run, options=PrepareOptions(vocab_threshold=0.3, **options), log=lambda _: None)
    return PreparedData.load(run / "prepared" / "tensors")


def test_sessions_emptied_by_the_filter_are_not_events(dataset: Path, tmp_path: Path):
    # At 0.3: tags 7, 8, 9 survive; s4 (tag 13) and s3 (tag 12) are emptied; Keyword keeps 7, 8, 9 (10 is 1/9).
    data = _prepare(dataset, tmp_path / "run")
    assert data.vocabulary.tolist() == [7, 8, 9]
    assert data.tag_columns.tolist() == [True, True, True] and data.keyword_columns.tolist() == [True] * 3
    assert data.session_id.tolist() == [1, 2, 3, 4]
    assert data.session_tags.tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 0], [0, 0, 0]]
    assert data.conversation_keywords.tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 0]]
    # PE 6 loses s4 (it keeps c2); PE 9 loses s3, its only event; both keep their data_users.csv subset.
    assert data.n_events.tolist() == [1, 2, 2, 1, 1, 1, 1, 1, 0, 2]
    assert data.event_kind[5].tolist() == [EVENT_CONVERSATION, 0] and data.event_row[8].tolist() == [-1, -1]
    assert data.subset.tolist() == [2, 2, 2, 1, 1, 3, 1, 1, 2, 3]
    assert data.has_session[5] and data.has_session[8]
    drops = data.meta["drops"]
    assert drops["sessions_emptied_by_filter"] == 2 and drops["session_events_dropped"] == 2
    assert drops["session_events_dropped_train"] == 1 and drops["session_events_dropped_test"] == 1
    assert drops["session_pes_left_without_sessions"] == 2 and drops["pes_left_without_events"] == 1
    # Every model reads the same layout: the Web Session view of PE 6 is empty.
    rows, lengths = data.modality_rows(EVENT_SESSION)
    assert lengths[[5, 8]].tolist() == [0, 0] and lengths[9] == 1

    kept = _prepare(dataset, tmp_path / "keep", empty_sessions="keep")
    assert kept.n_events.tolist() == [1, 2, 2, 1, 1, 2, 1, 1, 1, 2]
    assert kept.event_kind[5].tolist() == [EVENT_CONVERSATION, EVENT_SESSION]


def test_keyword_events_and_training_subset(dataset: Path, tmp_path: Path):
    data = _prepare(dataset, tmp_path / "run")
    kind, rows, lengths = data.keyword_steps()
    # c2 and c3 hold no Keyword id: PEs 5-8 keep no event, PE 10 keeps only s1.
    assert lengths.tolist() == [1, 2, 2, 1, 0, 0, 0, 0, 0, 1]
    assert kind[9].tolist() == [EVENT_SESSION, 0] and rows[9].tolist() == [0, -1]
    assert data.train_indices("keyword").tolist() == [0, 1, 2, 3]
    assert data.meta["keyword_model"]["train_pes_without_events"] == 4
    assert data.meta["keyword_model"]["conversation_events_without_ids"] == 5

    store = FeatureStore(data, "cpu")
    batch = store.batch(np.array([9, 4]))
    assert batch.keyword_sequence.shape == (2, 2, 1 + store.keyword_vocab_size)
    assert batch.keyword_sequence[0].tolist() == [[0, 1, 1, 0], [0, 0, 0, 0]]  # s1 = {7, 8}
    assert batch.keyword_lengths.tolist() == [1, 0]
    assert batch.keyword_sequence_all[0].tolist() == [[1, 0, 0, 0], [0, 1, 1, 0]]  # c3 empty, then s1

    from mmrec_ray.models.keyword import KeywordRecommender

    params = ModelParams(batch_size=4, units=4, dropout=0.0)
    dropping = KeywordRecommender(params, TrainingConfig(device="cpu"), 0)
    assert dropping.trains_on == "keyword"  # what NetworkRecommender.fit hands to train_indices
    dropping.network = dropping.build_network(store)
    scores = dropping.predict(store, data.test_indices())
    assert np.isfinite(scores).all()  # test PE 9 has no event left: scored from the zero state

    keep = load_config(None, ["fidelity.keyword.empty_events=keep"]).training
    keeping = KeywordRecommender(params, keep, 0)
    assert keeping.trains_on == "all"
    network = keeping.build_network(store)
    torch.testing.assert_close(
        keeping.logits(network, batch), network(batch.keyword_sequence_all, batch.lengths)
    )


def test_keyword_refuses_tensors_prepared_with_the_other_filter(dataset: Path, tmp_path: Path):
    from mmrec_ray.models.keyword import KeywordRecommender

    data = _prepare(dataset, tmp_path / "run", keyword_filter="separate")
    recommender = KeywordRecommender(ModelParams(units=4), TrainingConfig(device="cpu"), 0)
    with pytest.raises(ConfigError, match="frequency_filter"):
        recommender.build_network(FeatureStore(data, "cpu"))


# ------------------------------------------------------------------------------------------ switches reach prepare
def test_switches_are_recorded_and_other_values_are_refused(dataset: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    base = ["prepare", "--data", str(dataset), "--run-dir", str(run), "--vocab-threshold", "0.3"]
    assert main(base) == 0
    marker = json.loads((run / "prepared" / "prepared.json").read_text())
    expected = {
        "vocabulary": {"share": "per_row", "empty_sessions": "drop"},
        "keyword": {"frequency_filter": "pooled", "row_features": "own"},
    }
    assert marker["identity"]["fidelity"] == expected
    assert PreparedData.load(run / "prepared" / "tensors").meta["fidelity"] == expected

    other = [*base, "--set", "fidelity.vocabulary.share=per_occurrence"]
    capsys.readouterr()
    assert main(other) == 2  # refused, as for changed data
    assert "per_occurrence" in capsys.readouterr().err
    assert main([*other, "--force"]) == 0
    data = PreparedData.load(run / "prepared" / "tensors")
    assert data.meta["fidelity"]["vocabulary"]["share"] == "per_occurrence"
    assert data.vocabulary.tolist() == [7, 8]  # tag 9 is 1/6 per occurrence; Keyword's 9 is 1/8


def test_pipeline_hands_the_config_switches_to_prepare(dataset: Path, tmp_path: Path):
    from mmrec_ray.pipeline.runner import Pipeline

    def pipeline(*overrides: str) -> Pipeline:
        where = [f"run_dir={tmp_path / 'run'}", f"data.path={dataset}", "data.source=released"]
        return Pipeline(load_config(None, [*where, *overrides]), log=lambda _line: None)

    pipeline().prepare()
    assert pipeline()._tensors_current()
    changed = pipeline("fidelity.keyword.frequency_filter=separate")
    assert not changed._tensors_current()
    with pytest.raises(ConfigError, match="frequency_filter"):
        changed.prepare()  # not silently reused
