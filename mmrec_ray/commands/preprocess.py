"""`mmrec preprocess --logs DIR --out DIR`: raw event logs with timestamps -> a dataset folder in the released format.

Applies the paper's section 3.3 rules (``mmrec_ray.data.preprocess``) and prints what each dropped; the folder it
writes is what `mmrec validate` / `prepare` take as ``--data`` (README, "Bring your own data"). Its conversations
come as text, so `prepare` (or the pipeline's embed stage) computes their sentence embeddings, and the keywords are
derived from the text with the logs' keyword_mapping.csv. A record of the drops goes to OUT/preprocess.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmrec_ray.commands._reading import warn_if_small_test_split
from mmrec_ray.errors import ConfigError, DataError

HELP = "apply the paper's pre-processing to raw event logs and write a dataset folder in the released format"
PROG = "mmrec preprocess"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--logs",
        required=True,
        metavar="DIR",
        help="raw logs: actions.csv, sentences.csv, purchases.csv, optionally post_filter.csv and "
        "keyword_mapping.csv (README, Bring your own data)",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="the dataset folder to write (what --data takes later)"
    )
    parser.add_argument(
        "--keyword-mapping",
        metavar="FILE",
        help="word,keyword_id CSV that turns sentence text into keywords (default: LOGS/keyword_mapping.csv)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite a dataset already in --out")


def _check_output(out: Path, force: bool) -> None:
    from mmrec_ray.data.released import POST_FILTER_FILE, PURCHASES_FILE, SESSIONS_FILE, TEXT_FILE, USERS_FILE

    existing = [
        n
        for n in (USERS_FILE, PURCHASES_FILE, POST_FILTER_FILE, SESSIONS_FILE, TEXT_FILE)
        if (out / n).exists()
    ]
    if existing and not force:
        raise ConfigError(
            f"{out} already holds a dataset ({existing[0]}); use --force to overwrite it, or another --out"
        )


def _keyword_mapping(args: argparse.Namespace, logs) -> Path | None:
    """The mapping that lets the output derive conversation keywords; read now, so a bad one fails before any work."""
    from mmrec_ray.data.preprocess import KEYWORD_MAPPING_LOG
    from mmrec_ray.data.released import read_keyword_mapping

    path = Path(args.keyword_mapping) if args.keyword_mapping else Path(args.logs) / KEYWORD_MAPPING_LOG
    if not path.is_file():
        if logs.sentences.empty:  # no conversations: nothing to derive keywords for
            return None
        raise DataError(
            path,
            "file not found: conversation keywords are derived from the sentence text with a word -> keyword_id "
            "mapping (columns word, keyword_id); put it there or pass --keyword-mapping FILE",
        )
    read_keyword_mapping(path)
    return path


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from mmrec_ray.data import preprocess as pp
    from mmrec_ray.data.tensors import test_mask

    out = Path(args.out)
    _check_output(out, args.force)
    logs = pp.read_raw_logs(args.logs)
    mapping = _keyword_mapping(args, logs)
    names = tuple(str(logs.files[t]) for t in ("actions", "sentences", "purchases"))
    result = pp.preprocess_raw_logs(logs.actions, logs.sentences, logs.purchases, names=names)
    if result.users.empty:
        raise DataError(args.logs, "no purchase event keeps any session or conversation; nothing to write")
    post_filter, dropped = pp.post_filter_table(
        result, logs.post_filter, str(logs.files.get("post_filter", ""))
    )
    if logs.post_filter is None:
        print(
            f"{PROG}: warning: no {pp.POST_FILTER_LOG} in {args.logs}: every item is purchasable at every purchase "
            "(the post-filter only masks scores at evaluation)",
            file=sys.stderr,
        )
    else:
        result.dropped["post_filter"] = dropped

    for rule, counts in result.dropped.items():
        detail = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in counts.items()) or "nothing"
        print(f"  {rule.replace('_', ' ')}: dropped {detail}")
    pe_ids = result.purchase_times["purchase_event_id"].to_numpy()
    test = int(test_mask(pe_ids).sum())
    counts = {
        "purchase_events": len(pe_ids),
        "train_pes": len(pe_ids) - test,
        "test_pes": test,
        "users": int(result.users["user_id"].nunique()),
        "items": int(np.unique(result.purchase_events["item_id"]).size),
        "sessions": int(result.sessions["session_id"].nunique()),
        "conversations": int(result.conversations["conversation_id"].nunique()),
    }
    report = {"source": str(Path(args.logs).resolve()), "counts": counts, "dropped": result.dropped}
    pp.write_released(result, post_filter, out, keyword_mapping=mapping, report=report)
    print(
        f"preprocess: wrote {out} — {counts['purchase_events']:,} purchase events ({counts['train_pes']:,} train / "
        f"{test:,} test), {counts['users']:,} users, {counts['items']} items, {counts['sessions']:,} sessions, "
        f"{counts['conversations']:,} conversations; next: mmrec validate --data {out}"
    )
    warn_if_small_test_split(PROG, test)
    return 0
