"""`mmrec evaluate`: HR@k / MAP@k of prediction files on the test PEs, per subset (SPEC 6)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmrec_ray.errors import MmrecError

HELP = "score prediction files (Parquet long form) on the test PEs: metrics.csv and per_pe.parquet"


def _ks(text: str) -> list[int]:
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"cut-offs must be integers >= 1, got {text!r}")
    return ks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data", help="prepared data: RUN_DIR (with prepared/tensors) or the tensors folder itself"
    )
    source.add_argument("--run", help="run directory (same as --data RUN_DIR)")
    parser.add_argument(
        "--predictions",
        nargs="+",
        required=True,
        help="Parquet file(s): model, seed, purchase_event_id, item_id, score",
    )
    parser.add_argument("--out", required=True, help="output folder for metrics.csv and per_pe.parquet")
    parser.add_argument(
        "--ks", type=_ks, default=[1, 2, 3, 4, 5], help="cut-offs, comma separated (default 1,2,3,4,5)"
    )


def run(args: argparse.Namespace) -> int:
    from mmrec_ray.evaluation.evaluate import evaluate

    data_dir = args.data or args.run
    for path in args.predictions:
        if not Path(path).is_file():
            raise MmrecError(f"{path}: predictions file not found")
    evaluation = evaluate(data_dir, args.predictions, ks=args.ks)
    paths = evaluation.write(args.out)
    metrics = evaluation.metrics
    main_k = 3 if 3 in args.ks else max(args.ks)
    summary = (
        metrics[metrics["k"] == main_k].groupby(["model", "subset", "metric"], sort=False)["value"].mean()
    )
    for (model, subset, metric), value in summary.items():
        print(f"{model:>24s}  {subset:<18s} {metric.upper()}@{main_k} = {value:.4f}")
    print(f"evaluate: wrote {paths['metrics']} and {paths['per_pe']}")
    return 0
