"""Embedding throughput: the Ray Data ``embed`` stage (and the in-process ``SentenceEncoder``) against
(a) the plain Hugging Face loop most users write — fp32, every batch padded to ``max_length``, sentences in
their original order — and (b) sentence-transformers' ``SentenceTransformer.encode`` on the same encoder folder.

Sentences come from the synthetic generator (``mmrec_ray.data.synthetic.build``): whole call transcripts, so the
length mix is realistic (one-word back-channels next to long explanations). All methods embed the same
sentences with the same encoder, batch size and ``max_length``; tokenization is included everywhere. The token
count is the number of real (unpadded, truncated) tokens, the same for every method, so tokens/s compares the
useful work done. Model loading is excluded for the in-process methods; the Ray Data stage is timed end to end
(reading Parquet, starting the actor pool and loading the encoder in it, writing Parquet), which counts against it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from bench.common import make_row

TEXT_COLUMNS = ("conversation_id", "sentence_number", "sentence_speaker", "text")


def synthetic_sentences(count: int, seed: int = 0) -> pa.Table:
    """The first ``count`` sentences (whole conversations first) of the synthetic call transcripts; repeated
    (with fresh conversation ids) when one small build has fewer, so that any count keeps the same length mix."""
    from mmrec_ray.data.synthetic import build

    scale = 0.02
    table = build(scale=scale, seed=seed).conversations.select(list(TEXT_COLUMNS))
    parts, have, offset = [], 0, 0
    while have < count:
        take = table.slice(0, min(table.num_rows, count - have))
        ids = pa.array(take.column("conversation_id").to_numpy() + offset)
        parts.append(take.set_column(0, "conversation_id", ids))
        have += take.num_rows
        offset += int(table.column("conversation_id").to_numpy().max()) + 1
    return pa.concat_tables(parts)


def count_tokens(tokenizer, sentences: Sequence[str], max_length: int) -> int:
    ids = tokenizer(list(sentences), truncation=True, max_length=max_length, return_attention_mask=False)
    return int(sum(len(x) for x in ids["input_ids"]))


@torch.inference_mode()
def plain_hf_loop(
    tokenizer, model, sentences: Sequence[str], batch_size: int, max_length: int, device: str = "cpu"
) -> np.ndarray:
    """The loop most users write: fixed padding to ``max_length``, original order, fp32, mean pooling."""
    out = []
    for start in range(0, len(sentences), batch_size):
        encoded = tokenizer(
            list(sentences[start : start + batch_size]),
            padding="max_length",
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(device)
        hidden = model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.hidden_size), np.float32)


def _throughput_rows(
    benchmark: str,
    seconds: float,
    baselines: dict[str, float],
    sentences: int,
    tokens: int,
    device: str,
    command: str,
) -> list[dict]:
    rows = []
    for baseline, baseline_seconds in baselines.items():
        for metric, amount in (("sentences/s", sentences), ("tokens/s", tokens)):
            rows.append(
                make_row(
                    benchmark, metric, amount / seconds, baseline, amount / baseline_seconds, device, command
                )
            )
    return rows


def run_ray_stage(
    table: pa.Table,
    encoder_path: str,
    batch_size: int,
    max_length: int,
    num_gpus: float = 0.0,
    num_actors: int = 1,
    num_cpus_per_actor: float = 1.0,
    threads_per_actor: int = 0,
    dtype: str = "auto",
    workdir: str | Path | None = None,
    token_budget: int = 0,
    cache_size: int = 0,
) -> float:
    """Seconds for ``run_embed`` (Ray must be initialised) on ``table`` written as Parquet; checks the output.
    ``cache_size`` 0 (every sentence encoded) compares like for like with loops that encode every row."""
    from mmrec_ray.pipeline.embed import run_embed

    with tempfile.TemporaryDirectory(dir=workdir) as run_dir:
        text = Path(run_dir) / "text.parquet"
        pq.write_table(table, text)
        started = time.perf_counter()
        summary = run_embed(
            run_dir,
            text=text,
            encoder=encoder_path,
            num_gpus=num_gpus,
            num_actors=num_actors,
            batch_size=batch_size,
            max_length=max_length,
            dtype=dtype,
            num_cpus_per_actor=num_cpus_per_actor,
            threads_per_actor=threads_per_actor,
            token_budget=token_budget,
            cache_size=cache_size,
            force=True,
        )
        seconds = time.perf_counter() - started
        if summary.sentences != table.num_rows:
            raise RuntimeError(f"embed stage wrote {summary.sentences} rows for {table.num_rows} sentences")
    return seconds


def bench_embed(
    table: pa.Table,
    encoder_path: str,
    batch_size: int = 256,
    max_length: int = 128,
    device: str = "cpu",
    device_label: str = "cpu",
    command: str = "",
    with_ray: bool = True,
    with_sentence_transformers: bool = True,
    ray_kwargs: dict | None = None,
    plain_sentences: int | None = None,
    log=print,
) -> list[dict]:
    """Rows for the Ray Data stage and the in-process SentenceEncoder against the plain HF loop and
    sentence-transformers (see the module docstring). Ray must be initialised when ``with_ray``.

    ``plain_sentences``: run the plain loop on only the first N sentences and scale its time to all of them
    (it pads every sentence to ``max_length``, so its cost per sentence does not depend on the length mix);
    at 10K+ sentences on a CPU the plain loop alone would take longer than everything else together."""
    from transformers import AutoModel, AutoTokenizer

    from mmrec_ray.embed.encoder import SentenceEncoder

    sentences = [str(s) for s in table.column("text").to_pylist()]
    tokenizer = AutoTokenizer.from_pretrained(encoder_path, local_files_only=True)
    tokens = count_tokens(tokenizer, sentences, max_length)
    log(f"embed: {len(sentences)} sentences, {tokens} tokens (mean {tokens / max(len(sentences), 1):.1f})")

    model = AutoModel.from_pretrained(encoder_path, local_files_only=True).eval().to(device)
    plain_hf_loop(tokenizer, model, sentences[:batch_size], batch_size, max_length, device)  # warm-up
    encoder = SentenceEncoder(encoder_path, device=device, batch_size=batch_size, max_length=max_length)
    encoder.encode(sentences[:batch_size])
    st_model = None
    if with_sentence_transformers:
        from sentence_transformers import SentenceTransformer

        st_model = SentenceTransformer(encoder_path, device=device, local_files_only=True)
        st_model.max_seq_length = max_length
        st_model.encode(sentences[:batch_size], batch_size=batch_size)

    seconds: dict[str, float] = {}
    plain_count = len(sentences) if plain_sentences is None else min(plain_sentences, len(sentences))
    plain_started = time.perf_counter()
    plain = plain_hf_loop(tokenizer, model, sentences[:plain_count], batch_size, max_length, device)
    plain_seconds = (time.perf_counter() - plain_started) * len(sentences) / max(plain_count, 1)
    subset = f"; timed on {plain_count} sentences" if plain_count < len(sentences) else ""
    seconds[f"plain HF loop (fp32, pad to max_length, unsorted{subset})"] = plain_seconds
    if st_model is not None:
        started = time.perf_counter()
        st_model.encode(sentences, batch_size=batch_size, convert_to_numpy=True)
        seconds["sentence-transformers encode"] = time.perf_counter() - started
    started = time.perf_counter()
    ours = encoder.encode(sentences)
    encoder_seconds = time.perf_counter() - started
    if encoder.dtype == torch.float32:  # same fp32 math, different padding: the embeddings must agree
        worst = float(np.abs(ours[:plain_count] - plain).max()) if plain_count else 0.0
        if worst > 1e-3:
            raise RuntimeError(f"SentenceEncoder and the plain loop disagree by {worst}")
    del model, st_model
    rows = []
    if with_ray:
        ray_seconds = run_ray_stage(table, encoder_path, batch_size, max_length, **(ray_kwargs or {}))
        log(f"embed: Ray Data stage {ray_seconds:.1f}s")
        rows += _throughput_rows(
            "embed/ray_data_stage", ray_seconds, seconds, len(sentences), tokens, device_label, command
        )
        # The stage's default: repeated sentences looked up, not re-encoded (embed.cache_size). Its gain depends
        # on how often transcripts repeat themselves; the synthetic ones draw from ~1.4K phrases.
        distinct = len(set(sentences))
        cached = run_ray_stage(
            table, encoder_path, batch_size, max_length, **{**(ray_kwargs or {}), "cache_size": 50_000}
        )
        log(f"embed: Ray Data stage with the repeat cache {cached:.1f}s ({distinct} distinct sentences)")
        rows += _throughput_rows(
            f"embed/ray_data_stage_cached ({distinct} distinct of {len(sentences)})",
            cached,
            {"Ray Data stage, every sentence encoded (embed.cache_size=0)": ray_seconds},
            len(sentences),
            tokens,
            device_label,
            command,
        )
    rows += _throughput_rows(
        "embed/sentence_encoder", encoder_seconds, seconds, len(sentences), tokens, device_label, command
    )
    return rows
