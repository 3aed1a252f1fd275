import numpy as np
import pandas as pd
import pytest

from mmrec_ray.data import preprocess as pp
from mmrec_ray.errors import DataError

T0 = pd.Timestamp("2023-01-01 10:00")


def _actions(rows):
    """rows: (session_id, user_id, minutes after T0, tags)."""
    return pd.DataFrame(
        [(s, u, T0 + pd.Timedelta(minutes=m), t) for s, u, m, t in rows],
        columns=["session_id", "user_id", "timestamp", "action_tags"],
    )


def _sentences(conversation_id, user_id, start, count, speaker="user"):
    return pd.DataFrame(
        {
            "conversation_id": conversation_id,
            "user_id": user_id,
            "timestamp": [start + pd.Timedelta(seconds=10 * i) for i in range(count)],
            "sentence_number": np.arange(1, count + 1),
            "speaker": speaker,
            "text": [f"sentence {i}" for i in range(count)],
        }
    )


def _session(session_id, user_id, start, count=3):
    return pd.DataFrame(
        {
            "session_id": session_id,
            "user_id": user_id,
            "timestamp": [start + pd.Timedelta(minutes=i) for i in range(count)],
            "action_tags": [f"{i + 1},{100 + i}" for i in range(count)],
        }
    )


# ------------------------------------------------------------------------------------------------- rule 1
def test_drop_rare_items_under_one_percent():
    # 200 rows: item 1 x197, item 2 x2 (exactly 1 % -> kept), item 3 x1 (0.5 % -> dropped)
    items = [1] * 197 + [2, 2, 3]
    purchases = pd.DataFrame({"user_id": np.arange(200), "timestamp": T0, "item_id": items})
    purchases.loc[199, "user_id"] = 198  # item 3 bought together with item 2 by user 198: that PE survives
    kept, counts = pp.drop_rare_items(purchases)
    assert sorted(kept["item_id"].unique()) == [1, 2]
    assert counts == {"items": 1, "purchase_rows": 1, "purchase_events": 0}
    purchases.loc[199, "user_id"] = 999  # now item 3 is a PE of its own: it disappears
    _, counts = pp.drop_rare_items(purchases)
    assert counts == {"items": 1, "purchase_rows": 1, "purchase_events": 1}


# ------------------------------------------------------------------------------------------------- rule 2
def test_drop_repeated_actions_only_consecutive_and_within_session():
    actions = pp.validate_actions(
        _actions(
            [
                (1, 7, 0, "1,2"),
                (1, 7, 1, "2, 1"),  # same tag set as previous -> repeat
                (1, 7, 2, "1,2"),  # repeat again
                (1, 7, 3, "5"),
                (1, 7, 4, "1,2"),  # not consecutive -> kept
                (2, 7, 5, "1,2"),  # new session, same tags as the last of session 1 -> kept
            ]
        )
    )
    kept, counts = pp.drop_repeated_actions(actions)
    assert counts == {"actions": 2}
    assert kept["action_tags"].tolist() == ["1,2", "5", "1,2", "1,2"]
    assert kept["session_id"].tolist() == [1, 1, 1, 2]


def test_repeats_are_judged_in_time_order_not_file_order():
    actions = pp.validate_actions(_actions([(1, 7, 2, "1"), (1, 7, 0, "1"), (1, 7, 1, "2")]))
    kept, counts = pp.drop_repeated_actions(actions)  # time order: 1, 2, 1 -> no repeat
    assert counts == {"actions": 0}


# ------------------------------------------------------------------------------------------------- rule 3
def test_drop_short_boundaries():
    actions = pd.concat([_session(1, 7, T0, 3), _session(2, 7, T0, 2)])
    sentences = pd.concat([_sentences(10, 7, T0, 4), _sentences(11, 7, T0, 3)])
    actions, sentences, counts = pp.drop_short(pp.validate_actions(actions), pp.validate_sentences(sentences))
    assert set(actions["session_id"]) == {1}  # exactly 3 actions is enough
    assert set(sentences["conversation_id"]) == {10}  # exactly 4 sentences is enough
    assert counts == {"sessions": 1, "actions": 2, "conversations": 1, "sentences": 3}


def test_short_is_counted_after_repeat_removal():
    raw = _actions([(1, 7, 0, "1"), (1, 7, 1, "1"), (1, 7, 2, "2")])  # 3 actions, 2 after repeats
    actions, _ = pp.drop_repeated_actions(pp.validate_actions(raw))
    actions, _, counts = pp.drop_short(actions, pp.validate_sentences(_sentences(10, 7, T0, 4)))
    assert actions.empty and counts["sessions"] == 1


# ------------------------------------------------------------------------------------------------- rule 4
def test_truncate_keeps_the_start():
    sentences = pd.concat([_sentences(10, 7, T0, 541), _sentences(11, 7, T0, 545)])
    actions = pd.concat([_session(1, 7, T0, 40), _session(2, 7, T0, 42)])
    actions, sentences, counts = pp.truncate(pp.validate_actions(actions), pp.validate_sentences(sentences))
    assert (sentences.groupby("conversation_id").size() == 541).all()
    assert (actions.groupby("session_id").size() == 40).all()
    assert sentences.groupby("conversation_id")["sentence_number"].max().tolist() == [
        541,
        541,
    ]  # first ones kept
    assert counts == {"sessions_truncated": 1, "actions": 2, "conversations_truncated": 1, "sentences": 4}


# ------------------------------------------------------------------------------------------------- rules 5, 6
def _events(spec):
    """spec: (kind, id, start, end) for user 7."""
    return pd.DataFrame(
        [(7, kind, event_id, start, end) for kind, event_id, start, end in spec],
        columns=["user_id", "kind", "event_id", "start", "end"],
    )


def test_inactivity_chain_exactly_fourteen_days_is_kept():
    day = pd.Timedelta(days=1)
    bought = T0 + 60 * day
    pes = pd.DataFrame({"purchase_event_id": [1], "user_id": [7], "timestamp": [bought]})
    events = _events(
        [
            ("session", 1, bought - 40 * day, bought - 40 * day),  # 15 days before event 2: chain broken
            ("conversation", 2, bought - 25 * day, bought - 25 * day + pd.Timedelta(hours=1)),
            ("session", 3, bought - 11 * day, bought - 11 * day),  # gap to event 2's end < 14 d
            ("session", 4, bought + day, bought + day),  # after the purchase: not a candidate
        ]
    )
    events.loc[1, "end"] = events.loc[2, "start"] - 14 * day  # exactly 14 days -> kept
    chain, counts = pp.inactivity_chain(pes, events)
    assert chain["event_id"].tolist() == [3, 2]
    assert counts == {"events": 1}
    # one second more than 14 days breaks the chain
    events.loc[1, "end"] -= pd.Timedelta(seconds=1)
    chain, counts = pp.inactivity_chain(pes, events)
    assert chain["event_id"].tolist() == [3]
    assert counts == {"events": 2}


def test_inactivity_chain_gap_to_purchase():
    day = pd.Timedelta(days=1)
    bought = T0 + 30 * day
    pes = pd.DataFrame(
        {"purchase_event_id": [1, 2], "user_id": [7, 7], "timestamp": [bought, bought + 20 * day]}
    )
    events = _events([("session", 1, bought - 14 * day, bought - 14 * day)])
    chain, counts = pp.inactivity_chain(pes, events)
    assert chain["purchase_event_id"].tolist() == [1]  # exactly 14 days before PE 1; 34 days before PE 2
    assert counts == {"events": 1}


def test_keep_last_ten_events():
    chain = pd.DataFrame(
        {
            "purchase_event_id": [1] * 12 + [2] * 3,
            "kind": "session",
            "event_id": np.arange(15),
            "start": [T0 + pd.Timedelta(hours=h) for h in range(15)],
        }
    )
    kept, counts = pp.keep_last_events(chain.sample(frac=1, random_state=0))
    assert counts == {"events": 2}
    first = kept[kept["purchase_event_id"] == 1]
    assert first["event_id"].tolist() == list(range(2, 12))  # the two oldest went
    assert first["event_number"].tolist() == list(range(1, 11))


# ------------------------------------------------------------------------------------------------ composition
def test_preprocess_raw_logs_composition():
    day = pd.Timedelta(days=1)
    bought = T0 + 100 * day
    sessions = [
        _session(1, 7, bought - 3 * day, 45),  # truncated to 40
        _session(2, 7, bought - 50 * day, 3),  # outside the 14-day chain
        _session(3, 7, bought - 2 * day, 2),  # too short
        _session(4, 8, bought - day, 3),
    ]
    actions = pd.concat(sessions, ignore_index=True)
    actions.loc[actions.index[1], "action_tags"] = actions.loc[actions.index[0], "action_tags"]  # one repeat
    sentences = pd.concat(
        [_sentences(20, 7, bought - 5 * day, 6), _sentences(21, 9, bought - day, 5)], ignore_index=True
    )
    purchases = pd.DataFrame(
        {
            "user_id": [7, 7, 8, 9, 10] + [8] * 95,
            "timestamp": [bought, bought, bought, bought, bought] + [bought + i * day for i in range(1, 96)],
            "item_id": [1, 2, 1, 3, 1] + [1] * 95,
        }
    )
    # user 8's 95 later PEs have session 4 more than 14 days back, except the first 13 days
    result = pp.preprocess_raw_logs(actions, sentences, purchases)

    assert result.dropped["rare_items"] == {"items": 0, "purchase_rows": 0, "purchase_events": 0}
    assert result.dropped["repeated_actions"] == {"actions": 1}
    assert result.dropped["short"]["sessions"] == 1
    assert result.dropped["truncate"]["actions"] == 44 - 40
    assert result.dropped["no_events"]["purchase_events"] > 0  # user 10 and user 8's late PEs
    users = result.users
    assert list(users.columns) == [
        "user_id",
        "purchase_event_id",
        "event_number",
        "conversation_id",
        "session_id",
    ]
    assert (users["conversation_id"].isna() ^ users["session_id"].isna()).all()
    user7 = users[users["user_id"] == 7]
    assert user7["conversation_id"].dropna().tolist() == [20.0]
    assert user7["session_id"].dropna().tolist() == [1.0]
    assert user7["event_number"].tolist() == [1, 2]  # conversation (5 days back) before session (3 days back)
    assert 10 not in set(users["user_id"])
    # PE ids are contiguous and chronological
    pe_ids = sorted(result.purchase_events["purchase_event_id"].unique())
    assert pe_ids == list(range(1, len(pe_ids) + 1))
    assert set(users["purchase_event_id"]) == set(pe_ids)
    assert sorted(
        result.purchase_events.loc[
            result.purchase_events["purchase_event_id"].isin(user7["purchase_event_id"]), "item_id"
        ]
    ) == [1, 2]
    assert result.sessions.groupby("session_id")["action_number"].max().to_dict() == {1: 40, 4: 3}
    assert list(result.conversations.columns) == [
        "conversation_id",
        "sentence_number",
        "sentence_speaker",
        "text",
    ]
    assert set(result.conversations["conversation_id"]) == {20, 21}


def test_bad_raw_input_names_row_and_column():
    bad = _actions([(1, 7, 0, "1"), (1, 7, 1, "x,2")])
    with pytest.raises(DataError) as info:
        pp.validate_actions(bad)
    assert (info.value.row, info.value.column) == (3, "action_tags")
    with pytest.raises(DataError, match="missing column"):
        pp.validate_purchases(pd.DataFrame({"user_id": [1], "item_id": [1]}))
    stamps = pd.DataFrame({"user_id": [1, 2], "timestamp": ["2023-01-01", "not a date"], "item_id": [1, 1]})
    with pytest.raises(DataError) as info:
        pp.validate_purchases(stamps)
    assert (info.value.row, info.value.column) == (3, "timestamp")
    two_users = _sentences(10, 7, T0, 4)
    two_users.loc[2, "user_id"] = 8
    with pytest.raises(DataError, match="several users"):
        pp.validate_sentences(two_users)
