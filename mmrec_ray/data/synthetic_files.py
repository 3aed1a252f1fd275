"""Writing a synthetic dataset folder in the released format (``mmrec generate``): the CSV tables, the sentence
embedding parts for ``--no-text`` (optionally as wide and as many as the release's), and the
``generation_info.json`` marker that makes a finished folder resume. What the data holds: ``synthetic``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mmrec_ray.data import synthetic_text as vocab
from mmrec_ray.data.embedding_csv import EMBEDDING_DIR
from mmrec_ray.data.synthetic import SyntheticData, SyntheticParams, build
from mmrec_ray.data.synthetic_concepts import Concepts
from mmrec_ray.io import atomic_write, atomic_write_json

# Characters of one written embedding value per ``float_text`` (sign, digits, exponent; measured on N(0, 0.05)).
FLOAT_TEXTS = {"short": 7, "float32": 11, "release": 21}
RELEASE_PART_BYTES = 1_964_700_000  # one released embedding CSV part (the public repository's LFS pointers)
FILES = {
    "data_users.csv": ["user_id", "purchase_event_id", "event_number", "conversation_id", "session_id"],
    "data_purchase_events.csv": ["purchase_event_id", "item_id"],
    "data_post_filter.csv": ["purchase_event_id", "item_id"],
    "data_sessions.csv": ["session_id", "action_number", "action_tags"],
    "data_conversations_keyword.csv": ["conversation_id", "sentence_number", "sentence_speaker", "keywords"],
    "data_conversations_text.csv": ["conversation_id", "sentence_number", "sentence_speaker", "text"],
    "keyword_mapping.csv": ["word", "keyword_id"],
}


# ------------------------------------------------------------------------------------------------ embeddings
def sentence_embeddings(
    data: SyntheticData,
    dim: int,
    seed: int,
    params: SyntheticParams,
    start: int,
    stop: int,
    copy: int = 0,
    decimals: int | None = 4,
) -> np.ndarray:
    """(stop - start, dim) float32 sentence vectors for rows [start, stop): concept + phrase + noise directions.

    ``copy`` > 0 draws another noise for the same sentences (``sentence_volume``); ``decimals`` rounds (None:
    full float32 precision)."""
    concepts = Concepts()
    directions = np.random.default_rng([seed, 7]).standard_normal(
        (concepts.n + len(concepts.phrase_text) + 2, dim)
    )
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    concept_dir = directions[: concepts.n].copy()
    cov = np.flatnonzero(~concepts.is_base)
    concept_dir[cov] = 0.6 * concept_dir[concepts.base_of_item[cov]] + 0.8 * concept_dir[cov]
    claims = np.arange(concepts.claim0, concepts.filler0)
    claim_bases = np.array(concepts.bases) - 1
    concept_dir[claims] = 0.5 * concept_dir[claim_bases] + 0.866 * concept_dir[claims]
    concept_dir = (params.embedding_signal * concept_dir).astype(np.float32)
    # Rows: concepts, named phrases, the two speakers, then unnamed phrases (added later: the rows before them
    # keep their values).
    named = concepts.n + concepts.n_named_phrases
    phrase_rows = np.concatenate([directions[concepts.n : named], directions[named + 2 :]])
    phrase_dir = (params.phrase_jitter * phrase_rows).astype(np.float32)
    speaker_dir = (0.2 * directions[named : named + 2]).astype(np.float32)
    noise_rng = np.random.default_rng([seed, 11, start] + ([copy] if copy else []))
    vectors = noise_rng.standard_normal((stop - start, dim), dtype=np.float32)
    vectors *= np.float32(params.embedding_noise / math.sqrt(dim))
    vectors += concept_dir[data.sentence_concept[start:stop]]
    vectors += phrase_dir[data.sentence_phrase[start:stop]]
    vectors += speaker_dir[data.sentence_speaker[start:stop]]
    return vectors if decimals is None else np.round(vectors, decimals)


# ------------------------------------------------------------------------------------------------ writing
def _write_csv(path: Path, table: pa.Table, quoting: str = "needed") -> None:
    options = pacsv.WriteOptions(quoting_header="none", quoting_style=quoting, batch_size=65_536)
    atomic_write(path, lambda tmp: pacsv.write_csv(table, tmp, options))
    path.chmod(0o644)  # the temporary file was private; the dataset is meant to be shared


def _write_embedding_parts(
    folder: Path,
    data: SyntheticData,
    dim: int,
    seed: int,
    params: SyntheticParams,
    rows_per_part: int,
    float_text: str,
    volume: int,
) -> int:
    """Write the embedding CSV parts; returns how many. A conversation's rows stay contiguous and in order."""
    keys = data.conversations.select(["conversation_id", "sentence_number", "sentence_speaker"])
    names = [f"embedding_{d + 1}" for d in range(dim)]
    sentences_per_part = max(1, rows_per_part // volume)
    n_sentences = keys.num_rows
    parts = max(1, math.ceil(n_sentences / sentences_per_part))
    decimals = 4 if float_text == "short" else None
    for part in range(parts):
        start, stop = part * sentences_per_part, min(n_sentences, (part + 1) * sentences_per_part)
        block = keys.slice(start, stop - start)
        copies = [
            sentence_embeddings(data, dim, seed, params, start, stop, copy, decimals)
            for copy in range(volume)
        ]
        # Row r of copy j goes to position r * volume + j, numbered (sentence - 1) * volume + j + 1.
        vectors = np.stack(copies, axis=1).reshape(-1, dim)
        if volume > 1:
            take = pa.array(np.repeat(np.arange(len(block)), volume))
            block = block.take(take)
            original = block.column("sentence_number").to_numpy().astype(np.int64)
            renumbered = (original - 1) * volume + np.tile(np.arange(volume), stop - start) + 1
            block = block.set_column(1, "sentence_number", pa.array(renumbered))
        if float_text == "release":
            vectors = vectors.astype(np.float64)
        columns = block.columns + [pa.array(vectors[:, d]) for d in range(dim)]
        table = pa.table(columns, names=block.column_names + names)
        _write_csv(folder / f"data_conversations_embedding_{part + 1}.csv", table)
    return parts


def _float_ids(users: pa.Table) -> pa.Table:
    """The release writes conversation and session ids as floats ("123.0"); pyarrow would write "123"."""
    for name in ("conversation_id", "session_id"):
        column = users.column(name)
        text = pa.array([None if v is None else f"{v:.1f}" for v in column.to_pylist()], type=pa.string())
        users = users.set_column(users.schema.get_field_index(name), name, text)
    return users


def generate(
    out_dir: str | Path,
    scale: float = 1.0,
    seed: int = 0,
    text: bool = True,
    embedding_dim: int = 64,
    params: SyntheticParams | None = None,
    rows_per_part: int | None = None,
    float_text: str = "short",
    sentence_volume: int = 1,
) -> dict:
    """Write the synthetic dataset to ``out_dir`` (see the module docstring); returns generation_info.

    Embedding CSVs (``text=False``) only:

    - ``float_text``: how values are written. ``short`` (default: small, fast folders for tests and the demo)
      rounds to 4 decimals (~7 characters a value); ``float32`` writes the shortest text that round-trips the
      float32 (~10); ``release`` writes the float32 widened to float64 at full precision (~20 characters, as
      the release's CSVs are: 1.96 GB per part of 768 columns).
    - ``sentence_volume``: each sentence's vector is written this many times under new sentence numbers, with
      independent noise (the conversation's mean keeps its signal). The generator's ~0.9 M sentences at scale 1
      are below the release's volume (~4-25 M rows, from its byte size): ingest rehearsals raise this.
    - ``rows_per_part``: CSV rows per part; default 200,000, or ~1.96 GB parts with ``release`` text.

    A folder already holding a complete dataset with the same settings is left as it is (stage resume).
    """
    if float_text not in FLOAT_TEXTS:
        raise ValueError(f"float_text must be one of {list(FLOAT_TEXTS)}, got {float_text!r}")
    if sentence_volume < 1:
        raise ValueError(f"sentence_volume must be >= 1, got {sentence_volume}")
    params = params or SyntheticParams()
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
    out = Path(out_dir)
    info_path = out / "generation_info.json"
    settings = {"scale": scale, "seed": seed, "text": text, "embedding_dim": None if text else embedding_dim,
                "params": dataclasses.asdict(params)}  # fmt: skip
    if not text and (float_text, sentence_volume) != ("short", 1):  # older folders stay current
        settings.update(float_text=float_text, sentence_volume=sentence_volume)
    if rows_per_part is None:
        width = FLOAT_TEXTS[float_text] + 1  # a value and its comma
        rows_per_part = (
            max(1, RELEASE_PART_BYTES // (width * embedding_dim)) if float_text == "release" else 200_000
        )
    if not text and rows_per_part != 200_000:
        settings["rows_per_part"] = rows_per_part
    if info_path.exists():
        previous = json.loads(info_path.read_text())
        if previous.get("settings") == settings:
            previous["skipped"] = True
            return previous
    info_path.unlink(missing_ok=True)  # the marker goes last: a crash leaves no half-valid folder behind
    started = time.perf_counter()
    data = build(scale, seed, params)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "data_users.csv", _float_ids(data.users), quoting="none")  # ids have no commas
    _write_csv(out / "data_purchase_events.csv", data.purchases)
    _write_csv(out / "data_post_filter.csv", data.post_filter)
    _write_csv(out / "data_sessions.csv", data.sessions)
    _write_csv(out / "data_conversations_keyword.csv", data.conversations.drop_columns(["text"]))
    mapping = vocab.keyword_mapping()
    _write_csv(
        out / "keyword_mapping.csv", pa.table({"word": list(mapping), "keyword_id": list(mapping.values())})
    )
    embedding_dir = out / EMBEDDING_DIR
    for stale in sorted(embedding_dir.glob("data_conversations_embedding_*.csv")):
        stale.unlink()
    if text:
        _write_csv(out / "data_conversations_text.csv", data.conversations.drop_columns(["keywords"]))
        if embedding_dir.exists() and not any(embedding_dir.iterdir()):
            embedding_dir.rmdir()
        parts = 0
    else:
        (out / "data_conversations_text.csv").unlink(missing_ok=True)
        embedding_dir.mkdir(exist_ok=True)
        parts = _write_embedding_parts(
            embedding_dir, data, embedding_dim, seed, params, rows_per_part, float_text, sentence_volume
        )
    info = dict(data.info)
    info.update(settings=settings, text=text, embedding_dim=None if text else embedding_dim,
                embedding_parts=parts, seconds=round(time.perf_counter() - started, 2))  # fmt: skip
    atomic_write_json(info_path, info)
    return info
