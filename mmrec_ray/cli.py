"""The `mmrec` command. Each sub-command lives in ``mmrec_ray/commands/<name>.py`` and defines
``HELP: str``, ``add_arguments(parser)`` and ``run(args) -> int | None``; they are discovered automatically."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from mmrec_ray.errors import MmrecError


def _commands() -> dict[str, object]:
    import mmrec_ray.commands as package

    found = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"mmrec_ray.commands.{info.name}")
        found[getattr(module, "NAME", info.name)] = module
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmrec", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in _commands().items():
        command_parser = sub.add_parser(name, help=getattr(module, "HELP", ""), description=getattr(module, "HELP", ""))
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args._run(args)
    except MmrecError as exc:
        print(f"mmrec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mmrec {args.command}: interrupted; finished work is kept, re-run to resume", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
