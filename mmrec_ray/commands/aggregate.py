"""`mmrec aggregate`: metrics, significance, Table 3, statistics and figures of a run (no cluster needed)."""

from __future__ import annotations

import argparse

from mmrec_ray.commands.evaluate import _ks

HELP = "evaluate every prediction of a run, test significance, write Table 3 (md/tex/csv), statistics and figures"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mmrec_ray.commands._options import add_run_dir_argument

    add_run_dir_argument(
        parser, "run directory (prepared/tensors and predictions/ inside)", required=True, dest="run"
    )
    parser.add_argument(
        "--predictions",
        nargs="*",
        default=[],
        help="extra prediction files made elsewhere (same Parquet long form)",
    )
    parser.add_argument("--config", help="experiment YAML: its `evaluation` section sets the defaults below")
    parser.add_argument(
        "--reference", help="model the significance tests compare against (default latent_feature)"
    )
    parser.add_argument("--alpha", type=float, help="significance level (default 0.05)")
    parser.add_argument(
        "--hr-test",
        choices=["cmh", "mcnemar_majority"],
        help="HR@k test: cmh = McNemar per seed combined over PEs, testing the seed-mean HR the table shows "
        "(default); mcnemar_majority = the paper's McNemar on the majority vote over seeds",
    )
    parser.add_argument(
        "--map-test",
        choices=["wilcoxon", "anova"],
        help="MAP@k test: wilcoxon = signed-rank on per-PE AP averaged over seeds (default); anova = the paper's",
    )
    parser.add_argument("--ks", type=_ks, help="cut-offs for HR@k / MAP@k (default 1,2,3,4,5)")
    parser.add_argument("--k", type=int, dest="main_k", help="the Table 3 cut-off (default 3)")
    parser.add_argument(
        "--strongest-baseline",
        help="relative change against this model on every column (the paper: neutral_imputation); "
        "default: the best baseline of each column",
    )
    parser.add_argument(
        "--bootstrap-resamples", type=int, default=2000, help="bootstrap resamples for the CIs"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument(
        "--no-table", action="store_true", help="do not print Table 3 (`mmrec run` prints it at the end)"
    )


def run(args: argparse.Namespace) -> int:
    from mmrec_ray.config import EvaluationConfig, load_config
    from mmrec_ray.evaluation.aggregate import aggregate

    evaluation = load_config(args.config).evaluation if args.config else EvaluationConfig()
    aggregate(
        args.run,
        extra_predictions=args.predictions,
        reference=args.reference or evaluation.reference_model,
        ks=args.ks or evaluation.ks,
        main_k=args.main_k or evaluation.main_k,
        alpha=args.alpha if args.alpha is not None else evaluation.alpha,
        hr_test=args.hr_test or evaluation.hr_test,
        map_test=args.map_test or evaluation.map_test,
        strongest_baseline=args.strongest_baseline,
        bootstrap_resamples=args.bootstrap_resamples,
        seed=args.seed,
        show_table=not args.no_table,
    )
    return 0
