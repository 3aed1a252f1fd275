"""The paper's pre-processing of raw event logs (SPEC 2.3; Bruun et al. 2024, section 3.3).

The released dataset has these rules applied already. They matter when a user brings raw logs with timestamps
(or the synthetic generator emits them). Every rule is a pure pandas function that returns the filtered table(s)
and a ``dict`` counting what it dropped, so a run can report exactly what the protocol removed.

Raw-log format (three pandas DataFrames or CSV files with a header row):

``actions`` -- one row per web-session action
    ``session_id`` (int), ``user_id`` (int), ``timestamp`` (anything ``pandas.to_datetime`` parses),
    ``action_tags`` (comma-separated tag IDs of the action's section, object and type, e.g. ``"3,17,40"``).
    Actions of a session are ordered by timestamp (ties keep file order).
``sentences`` -- one row per transcribed call-centre sentence
    ``conversation_id`` (int), ``user_id`` (int), ``timestamp``, ``sentence_number`` (order within the
    conversation), ``speaker`` (``user``/``agent``), ``text``.
``purchases`` -- one row per purchased item
    ``user_id`` (int), ``timestamp``, ``item_id`` (int). The items a user buys at one timestamp form one
    purchase event (PE), the prediction unit.

Rules, in the order ``preprocess_raw_logs`` applies them:

1. ``drop_rare_items``: items with under 1 % of all purchase rows are removed; PEs left without items go too.
2. ``drop_repeated_actions``: an action whose tag set equals the previous action's in the same session is noise
   (a double click), so it is dropped; a run ``A A A B A`` becomes ``A B A``.
3. ``drop_short``: conversations with < 4 sentences and sessions with < 3 actions (counted after rule 2).
4. ``truncate``: conversations keep their first 541 sentences, sessions their first 40 actions (99th percentiles).
5. ``inactivity_chain``: per PE, walk back from the purchase through the user's earlier events (an event =
   one session or conversation, spanning its first to last timestamp, and counting only if it started before the
   purchase). An event is kept while the inactivity gap from its end to the start of the next kept event (or to
   the purchase) is at most 14 days -- exactly 14 days is kept, "does not exceed the threshold"; the first larger
   gap ends the chain, so every earlier event is dropped too.
6. ``keep_last_events``: of the chain, the 10 most recent events (by start) are kept.

PEs left without any event are dropped (every PE of the released data has at least one). The result is in the
released format (README, "Data formats"): ``users``, ``purchase_events``, ``sessions`` and ``conversations`` (with
``text``) tables. PE ids are 1.. in purchase-time order, so the protocol's "latest 10 % by PE id" test split stays
chronological; ``event_number`` is 1 for the oldest event of a PE; action and sentence numbers restart at 1.
The post-filter (items a user could buy) is not derivable from these logs and must come from the insurer.

On disk (`mmrec preprocess --logs DIR --out DIR`, ``read_raw_logs`` / ``write_released``): a folder with
``actions.csv``, ``sentences.csv`` and ``purchases.csv`` in the format above, optionally ``post_filter.csv``
(``user_id``, ``timestamp``, ``item_id``: the items purchasable at that purchase; without it every item is) and
``keyword_mapping.csv`` (``word``, ``keyword_id``), which the output folder needs to derive its conversation
keywords from the text. Errors name the file, row and column.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mmrec_ray.errors import DataError

MIN_ITEM_SHARE = 0.01
MIN_SENTENCES = 4
MIN_ACTIONS = 3
MAX_SENTENCES = 541
MAX_ACTIONS = 40
INACTIVITY_THRESHOLD = pd.Timedelta(days=14)
MAX_EVENTS = 10

RAW_LOG_FILES = {"actions": "actions.csv", "sentences": "sentences.csv", "purchases": "purchases.csv"}
POST_FILTER_LOG = "post_filter.csv"
KEYWORD_MAPPING_LOG = "keyword_mapping.csv"
REPORT_FILE = "preprocess.json"

ACTION_COLUMNS = ("session_id", "user_id", "timestamp", "action_tags")
SENTENCE_COLUMNS = ("conversation_id", "user_id", "timestamp", "sentence_number", "speaker", "text")
PURCHASE_COLUMNS = ("user_id", "timestamp", "item_id")

Counts = dict[str, int]


# ------------------------------------------------------------------------------------------------ validation
def _check_columns(frame: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    for column in columns:
        if column not in frame.columns:
            raise DataError(name, f"missing column (expected: {', '.join(columns)})", column=column)


def _to_int(frame: pd.DataFrame, column: str, name: str) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() | (values != np.floor(values))
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            name, f"'{frame[column].iloc[position]}' is not an integer", row=position + 2, column=column
        )
    return values.astype(np.int64)


def _to_time(frame: pd.DataFrame, name: str) -> pd.Series:
    times = pd.to_datetime(frame["timestamp"], errors="coerce")
    if times.isna().any():
        position = int(np.flatnonzero(times.isna().to_numpy())[0])
        raise DataError(
            name,
            f"'{frame['timestamp'].iloc[position]}' is not a timestamp",
            row=position + 2,
            column="timestamp",
        )
    return times


def _normalise_tags(value: object, name: str, row: int) -> str:
    """``" 17, 3,40"`` -> ``"3,17,40"``: a canonical form so repeats compare equal whatever the tag order."""
    try:
        tags = sorted({int(part) for part in str(value).split(",") if part.strip()})
    except ValueError:
        raise DataError(
            name, f"'{value}' is not comma-separated tag IDs", row=row, column="action_tags"
        ) from None
    if not tags:
        raise DataError(name, "an action without tags", row=row, column="action_tags")
    return ",".join(map(str, tags))


def validate_actions(actions: pd.DataFrame, name: str = "actions") -> pd.DataFrame:
    """Typed copy in session/time order; bad values raise ``DataError`` naming row and column."""
    _check_columns(actions, ACTION_COLUMNS, name)
    out = pd.DataFrame(
        {
            "session_id": _to_int(actions, "session_id", name),
            "user_id": _to_int(actions, "user_id", name),
            "timestamp": _to_time(actions, name),
            "action_tags": [
                _normalise_tags(value, name, row + 2)
                for row, value in enumerate(actions["action_tags"].to_numpy())
            ],
        }
    )
    _check_one_user(out, "session_id", name)
    return out.sort_values(["session_id", "timestamp"], kind="stable").reset_index(drop=True)


def validate_sentences(sentences: pd.DataFrame, name: str = "sentences") -> pd.DataFrame:
    _check_columns(sentences, SENTENCE_COLUMNS, name)
    out = pd.DataFrame(
        {
            "conversation_id": _to_int(sentences, "conversation_id", name),
            "user_id": _to_int(sentences, "user_id", name),
            "timestamp": _to_time(sentences, name),
            "sentence_number": _to_int(sentences, "sentence_number", name),
            "speaker": sentences["speaker"].astype(str).to_numpy(),
            "text": sentences["text"].fillna("").astype(str).to_numpy(),
        }
    )
    duplicated = out.duplicated(["conversation_id", "sentence_number"])
    if duplicated.any():
        position = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise DataError(
            name, "duplicate (conversation_id, sentence_number)", row=position + 2, column="sentence_number"
        )
    _check_one_user(out, "conversation_id", name)
    return out.sort_values(["conversation_id", "sentence_number"], kind="stable").reset_index(drop=True)


def validate_purchases(purchases: pd.DataFrame, name: str = "purchases") -> pd.DataFrame:
    _check_columns(purchases, PURCHASE_COLUMNS, name)
    return pd.DataFrame(
        {
            "user_id": _to_int(purchases, "user_id", name),
            "timestamp": _to_time(purchases, name),
            "item_id": _to_int(purchases, "item_id", name),
        }
    )


def _check_one_user(frame: pd.DataFrame, key: str, name: str) -> None:
    users_per_key = frame.groupby(key)["user_id"].transform("nunique")
    if (users_per_key > 1).any():
        position = int(np.flatnonzero((users_per_key > 1).to_numpy())[0])
        raise DataError(
            name,
            f"{key} {frame[key].iloc[position]} belongs to several users",
            row=position + 2,
            column="user_id",
        )


# ------------------------------------------------------------------------------------------------------ rules
def drop_rare_items(
    purchases: pd.DataFrame, min_share: float = MIN_ITEM_SHARE
) -> tuple[pd.DataFrame, Counts]:
    """Remove items bought in under ``min_share`` of all purchase rows, and PEs left without items."""
    share = purchases["item_id"].map(purchases["item_id"].value_counts(normalize=True))
    keep = share >= min_share
    kept = purchases[keep].reset_index(drop=True)
    events_before = purchases.groupby(["user_id", "timestamp"]).ngroups
    events_after = kept.groupby(["user_id", "timestamp"]).ngroups
    counts = {
        "items": int(purchases.loc[~keep, "item_id"].nunique()),
        "purchase_rows": int((~keep).sum()),
        "purchase_events": int(events_before - events_after),
    }
    return kept, counts


def drop_repeated_actions(actions: pd.DataFrame) -> tuple[pd.DataFrame, Counts]:
    """Drop an action whose tags equal the previous action's in the same session (input in session/time order)."""
    same_session = actions["session_id"].eq(actions["session_id"].shift())
    repeat = same_session & actions["action_tags"].eq(actions["action_tags"].shift())
    return actions[~repeat].reset_index(drop=True), {"actions": int(repeat.sum())}


def drop_short(
    actions: pd.DataFrame,
    sentences: pd.DataFrame,
    min_actions: int = MIN_ACTIONS,
    min_sentences: int = MIN_SENTENCES,
) -> tuple[pd.DataFrame, pd.DataFrame, Counts]:
    """Drop sessions with fewer than ``min_actions`` actions and conversations with fewer than ``min_sentences``."""
    session_size = actions.groupby("session_id")["session_id"].transform("size")
    conversation_size = sentences.groupby("conversation_id")["conversation_id"].transform("size")
    short_actions = session_size < min_actions
    short_sentences = conversation_size < min_sentences
    counts = {
        "sessions": int(actions.loc[short_actions, "session_id"].nunique()),
        "actions": int(short_actions.sum()),
        "conversations": int(sentences.loc[short_sentences, "conversation_id"].nunique()),
        "sentences": int(short_sentences.sum()),
    }
    return (
        actions[~short_actions].reset_index(drop=True),
        sentences[~short_sentences].reset_index(drop=True),
        counts,
    )


def truncate(
    actions: pd.DataFrame,
    sentences: pd.DataFrame,
    max_actions: int = MAX_ACTIONS,
    max_sentences: int = MAX_SENTENCES,
) -> tuple[pd.DataFrame, pd.DataFrame, Counts]:
    """Keep the first ``max_actions`` actions of each session and the first ``max_sentences`` of each conversation."""
    action_rank = actions.groupby("session_id").cumcount()
    sentence_rank = sentences.groupby("conversation_id").cumcount()
    cut_actions = action_rank >= max_actions
    cut_sentences = sentence_rank >= max_sentences
    counts = {
        "sessions_truncated": int(actions.loc[cut_actions, "session_id"].nunique()),
        "actions": int(cut_actions.sum()),
        "conversations_truncated": int(sentences.loc[cut_sentences, "conversation_id"].nunique()),
        "sentences": int(cut_sentences.sum()),
    }
    return (
        actions[~cut_actions].reset_index(drop=True),
        sentences[~cut_sentences].reset_index(drop=True),
        counts,
    )


def build_events(actions: pd.DataFrame, sentences: pd.DataFrame) -> pd.DataFrame:
    """One row per session or conversation: ``user_id, kind ('session'|'conversation'), event_id, start, end``."""
    sessions = actions.groupby("session_id").agg(
        user_id=("user_id", "first"), start=("timestamp", "min"), end=("timestamp", "max")
    )
    conversations = sentences.groupby("conversation_id").agg(
        user_id=("user_id", "first"), start=("timestamp", "min"), end=("timestamp", "max")
    )
    sessions = sessions.rename_axis("event_id").reset_index().assign(kind="session")
    conversations = conversations.rename_axis("event_id").reset_index().assign(kind="conversation")
    events = pd.concat([sessions, conversations], ignore_index=True)
    columns = ["user_id", "kind", "event_id", "start", "end"]
    if events.empty:
        return pd.DataFrame(
            {
                c: pd.Series(dtype=t)
                for c, t in zip(columns, ["int64", "object", "int64", "datetime64[ns]", "datetime64[ns]"])
            }
        )
    return (
        events[columns]
        .sort_values(["user_id", "start", "kind", "event_id"], kind="stable")
        .reset_index(drop=True)
    )


def purchase_events(purchases: pd.DataFrame) -> pd.DataFrame:
    """One row per PE (``purchase_event_id, user_id, timestamp``), ids 1.. in purchase-time order."""
    events = purchases[["user_id", "timestamp"]].drop_duplicates()
    events = events.sort_values(["timestamp", "user_id"], kind="stable").reset_index(drop=True)
    events.insert(0, "purchase_event_id", np.arange(1, len(events) + 1, dtype=np.int64))
    return events


def inactivity_chain(
    pes: pd.DataFrame, events: pd.DataFrame, threshold: pd.Timedelta = INACTIVITY_THRESHOLD
) -> tuple[pd.DataFrame, Counts]:
    """Per PE, the user's events that form an unbroken chain (gaps <= ``threshold``) back from the purchase.

    Returns ``purchase_event_id, kind, event_id, start`` rows, plus counts of the candidate events (started before
    the purchase) that the chain dropped.
    """
    rows: list[tuple[int, str, int, pd.Timestamp]] = []
    dropped = 0
    by_user = {user: group for user, group in events.groupby("user_id", sort=False)}
    for pe_id, user, bought_at in pes[["purchase_event_id", "user_id", "timestamp"]].itertuples(index=False):
        group = by_user.get(user)
        if group is None:
            continue
        before = group[group["start"].to_numpy() < np.datetime64(bought_at)]
        boundary = bought_at
        in_chain = 0
        # latest first: a later event decides whether an earlier one is still "the same task"
        for kind, event_id, start, end in before.iloc[::-1][["kind", "event_id", "start", "end"]].itertuples(
            index=False
        ):
            gap = max(boundary - end, pd.Timedelta(0))
            if gap > threshold:
                break
            rows.append((pe_id, kind, event_id, start))
            boundary = min(boundary, start)
            in_chain += 1
        dropped += len(before) - in_chain
    chain = pd.DataFrame(rows, columns=["purchase_event_id", "kind", "event_id", "start"])
    return chain, {"events": int(dropped)}


def keep_last_events(chain: pd.DataFrame, max_events: int = MAX_EVENTS) -> tuple[pd.DataFrame, Counts]:
    """Keep each PE's ``max_events`` most recent events; number them 1 (oldest) .. n."""
    ordered = chain.sort_values(["purchase_event_id", "start", "kind", "event_id"], kind="stable")
    from_end = ordered.groupby("purchase_event_id").cumcount(ascending=False)
    kept = ordered[from_end < max_events].copy()
    kept["event_number"] = kept.groupby("purchase_event_id").cumcount() + 1
    return kept.reset_index(drop=True), {"events": int((from_end >= max_events).sum())}


# ------------------------------------------------------------------------------------------------ composition
@dataclass
class PreprocessResult:
    """The released-format tables and, per rule, what it dropped."""

    users: (
        pd.DataFrame
    )  # user_id, purchase_event_id, event_number, conversation_id, session_id (floats, NaN if none)
    purchase_events: pd.DataFrame  # purchase_event_id, item_id
    sessions: pd.DataFrame  # session_id, action_number, action_tags
    conversations: pd.DataFrame  # conversation_id, sentence_number, sentence_speaker, text
    dropped: dict[str, Counts] = field(default_factory=dict)
    # purchase_event_id, user_id, timestamp: what maps a post-filter log onto the PEs
    purchase_times: pd.DataFrame | None = None


def preprocess_raw_logs(
    actions: pd.DataFrame,
    sentences: pd.DataFrame,
    purchases: pd.DataFrame,
    min_item_share: float = MIN_ITEM_SHARE,
    min_actions: int = MIN_ACTIONS,
    min_sentences: int = MIN_SENTENCES,
    max_actions: int = MAX_ACTIONS,
    max_sentences: int = MAX_SENTENCES,
    inactivity_threshold: pd.Timedelta = INACTIVITY_THRESHOLD,
    max_events: int = MAX_EVENTS,
    names: tuple[str, str, str] = ("actions", "sentences", "purchases"),
) -> PreprocessResult:
    """Apply rules 1-6 of section 3.3 (see the module docstring) and write the released-format tables.

    ``names``: what errors call the three inputs (their files, when read from disk)."""
    actions = validate_actions(actions, names[0])
    sentences = validate_sentences(sentences, names[1])
    purchases = validate_purchases(purchases, names[2])
    dropped: dict[str, Counts] = {}

    purchases, dropped["rare_items"] = drop_rare_items(purchases, min_item_share)
    actions, dropped["repeated_actions"] = drop_repeated_actions(actions)
    actions, sentences, dropped["short"] = drop_short(actions, sentences, min_actions, min_sentences)
    actions, sentences, dropped["truncate"] = truncate(actions, sentences, max_actions, max_sentences)

    pes = purchase_events(purchases)
    chain, dropped["inactivity_chain"] = inactivity_chain(
        pes, build_events(actions, sentences), inactivity_threshold
    )
    kept, dropped["last_events"] = keep_last_events(chain, max_events)

    with_events = pes["purchase_event_id"].isin(kept["purchase_event_id"])
    dropped["no_events"] = {"purchase_events": int((~with_events).sum())}
    # Renumber the surviving PEs 1..n, still in purchase-time order.
    pes = pes[with_events].reset_index(drop=True)
    new_id = pd.Series(np.arange(1, len(pes) + 1, dtype=np.int64), index=pes["purchase_event_id"].to_numpy())
    kept["purchase_event_id"] = kept["purchase_event_id"].map(new_id).astype(np.int64)
    pes["purchase_event_id"] = np.arange(1, len(pes) + 1, dtype=np.int64)

    kept = kept.merge(pes[["purchase_event_id", "user_id"]], on="purchase_event_id")
    is_conversation = kept["kind"].eq("conversation")
    users = pd.DataFrame(
        {
            "user_id": kept["user_id"].astype(np.int64),
            "purchase_event_id": kept["purchase_event_id"],
            "event_number": kept["event_number"].astype(np.int64),
            "conversation_id": kept["event_id"].where(is_conversation).astype(float),
            "session_id": kept["event_id"].where(~is_conversation).astype(float),
        }
    ).sort_values(["purchase_event_id", "event_number"], kind="stable")

    items = purchases.merge(pes, on=["user_id", "timestamp"])[["purchase_event_id", "item_id"]]
    items = items.drop_duplicates().sort_values(["purchase_event_id", "item_id"], kind="stable")

    used_sessions = set(kept.loc[~is_conversation, "event_id"])
    used_conversations = set(kept.loc[is_conversation, "event_id"])
    sessions = actions[actions["session_id"].isin(used_sessions)].copy()
    sessions["action_number"] = sessions.groupby("session_id").cumcount() + 1
    conversations = sentences[sentences["conversation_id"].isin(used_conversations)].copy()
    conversations["sentence_number"] = conversations.groupby("conversation_id").cumcount() + 1

    return PreprocessResult(
        users=users.reset_index(drop=True),
        purchase_events=items.reset_index(drop=True),
        sessions=sessions[["session_id", "action_number", "action_tags"]].reset_index(drop=True),
        conversations=conversations.rename(columns={"speaker": "sentence_speaker"})[
            ["conversation_id", "sentence_number", "sentence_speaker", "text"]
        ].reset_index(drop=True),
        dropped=dropped,
        purchase_times=pes[["purchase_event_id", "user_id", "timestamp"]].reset_index(drop=True),
    )


# ------------------------------------------------------------------------------------------------ files
@dataclass
class RawLogs:
    """The raw-log tables of a folder, as read (strings), and the files they came from."""

    actions: pd.DataFrame
    sentences: pd.DataFrame
    purchases: pd.DataFrame
    post_filter: pd.DataFrame | None
    files: dict[str, Path]  # "actions" / "sentences" / "purchases" / "post_filter" -> path


def _read_csv(path: Path) -> pd.DataFrame:
    # Strings throughout, so that the validators report a bad cell as written rather than as pandas parsed it.
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(
            path, f"not a readable CSV file with a header row ({' '.join(str(exc).split())})"
        ) from None


def read_raw_logs(folder: str | Path) -> RawLogs:
    """Read ``actions.csv``, ``sentences.csv``, ``purchases.csv`` and the optional ``post_filter.csv``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "raw log folder not found")
    files = {table: folder / name for table, name in RAW_LOG_FILES.items()}
    for path in files.values():
        if not path.is_file():
            raise DataError(
                path,
                f"file not found (a raw log folder holds {', '.join(RAW_LOG_FILES.values())}, optionally "
                f'{POST_FILTER_LOG} and {KEYWORD_MAPPING_LOG}; README, "Bring your own data")',
            )
    post_filter = folder / POST_FILTER_LOG
    if post_filter.is_file():
        files["post_filter"] = post_filter
    return RawLogs(
        actions=_read_csv(files["actions"]),
        sentences=_read_csv(files["sentences"]),
        purchases=_read_csv(files["purchases"]),
        post_filter=_read_csv(post_filter) if post_filter.is_file() else None,
        files=files,
    )


def post_filter_table(
    result: PreprocessResult, post_filter: pd.DataFrame | None, name: str = "post_filter"
) -> tuple[pd.DataFrame, Counts]:
    """``purchase_event_id, item_id``: the post-filter log's items at each kept purchase, or without a log every
    item for every PE. Rows for a purchase the rules dropped, or for an item outside the item set (the items
    purchased in the result), are left out and counted."""
    pes = result.purchase_times
    items = np.sort(result.purchase_events["item_id"].unique())
    if post_filter is None:
        frame = pd.DataFrame(
            {
                "purchase_event_id": np.repeat(pes["purchase_event_id"].to_numpy(), len(items)),
                "item_id": np.tile(items, len(pes)),
            }
        )
        return frame, {}
    rows = validate_purchases(post_filter, name).merge(pes, on=["user_id", "timestamp"], how="left")
    no_pe = rows["purchase_event_id"].isna()
    outside = ~no_pe & ~rows["item_id"].isin(items)
    kept = rows[~no_pe & ~outside]
    frame = (
        pd.DataFrame(
            {"purchase_event_id": kept["purchase_event_id"].astype(np.int64), "item_id": kept["item_id"]}
        )
        .drop_duplicates()
        .sort_values(["purchase_event_id", "item_id"], kind="stable")
        .reset_index(drop=True)
    )
    counts = {
        "rows_of_dropped_purchases": int(no_pe.sum()),
        "rows_of_items_outside_the_item_set": int(outside.sum()),
    }
    return frame, counts


def write_released(
    result: PreprocessResult,
    post_filter: pd.DataFrame,
    out: str | Path,
    keyword_mapping: str | Path | None = None,
    report: dict | None = None,
) -> list[Path]:
    """Write the released-format files (each atomically) into ``out``; ``report`` goes to ``preprocess.json``."""
    from mmrec_ray.data.released import (
        KEYWORD_MAPPING_FILE,
        POST_FILTER_FILE,
        PURCHASES_FILE,
        SESSIONS_FILE,
        TEXT_FILE,
        USERS_FILE,
    )
    from mmrec_ray.io import atomic_write, atomic_write_text

    out = Path(out)
    tables = {
        USERS_FILE: result.users,
        PURCHASES_FILE: result.purchase_events,
        POST_FILTER_FILE: post_filter,
        SESSIONS_FILE: result.sessions,
        TEXT_FILE: result.conversations,
    }
    written = [
        atomic_write(out / name, lambda tmp, t=table: t.to_csv(tmp, index=False))
        for name, table in tables.items()
    ]
    if keyword_mapping is not None:
        written.append(
            atomic_write(out / KEYWORD_MAPPING_FILE, lambda tmp: shutil.copyfile(keyword_mapping, tmp))
        )
    if report is not None:
        written.append(atomic_write_text(out / REPORT_FILE, json.dumps(report, indent=2, default=str) + "\n"))
    return written
