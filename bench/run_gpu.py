"""GPU entry: the Ray Data embed stage with a BERT-base-sized encoder in bf16 against a bare loop with the same
encoder, tokenization included, on >= 1M realistic sentences; results to bench/results/embed_gpu.json.

    python -m bench.run_gpu [--sentences 1000000] [--batch-size 512] [--max-length 128] [--num-gpus 1]
                            [--skip-fp32-plain] [--skip-embed] [--skip-pipeline] [--pipeline-scale 1]
                            [--results bench/results]

The encoder is a randomly initialised BERT-base (``BertConfig`` defaults: 12 layers, hidden 768, 12 heads,
intermediate 3072) written with ``save_pretrained`` to a temporary folder together with a WordPiece tokenizer
over the synthetic transcripts' words; random weights cost exactly what trained ones do. Rows:

- ``embed/ray_data_stage`` (bf16, length-sorted, tokenization in Ray Data) against the bare loop: the same
  ``SentenceEncoder`` (bf16, length-sorted) fed by the same tokenizer in one process, no Ray — the target is
  Ray Data within 15 % of it (ratio >= 0.85);
- the same stage against the plain fp32 Hugging Face loop padded to ``max_length`` (what most users write), timed
  on a ``--plain-sentences`` subset (default 50,000; it runs at tens of thousands of tokens/s) and compared as
  throughput;
- tokens/s and sentences/s of each, tokenization included;
- ``pipeline/paper_yaml``: wall time of the whole ``configs/paper.yaml`` pipeline (``mmrec run``) on generated
  data at ``--pipeline-scale`` (default 1) with raw text embedded by the same random BERT-base, the paper's full
  grids, five-seed fits and aggregation (analyses off: not part of the target), against the 10-minute target
  (ratio > 1 = under it), with one row per stage from the run's manifest. One GPU: one encoder actor, and the
  config's fractional GPUs per trial / per seed worker (``paper.yaml``) pack the small models on it.

Written to run unchanged on one lent GPU (an H100 here); it exits with a clear message when torch sees no CUDA.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TOKENIZERS_PARALLELISM": "true",
}.items():
    os.environ.setdefault(_name, _value)

from bench.common import (  # noqa: E402
    RESULTS_DIR,
    cuda_device,
    make_row,
    print_rows,
    this_command,
    update_readme,
    write_results,
)
from bench.embed import synthetic_sentences  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sentences", type=int, default=1_000_000)
    parser.add_argument("--plain-sentences", type=int, default=50_000, help="subset for the slow fp32 loop")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument(
        "--token-budget",
        type=int,
        default=65536,
        help="tokens per encoder call over length-sorted sentences (0 = --batch-size sentences per call)",
    )
    parser.add_argument("--num-gpus", type=float, default=1.0, help="GPUs per encoder actor")
    parser.add_argument("--num-actors", type=int, default=1)
    parser.add_argument("--cpus-per-actor", type=float, default=4.0)
    parser.add_argument("--skip-fp32-plain", action="store_true")
    parser.add_argument("--skip-embed", action="store_true", help="only the pipeline benchmark")
    parser.add_argument("--skip-pipeline", action="store_true", help="only the embed benchmarks")
    parser.add_argument(
        "--pipeline-scale", type=float, default=1.0, help="synthetic data scale of the pipeline run"
    )
    parser.add_argument(
        "--pipeline-set", action="append", default=[], help="extra `mmrec run --set` overrides (repeatable)"
    )
    parser.add_argument("--results", default=str(RESULTS_DIR))
    parser.add_argument(
        "--cpu-dry-run",
        action="store_true",
        help="check the code path without a GPU: tiny BERT, CPU, fp32, no GPU actors (numbers mean nothing)",
    )
    return parser.parse_args(argv)


def write_bert_base(directory: Path, words, tiny: bool = False) -> Path:
    from mmrec_ray.embed.random_bert import write_random_bert

    if tiny:
        return write_random_bert(directory, words)
    return write_random_bert(
        directory,
        words,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
    )


def bare_loop_seconds(
    encoder_path: str,
    sentences: list[str],
    batch_size: int,
    max_length: int,
    device: str = "cuda",
    token_budget: int = 0,
) -> float:
    """The same encoder and settings as the stage, in one process without Ray: tokenize + encode (bf16,
    length-sorted), synchronised at the end."""

    from mmrec_ray.embed.encoder import SentenceEncoder

    dtype = "bfloat16" if device == "cuda" else "float32"
    encoder = SentenceEncoder(encoder_path, device=device, dtype=dtype, batch_size=batch_size,
                              max_length=max_length, token_budget=token_budget)  # fmt: skip
    encoder.encode(sentences[: batch_size * 4])  # warm-up (CUDA context, kernels)
    _synchronize(device)
    started = time.perf_counter()
    encoder.encode(sentences)
    _synchronize(device)
    return time.perf_counter() - started


def _synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> None:
    import torch

    args = parse_args(argv)
    dry = args.cpu_dry_run
    gpu = "cpu" if dry else "cuda"
    if not dry and not torch.cuda.is_available():
        sys.exit(
            "bench.run_gpu: torch sees no CUDA device; run it on a GPU machine (CPU: python -m bench.run_cpu)"
        )
    command = this_command()
    device = "cpu dry run (not a measurement)" if dry else cuda_device()
    rows = [] if args.skip_embed else embed_rows(args, gpu, device, command)
    if not args.skip_pipeline:
        rows += pipeline_rows(args, device, command)
    write_results("pipeline_gpu" if args.skip_embed else "embed_gpu", rows, Path(args.results))
    print_rows(rows)
    update_readme(directory=Path(args.results))


PIPELINE_TARGET_SECONDS = 600.0  # issue 6: the whole paper.yaml pipeline at scale 1 in <= 10 minutes


def pipeline_rows(args: argparse.Namespace, device: str, command: str) -> list[dict]:
    """Run ``mmrec run --config configs/paper.yaml`` on generated data in a subprocess; rows from its manifest."""
    import json
    import subprocess

    dry = args.cpu_dry_run
    with tempfile.TemporaryDirectory(prefix="mmrec-bench-pipeline-") as tmp:
        words = [str(s) for s in synthetic_sentences(20_000).column("text").to_pylist()]
        encoder_path = write_bert_base(Path(tmp) / "bert-base-random", sorted(set(words)), dry)
        run_dir = Path(tmp) / "run"
        overrides = [
            f"run_dir={run_dir}",
            "data.source=synthetic",
            f"data.path={Path(tmp) / 'data'}",  # paper.yaml's data.path names the released data's folder
            f"data.scale={args.pipeline_scale}",
            "data.text=true",
            f"embed.encoder={encoder_path}",
            "embed.num_actors=1",  # one GPU
            "analyses.enabled=false",
        ]
        if dry:  # the code path only: CPU, tiny grids
            overrides += [
                "embed.num_gpus=0",
                "tune.gpus_per_trial=0",
                "fit.gpus_per_worker=0",
                "tune.batch_size=[256]",
                "tune.units=[16]",
                "tune.dropout=[0.2]",
                "tune.num_anchors=[10]",
                "tune.max_epochs=1",
                "tune.grace_period=1",
                "training.max_epochs=1",
                "fit.seeds=[0]",
            ]
        overrides += args.pipeline_set
        cli = [sys.executable, "-m", "mmrec_ray.cli", "run", "--config", "configs/paper.yaml"]
        for item in overrides:
            cli += ["--set", item]
        print("pipeline:", " ".join(cli), flush=True)
        started = time.perf_counter()
        subprocess.run(cli, check=True)
        seconds = time.perf_counter() - started
        stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    label = f"paper.yaml pipeline, scale {args.pipeline_scale:g}, wall time"
    rows = [
        make_row(
            "pipeline/paper_yaml",
            label,
            seconds,
            "the issue's target (10 minutes)",
            PIPELINE_TARGET_SECONDS,
            device,
            command,
        )
    ]
    for stage, record in stages.items():
        print(f"  stage {stage}: {record['seconds']:.1f}s ({record.get('status')})", flush=True)
        if record.get("status") != "done" or float(record["seconds"]) <= 0:  # skipped or switched off
            continue
        rows.append(
            make_row(
                f"pipeline/paper_yaml/{stage}",
                "seconds",
                float(record["seconds"]),
                "the whole run's wall time",
                seconds,
                device,
                command,
            )
        )
    return rows


def embed_rows(args: argparse.Namespace, gpu: str, device: str, command: str) -> list[dict]:
    """The embed benchmarks (see the module docstring)."""
    from transformers import AutoModel, AutoTokenizer

    from bench.embed import count_tokens, plain_hf_loop, run_ray_stage
    from mmrec_ray.pipeline.ray_env import init_ray, shutdown_ray

    dry = args.cpu_dry_run
    table = synthetic_sentences(args.sentences)
    sentences = [str(s) for s in table.column("text").to_pylist()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mmrec-bench-gpu-") as tmp:
        encoder_path = str(
            write_bert_base(Path(tmp) / "bert-base-random", sorted(set(sentences))[:50_000], dry)
        )
        tokenizer = AutoTokenizer.from_pretrained(encoder_path, local_files_only=True)
        tokens = count_tokens(tokenizer, sentences, args.max_length)
        print(f"{len(sentences)} sentences, {tokens} tokens; encoder {encoder_path}", flush=True)

        budget = args.token_budget
        bare = bare_loop_seconds(encoder_path, sentences, args.batch_size, args.max_length, gpu, budget)
        print(f"bare loop: {tokens / bare:,.0f} tokens/s", flush=True)
        num_gpus = 0.0 if dry else args.num_gpus
        cpus = 1.0 if dry else args.cpus_per_actor
        started = init_ray(
            address="local", num_gpus=0 if dry else max(1, int(round(args.num_gpus * args.num_actors)))
        )
        try:
            ray_seconds = run_ray_stage(
                table,
                encoder_path,
                args.batch_size,
                args.max_length,
                num_gpus=num_gpus,
                num_actors=args.num_actors,
                num_cpus_per_actor=cpus,
                dtype="float32" if dry else "bfloat16",
                workdir=tmp,
                token_budget=budget,
            )
        finally:
            shutdown_ray(started)
        print(f"Ray Data stage: {tokens / ray_seconds:,.0f} tokens/s", flush=True)
        stage_rates = {"tokens/s": tokens / ray_seconds, "sentences/s": len(sentences) / ray_seconds}

        def stage_rows(baseline: str, baseline_rates: dict[str, float]) -> list[dict]:
            return [
                make_row(
                    "embed/ray_data_stage", metric, rate, baseline, baseline_rates[metric], device, command
                )
                for metric, rate in stage_rates.items()
            ]

        rows += stage_rows(
            "bare loop, same encoder (bf16, length-sorted, no Ray)",
            {"tokens/s": tokens / bare, "sentences/s": len(sentences) / bare},
        )

        if not args.skip_fp32_plain:
            subset = sentences[: args.plain_sentences]
            subset_tokens = count_tokens(tokenizer, subset, args.max_length)
            model = AutoModel.from_pretrained(encoder_path, local_files_only=True).eval().to(gpu)
            plain_hf_loop(tokenizer, model, subset[: args.batch_size], args.batch_size, args.max_length, gpu)
            _synchronize(gpu)
            started_plain = time.perf_counter()
            plain_hf_loop(tokenizer, model, subset, args.batch_size, args.max_length, gpu)
            _synchronize(gpu)
            plain = time.perf_counter() - started_plain
            rows += stage_rows(
                f"plain HF loop (fp32, pad to max_length, unsorted; {len(subset)} sentences)",
                {"tokens/s": subset_tokens / plain, "sentences/s": len(subset) / plain},
            )
    return rows


if __name__ == "__main__":
    main()
