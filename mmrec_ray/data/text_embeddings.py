"""Sentence embeddings computed from the conversation text when the folder has no embedding CSVs: encoded in this
process (``encode_text``, standalone ``mmrec prepare``) or read back from the parts the Ray Data ``embed`` stage
wrote (``read_stage_embeddings``); either way accumulated per conversation like the CSV parts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.parquet as pq

from mmrec_ray.data.csvparse import FIRST_DATA_ROW
from mmrec_ray.data.ingest import EmbeddingAccumulator, embedding_table
from mmrec_ray.data.layout import Layout
from mmrec_ray.data.released import ReleasedDataset
from mmrec_ray.errors import DataError
from mmrec_ray.io import atomic_write, atomic_write_json

if TYPE_CHECKING:  # prepare imports this module
    from mmrec_ray.data.prepare import PrepareOptions


def encode_text(
    ds: ReleasedDataset, layout: Layout, out_dir: Path, options: PrepareOptions, log: Callable[[str], None]
) -> tuple[EmbeddingAccumulator, dict]:
    """Embed the sentences of referenced conversations with a real encoder, writing Parquet parts.

    Parts already present from an interrupted run with the same settings (``_progress.json``) are reused.
    """
    from mmrec_ray.embed.encoder import SentenceEncoder

    text = ds.text
    referenced = np.isin(text.conversation_id, layout.conversation_id)
    rows = np.flatnonzero(referenced)
    rows = rows[np.lexsort((text.sentence_number[rows], text.conversation_id[rows]))]
    settings = {
        "encoder": options.encoder,
        "max_length": options.encoder_max_length,
        "sentences_per_part": options.sentences_per_part,
        "sentences": int(len(rows)),
    }
    progress = out_dir / "_progress.json"
    if progress.exists() and json.loads(progress.read_text()) != settings:
        for stale in out_dir.glob("part-*.parquet"):
            stale.unlink()
    atomic_write_json(progress, settings)

    encoder = None
    acc: EmbeddingAccumulator | None = None
    blocks = range(0, len(rows), options.sentences_per_part)
    started, encoded = time.perf_counter(), 0
    for number, start in enumerate(blocks, start=1):
        block = rows[start : start + options.sentences_per_part]
        target = out_dir / f"part-{number:05d}.parquet"
        if target.exists():
            table = pq.read_table(target)
            embedding = np.asarray(table.column("embedding").combine_chunks().flatten()).reshape(
                len(block), -1
            )
        else:
            if encoder is None:
                encoder = SentenceEncoder(
                    name_or_path=options.encoder,
                    device=options.encoder_device,
                    batch_size=options.encoder_batch_size,
                    max_length=options.encoder_max_length,
                )
            embedding = encoder.encode(list(text.text[block]))
            table = embedding_table(
                text.conversation_id[block],
                text.sentence_number[block],
                text.sentence_speaker[block],
                embedding,
            )
            atomic_write(target, lambda tmp, table=table: pq.write_table(table, tmp))
            encoded += len(block)
            rate = encoded / max(time.perf_counter() - started, 1e-9)
            log(f"  embeddings: encoded {start + len(block):,}/{len(rows):,} sentences ({rate:,.0f}/s)")
        if acc is None:
            acc = EmbeddingAccumulator(layout.conversation_id, embedding.shape[1])
        first_row = FIRST_DATA_ROW  # rows are located in the text file below; parts are ours
        acc.add(text.path, first_row, text.conversation_id[block], text.sentence_number[block], embedding)
    if acc is None:  # no referenced conversation at all: width from the encoder
        if encoder is None:
            encoder = SentenceEncoder(
                name_or_path=options.encoder,
                device=options.encoder_device,
                max_length=options.encoder_max_length,
            )
        acc = EmbeddingAccumulator(layout.conversation_id, encoder.dim)
    progress.unlink()
    return acc, {"source": "text", **settings, "encoded_now": encoded}


def read_stage_embeddings(
    ds: ReleasedDataset, layout: Layout, out_dir: Path, text_path: Path, log: Callable[[str], None]
) -> tuple[EmbeddingAccumulator, dict]:
    """Accumulate the sentence embeddings the Ray Data ``embed`` stage wrote into ``out_dir``.

    Accepted only when complete and current: ``_embed_manifest.json`` exists (the stage writes it last), its
    text fingerprint equals ``text_path`` now, and the parts hold exactly the sentences it counted.
    """
    from mmrec_ray.embed.stage_output import MANIFEST, file_fingerprint, read_manifest

    manifest = read_manifest(out_dir)
    if manifest is None:
        raise DataError(
            out_dir / MANIFEST,
            "no complete output of the embed stage here; run `mmrec embed --run-dir RUN_DIR` first "
            "(or prepare without --embeddings embed-stage to encode in-process)",
        )
    if manifest.get("inputs", {}).get("text") != file_fingerprint(text_path):
        raise DataError(
            out_dir / MANIFEST,
            f"the embeddings were computed from another version of {text_path.name}; re-run `mmrec embed`",
        )
    parts = sorted(out_dir.glob("part-*.parquet"))
    acc: EmbeddingAccumulator | None = None
    for part in parts:
        offset = 0
        handle = pq.ParquetFile(part)
        for batch in handle.iter_batches(
            batch_size=65536, columns=["conversation_id", "sentence_number", "embedding"]
        ):
            column = batch.column("embedding")
            dim = column.type.list_size
            embedding = np.asarray(column.flatten()).reshape(len(batch), dim)
            bad = ~np.isfinite(embedding).all(axis=1)
            if bad.any():
                raise DataError(part, "non-finite embedding value", row=offset + int(np.argmax(bad)) + 1,
                                column="embedding")  # fmt: skip
            if acc is None:
                acc = EmbeddingAccumulator(layout.conversation_id, dim)
            acc.add(
                part,
                offset + 1,
                batch.column("conversation_id").to_numpy(),
                batch.column("sentence_number").to_numpy(),
                embedding,
            )
            offset += len(batch)
    if acc is None:
        acc = EmbeddingAccumulator(layout.conversation_id, int(manifest.get("dim") or 0))
    if acc.sentences != manifest.get("sentences"):
        raise DataError(
            out_dir,
            f"{acc.sentences} sentences in {len(parts)} part(s), but the embed manifest counts "
            f"{manifest.get('sentences')}; re-run `mmrec embed --force`",
        )
    log(
        f"prepare: read {acc.sentences:,} sentence embeddings (D={acc.dim}) from the embed stage ({len(parts)} parts)"
    )
    source = {
        "source": "embed-stage",
        "parts": len(parts),
        "sentences": acc.sentences,
        "encoder": manifest.get("inputs", {}).get("encoder"),
        "max_length": manifest.get("inputs", {}).get("max_length"),
    }
    return acc, source
