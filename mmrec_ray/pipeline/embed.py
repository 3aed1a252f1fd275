"""The ``embed`` stage on Ray Data: sentences -> mean-pooled embeddings (and keyword IDs) as Parquet (SPEC 7).

Flow (streaming; nothing is concatenated in memory)::

    read text (Parquet or CSV)                      conversation_id, sentence_number, sentence_speaker, text
      -> map_batches(_tokenize)          CPU tasks: token ids, token count, keyword IDs (mapping given)
      -> map_batches(EncoderActor)       actor pool, ActorPoolStrategy(size=K); each actor holds one encoder,
                                         num_gpus=G per actor (bf16 on GPU) or CPU actors when G = 0;
                                         sorts its batch by length and pads per encoder batch;
                                         a sentence it has encoded before (embed.cache_size) is looked up
      -> write_parquet(temporary dir) -> rename onto RUN_DIR/prepared/parquet/conversation_embeddings/

Tokenizing in its own CPU stage overlaps it with the encoder (on a GPU the tokenizer would otherwise idle the
device). Length sorting happens inside each actor batch (``actor_batch_size`` rows, default 16 encoder batches),
which keeps padding small without an all-to-all sort of the whole dataset.

Output Parquet parts ``part-NNNNN.parquet`` (the names ``mmrec prepare`` reads; pyarrow ignores the
``_embed_manifest.json`` marker), the same columns as ``prepare`` writes:
``conversation_id`` int64, ``sentence_number`` int64, ``sentence_speaker`` string,
``embedding`` fixed_size_list<float32>[D], ``num_tokens`` int32, and ``keywords`` list<int64> when a keyword
mapping is given. Row order across files is not meaningful: join on (conversation_id, sentence_number).

Overwrite, not append: Ray's ``write_parquet`` adds files to an existing folder, so the stage writes into a fresh
temporary folder and swaps it in only when complete; a crash leaves the previous output untouched. A finished
output whose manifest matches the inputs is skipped on re-run (``force`` recomputes). The staging folders of a
killed stage (``.conversation_embeddings.tmp-*``, often empty, and ``.old-*`` of a swap cut short) are removed
when the stage or the pipeline (``discard_staging``) runs again.

GPUs: the requested ``num_gpus`` per actor is checked against ``ray.cluster_resources()`` and the nodes before any
work is submitted, so asking for GPUs the cluster lacks fails at once with a clear ``MmrecError`` instead of a
pending actor that waits forever. (An autoscaling cluster whose GPU nodes are not up yet also fails: start them
first, or set ``min_workers`` in cluster.yaml.) A local-path run directory on a multi-node cluster must be shared
storage mounted at the same path on every node, since workers write the parts.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
import uuid
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmrec_ray.embed.encoder import PACKAGED_ENCODER, SentenceEncoder, resolve_encoder
from mmrec_ray.embed.stage_output import MANIFEST, OUTPUT_DIR
from mmrec_ray.embed.stage_output import TEXT_FILE as DEFAULT_TEXT
from mmrec_ray.embed.stage_output import file_fingerprint as _fingerprint
from mmrec_ray.errors import DataError, MmrecError, hint

TEXT_COLUMNS = ("conversation_id", "sentence_number", "sentence_speaker", "text")
__all__ = ["DEFAULT_TEXT", "MANIFEST", "OUTPUT_DIR", "run_embed", "read_embeddings", "check_resources"]


@dataclass
class EmbedSummary:
    output_dir: str
    sentences: int
    dim: int
    tokens: int
    seconds: float
    skipped: bool

    @property
    def sentences_per_second(self) -> float:
        return self.sentences / self.seconds if self.seconds > 0 else float("nan")

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")


# ------------------------------------------------------------------------------------------- Ray Data stages
@functools.lru_cache(maxsize=4)
def _tokenizer(encoder_path: str):
    """One tokenizer per worker process (tasks reuse their worker, so this loads once per process)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(encoder_path, local_files_only=Path(encoder_path).exists())


def _tokenize(
    batch: pa.Table, encoder_path: str, max_length: int, keyword_mapping: dict[str, int] | None
) -> pa.Table:
    """CPU task: token ids (unpadded), token counts and, with a mapping, keyword IDs per sentence.

    A stateless task, not an actor: it holds no CPU between batches, so on a small node the read, tokenize and
    encoder stages cannot deadlock over cores the actors reserved.
    """
    texts = [str(t) if t is not None else "" for t in batch.column("text").to_pylist()]
    ids = _tokenizer(encoder_path)(
        texts,
        truncation=True,
        max_length=max_length,
        return_attention_mask=False,
        return_token_type_ids=False,
    )["input_ids"]
    columns = {name: batch.column(name) for name in TEXT_COLUMNS if name != "text"}
    columns["token_ids"] = pa.array(ids, type=pa.list_(pa.int32()))
    columns["num_tokens"] = pa.array([len(x) for x in ids], type=pa.int32())
    if keyword_mapping is not None:
        from mmrec_ray.embed.keywords import extract_keywords

        columns["keywords"] = pa.array(extract_keywords(texts, keyword_mapping), type=pa.list_(pa.int64()))
    return pa.table(columns)


def _restart_options() -> dict:
    """Ray Data restarts a dead actor without limit; with its constructor arguments in the object store Ray 2.60
    then prints a C++ ERROR line on the console (ray-project/ray#53727). On one node a restart only repeats
    what killed the actor (out of memory, a bad encoder), so restarts are off there; on a cluster, where a lost
    node is the usual cause, they stay."""
    import ray

    alive = [node for node in ray.nodes() if node.get("Alive")]
    return {"max_restarts": 0} if len(alive) <= 1 else {}


class EncoderActor:
    """One encoder per actor (per GPU on a GPU cluster): token ids -> ``embedding`` fixed-size-list column."""

    def __init__(
        self,
        encoder: str,
        device: str,
        dtype: str,
        batch_size: int,
        max_length: int,
        num_threads: tuple[float, int, int],
        token_budget: int = 0,
        cache_size: int = 0,
    ):
        import torch

        if device == "cpu":  # resolved here: -1 means the cores of the node this actor runs on
            torch.set_num_threads(actor_threads(*num_threads))
        self.encoder = SentenceEncoder(
            encoder,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            max_length=max_length,
            token_budget=token_budget,
            cache_size=cache_size,
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        token_ids = batch.column("token_ids").to_pylist()
        embeddings = self.encoder.encode_token_ids(token_ids)  # (n, D) float32, length-sorted inside
        flat = pa.array(embeddings.reshape(-1), type=pa.float32())
        embedding = pa.FixedSizeListArray.from_arrays(flat, self.encoder.dim)
        return batch.drop_columns(["token_ids"]).append_column("embedding", embedding)


# ------------------------------------------------------------------------------------------------- helpers
def check_resources(num_gpus: float, num_actors: int, num_cpus_per_actor: float) -> None:
    """Fail now, with a message a user can act on, when the cluster cannot host the actor pool."""
    import ray

    if num_actors < 1:
        raise MmrecError(f"embed: num_actors must be >= 1; got {num_actors}")
    total = ray.cluster_resources()
    have_gpus = float(total.get("GPU", 0.0))
    if num_gpus > 0:
        need = num_gpus * num_actors
        if have_gpus < need:
            raise MmrecError(
                f"embed asks for {num_gpus:g} GPU per actor x {num_actors} actor(s) = {need:g} GPU(s), but the Ray "
                f"cluster has {have_gpus:g} GPU(s) (CPU={total.get('CPU', 0):g}); use "
                f"{hint('embed.num_gpus', 0, '--num-gpus 0')} for CPU actors, "
                "fewer actors, or start GPU nodes first"
            )
        per_node = [
            float(node["Resources"].get("GPU", 0.0))
            for node in ray.nodes()
            if node.get("Alive", node.get("alive"))
        ]
        if per_node and max(per_node) < num_gpus:
            raise MmrecError(
                f"embed asks for {num_gpus:g} GPUs per actor, but no single node has that many (largest: "
                f"{max(per_node):g}); one actor runs on one node"
            )
    have_cpus = float(total.get("CPU", 0.0))
    # Actors hold their CPUs for the whole stage; reading and tokenizing need at least one more.
    need_cpus = num_cpus_per_actor * num_actors + 1
    if have_cpus < need_cpus:
        fits = max(1, int((have_cpus - 1) // max(num_cpus_per_actor, 1e-9)))
        raise MmrecError(
            f"embed asks for {num_actors} actor(s) x {num_cpus_per_actor:g} CPU(s) plus 1 CPU for reading and "
            f"tokenizing = {need_cpus:g} CPUs, but the Ray cluster has {have_cpus:g}; use fewer actors "
            f"({hint('embed.num_actors', fits, f'--num-actors {fits}')})"
        )


def actor_threads(num_cpus_per_actor: float, threads_per_actor: int = 0, num_actors: int = 1) -> int:
    """Torch threads of a CPU actor (computed on the actor's node).

    threads_per_actor > 0: that many; 0: its Ray CPU reservation (rounded down, at least 1); -1: this machine's
    cores shared by the actors. -1 is for one machine: Ray Data's read, tokenize and write tasks each reserve a
    whole CPU, so on a 2-core laptop an actor may reserve only one, yet those tasks are idle most of the time
    and the encoder can use both cores (as sentence-transformers would).
    """
    if threads_per_actor > 0:
        return threads_per_actor
    if threads_per_actor == -1:
        return max(1, (os.cpu_count() or 1) // max(num_actors, 1))
    if threads_per_actor == 0:
        return max(1, int(num_cpus_per_actor))
    raise MmrecError(f"embed: threads_per_actor must be > 0, 0 or -1; got {threads_per_actor}")


def _read_text(path: Path):
    import ray

    if not path.exists():
        raise DataError(str(path), "text file not found (run `mmrec prepare` first, or pass --text)")
    if path.suffix == ".csv":
        # Read and checked here, as prepare reads the released tables (ids as exact integers, `123.0` included;
        # long sentences; one line naming row and column): pyarrow's typed reader inside a Ray task would fail on
        # those with a wrapped traceback instead.
        from mmrec_ray.data.csvparse import parse_ids, read_string_columns

        columns = read_string_columns(path, TEXT_COLUMNS)
        table = pa.table(
            {
                "conversation_id": parse_ids(columns["conversation_id"], path, "conversation_id"),
                "sentence_number": parse_ids(columns["sentence_number"], path, "sentence_number"),
                "sentence_speaker": columns["sentence_speaker"],
                "text": columns["text"],
            }
        )
        return ray.data.from_arrow(table)
    schema = pq.read_schema(path) if path.is_file() else pq.ParquetDataset(path).schema
    missing = [c for c in TEXT_COLUMNS if c not in schema.names]
    if missing:
        raise DataError(str(path), f"missing column (expected: {', '.join(TEXT_COLUMNS)})", column=missing[0])
    return ray.data.read_parquet(str(path), columns=list(TEXT_COLUMNS))


def read_embeddings(output_dir: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read the stage's output: (conversation_id (n,), sentence_number (n,), embedding (n, D) float32), key-sorted."""
    table = pq.read_table(str(output_dir), columns=["conversation_id", "sentence_number", "embedding"])
    table = table.sort_by([("conversation_id", "ascending"), ("sentence_number", "ascending")])
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    matrix = column.values.to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)
    return table.column("conversation_id").to_numpy(), table.column("sentence_number").to_numpy(), matrix


# ---------------------------------------------------------------------------------------------------- stage
def run_embed(
    run_dir: str | Path,
    text: str | Path | None = None,
    encoder: str = PACKAGED_ENCODER,
    num_gpus: float = 0.0,
    num_actors: int = 1,
    batch_size: int = 256,
    max_length: int = 128,
    dtype: str = "auto",
    num_cpus_per_actor: float = 1.0,
    threads_per_actor: int = 0,
    keyword_mapping: str | Path | None = None,
    actor_batch_size: int | None = None,
    force: bool = False,
    token_budget: int = 0,
    cache_size: int = 50_000,
) -> EmbedSummary:
    """Embed every sentence of ``text`` (default RUN_DIR/prepared/parquet/conversation_text.parquet) on Ray Data.

    Ray must already be initialised (``mmrec_ray.pipeline.ray_env.init_ray``).
    """
    import ray

    from mmrec_ray.embed.keywords import load_keyword_mapping

    run_dir = Path(run_dir).resolve()
    text_path = Path(text) if text is not None else run_dir / DEFAULT_TEXT
    output_dir = run_dir / OUTPUT_DIR
    discard_staging(output_dir)
    mapping = load_keyword_mapping(keyword_mapping) if keyword_mapping is not None else None
    encoder_path = resolve_encoder(encoder)  # fail on a bad name here, not inside an actor
    check_resources(num_gpus, num_actors, num_cpus_per_actor)
    # a bad threads_per_actor fails here, not inside an actor
    actor_threads(num_cpus_per_actor, threads_per_actor, num_actors)

    if not text_path.exists():
        raise DataError(str(text_path), "text file not found (run `mmrec prepare` first, or pass --text)")
    manifest = {
        "encoder": encoder,
        "max_length": max_length,
        "dtype": dtype if num_gpus > 0 else "float32" if dtype == "auto" else dtype,
        "text": _fingerprint(text_path),
        "keyword_mapping": _fingerprint(Path(keyword_mapping)) if keyword_mapping is not None else None,
    }
    done = output_dir / MANIFEST
    if not force and done.exists():
        previous = json.loads(done.read_text())
        if previous.get("inputs") == manifest:
            return EmbedSummary(
                str(output_dir), previous["sentences"], previous["dim"], previous["tokens"], 0.0, True
            )

    started = time.perf_counter()
    ds = _read_text(text_path)
    ds = ds.map_batches(
        _tokenize,
        fn_kwargs={"encoder_path": encoder_path, "max_length": max_length, "keyword_mapping": mapping},
        batch_format="pyarrow",
        batch_size=4096,
        num_cpus=1,
    )
    with warnings.catch_warnings():
        # Ray 2.60 takes max_restarts only through the deprecated ray_remote_args (no named parameter yet).
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        ds = ds.map_batches(
            EncoderActor,
            fn_constructor_kwargs={
                "encoder": encoder_path,
                "device": "cuda" if num_gpus > 0 else "cpu",
                "dtype": dtype,
                "batch_size": batch_size,
                "max_length": max_length,
                "token_budget": token_budget,
                "cache_size": cache_size,
                "num_threads": (num_cpus_per_actor, threads_per_actor, num_actors),
            },
            batch_format="pyarrow",
            batch_size=actor_batch_size or batch_size * 16,
            compute=ray.data.ActorPoolStrategy(size=num_actors),
            num_gpus=num_gpus if num_gpus > 0 else None,
            num_cpus=num_cpus_per_actor,
            **_restart_options(),
        )

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = output_dir.parent / f".{output_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        ds.write_parquet(str(staging))
        # Ray names parts by write id; `prepare` (and humans) expect part-NNNNN.parquet, numbered from 1.
        for number, written in enumerate(sorted(staging.glob("*.parquet")), start=1):
            os.replace(written, staging / f".renamed-part-{number:05d}.parquet")
        for renamed in sorted(staging.glob(".renamed-part-*.parquet")):
            os.replace(renamed, staging / renamed.name.removeprefix(".renamed-"))
        parts = sorted(staging.glob("part-*.parquet"))
        metadata = [pq.read_metadata(p) for p in parts]
        sentences = sum(m.num_rows for m in metadata)
        tokens = 0
        dim = 0
        for part in parts:
            table = pq.read_table(part, columns=["num_tokens", "embedding"])
            tokens += int(pc.sum(table.column("num_tokens")).as_py() or 0)
            dim = dim or table.schema.field("embedding").type.list_size
        seconds = time.perf_counter() - started
        record = {
            "inputs": manifest,
            "sentences": sentences,
            "dim": dim,
            "tokens": tokens,
            "seconds": seconds,
        }
        (staging / MANIFEST).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        _swap_in(staging, output_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return EmbedSummary(str(output_dir), sentences, dim, tokens, seconds, False)


def discard_staging(output_dir: str | Path) -> list[Path]:
    """Remove the staging and retired folders that a killed run of the stage left next to ``output_dir``.
    Only while no other embed writes there (the pipeline holds the run directory's lock)."""
    output_dir = Path(output_dir)
    removed = []
    for pattern in (f".{output_dir.name}.tmp-*", f".{output_dir.name}.old-*"):
        for path in sorted(output_dir.parent.glob(pattern)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _swap_in(staging: Path, output_dir: Path) -> None:
    """Replace ``output_dir`` by ``staging`` with renames, so readers never see a half-written folder."""
    retired = output_dir.parent / f".{output_dir.name}.old-{uuid.uuid4().hex[:8]}"
    if output_dir.exists():
        os.replace(output_dir, retired)
    os.replace(staging, output_dir)
    if retired.exists():
        shutil.rmtree(retired, ignore_errors=True)


def summary_line(summary: EmbedSummary) -> str:
    if summary.skipped:
        return f"embed: up to date ({summary.sentences} sentences, dim {summary.dim}) in {summary.output_dir}"
    return (
        f"embed: {summary.sentences} sentences ({summary.tokens} tokens, dim {summary.dim}) in {summary.seconds:.1f}s"
        f" = {summary.sentences_per_second:.0f} sentences/s, {summary.tokens_per_second:.0f} tokens/s"
        f" -> {summary.output_dir}"
    )


def summary_dict(summary: EmbedSummary) -> dict:
    return asdict(summary)
