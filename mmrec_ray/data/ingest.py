"""Embedding CSV parts -> canonical Parquet parts + per-conversation sums, one independent job per part.

The release holds its sentence embeddings in 107 CSV parts of about 1.96 GB each (~210 GB). Each part is a job
(``PartJob``) that needs nothing but its own file, so parts run anywhere: one after another in this process
(``map_sequential``), or as Ray Data tasks over every core of every node (``mmrec_ray.pipeline.ingest``). A job
streams its part block by block (``embedding_csv.iter_embedding_chunks``: exact ids, finite numbers, one-line
errors naming file, row and column) and writes two files into the output folder:

- ``part-NNNNN.parquet``: the part's rows in the canonical layout (``embedding`` as fixed_size_list<float32>[D]);
- ``_part-NNNNN.summary.npz``: what the models need from it — for each conversation in the part the sum of its
  sentence vectors (float64) and its sentence count — plus every (conversation_id, sentence_number) key, so that
  duplicates across parts are found with their file and row, and the source's stamp (name, bytes, mtime).

The summary is written after the Parquet, both atomically, so it marks a finished part: a re-run skips every part
whose summary carries the same source stamp and width (a crash at part 80 of 107 resumes at part 80), and any
other file in the folder is removed. Memory per job is a few blocks plus the part's conversation sums; the driver
holds the (C, D) float64 sums of all conversations and 16 bytes per sentence for the duplicate check
(``EmbeddingAccumulator``), never sentence vectors. Names starting with ``_`` are skipped by Parquet readers.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrec_ray.data.csvparse import FIRST_DATA_ROW
from mmrec_ray.data.embedding_csv import EmbeddingChunk, iter_embedding_chunks
from mmrec_ray.errors import DataError
from mmrec_ray.io import atomic_write

SUMMARY_VERSION = 1  # bump when the summary's content changes, so old summaries are not trusted
# Sentence vectors are incompressible floats: trying a dictionary on them (pyarrow's default) and compressing them
# cost ~2/3 of the Parquet write and save nothing (measured: 16.0 MB -> 15.4 MB per 5,000 rows without). Min/max
# statistics of 768 interleaved dimensions prune nothing; the ids' do (a reader filtering on conversation_id).
PARQUET_OPTIONS = {
    "use_dictionary": ["sentence_speaker"],
    "write_statistics": ["conversation_id", "sentence_number", "sentence_speaker"],
    "compression": {
        "conversation_id": "snappy",
        "sentence_number": "snappy",
        "sentence_speaker": "snappy",
        "embedding": "none",
    },
}
# Below this many CSV bytes a Ray start costs more than it saves; above it parts run in parallel (`auto`).
PARALLEL_MIN_BYTES = 1 << 30


# --------------------------------------------------------------------------------------------------- accumulation
def owner_rows(table_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row of each id in the sorted ``table_ids``, whether the id is in the table at all)."""
    if len(table_ids) == 0:
        return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
    row = np.minimum(np.searchsorted(table_ids, ids), len(table_ids) - 1)
    return row, table_ids[row] == ids


def _fold(
    owner: np.ndarray, sums: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique owners, float64 sums, counts) of rows (``sums``, ``counts``) owned by ``owner``."""
    if len(owner) == 0:
        return owner.astype(np.int64), np.zeros((0, sums.shape[1])), np.zeros(0, dtype=np.int64)
    if np.all(owner[1:] >= owner[:-1]):  # a part lists its conversations in order: no sort, no (n, D) copies
        starts = np.flatnonzero(np.concatenate(([True], owner[1:] != owner[:-1])))
        folded = np.add.reduceat(sums, starts, axis=0, dtype=np.float64)
        return owner[starts], folded, np.add.reduceat(counts, starts).astype(np.int64)
    order = np.argsort(owner, kind="stable")
    unique, starts = np.unique(owner[order], return_index=True)
    folded = np.add.reduceat(sums[order].astype(np.float64, copy=False), starts, axis=0)
    return unique, folded, np.add.reduceat(counts[order], starts).astype(np.int64)


def _sum_by_owner(owner: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique owners, float64 sums of their rows, row counts) for rows ``values`` owned by ``owner``."""
    return _fold(owner, values, np.ones(len(owner), dtype=np.int64))


def chunk_sums(chunk: EmbeddingChunk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(conversations, float64 sums, counts) of a streamed block: the reader's own when it added them up while
    parsing, else summed here (the same values bit for bit)."""
    if chunk.conversation_sums is not None:
        return chunk.conversation_sums
    return _sum_by_owner(chunk.conversation_id, chunk.embedding)


class EmbeddingAccumulator:
    """Per-conversation sums and counts of sentence embeddings, fed one block (or one part's sums) at a time.

    Also keeps every (conversation_id, sentence_number) key with its file and row, so duplicates across blocks
    and parts are found at the end with an exact location (16 bytes per sentence, not D floats).
    """

    def __init__(self, conversation_ids: np.ndarray, dim: int):
        self.conversation_ids = conversation_ids
        self.dim = dim
        self.sums = np.zeros((len(conversation_ids), dim), dtype=np.float64)
        self.counts = np.zeros(len(conversation_ids), dtype=np.int64)
        self.unreferenced_sentences = 0
        self.unreferenced_conversations: set[int] = set()
        self._keys: list[tuple[np.ndarray, np.ndarray]] = []
        self._chunks: list[tuple[Path, int, int]] = []  # (file, first spreadsheet row, rows)
        self.sentences = 0

    def add(
        self,
        path: Path,
        first_row: int,
        conversation_id: np.ndarray,
        sentence_number: np.ndarray,
        embedding: np.ndarray,
    ) -> None:
        """A block of sentence rows."""
        self._check_width(path, embedding)
        unique, sums, counts = _sum_by_owner(conversation_id, embedding)
        self.add_sums(path, first_row, conversation_id, sentence_number, unique, sums, counts)

    def _check_width(self, path: Path, embedding: np.ndarray) -> None:
        if embedding.shape[1] != self.dim:
            raise DataError(path, f"{embedding.shape[1]} embedding columns, expected {self.dim}", row=1)

    def add_chunk(self, chunk: EmbeddingChunk) -> None:
        """A block streamed by ``iter_embedding_chunks`` (its sums when the reader added them up)."""
        self._check_width(chunk.path, chunk.embedding)
        self.add_sums(
            chunk.path, chunk.first_row, chunk.conversation_id, chunk.sentence_number, *chunk_sums(chunk)
        )

    def add_sums(
        self,
        path: Path,
        first_row: int,
        conversation_id: np.ndarray,
        sentence_number: np.ndarray,
        conversations: np.ndarray,
        sums: np.ndarray,
        counts: np.ndarray,
    ) -> None:
        """Sentence keys in file order from ``first_row`` on, and the sums and counts of their conversations."""
        self._keys.append((conversation_id, sentence_number.astype(np.int64)))
        self._chunks.append((path, first_row, len(conversation_id)))
        self.sentences += len(conversation_id)
        row, referenced = owner_rows(self.conversation_ids, conversations)
        if not referenced.all():
            self.unreferenced_sentences += int(counts[~referenced].sum())
            self.unreferenced_conversations.update(conversations[~referenced].tolist())
        self.sums[row[referenced]] += sums[referenced]
        self.counts[row[referenced]] += counts[referenced]

    def check_unique(self) -> None:
        if not self._keys:
            return
        conv = np.concatenate([k[0] for k in self._keys])
        sent = np.concatenate([k[1] for k in self._keys])
        order = np.lexsort((np.arange(len(conv)), sent, conv))
        same = (conv[order][1:] == conv[order][:-1]) & (sent[order][1:] == sent[order][:-1])
        if not same.any():
            return
        later = int(order[1:][same].min())
        first = int(np.flatnonzero((conv == conv[later]) & (sent == sent[later]))[0])
        path, row = self._locate(later)
        first_path, first_row = self._locate(first)
        seen = f"{first_path.name} row {first_row}"
        raise DataError(
            path,
            f"duplicate key (conversation_id={conv[later]}, sentence_number={sent[later]}); first seen on {seen}",
            row=row,
            column="sentence_number",
        )

    def _locate(self, index: int) -> tuple[Path, int]:
        for path, first_row, rows in self._chunks:
            if index < rows:
                return path, first_row + index
            index -= rows
        raise IndexError(index)

    def means(self) -> np.ndarray:
        """(C, D) float32 mean sentence embedding per conversation (0 where a conversation has no sentences)."""
        return (self.sums / np.maximum(self.counts, 1)[:, None]).astype(np.float32)


def embedding_table(conversation_id, sentence_number, speaker, embedding: np.ndarray) -> pa.Table:
    """The canonical Parquet layout of sentence embeddings."""
    flat = pa.array(np.ascontiguousarray(embedding, dtype=np.float32).reshape(-1))
    return pa.table(
        {
            "conversation_id": pa.array(conversation_id, pa.int64()),
            "sentence_number": pa.array(sentence_number, pa.int64()),
            "sentence_speaker": speaker if isinstance(speaker, pa.Array) else pa.array(speaker, pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, embedding.shape[1]),
        }
    )


# --------------------------------------------------------------------------------------------------- one part
@dataclass(frozen=True)
class PartJob:
    """Convert one CSV part; plain fields only, so a job travels to a Ray task as a row."""

    number: int  # 1-based position among the parts: names the outputs
    source: str  # the CSV part
    out_dir: str  # where part-NNNNN.parquet and its summary go
    dim: int  # the common width of all parts
    chunk_bytes: int  # streaming block size
    threads: bool = True  # pyarrow's own threads: off when every core already runs a part
    reader: str = "auto"  # embedding_csv's reader: "auto" (compiled kernel where it applies) or "arrow"

    @property
    def parquet(self) -> Path:
        return Path(self.out_dir) / f"part-{self.number:05d}.parquet"

    @property
    def summary(self) -> Path:
        return Path(self.out_dir) / f"_part-{self.number:05d}.summary.npz"


def source_stamp(path: str | Path) -> dict:
    """What identifies a part's bytes without reading 2 GB: name, size and modification time."""
    stat = os.stat(path)
    return {"name": Path(path).name, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _summary_identity(job: PartJob) -> dict:
    return {"version": SUMMARY_VERSION, "source": source_stamp(job.source), "dim": job.dim}


def part_is_current(job: PartJob) -> bool:
    """The part's Parquet and summary exist and were made from these bytes at this width."""
    if not (job.summary.is_file() and job.parquet.is_file()):
        return False
    try:
        with np.load(job.summary, allow_pickle=False) as stored:
            return json.loads(str(stored["identity"])) == _summary_identity(job)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # torn by a disk, or an old layout
        return False


def convert_part(job: PartJob) -> dict:
    """Convert one part (``ingest_parts`` hands over only parts that are not current); returns a small report
    (JSON-safe: it comes back from Ray)."""
    started = time.perf_counter()
    path = Path(job.source)
    identity = _summary_identity(job)  # before reading: a file changed meanwhile is caught on the next run
    keys_conv: list[np.ndarray] = []
    keys_sent: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    sums: list[np.ndarray] = []
    counts: list[np.ndarray] = []

    def write(tmp: Path) -> None:
        writer = None
        try:
            for chunk in iter_embedding_chunks(
                [path], job.chunk_bytes, job.dim, use_threads=job.threads, reader=job.reader
            ):
                keys_conv.append(chunk.conversation_id)
                keys_sent.append(chunk.sentence_number)
                unique, block_sums, block_counts = chunk_sums(chunk)
                owners.append(unique)
                sums.append(block_sums)
                counts.append(block_counts)
                table = embedding_table(
                    chunk.conversation_id, chunk.sentence_number, chunk.sentence_speaker, chunk.embedding
                )
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, **PARQUET_OPTIONS)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:  # an empty part still becomes a valid (empty) Parquet file
            pq.write_table(embedding_table([], [], [], np.zeros((0, job.dim), dtype=np.float32)), tmp)

    atomic_write(job.parquet, write)
    # Blocks cut a conversation in two at their boundary: fold the per-block sums once more per part.
    empty_ids = np.zeros(0, dtype=np.int64)
    owner = np.concatenate(owners) if owners else empty_ids
    block_sums = np.concatenate(sums) if sums else np.zeros((0, job.dim))
    block_counts = np.concatenate(counts) if counts else empty_ids
    conversations, part_sums, part_counts = _fold(owner, block_sums, block_counts)
    sentence_conv = np.concatenate(keys_conv) if keys_conv else empty_ids
    sentence_number = np.concatenate(keys_sent) if keys_sent else empty_ids

    def write_summary(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(
                handle,
                identity=np.array(json.dumps(identity)),
                conversation_id=conversations,
                sums=part_sums,
                counts=part_counts,
                sentence_conversation=sentence_conv,
                sentence_number=sentence_number,
            )

    atomic_write(job.summary, write_summary)
    return {
        "number": job.number,
        "seconds": round(time.perf_counter() - started, 3),
        "bytes": identity["source"]["bytes"],
        "sentences": int(len(sentence_conv)),
    }


def add_part_summary(acc: EmbeddingAccumulator, job: PartJob) -> None:
    """Fold a finished part's summary into the driver's accumulator."""
    with np.load(job.summary, allow_pickle=False) as stored:
        acc.add_sums(
            Path(job.source),
            FIRST_DATA_ROW,
            stored["sentence_conversation"],
            stored["sentence_number"],
            stored["conversation_id"],
            stored["sums"],
            stored["counts"],
        )


# --------------------------------------------------------------------------------------------------- all parts
PartMap = Callable[[Callable[[PartJob], dict], Sequence[PartJob]], Iterable[dict]]


def map_sequential(convert: Callable[[PartJob], dict], jobs: Sequence[PartJob]) -> Iterator[dict]:
    """Parts one after another in this process (small folders, tests, no Ray)."""
    for job in jobs:
        yield convert(job)


def use_parallel(parts: Sequence[Path], workers: str | int = "auto") -> bool:
    """The one decision between this process and Ray: ``workers`` 1 never, a number > 1 always (with more than
    one part), ``auto`` from ``PARALLEL_MIN_BYTES`` of CSV on."""
    if len(parts) < 2 or workers == 1:
        return False
    if workers == "auto":
        return sum(os.path.getsize(p) for p in parts) >= PARALLEL_MIN_BYTES
    return True


def _clear_foreign_files(out_dir: Path, jobs: Sequence[PartJob]) -> None:
    """Remove outputs of parts that no longer exist (the folder had more parts before) and temporary files."""
    keep = {job.parquet.name for job in jobs} | {job.summary.name for job in jobs}
    for entry in out_dir.iterdir():
        if entry.is_file() and entry.name not in keep and (entry.name.startswith(("part-", "_part-", "."))):
            entry.unlink()


def ingest_parts(
    parts: Sequence[Path],
    out_dir: Path,
    conversation_ids: np.ndarray,
    dim: int,
    chunk_bytes: int,
    *,
    map_parts: PartMap | None = None,
    threads: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[EmbeddingAccumulator, dict]:
    """Convert every part not already current in ``out_dir`` (through ``map_parts``), then fold all summaries.

    Returns the accumulator and a report: parts converted and reused, CSV bytes converted, seconds.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [
        PartJob(number, str(part), str(out_dir), dim, int(chunk_bytes), threads)
        for number, part in enumerate(parts, start=1)
    ]
    _clear_foreign_files(out_dir, jobs)
    pending = [job for job in jobs if not part_is_current(job)]
    if len(pending) < len(jobs):
        log(f"  embeddings: {len(jobs) - len(pending)} of {len(jobs)} part(s) already converted, kept")
    started = time.perf_counter()
    converted_bytes, done = 0, 0
    for report in (map_parts or map_sequential)(convert_part, pending):
        done += 1
        converted_bytes += report["bytes"]
        log(
            f"  embeddings: part {report['number']} converted ({done}/{len(pending)}, "
            f"{converted_bytes / 1e9:.2f} GB, {report['seconds']:.1f} s)"
        )
    seconds = time.perf_counter() - started
    acc = EmbeddingAccumulator(conversation_ids, dim)
    for job in jobs:
        add_part_summary(acc, job)
    return acc, {
        "parts": len(jobs),
        "converted": len(pending),
        "reused": len(jobs) - len(pending),
        "converted_bytes": converted_bytes,
        "seconds": round(seconds, 3),
    }
