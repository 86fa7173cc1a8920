"""`pruned-yolo <command> ...`: subcommand registry and error handling.

Each command lives in its own module exposing HELP, add_arguments(parser) and
run(args); heavy imports happen inside run() so that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..errors import PrunedYoloError

# command name -> module under pruned_yolo.cli
COMMANDS = {
    "train": "train",
    "val": "val",
    "predict": "predict",
    "info": "info",
    "prune": "prune",
    "compress": "compress",
    "export": "export",
    "bench": "bench",
    "parity": "parity",
    "convert-checkpoint": "convert_checkpoint",
    "convert": "convert",
    "demo": "demo",
}


def _available_commands() -> dict[str, object]:
    found = {}
    for name, module in COMMANDS.items():
        try:
            found[name] = importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.{module}":
                raise
    return found


class UsageError(Exception):
    """A bad command line (argparse's own checks and the `type=` checks of common.py)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr (no usage block) and exit code 2."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="pruned-yolo",
        description="Structured pruning of YOLOv5 detectors, with honest mAP and latency numbers.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only print warnings and results")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _available_commands().items():
        p = sub.add_parser(
            name, help=module.HELP, description=module.HELP, formatter_class=argparse.ArgumentDefaultsHelpFormatter
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        code = args._run(args)
    except PrunedYoloError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
