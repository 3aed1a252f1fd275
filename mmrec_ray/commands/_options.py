"""The options every command spells the same way (README, "Command reference"):

``--run-dir`` a run directory, ``--data`` a dataset folder in the released format, ``--out`` a folder a command
writes that is not a run directory, ``--config`` an experiment YAML (a path or a packaged name), ``--set`` one
config override. Spellings that commands used before (``--run``, ``--out`` for a run directory, ``--storage``)
still work and print one deprecation line on stderr.

Nothing here imports more than the standard library and the config module: every command's parser is built
for ``mmrec --help``, which must not pay for torch, Ray or pandas.
"""

from __future__ import annotations

import argparse
import sys

from mmrec_ray.config import add_override_argument


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default, except where there is nothing to show (a switch, an unset option, an empty
    list): "(default: None)" would say less than the help text does."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, [], ()) or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        # Old spellings keep working but are not advertised: one name per concept in --help.
        if isinstance(action, DeprecatedAlias):
            current = [s for s in action.option_strings if s not in action.deprecated]
            action = argparse.Action(current, action.dest, nargs=action.nargs, metavar=action.metavar)
        return super()._format_action_invocation(action)


class DeprecatedAlias(argparse.Action):
    """Stores the value like a plain option; an old spelling (any but the first option string) also prints
    ``PROG: warning: OLD is deprecated; use NEW`` on stderr, so scripts keep working while their authors learn."""

    def __init__(self, option_strings, dest, deprecated=(), **kwargs):
        self.deprecated = tuple(deprecated)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string in self.deprecated:
            print(
                f"{parser.prog}: warning: {option_string} is deprecated; use {self.option_strings[0]}",
                file=sys.stderr,
            )
        setattr(namespace, self.dest, values)


def add_run_dir_argument(
    parser: argparse.ArgumentParser,
    help: str,
    *,
    required: bool = False,
    dest: str = "run_dir",
    deprecated: tuple[str, ...] = ("--run",),
) -> None:
    parser.add_argument(
        "--run-dir",
        *deprecated,
        dest=dest,
        required=required,
        metavar="DIR",
        action=DeprecatedAlias,
        deprecated=deprecated,
        help=help,
    )


def add_config_argument(
    parser: argparse.ArgumentParser,
    help: str = "experiment config: a YAML path or a packaged name (demo, paper, reference, tiny)",
    default: str | None = None,
) -> None:
    from mmrec_ray.configs import resolve

    parser.add_argument("--config", type=resolve, default=default, metavar="CONFIG", help=help)


def _stage_list(text: str, stages: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in stages]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown stage(s) {unknown or text!r}; stages: {', '.join(stages)}")
    return names


def add_pipeline_arguments(
    parser: argparse.ArgumentParser,
    *,
    config_default: str | None = "demo",
    config_help: str | None = None,
    run_dir_help: str = "run directory: a local path or a URI (s3://, gs://); overrides the config's run_dir",
    set_help: str = "override a config key, e.g. training.max_epochs=3; repeatable",
    deprecated: tuple[str, ...] = ("--storage",),
) -> None:
    """The options of the commands that drive pipeline stages (`mmrec run/tune/fit`), under the names that
    ``pipeline.runner.config_from_args`` reads (``config``, ``storage``, ``overrides``, ``from_stage``,
    ``break_lock``)."""
    from mmrec_ray.pipeline.fingerprints import STAGES

    add_config_argument(parser, **({"help": config_help} if config_help else {}), default=config_default)
    add_run_dir_argument(parser, run_dir_help, dest="storage", deprecated=deprecated)
    add_override_argument(parser, help=set_help)
    parser.add_argument(
        "--from",
        dest="from_stage",
        choices=STAGES,
        default=None,
        metavar="STAGE",
        help=f"re-run this stage and every later one, removing their outputs first (what a changed config needs; "
        f"a run refuses outputs made with another config and names this flag); one of {', '.join(STAGES)}",
    )
    parser.add_argument(
        "--stages",
        type=lambda text: _stage_list(text, STAGES),
        default=None,
        metavar="S1,S2",
        help="run only these stages (comma-separated), each skipped as usual when its outputs are current; "
        "default: all",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show Ray's own output (Tune status tables, worker logs, Ray Data progress); by default one progress "
        "line per stage, Ray's logs under RUN_DIR/logs/ray",
    )
    parser.add_argument(
        "--break-lock",
        action="store_true",
        help="remove the run directory's lock first: for a run on another host that is known to be gone "
        "(a dead run on this host is taken over without it)",
    )
