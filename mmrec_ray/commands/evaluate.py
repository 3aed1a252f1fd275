"""`mmrec evaluate`: HR@k / MAP@k of prediction files on the test PEs, per subset (README, "Protocol and models").

The test PEs, their purchases, post-filter and subsets come from ``--data``, the dataset folder that `validate`
and `prepare` take (the released format: the split is the same one `prepare` makes), or from ``--run-dir``, a
prepared run. ``--predictions`` takes files and folders, such as RUN_DIR/predictions/ with the
``{model}__seed{s}.parquet`` files that `mmrec fit` writes; with ``--run-dir`` it defaults to that folder.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from mmrec_ray.commands._options import add_run_dir_argument
from mmrec_ray.commands._reading import warn_if_small_test_split
from mmrec_ray.errors import MmrecError

HELP = "score prediction files (Parquet long form) on the test PEs: metrics.csv and per_pe.parquet"
USERS_FILE = "data_users.csv"  # data.released.USERS_FILE: what marks a dataset folder


def _ks(text: str) -> list[int]:
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"cut-offs must be integers >= 1, got {text!r}")
    return ks


class _Ks(list):
    """The default cut-offs, shown in --help as 1,2,3,4,5 (what --ks takes) rather than as a Python list."""

    def __str__(self) -> str:
        return ",".join(map(str, self))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data",
        metavar="DIR",
        help="dataset folder in the released format (README, Data formats); a prepared run directory or its "
        "prepared/tensors folder is read too",
    )
    add_run_dir_argument(source, "a prepared run directory (RUN_DIR/prepared/tensors)")
    parser.add_argument(
        "--predictions",
        nargs="+",
        metavar="PATH",
        help="Parquet file(s) with columns model, seed, purchase_event_id, item_id, score, or folders of them "
        "(every *.parquet inside; default with --run-dir: RUN_DIR/predictions)",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="output folder for metrics.csv and per_pe.parquet"
    )
    parser.add_argument("--ks", type=_ks, default=_Ks([1, 2, 3, 4, 5]), help="cut-offs, comma separated")


def prediction_files(paths: list[str]) -> list[Path]:
    """Files as given; a folder contributes every ``*.parquet`` inside it (what `mmrec fit` writes)."""
    from mmrec_ray.evaluation.predictions import find_prediction_files

    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = find_prediction_files(path)
            if not found:
                raise MmrecError(f"{path}: no *.parquet prediction files in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise MmrecError(f"{path}: predictions file not found")
    return files


@dataclass
class DatasetLabels:
    """What evaluation reads of a prepared dataset (``PreparedData``'s names), built from a dataset folder."""

    purchase_event_id: object  # (N,) ascending
    item_ids: object  # (J,)
    targets: object  # (N, J)
    post_filter: object  # (N, J)
    subset: object  # (N,)
    is_test: object  # (N,)

    def test_indices(self):
        import numpy as np

        return np.flatnonzero(self.is_test)


def dataset_labels(root: Path) -> DatasetLabels:
    """The test split and labels exactly as `mmrec prepare` builds them, without embeddings or vocabularies."""
    from mmrec_ray.data.layout import build_layout, item_matrices
    from mmrec_ray.data.released import load_released
    from mmrec_ray.data.tensors import subset_labels

    ds = load_released(root, need_embeddings_or_text=False)
    layout = build_layout(ds)
    item_ids, targets, post_filter = item_matrices(ds, layout)
    return DatasetLabels(
        purchase_event_id=layout.purchase_event_id,
        item_ids=item_ids,
        targets=targets,
        post_filter=post_filter,
        subset=subset_labels(layout.has_conversation, layout.has_session),
        is_test=layout.is_test,
    )


def load_labels(args: argparse.Namespace):
    from mmrec_ray.evaluation.evaluate import load_prepared

    folder = Path(args.data or args.run_dir)
    if args.data and (folder / USERS_FILE).is_file():
        return dataset_labels(folder)
    prepared = (folder, folder / "prepared" / "tensors", folder / "tensors")  # what load_prepared accepts
    if args.data and not any((f / "meta.json").is_file() for f in prepared):
        raise MmrecError(
            f"{folder}: not a dataset folder (no {USERS_FILE}) and no prepared tensors here or in "
            f"{folder / 'prepared' / 'tensors'}; pass a dataset folder in the released format, or --run-dir "
            "with a run that `mmrec prepare` wrote"
        )
    return load_prepared(folder)


def run(args: argparse.Namespace) -> int:
    from mmrec_ray.evaluation.evaluate import evaluate_matrices
    from mmrec_ray.evaluation.predictions import load_matrices

    if args.predictions is None:
        if not args.run_dir:
            raise MmrecError(
                "--predictions: give the prediction files or folders (only --run-dir has a default)"
            )
        args.predictions = [str(Path(args.run_dir) / "predictions")]
    files = prediction_files(args.predictions)
    labels = load_labels(args)
    matrices = load_matrices(files, labels)
    if not matrices:
        raise MmrecError("no predictions to evaluate")
    evaluation = evaluate_matrices(matrices, labels, ks=args.ks)
    paths = evaluation.write(args.out)
    metrics = evaluation.metrics
    main_k = 3 if 3 in args.ks else max(args.ks)
    summary = (
        metrics[metrics["k"] == main_k].groupby(["model", "subset", "metric"], sort=False)["value"].mean()
    )
    for (model, subset, metric), value in summary.items():
        print(f"{model:>24s}  {subset:<18s} {metric.upper()}@{main_k} = {value:.4f}")
    print(f"evaluate: wrote {paths['metrics']} and {paths['per_pe']}")
    warn_if_small_test_split("mmrec evaluate", len(labels.test_indices()))
    return 0
