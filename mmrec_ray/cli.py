"""mmrec: recommendations from multi-modal user interactions (Bruun et al., SIGIR 2024), on Ray.

Each sub-command lives in ``mmrec_ray/commands/<name>.py`` and defines
``HELP: str``, ``add_arguments(parser)`` and ``run(args) -> int | None``; they are discovered automatically.
Building the parser imports only those modules' top level, which keeps torch, Ray and pandas out (``mmrec
--help`` is instant): a command imports what its work needs inside ``run``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import signal
import sys
import threading

from mmrec_ray.errors import MmrecError, storage_error, user_error_in


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


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked: reading the installed metadata costs `mmrec --help` time."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        import importlib.metadata

        try:
            version = importlib.metadata.version("mmrec_ray")
        except importlib.metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
            from mmrec_ray import __version__ as version
        print(f"{parser.prog} {version}")
        parser.exit()


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    from mmrec_ray.commands._options import HelpFormatter

    parser = argparse.ArgumentParser(
        prog="mmrec",
        description=__doc__.splitlines()[0],
        epilog='`mmrec COMMAND --help` lists a command\'s options; README.md, section "Command reference", all of '
        "them and the names they share.",
    )
    parser.add_argument("--version", action=_VersionAction, help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in _commands(only).items():
        command_parser = sub.add_parser(
            name,
            help=getattr(module, "HELP", ""),
            description=getattr(module, "HELP", ""),
            formatter_class=HelpFormatter,
        )
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


class _Interrupts:
    """Ctrl-C as Python delivers it (KeyboardInterrupt), remembered: a KeyboardInterrupt that lands inside a
    C extension's import or a library's cleanup can come back as another exception (numpy's "cannot load
    module more than once"), which must still read as an interruption, not as a bug."""

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, signum, frame) -> None:
        self.seen = True
        raise KeyboardInterrupt


def _interrupted(command: str) -> int:
    print(f"mmrec {command}: interrupted; finished work is kept, re-run to resume", file=sys.stderr)
    return 130


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=argv[0] if argv else None)
    args = parser.parse_args(argv)
    interrupts = _Interrupts()
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, interrupts)
    try:
        code = args._run(args)
    except MmrecError as exc:
        # Ray's RayTaskError subclasses the error it wraps, but its text is the remote traceback.
        print(f"mmrec {args.command}: error: {user_error_in(exc) or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted(args.command)
    # A full disk or read-only storage met outside mmrec_ray.io (a library writing on its own); other OS
    # errors are bugs to report and keep their traceback.
    except OSError as exc:
        if interrupts.seen:
            return _interrupted(args.command)
        error = storage_error(exc)
        if error is None:
            raise
        print(f"mmrec {args.command}: error: {error}", file=sys.stderr)
        return 2
    except Exception as exc:
        if interrupts.seen:
            return _interrupted(args.command)
        inner = user_error_in(exc)  # a user error raised inside a Ray task and wrapped by Ray Data
        if inner is None:
            raise
        print(f"mmrec {args.command}: error: {inner}", file=sys.stderr)
        return 2
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
