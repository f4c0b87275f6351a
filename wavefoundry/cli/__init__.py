"""The ``wavefoundry`` command line. Errors are one line on stderr (exit 2) unless ``--debug`` is given."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from wavefoundry.cli import codec, data, demo, generate, lm, scaling, serve, train
from wavefoundry.cli import eval as eval_cmd

COMMANDS = (data, train, codec, generate, eval_cmd, demo, serve, lm, scaling)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wavefoundry",
        description="Train, run and evaluate audio foundation models.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if args.debug else "%(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line for users; --debug shows the traceback
        if args.debug:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
