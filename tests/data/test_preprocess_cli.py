"""`mmrec preprocess --logs DIR --out DIR`: raw event logs -> a released-format folder that `mmrec validate` accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mmrec_ray.cli import main

T0 = pd.Timestamp("2024-03-01 09:00")
USERS = range(1, 13)


def write_logs(root: Path, post_filter: bool = False, mapping: bool = True) -> Path:
    """Twelve users, each buying one item (1 + user % 3) on day 10 + user: a 3-action session the day before,
    and for even users a 4-sentence call two days before. Session 99 of user 1 is 40 days older than the purchase
    (outside the 14-day chain); user 13 buys without any event (a PE the protocol drops). 12 PEs: 2 in the test
    split."""
    root.mkdir(parents=True)
    day, minute = pd.Timedelta(days=1), pd.Timedelta(minutes=1)
    actions, sentences, purchases = [], [], []
    for user in USERS:
        bought = T0 + (10 + user) * day
        purchases.append((user, bought, 1 + user % 3))
        actions += [(user, user, bought - day + a * minute, f"{a + 1},{10 + user}") for a in range(3)]
        if user % 2 == 0:
            sentences += [
                (100 + user, user, bought - 2 * day + n * minute, n + 1, ("user", "agent")[n % 2], text)
                for n, text in enumerate(["my car broke", "sorry to hear", "need cover", "here is an offer"])
            ]
    actions += [(99, 1, T0 - 30 * day + a * minute, f"{a + 1},7") for a in range(3)]
    purchases.append((13, T0 + 40 * day, 1))

    def write(name: str, columns: list[str], rows: list[tuple]) -> None:
        pd.DataFrame(rows, columns=columns).to_csv(root / name, index=False)

    write("actions.csv", ["session_id", "user_id", "timestamp", "action_tags"], actions)
    columns = ["conversation_id", "user_id", "timestamp", "sentence_number", "speaker", "text"]
    write("sentences.csv", columns, sentences)
    write("purchases.csv", ["user_id", "timestamp", "item_id"], purchases)
    if post_filter:  # item 3 is never purchasable for odd users; 4 is never bought (outside the item set)
        rows = [
            (user, T0 + (10 + user) * day, item)
            for user in USERS
            for item in (1, 2, 3, 4)
            if not (item == 3 and user % 2 and user % 3 != 2)
        ]
        write("post_filter.csv", ["user_id", "timestamp", "item_id"], rows)
    if mapping:
        write("keyword_mapping.csv", ["word", "keyword_id"], [("car", 50), ("cover", 51)])
    return root


def test_preprocess_writes_a_folder_that_validate_accepts(tmp_path, capsys):
    logs = write_logs(tmp_path / "logs")
    out = tmp_path / "data"
    assert main(["preprocess", "--logs", str(logs), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "inactivity chain" in captured.out and "12 purchase events" in captured.out
    err = captured.err.strip().splitlines()
    assert any("no post_filter.csv" in line and "every item" in line for line in err), err
    assert any("the test split has only 2 PEs" in line for line in err), err

    users = pd.read_csv(out / "data_users.csv")
    assert sorted(users["purchase_event_id"].unique()) == list(range(1, 13))  # PE 13 had no events
    first = users[users["purchase_event_id"] == 1]
    assert first["session_id"].dropna().tolist() == [1.0]  # session 99, 30 days earlier, left the chain
    second = users[users["purchase_event_id"] == 2].sort_values("event_number")
    assert second["conversation_id"].tolist()[0] == 102.0 and second["session_id"].tolist()[1] == 2.0
    post_filter = pd.read_csv(out / "data_post_filter.csv")
    assert len(post_filter) == 12 * 3  # every item, every PE
    report = json.loads((out / "preprocess.json").read_text())
    assert report["dropped"]["inactivity_chain"] == {"events": 1}
    assert (out / "keyword_mapping.csv").is_file() and (out / "data_conversations_text.csv").is_file()

    assert main(["validate", "--data", str(out)]) == 0
    assert "purchase events" in capsys.readouterr().out


def test_preprocess_maps_a_post_filter_log_onto_the_purchase_events(tmp_path, capsys):
    logs = write_logs(tmp_path / "logs", post_filter=True)
    out = tmp_path / "data"
    assert main(["preprocess", "--logs", str(logs), "--out", str(out)]) == 0
    assert "no post_filter.csv" not in capsys.readouterr().err
    post_filter = pd.read_csv(out / "data_post_filter.csv")
    assert set(post_filter["item_id"]) == {1, 2, 3}  # item 4 is outside the item set
    items = post_filter.groupby("purchase_event_id")["item_id"].agg(set)
    assert items[1] == {1, 2} and items[2] == {1, 2, 3}  # user 1 (odd) cannot buy item 3
    assert main(["validate", "--data", str(out)]) == 0


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (lambda logs: (logs / "purchases.csv").unlink(), "purchases.csv: file not found"),
        (
            lambda logs: (logs / "actions.csv").write_text(
                "session_id,user_id,timestamp,action_tags\n1,1,2024-03-01,1\n1,1,yesterday,2\n"
            ),
            "actions.csv, row 3, column 'timestamp': 'yesterday' is not a timestamp",
        ),
        (lambda logs: (logs / "keyword_mapping.csv").unlink(), "keyword_mapping.csv: file not found"),
    ],
)
def test_bad_logs_are_one_line_naming_the_file(tmp_path, capsys, breakage, expected):
    logs = write_logs(tmp_path / "logs")
    breakage(logs)
    assert main(["preprocess", "--logs", str(logs), "--out", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmrec preprocess: error: ") and expected in err[0], err
    assert not (tmp_path / "data" / "data_users.csv").exists()


def test_preprocess_does_not_overwrite_a_dataset_without_force(tmp_path, capsys):
    logs = write_logs(tmp_path / "logs")
    out = tmp_path / "data"
    out.mkdir()
    (out / "data_users.csv").write_text("precious\n")
    assert main(["preprocess", "--logs", str(logs), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "data_users.csv").read_text() == "precious\n"
    assert main(["preprocess", "--logs", str(logs), "--out", str(out), "--force"]) == 0
    assert (out / "data_users.csv").read_text() != "precious\n"
