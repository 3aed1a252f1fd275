"""`mmrec models [--all]`: the model registry, one row per model.

Columns: the registry name (what ``models:``, ``--model`` and ``hyperparameters.NAME`` take), the name tables show,
the PEs it trains on (``all``; ``conversation`` / ``session``: PEs with one; ``both``: PEs with both), the
registry entries fitted first with the same seed (teachers, generators, encoders), and the hyperparameters Tune
searches. ``--all`` adds the stage components (``reported = False``), which only appear as dependencies.
"""

from __future__ import annotations

import argparse

HELP = (
    "list the registered models: display name, the PEs each trains on, dependencies, tunable hyperparameters"
)
COLUMNS = ("name", "display name", "trains on", "depends on", "tunable")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--all",
        action="store_true",
        help="also list the stage components (generators, encoders) that other models depend on",
    )


def rows(include_components: bool = False) -> list[tuple[str, ...]]:
    from mmrec_ray.evaluation.tables import display_name
    from mmrec_ray.models import registry

    names = registry.names(include_components=include_components)
    paper = [m for m in registry.PAPER_MODELS if m in names]
    out = []
    for name in paper + sorted(set(names) - set(paper)):
        cls = registry.get(name)
        shown = display_name(name)
        out.append(
            (
                name,
                shown if shown != name else "-",
                cls.trains_on,
                ", ".join(cls.depends_on) or "-",
                ", ".join(cls.tunable) or "-",
            )
        )
    return out


def run(args: argparse.Namespace) -> int:
    table = rows(include_components=args.all)
    widths = [max(len(row[i]) for row in [COLUMNS, *table]) for i in range(len(COLUMNS))]
    print("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0
