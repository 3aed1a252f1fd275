"""The section 7 analyses: data transforms (shuffle, truncation, ablation) and each analysis on a tiny fitted run."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.tensors import (
    EVENT_CONVERSATION,
    EVENT_PAD,
    EVENT_SESSION,
    SUBSET_INTERSECTION,
    PreparedData,
)
from mmrec_ray.evaluation import analyses as A
from mmrec_ray.evaluation.evaluate import evaluate
from mmrec_ray.training.runner import predictions_path
from tests.evaluation.analysis_run import TRAINING, build_fitted_run
from tests.models.conftest import make_prepared, small_params


def events_of(data: PreparedData, pe: int) -> list[tuple[int, int]]:
    kind, row = np.asarray(data.event_kind)[pe], np.asarray(data.event_row)[pe]
    return [(int(k), int(r)) for k, r in zip(kind, row) if k != EVENT_PAD]


@pytest.fixture(scope="module")
def data() -> PreparedData:
    return make_prepared(num_pes=300, seed=3, max_events=6)


# ------------------------------------------------------------------------------------------------ shuffle
def test_shuffle_permutes_each_pe_and_only_the_event_order(data):
    shuffled = A.shuffle_events(data, seed=7)
    kind, row = np.asarray(data.event_kind), np.asarray(data.event_row)
    new_kind, new_row = np.asarray(shuffled.event_kind), np.asarray(shuffled.event_row)
    changed = 0
    for pe in range(data.num_pes):
        before, after = events_of(data, pe), events_of(shuffled, pe)
        assert Counter(before) == Counter(after), pe  # the same events, each with its own row
        changed += before != after
        n = int(data.n_events[pe])
        # Real events stay in the first n steps, padding stays at the end untouched.
        assert (new_kind[pe, :n] != EVENT_PAD).all()
        assert (new_kind[pe, n:] == EVENT_PAD).all() and (new_row[pe, n:] == -1).all()
    assert changed > data.num_pes // 4  # most multi-event PEs really change order
    # Nothing but the order changes.
    for name in (
        "n_events",
        "has_conversation",
        "has_session",
        "subset",
        "targets",
        "post_filter",
        "is_test",
    ):
        np.testing.assert_array_equal(getattr(shuffled, name), getattr(data, name), err_msg=name)
    np.testing.assert_array_equal(shuffled.pe_conversation_embedding, data.pe_conversation_embedding)
    assert (
        shuffled.session_tags is data.session_tags
        and shuffled.conversation_embedding is data.conversation_embedding
    )
    # The input arrays are not modified in place.
    np.testing.assert_array_equal(np.asarray(data.event_kind), kind)
    np.testing.assert_array_equal(np.asarray(data.event_row), row)


def test_shuffle_is_deterministic_per_seed_and_the_modality_views_follow(data):
    first, again, other = A.shuffle_events(data, 1), A.shuffle_events(data, 1), A.shuffle_events(data, 2)
    np.testing.assert_array_equal(first.event_row, again.event_row)
    np.testing.assert_array_equal(first.event_kind, again.event_kind)
    assert not np.array_equal(first.event_row, other.event_row)
    for kind in (EVENT_CONVERSATION, EVENT_SESSION):
        rows, lengths = first.modality_rows(kind)
        new_kind, new_row = np.asarray(first.event_kind), np.asarray(first.event_row)
        for pe in range(first.num_pes):
            expected = new_row[pe][new_kind[pe] == kind]
            np.testing.assert_array_equal(rows[pe, : lengths[pe]], expected)


# ------------------------------------------------------------------------------------------------ truncation
@pytest.mark.parametrize("n", [1, 2, 3])
def test_keep_most_recent_keeps_the_last_n_events_of_test_pes(data, n):
    truncated = A.keep_most_recent(data, n)
    for pe in range(data.num_pes):
        before, after = events_of(data, pe), events_of(truncated, pe)
        if data.is_test[pe]:
            assert after == before[-n:]  # the most recent n, in order, left-aligned
        else:
            assert after == before  # training PEs untouched
        assert int(truncated.n_events[pe]) == len(after)
        kinds = {k for k, _ in after}
        assert bool(truncated.has_conversation[pe]) == (EVENT_CONVERSATION in kinds)
        assert bool(truncated.has_session[pe]) == (EVENT_SESSION in kinds)
    np.testing.assert_array_equal(truncated.subset, data.subset)  # reported by the PE's original type
    # Some test PE really lost events, and its PE-level conversation vector is the sentence-weighted mean of
    # the conversations it kept (zero when none is left).
    test = data.test_indices()
    assert (
        np.asarray(truncated.n_events)[test] < np.asarray(data.n_events)[test]
    ).any() or n >= data.max_events
    for pe in test:
        rows = [r for k, r in events_of(truncated, pe) if k == EVENT_CONVERSATION]
        if rows:
            weights = data.conversation_n_sentences[rows].astype(np.float64)
            expected = (weights[:, None] * data.conversation_embedding[rows]).sum(0) / weights.sum()
            np.testing.assert_allclose(
                truncated.pe_conversation_embedding[pe], expected, rtol=1e-5, atol=1e-6
            )
        else:
            assert not truncated.pe_conversation_embedding[pe].any()


def test_keep_most_recent_with_n_at_least_the_history_changes_nothing(data):
    full = A.keep_most_recent(data, data.max_events)
    for name in ("event_kind", "event_row", "n_events", "has_conversation", "has_session"):
        np.testing.assert_array_equal(getattr(full, name), getattr(data, name), err_msg=name)
    np.testing.assert_array_equal(full.pe_conversation_embedding, data.pe_conversation_embedding)
    with pytest.raises(ValueError):
        A.keep_most_recent(data, 0)


# ------------------------------------------------------------------------------------------------ ablation transform
@pytest.mark.parametrize("modality", ["conversation", "session"])
def test_hide_modality_removes_exactly_one_modality_of_the_selected_pes(data, modality):
    kind = A.MODALITY_KIND[modality]
    mask = np.asarray(data.is_test) & (np.asarray(data.subset) == SUBSET_INTERSECTION)
    assert mask.sum() > 3
    hidden = A.hide_modality(data, modality, mask)
    for pe in range(data.num_pes):
        before, after = events_of(data, pe), events_of(hidden, pe)
        if mask[pe]:
            assert after == [e for e in before if e[0] != kind]  # the other modality kept, in order
            assert len(after) < len(before)
        else:
            assert after == before
    flag = "has_conversation" if modality == "conversation" else "has_session"
    other = "has_session" if modality == "conversation" else "has_conversation"
    assert not np.asarray(getattr(hidden, flag))[mask].any()
    assert np.asarray(getattr(hidden, other))[mask].all()
    np.testing.assert_array_equal(
        np.asarray(getattr(hidden, flag))[~mask], np.asarray(getattr(data, flag))[~mask]
    )
    if modality == "conversation":
        assert not np.asarray(hidden.pe_conversation_embedding)[mask].any()
    else:
        np.testing.assert_array_equal(hidden.pe_conversation_embedding, data.pe_conversation_embedding)
    with pytest.raises(ValueError):
        A.hide_modality(data, "video", mask)


# ------------------------------------------------------------------------------------------------ on a fitted run
@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyses_run")
    build_fitted_run(root)
    return root, PreparedData.load(root / "prepared" / "tensors")


def test_shuffle_study_retrains_on_shuffled_events_and_writes_table4(fitted_run):
    root, data = fitted_run
    names = ["keyword", "relative_representation"]
    for seed in (0, 1):
        params = A.fitted_params(root, names, seed)
        assert params["keyword"] == small_params(
            "keyword"
        )  # the main run's hyperparameters, from its checkpoint
        frames = A.fit_shuffled_seed(data, names, seed, params, TRAINING, shuffle_seed=0)
        assert set(frames) == set(names)
        A.write_shuffled_predictions(root, seed, frames)
        assert A.shuffle_seed_done(root, names, seed)
    original = pd.read_parquet(predictions_path(root, "keyword", 0))
    shuffled = pd.read_parquet(predictions_path(root / "analyses" / "shuffle", "keyword", 0))
    assert len(original) == len(shuffled)
    assert not np.allclose(original["score"], shuffled["score"])  # a different model saw different inputs
    table = A.shuffle_study(root, names, k=3, data=data, echo=None)
    out = root / "analyses" / "shuffle"
    md = (out / "table4.md").read_text()
    assert "| Keyword | original |" in md and "| Relative Representation | original |" in md
    assert md.count("| shuffled |") == 2 and "%)" in md
    tex = (out / "table4.tex").read_text()
    assert tex.startswith("% Requires") and r"\begin{table*}" in tex and r"\toprule" in tex
    rows = pd.read_csv(out / "table4.csv")
    assert set(rows["order"]) == {"original", "shuffled"} and set(rows["subset"]) == {
        "union",
        "conversations_only",
        "sessions_only",
        "intersection",
    }
    # The original row is the main run's evaluation; the relative change follows from the two means.
    expected = evaluate(data, [predictions_path(root, "keyword", s) for s in (0, 1)], (3,)).metrics
    union_map = expected.query("subset == 'union' and metric == 'map'")["value"].mean()
    got = rows.query("model == 'keyword' and order == 'original' and subset == 'union' and metric == 'map'")
    assert got["mean"].iloc[0] == pytest.approx(union_map)
    shuffled_row = rows.query(
        "model == 'keyword' and order == 'shuffled' and subset == 'union' and metric == 'map'"
    )
    assert shuffled_row["relative_change_pct"].iloc[0] == pytest.approx(
        (shuffled_row["mean"].iloc[0] - union_map) / union_map * 100, abs=1e-6
    )
    assert 0 <= shuffled_row["p_value"].iloc[0] <= 1 and table.models == [
        "keyword",
        "relative_representation",
    ]


def test_number_of_events_uses_checkpoints_and_all_events_reproduce_the_run(fitted_run):
    root, data = fitted_run
    frame = A.number_of_events(
        root, ["keyword", "latent_feature"], max_events=data.max_events, data=data, echo=None
    )
    assert sorted(frame["n_events_kept"].unique()) == list(range(1, data.max_events + 1))
    assert (root / "analyses" / "num_events" / "map_by_events.png").read_bytes()[:4] == b"\x89PNG"
    full = evaluate(data, [predictions_path(root, "keyword", s) for s in (0, 1)], (3,)).metrics
    for subset in ("union", "intersection"):
        at_max = frame.query(
            f"model == 'keyword' and n_events_kept == {data.max_events} and subset == '{subset}'"
        )
        for metric in ("hr", "map"):
            got = at_max[at_max["metric"] == metric].sort_values("seed")["value"].to_numpy()
            want = full.query(f"subset == '{subset}' and metric == '{metric}'").sort_values("seed")["value"]
            np.testing.assert_allclose(got, want.to_numpy(), atol=1e-6)
    one = frame.query("n_events_kept == 1 and subset == 'union'")
    assert (one["n_truncated"] > 0).all()  # with n = 1 some PEs really lost events
    assert (frame.query(f"n_events_kept == {data.max_events}")["n_truncated"] == 0).all()


def test_tsne_inputs_and_outputs(fitted_run):
    root, data = fitted_run
    store = FeatureStore(data, device="cpu")
    kinds, rows = A._sample_events(data, 60, seed=0)
    keyword = A.input_representation("keyword", None, store, kinds, rows)
    assert keyword.shape == (60, data.vocab_size + 1)
    np.testing.assert_array_equal(keyword[:, 0], kinds == EVENT_CONVERSATION)
    conv = kinds == EVENT_CONVERSATION
    np.testing.assert_array_equal(keyword[conv, 1:], data.conversation_keywords[rows[conv]])
    np.testing.assert_array_equal(keyword[~conv, 1:], data.session_tags[rows[~conv]])
    latent_model = A.load_fitted(root, "latent_feature", 0, store)
    latent = A.input_representation("latent_feature", latent_model, store, kinds, rows)
    # The reference's summed half-width projections: width round(units / 2), values in [-2, 2] (two tanh terms).
    assert (
        latent.shape == (60, round(small_params("latent_feature").units / 2)) and np.abs(latent).max() <= 2.0
    )
    outputs, what = A.output_representation(latent_model, store, data.test_indices())
    assert (
        outputs.shape == (len(data.test_indices()), small_params("latent_feature").units)
        and what == "final GRU state"
    )

    inputs = A.tsne_inputs(root, A.JOINT_MODELS, max_points=80, data=data, echo=None)
    assert set(inputs["model"]) == set(A.JOINT_MODELS) and (inputs.groupby("model").size() == 80).all()
    out = A.tsne_outputs(root, A.JOINT_MODELS, max_points=80, data=data, echo=None)
    assert (out.groupby("model").size() == min(80, len(data.test_indices()))).all()
    for name in ("tsne_inputs.png", "tsne_outputs.png", "tsne_inputs.csv", "tsne_outputs.csv"):
        assert (root / "analyses" / "tsne" / name).stat().st_size > 0


def test_modality_ablation_reports_paired_deltas(fitted_run):
    root, data = fitted_run
    frame = A.modality_ablation(root, None, k=3, bootstrap_resamples=200, data=data, echo=None)
    inter = int((np.asarray(data.is_test) & (np.asarray(data.subset) == SUBSET_INTERSECTION)).sum())
    popular = frame[frame["model"] == "popular"]
    assert len(popular) == 4 and (popular["delta"] == 0).all()  # Popular ignores the events: a control
    assert (popular["n_pes"] == inter).all()
    # The Conversation model cannot serve an intersection PE without its conversations.
    no_conv = frame.query("model == 'conversation' and hidden == 'conversation'")
    assert no_conv["delta"].isna().all() and no_conv["note"].str.contains("does not serve").all()
    done = frame[frame["delta"].notna()]
    np.testing.assert_allclose(done["delta"], done["ablated"] - done["full"], atol=1e-12)
    assert ((done["ci_low"] <= done["delta"] + 1e-12) & (done["delta"] <= done["ci_high"] + 1e-12)).all()
    # One criterion: a change is marked exactly when its CI excludes zero, in its direction.
    excludes = (done["ci_low"] > 0) | (done["ci_high"] < 0)
    assert (done["significant"] == excludes).all()
    assert (done["direction"] == np.sign(done["ci_low"]).where(excludes, 0)).all()
    md = (root / "analyses" / "ablation" / "ablation.md").read_text()
    assert "| Latent Feature | conversations |" in md and "| Latent Feature | sessions |" in md
    assert (root / "analyses" / "ablation" / "ablation.png").read_bytes()[:4] == b"\x89PNG"
