"""mmrec: recommendations from multi-modal user interactions (Bruun et al., SIGIR 2024), on Ray.

Each sub-command lives in ``mmrec_ray/commands/<name>.py`` and defines
``HELP: str``, ``add_arguments(parser)`` and ``run(args) -> int | None``; they are discovered automatically."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from mmrec_ray.errors import MmrecError, storage_error


def _command_names() -> list[str]:
    import mmrec_ray.commands as package

    return sorted(i.name for i in pkgutil.iter_modules(package.__path__) if not i.name.startswith("_"))


def _commands(only: str | None = None) -> dict[str, object]:
    """Import the sub-command modules; just ``only`` when the command line names one, so that
    `mmrec generate` does not pay for importing torch and Ray through the other commands."""
    names = _command_names()
    if only in names:
        names = [only]
    return {name: importlib.import_module(f"mmrec_ray.commands.{name}") for name in names}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmrec", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in _commands(only).items():
        command_parser = sub.add_parser(
            name, help=getattr(module, "HELP", ""), description=getattr(module, "HELP", "")
        )
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=argv[0] if argv else None)
    args = parser.parse_args(argv)
    try:
        code = args._run(args)
    except MmrecError as exc:
        print(f"mmrec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mmrec {args.command}: interrupted; finished work is kept, re-run to resume", file=sys.stderr)
        return 130
    # A full disk or read-only storage met outside mmrec_ray.io (a library writing on its own); other OS
    # errors are bugs to report and keep their traceback.
    except OSError as exc:
        error = storage_error(exc)
        if error is None:
            raise
        print(f"mmrec {args.command}: error: {error}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
